"""tinyq.simd: the 256-bit integer operations behind module 19's gemm_u8s8, on both code paths (the x86
AVX2 intrinsics and the generic LLVM vector IR used on other CPUs), lane by lane against numpy."""
import numpy as np
import pytest
from numba import njit

import tinyq.simd as simd
from tinyq.simd import add_i32, dpbusd, hsum_i32, load256, madd_i16, maddubs, splat_i16, store256, zero256


def reference_maddubs(u, s):
    """vpmaddubsw in numpy: 16 saturated int16 pair sums of uint8 x int8."""
    prod = u.astype(np.int64) * s.astype(np.int64)
    return np.clip(prod[0::2] + prod[1::2], -32768, 32767).astype(np.int16)


def reference_madd(x, y):
    """vpmaddwd in numpy: 8 int32 pair sums of int16 x int16 (wrapping, as the hardware)."""
    prod = x.astype(np.int64) * y.astype(np.int64)
    return (prod[0::2] + prod[1::2]).astype(np.int64).astype(np.uint32).view(np.int32)


def build_kernels():
    """The operations compiled fresh (so a flipped tinyq.simd._USE_X86 takes effect)."""
    @njit
    def k_maddubs(u, s, off, out):
        store256(out, 0, maddubs(load256(u, off), load256(s, off)))

    @njit
    def k_madd(x, y, out):
        store256(out, 0, madd_i16(load256(x, 0), load256(y, 0)))

    @njit
    def k_chain(u, s, reps):
        acc = zero256()
        ones = splat_i16(1)
        for r in range(reps):
            acc = add_i32(acc, madd_i16(maddubs(load256(u, 32 * r), load256(s, 32 * r)), ones))
        return hsum_i32(acc)

    @njit
    def k_splat_zero(v, out):
        store256(out, 0, splat_i16(v))
        store256(out, 8, zero256())

    @njit
    def k_dpbusd(u, s, acc, out):
        store256(out, 0, dpbusd(load256(acc, 0), load256(u, 0), load256(s, 0)))

    return k_maddubs, k_madd, k_chain, k_splat_zero, k_dpbusd


@pytest.fixture(params=["native", "generic"])
def kernels(request, monkeypatch):
    if request.param == "generic":
        monkeypatch.setattr(simd, "_USE_X86", False)
        monkeypatch.setattr(simd, "_USE_VNNI", False)
    elif not simd.HAS_AVX2:
        pytest.skip("the host has no AVX2: only the generic path exists here")
    return build_kernels()


def test_features_come_from_llvm():
    import llvmlite.binding as llvm
    assert simd.HAS_AVX2 == bool(llvm.get_host_cpu_features().get("avx2", False))
    assert isinstance(simd.cpu_features(), dict)


def test_maddubs_saturates_like_vpmaddubsw(kernels):
    k_maddubs = kernels[0]
    rng = np.random.default_rng(0)
    u = rng.integers(0, 256, 96, dtype=np.uint8)
    s = rng.integers(-128, 128, 96, dtype=np.int8)
    u[:4], s[:4] = 255, np.array([-128, -128, 127, 127], np.int8)      # -65280 -> -32768, 64770 -> 32767
    for off in (0, 7, 64):                                              # unaligned loads too
        out = np.zeros(8, np.int32)
        k_maddubs(u, s, off, out)
        assert np.array_equal(out.view(np.int16), reference_maddubs(u[off:off + 32], s[off:off + 32])), off
    out = np.zeros(8, np.int32)
    k_maddubs(u, s, 0, out)
    assert out.view(np.int16)[0] == -32768 and out.view(np.int16)[1] == 32767


def test_madd_i16_pairs(kernels):
    k_madd = kernels[1]
    rng = np.random.default_rng(1)
    x = rng.integers(-32768, 32768, 16).astype(np.int16)
    y = rng.integers(-32768, 32768, 16).astype(np.int16)
    x[:2], y[:2] = -32768, -32768                                       # the one wrapping pair
    out = np.zeros(8, np.int32)
    k_madd(x.view(np.uint8), y.view(np.uint8), out)
    assert np.array_equal(out, reference_madd(x, y))


def test_chain_is_an_exact_dot_product_for_7_bit_activations(kernels):
    k_chain = kernels[2]
    rng = np.random.default_rng(2)
    for reps in (1, 3, 40):
        u = rng.integers(0, 128, 32 * reps, dtype=np.uint8)
        s = rng.integers(-128, 128, 32 * reps, dtype=np.int8)
        assert k_chain(u, s, reps) == int(u.astype(np.int64) @ s.astype(np.int64)), reps
    u = np.full(32 * 40, 127, np.uint8)
    s = np.full(32 * 40, -128, np.int8)
    assert k_chain(u, s, 40) == -127 * 128 * 32 * 40


def test_splat_and_zero(kernels):
    k_splat_zero = kernels[3]
    out = np.ones(16, np.int32)
    k_splat_zero(-3, out)
    assert np.all(out[:8].view(np.int16) == -3) and np.all(out[8:] == 0)


def test_dpbusd_is_exact_without_saturation(kernels):
    """vpdpbusd sums 4 uint8 x int8 products straight into int32: 255 * -128 * 4 does not saturate."""
    k_dpbusd = kernels[4]
    rng = np.random.default_rng(3)
    u = rng.integers(0, 256, 32, dtype=np.uint8)
    s = rng.integers(-128, 128, 32, dtype=np.int8)
    u[:8], s[:8] = 255, -128
    acc = rng.integers(-2**31, 2**31, 8).astype(np.int32)
    acc[1] = -2**31                                                     # wraps modulo 2**32
    out = np.zeros(8, np.int32)
    k_dpbusd(u, s, acc.view(np.uint8), out)
    want = acc.astype(np.int64) + (u.astype(np.int64) * s.astype(np.int64)).reshape(8, 4).sum(axis=1)
    assert np.array_equal(out, (want % 2**32).astype(np.uint32).view(np.int32))
    assert out[0] == acc[0] + 4 * 255 * -128


def test_features_agree_with_vnni_flag():
    f = simd.cpu_features()
    assert simd.HAS_VNNI == bool((f.get("avx512vnni") and f.get("avx512vl")) or f.get("avxvnni"))


def test_native_path_emits_vpmaddubsw():
    if not simd.HAS_AVX2:
        pytest.skip("the host has no AVX2")
    k_chain = build_kernels()[2]
    u = np.zeros(64, np.uint8)
    s = np.zeros(64, np.int8)
    k_chain(u, s, 2)
    asm = "\n".join(k_chain.inspect_asm().values())
    assert "vpmaddubsw" in asm


def test_the_operations_refuse_wrong_types():
    from numba.core.errors import TypingError

    @njit
    def bad(x):
        return load256(x, 0)

    with pytest.raises(TypingError):
        bad(np.zeros(32, np.float32))


def test_native_path_emits_vpdpbusd_where_the_cpu_has_vnni():
    if not simd.HAS_VNNI:
        pytest.skip("the host has no VNNI")
    k_dpbusd = build_kernels()[4]
    k_dpbusd(np.zeros(32, np.uint8), np.zeros(32, np.int8), np.zeros(32, np.uint8), np.zeros(8, np.int32))
    assert "vpdpbusd" in "\n".join(k_dpbusd.inspect_asm().values())
