"""Public graded tests of module 22 (llm_ptq). Hidden tests add more cases at grading time.

Layer-level tests run on synthetic layers; the tests on the real model (MiniLM) share one loaded
model per session and need its weights (`tito data minilm`).
"""
import numpy as np
import pytest

import tinyq.llm_ptq as mod
from tito.grading.kit import check_equal
from _22_helpers import layer, output_mse


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
