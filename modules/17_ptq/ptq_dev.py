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
# # Module 17: Post-training quantization — int8 models from a calibration set
#
# Module 15 turned one tensor into `np.int8` codes; module 16 learned to pick good ranges. Now we
# quantize a whole trained network **without retraining it** (post-training quantization, PTQ) and
# run it with integer arithmetic: int8 weights, int8 activations, int32 accumulators.
#
# The recipe every production toolchain follows (PyTorch `torch.ao.quantization`, ONNX Runtime
# `quantize_static`, TFLite's converter) has three steps:
#
# 1. **prepare** — put an observer on the input and the output of every Linear and Conv2d;
# 2. **calibrate** — run a few hundred representative inputs through the float model so the
#    observers see the ranges the activations really take;
# 3. **convert** — replace each layer by a quantized one: weights to int8 (per output channel),
#    bias to int32, and the observed ranges frozen into activation scales and zero points.
#
# The quantized layer then computes, for an input $x \approx s_x (q_x - z_x)$ and a weight row
# $W_{j,:} \approx s_{w,j}\, q_{w,j,:}$ (symmetric, zero point 0):
#
# $$y_j = \sum_k W_{jk} x_k + b_j \;\approx\; s_x s_{w,j}\Big(\underbrace{\sum_k q_{w,jk}\,(q_{x,k} - z_x) + q_{b,j}}_{\text{acc}_j\ \text{(int32)}}\Big),
# \qquad q_{b,j} = \mathrm{round}\Big(\frac{b_j}{s_x s_{w,j}}\Big)$$
#
# and **requantizes** the int32 accumulator to the int8 output code
# $q_{y,j} = \mathrm{clamp}\big(\mathrm{round}(M_j\,\text{acc}_j) + z_y\big)$ with $M_j = s_x s_{w,j} / s_y$.
# Everything between "quantize the input" and "requantize the output" is integer arithmetic.
#
# You will build the pieces bottom-up — weights, bias, integer accumulation, requantization, the
# quantized layer, calibration, the whole-model conversion — then dynamic quantization (ranges
# measured per batch instead of calibrated), a layer-by-layer **sensitivity** analysis and a
# **mixed-precision** model that keeps the most sensitive layers in FP32 under a byte budget.
# The module ends with a measured table: accuracy, bytes and latency of six versions of one CNN.
#
# **How to work**: edit the cells marked `# YOUR CODE HERE`, run the test below each one, then
# `tito export 17` and `tito test 17` in a terminal to grade your package.

# %%
#| default_exp ptq

# %%
#| export
import copy
import functools

import numpy as np

from tinyq import nn
from tinyq.observers import MinMaxObserver
from tinyq.quantize import asymmetric_qparams, dequantize, qrange, quantize

# %% [markdown]
# ## 0. The model and the data
#
# `tinyq.zoo.load("digits_cnn")` is a small CNN trained (by `python -m tinyq.zoo.train`) on
# scikit-learn's 8×8 handwritten digits. `tinyq.data.load_digits()` gives fixed splits: **train**
# (the model was fitted on it), **calib** (200 images we may use to calibrate) and **test** (500
# images we report on and never calibrate with).
#
# The layers we quantize are the Linear and Conv2d ones; ReLU, MaxPool2d and Flatten have no weights
# and commute with a monotonic quantizer, so they stay as they are. A few helpers that are not
# exercises: `quantizable_layers` lists the layers to quantize by name, `model_nbytes` counts the
# bytes a model holds (float parameters plus the arrays of quantized layers).

# %%
#| export
def quantizable_layers(model):
    """Names (as in `model.named_modules()`) of the Linear and Conv2d layers, in model order."""
    return [name for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def model_nbytes(model, packed=False):
    """Bytes the model holds: float parameters plus every quantized layer's arrays.

    With `packed=True` a quantized layer counts its weight codes at `bits` bits each (as module 21
    packs them: two 4-bit codes per byte) instead of the one byte each that `np.int8` really uses.
    """
    total = sum(p.data.nbytes for p in model.parameters())
    for m in model.modules():
        if hasattr(m, "w_q") and hasattr(m, "nbytes"):
            total += m.packed_nbytes if packed else m.nbytes
    return int(total)


def _inputs(batch):
    """A calibration batch is an input array or an (inputs, labels) pair."""
    return batch[0] if isinstance(batch, (tuple, list)) else batch


# %%
import time

import matplotlib.pyplot as plt

from tinyq import zoo
from tinyq.bench import time_interleaved
from tinyq.data import load_digits

digits = load_digits()
calib = list(digits.batches("calib", 50))          # 4 batches of (x, y)
fp32 = zoo.load("digits_cnn")


def test_accuracy(model):
    return nn.accuracy(model(digits.x_test), digits.y_test)


print(fp32)
print(f"FP32 test accuracy {test_accuracy(fp32):.2%}, {model_nbytes(fp32):,} bytes, "
      f"quantizable layers {quantizable_layers(fp32)}")

# %% [markdown]
# ## 1. Weights: per-channel symmetric int8
#
# Weights are known before the model ever runs, so we quantize them once, offline. We use
# **symmetric** codes (zero point 0, narrow range $[-127, 127]$ for 8 bits) because a zero point on
# the weights would cost an extra correction term in every dot product, and **one scale per output
# channel** (row $j$ of $W$, or filter $j$ of a conv), because output channels can differ in
# magnitude by 10× or more: a single scale sized for the largest channel would leave the smallest
# with a handful of codes (module 16 measured this). Per-channel scales cost nothing at run time:
# channel $j$'s scale multiplies only output $j$.
#
# The observer does the range finding: `observer(w)` records, `observer.calculate_qparams(bits,
# symmetric=True, signed=True)` gives the scale(s). A per-tensor observer (`axis=None`) returns one
# scale; we broadcast it to one per output channel so that the rest of the layer never needs to know
# which granularity was used.

# %% nbgrader={"grade": false, "grade_id": "quantize_weight", "locked": false, "schema_version": 3, "solution": true}
#| export
def quantize_weight(w, observer, bits=8):
    """Quantize a weight of shape (out, ...) to symmetric `bits`-bit codes, one scale per output channel.

    TODO: return (w_q, w_scale): w_q the np.int8 codes, same shape as w; w_scale float32 of shape (out,).

    APPROACH:
      1. Feed w (float32) to the observer, then scale, _ = observer.calculate_qparams(bits=bits,
         symmetric=True, signed=True).
      2. A per-tensor observer gives one scale: broadcast it to shape (out,) (a per-channel observer
         with axis=0 already gives (out,)). Make it a float32 array.
      3. w_q = quantize(w, w_scale, zero_point 0, bits=bits, signed=True, narrow=True, axis=0).

    EXAMPLE: w = [[0.5, -1.27], [0.02, 0.006]] with MinMaxObserver(axis=0), 8 bits
             -> w_scale = [1.27/127, 0.02/127] = [0.01, 0.000157];  w_q = [[50, -127], [127, 38]]

    HINTS: np.broadcast_to(np.asarray(scale, np.float32).reshape(-1), (out,)).copy();
           np.zeros(out, np.int32) for the zero points.
    """
    ### BEGIN SOLUTION
    w = np.asarray(w, dtype=np.float32)
    observer(w)
    scale, _ = observer.calculate_qparams(bits=bits, symmetric=True, signed=True)
    out = w.shape[0]
    w_scale = np.broadcast_to(np.asarray(scale, dtype=np.float32).reshape(-1), (out,)).copy()
    w_q = quantize(w, w_scale, np.zeros(out, np.int32), bits=bits, signed=True, narrow=True, axis=0)
    return w_q, w_scale
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_quantize_weight", "locked": true, "schema_version": 3, "solution": false}
_w = np.array([[0.5, -1.27], [0.02, 0.006]], np.float32)
_q, _s = quantize_weight(_w, MinMaxObserver(axis=0))
assert _q.dtype == np.int8 and _s.dtype == np.float32 and _s.shape == (2,)
np.testing.assert_allclose(_s, [1.27 / 127, 0.02 / 127], rtol=1e-6)
assert _q.tolist() == [[50, -127], [127, 38]], _q
_q, _s = quantize_weight(_w, MinMaxObserver())          # per-tensor: one scale, repeated
np.testing.assert_allclose(_s, [1.27 / 127] * 2, rtol=1e-6)
assert _q.tolist() == [[50, -127], [2, 1]], _q     # the small row keeps 2 codes of 255
_q, _s = quantize_weight(fp32.conv1.weight.data, MinMaxObserver(axis=0), bits=4)
assert _q.shape == (16, 1, 3, 3) and _q.dtype == np.int8 and np.abs(_q).max() == 7
print("quantize_weight: ok")

# %% [markdown]
# ## 2. Bias: int32 at scale $s_x s_w$
#
# The accumulator of output $j$ counts in units of $s_x s_{w,j}$ (the product of one input step and
# one weight step). To add the bias *inside* the integer sum it must be expressed in the same units:
# $q_{b,j} = \mathrm{round}(b_j / (s_x s_{w,j}))$, zero point 0, stored as **int32**. Why not int8?
# $s_x s_w$ is tiny (say $0.02 \cdot 0.003 = 6\cdot 10^{-5}$), so a bias of 0.5 is ~8000 steps:
# it needs the accumulator's width. This is TFLite's and ONNX Runtime's convention.

# %% nbgrader={"grade": false, "grade_id": "quantize_bias", "locked": false, "schema_version": 3, "solution": true}
#| export
def quantize_bias(bias, in_scale, w_scale):
    """Quantize a float bias to int32 codes at scale in_scale * w_scale (per output channel), zero point 0.

    TODO: return np.int32 codes of bias's shape (None when bias is None).

    APPROACH: compute in float64: q = rint(bias / (in_scale * w_scale)); clip to the int32 range
    [-2**31, 2**31 - 1]; cast to np.int32.

    EXAMPLE: quantize_bias([0.5, -0.25], 0.1, [0.01, 0.02]) -> int32 [500, -125]
    """
    ### BEGIN SOLUTION
    if bias is None:
        return None
    bias = np.asarray(bias, dtype=np.float64)
    scale = np.float64(in_scale) * np.asarray(w_scale, dtype=np.float64)
    q = np.rint(bias / scale)
    info = np.iinfo(np.int32)
    return np.clip(q, info.min, info.max).astype(np.int32)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_quantize_bias", "locked": true, "schema_version": 3, "solution": false}
_b = quantize_bias(np.array([0.5, -0.25], np.float32), np.float32(0.1), np.array([0.01, 0.02], np.float32))
assert _b.dtype == np.int32 and _b.tolist() == [500, -125], _b
assert quantize_bias(None, 0.1, [0.01]) is None
assert quantize_bias([1e6], 1e-3, [1e-6]).tolist() == [2 ** 31 - 1]    # saturates instead of wrapping
print("quantize_bias: ok")

# %% [markdown]
# ## 3. Integer accumulation with zero-point correction
#
# Activations are quantized **asymmetrically** (after a ReLU they are all $\ge 0$, so a symmetric
# range would waste half the codes): $x \approx s_x (q_x - z_x)$ with signed int8 codes and any
# zero point $z_x$. The dot product we need is
#
# $$\text{acc}_j = \sum_k q_{w,jk}\,(q_{x,k} - z_x) + q_{b,j}
#               = \underbrace{\sum_k q_{w,jk}\, q_{x,k}}_{\text{int8} \times \text{int8}}
#               \;-\; z_x \underbrace{\sum_k q_{w,jk}}_{\text{row sum of } W\text{, offline}} \;+\; q_{b,j}.$$
#
# The first term is a plain int8 matrix product; the correction $z_x \sum_k q_{w,jk}$ is one integer
# per output channel, computable as soon as the weights are quantized (Jacob et al. 2018, §2.3).
# Every product and sum must be done in **int32** (cast the int8 codes up *before* multiplying: an
# int8 product overflows int8), never in float.
#
# **How far int32 goes.** $|q_w| \le 127$ and $|q_x - z_x| \le 255$, so each term is at most
# $127 \cdot 255 = 32385$ in magnitude, and a sum of $K$ terms is safe while
# $K \le (2^{31}-1)/32385 \approx 66\,000$. Our largest layer has $K = 512$; a transformer's MLP has
# $K \approx 10^4$ — still safe, which is why int32 is the universal accumulator.
#
# A convolution becomes the same product after `nn.im2col` (each output pixel's receptive field
# becomes one row), so this one function serves both layer types.

# %% nbgrader={"grade": false, "grade_id": "integer_linear", "locked": false, "schema_version": 3, "solution": true}
#| export
def integer_linear(x_q, x_zp, w_q, bias_q=None):
    """int32 accumulators of (x_q - x_zp) @ w_q.T + bias_q, computed in integers only.

    x_q: (N, K) integer codes of the input (int8), x_zp: its zero point (an int);
    w_q: (out, K) int8 weight codes (zero point 0); bias_q: (out,) int32 or None.

    TODO: return an np.int32 array of shape (N, out).

    APPROACH: cast x_q and w_q to np.int32; acc = x_q @ w_q.T (an int32 matmul); subtract
    x_zp * (row sums of w_q) -- one int32 per output channel; add bias_q if given.

    EXAMPLE: x_q = [[1, 2]], x_zp = 1, w_q = [[3, 4], [-1, 5]], bias_q = [10, 0]
             -> (x - 1) = [0, 1]  ->  [[0*3 + 1*4 + 10, 0*-1 + 1*5]] = [[14, 5]]

    HINTS: no float anywhere: np.float32 has 24 bits of mantissa, int32 has 31.
    """
    ### BEGIN SOLUTION
    x32 = np.asarray(x_q).astype(np.int32)
    w32 = np.asarray(w_q).astype(np.int32)
    acc = x32 @ w32.T
    acc -= np.int32(x_zp) * w32.sum(axis=1, dtype=np.int32)
    if bias_q is not None:
        acc += np.asarray(bias_q, dtype=np.int32)
    return acc
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_integer_linear", "locked": true, "schema_version": 3, "solution": false}
_acc = integer_linear(np.array([[1, 2]], np.int8), 1, np.array([[3, 4], [-1, 5]], np.int8),
                      np.array([10, 0], np.int32))
assert _acc.dtype == np.int32 and _acc.tolist() == [[14, 5]], _acc
_rng = np.random.default_rng(0)
_x = _rng.integers(-128, 128, (3, 2048)).astype(np.int8)
_w = _rng.choice([-127, 127], (4, 2048)).astype(np.int8)   # big sums: exact in int32, not in float32
_ref = (_x.astype(np.int64) + 128) @ _w.T.astype(np.int64)
np.testing.assert_array_equal(integer_linear(_x, -128, _w), _ref)
print("integer_linear: ok")

# %% [markdown]
# ## 4. Requantization: int32 back to int8
#
# The next layer wants int8 codes at *its* input scale $s_y$, not an int32 count of $s_x s_w$ steps.
# Since $y_j \approx s_x s_{w,j}\,\text{acc}_j$ and $y_j \approx s_y(q_{y,j} - z_y)$:
#
# $$q_{y,j} = \mathrm{clamp}\big(\mathrm{round}(M_j \cdot \text{acc}_j) + z_y,\; -128,\; 127\big), \qquad M_j = \frac{s_x\, s_{w,j}}{s_y}.$$
#
# $M_j$ is a fixed per-channel constant (typically $10^{-4}$ to $10^{-1}$), known after calibration.
# Here we apply it in float64 (exact enough: an int32 times a float64 has no rounding surprises below
# $2^{53}$); integer-only hardware replaces it by a fixed-point multiply and shift, which module 19
# builds. Round half to even, add the zero point *after* rounding (as ONNX QuantizeLinear does).

# %% nbgrader={"grade": false, "grade_id": "requantize", "locked": false, "schema_version": 3, "solution": true}
#| export
def requantize(acc, multiplier, zero_point, bits=8):
    """Map int32 accumulators to signed `bits`-bit output codes: clip(rint(acc * M) + zp, qmin, qmax).

    acc: int32 array (..., out); multiplier: a float or an array of shape (out,) (per channel, on
    the last axis); zero_point: the output's zero point.

    TODO: return np.int8 codes of acc's shape.

    APPROACH: acc as float64 times multiplier (float64); np.rint (half to even); + zero_point;
    clip to qrange(bits, signed=True); cast to np.int8.

    EXAMPLE: requantize(np.array([[100, -100, 5000]]), [0.025, 0.025, 0.1], 3) -> [[5, 1, 127]]
             (2.5 rounds to 2, -2.5 to -2; 500 + 3 clips to 127)
    """
    ### BEGIN SOLUTION
    qmin, qmax = qrange(bits, signed=True)
    y = np.rint(np.asarray(acc, dtype=np.float64) * np.asarray(multiplier, dtype=np.float64))
    y += zero_point
    return np.clip(y, qmin, qmax).astype(np.int8)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_requantize", "locked": true, "schema_version": 3, "solution": false}
_y = requantize(np.array([[100, -100, 5000]], np.int32), np.array([0.025, 0.025, 0.1]), 3)
assert _y.dtype == np.int8 and _y.tolist() == [[5, 1, 127]], _y
assert requantize(np.array([-10 ** 6], np.int32), 1.0, 0).tolist() == [-128]
assert requantize(np.array([30], np.int32), 1.0, 0, bits=4).tolist() == [7]
print("requantize: ok")

# %% [markdown]
# ## 5. The quantized layer
#
# `QuantizedLayer` replaces one `nn.Linear` or `nn.Conv2d`. It stores only integers and a few scales:
#
# | attribute | dtype, shape | meaning |
# |---|---|---|
# | `w_q` | int8 (out, K) | weight codes; a conv weight (out, C, k, k) is reshaped to (out, C·k·k) |
# | `w_scale` | float32 (out,) | per-channel weight scales |
# | `bias_q` | int32 (out,) or None | bias at scale $s_x s_w$ (static) |
# | `in_scale, in_zp` / `out_scale, out_zp` | float32 / int | activation qparams from calibration |
# | `multiplier` | float64 (out,) | $M = s_x s_w / s_y$ |
# | `bias` | float32 (out,) or None | float bias, used only by *dynamic* layers (section 8) |
#
# `forward(x)` takes and returns float32 so it can sit between float ReLU/MaxPool layers: quantize
# the input with the calibrated $(s_x, z_x)$, unfold it into rows (`_to_rows`: a no-op for Linear,
# `nn.im2col` for Conv2d — padding with $z_x$, the code of the real value 0), accumulate with
# `integer_linear`, `requantize` to int8 output codes, dequantize them, fold the rows back to the
# output's shape (`_from_rows`). In a deployed integer pipeline the dequantize of one layer and the
# quantize of the next cancel out and int8 codes flow straight through ReLU and MaxPool (both commute
# with a monotonic quantizer); we keep the float boundary so you can mix quantized and float layers.
#
# A layer built without activation qparams (`in_qparams=None`) is **dynamic**: `forward` hands it to
# `dynamic_forward`, which you write in section 8.

# %% nbgrader={"grade": false, "grade_id": "quantized_layer", "locked": false, "schema_version": 3, "solution": true}
#| export
class QuantizedLayer(nn.Module):
    """A Linear or Conv2d layer with int8 weights, int32 bias and int32 accumulation."""

    def __init__(self, kind, w_q, w_scale, bias_q=None, bias=None, in_qparams=None, out_qparams=None,
                 multiplier=None, bits=8, act_bits=8, kernel_size=None, stride=1, padding=0):
        if kind not in ("linear", "conv"):
            raise ValueError(f"kind must be 'linear' or 'conv', got {kind!r}")
        self.kind, self.bits, self.act_bits = kind, bits, act_bits
        self.w_q, self.w_scale = w_q, w_scale
        self.bias_q, self.bias = bias_q, bias
        self.in_scale, self.in_zp = in_qparams if in_qparams is not None else (None, None)
        self.out_scale, self.out_zp = out_qparams if out_qparams is not None else (None, None)
        self.multiplier = multiplier
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.training = False

    @property
    def dynamic(self):
        return self.in_scale is None

    @classmethod
    def from_float(cls, layer, weight_observer, bits=8, act_bits=8, in_qparams=None, out_qparams=None):
        """Convert an nn.Linear or nn.Conv2d (static when both qparams are given, else dynamic).

        weight_observer: a factory -- call it to get a fresh observer (e.g. MinMaxObserver, or
        functools.partial(MinMaxObserver, axis=0) for per-channel scales).
        in_qparams / out_qparams: (scale, zero_point) of the layer's input and output activations.

        TODO: return a QuantizedLayer with the attributes of the table above.

        APPROACH:
          1. kind "conv" for nn.Conv2d (keep its kernel_size, stride, padding), "linear" otherwise.
          2. w_q, w_scale = quantize_weight(weight reshaped to (out, K), weight_observer(), bits).
          3. Static (in_qparams given): s_x, z_x = in_qparams; s_y, z_y = out_qparams;
             bias_q = quantize_bias(layer's bias or None, s_x, w_scale);
             multiplier = s_x * w_scale / s_y in float64; in/out qparams as (float32 scale, int zp).
          4. Dynamic: keep the float32 bias (bias_q and multiplier None).
        """
        ### BEGIN SOLUTION
        is_conv = isinstance(layer, nn.Conv2d)
        w = layer.weight.data
        w_q, w_scale = quantize_weight(w.reshape(w.shape[0], -1), weight_observer(), bits)
        bias = None if layer.bias is None else layer.bias.data.astype(np.float32).copy()
        geometry = dict(kernel_size=layer.kernel_size, stride=layer.stride, padding=layer.padding) \
            if is_conv else {}
        kind = "conv" if is_conv else "linear"
        if in_qparams is None:
            return cls(kind, w_q, w_scale, bias=bias, bits=bits, act_bits=act_bits, **geometry)
        s_x, z_x = np.float32(in_qparams[0]), int(in_qparams[1])
        s_y, z_y = np.float32(out_qparams[0]), int(out_qparams[1])
        bias_q = quantize_bias(bias, s_x, w_scale)
        multiplier = np.float64(s_x) * w_scale.astype(np.float64) / np.float64(s_y)
        return cls(kind, w_q, w_scale, bias_q=bias_q, in_qparams=(s_x, z_x), out_qparams=(s_y, z_y),
                   multiplier=multiplier, bits=bits, act_bits=act_bits, **geometry)
        ### END SOLUTION

    def forward(self, x):
        """float32 in, float32 out; integers in between (static), or `dynamic_forward` (dynamic).

        TODO: the static forward pass described above.

        APPROACH: x_q = quantize(x, in_scale, in_zp, bits=act_bits, signed=True);
        rows = self._to_rows(x_q, in_zp); acc = integer_linear(rows, in_zp, w_q, bias_q);
        y_q = requantize(acc, multiplier, out_zp, act_bits);
        return self._from_rows(dequantize(y_q, out_scale, out_zp), x.shape).
        """
        if self.dynamic:
            return dynamic_forward(self, x)
        ### BEGIN SOLUTION
        x_q = quantize(x, self.in_scale, self.in_zp, bits=self.act_bits, signed=True)
        rows = self._to_rows(x_q, self.in_zp)
        acc = integer_linear(rows, self.in_zp, self.w_q, self.bias_q)
        y_q = requantize(acc, self.multiplier, self.out_zp, bits=self.act_bits)
        return self._from_rows(dequantize(y_q, self.out_scale, self.out_zp), np.shape(x))
        ### END SOLUTION

    # -- layout plumbing (given) -------------------------------------------------------------------
    def _to_rows(self, x_q, pad_value=0):
        """Input codes -> (rows, K): the input itself for Linear, its im2col patches for Conv2d."""
        if self.kind == "linear":
            return x_q.reshape(-1, x_q.shape[-1])
        k = self.kernel_size
        return nn.im2col(x_q, k, k, self.stride, self.padding, pad_value=pad_value)

    def _from_rows(self, y, in_shape):
        """(rows, out) -> the output's shape: (..., out) for Linear, NCHW for Conv2d."""
        out = self.w_q.shape[0]
        if self.kind == "linear":
            return y.reshape(*in_shape[:-1], out)
        n, _, h, w = in_shape
        k, s, p = self.kernel_size, self.stride, self.padding
        oh, ow = nn.conv_output_size(h, k, s, p), nn.conv_output_size(w, k, s, p)
        return y.reshape(n, oh, ow, out).transpose(0, 3, 1, 2)

    def _arrays(self):
        return [a for a in (self.w_scale, self.bias_q, self.bias, self.multiplier) if a is not None]

    @property
    def nbytes(self):
        """Bytes held: the int8 codes, scales, bias and multipliers (+ 8 for the activation qparams)."""
        return int(self.w_q.nbytes + sum(np.asarray(a).nbytes for a in self._arrays())
                   + (0 if self.dynamic else 16))

    @property
    def packed_nbytes(self):
        """As `nbytes`, with the weight codes counted at `bits` bits each (packed)."""
        return int(self.nbytes - self.w_q.nbytes + -(-self.w_q.size * self.bits // 8))

    def extra_repr(self):
        mode = "dynamic" if self.dynamic else "static"
        return f"{self.kind}, {self.w_q.shape}, w{self.bits}a{self.act_bits}, {mode}"


# %% nbgrader={"grade": false, "grade_id": "test_quantized_layer", "locked": true, "schema_version": 3, "solution": false}
_lin = nn.Linear(3, 2, rng=0).eval()
_lin.bias.data[:] = [0.1, -0.2]
_ql = QuantizedLayer.from_float(_lin, functools.partial(MinMaxObserver, axis=0),
                                in_qparams=(0.02, -3), out_qparams=(0.03, 5))
assert _ql.w_q.dtype == np.int8 and _ql.w_q.shape == (2, 3) and _ql.bias_q.dtype == np.int32
_x = np.array([[0.5, -1.0, 0.3], [1.2, 0.4, -0.6]], np.float32)
_x_q = quantize(_x, 0.02, -3)
_acc = (_x_q.astype(np.int64) + 3) @ _ql.w_q.T.astype(np.int64) + _ql.bias_q
_expect = (np.clip(np.rint(_acc * (np.float32(0.02) * _ql.w_scale.astype(np.float64) / np.float32(0.03))) + 5, -128, 127) - 5) * np.float32(0.03)
np.testing.assert_allclose(_ql(_x), _expect, rtol=1e-6, atol=1e-7)
assert np.abs(_ql(_x) - _lin(_x)).max() < 0.05                   # close to the float layer
_conv = fp32.conv2
_qc = QuantizedLayer.from_float(_conv, functools.partial(MinMaxObserver, axis=0),
                                in_qparams=(0.05, -100), out_qparams=(0.1, 0))
assert _qc.w_q.shape == (32, 16 * 9) and _qc.kind == "conv"
_xc = np.maximum(fp32.conv1(digits.x_test[:8]), 0)
assert _qc(_xc).shape == (8, 32, 8, 8)
print("QuantizedLayer: ok; conv max error", float(np.abs(_qc(_xc) - _conv(_xc)).max()))

# %% [markdown]
# ## 6. Observers and calibration
#
# Which $(s_x, z_x)$ should a layer's input use? Whatever range its activations take on real data.
# **Calibration** inserts an observer before and after every quantizable layer, runs the calibration
# batches through the (float) model, and reads the ranges out. The observers are module 16's:
# MinMax (the extreme values), moving-average MinMax, percentile, MSE-optimal and histogram ones all
# share one interface, so the choice is one argument.
#
# We insert them with a tiny wrapper module, `Observed(layer, in_observer, out_observer)`, swapped
# in with `model.set_submodule(name, ...)` on a **copy** of the model (calibrating must never change
# the model the caller passed in). Run the model in eval mode; calibration needs no gradients.

# %% nbgrader={"grade": false, "grade_id": "calibrate", "locked": false, "schema_version": 3, "solution": true}
#| export
class Observed(nn.Module):
    """Wraps a layer: observers see its input and its output; the values pass through unchanged."""

    def __init__(self, layer, in_observer, out_observer):
        self.layer, self.in_observer, self.out_observer = layer, in_observer, out_observer

    def forward(self, x):
        """TODO: out_observer(layer(in_observer(x))) -- an observer call records and returns its input."""
        ### BEGIN SOLUTION
        return self.out_observer(self.layer(self.in_observer(x)))
        ### END SOLUTION


def calibrate(model, calib_batches, activation_observer=MinMaxObserver, layers=None):
    """Observe the input and output ranges of the quantizable layers on the calibration batches.

    activation_observer: a factory of fresh observers (one per input and one per output of each layer).
    layers: names of the layers to observe (default: quantizable_layers(model)).

    TODO: return {name: (in_observer, out_observer)} after running every batch through a copy of
    the model; the model passed in stays unchanged.

    APPROACH: work on copy.deepcopy(model).eval(); for each name, replace the layer by
    Observed(layer, activation_observer(), activation_observer()) with set_submodule and remember
    the two observers; then run copy(_inputs(batch)) for each batch.
    """
    ### BEGIN SOLUTION
    observed = copy.deepcopy(model).eval()
    names = quantizable_layers(model) if layers is None else list(layers)
    observers = {}
    for name in names:
        obs = (activation_observer(), activation_observer())
        observed.set_submodule(name, Observed(observed.get_submodule(name), *obs))
        observers[name] = obs
    for batch in calib_batches:
        observed(_inputs(batch))
    return observers
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_calibrate", "locked": true, "schema_version": 3, "solution": false}
_obs = calibrate(fp32, calib)
assert list(_obs) == ["conv1", "conv2", "fc1", "fc2"]
_s, _z = _obs["conv1"][0].calculate_qparams(bits=8, symmetric=False, signed=True)
_lo, _hi = min(0, digits.x_calib.min()), max(0, digits.x_calib.max())
assert np.isclose(_s, (_hi - _lo) / 255, rtol=1e-6), (_s, _lo, _hi)    # conv1 sees the raw images
assert isinstance(fp32.conv1, nn.Conv2d)                                # the model is unchanged
print({name: [round(float(o.calculate_qparams(bits=8, symmetric=False, signed=True)[0]), 4) for o in pair]
       for name, pair in _obs.items()})

# %% [markdown]
# ## 7. Static post-training quantization of a whole model
#
# Put it together: calibrate, then replace every quantizable layer of a copy of the model by its
# `QuantizedLayer`, with the activation qparams from its observers —
# `calculate_qparams(bits=act_bits, symmetric=False, signed=True)`: asymmetric signed int8 for
# activations, as TFLite does. "Static" means these activation scales are frozen: at inference time
# nothing is measured, which makes the integer pipeline cheap and predictable — and means the
# calibration set must be representative.
#
# `layers` restricts the conversion to some layers (the rest stay float); sensitivity analysis and
# mixed precision need that.

# %% nbgrader={"grade": false, "grade_id": "quantize_model", "locked": false, "schema_version": 3, "solution": true}
#| export
def quantize_model(model, calib_batches, weight_observer=functools.partial(MinMaxObserver, axis=0),
                   activation_observer=MinMaxObserver, bits=8, act_bits=8, layers=None):
    """Static post-training quantization: a quantized copy of `model` (the model itself is unchanged).

    weight_observer / activation_observer: observer factories; bits: weight bits; act_bits: activation
    bits; layers: names of the layers to quantize (default: all quantizable layers).

    TODO: return a copy of the model, in eval mode, whose chosen layers are QuantizedLayers.

    APPROACH:
      1. observers = calibrate(model, calib_batches, activation_observer, layers).
      2. Work on a deep copy of the model, in eval mode. For each calibrated layer, get the input and
         output qparams from its two observers (calculate_qparams with bits=act_bits,
         symmetric=False, signed=True) and put a QuantizedLayer.from_float(layer, weight_observer,
         bits, act_bits, in_qparams, out_qparams) in the copy in place of the float layer.
    """
    ### BEGIN SOLUTION
    observers = calibrate(model, calib_batches, activation_observer, layers)
    q = copy.deepcopy(model).eval()
    for name, (obs_in, obs_out) in observers.items():
        in_qp = obs_in.calculate_qparams(bits=act_bits, symmetric=False, signed=True)
        out_qp = obs_out.calculate_qparams(bits=act_bits, symmetric=False, signed=True)
        q.set_submodule(name, QuantizedLayer.from_float(q.get_submodule(name), weight_observer, bits,
                                                        act_bits, in_qp, out_qp))
    return q
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_quantize_model", "locked": true, "schema_version": 3, "solution": false}
int8 = quantize_model(fp32, calib)
assert [type(int8.get_submodule(n)).__name__ for n in quantizable_layers(fp32)] == ["QuantizedLayer"] * 4
assert isinstance(fp32.fc1, nn.Linear)
_acc_fp32, _acc_int8 = test_accuracy(fp32), test_accuracy(int8)
print(f"FP32 {_acc_fp32:.2%}  static INT8 {_acc_int8:.2%}   bytes {model_nbytes(fp32):,} -> {model_nbytes(int8):,}")
assert _acc_fp32 - _acc_int8 <= 0.005

# %% [markdown]
# ## 8. Dynamic quantization
#
# **Dynamic** quantization skips calibration: weights are quantized offline as before, but the
# activation range is measured on every batch at run time (its min and max), and the int32
# accumulator is converted straight back to float — $y = s_x s_{w,j}\,\text{acc}_j + b_j$ — with no
# output requantization. PyTorch's `quantize_dynamic` works this way and uses it for LSTMs and
# Transformers' Linear layers, where activation ranges vary a lot between inputs.
#
# It adapts to each batch (no calibration set to get wrong) but pays a min/max pass over the
# activations per call, and a range taken over a whole batch is set by the batch's most extreme
# example. Static quantization instead fixes everything ahead of time.

# %% nbgrader={"grade": false, "grade_id": "dynamic", "locked": false, "schema_version": 3, "solution": true}
#| export
def dynamic_forward(layer, x):
    """Forward pass of a dynamic QuantizedLayer: float32 in, float32 out.

    TODO: quantize x with qparams measured on x itself, accumulate in int32, rescale to float.

    APPROACH: take asymmetric signed qparams for `layer.act_bits` bits from the min and max of x
    itself, and quantize x with them; accumulate in int32 with `integer_linear` on the rows that
    `layer._to_rows` makes of the codes (with the activation zero point, no bias); rescale each output
    channel by the activation scale times its weight scale in float32 and add the bias when there is
    one; `layer._from_rows` gives the result back the input's layout.
    """
    ### BEGIN SOLUTION
    x = np.asarray(x, dtype=np.float32)
    s_x, z_x = asymmetric_qparams(x.min(), x.max(), bits=layer.act_bits, signed=True)
    x_q = quantize(x, s_x, z_x, bits=layer.act_bits, signed=True)
    acc = integer_linear(layer._to_rows(x_q, z_x), int(z_x), layer.w_q)
    y = acc.astype(np.float32) * (np.float32(s_x) * layer.w_scale)
    if layer.bias is not None:
        y += layer.bias
    return layer._from_rows(y, x.shape)
    ### END SOLUTION


def quantize_dynamic(model, weight_observer=functools.partial(MinMaxObserver, axis=0), bits=8,
                     act_bits=8, layers=None):
    """Dynamic quantization: a copy of `model` whose chosen layers are dynamic QuantizedLayers.

    TODO: like quantize_model without calibration: QuantizedLayer.from_float(layer, weight_observer,
    bits, act_bits) (no activation qparams) for each name in `layers` (default: quantizable_layers).
    """
    ### BEGIN SOLUTION
    q = copy.deepcopy(model).eval()
    for name in quantizable_layers(model) if layers is None else layers:
        q.set_submodule(name, QuantizedLayer.from_float(q.get_submodule(name), weight_observer, bits,
                                                        act_bits))
    return q
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_dynamic", "locked": true, "schema_version": 3, "solution": false}
dyn = quantize_dynamic(fp32)
assert all(dyn.get_submodule(n).dynamic for n in quantizable_layers(fp32))
_x = digits.x_test[:4].reshape(4, -1)
_d = QuantizedLayer.from_float(nn.Linear(64, 3, rng=1), functools.partial(MinMaxObserver, axis=0))
_s, _z = asymmetric_qparams(_x.min(), _x.max(), signed=True)
_ref = ((quantize(_x, _s, _z).astype(np.int64) - _z) @ _d.w_q.T.astype(np.int64)) * (_s * _d.w_scale) + _d.bias
np.testing.assert_allclose(_d(_x), _ref, rtol=1e-5, atol=1e-6)
print(f"dynamic INT8 test accuracy {test_accuracy(dyn):.2%}")

# %% [markdown]
# ## 9. Which layers hurt? Sensitivity analysis
#
# Quantization error is not spread evenly: the first layer sees raw pixels, the last layer's errors
# go straight into the logits, a wide layer averages its errors out. To find the fragile ones,
# quantize **one layer at a time** (all others float) and measure how much a metric drops:
#
# $$\text{drop}(\ell) = \text{eval}(\text{FP32}) - \text{eval}(\text{FP32 with only } \ell \text{ quantized}).$$
#
# `eval_fn(model) -> float` is any "higher is better" metric: accuracy on the calibration split is
# the obvious one; the negative mean squared error of the logits against the FP32 model's is finer
# grained (accuracy on 200 images moves in steps of 0.5 pt). Extra keyword arguments (bits,
# observers) go to `quantize_model`.

# %% nbgrader={"grade": false, "grade_id": "sensitivity", "locked": false, "schema_version": 3, "solution": true}
#| export
def sensitivity(model, calib_batches, eval_fn, **quant_kwargs):
    """{layer name: eval_fn(model) - eval_fn(model with only that layer quantized)} for every
    quantizable layer, in model order.

    TODO: quantize each layer alone with quantize_model(model, calib, layers=[name], **quant_kwargs).

    APPROACH: read the batches into a list first (a generator can only be read once); evaluate the
    float model once; then one quantize_model call and one eval_fn call per layer; drops as Python
    floats.
    """
    ### BEGIN SOLUTION
    calib = list(calib_batches)
    base = float(eval_fn(model))
    return {name: base - float(eval_fn(quantize_model(model, calib, layers=[name], **quant_kwargs)))
            for name in quantizable_layers(model)}
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_sensitivity", "locked": true, "schema_version": 3, "solution": false}
_ref_logits = fp32(digits.x_calib)


def logit_fidelity(model):
    """Negative mean squared error of the logits against the FP32 model's, on the calibration split."""
    return -float(np.mean((model(digits.x_calib) - _ref_logits) ** 2))


_sens = sensitivity(fp32, calib, logit_fidelity, bits=4)
assert list(_sens) == quantizable_layers(fp32) and all(v >= 0 for v in _sens.values())
print({k: round(v, 4) for k, v in _sens.items()})

# %% [markdown]
# ## 10. Mixed precision under a byte budget
#
# Sensitivity tells us where bits matter. **Mixed precision** spends a memory budget where it buys
# the most accuracy: quantize everything, then give FP32 back to the most sensitive layers as long
# as the model still fits. Greedy, by decreasing sensitivity:
#
# * start from the fully quantized size; if even that exceeds `budget`, no assignment fits — raise;
# * visit layers from most to least sensitive (ties: model order); keeping layer $\ell$ in FP32
#   costs `model_nbytes(float layer) - model_nbytes(quantized layer)` extra bytes; keep it if the total
#   stays within the budget, otherwise quantize it and go on to the next (a smaller layer may fit);
# * return `quantize_model(model, calib, layers=<the others>)`.
#
# Real toolchains (e.g. TensorRT's per-layer precision, HAWQ's Hessian-based bit allocation) solve
# versions of this knapsack problem with better sensitivity measures; the greedy rule is the baseline.

# %% nbgrader={"grade": false, "grade_id": "mixed_precision", "locked": false, "schema_version": 3, "solution": true}
#| export
def mixed_precision(model, calib_batches, eval_fn, budget, **quant_kwargs):
    """A copy of `model` that keeps its most sensitive layers in FP32 and fits in `budget` bytes
    (as counted by `model_nbytes`); every other quantizable layer is quantized.

    TODO: the greedy rule above; raise ValueError when the fully quantized model exceeds the budget.

    APPROACH: read the batches into a list once and reuse it. Get the sensitivities and the fully
    quantized model (both with **quant_kwargs) and count bytes with `model_nbytes`. Keeping a layer
    in FP32 costs its float size minus its quantized size (look the layer up by name in each model).
    Visit the layers by decreasing sensitivity (sorted() is stable: ties keep model order).
    """
    ### BEGIN SOLUTION
    calib = list(calib_batches)
    sens = sensitivity(model, calib, eval_fn, **quant_kwargs)
    q_all = quantize_model(model, calib, **quant_kwargs)
    size = model_nbytes(q_all)
    if size > budget:
        raise ValueError(f"budget {budget} bytes is below the fully quantized model's {size} bytes")
    keep = set()
    for name in sorted(sens, key=lambda n: -sens[n]):
        extra = model_nbytes(model.get_submodule(name)) - model_nbytes(q_all.get_submodule(name))
        if size + extra <= budget:
            keep.add(name)
            size += extra
    rest = [n for n in quantizable_layers(model) if n not in keep]
    return quantize_model(model, calib, layers=rest, **quant_kwargs)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_mixed_precision", "locked": true, "schema_version": 3, "solution": false}
_w4 = quantize_model(fp32, calib, bits=4)
_budget = model_nbytes(_w4) + 20_000
_mp = mixed_precision(fp32, calib, logit_fidelity, _budget, bits=4)
_kept = [n for n in quantizable_layers(fp32) if not isinstance(_mp.get_submodule(n), QuantizedLayer)]
assert model_nbytes(_mp) <= _budget and _kept, _kept
try:
    mixed_precision(fp32, calib, logit_fidelity, model_nbytes(_w4) - 1, bits=4)
    raise AssertionError("a budget below the fully quantized size must raise ValueError")
except ValueError:
    pass
print(f"kept in FP32: {_kept}; {model_nbytes(_mp):,} bytes <= budget {_budget:,}")

# %% [markdown]
# ## 11. Systems analysis: what did we buy?
#
# Six versions of the digits CNN, every figure measured here from your code: test accuracy, bytes
# held (`model_nbytes`; "packed" counts 4-bit codes at half a byte, as module 21 stores them), and
# latency of a forward pass over the 500 test images, timed with `tinyq.bench.time_interleaved`
# (all models in one interleaved run, warm-up first, median of repeats).
#
# * **static INT8 per-tensor**: one weight scale per layer (`MinMaxObserver()`);
# * **static INT8 per-channel**: one weight scale per output channel — the default;
# * **W4A8**: 4-bit per-channel weights, 8-bit activations;
# * **mixed W4/FP32**: 4-bit, with the layers most sensitive at 4 bits kept in FP32 within a budget
#   of the 4-bit size plus 25% of what 4-bit saves over FP32.

# %%
_t0 = time.perf_counter()
models = {
    "FP32": fp32,
    "dynamic INT8": quantize_dynamic(fp32),
    "static INT8 per-tensor": quantize_model(fp32, calib, weight_observer=MinMaxObserver),
    "static INT8 per-channel": quantize_model(fp32, calib),
    "W4A8 per-channel": quantize_model(fp32, calib, bits=4),
}
sens4 = sensitivity(fp32, calib, logit_fidelity, bits=4)
budget = int(model_nbytes(models["W4A8 per-channel"])
             + 0.25 * (model_nbytes(fp32) - model_nbytes(models["W4A8 per-channel"])))
models["mixed W4/FP32"] = mixed_precision(fp32, calib, logit_fidelity, budget, bits=4)
kept = [n for n in quantizable_layers(fp32) if not isinstance(models["mixed W4/FP32"].get_submodule(n),
                                                                 QuantizedLayer)]
_x_test = digits.x_test
latency = time_interleaved([functools.partial(m, _x_test) for m in models.values()], repeats=5,
                           warmup=1, min_sample_s=0.02)
rows = []
for (label, m), t in zip(models.items(), latency):
    rows.append((label, test_accuracy(m), model_nbytes(m), model_nbytes(m, packed=True), t))
print(f"{'model':26s} {'test acc':>9s} {'bytes':>9s} {'packed':>9s} {'ms/500 img':>11s} {'vs FP32':>8s}")
for label, acc, nb, pk, t in rows:
    print(f"{label:26s} {acc:9.2%} {nb:9,d} {pk:9,d} {t * 1e3:11.2f} {t / latency[0]:7.2f}x")
print(f"\nmixed precision: budget {budget:,} bytes, kept in FP32: {kept}")
print(f"(built and timed in {time.perf_counter() - _t0:.1f} s)")

# %% [markdown]
# Reading the table:
#
# * **Accuracy.** The module's bar is static INT8 per-channel within 0.5 pt of FP32 on the test
#   split; 8-bit PTQ of a small CNN usually costs no more than an image or two. 4-bit weights cost
#   more. The sensitivity plot below shows which layers suffer most. Small layers (here the first
#   conv and the last Linear) are cheap to keep in FP32, so the greedy rule keeps them whenever they
#   are sensitive at all; the big fully connected layer is where the bytes are.
# * **Bytes.** INT8 weights are 4× smaller than FP32; the per-channel scales, the int32 bias and the
#   float64 multipliers add a few percent on top. A 4-bit model held in `np.int8` saves nothing more
#   until its codes are packed two per byte ("packed" column) — module 21.
# * **Latency.** Expect the integer models to be *slower* than FP32 in this table, and that is
#   honest: numpy's float matmul calls an optimised BLAS, while its int32 matmul is a generic loop
#   with no int8 SIMD kernel behind it, and each quantized layer also quantizes, unfolds and
#   requantizes; a mixed model's latency mostly tells how many layers it runs in integers. The speed of INT8 comes from kernels that multiply int8 directly into int32
#   (x86 VNNI `vpdpbusd`, ARM `sdot`, tensor cores) — modules 19 and 20 write those. What PTQ alone
#   delivers is the memory saving at (almost) no accuracy cost; the speed needs the kernel.

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
names = list(sens4)
sens8 = sensitivity(fp32, calib, logit_fidelity, bits=8)
pos = np.arange(len(names))
axes[0].bar(pos - 0.2, [sens8[n] for n in names], 0.4, label="8-bit weights")
axes[0].bar(pos + 0.2, [sens4[n] for n in names], 0.4, label="4-bit weights")
axes[0].set_xticks(pos, names)
axes[0].set_yscale("log")
axes[0].set_ylabel("drop in logit fidelity (MSE increase)")
axes[0].set_title("Sensitivity: one layer quantized at a time")
axes[0].legend()
labels = [r[0] for r in rows]
axes[1].barh(labels[::-1], [r[4] * 1e3 for r in rows][::-1], color="tab:gray")
for i, r in enumerate(rows[::-1]):
    axes[1].text(r[4] * 1e3, i, f"  {r[1]:.1%}, {r[2] / 1024:.0f} KiB", va="center", fontsize=8)
axes[1].set_xlabel("ms per forward pass over 500 test images")
axes[1].set_title("Latency (labels: test accuracy, bytes held)")
axes[1].set_xlim(0, max(r[4] for r in rows) * 1e3 * 1.6)
fig.tight_layout()

# %% [markdown]
# ### Accuracy against bits
#
# Sweep the weight bits with 8-bit activations, per-tensor against per-channel scales. Somewhere
# below 8 bits every model falls off a cliff; where it falls, and whether per-channel scales delay
# the fall, depends on how different the channels' ranges are. Per-channel scales help most when a
# layer mixes large and small channels (one shared scale leaves the small ones almost no codes); on a
# small CNN whose channels have similar ranges the two curves can cross, and with 500 test images one
# image is 0.2 pt. Read the printout, not the folklore.

# %%
bit_range = [2, 3, 4, 5, 6, 8]
per_tensor = [test_accuracy(quantize_model(fp32, calib, weight_observer=MinMaxObserver, bits=b))
              for b in bit_range]
per_channel = [test_accuracy(quantize_model(fp32, calib, bits=b)) for b in bit_range]
fig, ax = plt.subplots(figsize=(6, 3.4))
ax.plot(bit_range, per_channel, "o-", label="per-channel weights")
ax.plot(bit_range, per_tensor, "s--", label="per-tensor weights")
ax.axhline(test_accuracy(fp32), color="k", lw=0.8, label="FP32")
ax.set_xlabel("weight bits (activations 8-bit)")
ax.set_ylabel("test accuracy")
ax.legend()
fig.tight_layout()
for b, pt, pc in zip(bit_range, per_tensor, per_channel):
    lead = "tie" if pc == pt else ("per-channel" if pc > pt else "per-tensor") + \
        f" ahead by {round(abs(pc - pt) * len(digits.y_test))} image(s)"
    print(f"W{b}A8: per-tensor {pt:.2%}  per-channel {pc:.2%}  ({lead})")

# %% [markdown]
# ## Summary
#
# * A quantized layer stores int8 weights with per-channel scales and an int32 bias at scale
#   $s_x s_w$; it multiplies int8 by int8 into int32, corrects for the input zero point with a
#   precomputed row sum, and requantizes with $M = s_x s_w / s_y$.
# * Static PTQ = observers + calibration + conversion; dynamic PTQ measures activation ranges per
#   batch instead.
# * Sensitivity analysis finds the layers that deserve more bits; mixed precision spends a byte budget
#   on them.
# * INT8 storage is 4× smaller than FP32 at no measurable accuracy cost on this model; the *speed* of
#   INT8 needs integer kernels, which come next.
