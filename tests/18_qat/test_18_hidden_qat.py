"""Hidden graded tests of module 18 (removed from the student release)."""
import copy

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import _18_hidden_oracle as O
import tinyq.qat as tq
from tinyq import nn
from _18_helpers import RECIPE, digits, fresh, roundtrip


def _prepare_oracle(bits=4, **kw):
    return O.prepare_qat(fresh(), weight_bits=bits, **kw)


# ---------------------------------------------------------------- fake_quantize
@st.composite
def fq_cases(draw):
    bits = draw(st.integers(2, 8))
    signed = draw(st.booleans())
    narrow = signed and draw(st.booleans())
    qmin, qmax = O.qrange(bits, signed, narrow)
    scale = np.float32(draw(st.floats(1e-3, 10.0, allow_subnormal=False)))
    zp = draw(st.integers(qmin, qmax))
    span = float(np.float32(float(scale) * (qmax - qmin) * 1.5))
    values = draw(st.lists(st.floats(-span, span, allow_nan=False, allow_subnormal=False, width=32),
                           min_size=1, max_size=40))
    return bits, signed, narrow, scale, zp, np.array(values, np.float32)


@pytest.mark.points(1, exercise="fake_quantize")
@settings(max_examples=60, deadline=None)
@given(case=fq_cases())
def test_fake_quantize_random_cases_match_module15(case):
    bits, signed, narrow, scale, zp, x = case
    qmin, qmax = O.qrange(bits, signed, narrow)
    got = tq.fake_quantize(x, scale, zp, qmin, qmax)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, roundtrip(x, scale, zp, bits, signed, narrow))


@pytest.mark.points(1, exercise="fake_quantize")
def test_fake_quantize_rejects_bad_input(only):
    only("fake_quantize")
    np.testing.assert_array_equal(tq.fake_quantize([1.0, -1.0], 0.5, 0, -8, 7), [1.0, -1.0])
    with pytest.raises(ValueError) as err:
        tq.fake_quantize(np.array([1.0, np.nan, np.inf, 2.0, -np.inf]), 0.5, 0, -8, 7)
    assert "3" in str(err.value), "say how many values are bad"
    for scale in (0.0, -0.5, np.inf, np.nan):
        with pytest.raises(ValueError):
            tq.fake_quantize([1.0], scale, 0, -8, 7)
    with pytest.raises(ValueError):
        tq.fake_quantize([1.0], 0.5, 9, -8, 7)                      # zero point outside the range
    with pytest.raises(ValueError):
        tq.fake_quantize(np.ones((2, 3)), np.ones(2), np.zeros(2), -8, 7, axis=1)   # 2 scales, 3 channels


# ---------------------------------------------------------------- fake_quantize_grad
@pytest.mark.points(1, exercise="fake_quantize_grad")
def test_ste_random_masks_match_oracle(only):
    only("fake_quantize_grad")
    rng = np.random.default_rng(31)
    for axis, shape in ((None, (40, 7)), (0, (6, 30)), (1, (4, 5, 3, 3)), (-1, (9, 8))):
        x = rng.normal(0, 2, shape).astype(np.float32)
        g = rng.normal(size=shape).astype(np.float32)
        n = 1 if axis is None else shape[axis]
        scale = rng.uniform(0.01, 0.2, n).astype(np.float32)
        zp = rng.integers(-20, 20, n).astype(np.int32)
        if axis is None:
            scale, zp = scale[0], zp[0]
        got = tq.fake_quantize_grad(x, g, scale, zp, -64, 63, axis=axis)
        np.testing.assert_array_equal(got, O.fake_quantize_grad(x, g, scale, zp, -64, 63, axis=axis))
        assert 0 < np.count_nonzero(got == 0) < got.size, "the case should mix passed and blocked values"
    with pytest.raises(ValueError):
        tq.fake_quantize_grad(np.ones(4), np.ones(3), 1.0, 0, -8, 7)


# ---------------------------------------------------------------- FakeQuantize
@pytest.mark.points(1, exercise="fake_quantize_module")
def test_fakequantize_backward_uses_the_forward_qparams(only):
    only("fake_quantize_module")
    rng = np.random.default_rng(32)
    w = rng.normal(size=(6, 20)).astype(np.float32)
    fq = tq.FakeQuantize(bits=4, symmetric=True, axis=0, observer=O.MovingAverageMinMaxObserver(1.0, axis=0))
    fq(w)
    s, z = np.array(fq.scale), np.array(fq.zero_point)
    fq.disable_observer()
    w2 = 1.5 * w                                                    # some codes beyond the frozen range
    y = fq(w2)
    np.testing.assert_array_equal(y, O.fake_quantize(w2, s, z, -7, 7, axis=0))
    g = rng.normal(size=w.shape).astype(np.float32)
    want = O.fake_quantize_grad(w2, g, s, z, -7, 7, axis=0)
    assert 0 < np.count_nonzero(want == 0) < want.size
    np.testing.assert_array_equal(fq.backward(g), want)


@pytest.mark.points(1, exercise="fake_quantize_module")
def test_fakequantize_per_channel_moving_average(only):
    only("fake_quantize_module")
    rng = np.random.default_rng(33)
    fq = tq.FakeQuantize(bits=8, symmetric=False, axis=1, observer=O.MovingAverageMinMaxObserver(0.1, axis=1))
    ref = O.MovingAverageMinMaxObserver(0.1, axis=1)
    for k in range(3):
        x = rng.normal(k, 1 + k, (4, 3, 5, 5)).astype(np.float32)
        y = fq(x)
        ref(x)
        s, z = ref.calculate_qparams(bits=8, symmetric=False, signed=True)
        assert fq.scale.shape == (3,) and fq.zero_point.shape == (3,)
        np.testing.assert_array_equal(fq.scale, s)
        np.testing.assert_array_equal(fq.zero_point, z)
        np.testing.assert_array_equal(y, O.fake_quantize(x, s, z, -128, 127, axis=1))


# ---------------------------------------------------------------- lsq_grad
@pytest.mark.points(1, exercise="lsq_grad")
def test_lsq_grad_per_channel_matches_oracle(only):
    only("lsq_grad")
    rng = np.random.default_rng(34)
    for axis, shape in ((None, (50,)), (0, (4, 3, 3, 3)), (1, (8, 6)), (-1, (5, 7))):
        x = rng.normal(0, 1, shape).astype(np.float32)
        g = rng.normal(size=shape).astype(np.float32)
        n = 1 if axis is None else shape[axis]
        s = rng.uniform(0.05, 0.3, n).astype(np.float32)
        z = rng.integers(-3, 4, n).astype(np.int32)
        if axis is None:
            s, z = s[0], z[0]
        gx, gs, gz = tq.lsq_grad(x, g, s, z, -8, 7, grad_scale=0.3, axis=axis)
        ox, os_, oz = O.lsq_grad(x, g, s, z, -8, 7, grad_scale=0.3, axis=axis)
        np.testing.assert_array_equal(gx, ox)
        assert np.shape(gs) == np.shape(os_) and np.shape(gz) == np.shape(oz)
        np.testing.assert_allclose(gs, os_, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(gz, oz, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- LSQFakeQuantize
@pytest.mark.points(1, exercise="lsq_fake_quantize")
def test_lsq_learns_a_better_step_size(only):
    """Gradient descent on the step size alone (MSE of the fake-quantized values) moves it from the
    min-max range to near the MSE-optimal step."""
    only("lsq_fake_quantize")
    x = np.random.default_rng(21).normal(size=4096).astype(np.float32)
    mse = lambda s: float(np.mean((O.fake_quantize(x, s, 0, -3, 3) - x) ** 2))
    lsq = tq.LSQFakeQuantize(bits=3, symmetric=True)
    lsq(x)
    start = mse(float(lsq.scale.data))
    for _ in range(300):
        y = lsq(x)
        lsq.scale.grad = np.zeros_like(lsq.scale.data)
        lsq.backward((2 * (y - x) / x.size).astype(np.float32))
        lsq.scale.data = lsq.scale.data - 2.0 * lsq.scale.grad
    learned = mse(float(lsq.scale.data))
    best = min(mse(s) for s in np.linspace(0.2, 1.5, 261))
    assert learned < 0.4 * start and learned < 1.05 * best, (start, learned, best)


@pytest.mark.points(1, exercise="lsq_fake_quantize")
def test_lsq_switches_and_positive_step(only):
    only("lsq_fake_quantize")
    x = np.linspace(-2, 2, 41, dtype=np.float32)
    lsq = tq.LSQFakeQuantize(bits=4, symmetric=True)
    lsq(x)
    lsq.scale.data[...] = -1.0                                      # an optimiser step overshot
    y = lsq(x)
    assert np.all(np.isfinite(y))
    assert float(lsq.qparams()[0]) > 0
    lsq.scale.data[...] = 0.25
    lsq.disable_fake_quant()
    np.testing.assert_array_equal(lsq(x), x)
    lsq.scale.grad = np.zeros_like(lsq.scale.data)
    g = np.linspace(1, 2, 41, dtype=np.float32)
    np.testing.assert_array_equal(lsq.backward(g), g)
    assert float(lsq.scale.grad) == 0.0
    lsq.enable_fake_quant()
    lsq.eval()
    np.testing.assert_array_equal(lsq(x), O.fake_quantize(x, np.float32(0.25), 0, -7, 7))


# ---------------------------------------------------------------- QATLayer
@pytest.mark.points(1, exercise="qat_layer")
def test_qat_layer_weight_grad_is_the_ste_of_the_fake_quantized_weights_grad(only):
    only("qat_layer")
    rng = np.random.default_rng(35)
    layer = nn.Linear(8, 5, rng=3)
    wfq = O.FakeQuantize(4, True, None, O.MovingAverageMinMaxObserver(1.0))
    ql = tq.QATLayer(layer, wfq, O.FakeQuantize(8), O.FakeQuantize(8))
    x = rng.normal(size=(16, 8)).astype(np.float32)
    ql(x)
    wfq.disable_observer()
    layer.weight.data = layer.weight.data * np.float32(1.6)          # now some weights lie beyond the range
    layer.weight.grad = np.zeros_like(layer.weight.data)
    y = ql(x)
    g = rng.normal(size=y.shape).astype(np.float32)
    ql.backward(g)
    s_w, z_w = wfq.qparams()
    x_hat = O.fake_quantize(x, *ql.in_fq.qparams(), -128, 127)
    g_y = O.fake_quantize_grad(x_hat @ O.fake_quantize(layer.weight.data, s_w, z_w, -7, 7).T + layer.bias.data,
                               g, *ql.out_fq.qparams(), -128, 127)
    want = O.fake_quantize_grad(layer.weight.data, g_y.T @ x_hat, s_w, z_w, -7, 7)
    assert 0 < np.count_nonzero(want == 0) < want.size
    np.testing.assert_allclose(layer.weight.grad, want, rtol=1e-5, atol=1e-5)


@pytest.mark.points(1, exercise="qat_layer")
def test_qat_layer_accumulates_and_gives_the_float_weight_back(only):
    only("qat_layer")
    rng = np.random.default_rng(36)
    layer = nn.Conv2d(3, 4, 3, padding=1, rng=4)
    ql = tq.QATLayer(layer, O.FakeQuantize(4, True, 0, O.MovingAverageMinMaxObserver(1.0, 0)),
                     O.FakeQuantize(8), O.FakeQuantize(8))
    x = rng.normal(size=(2, 3, 6, 6)).astype(np.float32)
    w0 = layer.weight.data.copy()
    y = ql(x)
    g = rng.normal(size=y.shape).astype(np.float32)
    layer.weight.grad = np.zeros_like(w0)
    layer.bias.grad = np.zeros(4, np.float32)
    dx1 = ql.backward(g)
    once_w, once_b = layer.weight.grad.copy(), layer.bias.grad.copy()
    assert layer.weight.data is not None and np.array_equal(layer.weight.data, w0)
    assert not np.array_equal(layer.weight.data, ql.weight_fq(w0)), "the float weight, not the fake-quantized one"
    ql(x)
    dx2 = ql.backward(g)
    np.testing.assert_allclose(layer.weight.grad, 2 * once_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.bias.grad, 2 * once_b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx1, dx2, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(layer.weight.data, w0)


# ---------------------------------------------------------------- prepare_qat
@pytest.mark.points(1, exercise="prepare_qat")
def test_prepare_qat_with_lsq(only):
    only("prepare_qat")
    model = fresh()
    q = tq.prepare_qat(model, weight_bits=3, act_bits=6, lsq=True)
    for name, out in (("conv1", 16), ("conv2", 32), ("fc1", 64), ("fc2", 10)):
        ql = q.get_submodule(name)
        assert isinstance(ql, tq.QATLayer)
        assert isinstance(ql.weight_fq, tq.LSQFakeQuantize) and ql.weight_fq.bits == 3
        assert ql.weight_fq.symmetric and ql.weight_fq.axis == 0 and ql.weight_fq.scale.data.shape == (out,)
        for a in (ql.in_fq, ql.out_fq):
            assert isinstance(a, tq.LSQFakeQuantize) and a.bits == 6 and not a.symmetric and a.axis is None
    names = [n for n, _ in q.named_parameters()]
    assert len(names) == 8 + 4 + 8, names                             # weights+biases, 4 weight steps, 8 activation steps
    y = q(digits().x_calib)
    assert y.shape == (200, 10) and np.all(np.isfinite(y))


# ---------------------------------------------------------------- convert_qat
@pytest.mark.points(1, exercise="convert_qat")
def test_convert_qat_uses_the_trained_qparams(only):
    only("convert_qat")
    d = digits()
    q = _prepare_oracle(bits=4)
    O.train_qat(q, d.x_calib, d.y_calib, epochs=1, batch_size=50, lr=1e-3)
    c = tq.convert_qat(q)
    for name in ("conv1", "conv2", "fc1", "fc2"):
        ql, ql_int = q.get_submodule(name), c.get_submodule(name)
        s_w = ql.weight_fq.qparams()[0]
        np.testing.assert_array_equal(ql_int.w_scale, s_w)
        w = ql.layer.weight.data.reshape(len(s_w), -1)
        np.testing.assert_array_equal(ql_int.w_q.reshape(len(s_w), -1), np.clip(np.round(w / s_w[:, None]), -7, 7))
        assert ql_int.bits == 4 and ql_int.act_bits == 8
        s_in, z_in = ql.in_fq.qparams()
        s_out, z_out = ql.out_fq.qparams()
        assert np.float32(ql_int.in_scale) == np.float32(s_in) and int(ql_int.in_zp) == int(z_in)
        assert np.float32(ql_int.out_scale) == np.float32(s_out) and int(ql_int.out_zp) == int(z_out)


@pytest.mark.points(1, exercise="convert_qat")
def test_convert_qat_per_tensor_and_lsq_models(only):
    only("convert_qat")
    d = digits()
    for kw in (dict(per_channel=False), dict(lsq=True)):
        q = _prepare_oracle(bits=4, **kw)
        for xb, _ in d.batches("calib", 50):
            q(xb)
        q.eval()
        y_qat = q(d.x_test)
        c = tq.convert_qat(q)
        assert all(isinstance(c.get_submodule(n), tq.QuantizedLayer) for n in ("conv1", "conv2", "fc1", "fc2"))
        y_int = c(d.x_test)
        assert (y_int.argmax(axis=1) == y_qat.argmax(axis=1)).mean() >= 0.99, kw
    bad = _prepare_oracle(bits=8)
    bad.fc1.weight_fq = O.FakeQuantize(8, symmetric=False)
    bad(d.x_calib)
    with pytest.raises(ValueError):
        tq.convert_qat(bad)


# ---------------------------------------------------------------- train_qat
@pytest.mark.points(1, exercise="train_qat")
def test_train_qat_history_and_observer_freeze(only):
    only("train_qat")
    d = digits()
    q = _prepare_oracle(bits=8)
    seen = []

    def probe(model):
        assert not model.training, "eval_fn runs in eval mode"
        seen.append(float(model.fc1.in_fq.scale))
        return float(model.fc1.in_fq.scale)

    hist = tq.train_qat(q, d.x_calib, d.y_calib, epochs=2, lr=1e-4, batch_size=50, seed=1,
                        freeze_observers_after=3, eval_fn=probe, eval_every=1)
    assert len(hist["loss"]) == 8 and all(np.isfinite(hist["loss"]))
    assert hist["eval_step"] == list(range(1, 9)) and hist["eval"] == seen
    assert len(set(seen[:3])) == 3, "before the freeze the ranges move"
    assert len(set(seen[2:])) == 1, "after step 3 the observers are frozen"
    assert not q.training and not q.fc1.in_fq.observer_enabled
    hist = tq.train_qat(_prepare_oracle(bits=8), d.x_calib, d.y_calib, epochs=1, batch_size=64,
                        eval_fn=lambda m: 0.5, eval_every=3)
    assert hist["eval_step"] == [3, 4] and len(hist["loss"]) == 4


@pytest.mark.points(1, exercise="train_qat")
def test_qat_at_w4a8_is_within_a_point_and_no_worse_than_ptq(only):
    only("train_qat")
    from tinyq.ptq import quantize_model
    d = digits()
    fp32 = fresh()
    correct = lambda m: int((np.asarray(m(d.x_test)).argmax(axis=1) == d.y_test).sum())
    n_fp32 = correct(fp32)
    n_ptq = correct(quantize_model(fp32, list(d.batches("calib", 50)), bits=4))
    q = O.prepare_qat(fp32, weight_bits=4, act_bits=8)
    tq.train_qat(q, d.x_train, d.y_train, **RECIPE)
    n_qat = correct(O.convert_qat(q))
    assert n_qat >= n_ptq and n_fp32 - n_qat <= len(d.y_test) // 100, (n_fp32, n_ptq, n_qat)
