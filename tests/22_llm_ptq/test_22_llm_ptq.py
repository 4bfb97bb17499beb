"""Public graded tests of module 22 (llm_ptq). Hidden tests add more cases at grading time.

Layer-level tests run on synthetic layers; the tests on the real model (MiniLM) share one loaded
model per session and need its weights (`tito data minilm`).
"""
import numpy as np
import pytest

import tinyq.llm_ptq as mod
from tito.grading.kit import check_close, check_equal
from _22_helpers import layer, minilm_inputs, minilm_split, needs_minilm, output_mse


# ---------------------------------------------------------------- embedding_metrics
def unit_vectors(degrees):
    angles = np.radians(degrees)
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


@pytest.mark.points(2, exercise="embedding_metrics")
def test_metrics_on_a_known_case(only):
    only("embedding_metrics")
    e = np.random.default_rng(1).normal(size=(12, 5))
    same = mod.embedding_metrics(e, e * 3.0, k=2)               # a scale is not a change
    assert set(same) == {"mean_cos", "top1", "top2", "spearman"} and all(isinstance(v, float) for v in same.values())
    check_close(same["mean_cos"], 1.0, "embedding_metrics(e, 3e, k=2)", "mean_cos", rtol=1e-12)
    assert same["top1"] == 1.0 and same["top2"] == 1.0 and abs(same["spearman"] - 1.0) < 1e-12, same
    # four sentences at 0, 30, 100 and 220 degrees; the "quantized" model moves the last one to 70
    fp32, moved = unit_vectors([0, 30, 100, 220]), unit_vectors([0, 30, 100, 70])
    m = mod.embedding_metrics(fp32, moved, k=2)
    call = "embedding_metrics(angles 0/30/100/220, angles 0/30/100/70, k=2)"
    check_close(m["mean_cos"], (3 + np.cos(np.radians(150))) / 4, call, "mean_cos")
    check_close(m["top1"], 0.75, call, "top1 (sentence 2's nearest becomes 3)")
    check_close(m["top2"], 0.5, call, "top2 (one of two neighbours kept, for every sentence)")
    assert -1.0 <= m["spearman"] < 0.9, f"{call}: spearman {m['spearman']}"


@pytest.mark.points(1, exercise="embedding_metrics")
def test_metrics_refuse_bad_inputs(only):
    only("embedding_metrics")
    e = np.random.default_rng(0).normal(size=(20, 8))
    assert mod.embedding_metrics(e, e + 0.01, k=3)["top3"] > 0.5
    for bad_k in (0, 20):
        with pytest.raises(ValueError):
            mod.embedding_metrics(e, e, k=bad_k)
    with pytest.raises(ValueError):
        mod.embedding_metrics(e, e[:, :7])
    zero = e.copy()
    zero[4] = 0.0
    with pytest.raises(ValueError):
        mod.embedding_metrics(e, zero)


# ---------------------------------------------------------------- outlier_channels
@pytest.mark.points(1, exercise="outlier_channels")
def test_outliers_are_sorted_by_size(only):
    only("outlier_channels")
    absmax = np.ones(64)
    absmax[[5, 40, 17]] = [9.0, 30.0, 6.5]
    check_equal(mod.outlier_channels(absmax, ratio=6.0), np.array([40, 5, 17], np.int64), "outlier_channels(absmax, 6.0)")
    check_equal(mod.outlier_channels(absmax, ratio=10.0), np.array([40], np.int64), "outlier_channels(absmax, 10.0)")
    with pytest.raises(ValueError):
        mod.outlier_channels(np.array([]))


@needs_minilm
@pytest.mark.points(1, exercise="outlier_channels")
def test_minilm_ffn_inputs_share_channel_99(only):
    only("outlier_channels")
    model = minilm_split()[0]
    _, absmax = minilm_inputs()
    for name in model.linears:
        if name.endswith("intermediate.dense"):
            found = mod.outlier_channels(absmax[name], ratio=6.0)
            assert 99 in found[:2], f"{name}: outlier channels {found.tolist()}, expected channel 99 among the first"


# ---------------------------------------------------------------- fake_quant_activations
@pytest.mark.points(2, exercise="fake_quant_activations")
def test_activation_grids(only):
    only("fake_quant_activations")
    x = np.array([[0.5, -2.0, 30.0], [0.04, 0.05, -0.06]])
    got = mod.fake_quant_activations(x, scale=0.1)
    assert got.dtype == np.float32 and got.shape == x.shape
    check_close(got, np.array([[0.5, -2.0, 12.7], [0.0, 0.0, -0.1]], np.float32), "fake_quant_activations(x, scale=0.1)",
                atol=1e-6)
    dyn = mod.fake_quant_activations(x)                   # per token: 30/127 and 0.06/127
    step = np.array([[30.0 / 127], [0.06 / 127]])
    check_close(dyn, (np.round(x / step) * step).astype(np.float32), "fake_quant_activations(x) (per token)", rtol=1e-6)
    check_equal(mod.fake_quant_activations(np.zeros((2, 3))), np.zeros((2, 3), np.float32), "fake_quant_activations(zeros)")
    four = mod.fake_quant_activations(x, scale=1.0, bits=4)
    check_close(four[0], np.array([0.0, -2.0, 7.0], np.float32), "fake_quant_activations(x, 1.0, bits=4)", "row 0")


@pytest.mark.points(1, exercise="fake_quant_activations")
def test_activation_quant_refuses_bad_inputs(only):
    only("fake_quant_activations")
    x = np.ones((2, 2))
    check_equal(mod.fake_quant_activations(x, 0.5), x.astype(np.float32), "fake_quant_activations(ones, 0.5)")
    for bad in (0.0, -1.0, np.nan, np.inf):
        with pytest.raises(ValueError):
            mod.fake_quant_activations(x, bad)
    with pytest.raises(ValueError):
        mod.fake_quant_activations(np.ones(3), 0.5)


# ---------------------------------------------------------------- smooth_scales, smooth_layernorm
@pytest.mark.points(1, exercise="smooth_scales")
def test_smooth_scales_formula(only):
    only("smooth_scales")
    act = np.array([16.0, 1.0, 0.0, 4.0])
    w1 = np.array([[1.0, 4.0, 1.0, 0.0], [-0.5, 1.0, 2.0, 0.0]])
    w2 = np.array([[2.0, -1.0, 1.0, 0.0]])
    s = mod.smooth_scales(act, [w1, w2], alpha=0.5)
    assert s.dtype == np.float32 and s.shape == (4,)
    check_close(s, np.array([np.sqrt(16 / 2), np.sqrt(1 / 4), 1.0, 1.0], np.float32), "smooth_scales(act, [w1, w2], 0.5)")
    check_close(mod.smooth_scales(act, [w1], alpha=0.75), np.array([8.0, 4 ** -0.25, 1.0, 1.0], np.float32),
                "smooth_scales(act, [w1], 0.75)")
    with pytest.raises(ValueError):
        mod.smooth_scales(act, [w1], alpha=1.5)


@pytest.mark.points(1, exercise="smooth_layernorm")
def test_smoothing_is_exact_in_float(only):
    only("smooth_layernorm")
    rng = np.random.default_rng(4)
    z = rng.normal(size=(64, 32))
    normed = (z - z.mean(1, keepdims=True)) / z.std(1, keepdims=True)
    gamma, beta = rng.normal(size=32), rng.normal(size=32)
    weights = [rng.normal(size=(16, 32)), rng.normal(size=(48, 32))]
    s = rng.uniform(0.05, 20.0, size=32)
    g, b, folded = mod.smooth_layernorm(gamma, beta, weights, s)
    assert len(folded) == 2 and g.dtype == np.float32 and folded[1].shape == (48, 32)
    for w, wf in zip(weights, folded):
        check_close((normed * g + b) @ wf.T, (normed * gamma + beta) @ w.T, "LN'(z) @ W'.T against LN(z) @ W.T",
                    rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError):
        mod.smooth_layernorm(gamma, beta, weights, np.where(np.arange(32) == 3, 0.0, s))


@needs_minilm
@pytest.mark.points(2, exercise="smooth_layernorm")
def test_smoothquant_leaves_minilm_unchanged_in_fp32(only):
    only("smooth_layernorm")
    model, _, evaluation, reference = minilm_split()
    _, absmax = minilm_inputs()
    for alpha in (0.5, 0.9):
        smoothed = mod.smoothquant_params(model, absmax, alpha)
        assert any(k.endswith(".branch.weight") for k in smoothed), "the LayerNorm branches must be replaced"
        got = model.encode(evaluation[:40], params=smoothed)
        err = float(np.abs(got - reference[:40]).max())
        assert err < 2e-5, f"SmoothQuant (alpha={alpha}) changed the FP32 embeddings by up to {err:.2g}"


@needs_minilm
@pytest.mark.points(2, exercise="smooth_scales")
def test_smoothquant_beats_plain_w8a8_on_minilm(only):
    only("smooth_scales")
    model, calibration, evaluation, reference = minilm_split()
    _, absmax = minilm_inputs()
    plain = mod.evaluate(model, evaluation, reference, mod.w8a8_params(model), mod.act_quant_hook(absmax))
    smoothed = mod.smoothquant_params(model, absmax, 0.75)
    ranges = mod.activation_ranges(model, calibration, params=smoothed)
    smooth = mod.evaluate(model, evaluation, reference, mod.w8a8_params(model, smoothed), mod.act_quant_hook(ranges))
    better = (smooth["mean_cos"] > plain["mean_cos"] and smooth["spearman"] > plain["spearman"]
              and smooth["top10"] >= plain["top10"])
    assert better, (f"SmoothQuant alpha=0.75 (cos {smooth['mean_cos']:.4f}, spearman {smooth['spearman']:.4f}, "
                    f"top-10 {smooth['top10']:.3f}) should beat plain W8A8 (cos {plain['mean_cos']:.4f}, "
                    f"spearman {plain['spearman']:.4f}, top-10 {plain['top10']:.3f})")


# ---------------------------------------------------------------- rtn_quantize
@pytest.mark.points(2, exercise="rtn_quantize")
def test_rtn_grid_and_scales(only):
    only("rtn_quantize")
    w = np.array([[0.1, -0.7, 0.35, 0.0], [0.0, 0.0, 1.0, -0.6]], np.float32)
    q = mod.rtn_quantize(w, bits=4, group_size=2)
    assert q.dtype == np.float32 and q.shape == w.shape
    expected = np.array([[0.1, -0.7, 0.35, 0.0], [0.0, 0.0, 1.0, -4 / 7]], np.float32)
    assert np.allclose(q, expected, atol=1e-7), f"rtn_quantize(2x4, group_size=2): got {q}"
    w, _ = layer(0)
    q = mod.rtn_quantize(w, bits=4, group_size=128)
    groups = np.asarray(w, np.float64).reshape(64, 2, 128)
    scale = (np.abs(groups).max(axis=2, keepdims=True) / 7).astype(np.float32)
    codes = np.asarray(q, np.float64).reshape(64, 2, 128) / scale
    assert np.allclose(codes, np.round(codes), atol=1e-4), "each weight must be an integer times its group's scale"
    assert np.abs(codes).max() <= 7 + 1e-4 and np.all(np.abs(q - w) <= scale.reshape(64, 2).repeat(128, 1) / 2 + 1e-7)


@pytest.mark.points(1, exercise="rtn_quantize")
def test_rtn_bits_and_per_channel(only):
    only("rtn_quantize")
    w, _ = layer(1)
    errors = [np.abs(mod.rtn_quantize(w, bits=b, group_size=64) - w).mean() for b in (3, 4, 8)]
    assert errors[0] > errors[1] > errors[2] > 0, f"more bits, less error: {errors}"
    q = mod.rtn_quantize(w, bits=8, group_size=None)
    scale = np.abs(w).max(axis=1, keepdims=True).astype(np.float64) / 127
    assert np.all(np.abs(q - w) <= scale / 2 + 1e-6), "group_size=None: one scale per row"


@pytest.mark.points(1, exercise="rtn_quantize")
def test_rtn_refuses_bad_inputs(only):
    only("rtn_quantize")
    w, _ = layer(2)
    check_equal(mod.rtn_quantize(np.zeros((2, 4), np.float32), 4, 2), np.zeros((2, 4), np.float32),
                "rtn_quantize(zeros 2x4, 4, 2)")
    with pytest.raises(ValueError, match="group"):
        mod.rtn_quantize(w, group_size=100)
    bad = w.copy()
    bad[3, 5] = np.nan
    with pytest.raises(ValueError):
        mod.rtn_quantize(bad)
    bad[3, 5] = np.inf
    with pytest.raises(ValueError):
        mod.rtn_quantize(bad)


# ---------------------------------------------------------------- awq_quantize
@pytest.mark.points(2, exercise="awq_quantize")
def test_awq_beats_rtn_on_an_outlier_layer(only):
    only("awq_quantize")
    w, x = layer(3, outlier=(17, 25.0))
    w_eff, s = mod.awq_quantize(w, x, bits=4, group_size=128)
    assert w_eff.dtype == np.float32 and w_eff.shape == w.shape
    assert s.dtype == np.float32 and s.shape == (w.shape[1],)
    rtn = output_mse(mod.rtn_quantize(w, 4, 128), w, x)
    awq = output_mse(w_eff, w, x)
    assert awq < 0.9 * rtn, f"AWQ's output MSE {awq:.3g} should be clearly below RTN's {rtn:.3g}"
    assert int(np.argmax(s)) == 17, "the outlier channel should get the largest scale"


@pytest.mark.points(1, exercise="awq_quantize")
def test_awq_is_rtn_of_the_scaled_weights(only):
    only("awq_quantize")
    w, x = layer(4, outlier=(3, 10.0))
    w_eff, s = mod.awq_quantize(w, x, bits=4, group_size=64, n_grid=8)
    expected = (mod.rtn_quantize(w * s, 4, 64) / s).astype(np.float32)
    assert np.allclose(w_eff, expected, rtol=1e-6, atol=1e-7), "w_effective must be Q(w * s) / s"
    w1, s1 = mod.awq_quantize(w, x, n_grid=1, group_size=64)
    check_equal(s1, np.ones(w.shape[1], np.float32), "awq_quantize(w, x, n_grid=1)", "s")
    with pytest.raises(ValueError):
        mod.awq_quantize(w, x[:, :100])


@needs_minilm
@pytest.mark.points(2, exercise="awq_quantize")
def test_awq_below_rtn_on_held_out_minilm_tokens(only):
    only("awq_quantize")
    model = minilm_split()[0]
    rows, _ = minilm_inputs()
    for name in [n for n in model.linears if n.startswith("encoder.layer.2.")]:
        w, x = model.params[name + ".weight"], rows[name].astype(np.float64)
        w_eff, _ = mod.awq_quantize(w, x[:512], 4, 128)
        rtn, awq = output_mse(mod.rtn_quantize(w, 4, 128), w, x[512:]), output_mse(w_eff, w, x[512:])
        assert awq <= 1.02 * rtn, f"{name}: AWQ output MSE {awq:.3g} on held-out tokens, RTN {rtn:.3g}"
        if name.endswith("intermediate.dense"):
            assert awq < 0.9 * rtn, f"{name} (outlier channel 99): AWQ {awq:.3g} should clearly beat RTN {rtn:.3g}"


# ---------------------------------------------------------------- gptq_quantize
@pytest.mark.points(2, exercise="gptq_quantize")
def test_gptq_identity_hessian_is_rtn(only):
    only("gptq_quantize")
    w, _ = layer(5)
    for bits, group in ((4, 128), (3, 64)):
        check_equal(mod.gptq_quantize(w, np.eye(256), bits=bits, group_size=group),
                    mod.rtn_quantize(w, bits, group), f"gptq_quantize(w, eye(256), bits={bits}, group_size={group})")


@pytest.mark.points(2, exercise="gptq_quantize")
def test_gptq_beats_rtn_on_correlated_inputs(only):
    only("gptq_quantize")
    w, x = layer(6)
    q = mod.gptq_quantize(w, x, bits=4, group_size=128)
    assert q.dtype == np.float32 and q.shape == w.shape
    rtn, gptq = output_mse(mod.rtn_quantize(w, 4, 128), w, x), output_mse(q, w, x)
    assert gptq < 0.75 * rtn, f"GPTQ's output MSE {gptq:.3g} should be well below RTN's {rtn:.3g}"
    scale = (np.abs(q).reshape(64, 2, 128).max(axis=2, keepdims=True) / 7).astype(np.float64)
    codes = np.asarray(q, np.float64).reshape(64, 2, 128) / np.where(scale > 0, scale, 1)
    assert np.allclose(codes, np.round(codes), atol=1e-3), "GPTQ's weights must lie on a 4-bit grid per group"


@pytest.mark.points(1, exercise="gptq_quantize")
def test_gptq_refuses_bad_inputs(only):
    only("gptq_quantize")
    w, x = layer(7)
    assert mod.gptq_quantize(w, x, group_size=64).shape == w.shape
    with pytest.raises(ValueError, match="group"):
        mod.gptq_quantize(w, x, group_size=100)
    bad = w.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError):
        mod.gptq_quantize(bad, x)
    rank_one = np.outer(np.ones(8), np.arange(256.0))          # 2/n X^T X has rank 1
    with pytest.raises(ValueError, match="positive definite"):
        mod.gptq_quantize(w, rank_one, damp=0.0)


@needs_minilm
@pytest.mark.points(3, exercise="gptq_quantize")
def test_gptq_beats_rtn_on_minilm_end_to_end(only):
    only("gptq_quantize")
    model, _, evaluation, reference = minilm_split()
    rows, _ = minilm_inputs()
    gptq = {n + ".weight": mod.gptq_quantize(model.params[n + ".weight"], rows[n], 4, 128) for n in model.linears}
    rtn = {n + ".weight": mod.rtn_quantize(model.params[n + ".weight"], 4, 128) for n in model.linears}
    for n in model.linears:
        w, x = model.params[n + ".weight"], rows[n].astype(np.float64)
        ours, base = output_mse(gptq[n + ".weight"], w, x), output_mse(rtn[n + ".weight"], w, x)
        assert ours < base, f"{n}: GPTQ output MSE {ours:.3g} is not below RTN's {base:.3g}"
    g = mod.embedding_metrics(reference, model.encode(evaluation, params=gptq))
    r = mod.embedding_metrics(reference, model.encode(evaluation, params=rtn))
    assert g["mean_cos"] > r["mean_cos"] and g["top10"] >= r["top10"], (
        f"W4 g128: GPTQ (cos {g['mean_cos']:.4f}, top-10 {g['top10']:.3f}) should beat "
        f"RTN (cos {r['mean_cos']:.4f}, top-10 {r['top10']:.3f})")
