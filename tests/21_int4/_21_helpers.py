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
