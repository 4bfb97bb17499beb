"""The library baselines compute what the course's kernels compute (else a speed ratio against them
would compare different work)."""
import numpy as np
import pytest

from tinyq.baselines import ort_matmul_integer, ort_matmul_nbits
from tinyq.int4 import dequantize_int4_groups, quantize_int4_groups

pytestmark = pytest.mark.requires("onnxruntime")


def test_ort_matmul_integer_is_the_exact_int32_product():
    rng = np.random.default_rng(1)
    w = rng.integers(-127, 128, size=(33, 64), dtype=np.int8)
    a = rng.integers(0, 256, size=(5, 64), dtype=np.uint8)
    expected = a.astype(np.int64) @ w.astype(np.int64).T
    assert np.array_equal(ort_matmul_integer(w, 1)(a), expected)


@pytest.mark.parametrize("n, k, group", [(300, 1024, 128), (7, 64, 32)])
def test_ort_matmul_nbits_reads_module_21s_packing(n, k, group):
    """Float path: the product with module 21's dequantized weights, to float rounding; int8 path:
    within the error of 8-bit activations."""
    rng = np.random.default_rng(2)
    w = rng.standard_normal((n, k), dtype=np.float32)
    x = rng.standard_normal(k, dtype=np.float32)
    packed, scales, _ = quantize_int4_groups(w, group)
    expected = dequantize_int4_groups(packed, scales, None, group) @ x
    exact = ort_matmul_nbits(packed, scales, k, group, 1)(x)[0]
    np.testing.assert_allclose(exact, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    w4a8 = ort_matmul_nbits(packed, scales, k, group, 1, int8_activations=True)(x)[0]
    error = np.abs(w4a8 - expected).max() / np.abs(expected).max()
    assert 0 < error < 0.03
