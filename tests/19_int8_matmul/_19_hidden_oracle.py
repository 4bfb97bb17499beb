"""Instructor-only oracles of module 19's exercises, written independently of the reference solution
(no Numba; exact rational or Python-int arithmetic for the fixed-point parts, float64 BLAS for the
integer matmuls, which is exact while |sums| < 2**53). Removed from the student release."""
import math
from fractions import Fraction

import numpy as np

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


# ------------------------------------------------------------------------------ GEMV / GEMM
def gemv_w8(w_q, w_scale, x):
    w = np.asarray(w_q, np.float64)
    s = np.broadcast_to(np.asarray(w_scale, np.float64), (w.shape[0],))
    return ((w @ np.asarray(x, np.float64)) * s).astype(np.float32)


def int32_safe_k(max_abs_a=128, max_abs_w=128):
    if max_abs_a <= 0 or max_abs_w <= 0:
        raise ValueError("magnitudes must be positive")
    k = 0
    # largest k with k * a * w <= INT32_MAX, found without the closed form
    step = 1 << 40
    while step:
        if (k + step) * max_abs_a * max_abs_w <= INT32_MAX:
            k += step
        step >>= 1
    return k


def gemm_int8(a_q, w_q):
    a = np.asarray(a_q)
    w = np.asarray(w_q)
    if a.dtype != np.int8 or w.dtype != np.int8 or a.ndim != 2 or w.ndim != 2:
        raise TypeError("int8 2-D operands expected")
    if a.shape[1] != w.shape[1]:
        raise ValueError("K differs")
    if a.shape[1] > int32_safe_k():
        raise ValueError("K too large for int32")
    exact = np.asarray(a, np.float64) @ np.asarray(w, np.float64).T      # exact: |sum| <= 2**31
    return exact.astype(np.int64).astype(np.int32)


def gemm_u8s8(a_u8, w_s8):
    a = np.asarray(a_u8)
    w = np.asarray(w_s8)
    if a.dtype != np.uint8 or w.dtype != np.int8 or a.ndim != 2 or w.ndim != 2:
        raise TypeError("uint8 A and int8 W, both 2-D, expected")
    if a.shape[1] != w.shape[1]:
        raise ValueError("K differs")
    if a.shape[1] > int32_safe_k(255, 128):
        raise ValueError("K too large for int32")
    exact = np.asarray(a, np.float64) @ np.asarray(w, np.float64).T      # exact: |sum| < 2**31
    return exact.astype(np.int64).astype(np.int32)


def weight_colsums(w_q):
    return np.asarray(w_q, np.int64).sum(axis=1).astype(np.int32)


def gemm_int8_zp(a_q, a_zp, w_q, w_colsums=None):
    a = np.asarray(a_q)
    if a.dtype not in (np.int8, np.uint8):
        raise TypeError("int8 or uint8 activations expected")
    low, high = (0, 255) if a.dtype == np.uint8 else (-128, 127)
    if not low <= int(a_zp) <= high:
        raise ValueError("a_zp out of range")
    if a.shape[-1] > int32_safe_k(255, 128):
        raise ValueError("K too large")
    exact = (np.asarray(a, np.float64) - int(a_zp)) @ np.asarray(w_q, np.float64).T
    return exact.astype(np.int64).astype(np.int32)


# ------------------------------------------------------------------------------ fixed point
def _round_half_away(f: Fraction) -> int:
    return math.floor(f + Fraction(1, 2)) if f >= 0 else -math.floor(-f + Fraction(1, 2))


def quantize_multiplier_scalar(m):
    """TFLite QuantizeMultiplier with exact rational arithmetic (no frexp)."""
    m = float(m)
    if not math.isfinite(m) or m < 0:
        raise ValueError("bad multiplier")
    if m == 0:
        return 0, 0
    # normalise m = q * 2**shift with q in [1/2, 1), exactly
    q = Fraction(m)
    shift = 0
    while q >= 1:
        q /= 2
        shift += 1
    while q < Fraction(1, 2):
        q *= 2
        shift -= 1
    q_fixed = _round_half_away(q * (1 << 31))
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift > 30:
        raise ValueError("multiplier too large")
    if shift < -31:
        return 0, 0
    return q_fixed, shift


def quantize_multiplier(m):
    arr = np.asarray(m, np.float64)
    pairs = [quantize_multiplier_scalar(v) for v in arr.ravel()]
    m0 = np.array([p[0] for p in pairs], np.int32).reshape(arr.shape)
    sh = np.array([p[1] for p in pairs], np.int32).reshape(arr.shape)
    return m0[()], sh[()]


def srdhm(a, b):
    """SaturatingRoundingDoublingHighMul on Python ints (C semantics spelled out)."""
    a, b = int(a), int(b)
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    num = ab + nudge
    q = abs(num) // (1 << 31)               # C division truncates toward zero
    return q if num >= 0 else -q


def rdbpot(x, exponent):
    """RoundingDivideByPOT on Python ints, as exact rational rounding half away from zero."""
    x, e = int(x), int(exponent)
    if not 0 <= e <= 31:
        raise ValueError("exponent out of range")
    return _round_half_away(Fraction(x, 1 << e))


def multiply_by_quantized_multiplier(x, m0, shift):
    x, m0, shift = int(x), int(m0), int(shift)
    left, right = max(shift, 0), max(-shift, 0)
    shifted = x * (1 << left)
    assert INT32_MIN <= shifted <= INT32_MAX
    return rdbpot(srdhm(shifted, m0), right)


def requantize(acc_i32, m0, shift, out_zp, qmin=-128, qmax=127):
    acc = np.asarray(acc_i32)
    n = acc.shape[-1] if acc.ndim else 1
    m0 = np.broadcast_to(np.asarray(m0, np.int64), (n,))
    shift = np.broadcast_to(np.asarray(shift, np.int64), (n,))
    flat = acc.reshape(-1, n)
    out = np.empty(flat.shape, np.int64)
    for r in range(flat.shape[0]):
        for c in range(n):
            v = int(out_zp) + multiply_by_quantized_multiplier(flat[r, c], m0[c], shift[c])
            out[r, c] = min(max(v, qmin), qmax)
    # the narrowest of int8, uint8, int32 that holds [qmin, qmax]
    fits = [t for t in (np.int8, np.uint8, np.int32)
            if np.iinfo(t).min <= qmin and qmax <= np.iinfo(t).max]
    return out.astype(fits[0]).reshape(acc.shape)


def quantized_linear(x_q, x_scale, x_zp, w_q, w_scale, bias_i32, out_scale, out_zp):
    """The whole layer with Python ints: (x - zx) . w + b, then TFLite requantization per channel."""
    x = np.asarray(x_q)
    vector = x.ndim == 1
    x2 = np.asarray(x.reshape(1, -1) if vector else x, np.int64)
    w = np.asarray(w_q, np.int64)
    n = w.shape[0]
    acc = (x2 - int(x_zp)) @ w.T
    if bias_i32 is not None:
        acc = acc + np.asarray(bias_i32, np.int64)
    scales = np.broadcast_to(np.asarray(w_scale, np.float32), (n,))
    out = np.empty(acc.shape, np.int8)
    for c in range(n):
        real = float(np.float32(x_scale)) * float(scales[c]) / float(np.float32(out_scale))
        m0, sh = quantize_multiplier_scalar(real)
        for r in range(acc.shape[0]):
            v = int(out_zp) + multiply_by_quantized_multiplier(acc[r, c], m0, sh)
            out[r, c] = min(max(v, -128), 127)
    return out[0] if vector else out
