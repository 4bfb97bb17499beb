"""Hidden graded tests of module 17 (removed from the student release)."""
import numpy as np
import pytest

import _17_hidden_oracle as O
import tinyq.ptq as ptq
from tinyq import nn
from _17_helpers import accuracy, calib_batches, digits, fresh


KW = dict(weight_observer=O.per_channel, activation_observer=O.MinMaxObserver)


# ---------------------------------------------------------------- quantize_weight
@pytest.mark.points(1, exercise="quantize_weight")
def test_quantize_weight_per_tensor_is_broadcast(only):
    only("quantize_weight")
    w = fresh().fc1.weight.data
    q, s = ptq.quantize_weight(w, O.MinMaxObserver())
    assert s.dtype == np.float32 and s.shape == (64,)
    np.testing.assert_array_equal(s, np.full(64, np.float32(np.abs(w).max() / 127)))
    q_ref, _ = O.quantize_weight(w, O.MinMaxObserver())
    np.testing.assert_array_equal(q, q_ref)
    assert q.dtype == np.int8


@pytest.mark.points(1, exercise="quantize_weight")
def test_quantize_weight_4bit_matches_oracle(only):
    only("quantize_weight")
    w = fresh().conv2.weight.data
    q, s = ptq.quantize_weight(w, O.per_channel(), bits=4)
    q_ref, s_ref = O.quantize_weight(w, O.per_channel(), bits=4)
    np.testing.assert_array_equal(s, s_ref)
    np.testing.assert_array_equal(q, q_ref)
    assert q.dtype == np.int8 and q.min() >= -7 and q.max() <= 7
    assert (np.abs(q).reshape(32, -1).max(axis=1) == 7).all()


# ---------------------------------------------------------------- quantize_bias
@pytest.mark.points(1, exercise="quantize_bias")
def test_quantize_bias_saturates_and_matches_oracle(only):
    only("quantize_bias")
    b = ptq.quantize_bias(np.array([1e6, -1e6, 0.25], np.float32), np.float32(1e-3),
                          np.array([1e-6, 1e-6, 1e-3], np.float32))
    assert b.dtype == np.int32 and b.tolist() == [2 ** 31 - 1, -2 ** 31, 250000]
    rng = np.random.default_rng(5)
    bias = rng.normal(0, 0.5, 64).astype(np.float32)
    w_scale = rng.uniform(1e-4, 1e-2, 64).astype(np.float32)
    got = ptq.quantize_bias(bias, np.float32(0.0371), w_scale)
    ref = O.quantize_bias(bias, np.float32(0.0371), w_scale)
    assert got.dtype == np.int32 and got.shape == (64,)
    assert np.abs(got.astype(np.int64) - ref).max() <= 1 and (got == ref).mean() > 0.95


# ---------------------------------------------------------------- integer_linear
@pytest.mark.points(1, exercise="integer_linear")
def test_zero_point_correction_for_every_zero_point(only):
    only("integer_linear")
    rng = np.random.default_rng(3)
    w = rng.integers(-127, 128, (9, 37)).astype(np.int8)
    bias = rng.integers(-5000, 5000, 9).astype(np.int32)
    for zp in (-128, -17, 0, 1, 99, 127):
        x = rng.integers(-128, 128, (4, 37)).astype(np.int8)
        for b in (None, bias):
            acc = ptq.integer_linear(x, zp, w, b)
            assert acc.dtype == np.int32, (zp, acc.dtype)
            np.testing.assert_array_equal(acc, O.integer_linear(x, zp, w, b), err_msg=f"zp={zp}")


@pytest.mark.points(1, exercise="integer_linear")
def test_integer_linear_large_k_stays_exact(only):
    """K = 16384 worst-case magnitudes: |sum| up to 16384*255*127 = 5.3e8 < 2^31."""
    only("integer_linear")
    rng = np.random.default_rng(4)
    x = np.full((2, 16384), 127, np.int8)
    x[1, ::3] = -128
    w = np.where(rng.random((3, 16384)) < 0.9, 127, -127).astype(np.int8)
    w[2] = -127
    acc = ptq.integer_linear(x, -128, w)
    assert acc.dtype == np.int32
    np.testing.assert_array_equal(acc, O.integer_linear(x, -128, w))


@pytest.mark.points(1, exercise="integer_linear")
def test_integer_linear_conv_rows_and_numpy_zero_point(only):
    only("integer_linear")
    rng = np.random.default_rng(8)
    img = rng.integers(-128, 128, (2, 3, 5, 5)).astype(np.int8)
    rows = nn.im2col(img, 3, 3, 1, 1, pad_value=-7)
    w = rng.integers(-127, 128, (4, 27)).astype(np.int8)
    w_view = rng.integers(-127, 128, (27, 4)).astype(np.int8).T           # a non-contiguous view
    for ww in (w, w_view):
        acc = ptq.integer_linear(rows, np.int32(-7), ww, np.arange(4, dtype=np.int32))
        assert acc.dtype == np.int32 and acc.shape == (50, 4)
        np.testing.assert_array_equal(acc, O.integer_linear(rows, -7, ww, np.arange(4)))


# ---------------------------------------------------------------- requantize
@pytest.mark.points(1, exercise="requantize")
def test_requantize_per_channel_matches_oracle(only):
    only("requantize")
    rng = np.random.default_rng(6)
    acc = rng.integers(-3_000_000, 3_000_000, (50, 16)).astype(np.int32)
    mult = rng.uniform(1e-6, 1e-4, 16)
    for zp in (-128, -3, 40):
        y = ptq.requantize(acc, mult, zp)
        assert y.dtype == np.int8 and y.shape == acc.shape
        np.testing.assert_array_equal(y, O.requantize(acc, mult, zp))


@pytest.mark.points(1, exercise="requantize")
def test_requantize_ties_and_low_bits(only):
    only("requantize")
    acc = np.array([1, 3, 5, -1, -3, 7], np.int32)
    assert ptq.requantize(acc, 0.5, 0).tolist() == [0, 2, 2, 0, -2, 4]   # half to even
    assert ptq.requantize(acc, 0.5, 1).tolist() == [1, 3, 3, 1, -1, 5]   # zero point after rounding
    assert ptq.requantize(acc * 10, 1.0, 2, bits=4).tolist() == [7, 7, 7, -8, -8, 7]


# ---------------------------------------------------------------- quantized_layer
@pytest.mark.points(1, exercise="quantized_layer")
def test_from_float_conv_per_tensor(only):
    only("quantized_layer")
    conv = nn.Conv2d(3, 5, 3, stride=2, padding=1, rng=7).eval()
    conv.bias.data[:] = np.linspace(-0.3, 0.3, 5)
    ql = ptq.QuantizedLayer.from_float(conv, O.MinMaxObserver, 8, 8, (0.015625, 12), (0.03125, -20))
    ref = O.QuantizedLayer.from_float(conv, O.MinMaxObserver, 8, 8, (0.015625, 12), (0.03125, -20))
    assert ql.kind == "conv" and (ql.kernel_size, ql.stride, ql.padding) == (3, 2, 1)
    assert ql.w_q.dtype == np.int8 and ql.w_q.shape == (5, 27) and ql.bias_q.dtype == np.int32
    np.testing.assert_array_equal(ql.w_q, ref.w_q)
    np.testing.assert_array_equal(ql.w_scale, ref.w_scale)
    np.testing.assert_array_equal(ql.bias_q, ref.bias_q)
    np.testing.assert_allclose(ql.multiplier, ref.multiplier, rtol=1e-12)
    assert int(ql.in_zp) == 12 and int(ql.out_zp) == -20


@pytest.mark.points(1, exercise="quantized_layer")
def test_static_conv_forward_pads_with_the_zero_point(only):
    only("quantized_layer")
    conv = nn.Conv2d(2, 4, 3, stride=2, padding=1, rng=9).eval()
    conv.bias.data[:] = [0.2, -0.1, 0.0, 0.05]
    ref = O.QuantizedLayer.from_float(conv, O.per_channel, 8, 8, (np.float32(0.01), -128),
                                      (np.float32(0.04), 3))
    layer = ptq.QuantizedLayer("conv", ref.w_q, ref.w_scale, bias_q=ref.bias_q,
                               in_qparams=(ref.in_scale, ref.in_zp), out_qparams=(ref.out_scale, ref.out_zp),
                               multiplier=ref.multiplier, kernel_size=3, stride=2, padding=1)
    x = np.random.default_rng(2).uniform(0, 2.0, (3, 2, 7, 7)).astype(np.float32)
    y = layer(x)
    assert y.dtype == np.float32 and y.shape == (3, 4, 4, 4)
    np.testing.assert_array_equal(y, O.static_forward(ref, x))
    assert np.abs(y - conv(x)).max() < 0.1


@pytest.mark.points(1, exercise="quantized_layer")
def test_from_float_dynamic_keeps_a_float_bias(only):
    only("quantized_layer")
    lin = nn.Linear(5, 3, rng=2).eval()
    lin.bias.data[:] = [1.5, -2.0, 0.25]
    ql = ptq.QuantizedLayer.from_float(lin, O.per_channel, bits=4)
    assert ql.dynamic and ql.bias_q is None and ql.multiplier is None and ql.bits == 4
    assert ql.bias.dtype == np.float32 and ql.bias.tolist() == [1.5, -2.0, 0.25]
    assert np.abs(ql.w_q).max() == 7
    no_bias = ptq.QuantizedLayer.from_float(nn.Linear(5, 3, bias=False, rng=2), O.per_channel)
    assert no_bias.bias is None and no_bias.dynamic


# ---------------------------------------------------------------- calibrate
@pytest.mark.points(1, exercise="calibrate")
def test_observed_passes_values_through(only):
    only("calibrate")
    lin = nn.Linear(4, 3, rng=1).eval()
    obs_in, obs_out = O.MinMaxObserver(), O.MinMaxObserver()
    wrapped = ptq.Observed(lin, obs_in, obs_out)
    x = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
    y = wrapped(x)
    np.testing.assert_array_equal(y, lin(x))
    assert obs_in.calls == 1 and obs_out.calls == 1
    assert obs_in.min_val == x.min() and obs_out.max_val == lin(x).max()


@pytest.mark.points(1, exercise="calibrate")
def test_calibrate_subset_generator_and_arrays(only):
    only("calibrate")
    model, d = fresh("digits_mlp"), digits()
    found = ptq.calibrate(model, (b for b in d.batches("calib", 64)), O.MinMaxObserver, layers=["fc2"])
    assert list(found) == ["fc2"]
    h = np.maximum(model.fc1(model.flatten(d.x_calib)), 0)
    assert found["fc2"][0].min_val == h.min() and found["fc2"][0].max_val == h.max()
    assert found["fc2"][1].calls == 4                                      # 200 images in batches of 64
    found = ptq.calibrate(model, [d.x_calib[:100], d.x_calib[100:]], O.MinMaxObserver)
    assert list(found) == ["fc1", "fc2", "fc3"] and found["fc1"][0].min_val == d.x_calib.min()


# ---------------------------------------------------------------- quantize_model
@pytest.mark.points(1, exercise="quantize_model")
def test_quantize_model_matches_oracle(only):
    only("quantize_model")
    model, calib, d = fresh(), calib_batches(), digits()
    q = ptq.quantize_model(model, calib, **KW)
    ref = O.quantize_model(model, calib, **KW)
    np.testing.assert_array_equal(q(d.x_test[:100]), ref(d.x_test[:100]))


@pytest.mark.points(1, exercise="quantize_model")
def test_activation_qparams_are_asymmetric_signed(only):
    only("quantize_model")
    model, calib = fresh(), calib_batches()
    q = ptq.quantize_model(model, calib, bits=4, act_bits=8, **KW)
    ref = O.quantize_model(model, calib, bits=4, act_bits=8, **KW)
    for name in ("conv1", "conv2", "fc1", "fc2"):
        a, b = q.get_submodule(name), ref.get_submodule(name)
        assert (float(a.in_scale), int(a.in_zp), float(a.out_scale), int(a.out_zp)) == \
            (float(b.in_scale), int(b.in_zp), float(b.out_scale), int(b.out_zp)), name
        assert a.bits == 4 and np.abs(a.w_q).max() <= 7, name
    assert int(q.fc1.in_zp) == -128                     # after a ReLU: min 0 -> the lowest code


@pytest.mark.points(1, exercise="quantize_model")
def test_mlp_per_tensor_int8_accuracy(only):
    only("quantize_model")
    model, d = fresh("digits_mlp"), digits()
    q = ptq.quantize_model(model, calib_batches(), weight_observer=O.MinMaxObserver,
                           activation_observer=O.MinMaxObserver)
    assert all(isinstance(q.get_submodule(n), ptq.QuantizedLayer) for n in ("fc1", "fc2", "fc3"))
    assert accuracy(model, d.x_test, d.y_test) - accuracy(q, d.x_test, d.y_test) <= 0.01


# ---------------------------------------------------------------- dynamic
@pytest.mark.points(1, exercise="dynamic")
def test_dynamic_conv_matches_oracle_and_adapts_to_each_batch(only):
    only("dynamic")
    conv = nn.Conv2d(2, 3, 3, stride=1, padding=1, rng=4).eval()
    conv.bias.data[:] = [0.1, 0.0, -0.1]
    layer = O.QuantizedLayer.from_float(conv, O.per_channel)
    x = np.random.default_rng(3).uniform(0.2, 1.0, (2, 2, 5, 5)).astype(np.float32)
    y = ptq.dynamic_forward(layer, x)
    assert y.dtype == np.float32 and y.shape == (2, 3, 5, 5)
    np.testing.assert_allclose(y, O.dynamic_forward(layer, x), rtol=1e-5, atol=1e-6)
    for factor in (0.01, 100.0):                         # the range follows the batch
        big = ptq.dynamic_forward(layer, x * factor)
        err = np.abs(big - conv(x * factor)).max() / np.abs(conv(x * factor)).max()
        assert err < 0.03, (factor, err)


# ---------------------------------------------------------------- sensitivity
@pytest.mark.points(1, exercise="sensitivity")
def test_sensitivity_reads_a_generator_once_and_passes_options(only):
    only("sensitivity")
    model, d = fresh(), digits()
    ref_logits = model(d.x_calib)

    def fidelity(m):
        return -float(np.mean((m(d.x_calib) - ref_logits) ** 2))

    sens = ptq.sensitivity(model, (b for b in d.batches("calib", 50)), fidelity, bits=3, **KW)
    expect = O.sensitivity(model, list(d.batches("calib", 50)), fidelity, bits=3, **KW)
    assert list(sens) == list(expect)
    for name in expect:
        assert sens[name] == pytest.approx(expect[name], rel=1e-9), name


# ---------------------------------------------------------------- mixed_precision
@pytest.mark.points(1, exercise="mixed_precision")
def test_mixed_precision_greedy_order_with_ties(only, monkeypatch):
    only("mixed_precision")
    model, calib = fresh(), calib_batches()
    fixed = {"conv1": 0.2, "conv2": 0.7, "fc1": 0.7, "fc2": 0.2}
    monkeypatch.setattr(ptq, "sensitivity", lambda m, c, f, **k: dict(fixed))
    q_all = O.quantize_model(model, calib, **KW)
    base = O.model_nbytes(q_all)
    extra = {n: O.model_nbytes(model.get_submodule(n)) - O.model_nbytes(q_all.get_submodule(n)) for n in fixed}
    for budget in (base, base + extra["conv1"], base + extra["conv2"] + extra["fc2"],
                   base + extra["fc1"] + extra["conv1"] + 10):
        mp = ptq.mixed_precision(model, calib, lambda m: 0.0, budget, **KW)
        kept = sorted(n for n in fixed if not isinstance(mp.get_submodule(n), ptq.QuantizedLayer))
        assert kept == sorted(O.mixed_choice(model, q_all, fixed, budget)), (budget, kept)
        assert O.model_nbytes(mp) <= budget


@pytest.mark.points(1, exercise="mixed_precision")
def test_mixed_precision_generous_budget_and_options(only, monkeypatch):
    only("mixed_precision")
    model, calib, d = fresh("digits_mlp"), calib_batches(), digits()
    seen = {}

    def fake_sensitivity(m, c, f, **k):
        seen.update(eval_fn=f, kw=k)
        return {"fc1": 0.1, "fc2": 0.3, "fc3": 0.2}

    def metric(m):
        return 1.0

    monkeypatch.setattr(ptq, "sensitivity", fake_sensitivity)
    mp = ptq.mixed_precision(model, iter(calib), metric, O.model_nbytes(model), bits=4, **KW)
    assert seen["eval_fn"] is metric and seen["kw"].get("bits") == 4
    assert not any(isinstance(m, ptq.QuantizedLayer) for m in mp.modules())
    np.testing.assert_array_equal(mp(d.x_test[:10]), model(d.x_test[:10]))
    q_all = O.quantize_model(model, calib, bits=4, **KW)
    extra = {n: O.model_nbytes(model.get_submodule(n)) - O.model_nbytes(q_all.get_submodule(n))
             for n in ("fc2", "fc3")}
    budget = O.model_nbytes(q_all) + extra["fc2"] + extra["fc3"]
    small = ptq.mixed_precision(model, iter(calib), metric, budget, bits=4, **KW)
    kept = [n for n in ("fc1", "fc2", "fc3") if not isinstance(small.get_submodule(n), ptq.QuantizedLayer)]
    assert kept == ["fc2", "fc3"] and small.fc1.bits == 4 and O.model_nbytes(small) == budget
