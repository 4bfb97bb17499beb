# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: nbgrader,tags,-all
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
      1. x = np.asarray(x, dtype=np.float32); s = _per_axis(scale, x, axis, "scale");
         z = _per_axis(zero_point, x, axis, "zero_point") (float32 too: the codes stay in float).
      2. Validate: _check_range(qmin, qmax); s positive and finite; z inside [qmin, qmax];
         an empty x returns an empty float32 array; NaN or inf in x -> ValueError saying how many.
      3. q = np.rint(x / s) + z; clip q to [qmin, qmax]; return (q - z) * s as float32.

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


# %% nbgrader={"grade": true, "grade_id": "test_fake_quantize", "locked": true, "points": 0, "schema_version": 3, "solution": false}
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
# not learn anything. Finite differences confirm it: nudge $x$ by $10^{-4}s$ and $\hat{x}$ does not move
# (you will measure this below).
#
# The **straight-through estimator** (Bengio, Léonard & Courville 2013; used for quantization by
# Hubara et al., Jacob et al. 2018 and every QAT toolkit since) does not compute that derivative. It
# *replaces* it: the backward pass pretends the rounding was the identity, $\partial\,\mathrm{round}(u)/\partial u := 1$.
# That is a deliberate bias. The forward pass is exact (the loss really is the quantized network's
# loss); the backward pass is the gradient of a *smooth surrogate*, $x \mapsto \mathrm{clamp}(x, \cdot)$,
# that agrees with the staircase up to half a step. Because the error of the surrogate is bounded by
# $s/2$, following its gradient still moves the weights in a direction that lowers the real loss on
# average — that is the bet, and empirically it wins.
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

    APPROACH: reshape scale/zero_point with _per_axis as in fake_quantize; q = np.rint(x / s) + z
    (do not clip); mask = (q >= qmin) & (q <= qmax); return grad_out * mask as float32.
    grad_out must have x's shape (ValueError otherwise).

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


# %% nbgrader={"grade": true, "grade_id": "test_fake_quantize_grad", "locked": true, "points": 0, "schema_version": 3, "solution": false}
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

# %% nbgrader={"grade": false, "grade_id": "fake_quantize_module", "locked": false, "schema_version": 3, "solution": true}
#| export
class FakeQuantize(nn.Module):
    """Observer + fake quantization, with switches; a tinyq.nn layer (forward / backward)."""

    def __init__(self, bits=8, symmetric=False, axis=None, observer=None):
        """observer: a module 16 observer (default: MovingAverageMinMaxObserver(axis=axis)); its axis
        must equal `axis` (None: one scale for the tensor; 0: one per output channel of a weight)."""
        self.bits, self.symmetric, self.axis = bits, bool(symmetric), axis
        self.qmin, self.qmax = qrange(bits, signed=True, narrow=self.symmetric)
        self.observer = MovingAverageMinMaxObserver(axis=axis) if observer is None else observer
        if getattr(self.observer, "axis", axis) != axis:
            raise ValueError(f"the observer's axis ({self.observer.axis}) differs from axis={axis}")
        self.scale = None
        self.zero_point = None
        self.observer_enabled = True
        self.fake_quant_enabled = True
        self._cache = None

    # -- switches (given) -------------------------------------------------------------------------
    def enable_observer(self, enabled=True):
        self.observer_enabled = bool(enabled)
        return self

    def disable_observer(self):
        return self.enable_observer(False)

    def enable_fake_quant(self, enabled=True):
        self.fake_quant_enabled = bool(enabled)
        return self

    def disable_fake_quant(self):
        return self.enable_fake_quant(False)

    def qparams(self):
        """(scale, zero_point) that the forward pass uses now."""
        if self.scale is None:
            raise RuntimeError(f"{type(self).__name__} has no qparams yet: it has observed nothing. Run a "
                               "forward pass in training mode with the observer on first.")
        return self.scale, self.zero_point

    def extra_repr(self):
        kind = "symmetric" if self.symmetric else "asymmetric"
        where = "per-tensor" if self.axis is None else f"axis={self.axis}"
        return (f"{self.bits}-bit {kind} [{self.qmin}, {self.qmax}], {where}, "
                f"observer={'on' if self.observer_enabled else 'off'}, "
                f"fake_quant={'on' if self.fake_quant_enabled else 'off'}")

    # -- the exercise -----------------------------------------------------------------------------
    def forward(self, x):
        """TODO: observe (training mode and observer on), then fake-quantize (when switched on).

        APPROACH:
          1. x = np.asarray(x, dtype=np.float32).
          2. If self.training and self.observer_enabled: self.observer(x); then set self.scale
             (float32 array) and self.zero_point (int32 array) from
             self.observer.calculate_qparams(bits=self.bits, symmetric=self.symmetric, signed=True).
          3. Fake quantization off: remember that (self._cache = None) and return x unchanged.
          4. Otherwise scale, zp = self.qparams() (raises if nothing was observed yet); in training
             mode cache what backward needs (x and the qparams); return fake_quantize(x, scale, zp,
             self.qmin, self.qmax, self.axis).
        """
        ### BEGIN SOLUTION
        x = np.asarray(x, dtype=np.float32)
        if self.training and self.observer_enabled:
            self.observer(x)
            scale, zp = self.observer.calculate_qparams(bits=self.bits, symmetric=self.symmetric, signed=True)
            self.scale = np.asarray(scale, dtype=np.float32)
            self.zero_point = np.asarray(zp, dtype=np.int32)
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


# %% nbgrader={"grade": true, "grade_id": "test_fake_quantize_module", "locked": true, "points": 0, "schema_version": 3, "solution": false}
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

    APPROACH: s = _per_axis(scale, x, axis, "scale"), z likewise; u = x / s; q = np.rint(u) + z;
    below = q < qmin, above = q > qmax, inside = the rest; build d with np.where; reduce with
    np.sum(..., axis=other axes) (all axes when axis is None). Compute the sums in float64.

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


# %% nbgrader={"grade": true, "grade_id": "test_lsq_grad", "locked": true, "points": 0, "schema_version": 3, "solution": false}
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
#   observer on the first batch (`init="minmax"`, the default): QAT then starts exactly where PTQ ends.
#   That also fixes the zero point of an asymmetric quantizer; it stays fixed afterwards (the code of
#   the real value 0 is $z$ whatever the step size, so a fixed $z$ stays valid while $s$ learns).
# * **The step size must stay positive**: clamp it to at least $10^{-8}$ before using it.
#
# `backward` computes the gradient scale $g = 1/\sqrt{N\,q_{max}}$ with $N$ = number of elements per
# scale (`x.size // scale.size`), accumulates the step-size gradient into `self.scale.grad` and
# returns the input gradient.

# %% nbgrader={"grade": false, "grade_id": "lsq_fake_quantize", "locked": false, "schema_version": 3, "solution": true}
#| export
class LSQFakeQuantize(nn.Module):
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
        self.bits, self.symmetric, self.axis, self.init = bits, bool(symmetric), axis, init
        self.qmin, self.qmax = qrange(bits, signed=True, narrow=self.symmetric)
        shape = () if axis is None else (int(channels),)
        self.scale = nn.Parameter(np.ones(shape))
        self.zero_point = np.zeros(shape, dtype=np.int32)
        self.initialized = False
        self.fake_quant_enabled = True
        self._cache = None

    def enable_fake_quant(self, enabled=True):
        self.fake_quant_enabled = bool(enabled)
        return self

    def disable_fake_quant(self):
        return self.enable_fake_quant(False)

    def qparams(self):
        """(scale, zero_point) that the forward pass uses now."""
        if not self.initialized:
            raise RuntimeError("LSQFakeQuantize is not initialised: run a forward pass in training mode first")
        return np.maximum(self.scale.data, self.EPS).astype(np.float32), self.zero_point

    def extra_repr(self):
        kind = "symmetric" if self.symmetric else "asymmetric"
        where = "per-tensor" if self.axis is None else f"axis={self.axis}"
        return f"{self.bits}-bit {kind} [{self.qmin}, {self.qmax}], {where}, learned step size"

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

        APPROACH: x float32; if self.training and not self.initialized: self.initialize(x).
        Fake quantization off: self._cache = None, return x. Otherwise scale, zp = self.qparams()
        (the clamped step size); in training mode cache (x, scale, zp); return
        fake_quantize(x, scale, zp, self.qmin, self.qmax, self.axis).
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


# %% nbgrader={"grade": true, "grade_id": "test_lsq_fake_quantize", "locked": true, "points": 0, "schema_version": 3, "solution": false}
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

        APPROACH: x = self.in_fq(x); w = self.layer.weight.data; w_fq = self.weight_fq(w);
        set self.layer.weight.data = w_fq, y = self.layer(x), and restore the float weight in a
        `finally:`; in training mode keep w_fq for backward (self._w_fq); return self.out_fq(y).
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

        APPROACH: g = self.out_fq.backward(grad_out). Keep the weight's data and its accumulated grad;
        put self._w_fq in .data and a zero array in .grad; dx = self.layer.backward(g) (this adds
        dL/dW_fq into .grad); restore .data in a `finally:`; then set .grad = old grad +
        self.weight_fq.backward(dL/dW_fq). Return self.in_fq.backward(dx).
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


# %% nbgrader={"grade": true, "grade_id": "test_qat_layer", "locked": true, "points": 0, "schema_version": 3, "solution": false}
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

    APPROACH: opt = nn.Adam(model.parameters(), lr=lr); model.train(); step = 0; for each epoch, for
    (xb, yb) in batches(x, y, batch_size, shuffle=True, seed=seed + epoch): freeze the observers when
    step == freeze_observers_after; loss, grad = nn.cross_entropy(model(xb), yb); opt.zero_grad();
    model.backward(grad); opt.step(); step += 1; record the loss; every eval_every steps (when
    eval_fn is given) record (step, eval_fn(model)) with the model in eval mode, then back to train.
    After the loop: evaluate once more if the last step was not evaluated; model.eval(); return.
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
            loss, grad = nn.cross_entropy(model(xb), yb)
            opt.zero_grad()
            model.backward(grad)
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
