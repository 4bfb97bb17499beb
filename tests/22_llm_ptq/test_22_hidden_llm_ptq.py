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
