"""Hidden graded tests of module 22 (llm_ptq): run by the instructor, absent from the student
release. They compare the learner's results with the oracle in _22_hidden_oracle.py."""
import numpy as np
import pytest

import tinyq.llm_ptq as mod
from tito.grading import kit
from _22_helpers import layer, output_mse

oracle = kit.load_oracle("_22_hidden_oracle")     # always here: it is removed with this file


@pytest.mark.points(1, exercise="rtn_quantize")
def test_rtn_matches_the_oracle(only):
    only("rtn_quantize")
    for seed, bits, group in ((10, 4, 128), (11, 3, 32), (12, 8, 256), (13, 2, 16)):
        w, _ = layer(seed)
        kit.check_equal(mod.rtn_quantize(w, bits, group), oracle.rtn_quantize(w, bits, group),
                        f"rtn_quantize(layer {seed}, bits={bits}, group_size={group})")


@pytest.mark.points(1, exercise="awq_quantize")
def test_awq_matches_the_oracle(only):
    only("awq_quantize")
    w, x = layer(14, outlier=(40, 20.0))
    got, want = mod.awq_quantize(w, x, 4, 128, 10), oracle.awq_quantize(w, x, 4, 128, 10)
    kit.check_close(got[1], want[1], "awq_quantize(layer 14, n_grid=10)", "s", rtol=1e-5)
    assert output_mse(got[0], w, x) <= output_mse(want[0], w, x) * (1 + 1e-6)


@pytest.mark.points(2, exercise="gptq_quantize")
def test_gptq_matches_the_obq_formulation(only):
    only("gptq_quantize")
    w, x = layer(15, out_features=32)
    x[:, 9] = 0.0                                           # a dead input
    for group, block, act_order in ((128, 128, False), (64, 48, False), (64, 128, True)):
        got = mod.gptq_quantize(w, x, 4, group, block_size=block, act_order=act_order)
        want = oracle.gptq_quantize(w, x, 4, group, act_order=act_order)
        assert np.mean(got != want) < 2e-3, (f"gptq_quantize(group_size={group}, block_size={block}, "
                                             f"act_order={act_order}): {np.mean(got != want):.2%} of the "
                                             "weights differ from the column-by-column OBQ form")
        assert np.all(got[:, 9] == 0), "a dead input's weights are set to 0"


@pytest.mark.points(1, exercise="embedding_metrics")
def test_metrics_match_the_oracle(only):
    only("embedding_metrics")
    rng = np.random.default_rng(20)
    a = rng.normal(size=(150, 24))
    b = a + rng.normal(scale=0.4, size=a.shape)
    for k in (1, 5, 10):
        got, want = mod.embedding_metrics(a, b, k=k), oracle.embedding_metrics(a, b, k=k)
        assert set(got) == set(want), f"embedding_metrics(k={k}): keys {sorted(got)}"
        for key in want:
            kit.check_close(got[key], want[key], f"embedding_metrics(150 random pairs, k={k})", key, rtol=1e-9)
    kit.check_equal(a.shape, (150, 24), "embedding_metrics", "the caller's array left unchanged (shape)")


@pytest.mark.points(1, exercise="outlier_channels")
def test_outliers_match_the_oracle(only):
    only("outlier_channels")
    rng = np.random.default_rng(21)
    for trial in range(20):
        absmax = np.abs(rng.standard_t(2, size=int(rng.integers(1, 400))))
        ratio = float(rng.uniform(1.5, 10))
        kit.check_equal(mod.outlier_channels(absmax, ratio), oracle.outlier_channels(absmax, ratio),
                        f"outlier_channels({absmax.size} heavy-tailed maxima, ratio={ratio:.3g})")
    with pytest.raises(ValueError):
        mod.outlier_channels(np.array([1.0, -2.0]))


@pytest.mark.points(1, exercise="fake_quant_activations")
def test_activation_quant_matches_the_oracle(only):
    only("fake_quant_activations")
    rng = np.random.default_rng(23)
    x = rng.standard_t(3, size=(300, 64)) * 2.0
    x[7] = 0.0
    for scale, bits in ((None, 8), (0.05, 8), (0.3, 4), (None, 6)):
        kit.check_equal(mod.fake_quant_activations(x, scale, bits), oracle.fake_quant_activations(x, scale, bits),
                        f"fake_quant_activations(x, scale={scale}, bits={bits})")


@pytest.mark.points(1, exercise="smooth_scales")
def test_smooth_scales_match_the_oracle(only):
    only("smooth_scales")
    rng = np.random.default_rng(24)
    act = np.abs(rng.standard_t(2, size=96))
    act[[3, 50]] = 0.0
    weights = [rng.normal(size=(32, 96)), rng.normal(size=(8, 96)) * 3]
    weights[0][:, 7] = 0.0
    weights[1][:, 7] = 0.0
    for alpha in (0.0, 0.3, 0.5, 0.85, 1.0):
        kit.check_close(mod.smooth_scales(act, weights, alpha), oracle.smooth_scales(act, weights, alpha),
                        f"smooth_scales(act, 2 weights, alpha={alpha})", rtol=1e-6)


@pytest.mark.points(1, exercise="smooth_layernorm")
def test_smooth_layernorm_matches_the_oracle(only):
    only("smooth_layernorm")
    rng = np.random.default_rng(25)
    gamma, beta = rng.normal(size=40), rng.normal(size=40)
    weights = [rng.normal(size=(10, 40)), rng.normal(size=(30, 40))]
    keep = [w.copy() for w in weights]
    s = rng.uniform(0.1, 9.0, size=40)
    got, want = mod.smooth_layernorm(gamma, beta, weights, s), oracle.smooth_layernorm(gamma, beta, weights, s)
    kit.check_close(got[0], want[0], "smooth_layernorm(...)", "LN weight", rtol=1e-6)
    kit.check_close(got[1], want[1], "smooth_layernorm(...)", "LN bias", rtol=1e-6)
    for i in range(2):
        kit.check_close(got[2][i], want[2][i], "smooth_layernorm(...)", f"weight {i}", rtol=1e-6)
        kit.check_equal(weights[i], keep[i], "smooth_layernorm(...)", f"the input weight {i} left unchanged")
    with pytest.raises(ValueError):
        mod.smooth_layernorm(gamma, beta, [np.ones((3, 41))], s)
