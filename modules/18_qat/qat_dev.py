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
# # Module 18: Quantization-aware training — fake quantization, the straight-through estimator and LSQ
#
# Module 17 quantized a trained network *after the fact* (post-training quantization, PTQ). At 8 bits
# that costs nothing on our digits CNN. At fewer bits it starts to hurt: every weight moves to the
# nearest of a handful of levels, the errors add up layer after layer, and the network was never
# asked to cope with them.
#
# **Quantization-aware training** (QAT) asks it. During training, every weight and every activation
# that will be quantized at inference is *fake-quantized*: quantized to integer codes and immediately
# dequantized back to float,
#
# $$\hat{x} = \big(\mathrm{clamp}(\mathrm{round}(x/s) + z,\; q_{min},\; q_{max}) - z\big)\cdot s,$$
#
# so the forward pass computes, in float, exactly the values the integer model will compute, and
# the loss sees the quantization error. The optimiser can then move the weights to places where
# rounding hurts less.
#
# There is one obstacle, and most of this module is about it: $\mathrm{round}$ is a staircase. Its
# derivative is zero almost everywhere (and undefined on the steps), so backpropagation through
# $\hat{x}$ gives **zero gradient** to everything before it. We will
#
# 1. write `fake_quantize`, bit for bit the quantize/dequantize of module 15;
# 2. write its backward pass with the **straight-through estimator** (STE), in the clipped form PyTorch
#    uses, and see what it is and is not;
# 3. wrap both in a `FakeQuantize` layer with an observer (module 16) and switches;
# 4. make the step size itself trainable with **LSQ** (learned step size quantization, Esser et al.,
#    ICLR 2020);
# 5. insert fake quantizers into a model (`prepare_qat`), fine-tune it (`train_qat`) and convert it to
#    the integer layers of module 17 (`convert_qat`);
# 6. measure PTQ against QAT on the digits CNN: accuracy, training time, and what had to change.
#
# **How to work**: edit the cells marked `# YOUR CODE HERE`, run the test below each one, then
# `tito export 18` and `tito test 18` in a terminal to grade your package.

# %%
#| default_exp qat

# %%
#| export
import copy
import functools

import numpy as np

from tinyq import nn
from tinyq.data import batches
from tinyq.observers import MinMaxObserver, MovingAverageMinMaxObserver
from tinyq.ptq import QuantizedLayer, quantizable_layers
from tinyq.quantize import qrange

# %% [markdown]
# ## 1. Fake quantization
#
# `fake_quantize(x, scale, zero_point, qmin, qmax, axis)` is module 15's
# `dequantize(quantize(x))` with the code range given directly as $[q_{min}, q_{max}]$ (a QAT layer
# knows its range; it need not rebuild it from bits, signedness and narrowness every call) and with
# the codes kept in float32 instead of an integer dtype. The semantics are module 15's to the letter:
#
# 1. **divide** $x / s$ in float32 (not multiply by $1/s$);
# 2. **round half to even** (`np.rint`);
# 3. **add the zero point after rounding**, then **clamp** to $[q_{min}, q_{max}]$;
# 4. dequantize: $(q - z)\cdot s$ in float32.
#
# Done this way, the fake-quantized value equals `dequantize(quantize(x))` **bit for bit**, so the
# network we train computes exactly what the integer network will. (PyTorch's
# `torch.fake_quantize_per_tensor_affine` multiplies by the reciprocal $1/s$ instead; for a few inputs
# exactly at a .5 tie that lands on the other side — see the semantics notes. We follow ONNX.)
#
# `axis` works as in module 15: `scale` and `zero_point` hold one value per index along `axis` and
# must be reshaped to broadcast against `x`. The helper `_per_axis` below does that (given).
# Bad input fails loudly: NaN or inf in `x`, a scale that is not positive and finite, or a zero point
# outside $[q_{min}, q_{max}]$ is a `ValueError`.

# %%
#| exporti
def _per_axis(param, x, axis, name, dtype=np.float32):
    """`param` (a scalar, or one value per index along `axis`) reshaped to broadcast against `x`."""
    param = np.asarray(param, dtype=dtype)
    if axis is None:
        if param.size != 1:
            raise ValueError(f"{name} has {param.size} values but axis is None (per-tensor needs one)")
        return param.reshape(())
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis {axis} is out of range for an input with {x.ndim} dimensions")
    if param.size != x.shape[axis]:
        raise ValueError(f"{name} has {param.size} values but axis {axis} of the input has {x.shape[axis]}")
    shape = [1] * x.ndim
    shape[axis] = -1
    return param.reshape(shape)


def _check_range(qmin, qmax):
    if int(qmin) != qmin or int(qmax) != qmax or not qmin < qmax:
        raise ValueError(f"the code range must be two integers qmin < qmax, got [{qmin}, {qmax}]")


# %% nbgrader={"grade": false, "grade_id": "fake_quantize", "locked": false, "schema_version": 3, "solution": true}
#| export
def fake_quantize(x, scale, zero_point, qmin, qmax, axis=None):
    """Quantize then dequantize in float32: (clip(rint(x / scale) + zero_point, qmin, qmax) - zero_point) * scale.

    TODO: return a float32 array of x's shape, equal bit for bit to module 15's
    dequantize(quantize(x, scale, zero_point, ...), scale, zero_point) for the same code range.

    APPROACH:
      1. Make x a float32 array; reshape the scale and the zero point with the given `_per_axis`
         (the zero point in float32 too: the codes stay in float).
      2. Validate; every failure is a ValueError: the code range (the given `_check_range`), a scale
         that is not positive and finite, a zero point that is not an integer inside [qmin, qmax],
         NaN or inf in x (say how many); `_per_axis` already refuses a number of scales or zero
         points that does not match the axis. An empty x returns an empty float32 array.
      3. Divide by the scale, round half to even, add the zero point, clip to the code range; then
         undo the zero point and the scale, and return float32.

    EXAMPLE: fake_quantize([-2.5, -1.5, 0.4, 0.6, 9.0], 1.0, 0, -8, 7) -> [-2., -2., 0., 1., 7.]
             fake_quantize([0.26, 3.0], 0.5, 2, 0, 7)  -> [0.5, 2.5]   (codes 3 and 7 = clamp(8))

    HINTS: np.rint rounds half to even; np.clip(q, qmin, qmax) keeps float32.
    """
    ### BEGIN SOLUTION
    x = np.asarray(x, dtype=np.float32)
    _check_range(qmin, qmax)
    s = _per_axis(scale, x, axis, "scale")
    z = _per_axis(zero_point, x, axis, "zero_point")
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError("fake_quantize: scale must be positive and finite")
    if np.any(z < qmin) or np.any(z > qmax) or np.any(z != np.rint(z)):
        raise ValueError(f"fake_quantize: zero_point must be an integer in [{qmin}, {qmax}]")
    if x.size == 0:
        return np.empty(x.shape, dtype=np.float32)
    bad = int(np.count_nonzero(~np.isfinite(x)))
    if bad:
        raise ValueError(f"fake_quantize: {bad} of {x.size} values are NaN or inf")
    q = np.rint(x / s) + z
    np.clip(q, qmin, qmax, out=q)
    return ((q - z) * s).astype(np.float32)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_fake_quantize", "locked": true, "schema_version": 3, "solution": false}
from tinyq.quantize import dequantize, quantize

np.testing.assert_array_equal(fake_quantize([-2.5, -1.5, 0.4, 0.6, 9.0], 1.0, 0, -8, 7), [-2, -2, 0, 1, 7])
np.testing.assert_array_equal(fake_quantize([0.26, 3.0], 0.5, 2, 0, 7), [0.5, 2.5])
_x = np.random.default_rng(0).normal(size=(4, 50)).astype(np.float32)
_s = np.array([0.01, 0.02, 0.05, 0.1], np.float32)
np.testing.assert_array_equal(fake_quantize(_x, _s, np.zeros(4), -127, 127, axis=0),
                              dequantize(quantize(_x, _s, np.zeros(4, np.int32), narrow=True, axis=0),
                                         _s, np.zeros(4, np.int32), axis=0))
assert fake_quantize(_x, 0.1, 0, -8, 7).dtype == np.float32
print("fake_quantize: ok")

# %% [markdown]
# ## 2. The gradient of a staircase, and the straight-through estimator
#
# Training needs $\partial L/\partial x$ given $\partial L/\partial \hat{x}$. Inside the code range,
# $\hat{x} = s\,\mathrm{round}(x/s)$ is a staircase: flat between the steps, so its true derivative
# is **zero almost everywhere** and undefined (a jump) at the half-way points. Backpropagating the true
# derivative would give every weight and every earlier layer a gradient of exactly 0: the network could
# not learn anything. Finite differences confirm it: nudge $x$ a little and $\hat{x}$ does not move
# (section 6.1 measures it with your function).
#
# The **straight-through estimator** (Bengio, Léonard & Courville 2013; used for quantization by
# Hubara et al., Jacob et al. 2018 and every QAT toolkit since) does not compute that derivative. It
# *replaces* it: the backward pass pretends the rounding was the identity, $\partial\,\mathrm{round}(u)/\partial u := 1$.
# That is a deliberate bias. The forward pass is exact (the loss really is the quantized network's
# loss); the backward pass is the gradient of a *surrogate without the rounding*,
# $x \mapsto \mathrm{clamp}\big(x,\ (q_{min}-z)s,\ (q_{max}-z)s\big)$, which differs from the staircase
# by at most half a step. Following the surrogate's gradient is a heuristic, not a theorem: the hope
# is that a direction that lowers the smooth loss also lowers the quantized one once the weights have
# moved far enough to cross rounding boundaries. Empirically it works, and every QAT toolkit relies
# on it.
#
# What about the **clamp**? Two choices:
#
# * **plain STE**: pass the gradient everywhere, $\partial \hat{x}/\partial x := 1$;
# * **clipped STE**: pass it only where the value was *not* clamped, zero where it was:
#   $\partial \hat{x}/\partial x := \mathbb{1}[q_{min} \le \mathrm{round}(x/s) + z \le q_{max}]$.
#
# The clamp is *not* a staircase: outside the range $\hat{x}$ is truly constant, and the clipped STE
# just tells the truth there. With the plain STE, a weight that sits beyond the range keeps receiving
# gradient that cannot change the output, and can drift away without bound. Everyone (PyTorch, TF, the
# LSQ paper) uses the clipped form.
#
# One detail decides the boundary: PyTorch takes the mask on the **rounded** code
# $q = \mathrm{round}(x/s) + z$ *before* clamping, not on $x/s$. With $s = 1$, $z = 0$ and
# $q_{min} = -128$: $x = -128.4$ rounds to $-128$, inside, gradient 1; $x = -128.6$ rounds to $-129$,
# outside, gradient 0. The mask is exactly "did the clamp change this code?". We do the same.

# %% nbgrader={"grade": false, "grade_id": "fake_quantize_grad", "locked": false, "schema_version": 3, "solution": true}
#| export
def fake_quantize_grad(x, grad_out, scale, zero_point, qmin, qmax, axis=None):
    """Clipped straight-through estimator: d loss / d x of fake_quantize, given d loss / d output.

    TODO: return grad_out where the rounded, unclamped code rint(x / scale) + zero_point lies in
    [qmin, qmax], and 0 elsewhere; float32, of x's shape.

    APPROACH: grad_out must have x's shape (ValueError otherwise; a bad code range or a scale count
    that does not match the axis is a ValueError too, as in fake_quantize). Recompute the codes as
    the forward pass does (same reshaping, division, rounding and zero point) but without clipping;
    the gradient passes where a code lies inside [qmin, qmax] and is blocked elsewhere; return float32.

    EXAMPLE: fake_quantize_grad([-128.6, -128.4, 127.4, 127.5], [1, 1, 1, 1], 1.0, 0, -128, 127)
             -> [0., 1., 1., 0.]   (127.5 rounds half to even to 128: outside)

    HINTS: compute the mask exactly as the forward pass computes q, so forward and backward agree.
    """
    ### BEGIN SOLUTION
    x = np.asarray(x, dtype=np.float32)
    grad_out = np.asarray(grad_out, dtype=np.float32)
    if grad_out.shape != x.shape:
        raise ValueError(f"grad_out has shape {grad_out.shape}, x has {x.shape}")
    _check_range(qmin, qmax)
    s = _per_axis(scale, x, axis, "scale")
    z = _per_axis(zero_point, x, axis, "zero_point")
    q = np.rint(x / s) + z
    mask = (q >= qmin) & (q <= qmax)
    return (grad_out * mask).astype(np.float32)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_fake_quantize_grad", "locked": true, "schema_version": 3, "solution": false}
_g = fake_quantize_grad([-128.6, -128.4, 127.4, 127.5], np.ones(4), 1.0, 0, -128, 127)
np.testing.assert_array_equal(_g, [0, 1, 1, 0])
_codes = np.array([-9, -8, 7, 8], np.float32)                  # qmin - 1, qmin, qmax, qmax + 1
np.testing.assert_array_equal(fake_quantize_grad(_codes * 0.5, np.full(4, 3.0), 0.5, 0, -8, 7), [0, 3, 3, 0])
print("fake_quantize_grad: ok")

# %% [markdown]
# ## 3. `FakeQuantize`: an observer plus fake quantization
#
# A QAT model needs qparams for every fake quantizer, and they must follow the data while training
# runs. `FakeQuantize` is a `tinyq.nn` layer that holds a module 16 observer and does, on each call:
#
# 1. **observe** (training mode, observer switched on): `observer(x)`, then
#    `(scale, zero_point) = observer.calculate_qparams(bits, symmetric, signed=True)`;
# 2. **fake-quantize** (switched on): `fake_quantize(x, scale, zero_point, qmin, qmax, axis)`;
#    switched off, the layer is the identity.
#
# and `backward(grad_out)` is the clipped STE with the qparams the forward pass used (the identity when
# fake quantization was off).
#
# Two flavours, as in module 17: **symmetric** (weights) uses the narrow signed range
# $[-(2^{b-1}-1), 2^{b-1}-1]$ and zero point 0; **asymmetric** (activations) the full signed range
# $[-2^{b-1}, 2^{b-1}-1]$ with a zero point. `(qmin, qmax) = qrange(bits, signed=True, narrow=symmetric)`.
#
# The switches are how QAT recipes are scheduled: PyTorch's `disable_observer` freezes the ranges
# after a few epochs so that the last steps train against fixed qparams (the ones the integer model
# will use); `disable_fake_quant` turns a QAT model back into its float model, e.g. to measure what
# fake quantization costs. One deliberate difference from PyTorch: our observer records only in
# **training mode**, so evaluating a model in the middle of training does not move its ranges.
#
# The attributes are part of the contract (`prepare_qat`, `convert_qat` and the tests read them):
# `observer`, `bits`, `symmetric`, `axis`, `qmin`, `qmax`, `scale` and `zero_point` (None until the
# first observation; then a float32 and an int32 array, per channel when `axis` is set),
# `observer_enabled`, `fake_quant_enabled`.

# %%
#| export
class _FakeQuantizerBase(nn.Module):
    """What FakeQuantize and LSQFakeQuantize share (given): the code range, the fake-quant switch and
    the description of the format."""

    def _set_format(self, bits, symmetric, axis):
        self.bits, self.symmetric, self.axis = bits, bool(symmetric), axis
        self.qmin, self.qmax = qrange(bits, signed=True, narrow=self.symmetric)
        self.fake_quant_enabled = True
        self._cache = None

    def enable_fake_quant(self, enabled=True):
        self.fake_quant_enabled = bool(enabled)
        return self

    def disable_fake_quant(self):
        return self.enable_fake_quant(False)

    def _format_repr(self):
        kind = "symmetric" if self.symmetric else "asymmetric"
        where = "per-tensor" if self.axis is None else f"axis={self.axis}"
        return f"{self.bits}-bit {kind} [{self.qmin}, {self.qmax}], {where}"


# %% nbgrader={"grade": false, "grade_id": "fake_quantize_module", "locked": false, "schema_version": 3, "solution": true}
#| export
class FakeQuantize(_FakeQuantizerBase):
    """Observer + fake quantization, with switches; a tinyq.nn layer (forward / backward)."""

    def __init__(self, bits=8, symmetric=False, axis=None, observer=None):
        """observer: a module 16 observer (default: MovingAverageMinMaxObserver(axis=axis)); its axis
        must equal `axis` (None: one scale for the tensor; 0: one per output channel of a weight)."""
        self._set_format(bits, symmetric, axis)
        self.observer = MovingAverageMinMaxObserver(axis=axis) if observer is None else observer
        if getattr(self.observer, "axis", axis) != axis:
            raise ValueError(f"the observer's axis ({self.observer.axis}) differs from axis={axis}")
        self.scale = None
        self.zero_point = None
        self.observer_enabled = True

    # -- switches (given; the fake-quant switch comes from _FakeQuantizerBase) ---------------------
    def enable_observer(self, enabled=True):
        self.observer_enabled = bool(enabled)
        return self

    def disable_observer(self):
        return self.enable_observer(False)

    def qparams(self):
        """(scale, zero_point) that the forward pass uses now."""
        if self.scale is None:
            raise RuntimeError(f"{type(self).__name__} has no qparams yet: it has observed nothing. Run a "
                               "forward pass in training mode with the observer on first.")
        return self.scale, self.zero_point

    def extra_repr(self):
        return (f"{self._format_repr()}, observer={'on' if self.observer_enabled else 'off'}, "
                f"fake_quant={'on' if self.fake_quant_enabled else 'off'}")

    # -- the exercise -----------------------------------------------------------------------------
    def forward(self, x):
        """TODO: observe (training mode and observer on), then fake-quantize (when switched on).

        APPROACH:
          1. Work on a float32 array.
          2. Observe only in training mode with the observer switched on: feed the batch to the
             observer, then keep the qparams it calculates for this layer's format (its bits and
             symmetry, signed codes) as self.scale (float32 array) and self.zero_point (int32 array).
          3. Fake quantization off: clear the backward cache and return the input unchanged.
          4. Otherwise take the qparams from `qparams()` (a RuntimeError when nothing was observed
             yet); in training mode cache what backward needs (the input and those qparams); return
             the input fake-quantized with this layer's code range and axis.
        """
        ### BEGIN SOLUTION
        x = np.asarray(x, dtype=np.float32)
        if self.training and self.observer_enabled:
            self.observer(x)
            qparams = self.observer.calculate_qparams(bits=self.bits, symmetric=self.symmetric, signed=True)
            self.scale, self.zero_point = np.asarray(qparams[0], np.float32), np.asarray(qparams[1], np.int32)
        if not self.fake_quant_enabled:
            self._cache = None
            return x
        scale, zp = self.qparams()
        if self.training:
            self._cache = (x, scale, zp)
        return fake_quantize(x, scale, zp, self.qmin, self.qmax, self.axis)
        ### END SOLUTION

    def backward(self, grad_out):
        """TODO: the clipped STE with the cached x and qparams; the identity when fake quantization was off."""
        ### BEGIN SOLUTION
        if self._cache is None:
            return np.asarray(grad_out, dtype=np.float32)
        x, scale, zp = self._cache
        return fake_quantize_grad(x, grad_out, scale, zp, self.qmin, self.qmax, self.axis)
        ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_fake_quantize_module", "locked": true, "schema_version": 3, "solution": false}
_fq = FakeQuantize(bits=8, symmetric=False)
_y = _fq(np.array([-1.0, 0.0, 0.5, 2.0], np.float32))
assert _fq.scale.dtype == np.float32 and _fq.zero_point.dtype == np.int32
np.testing.assert_allclose(_y, [-1.0, 0.0, 0.5, 2.0], atol=_fq.scale / 2)
_s_before = _fq.scale.copy()
_fq.disable_observer()
_fq(np.array([-10.0, 10.0], np.float32))                       # frozen: the range does not move
assert _fq.scale == _s_before
np.testing.assert_array_equal(_fq.backward(np.ones(2, np.float32)), [0, 0])   # both clamped
_fq.disable_fake_quant()
np.testing.assert_array_equal(_fq(np.array([0.123], np.float32)), np.float32([0.123]))
print(_fq)

# %% [markdown]
# ## 4. Learning the step size: LSQ
#
# `FakeQuantize` *measures* its range; nothing in the loss tells it whether clipping a few outliers
# would pay for finer steps everywhere else. **LSQ** (Esser, McKinstry, Bablani, Appuswamy & Modha,
# *Learned Step Size Quantization*, ICLR 2020) makes the step size $s$ a trainable parameter and
# gives it a gradient. With $v$ the input, zero point $z$ and the STE for the rounding:
#
# $$\frac{\partial \hat{v}}{\partial s} = \begin{cases} q_{min} - z & \text{below the range (clamped low)}\\
#   \mathrm{round}(v/s) - v/s & \text{inside}\\ q_{max} - z & \text{above the range (clamped high)}\end{cases}$$
#
# Read it: a clamped value wants a bigger step (its error shrinks as the range grows), by a full
# $|q_{min}-z|$ or $|q_{max}-z|$; an inside value pulls in the direction that reduces its own rounding
# error, by at most half a step. The balance of the two is what sets the range — a learned, loss-aware
# version of module 16's MSE search. The gradient of the input is the clipped STE of section 2.
# ("Inside" is decided on the rounded code, as in section 2 and in PyTorch's
# `_LearnableFakeQuantize`; the paper clips before rounding, which differs only within half a step of
# the two ends.)
#
# The zero point, if it were learned too (LSQ+, Bhalgat et al. 2020), would get
# $\partial \hat{v}/\partial z = -s$ where the value was clamped and $0$ inside (inside, the $+z$ and
# $-z$ cancel). Our `LSQFakeQuantize` keeps the zero point fixed, but `lsq_grad` returns this gradient
# too; it is the one part of the formula that is the *true* derivative everywhere, which makes it a
# good thing to check with finite differences.
#
# **Gradient scale.** $\partial L/\partial s$ sums over every element that shares the scale, so it is
# $N$ times larger than a weight's gradient, while $s$ itself is smaller than typical weights. The
# paper multiplies the step-size gradient by $g = 1/\sqrt{N\,Q_p}$ ($N$ = number of elements sharing
# the scale, $Q_p = q_{max}$), so that $s$ learns at a rate comparable to the weights. Anchor (from
# PyTorch's `_LearnableFakeQuantize`, which implements the same formula): $v = [-3, -0.26, 0.1, 0.37, 0.5, 2.9]$,
# $s = 0.25$, $z = 0$, range $[-8, 7]$, $g = 1/\sqrt{6\cdot 7}$, upstream gradient all ones give
# $\partial L/\partial s = -0.28391814$ and $\partial L/\partial z = -0.07715168$.

# %% nbgrader={"grade": false, "grade_id": "lsq_grad", "locked": false, "schema_version": 3, "solution": true}
#| export
def lsq_grad(x, grad_out, scale, zero_point, qmin, qmax, grad_scale=1.0, axis=None):
    """Backward pass of LSQ fake quantization: (grad_x, grad_scale_param, grad_zero_point).

    TODO: with q = rint(x / scale) + zero_point (unclamped) and g = grad_scale:
      grad_x      = grad_out where qmin <= q <= qmax, else 0                    (the clipped STE)
      grad_scale_param = g * sum over elements of grad_out * d,  d = qmin - z (q < qmin),
                         qmax - z (q > qmax), rint(x / s) - x / s (inside)
      grad_zero_point  = g * sum over elements of grad_out * (-s where clamped, 0 inside)
    Per tensor (axis None) the two sums are float scalars; with `axis` they are float32 arrays with one
    value per index along `axis` (sum over every other axis).

    APPROACH: reshape the scale and the zero point with `_per_axis`; compute the unclamped codes as
    fake_quantize_grad does; split the elements into below, inside and above the range; build d with
    np.where; sum over every axis but `axis` (all axes when axis is None), in float64. grad_out of
    another shape than x is a ValueError, as in fake_quantize_grad.

    EXAMPLE: x = [-3, -0.26, 0.1, 0.37, 0.5, 2.9], s = 0.25, z = 0, [-8, 7], g = 1/sqrt(42),
             grad_out = ones -> grad_x = [0, 1, 1, 1, 1, 0], grad_scale = -0.28391814,
             grad_zero_point = -0.07715168
    """
    ### BEGIN SOLUTION
    x = np.asarray(x, dtype=np.float32)
    grad_out = np.asarray(grad_out, dtype=np.float32)
    if grad_out.shape != x.shape:
        raise ValueError(f"grad_out has shape {grad_out.shape}, x has {x.shape}")
    _check_range(qmin, qmax)
    s = _per_axis(scale, x, axis, "scale")
    z = _per_axis(zero_point, x, axis, "zero_point")
    u = x / s
    r = np.rint(u)
    q = r + z
    below, above = q < qmin, q > qmax
    inside = ~(below | above)
    d = np.where(below, qmin - z, np.where(above, qmax - z, r - u)).astype(np.float64)
    dz = np.where(inside, 0.0, -np.broadcast_to(s, x.shape)).astype(np.float64)
    reduce = None if axis is None else tuple(i for i in range(x.ndim) if i != axis % x.ndim)
    g64 = grad_out.astype(np.float64)
    grad_s = grad_scale * np.sum(g64 * d, axis=reduce)
    grad_z = grad_scale * np.sum(g64 * dz, axis=reduce)
    if axis is None:
        grad_s, grad_z = float(grad_s), float(grad_z)
    else:
        grad_s, grad_z = grad_s.astype(np.float32), grad_z.astype(np.float32)
    return (grad_out * inside).astype(np.float32), grad_s, grad_z
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_lsq_grad", "locked": true, "schema_version": 3, "solution": false}
_gx, _gs, _gz = lsq_grad([-3, -0.26, 0.1, 0.37, 0.5, 2.9], np.ones(6), 0.25, 0, -8, 7, grad_scale=1 / np.sqrt(42))
np.testing.assert_array_equal(_gx, [0, 1, 1, 1, 1, 0])
assert abs(_gs - -0.28391814) < 1e-6 and abs(_gz - -0.07715168) < 1e-6, (_gs, _gz)
print(f"lsq_grad: dS = {_gs:.8f}, dZ = {_gz:.8f}")

# %% [markdown]
# `LSQFakeQuantize` is the layer: its step size is an `nn.Parameter` that the optimiser updates with
# the weights. Three details:
#
# * **The parameter must exist before the optimiser is built** (the optimiser takes the list of
#   parameters once). For a per-channel quantizer we therefore need the number of channels up front
#   (`channels`); the *value* is set by the first training-mode forward pass.
# * **Initialisation.** The paper sets $s = 2\,\mathrm{mean}|v|/\sqrt{Q_p}$ (`init="lsq"`). When we
#   fine-tune a pretrained model it is more natural to start from the range PTQ would pick, a min/max
#   observer on the first batch (`init="minmax"`, the default): QAT then starts from (nearly) the
#   qparams PTQ would use.
#   That also fixes the zero point of an asymmetric quantizer; it stays fixed afterwards (the code of
#   the real value 0 is $z$ whatever the step size, so a fixed $z$ stays valid while $s$ learns).
# * **The step size must stay positive**: clamp it to at least $10^{-8}$ before using it.
#
# `backward` computes the gradient scale $g = 1/\sqrt{N\,q_{max}}$ with $N$ = number of elements per
# scale (`x.size // scale.size`), accumulates the step-size gradient into `self.scale.grad` and
# returns the input gradient.

# %% nbgrader={"grade": false, "grade_id": "lsq_fake_quantize", "locked": false, "schema_version": 3, "solution": true}
#| export
class LSQFakeQuantize(_FakeQuantizerBase):
    """Fake quantization with a learned step size (LSQ); a tinyq.nn layer (forward / backward)."""

    EPS = 1e-8

    def __init__(self, bits=8, symmetric=True, axis=None, channels=None, init="minmax"):
        """axis None: one step size; axis=k: one per index along k, `channels` of them (required).
        init: "minmax" (from a MinMaxObserver on the first training batch) or "lsq" (2 mean|x| / sqrt(qmax),
        symmetric only)."""
        if init not in ("minmax", "lsq"):
            raise ValueError(f"init must be 'minmax' or 'lsq', got {init!r}")
        if init == "lsq" and not symmetric:
            raise ValueError("init='lsq' sets no zero point: use it with symmetric=True")
        if (axis is None) != (channels is None):
            raise ValueError("give `channels` exactly when `axis` is set (per-channel step sizes)")
        self._set_format(bits, symmetric, axis)
        self.init = init
        shape = () if axis is None else (int(channels),)
        self.scale = nn.Parameter(np.ones(shape))
        self.zero_point = np.zeros(shape, dtype=np.int32)
        self.initialized = False

    def qparams(self):
        """(scale, zero_point) that the forward pass uses now."""
        if not self.initialized:
            raise RuntimeError("LSQFakeQuantize is not initialised: run a forward pass in training mode first")
        return np.maximum(self.scale.data, self.EPS).astype(np.float32), self.zero_point

    def extra_repr(self):
        return f"{self._format_repr()}, learned step size"

    def initialize(self, x):
        """Set the step size (and zero point) from a batch, as `init` says (given)."""
        x = np.asarray(x, dtype=np.float32)
        if self.init == "lsq":
            reduce = None if self.axis is None else tuple(i for i in range(x.ndim) if i != self.axis % x.ndim)
            scale = 2 * np.mean(np.abs(x), axis=reduce) / np.sqrt(self.qmax)
            zp = np.zeros_like(scale, dtype=np.int32)
        else:
            obs = MinMaxObserver(axis=self.axis)
            obs(x)
            scale, zp = obs.calculate_qparams(bits=self.bits, symmetric=self.symmetric, signed=True)
        self.scale.data[...] = np.maximum(np.asarray(scale, dtype=np.float32), self.EPS)
        self.zero_point = np.asarray(zp, dtype=np.int32).reshape(self.scale.data.shape)
        self.initialized = True

    def forward(self, x):
        """TODO: initialise on the first training batch, then fake-quantize with the learned step size.

        APPROACH: work in float32; the first batch seen in training mode sets the step size (the
        given `initialize`). Fake quantization off: clear the backward cache and return the input.
        Otherwise take the qparams from `qparams()` (the clamped step size); in training mode cache
        the input and those qparams for backward; return the input fake-quantized with this layer's
        code range and axis.
        """
        ### BEGIN SOLUTION
        x = np.asarray(x, dtype=np.float32)
        if self.training and not self.initialized:
            self.initialize(x)
        if not self.fake_quant_enabled:
            self._cache = None
            return x
        scale, zp = self.qparams()
        if self.training:
            self._cache = (x, scale, zp)
        return fake_quantize(x, scale, zp, self.qmin, self.qmax, self.axis)
        ### END SOLUTION

    def backward(self, grad_out):
        """TODO: lsq_grad with g = 1 / sqrt(N * qmax), N = x.size // scale.size; add the step-size
        gradient to self.scale.grad; return the input gradient (identity when fake quantization was off)."""
        ### BEGIN SOLUTION
        if self._cache is None:
            return np.asarray(grad_out, dtype=np.float32)
        x, scale, zp = self._cache
        n = x.size // scale.size
        g = 1.0 / np.sqrt(n * self.qmax)
        grad_x, grad_s, _ = lsq_grad(x, grad_out, scale, zp, self.qmin, self.qmax, grad_scale=g, axis=self.axis)
        self.scale.grad += np.asarray(grad_s, dtype=self.scale.grad.dtype).reshape(self.scale.grad.shape)
        return grad_x
        ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_lsq_fake_quantize", "locked": true, "schema_version": 3, "solution": false}
_lsq = LSQFakeQuantize(bits=4, symmetric=True)
_v = np.array([-3, -0.26, 0.1, 0.37, 0.5, 2.9], np.float32)
_lsq(_v)                                                        # initialises from min/max: s = 3 / 7
assert np.isclose(_lsq.scale.data, 3 / 7) and _lsq.initialized and (_lsq.qmin, _lsq.qmax) == (-7, 7)
_lsq = LSQFakeQuantize(bits=4, symmetric=False)                 # full range [-8, 7], as in the anchor
_lsq(_v)
_lsq.scale.data[...], _lsq.zero_point = 0.25, np.zeros((), np.int32)   # the anchor's qparams
_lsq(_v)
_lsq.backward(np.ones(6, np.float32))
assert abs(float(_lsq.scale.grad) - -0.28391814) < 1e-6, _lsq.scale.grad
print(_lsq, "scale grad", float(_lsq.scale.grad))

# %% [markdown]
# ## 5. A QAT model: prepare, (train), convert
#
# Where do the fake quantizers go? Exactly where module 17's integer model quantizes, so that the QAT
# model *is* the integer model, simulated in float:
#
# * the **input** of each Linear/Conv2d (module 17 quantizes it to int8 with the calibrated qparams),
# * the **weight** (symmetric, per output channel),
# * the **output** (module 17 requantizes the int32 accumulator to int8).
#
# `QATLayer(layer, weight_fq, in_fq, out_fq)` wraps one layer. Its forward pass is
# `out_fq(layer computed with weight_fq(W) in place of W)(in_fq(x))`. Its backward pass runs the
# chain in reverse: `out_fq.backward`, then the layer's backward **with the fake-quantized weight in
# place** (the layer multiplied by $\hat W$, so $\partial L/\partial x = g\,\hat W$), which accumulates
# $\partial L/\partial \hat W$; that gradient goes through `weight_fq.backward` (the STE) and is what
# the float weight receives; finally `in_fq.backward`.
#
# The float ("master") weight $W$ is what the optimiser updates. Small updates that do not cross a
# rounding boundary change nothing in the forward pass — but they accumulate, and the weight crosses
# the boundary when the gradient has consistently pushed it there. Keeping the float master copy is
# what makes QAT work at all; updating the quantized weight directly would round every small step away.
#
# The plumbing trick used below (given in the docstring): the `nn` layers compute with
# `self.weight.data`, so swap the fake-quantized weight in for the duration of the layer's forward and
# backward, and give the float weight back afterwards — whatever happens (`try/finally`).

# %% nbgrader={"grade": false, "grade_id": "qat_layer", "locked": false, "schema_version": 3, "solution": true}
#| export
class QATLayer(nn.Module):
    """A Linear or Conv2d with fake-quantized input, weight and output (module 17's quantization points)."""

    def __init__(self, layer, weight_fq, in_fq, out_fq):
        if not isinstance(layer, (nn.Linear, nn.Conv2d)):
            raise TypeError(f"QATLayer wraps nn.Linear or nn.Conv2d, got {type(layer).__name__}")
        self.layer, self.weight_fq, self.in_fq, self.out_fq = layer, weight_fq, in_fq, out_fq
        self._w_fq = None

    def forward(self, x):
        """TODO: out_fq(layer(in_fq(x)) computed with weight_fq(W) as the weight).

        APPROACH: fake-quantize the input, then the float weight; run the wrapped layer with the
        fake-quantized weight swapped into the weight's `.data`, and put the float weight back in a
        `finally:` whatever happens; in training mode keep the fake-quantized weight for backward
        (in self._w_fq); return the layer's output fake-quantized.
        """
        ### BEGIN SOLUTION
        x = self.in_fq(x)
        w = self.layer.weight.data
        w_fq = self.weight_fq(w)
        self.layer.weight.data = w_fq
        try:
            y = self.layer(x)
        finally:
            self.layer.weight.data = w
        if self.training:
            self._w_fq = w_fq
        return self.out_fq(y)
        ### END SOLUTION

    def backward(self, grad_out):
        """TODO: the chain in reverse; the float weight's .grad receives weight_fq.backward(dL/dW_fq).

        APPROACH: go back through the output quantizer first. Keep the weight's data and its
        accumulated grad; put the cached fake-quantized weight in .data and zeros in .grad, so that the
        layer's backward returns dL/dx and leaves dL/dW_fq in .grad; restore data and grad in a
        `finally:`; the float weight's grad then gains the weight quantizer's backward of dL/dW_fq.
        Return the gradient that comes back through the input quantizer.
        """
        ### BEGIN SOLUTION
        g = self.out_fq.backward(grad_out)
        weight = self.layer.weight
        w, grad_before = weight.data, weight.grad
        weight.data, weight.grad = self._w_fq, np.zeros_like(w)
        try:
            dx = self.layer.backward(g)
            grad_w_fq = weight.grad
        finally:
            weight.data = w
            weight.grad = grad_before
        weight.grad = grad_before + self.weight_fq.backward(grad_w_fq)
        return self.in_fq.backward(dx)
        ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_qat_layer", "locked": true, "schema_version": 3, "solution": false}
_rng = np.random.default_rng(1)
_lin = nn.Linear(6, 3, rng=0)
_ql = QATLayer(_lin, FakeQuantize(4, symmetric=True, axis=0, observer=MovingAverageMinMaxObserver(1.0, axis=0)),
               FakeQuantize(8), FakeQuantize(8))
_xb = _rng.normal(size=(5, 6)).astype(np.float32)
_y = _ql(_xb)
_w_hat = fake_quantize(_lin.weight.data, *_ql.weight_fq.qparams(), -7, 7, axis=0)
_ref = fake_quantize(fake_quantize(_xb, *_ql.in_fq.qparams(), -128, 127) @ _w_hat.T + _lin.bias.data,
                     *_ql.out_fq.qparams(), -128, 127)
np.testing.assert_allclose(_y, _ref, rtol=0, atol=1e-6)
_dx = _ql.backward(np.ones_like(_y))
assert _dx.shape == _xb.shape and _lin.weight.grad.shape == (3, 6) and np.any(_lin.weight.grad != 0)
print("QATLayer: ok")

# %% [markdown]
# `prepare_qat(model, weight_bits, act_bits, per_channel)` returns a **copy** of the model (the float
# model stays as it was, so you can still run PTQ on it) in training mode, with every Linear and
# Conv2d (`tinyq.ptq.quantizable_layers`) replaced by a `QATLayer`:
#
# * weight: `FakeQuantize(weight_bits, symmetric=True, axis=0 or None,
#   observer=MovingAverageMinMaxObserver(averaging_constant=1.0, axis=...))` — an averaging constant
#   of 1 means "the range of the weight as it is now": weights change every step, and their range
#   must follow them exactly;
# * input and output: `FakeQuantize(act_bits, symmetric=False)` — the default moving average
#   (constant 0.01, PyTorch's default for QAT): activation ranges vary from batch to batch, and a
#   smoothed range is a better estimate of the one calibration would give.
#
# With `lsq=True` every fake quantizer is an `LSQFakeQuantize` instead (weights
# `LSQFakeQuantize(weight_bits, symmetric=True, axis=0, channels=out_channels)` when per-channel,
# activations `LSQFakeQuantize(act_bits, symmetric=False)`).
#
# `convert_qat(model)` turns a trained QAT model into module 17's integer model: a copy, in eval mode,
# whose `QATLayer`s are `tinyq.ptq.QuantizedLayer`s built with `QuantizedLayer.from_float` from the
# float layer and the **qparams the fake quantizers hold** (weights: their scale; input and output:
# `(scale, zero_point)`), not recalibrated ones. `from_float` asks a weight-observer factory for the
# weight's scale; `_FixedQParams` (given) is an "observer" that reports fixed qparams, so
# `functools.partial(_FixedQParams, scale)` is such a factory. Because `fake_quantize` is bit-exact
# with module 15, the integer weight codes are exactly the ones QAT trained with.

# %%
#| exporti
class _FixedQParams:
    """An observer look-alike that reports fixed qparams (for QuantizedLayer.from_float)."""

    def __init__(self, scale, zero_point=0, axis=None):
        self.scale = np.asarray(scale, dtype=np.float32)
        self.zero_point = np.zeros(self.scale.shape, np.int32) + np.asarray(zero_point, np.int32)
        self.axis = axis

    def __call__(self, x):
        return x

    def calculate_qparams(self, bits=8, symmetric=True, signed=True):
        return self.scale.copy(), self.zero_point.copy()


def _fake_quantizers(model):
    return [m for m in model.modules() if isinstance(m, (FakeQuantize, LSQFakeQuantize))]


# %%
#| export
def enable_observers(model, enabled=True):
    """Switch the observers of every FakeQuantize in `model` on or off (PyTorch: enable/disable_observer)."""
    for m in _fake_quantizers(model):
        if hasattr(m, "enable_observer"):
            m.enable_observer(enabled)
    return model


def enable_fake_quant(model, enabled=True):
    """Switch fake quantization of every fake quantizer in `model` on or off."""
    for m in _fake_quantizers(model):
        m.enable_fake_quant(enabled)
    return model


# %% nbgrader={"grade": false, "grade_id": "prepare_qat", "locked": false, "schema_version": 3, "solution": true}
#| export
def prepare_qat(model, weight_bits=8, act_bits=8, per_channel=True, lsq=False):
    """A training-mode copy of `model` whose Linear and Conv2d layers are QATLayers.

    TODO: see the markdown above for the fake quantizers of each layer.

    APPROACH: q = copy.deepcopy(model).train(); for each name in quantizable_layers(q): layer =
    q.get_submodule(name); build weight_fq, in_fq, out_fq; q.set_submodule(name, QATLayer(layer,
    weight_fq, in_fq, out_fq)). Return q (in training mode: call .train() at the end too).

    EXAMPLE: prepare_qat(zoo.load("digits_cnn"), weight_bits=4).conv1.weight_fq
             -> FakeQuantize(4-bit symmetric [-7, 7], axis=0, ...)
    """
    ### BEGIN SOLUTION
    q = copy.deepcopy(model)
    axis = 0 if per_channel else None
    for name in quantizable_layers(q):
        layer = q.get_submodule(name)
        if lsq:
            channels = layer.weight.data.shape[0] if per_channel else None
            weight_fq = LSQFakeQuantize(weight_bits, symmetric=True, axis=axis, channels=channels)
            in_fq, out_fq = LSQFakeQuantize(act_bits, symmetric=False), LSQFakeQuantize(act_bits, symmetric=False)
        else:
            weight_fq = FakeQuantize(weight_bits, symmetric=True, axis=axis,
                                     observer=MovingAverageMinMaxObserver(averaging_constant=1.0, axis=axis))
            in_fq, out_fq = FakeQuantize(act_bits, symmetric=False), FakeQuantize(act_bits, symmetric=False)
        q.set_submodule(name, QATLayer(layer, weight_fq, in_fq, out_fq))
    return q.train()
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_prepare_qat", "locked": true, "schema_version": 3, "solution": false}
from tinyq import zoo
from tinyq.data import load_digits

digits = load_digits()
fp32 = zoo.load("digits_cnn")
_q = prepare_qat(fp32, weight_bits=4)
print(_q.conv1)
assert isinstance(_q.conv1, QATLayer) and isinstance(fp32.conv1, nn.Conv2d), "a prepared copy; the original stays"
assert (_q.conv1.weight_fq.qmin, _q.conv1.weight_fq.qmax) == (-7, 7) and _q.conv1.weight_fq.axis == 0
assert (_q.fc2.out_fq.qmin, _q.fc2.out_fq.qmax) == (-128, 127) and _q.training


# %% nbgrader={"grade": false, "grade_id": "convert_qat", "locked": false, "schema_version": 3, "solution": true}
#| export
def convert_qat(model):
    """An eval-mode copy of a QAT model whose QATLayers are tinyq.ptq.QuantizedLayer (integer) layers.

    TODO: for each QATLayer: QuantizedLayer.from_float(qat.layer, functools.partial(_FixedQParams,
    weight scale), bits=weight_fq.bits, act_bits=in_fq.bits, in_qparams=in_fq.qparams(),
    out_qparams=out_fq.qparams()). A weight quantizer that is not symmetric is a ValueError (the
    integer layers have zero-point-0 weights).

    APPROACH: q = copy.deepcopy(model).eval(); collect the names of the QATLayers first (do not edit a
    tree while walking it), then replace each with q.set_submodule(name, ...). Return q.
    """
    ### BEGIN SOLUTION
    q = copy.deepcopy(model).eval()
    names = [name for name, m in q.named_modules() if isinstance(m, QATLayer)]
    for name in names:
        m = q.get_submodule(name)
        if not m.weight_fq.symmetric:
            raise ValueError(f"{name}: the weight quantizer must be symmetric (zero point 0)")
        w_scale, _ = m.weight_fq.qparams()
        new = QuantizedLayer.from_float(m.layer, functools.partial(_FixedQParams, w_scale),
                                        bits=m.weight_fq.bits, act_bits=m.in_fq.bits,
                                        in_qparams=m.in_fq.qparams(), out_qparams=m.out_fq.qparams())
        q.set_submodule(name, new)
    return q
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_convert_qat", "locked": true, "schema_version": 3, "solution": false}
for _xb, _ in digits.batches("calib", 50):
    _q(_xb)                                          # training mode: every quantizer observes
_q.eval()
_int = convert_qat(_q)
assert isinstance(_int.conv1, QuantizedLayer) and _int.conv1.w_q.dtype == np.int8
assert np.abs(_int.conv1.w_q).max() <= 7 and isinstance(_q.conv1, QATLayer)
_agree = np.mean(_int(digits.x_test).argmax(axis=1) == _q(digits.x_test).argmax(axis=1))
print(f"the integer model and the QAT model agree on {_agree:.1%} of the test images")
assert _agree > 0.99


# %% [markdown]
# ### Fine-tuning
#
# `train_qat` is an ordinary training loop over the prepared model — the part PTQ never needs. Adam on
# the mean cross-entropy, mini-batches of `batch_size` shuffled with seed `seed + epoch` (so a run is
# reproducible), and two QAT-specific knobs:
#
# * `freeze_observers_after`: after this many steps, switch every observer off
#   (`enable_observers(model, False)`), so the last steps train against the qparams the integer
#   model will keep (PyTorch's recipe freezes observers after a few epochs);
# * `eval_fn(model) -> float`, called in eval mode every `eval_every` steps (and after the last step),
#   to follow the accuracy as training runs.
#
# The returned history is a dict of lists: `"loss"` (one per step), `"eval_step"` and `"eval"` (one
# per evaluation). The model is left in eval mode.

# %% nbgrader={"grade": false, "grade_id": "train_qat", "locked": false, "schema_version": 3, "solution": true}
#| export
def train_qat(model, x, y, epochs=3, lr=1e-4, batch_size=32, seed=0, freeze_observers_after=None,
              eval_fn=None, eval_every=None):
    """Fine-tune a prepared QAT model in place; return {"loss": [...], "eval_step": [...], "eval": [...]}.

    TODO: the loop described above.

    APPROACH: an nn.Adam optimiser over the model's parameters at rate lr, the model in training
    mode, a step counter. Each epoch takes its shuffled mini-batches from `batches` with seed
    `seed + epoch`, and for each:
      - when the step count reaches freeze_observers_after, switch every observer off;
      - nn.cross_entropy gives the loss and its gradient with respect to the logits;
      - clear the gradients, backpropagate, let the optimiser step, count the step, record the loss;
      - every eval_every steps (when eval_fn is given) evaluate in eval mode, record the step and
        the value, and go back to training mode.
    After the loop, evaluate once more unless the last step was just evaluated; leave the model in
    eval mode.

    EXAMPLE: hist = train_qat(prepare_qat(fp32, weight_bits=3), d.x_train, d.y_train,
                              eval_fn=accuracy_on_test, eval_every=10)
             -> 105 losses (3 epochs of 35 batches of 32), 11 evaluations
    """
    ### BEGIN SOLUTION
    opt = nn.Adam(model.parameters(), lr=lr)
    history = {"loss": [], "eval_step": [], "eval": []}
    model.train()
    step = 0

    def evaluate():
        model.eval()
        history["eval_step"].append(step)
        history["eval"].append(float(eval_fn(model)))
        model.train()

    for epoch in range(epochs):
        for xb, yb in batches(x, y, batch_size, shuffle=True, seed=seed + epoch):
            if freeze_observers_after is not None and step == freeze_observers_after:
                enable_observers(model, False)
            logits = model(xb)
            loss, dlogits = nn.cross_entropy(logits, yb)
            opt.zero_grad()
            model.backward(dlogits)
            opt.step()
            step += 1
            history["loss"].append(loss)
            if eval_fn is not None and eval_every and step % eval_every == 0:
                evaluate()
    if eval_fn is not None and (not history["eval_step"] or history["eval_step"][-1] != step):
        evaluate()
    model.eval()
    return history
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_train_qat", "locked": true, "schema_version": 3, "solution": false}
_q = prepare_qat(fp32, weight_bits=8, act_bits=8)
print(_q.fc1)
_hist = train_qat(_q, digits.x_calib, digits.y_calib, epochs=1, batch_size=50,
                  eval_fn=lambda m: nn.accuracy(m(digits.x_test), digits.y_test), eval_every=2)
assert len(_hist["loss"]) == 4 and _hist["eval_step"] == [2, 4] and not _q.training
_int8 = convert_qat(_q)
assert isinstance(_int8.fc1, QuantizedLayer) and _int8.fc1.w_q.dtype == np.int8
print(f"QAT model (eval) {_hist['eval'][-1]:.1%}, its integer conversion "
      f"{nn.accuracy(_int8(digits.x_test), digits.y_test):.1%}")

# %% [markdown]
# ## 6. Systems analysis: PTQ against QAT, measured
#
# Everything below runs your functions on the zoo's digits CNN (FP32 test accuracy 98.6%, 500 test
# images: one image is 0.2 pt). First, what the STE is, drawn from your own code.
#
# ### 6.1 The staircase, its true derivative, and what we use instead
#
# A 4-bit signed quantizer ($[-8, 7]$, $s = 1$). Left: `fake_quantize` against the identity. Right: the
# derivative measured by central differences on `fake_quantize` (zero everywhere except spikes of
# height $1/(2h)$ at the half-way points, clipped here), the clipped STE (`fake_quantize_grad`), the
# plain STE (1 everywhere), and LSQ's $\partial\hat v/\partial s$ per element (`lsq_grad`).

# %%
import time

import matplotlib.pyplot as plt

from tinyq.ptq import quantize_model

_u = np.linspace(-11, 11, 2201).astype(np.float32)
_h = np.float32(1e-3)
_fd = (fake_quantize(_u + _h, 1.0, 0, -8, 7) - fake_quantize(_u - _h, 1.0, 0, -8, 7)) / (2 * _h)
_ste = fake_quantize_grad(_u, np.ones_like(_u), 1.0, 0, -8, 7)
_lsq_ds = lsq_grad(_u, np.ones_like(_u), np.ones(_u.size, np.float32), np.zeros(_u.size), -8, 7, axis=0)[1]
print(f"finite-difference derivative exactly 0 at {np.mean(_fd == 0):.1%} of {_u.size} points; "
      f"the clipped STE passes the gradient at {np.mean(_ste == 1):.1%}")
fig, ax = plt.subplots(1, 2, figsize=(11, 3.4))
ax[0].plot(_u, _u, "k:", lw=0.8, label="identity")
ax[0].plot(_u, fake_quantize(_u, 1.0, 0, -8, 7), label="fake_quantize (4-bit, s=1)")
ax[0].set_xlabel("x / s"); ax[0].legend(); ax[0].set_title("forward: a staircase, flat outside [-8, 7]")
ax[1].plot(_u, np.clip(_fd, 0, 3), color="0.7", label="true derivative (finite differences, clipped at 3)")
ax[1].plot(_u, np.ones_like(_u) + 0.04, "--", label="plain STE")
ax[1].plot(_u, _ste, lw=2, label="clipped STE (fake_quantize_grad)")
ax[1].plot(_u, _lsq_ds, label="LSQ d x_hat / d s (lsq_grad)")
ax[1].set_xlabel("x / s"); ax[1].set_ylim(-9, 9); ax[1].legend(fontsize=7, loc="upper left")
ax[1].set_title("backward: what each estimator passes")
fig.tight_layout()

# %% [markdown]
# ### 6.2 Plain against clipped STE: the drift
#
# A toy with the clamp doing all the work: fit a vector $w$ so that its 4-bit fake quantization (range
# frozen at $[-7s, 7s]$, $s = 0.1$) matches targets $t$, half of which lie beyond the range.
# Nothing can fit those; the best a quantized $w$ can do is sit at the boundary. With the clipped
# STE, a weight that crosses the boundary stops receiving gradient and stays put. With the plain STE
# it keeps being pushed toward its unreachable target: the loss does not move, but the float weight
# drifts away, and the further it drifts, the longer it would take to come back if the range or the
# target changed.

# %%
_rng = np.random.default_rng(0)
_t = np.concatenate([_rng.uniform(-0.6, 0.6, 50), _rng.choice([-1, 1], 50) * _rng.uniform(0.9, 1.5, 50)])
_drift = {}
for _name, _grad in [("clipped STE", fake_quantize_grad),
                     ("plain STE", lambda x, g, *args, **kw: np.asarray(g, np.float32))]:
    _w = np.zeros(_t.size, np.float32)
    _path = []
    for _ in range(300):
        _err = fake_quantize(_w, 0.1, 0, -7, 7) - _t
        _w = _w - 0.05 * _grad(_w, 2 * _err, 0.1, 0, -7, 7)
        _path.append((float(np.mean(_err ** 2)), float(np.abs(_w).max())))
    _drift[_name] = np.array(_path)
    print(f"{_name:12s}: final loss {_path[-1][0]:.4f}, largest |w| {_path[-1][1]:.2f} (the last code is 0.7)")
fig, ax = plt.subplots(1, 2, figsize=(10, 3))
for _name, _p in _drift.items():
    ax[0].plot(_p[:, 0], label=_name)
    ax[1].plot(_p[:, 1], label=_name)
ax[0].set_ylabel("loss"); ax[1].set_ylabel("largest |w| (float master weight)")
for a in ax:
    a.set_xlabel("step"); a.legend()
fig.tight_layout()

# %% [markdown]
# ### 6.3 PTQ against QAT on the digits CNN
#
# For each weight width (activations stay 8-bit, weights per channel), PTQ is module 17's
# `quantize_model` calibrated on the 200 calibration images; QAT is `prepare_qat` + `train_qat` with
# one fixed recipe (3 epochs from the pretrained weights, Adam, lr $10^{-4}$, batches of 32, seed 0)
# + `convert_qat`. Both are measured as integer models on the 500 test images. Two controls:
# the FP32 model fine-tuned with the same recipe (does fine-tuning alone move the accuracy?), and the
# same QAT with LSQ fake quantizers or with the plain STE in place of the clipped one.

# %%
def test_accuracy(model):
    return nn.accuracy(model(digits.x_test), digits.y_test)


def run_qat(weight_bits, lsq=False, plain_ste=False, eval_every=None, **recipe):
    """prepare -> train -> convert; returns (integer model, history, training seconds).

    The seconds exclude the evaluations made for the accuracy curve."""
    model = prepare_qat(fp32, weight_bits=weight_bits, act_bits=8, lsq=lsq)
    if plain_ste:                                   # swap every FakeQuantize's backward for the identity
        for m in model.modules():
            if isinstance(m, FakeQuantize):
                m.backward = lambda g: np.asarray(g, np.float32)
    eval_s = [0.0]

    def timed_eval(m):
        t = time.perf_counter()
        acc = test_accuracy(m)
        eval_s[0] += time.perf_counter() - t
        return acc

    t0 = time.perf_counter()
    hist = train_qat(model, digits.x_train, digits.y_train, eval_fn=timed_eval, eval_every=eval_every, **recipe)
    return convert_qat(model), hist, time.perf_counter() - t0 - eval_s[0]


calib = list(digits.batches("calib", 50))
acc_fp32 = test_accuracy(fp32)
_t0 = time.perf_counter()
_fine = copy.deepcopy(fp32)                 # train_qat on a model without fake quantizers = FP32 fine-tuning
_fine_hist = train_qat(_fine, digits.x_train, digits.y_train)
fp32_finetune_s = time.perf_counter() - _t0
_fine_acc = test_accuracy(_fine)
rows, curves = [], {}
for bits in (8, 4, 3, 2):
    _t0 = time.perf_counter()
    ptq = quantize_model(fp32, calib, bits=bits)
    ptq_s = time.perf_counter() - _t0
    qat, hist, qat_s = run_qat(bits, eval_every=5)
    curves[f"W{bits}A8"] = hist
    rows.append((f"W{bits}A8", test_accuracy(ptq), ptq_s, test_accuracy(qat), qat_s))
extra = {}
for label, kw in [("W3A8 LSQ", dict(weight_bits=3, lsq=True)), ("W2A8 LSQ", dict(weight_bits=2, lsq=True)),
                  ("W2A8 plain STE", dict(weight_bits=2, plain_ste=True))]:
    qat, hist, qat_s = run_qat(eval_every=5, **kw)
    curves[label] = hist
    extra[label] = (test_accuracy(qat), qat_s)

print(f"FP32 {acc_fp32:.1%};  FP32 fine-tuned with the QAT recipe {_fine_acc:.1%} "
      f"({fp32_finetune_s:.1f} s)\n")
print(f"{'weights':8s} {'PTQ acc':>8s} {'PTQ s':>6s} {'QAT acc':>8s} {'QAT s':>6s} {'PTQ gap':>8s} {'QAT gap':>8s}")
for label, a_ptq, t_ptq, a_qat, t_qat in rows:
    print(f"{label:8s} {a_ptq:8.1%} {t_ptq:6.2f} {a_qat:8.1%} {t_qat:6.1f} "
          f"{(acc_fp32 - a_ptq) * 100:7.1f}pt {(acc_fp32 - a_qat) * 100:7.1f}pt")
for label, (a, t) in extra.items():
    print(f"{label:15s} QAT {a:.1%} ({t:.1f} s)")

# %%
fig, ax = plt.subplots(1, 2, figsize=(11, 3.6))
_pos = np.arange(len(rows))
ax[0].bar(_pos - 0.2, [r[1] for r in rows], 0.4, label="PTQ")
ax[0].bar(_pos + 0.2, [r[3] for r in rows], 0.4, label="QAT (3 epochs)")
for i, r in enumerate(rows):
    for dx, a in ((-0.2, r[1]), (0.2, r[3])):
        ax[0].text(i + dx, 0.9405, f"{a:.1%}", ha="center", va="bottom", fontsize=7, rotation=90)
ax[0].axhline(acc_fp32, color="k", lw=0.8, label="FP32")
ax[0].axhline(acc_fp32 - 0.01, color="k", lw=0.8, ls=":", label="FP32 - 1 pt (the bar)")
ax[0].set_xticks(_pos, [r[0] for r in rows]); ax[0].set_ylim(0.94, 1.004)
ax[0].set_ylabel("test accuracy (integer model)"); ax[0].legend(fontsize=7, loc="upper center", ncol=4)
ax[0].set_title("PTQ vs QAT (bars below 94% are cut; labels give the value)")
for label, hist in curves.items():
    ax[1].plot(hist["eval_step"], hist["eval"], label=label, ls="--" if "LSQ" in label or "plain" in label else "-")
ax[1].axhline(acc_fp32, color="k", lw=0.8)
ax[1].set_xlabel("QAT step (batches of 32)"); ax[1].set_ylabel("test accuracy (QAT model)")
ax[1].set_ylim(0.85, 1.0); ax[1].legend(fontsize=7, ncol=2); ax[1].set_title("accuracy over QAT steps")
fig.tight_layout()

# %% [markdown]
# ### 6.4 What it cost: time and engineering effort
#
# The accuracy is only half of the trade. First the price of fake quantization itself: one training
# step (forward, backward, Adam; a batch of 32) of the FP32 model against the same step of the QAT
# model, timed with `tinyq.bench.time_interleaved` (interleaved, warm-up, median), so a busy machine
# slows all of them alike.

# %%
from tinyq.bench import time_interleaved

_xb, _yb = digits.x_train[:32], digits.y_train[:32]


def _stepper(model):
    model.train()
    opt = nn.Adam(model.parameters(), lr=1e-7)      # timing only: the weights barely move

    def one_step():
        _, d_logits = nn.cross_entropy(model(_xb), _yb)
        model.zero_grad()
        model.backward(d_logits)
        opt.step()
    return one_step


_step_models = {"FP32": copy.deepcopy(fp32),
                "QAT W3A8, FakeQuantize": prepare_qat(fp32, weight_bits=3),
                "QAT W3A8, LSQ": prepare_qat(fp32, weight_bits=3, lsq=True)}
step_s = dict(zip(_step_models, time_interleaved([_stepper(m) for m in _step_models.values()],
                                                 repeats=7, warmup=2, min_sample_s=0.05)))
for _k, _v in step_s.items():
    print(f"{_k:24s} {_v * 1e3:6.1f} ms per training step, {_v / step_s['FP32']:.2f}x FP32")

# %% [markdown]
# Every fake quantizer adds an observer update, a divide, a round and a clip per element, and a mask
# in the backward pass: cheap next to the matmuls, but not free; on a GPU the same ops are a few
# extra element-wise kernels per layer. Then the whole procedure, side by side (wall time of the single
# W3A8 runs above, images counted, source lines counted with `inspect`: module 17's path in `tinyq.ptq`,
# and QAT's path in the functions and classes you wrote above):

# %%
import inspect
import linecache


def n_lines(*objects):
    """Source lines of functions and classes, docstrings included. A class defined in a notebook cell
    has no file that `inspect` can read; its lines are found in the cell that holds its methods."""
    total = 0
    for o in objects:
        try:
            total += len(inspect.getsource(o).splitlines())
        except (OSError, TypeError):
            method = next(f for f in vars(o).values() if inspect.isfunction(f))
            cell = linecache.getlines(method.__code__.co_filename)
            start = next(i for i, line in enumerate(cell) if line.startswith(f"class {o.__name__}"))
            total += len(inspect.getblock(cell[start:]))
    return total


from tinyq import ptq as _ptq

_qat_lines = n_lines(fake_quantize, fake_quantize_grad, FakeQuantize, QATLayer, prepare_qat, train_qat, convert_qat)
_w3 = next(r for r in rows if r[0] == "W3A8")
_steps = len(curves["W3A8"]["loss"])
effort = [
    ("data", f"{len(digits.y_calib)} calibration images, no labels",
     f"{len(digits.y_train)} labelled training images"),
    ("images through the model", f"{len(digits.y_calib)} forward passes",
     f"{3 * len(digits.y_train):,} forward + backward passes ({_steps} steps of 3 epochs)"),
    ("wall time (W3A8, one run)", f"{_w3[2]:.2f} s", f"{_w3[4]:.1f} s ({_w3[4] / max(_w3[2], 1e-9):.0f}x PTQ)"),
    ("cost of a training step vs FP32", "-",
     f"{step_s['QAT W3A8, FakeQuantize'] / step_s['FP32']:.1f}x (interleaved median)"),
    ("needs a backward pass", "no", "yes: every layer, plus the fake quantizers (STE)"),
    ("hyperparameters", "observer", "observer, lr, epochs, batch size, seed, observer freeze, STE, (LSQ init)"),
    ("source lines on the path (with docstrings)",
     f"{n_lines(_ptq.calibrate, _ptq.Observed, _ptq.quantize_model)} (calibrate + convert)",
     f"{_qat_lines} (+ the integer layers, shared)"),
]
print(f"{'':42s} {'PTQ':38s} QAT")
for what, p, q in effort:
    print(f"{what:42s} {p:38s} {q}")

# %% [markdown]
# ### Reading the results
#
# * **At 8 and 4 bits, PTQ is enough on this model.** W8A8 PTQ matches FP32, and W4A8 PTQ costs
#   about four test images (0.8 pt), *inside* the module's 1-pt bar. Digits are easy and the CNN is
#   small and well-conditioned, so the brief's original bar ("4-bit QAT within 1 pt where 4-bit PTQ is
#   not") cannot be shown at 4 bits here: 4-bit PTQ already passes it. We say so, and make the graded
#   comparison where PTQ really is measurably worse: **3-bit per-channel weights (W3A8)**, about 9
#   images (1.8 pt) below FP32, where QAT comes back to within a point (the graded test measures both
#   in the same run). At **2 bits** (ternary weights: codes $\{-1, 0, 1\}$) PTQ collapses to about
#   half the images right, and three epochs of QAT bring it back to the mid-nineties.
# * **The fine-tuned FP32 control** shows that the recipe itself does not add accuracy: the gains are
#   the network adapting to its quantizer, not extra training.
# * **Most of the recovery happens in the first few dozen steps** (right plot): QAT from pretrained
#   weights is a short correction, not a retraining.
# * **LSQ and the plain STE** land within a few test images of the clipped-STE FakeQuantize on this
#   model with this short recipe. The paper's LSQ gains are at 2-3 bits on ImageNet networks trained
#   for 90 epochs; three epochs leave the learned step sizes little room to move. (Also: Adam divides
#   each gradient by its running RMS, so LSQ's gradient scale $g$ largely cancels under Adam; it matters
#   with SGD, which the paper used.) The plain STE's drift (6.2) does not bite here because the weight
#   ranges follow the weights (min-max, averaging constant 1): a weight is never clamped, so the two
#   estimators differ only on the few activations beyond their moving-average range.
# * **Cost.** QAT needs labelled data, a backward pass through every layer, a training loop and its
#   hyperparameters, and one to two orders of magnitude more compute than calibration; here that is
#   seconds because the model is tiny, for an ImageNet model it is GPU-days. That is why production
#   practice is: try PTQ first (module 17, with sensitivity analysis and mixed precision), and reach for
#   QAT when the bit width you need makes PTQ measurably worse.
#
# ## Summary
#
# * `fake_quantize` simulates the integer model inside float training, bit for bit.
# * Rounding has zero gradient almost everywhere; the **straight-through estimator** replaces it by the
#   identity inside the range and by zero where the clamp is active (mask on the rounded code).
# * `FakeQuantize` = observer + fake quantization, with switches; **LSQ** learns the step size with
#   $\partial\hat v/\partial s$ and the gradient scale $1/\sqrt{N Q_p}$.
# * `prepare_qat` → `train_qat` → `convert_qat` yields the same integer layers as PTQ, with weights
#   and ranges that were trained to survive quantization.
# * Measured here: PTQ suffices down to 4 bits on this model; at 3 and 2 bits, a few seconds of QAT
#   recover what PTQ loses.
