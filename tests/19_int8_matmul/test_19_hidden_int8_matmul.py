"""Hidden graded tests of module 19 (int8_matmul): random shapes, exactness where float32 cannot be
exact, bit-exact fixed point against an independent Python-int reference, and the zero-point cost."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tinyq.int8_matmul as tq
from _19_helpers import gemv_reference_and_bound, int_matmul, random_int8

import _19_hidden_oracle as ref_impl

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)


# ---------------------------------------------------------------- gemv_w8
@pytest.mark.points(2, exercise="gemv_w8")
def test_gemv_random_shapes(only):
    only("gemv_w8")

    @SETTINGS
    @given(n=st.integers(1, 70), k=st.integers(1, 300), seed=st.integers(0, 2**32 - 1), per_tensor=st.booleans())
    def check(n, k, seed, per_tensor):
        rng = np.random.default_rng(seed)
        w_q = random_int8(rng, (n, k), -127, 127)
        scale = np.float32(rng.uniform(1e-3, 1.0)) if per_tensor else rng.uniform(1e-3, 1.0, n).astype(np.float32)
        x = (rng.standard_normal(k) * rng.uniform(0.1, 100)).astype(np.float32)
        y = tq.gemv_w8(w_q, scale, x)
        ref, bound = gemv_reference_and_bound(w_q, scale, x)
        assert y.dtype == np.float32 and y.shape == (n,) and np.all(np.abs(y - ref) <= bound)

    check()


# ---------------------------------------------------------------- gemm_int8
@pytest.mark.points(2, exercise="gemm_int8")
def test_gemm_exact_where_float32_cannot_be(only):
    """Sums far beyond 2**24: float32 accumulation (or a float32 matmul in disguise) loses low bits."""
    only("gemm_int8")
    rng = np.random.default_rng(11)
    for m, n, k in [(24, 20, 4096), (5, 7, 20000)]:
        a = random_int8(rng, (m, k), 90, 127)
        w = random_int8(rng, (n, k), 90, 127)
        a[1::2] = -a[1::2]                                       # large negative sums as well
        ref = int_matmul(a, w)
        assert np.abs(ref).max() > 2**24 and np.any(ref % 2)     # not representable in float32
        got = tq.gemm_int8(a, w)
        assert got.dtype == np.int32 and np.array_equal(got, ref), (m, n, k)


@pytest.mark.points(2, exercise="gemm_int8")
def test_gemm_random_shapes(only):
    only("gemm_int8")

    @SETTINGS
    @given(m=st.integers(1, 40), n=st.integers(1, 40), k=st.integers(1, 700), seed=st.integers(0, 2**32 - 1))
    def check(m, n, k, seed):
        rng = np.random.default_rng(seed)
        a = random_int8(rng, (m, k))
        w = random_int8(rng, (n, k))
        got = tq.gemm_int8(a, w)
        assert got.dtype == np.int32 and got.shape == (m, n) and np.array_equal(got, int_matmul(a, w))

    check()


@pytest.mark.points(1, exercise="gemm_int8")
def test_gemm_extremes_and_empty(only):
    only("gemm_int8")
    for value_a, value_w in [(-128, -128), (-128, 127), (127, 127)]:
        a = np.full((5, 3001), value_a, np.int8)
        w = np.full((3, 3001), value_w, np.int8)
        assert np.all(tq.gemm_int8(a, w) == value_a * value_w * 3001)
    assert tq.gemm_int8(np.zeros((0, 4), np.int8), np.zeros((3, 4), np.int8)).shape == (0, 3)
    assert tq.gemm_int8(np.zeros((2, 4), np.int8), np.zeros((0, 4), np.int8)).shape == (2, 0)
    empty_k = tq.gemm_int8(np.zeros((2, 0), np.int8), np.zeros((3, 0), np.int8))
    assert empty_k.shape == (2, 3) and np.all(empty_k == 0)


# ---------------------------------------------------------------- gemm_u8s8
@pytest.mark.points(2, exercise="gemm_u8s8")
def test_gemm_u8s8_random_shapes(only):
    only("gemm_u8s8")

    @SETTINGS
    @given(m=st.integers(1, 40), n=st.integers(1, 40), k=st.integers(1, 700), a_high=st.sampled_from([127, 128, 255]),
           seed=st.integers(0, 2**32 - 1))
    def check(m, n, k, a_high, seed):
        rng = np.random.default_rng(seed)
        a = rng.integers(0, a_high + 1, size=(m, k), dtype=np.uint8)
        w = random_int8(rng, (n, k))
        got = tq.gemm_u8s8(a, w)
        assert got.dtype == np.int32 and got.shape == (m, n) and np.array_equal(got, int_matmul(a, w))

    check()


@pytest.mark.points(1, exercise="gemm_u8s8")
def test_gemm_u8s8_extremes_bound_and_empty(only):
    """Every pair saturating at the largest K that fits int32, and empty shapes."""
    only("gemm_u8s8")
    k = 65793
    a = np.full((5, k), 255, np.uint8)
    w = np.full((3, k), -128, np.int8)
    w[1] = 127
    got = tq.gemm_u8s8(a, w)
    assert got.dtype == np.int32 and got[:, 0].tolist() == [-255 * 128 * k] * 5
    assert got[:, 1].tolist() == [255 * 127 * k] * 5
    rng = np.random.default_rng(24)
    a = rng.integers(120, 256, size=(9, 4099), dtype=np.uint8)   # sums far beyond 2**24
    w = random_int8(rng, (7, 4099), 100, 127)
    assert np.array_equal(tq.gemm_u8s8(a, w), int_matmul(a, w))
    assert tq.gemm_u8s8(np.zeros((0, 4), np.uint8), np.zeros((3, 4), np.int8)).shape == (0, 3)
    assert tq.gemm_u8s8(np.zeros((2, 4), np.uint8), np.zeros((0, 4), np.int8)).shape == (2, 0)
    empty_k = tq.gemm_u8s8(np.zeros((2, 0), np.uint8), np.zeros((3, 0), np.int8))
    assert empty_k.shape == (2, 3) and np.all(empty_k == 0)


@pytest.mark.points(1, exercise="gemm_u8s8")
def test_gemm_u8s8_avx2_branch_where_the_cpu_has_vnni(only, monkeypatch):
    """On a VNNI CPU the kernel compiles only its dpbusd branch; compile a fresh copy with HAS_VNNI off
    so the maddubs chain (and the split that keeps it exact) is graded on every machine."""
    only("gemm_u8s8")
    from numba import njit
    monkeypatch.setattr(tq, "HAS_VNNI", False)
    monkeypatch.setattr(tq, "_u8s8_madd", njit(inline="always")(tq._u8s8_madd.py_func))
    monkeypatch.setattr(tq, "_gemm_u8s8_kernel", njit(parallel=True)(tq._gemm_u8s8_kernel.py_func))
    rng = np.random.default_rng(25)
    for m, n, k in [(1, 1, 1), (5, 4, 33), (13, 11, 129), (40, 30, 700)]:
        for a_high in (127, 255):
            a = rng.integers(0, a_high + 1, size=(m, k), dtype=np.uint8)
            w = random_int8(rng, (n, k))
            assert np.array_equal(tq.gemm_u8s8(a, w), int_matmul(a, w)), (m, n, k, a_high)
    a = np.full((6, 96), 255, np.uint8)
    w = np.full((5, 96), -128, np.int8)
    assert np.all(tq.gemm_u8s8(a, w) == 96 * 255 * -128)


# ---------------------------------------------------------------- gemm_int8_zp
@pytest.mark.points(1, exercise="gemm_int8_zp")
def test_zero_point_random(only):
    only("gemm_int8_zp")

    @SETTINGS
    @given(m=st.integers(1, 20), n=st.integers(1, 20), k=st.integers(1, 400), zp=st.integers(-128, 127),
           seed=st.integers(0, 2**32 - 1))
    def check(m, n, k, zp, seed):
        rng = np.random.default_rng(seed)
        a = random_int8(rng, (m, k))
        w = random_int8(rng, (n, k), -127, 127)
        ref = (np.asarray(a, np.int64) - zp) @ np.asarray(w, np.int64).T
        assert np.array_equal(tq.gemm_int8_zp(a, zp, w, tq.weight_colsums(w)), ref)

    check()


@pytest.mark.points(1, exercise="gemm_int8_zp")
def test_zero_point_uint8_random(only):
    only("gemm_int8_zp")

    @SETTINGS
    @given(m=st.integers(1, 20), n=st.integers(1, 20), k=st.integers(1, 400), zp=st.integers(0, 255),
           seed=st.integers(0, 2**32 - 1))
    def check(m, n, k, zp, seed):
        rng = np.random.default_rng(seed)
        a = rng.integers(0, 256, size=(m, k), dtype=np.uint8)
        w = random_int8(rng, (n, k), -127, 127)
        ref = (np.asarray(a, np.int64) - zp) @ np.asarray(w, np.int64).T
        assert np.array_equal(tq.gemm_int8_zp(a, zp, w, tq.weight_colsums(w)), ref)

    check()


@pytest.mark.perf
@pytest.mark.points(2, exercise="gemm_int8_zp")
def test_zero_point_correction_is_cheap(perf, only):
    """With the weight sums precomputed, the correction is O(M N) next to the GEMM's O(M N K)."""
    only("gemm_int8_zp")
    from tinyq.bench import time_interleaved
    rng = np.random.default_rng(12)
    a = random_int8(rng, (256, 1024))
    w = random_int8(rng, (1024, 1024), -127, 127)
    sums = tq.weight_colsums(w)
    ref = (np.asarray(a, np.int64) - 9) @ np.asarray(w, np.int64).T
    assert np.array_equal(tq.gemm_int8_zp(a, 9, w, sums), ref)
    t_zp, t_plain = time_interleaved([lambda: tq.gemm_int8_zp(a, 9, w, sums), lambda: tq.gemm_int8(a, w)], repeats=7)
    ratio = t_zp / t_plain
    print(f"gemm_int8_zp / gemm_int8 at 256x1024x1024: {ratio:.3f}")
    perf.record(ratio, bar=1.25, floor=2.0, lower_is_better=True, unit="× plain gemm_int8")


# ---------------------------------------------------------------- quantize_multiplier
@pytest.mark.points(2, exercise="quantize_multiplier")
def test_quantize_multiplier_random_and_edges(only):
    only("quantize_multiplier")
    rng = np.random.default_rng(13)
    values = np.concatenate([np.exp(rng.uniform(np.log(1e-9), np.log(1e3), 400)),
                             [2.0**-31, 2.0**-32, 2.0**-40, 1e-12, 0.5 - 2.0**-45, 2.0**29, 1 - 2**-33, 0.0]])
    m0, shift = tq.quantize_multiplier(values)
    m0, shift = np.asarray(m0), np.asarray(shift)
    assert m0.shape == values.shape and shift.shape == values.shape
    for v, got_m0, got_shift in zip(values, m0, shift):
        assert (int(got_m0), int(got_shift)) == ref_impl.quantize_multiplier_scalar(v), v
    for bad in (-0.1, float("nan"), float("inf"), 2.0**31):
        with pytest.raises(ValueError):
            tq.quantize_multiplier(bad)


# ---------------------------------------------------------------- requantize
@pytest.mark.points(1, exercise="requantize")
def test_srdhm_and_rdbpot_random():
    rng = np.random.default_rng(14)
    a = rng.integers(-2**31, 2**31, size=1500)
    b = rng.integers(-2**31, 2**31, size=1500)
    a[:10], b[:10] = -2**31, -2**31
    b[10:20] = 2**31 - 1
    for x, y in zip(a.tolist(), b.tolist()):
        assert tq.srdhm(x, y) == ref_impl.srdhm(x, y), (x, y)
    xs = rng.integers(-2**31, 2**31, size=1500).tolist()
    es = rng.integers(0, 32, size=1500).tolist()
    ties = [(-(2 * j + 1) << (e - 1), e) for j, e in zip(range(60), (rng.integers(1, 20, 60)).tolist())]
    for x, e in list(zip(xs, es)) + ties:
        assert tq.rdbpot(x, e) == ref_impl.rdbpot(x, e), (x, e)


@pytest.mark.points(1, exercise="requantize")
def test_requantize_bit_exact_random():
    rng = np.random.default_rng(15)
    acc = rng.integers(-2**31, 2**31, size=(40, 25)).astype(np.int32)
    acc[0] = rng.integers(-3000, 3000, size=25)
    for _ in range(4):
        m0 = int(rng.integers(1 << 30, 1 << 31))
        shift = int(rng.integers(-31, 1))
        zp = int(rng.integers(-20, 20))
        got = tq.requantize(acc, m0, shift, zp, -2**31, 2**31 - 1)
        want = ref_impl.requantize(acc, m0, shift, zp, -2**31, 2**31 - 1)
        assert got.dtype == np.int32 and np.array_equal(got, want), (m0, shift, zp)
    small = rng.integers(-2**20, 2**20, size=(6, 5)).astype(np.int32)  # left shifts that still fit
    got = tq.requantize(small, 1 << 30, 3, 1, -2**31, 2**31 - 1)
    assert np.array_equal(got, ref_impl.requantize(small, 1 << 30, 3, 1, -2**31, 2**31 - 1))


@pytest.mark.points(1, exercise="requantize")
def test_requantize_per_channel():
    rng = np.random.default_rng(16)
    acc = rng.integers(-200000, 200000, size=(3, 7, 11)).astype(np.int32)
    m0 = rng.integers(1 << 30, 1 << 31, size=11)
    shift = rng.integers(-18, -6, size=11)
    got = tq.requantize(acc, m0, shift, -3)
    assert got.dtype == np.int8 and got.shape == acc.shape
    assert np.array_equal(got, ref_impl.requantize(acc, m0, shift, -3))
    with pytest.raises(ValueError):
        tq.requantize(acc, m0, shift, 200)                      # zero point outside [-128, 127]


# ---------------------------------------------------------------- quantized_linear
@pytest.mark.points(2, exercise="quantized_linear")
def test_quantized_linear_bit_exact(only):
    only("quantized_linear")
    rng = np.random.default_rng(17)
    for per_channel in (True, False):
        x = random_int8(rng, (6, 45))
        w = random_int8(rng, (10, 45), -127, 127)
        w_scale = rng.uniform(0.001, 0.03, 10).astype(np.float32) if per_channel else np.float32(0.01)
        bias = rng.integers(-20000, 20000, 10).astype(np.int32)
        args = (x, np.float32(0.037), -11, w, w_scale, bias, np.float32(0.21), 6)
        got = tq.quantized_linear(*args)
        assert got.dtype == np.int8 and np.array_equal(got, ref_impl.quantized_linear(*args)), per_channel


@pytest.mark.points(1, exercise="quantized_linear")
def test_quantized_linear_vector_without_bias(only):
    only("quantized_linear")
    rng = np.random.default_rng(18)
    x = random_int8(rng, (33,))
    w = random_int8(rng, (8, 33), -127, 127)
    w_scale = rng.uniform(0.005, 0.02, 8).astype(np.float32)
    args = (x, np.float32(0.1), 0, w, w_scale, None, np.float32(0.05), 0)
    got = tq.quantized_linear(*args)
    assert got.shape == (8,) and got.dtype == np.int8
    assert np.array_equal(got, ref_impl.quantized_linear(*args))
