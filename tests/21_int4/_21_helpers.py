"""Helpers of module 21's tests (public)."""
import numpy as np

from tito.grading.kit import load_oracle


def oracle():
    """The instructor's oracle module, or None in the student flavour."""
    return load_oracle("_21_hidden_oracle")


def packer():
    """pack_int4 to build test data: the oracle's where it exists, else the learner's own."""
    ref = oracle()
    if ref is not None:
        return ref.pack_int4
    from tinyq.int4 import pack_int4
    return pack_int4


def unpacker():
    """unpack_int4 to read results: the oracle's where it exists, else the learner's own."""
    ref = oracle()
    if ref is not None:
        return ref.unpack_int4
    from tinyq.int4 import unpack_int4
    return unpack_int4


def random_int4_weights(rng, n, k, group_size):
    """Signed codes (n, k) in [-7, 7], float32 scales (n, k // group_size) and the float64 weights."""
    codes = rng.integers(-7, 8, size=(n, k)).astype(np.int8)
    scales = rng.uniform(0.001, 0.05, size=(n, k // group_size)).astype(np.float32)
    w64 = (codes.astype(np.float64).reshape(n, k // group_size, group_size)
           * scales.astype(np.float64)[..., None]).reshape(n, k)
    return codes, scales, w64


def split_order(codes, group_size):
    """Reorder codes (n, k) so that packing them in ONNX order gives the split layout:
    byte j of each group holds elements j (low nibble) and j + group_size/2 (high nibble)."""
    n, k = codes.shape
    half = group_size // 2
    return codes.reshape(n, k // group_size, 2, half).transpose(0, 1, 3, 2).reshape(n, k)


# ---------------------------------------------------------------- gemv_w4a16 (CUDA): the kernel's contract
W4_KERNEL = "gemv_w4a16"
W4_THREADS = 128                  # threads per block
W4_ROWS_PER_BLOCK = 16            # rows of W per block


def w4_gpu_case(rng, n, k, group_size):
    """Packed weights (codes in [-8, 7]), float32 scales, FP16 activations and the float64 W x."""
    codes = rng.integers(-8, 8, size=(n, k)).astype(np.int8)
    scales = rng.uniform(0.001, 0.05, size=(n, k // group_size)).astype(np.float32)
    x16 = rng.normal(size=k).astype(np.float16)
    w64 = (codes.astype(np.float64).reshape(n, k // group_size, group_size)
           * scales.astype(np.float64)[..., None]).reshape(n, k)
    return packer()(codes), scales, x16, w64 @ x16.astype(np.float64)


def w4_grid(n):
    return ((n + W4_ROWS_PER_BLOCK - 1) // W4_ROWS_PER_BLOCK,)


def run_w4_emulated(source, packed, scales, x16, group_size):
    """Run `source`'s gemv_w4a16 in the CPU emulator on a poisoned output; return it."""
    from tinyq.cuda_emulator import emulate
    n, k = packed.shape[0], scales.shape[1] * group_size
    y = np.full(n, np.nan, np.float32)
    emulate(source, W4_KERNEL, w4_grid(n), (W4_THREADS,), np.ascontiguousarray(packed),
            np.ascontiguousarray(scales), np.ascontiguousarray(x16).view(np.uint16), y, n, k, group_size)
    return y


def assert_gemv_close(y, ref, what):
    """Equal within float32 rounding: relative 1e-5 of each value and of the largest one."""
    y = np.asarray(y)
    assert y.shape == ref.shape, f"{what}: shape {y.shape}, expected {ref.shape}"
    assert not np.isnan(y).any(), f"{what}: {int(np.isnan(y).sum())} outputs never written (NaN)"
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * max(np.abs(ref).max(), 1e-6), err_msg=what)


# ---------------------------------------------------------------- gemv_w4a8: the activations it really uses
def q8_dequantized(x):
    """float64 q * d of x's blocks of 32: d = max|x| / 127 in float32, q = rint(x / d) (0 where d is 0)."""
    blocks = np.asarray(x, np.float32).reshape(-1, 32)
    d = (np.abs(blocks).max(axis=1) / np.float32(127)).astype(np.float32)
    safe = np.where(d > 0, d, np.float32(1))
    q = np.where(d[:, None] > 0, np.rint(blocks / safe[:, None]), 0)
    return (q * d[:, None].astype(np.float64)).reshape(-1)
