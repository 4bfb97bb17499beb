# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: nbgrader,tags,-all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Module 15: Quantization — from float32 to real int8 storage
#
# A float32 weight costs 4 bytes. Most trained networks do not need that precision: if we map each
# value to one of 256 integer **codes** and remember how to map back, we store 1 byte per value and
# can multiply in integer arithmetic. This module builds that mapping from scratch, exactly as
# ONNX Runtime, TFLite and PyTorch do it, and measures what it costs in accuracy and saves in memory.
#
# The whole module rests on one pair of formulas (the *affine* mapping):
#
# $$q = \mathrm{clamp}\big(\mathrm{round}(x / s) + z,\; q_{min},\; q_{max}\big) \qquad\qquad \hat{x} = (q - z)\cdot s$$
#
# * $s$ (**scale**, a positive float) is the size of one step between neighbouring codes;
# * $z$ (**zero point**, an integer) is the code that represents the real value 0 exactly;
# * $[q_{min}, q_{max}]$ is the range of codes the integer type holds.
#
# You will write, in order: the code ranges, the two recipes for $(s, z)$, `quantize`, `dequantize`,
# a `QuantizedTensor` that really stores `np.int8`, and the two error metrics. Each exercise is
# followed by a test cell; run it. The module ends with a systems analysis computed from *your* code.
#
# **How to work**: edit the cells marked `# YOUR CODE HERE`, run the test below each one, then
# `tito export 15` and `tito test 15` in a terminal to grade your package.

# %%
#| default_exp quantize

# %%
#| export
import numpy as np

# %% [markdown]
# ## 1. Code ranges
#
# A signed $b$-bit integer holds $[-2^{b-1},\, 2^{b-1}-1]$: for int8, $[-128, 127]$. That range is
# lopsided by one code. If we used it for *symmetric* quantization (zero point 0), then $-128 \cdot s$
# would be representable but $+128 \cdot s$ not, and negating a code could overflow. The **narrow**
# range drops the most negative code, $[-(2^{b-1}-1),\, 2^{b-1}-1]$, i.e. $[-127, 127]$ for int8.
# ONNX Runtime, TFLite and GGUF all use the narrow range for symmetric weights; we will too.
#
# An unsigned $b$-bit integer holds $[0, 2^b - 1]$ (for uint8, $[0, 255]$); it is used for asymmetric
# quantization, where the zero point moves the range wherever the data is. "Narrow" means nothing for
# unsigned codes, so asking for it is an error.

# %% nbgrader={"grade": false, "grade_id": "qrange", "locked": false, "schema_version": 3, "solution": true}
#| export
def qrange(bits=8, signed=True, narrow=False):
    """The integer range (qmin, qmax) of `bits`-bit codes.

    TODO: return (qmin, qmax) as Python ints for signed or unsigned codes of `bits` bits; with
    narrow=True a signed range loses its most negative code.

    APPROACH: signed: [-2**(bits-1), 2**(bits-1) - 1]; narrow signed: qmin + 1; unsigned: [0, 2**bits - 1].
    Validate: `bits` that is not an int in [2, 16] (0, 17, the float 8.0, the string "8", a bool) is a
    ValueError, and so is narrow=True with unsigned codes.

    EXAMPLE: qrange(8) -> (-128, 127); qrange(8, narrow=True) -> (-127, 127);
             qrange(4, signed=False) -> (0, 15)

    HINTS: `isinstance(bits, (int, np.integer))`; say in the error message what was wrong.
    """
    ### BEGIN SOLUTION
    if not isinstance(bits, (int, np.integer)) or isinstance(bits, bool) or not 2 <= bits <= 16:
        raise ValueError(f"bits must be an integer in [2, 16], got {bits!r}")
    bits = int(bits)
    if not signed:
        if narrow:
            raise ValueError("narrow range applies to signed codes only")
        return 0, 2 ** bits - 1
    qmax = 2 ** (bits - 1) - 1
    qmin = -qmax if narrow else -qmax - 1
    return qmin, qmax
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_qrange", "locked": true, "schema_version": 3, "solution": false}
assert qrange(8) == (-128, 127)
assert qrange(8, narrow=True) == (-127, 127)
assert qrange(8, signed=False) == (0, 255)
assert qrange(4, signed=True, narrow=True) == (-7, 7)
print("qrange: ok")

# %% [markdown]
# ## 2. Choosing the scale and zero point
#
# ### Symmetric
# When the data is roughly centred on zero (weights usually are), put the zero point at 0 and choose
# the scale so that the largest magnitude $a_{max} = \max|x|$ lands on the largest code:
#
# $$s = \frac{a_{max}}{q_{max}}, \qquad z = 0, \qquad \text{codes in } [-q_{max}, q_{max}] \text{ (narrow)}.$$
#
# Because the mapping is symmetric, $x$ and $-x$ get codes $q$ and $-q$: no bias.
# If $a_{max} = 0$ (an all-zero tensor) any scale works; we use $s = 1$ so nothing divides by zero.
#
# Both recipes must work **element-wise**: pass an array of per-channel $a_{max}$ and get an array of
# scales back. That is all "per-channel quantization" is.

# %% nbgrader={"grade": false, "grade_id": "symmetric_qparams", "locked": false, "schema_version": 3, "solution": true}
#| export
def symmetric_qparams(amax, bits=8):
    """Symmetric quantization parameters for values in [-amax, amax], narrow signed range.

    TODO: return (scale, zero_point): scale = amax / qmax as float32, zero_point = 0 as int32.
    Works element-wise: an array of amax gives arrays of the same shape; a scalar gives scalars.

    APPROACH: qmin, qmax = qrange(bits, signed=True, narrow=True); scale = amax / qmax (compute in
    float64, store float32); where amax == 0 use scale 1.0. A negative, NaN or inf amax is a ValueError.

    EXAMPLE: symmetric_qparams(12.7) -> (0.1, 0);  symmetric_qparams(np.array([1.27, 0.0]))
             -> (array([0.01, 1.0], float32), array([0, 0], int32))

    HINTS: np.where; `arr[()]` turns a 0-d array into a scalar.
    """
    ### BEGIN SOLUTION
    amax = np.asarray(amax, dtype=np.float64)
    if not np.all(np.isfinite(amax)):
        raise ValueError(f"symmetric_qparams: amax has {np.count_nonzero(~np.isfinite(amax))} NaN/inf value(s)")
    if np.any(amax < 0):
        raise ValueError("symmetric_qparams: amax must be >= 0 (it is a magnitude)")
    _, qmax = qrange(bits, signed=True, narrow=True)
    scale = np.where(amax > 0, amax / qmax, 1.0).astype(np.float32)
    # a tiny amax can underflow to a zero float32 scale; fall back to 1.0 as for an all-zero tensor
    scale = np.where(scale > 0, scale, np.float32(1.0)).astype(np.float32)
    zero_point = np.zeros(amax.shape, dtype=np.int32)
    return scale[()], zero_point[()]
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_symmetric_qparams", "locked": true, "schema_version": 3, "solution": false}
s, z = symmetric_qparams(12.7)
assert np.isclose(s, 0.1) and z == 0 and np.asarray(s).dtype == np.float32
s, z = symmetric_qparams(np.array([1.27, 0.0]))
assert np.allclose(s, [0.01, 1.0]) and s.shape == (2,) and np.all(z == 0)
print("symmetric_qparams: ok")

# %% [markdown]
# ### Asymmetric (affine)
# Post-ReLU activations live in $[0, x_{max}]$: a symmetric scheme would waste the whole negative half
# of the codes. The asymmetric recipe maps $[x_{min}, x_{max}]$ onto the full code range:
#
# $$s = \frac{x_{max} - x_{min}}{q_{max} - q_{min}}, \qquad z = \mathrm{clamp}\Big(\mathrm{round}\big(q_{min} - \tfrac{x_{min}}{s}\big),\, q_{min},\, q_{max}\Big)$$
#
# Two details matter. First, the range is **widened to include 0** ($x_{min} \le 0 \le x_{max}$), so
# that 0 — the value of padding, of ReLU's dead half, of dropped weights — has an exact code,
# $z$ itself. Second, $z$ is rounded **half to even** (`np.rint`), as ONNX Runtime does.
#
# What does the zero point cost? In a matmul of activations $A$ (zero point $z_a$) with symmetric
# weights $W$, $\sum_k (a_k - z_a) w_k = \sum_k a_k w_k - z_a \sum_k w_k$: one extra term per output,
# whose $\sum_k w_k$ can be precomputed once per weight column. Cheap — but not free, and a zero
# point on *both* sides adds two more terms. That is why weights are symmetric and activations affine.

# %% nbgrader={"grade": false, "grade_id": "asymmetric_qparams", "locked": false, "schema_version": 3, "solution": true}
#| export
def asymmetric_qparams(xmin, xmax, bits=8, signed=False):
    """Asymmetric (affine) quantization parameters for values in [xmin, xmax].

    TODO: return (scale, zero_point) with scale float32 and zero_point int32, element-wise.

    APPROACH: widen the range to include 0 (xmin = min(xmin, 0), xmax = max(xmax, 0));
    qmin, qmax = qrange(bits, signed); scale = (xmax - xmin) / (qmax - qmin) in float64, stored as
    float32 (compute the zero point with the float64 scale, as ONNX Runtime does); a zero-width range (all zeros) gets scale 1.0; zero_point = clip(rint(qmin - xmin / scale),
    qmin, qmax). xmin > xmax, and NaN or inf in either, are a ValueError.

    EXAMPLE: asymmetric_qparams(0.0, 2.55) -> (0.01, 0);  asymmetric_qparams(-1.0, 1.0)
             -> (0.007843138, 128)   (uint8: 0 maps to code 127.5, rounded half to even)

    HINTS: np.minimum / np.maximum broadcast scalars and arrays alike.
    """
    ### BEGIN SOLUTION
    xmin = np.asarray(xmin, dtype=np.float64)
    xmax = np.asarray(xmax, dtype=np.float64)
    bad = np.count_nonzero(~np.isfinite(xmin)) + np.count_nonzero(~np.isfinite(xmax))
    if bad:
        raise ValueError(f"asymmetric_qparams: {bad} NaN/inf value(s) in xmin/xmax")
    if np.any(xmin > xmax):
        raise ValueError("asymmetric_qparams: xmin must be <= xmax")
    qmin, qmax = qrange(bits, signed=signed)
    lo, hi = np.minimum(xmin, 0.0), np.maximum(xmax, 0.0)
    # like ONNX Runtime: scale and zero point computed in float64, the scale then stored as float32
    scale64 = (hi - lo) / (qmax - qmin)
    scale = scale64.astype(np.float32)
    ok = scale > 0                      # an all-zero range (or float32 underflow) gets scale 1.0
    scale = np.where(ok, scale, np.float32(1.0)).astype(np.float32)
    scale64 = np.where(ok, scale64, 1.0)
    zero_point = np.clip(np.rint(qmin - lo / scale64), qmin, qmax).astype(np.int32)
    return scale[()], zero_point[()]
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_asymmetric_qparams", "locked": true, "schema_version": 3, "solution": false}
s, z = asymmetric_qparams(0.0, 2.55)
assert np.isclose(s, 0.01) and z == 0
s, z = asymmetric_qparams(-1.0, 1.0)
assert np.isclose(s, 2 / 255) and z == 128           # 127.5 rounds half to even
s, z = asymmetric_qparams(0.5, 2.0)                    # widened to [0, 2]
assert np.isclose(s, 2 / 255) and z == 0
s, z = asymmetric_qparams(np.array([-2.0, 0.0]), np.array([2.0, 0.0]), signed=True)
assert s.shape == (2,) and z[1] == -128 and s[1] == 1.0
print("asymmetric_qparams: ok")

# %% [markdown]
# ## 3. Quantize and dequantize
#
# We follow ONNX `QuantizeLinear` to the letter, so our codes agree bit for bit with ONNX Runtime:
#
# 1. **divide** $x / s$ (not multiply by $1/s$: the reciprocal is rounded too, and for a few inputs
#    the product lands on the other side of a .5 tie);
# 2. **round half to even** (`np.rint`): 2.5 → 2, 3.5 → 4. Rounding half *up* would push every tie the
#    same way and bias sums over many values; half-to-even is unbiased on average;
# 3. **add the zero point after rounding**, then **clamp** to $[q_{min}, q_{max}]$ (saturate, never wrap).
#
# `axis` makes the parameters per-channel: `scale` and `zero_point` are 1-D with one entry per
# index along `axis`, and must be reshaped so they broadcast against `x` (e.g. shape `(C, 1, 1, 1)`
# for axis 0 of a conv weight).
#
# Codes must be *real* integers: `np.int8` / `np.uint8` for up to 8 bits (a 4-bit code still uses a byte
# here; packing two per byte is module 21), `np.int16` / `np.uint16` above.
#
# Bad input must fail loudly: NaN or inf have no code, and a silent NaN → code cast is undefined
# behaviour in C. The helpers below are given to you.

# %%
#| exporti
def _code_dtype(bits, signed):
    if bits <= 8:
        return np.int8 if signed else np.uint8
    return np.int16 if signed else np.uint16


def _check_finite(x, where):
    """Raise a ValueError that says how many values of `x` are NaN/inf and where the first one is."""
    bad = ~np.isfinite(x)
    count = int(np.count_nonzero(bad))
    if count:
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{where}: {count} of {x.size} values are NaN or inf "
                         f"(first at index {first}); clean the input before quantizing")


def _broadcast_param(param, x_ndim, axis, name):
    """Reshape a per-tensor (scalar) or per-axis (1-D) parameter so it broadcasts against x."""
    param = np.asarray(param)
    if axis is None:
        if param.size != 1:
            raise ValueError(f"{name} has {param.size} values but axis is None (per-tensor needs one)")
        return param.reshape(())
    if not -x_ndim <= axis < x_ndim:
        raise ValueError(f"axis {axis} is out of range for an input with {x_ndim} dimensions")
    shape = [1] * x_ndim
    shape[axis] = -1
    return param.reshape(shape)


# %% nbgrader={"grade": false, "grade_id": "quantize", "locked": false, "schema_version": 3, "solution": true}
#| export
def quantize(x, scale, zero_point, bits=8, signed=True, narrow=False, axis=None):
    """Quantize float values to integer codes (ONNX QuantizeLinear semantics).

    TODO: q = clip(rint(x / scale) + zero_point, qmin, qmax), stored as a real integer dtype.

    APPROACH:
      1. x = np.asarray(x, dtype=np.float32); an empty x returns an empty array of the code dtype.
      2. NaN or inf in x is a ValueError that says how many values are bad (the given `_check_finite`
         writes it); so is a scale that is not > 0 and finite, or a zero point outside the code range.
      3. With axis set, reshape scale/zero_point with _broadcast_param so they line up with x's axis;
         check that the axis length matches the number of parameters.
      4. Divide, np.rint, add the zero point, np.clip to qrange(bits, signed, narrow), cast to
         _code_dtype(bits, signed). Vectorised: no Python loop over elements.

    EXAMPLE: quantize([-2.5, -1.5, 0.5, 200.0], 1.0, 0) -> int8 [-2, -2, 0, 127]

    HINTS: use `out=` arguments (np.divide(x, s, out=...)) to save memory traffic on big arrays.
    """
    ### BEGIN SOLUTION
    x = np.asarray(x, dtype=np.float32)
    qmin, qmax = qrange(bits, signed=signed, narrow=narrow)
    dtype = _code_dtype(bits, signed)
    scale = _broadcast_param(np.asarray(scale, dtype=np.float32), x.ndim, axis, "scale")
    zero_point = _broadcast_param(np.asarray(zero_point), x.ndim, axis, "zero_point")
    if axis is not None and scale.size != x.shape[axis]:
        raise ValueError(f"scale has {scale.size} values but axis {axis} of the input has {x.shape[axis]}")
    if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        raise ValueError("quantize: scale must be positive and finite")
    if np.any(zero_point < qmin) or np.any(zero_point > qmax):
        raise ValueError(f"quantize: zero_point must lie in the code range [{qmin}, {qmax}]")
    if x.size == 0:
        return np.empty(x.shape, dtype=dtype)
    _check_finite(x, "quantize")
    v = np.divide(x, scale)
    np.rint(v, out=v)
    np.add(v, zero_point.astype(np.float32), out=v)
    np.clip(v, qmin, qmax, out=v)
    return v.astype(dtype)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_quantize", "locked": true, "schema_version": 3, "solution": false}
q = quantize(np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, 200.0, -300.0]), 1.0, 0)
assert q.dtype == np.int8
assert q.tolist() == [-2, -2, 0, 0, 2, 2, 4, 127, -128]              # ties to even, then clamp
q = quantize(np.array([0.0, 1.0]), 1.0, 1, narrow=True)
assert q.tolist() == [1, 2]
w = np.array([[1.0, -2.0], [10.0, 20.0]], dtype=np.float32)
q = quantize(w, np.array([0.1, 1.0]), np.array([0, 0]), axis=0)        # one scale per row
assert q.tolist() == [[10, -20], [10, 20]]
assert quantize(np.array([]), 1.0, 0).dtype == np.int8
try:
    quantize(np.array([1.0, np.nan, np.inf]), 1.0, 0)
    raise AssertionError("NaN must be rejected")
except ValueError as e:
    assert "2 of 3" in str(e)
print("quantize: ok")

# %% [markdown]
# Dequantization is the easy direction, $\hat{x} = (q - z)\cdot s$ in float32. Subtract in float32 (an
# `int8` subtraction would overflow: $127 - (-128) = 255$).

# %% nbgrader={"grade": false, "grade_id": "dequantize", "locked": false, "schema_version": 3, "solution": true}
#| export
def dequantize(q, scale, zero_point, axis=None):
    """Map integer codes back to float32: (q - zero_point) * scale.

    TODO: return a float32 array of q's shape; axis works as in `quantize`.

    APPROACH: reshape scale/zero_point with _broadcast_param; convert q to float32 before subtracting.

    EXAMPLE: dequantize(np.array([0, 128, 255], np.uint8), 0.01, 128) -> [-1.28, 0.0, 1.27]
    """
    ### BEGIN SOLUTION
    q = np.asarray(q)
    scale = _broadcast_param(np.asarray(scale, dtype=np.float32), q.ndim, axis, "scale")
    zero_point = _broadcast_param(np.asarray(zero_point), q.ndim, axis, "zero_point")
    out = q.astype(np.float32)
    np.subtract(out, zero_point.astype(np.float32), out=out)
    np.multiply(out, scale, out=out)
    return out
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_dequantize", "locked": true, "schema_version": 3, "solution": false}
x_hat = dequantize(np.array([0, 128, 255], dtype=np.uint8), 0.01, 128)
assert x_hat.dtype == np.float32 and np.allclose(x_hat, [-1.28, 0.0, 1.27])
x_hat = dequantize(np.array([[10, -20], [10, 20]], dtype=np.int8), np.array([0.1, 1.0]), np.array([0, 0]), axis=0)
assert np.allclose(x_hat, [[1.0, -2.0], [10.0, 20.0]])
print("dequantize: ok")

# %% [markdown]
# ## 4. A tensor that really is int8
#
# `QuantizedTensor` bundles the codes with the parameters needed to read them. Its `.q` must be a real
# `np.int8` (or `np.uint8`) array — that is where the 4× memory saving comes from — and `.nbytes` counts
# everything it stores: the codes **plus** the scales and zero points. Per-channel parameters are tiny
# next to the codes, but they are not free, and per-*group* parameters (module 21) are not tiny at all.
#
# `from_float(x, bits, symmetric, axis)` picks the parameters from the data itself:
# symmetric → `amax = max|x|` (per channel along `axis`: reduce over every *other* axis), narrow signed
# codes; asymmetric → `min`/`max` (same reduction), unsigned codes.

# %% nbgrader={"grade": false, "grade_id": "quantized_tensor", "locked": false, "schema_version": 3, "solution": true}
#| export
class QuantizedTensor:
    """Integer codes plus the parameters that map them back to real values."""

    def __init__(self, q, scale, zero_point, axis=None, bits=8, signed=True, narrow=False):
        self.q = q
        self.scale = np.asarray(scale, dtype=np.float32)
        self.zero_point = np.asarray(zero_point, dtype=np.int32)
        self.axis = axis
        self.bits = bits
        self.signed = signed
        self.narrow = narrow

    @property
    def shape(self):
        return self.q.shape

    def __repr__(self):
        kind = "per-tensor" if self.axis is None else f"per-channel(axis={self.axis})"
        return (f"QuantizedTensor(shape={self.q.shape}, dtype={self.q.dtype}, bits={self.bits}, "
                f"{kind}, nbytes={self.nbytes})")

    @classmethod
    def from_float(cls, x, bits=8, symmetric=True, axis=None):
        """Quantize float array `x`, choosing scale/zero point from its range.

        TODO: compute the range (per tensor, or per index along `axis`), the qparams, the codes.

        APPROACH: x = float32 array; reduce over all axes except `axis` (a tuple of the other axes);
        symmetric: symmetric_qparams(max|x|, bits) and quantize(..., signed=True, narrow=True);
        asymmetric: asymmetric_qparams(min, max, bits, signed=False) and quantize(..., signed=False).
        An empty x gets scale 1.0 and zero point 0. NaN or inf in x is a ValueError that says how many
        values are bad (`_check_finite`).
        """
        ### BEGIN SOLUTION
        x = np.asarray(x, dtype=np.float32)
        _check_finite(x, "QuantizedTensor.from_float")
        if axis is not None:
            axis = axis % x.ndim
        reduce = None if axis is None else tuple(i for i in range(x.ndim) if i != axis)
        if x.size == 0:
            shape = () if axis is None else (x.shape[axis],)
            scale, zp = np.ones(shape, np.float32), np.zeros(shape, np.int32)
        elif symmetric:
            scale, zp = symmetric_qparams(np.max(np.abs(x), axis=reduce), bits)
        else:
            scale, zp = asymmetric_qparams(np.min(x, axis=reduce), np.max(x, axis=reduce), bits, signed=False)
        q = quantize(x, scale, zp, bits=bits, signed=symmetric, narrow=symmetric, axis=axis)
        return cls(q, scale, zp, axis=axis, bits=bits, signed=symmetric, narrow=symmetric)
        ### END SOLUTION

    def dequantize(self):
        """The float32 values the codes stand for."""
        ### BEGIN SOLUTION
        return dequantize(self.q, self.scale, self.zero_point, axis=self.axis)
        ### END SOLUTION

    @property
    def nbytes(self):
        """Bytes really stored: the codes plus the scales and zero points."""
        ### BEGIN SOLUTION
        return int(self.q.nbytes + self.scale.nbytes + self.zero_point.nbytes)
        ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_quantized_tensor", "locked": true, "schema_version": 3, "solution": false}
rng = np.random.default_rng(0)
x = rng.normal(size=(64, 32)).astype(np.float32)
qt = QuantizedTensor.from_float(x)
assert qt.q.dtype == np.int8 and qt.q.shape == x.shape
assert np.max(np.abs(qt.dequantize() - x)) <= qt.scale / 2 + 1e-6
assert qt.nbytes == x.size + 4 + 4
qc = QuantizedTensor.from_float(x, axis=0)
assert qc.scale.shape == (64,) and qc.nbytes == x.size + 64 * 8
qa = QuantizedTensor.from_float(np.maximum(x, 0), symmetric=False)
assert qa.q.dtype == np.uint8 and qa.zero_point == 0
print(qt, qc, qa, sep="\n")

# %% [markdown]
# ## 5. Measuring the error
#
# * **MSE**, $\frac{1}{n}\sum (x - \hat{x})^2$: the average squared error.
# * **SQNR** (signal-to-quantization-noise ratio) in decibels,
#   $10 \log_{10} \frac{\sum x^2}{\sum (x-\hat{x})^2}$: error relative to the signal, so it compares
#   tensors of different magnitudes. Each extra bit halves the step and adds about **6.02 dB**.
#   A perfect reconstruction has infinite SQNR.
#
# Compute both in float64: float32 sums over millions of values lose digits.

# %% nbgrader={"grade": false, "grade_id": "metrics", "locked": false, "schema_version": 3, "solution": true}
#| export
def mse(a, b):
    """Mean squared error between two arrays of the same shape, as a Python float.

    Arrays of different shapes, or empty ones, are a ValueError.
    """
    ### BEGIN SOLUTION
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"mse: shapes differ: {a.shape} vs {b.shape}")
    if a.size == 0:
        raise ValueError("mse: empty input")
    return float(np.mean((a - b) ** 2))
    ### END SOLUTION


def sqnr_db(x, x_hat):
    """Signal-to-quantization-noise ratio in dB: 10*log10(sum x^2 / sum (x - x_hat)^2); inf if exact.

    Arrays of different shapes are a ValueError; a zero signal with nonzero noise gives -inf.
    """
    ### BEGIN SOLUTION
    x, x_hat = np.asarray(x, dtype=np.float64), np.asarray(x_hat, dtype=np.float64)
    if x.shape != x_hat.shape:
        raise ValueError(f"sqnr_db: shapes differ: {x.shape} vs {x_hat.shape}")
    noise = float(np.sum((x - x_hat) ** 2))
    signal = float(np.sum(x ** 2))
    if noise == 0.0:
        return float("inf")
    if signal == 0.0:
        return float("-inf")
    return 10.0 * float(np.log10(signal / noise))
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_metrics", "locked": true, "schema_version": 3, "solution": false}
assert mse([1.0, 2.0], [1.0, 4.0]) == 2.0
assert np.isclose(sqnr_db([1.0, 1.0], [1.1, 0.9]), 20.0)
assert sqnr_db([1.0], [1.0]) == float("inf")
print("metrics: ok")

# %% [markdown]
# ## 6. Systems analysis — measured with your functions
#
# Everything below runs on the functions you just wrote. Re-run it after changing them.

# %%
import matplotlib.pyplot as plt
from tinyq.bench import compare

rng = np.random.default_rng(42)
gauss = rng.normal(0.0, 1.0, size=200_000).astype(np.float32)

# %% [markdown]
# ### 6.1 SQNR against bit width
# Theory says about 6 dB per bit: each bit halves the step, so the error power drops by 4×.
# The measured gain per bit is printed below: close to 6 dB from 3 bits up. At 2 bits (narrow range:
# three codes, −s, 0, +s) the scale is set by the rare extreme values, most values round to 0, and
# the curve falls well below the line.

# %%
bits_list = list(range(2, 9))
sqnr_by_bits = []
for b in bits_list:
    qt = QuantizedTensor.from_float(gauss, bits=b)
    sqnr_by_bits.append(sqnr_db(gauss, qt.dequantize()))
print(f"{'bits':>4} {'SQNR dB':>8} {'gain/bit':>8}")
for i, (b, s) in enumerate(zip(bits_list, sqnr_by_bits)):
    gain = "" if i == 0 else f"{s - sqnr_by_bits[i - 1]:8.2f}"
    print(f"{b:>4} {s:8.2f} {gain}")
plt.figure(figsize=(5, 3))
plt.plot(bits_list, sqnr_by_bits, "o-", label="measured (symmetric, per-tensor)")
plt.plot(bits_list, [sqnr_by_bits[-1] - 6.02 * (8 - b) for b in bits_list], "--", label="6.02 dB/bit")
plt.xlabel("bits"); plt.ylabel("SQNR (dB)"); plt.legend(); plt.title("Gaussian data"); plt.tight_layout()

# %% [markdown]
# ### 6.2 Where asymmetric pays off: skewed (post-ReLU) data
# After a ReLU nothing is negative. Symmetric quantization spends half its codes on values that never
# occur; asymmetric spends all of them on $[0, x_{max}]$, which is worth about one bit (≈ 6 dB).

# %%
relu = np.maximum(rng.normal(0.5, 1.0, size=200_000), 0).astype(np.float32)
rows = []
for b in (8, 4):
    sym = QuantizedTensor.from_float(relu, bits=b, symmetric=True)
    asym = QuantizedTensor.from_float(relu, bits=b, symmetric=False)
    rows.append((b, sqnr_db(relu, sym.dequantize()), sqnr_db(relu, asym.dequantize())))
print(f"{'bits':>4} {'symmetric dB':>13} {'asymmetric dB':>14} {'gain':>6}")
for b, s, a in rows:
    print(f"{b:>4} {s:13.2f} {a:14.2f} {a - s:6.2f}")
fig, ax = plt.subplots(1, 2, figsize=(8, 2.8))
ax[0].hist(relu, bins=100); ax[0].set_title("post-ReLU values")
ax[1].bar(["sym 8b", "asym 8b", "sym 4b", "asym 4b"], [rows[0][1], rows[0][2], rows[1][1], rows[1][2]])
ax[1].set_ylabel("SQNR (dB)"); plt.tight_layout()

# %% [markdown]
# ### 6.3 Per-tensor against per-channel on weights with uneven channels
# Output channels of a trained layer often differ in magnitude by 10× or more. One per-tensor scale is
# set by the largest channel, so small channels get only a handful of codes. Per-channel scales fix it
# for the cost of one float per channel.

# %%
channel_gain = np.exp(rng.uniform(np.log(0.02), np.log(1.0), size=64)).astype(np.float32)
weights = (rng.normal(size=(64, 3, 3, 3)) * channel_gain[:, None, None, None]).astype(np.float32)
per_tensor = QuantizedTensor.from_float(weights, bits=8)
per_channel = QuantizedTensor.from_float(weights, bits=8, axis=0)
err_t = [sqnr_db(weights[c], per_tensor.dequantize()[c]) for c in range(64)]
err_c = [sqnr_db(weights[c], per_channel.dequantize()[c]) for c in range(64)]
print(f"per-tensor : SQNR {sqnr_db(weights, per_tensor.dequantize()):6.2f} dB overall, "
      f"worst channel {min(err_t):6.2f} dB, {per_tensor.nbytes} bytes")
print(f"per-channel: SQNR {sqnr_db(weights, per_channel.dequantize()):6.2f} dB overall, "
      f"worst channel {min(err_c):6.2f} dB, {per_channel.nbytes} bytes")
order = np.argsort(channel_gain)
plt.figure(figsize=(6, 3))
plt.plot(channel_gain[order], np.array(err_t)[order], "o", ms=3, label="per-tensor")
plt.plot(channel_gain[order], np.array(err_c)[order], "o", ms=3, label="per-channel")
plt.xscale("log"); plt.xlabel("channel magnitude"); plt.ylabel("channel SQNR (dB)"); plt.legend()
plt.tight_layout()

# %% [markdown]
# ### 6.4 Real memory
# `nbytes` counts what is stored. For large tensors the codes dominate and the ratio approaches 4×
# (8 bits) — but a 4-bit code still occupies a whole byte here, so 4 bits save *nothing* more until we
# pack two codes per byte in module 21. Small tensors with per-channel parameters save less.

# %%
print(f"{'tensor':<26} {'float32 B':>10} {'quantized B':>12} {'ratio':>6}")
for label, arr, kw in [("1M values, per-tensor", rng.normal(size=1_000_000), {}),
                       ("1M values, 4-bit", rng.normal(size=1_000_000), {"bits": 4}),
                       ("conv 64x3x3x3 per-chan", weights, {"axis": 0}),
                       ("linear 16x8 per-chan", rng.normal(size=(16, 8)), {"axis": 0})]:
    arr = np.asarray(arr, dtype=np.float32)
    qt = QuantizedTensor.from_float(arr, **kw)
    print(f"{label:<26} {arr.nbytes:>10} {qt.nbytes:>12} {arr.nbytes / qt.nbytes:6.2f}")

# %% [markdown]
# ### 6.5 Speed of your quantizer
# Quantizing is a streaming operation: read 4 bytes, write 1. Its floor is memory bandwidth, so we
# time it against `np.copy` of the same array (same process, interleaved, median). The graded bar is
# quantize + dequantize within 10× a copy; each numpy pass over the array costs about one copy.

# %%
big = rng.normal(size=4_000_000).astype(np.float32)
s_big, z_big = symmetric_qparams(np.max(np.abs(big)))
r = compare(lambda: dequantize(quantize(big, s_big, z_big), s_big, z_big), lambda: np.copy(big), repeats=5)
print(f"quantize+dequantize: {r.candidate_s * 1e3:.1f} ms, np.copy: {r.baseline_s * 1e3:.1f} ms, "
      f"{r.slowdown:.1f}x a copy")

# %% [markdown]
# ## What you built
# * `qrange`, `symmetric_qparams`, `asymmetric_qparams`: where codes live and how big a step is;
# * `quantize` / `dequantize` with ONNX semantics, per tensor and per channel;
# * `QuantizedTensor`, which really stores 1 byte per value;
# * `mse` / `sqnr_db`, the yardsticks of every later module.
#
# Next: module 16 asks *which* range to quantize — min/max is fragile against outliers.
