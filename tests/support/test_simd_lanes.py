"""tinyq.simd: the byte, int16 and float32 lane operations behind module 21's gemv_w4a8, lane by lane
against numpy, on the x86 path and on the generic LLVM path."""
import numpy as np
import pytest
from numba import njit

import tinyq.simd as simd
from tinyq.simd import (add_i16, and256, cvt_i32_f32, fma_f32, hsum_f32, load256, load_f32x8, splat_f32,
                        splat_i8, srli_i16, store256, xor256)


def build_kernels():
    """Compiled fresh, so that a flipped tinyq.simd._USE_X86 takes effect."""
    @njit
    def k_bytes(a, b, out):
        x, y = load256(a, 0), load256(b, 0)
        store256(out, 0, and256(x, y))
        store256(out, 8, xor256(x, splat_i8(0x88)))
        store256(out, 16, srli_i16(x, 4))
        store256(out, 24, add_i16(x, y))

    @njit
    def k_floats(ints, f, g, out):
        v = fma_f32(cvt_i32_f32(load256(ints, 0)), load_f32x8(f, 1), load_f32x8(g, 0))
        store256(out, 0, v)
        return hsum_f32(v), hsum_f32(splat_f32(0.5))

    return k_bytes, k_floats


@pytest.fixture(params=["native", "generic"])
def kernels(request, monkeypatch):
    if request.param == "generic":
        monkeypatch.setattr(simd, "_USE_X86", False)
    elif not simd.HAS_AVX2:
        pytest.skip("the host has no AVX2: only the generic path exists here")
    return build_kernels()


def test_byte_and_int16_lanes(kernels):
    k_bytes = kernels[0]
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, 32, dtype=np.uint8)
    b = rng.integers(0, 256, 32, dtype=np.uint8)
    out = np.zeros(32, np.int32)
    k_bytes(a, b, out)
    assert np.array_equal(out[:8].view(np.uint8), a & b)
    assert np.array_equal(out[8:16].view(np.uint8), a ^ 0x88)
    assert np.array_equal(out[16:24].view(np.uint16), a.view(np.uint16) >> 4)
    assert np.array_equal(out[24:].view(np.int16), a.view(np.int16) + b.view(np.int16))     # wraps


def test_float_lanes(kernels):
    k_floats = kernels[1]
    rng = np.random.default_rng(1)
    ints = rng.integers(-2**20, 2**20, 8).astype(np.int32)
    f = rng.normal(size=9).astype(np.float32)
    g = rng.normal(size=8).astype(np.float32)
    out = np.zeros(8, np.int32)
    total, halves = k_floats(ints.view(np.uint8), f, g, out)
    expect = ints.astype(np.float64) * f[1:].astype(np.float64) + g                # unaligned float load at 1
    np.testing.assert_allclose(out.view(np.float32), expect, rtol=1e-6)
    assert abs(total - out.view(np.float32).astype(np.float64).sum()) <= 1e-5 * np.abs(expect).sum()
    assert halves == 4.0
