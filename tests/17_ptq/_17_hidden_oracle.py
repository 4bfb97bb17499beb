"""Instructor-only oracles of module 17 (ptq) and of what it uses from modules 15 and 16.
Removed from the student release.

Written independently of the reference solution: numpy only, int64 accumulation, float64 qparams
computed one value at a time with Python floats, convolution patches from a strided window view.
The layer class follows the attribute contract of `tinyq.ptq.QuantizedLayer` so that oracle layers
and learner layers can stand in for each other in tests.

Modules 15 and 16 are re-derived here rather than imported from their oracles: a grading run copies
only the graded module's tests folder, so `_15_hidden_oracle` and `_16_hidden_oracle` are not there.
"""
import copy

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from tinyq import nn

INT32 = np.iinfo(np.int32)


# ------------------------------------------------------------------ module 15 (quantize)
def qrange(bits=8, signed=True, narrow=False):
    width = bits - 1 if signed else bits
    top = (1 << width) - 1
    if not signed:
        return 0, top
    return -top - (0 if narrow else 1), top


def _scalars(a):
    """The values of an array as Python floats, in C order."""
    return np.asarray(a, np.float64).ravel().tolist()


def symmetric_qparams(amax, bits=8):
    """Per value: amax / qmax as a Python (double) float, then rounded to float32; 1.0 if not > 0."""
    shape = np.shape(amax)
    qmax = qrange(bits, narrow=True)[1]
    scales = []
    for a in _scalars(amax):
        s = np.float32(a / qmax)
        scales.append(s if s > 0 else np.float32(1.0))
    return np.array(scales, np.float32).reshape(shape)[()], np.zeros(shape, np.int32)[()]


def _affine(lo, hi, qmin, qmax):
    """(float32 scale, int zero point) of [lo, hi] widened to 0, in double arithmetic."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    step = (hi - lo) / (qmax - qmin)
    if not np.float32(step) > 0:
        step = 1.0
    zero = round(qmin - lo / step)                # Python's round: half to even, like np.rint
    return np.float32(step), min(max(zero, qmin), qmax)


def asymmetric_qparams(xmin, xmax, bits=8, signed=False):
    qmin, qmax = qrange(bits, signed)
    lo, hi = np.broadcast_arrays(np.asarray(xmin, np.float64), np.asarray(xmax, np.float64))
    pairs = [_affine(a, b, qmin, qmax) for a, b in zip(_scalars(lo), _scalars(hi))]
    scale = np.array([s for s, _ in pairs], np.float32).reshape(lo.shape)
    zero = np.array([z for _, z in pairs], np.int32).reshape(lo.shape)
    return scale[()], zero[()]


def _per_axis(param, ndim, axis, dtype):
    """param as `dtype`: a 0-d array when axis is None, else one value per index along `axis`."""
    param = np.asarray(param, dtype)
    if axis is None:
        return param.reshape(())
    index = [np.newaxis] * ndim
    index[axis] = slice(None)
    return param.ravel()[tuple(index)]


def quantize(x, scale, zero_point, bits=8, signed=True, narrow=False, axis=None):
    x = np.asarray(x, np.float32)
    qmin, qmax = qrange(bits, signed, narrow)
    s = _per_axis(scale, x.ndim, axis, np.float32)
    z = _per_axis(zero_point, x.ndim, axis, np.float64)
    steps = np.round(x / s)                       # float32 quotient, half to even
    codes = np.clip(steps, qmin - z, qmax - z) + z    # clip before adding: the same integers
    kind = "i" if signed else "u"
    return codes.astype(kind + ("1" if bits <= 8 else "2"))


def dequantize(q, scale, zero_point, axis=None):
    q = np.asarray(q)
    s = _per_axis(scale, q.ndim, axis, np.float32)
    z = _per_axis(zero_point, q.ndim, axis, np.int64)
    offsets = q.astype(np.int64) - z              # exact integers, then one float32 product
    return offsets.astype(np.float32) * s


# ------------------------------------------------------------------ module 16 (observers)
class MinMaxObserver:
    """Running min/max, per tensor (axis=None) or per index along `axis`."""

    def __init__(self, axis=None):
        self.axis = axis
        self.min_val = self.max_val = None
        self.calls = 0

    def __call__(self, x):
        a = np.asarray(x, np.float32)
        self.calls += 1
        if a.size == 0:
            return x
        if self.axis is None:
            lo, hi = a.min(), a.max()
        else:
            red = tuple(i for i in range(a.ndim) if i != self.axis % a.ndim)
            lo, hi = a.min(axis=red), a.max(axis=red)
        if self.min_val is None:
            self.min_val, self.max_val = lo, hi
        else:
            self.min_val, self.max_val = np.minimum(self.min_val, lo), np.maximum(self.max_val, hi)
        return x

    def calculate_qparams(self, bits=8, symmetric=True, signed=True):
        if self.min_val is None:
            return np.float32(1.0), np.int32(0)
        if symmetric:
            return symmetric_qparams(np.maximum(np.abs(self.min_val), np.abs(self.max_val)), bits)
        return asymmetric_qparams(self.min_val, self.max_val, bits, signed)


def per_channel():
    return MinMaxObserver(axis=0)


# ------------------------------------------------------------------ module 17 (ptq)
def quantizable_layers(model):
    names = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            names.append(name)
    return names


def model_nbytes(model, packed=False):
    """4 bytes per float parameter, plus each quantized layer's own count (packed or not)."""
    total = 0
    for p in model.parameters():
        total += p.data.size * p.data.itemsize
    for m in model.modules():
        if isinstance(getattr(m, "w_q", None), np.ndarray):
            total += m.packed_nbytes if packed else m.nbytes
    return int(total)


def quantize_weight(w, observer, bits=8):
    """Symmetric narrow codes, one output channel (row) at a time."""
    w = np.asarray(w, np.float32)
    observer(w)
    scale = np.asarray(observer.calculate_qparams(bits=bits, symmetric=True, signed=True)[0], np.float32)
    scales = np.resize(scale.ravel(), w.shape[0]).astype(np.float32)     # a per-tensor scale repeats
    rows = [quantize(w[c], scales[c], 0, bits, signed=True, narrow=True) for c in range(w.shape[0])]
    return np.stack(rows), scales


def quantize_bias(bias, in_scale, w_scale):
    if bias is None:
        return None
    step = float(in_scale) * np.asarray(w_scale, np.float64)
    ratio = np.clip(np.asarray(bias, np.float64) / step, INT32.min, INT32.max)   # integer bounds: clip, then round
    return np.round(ratio).astype(np.int32)


def integer_linear(x_q, x_zp, w_q, bias_q=None):
    """(x - zp) @ w.T in int64 (no zero-point trick), checked to fit int32."""
    centred = np.asarray(x_q, np.int64) - int(x_zp)
    acc = centred @ np.asarray(w_q, np.int64).T
    if bias_q is not None:
        acc = acc + np.asarray(bias_q, np.int64)
    assert np.abs(acc).max(initial=0) <= INT32.max, "oracle: int32 overflow"
    return acc.astype(np.int32)


def requantize(acc, multiplier, zero_point, bits=8):
    qmin, qmax = qrange(bits, True)
    real = np.asarray(acc, np.float64) * np.asarray(multiplier, np.float64)
    shifted = np.clip(np.round(real), qmin - zero_point, qmax - zero_point)
    return (shifted + zero_point).astype(np.int8)


def _patches(layer, x_q, fill):
    """Conv input codes (N, C, H, W) -> (N*OH*OW, C*k*k) patch rows, the border filled with `fill`."""
    k, step, pad = layer.kernel_size, layer.stride, layer.padding
    if pad:
        x_q = np.pad(x_q, [(0, 0), (0, 0), (pad, pad), (pad, pad)], constant_values=fill)
    win = sliding_window_view(x_q, (k, k), axis=(2, 3))[:, :, ::step, ::step]   # (N, C, OH, OW, k, k)
    n, c, oh, ow = win.shape[:4]
    return np.ascontiguousarray(win.transpose(0, 2, 3, 1, 4, 5)).reshape(n * oh * ow, c * k * k)


def rows_of(layer, x_q, pad_value):
    return _patches(layer, x_q, pad_value) if layer.kind == "conv" else x_q.reshape(-1, x_q.shape[-1])


def unrows(layer, y, in_shape):
    channels = layer.w_q.shape[0]
    if layer.kind != "conv":
        return y.reshape(tuple(in_shape[:-1]) + (channels,))
    k, step, pad = layer.kernel_size, layer.stride, layer.padding
    oh, ow = ((size + 2 * pad - k) // step + 1 for size in in_shape[2:])
    return np.moveaxis(y.reshape(in_shape[0], oh, ow, channels), -1, 1)


def static_forward(layer, x):
    """The static forward pass computed from a layer's attributes (either class)."""
    x_q = quantize(x, layer.in_scale, layer.in_zp, bits=layer.act_bits, signed=True)
    acc = integer_linear(rows_of(layer, x_q, layer.in_zp), layer.in_zp, layer.w_q, layer.bias_q)
    out = dequantize(requantize(acc, layer.multiplier, layer.out_zp, layer.act_bits), layer.out_scale, layer.out_zp)
    return unrows(layer, out, np.shape(x))


def dynamic_forward(layer, x):
    """Input qparams from this batch; int64 accumulation; the rescale and bias in float64."""
    x = np.asarray(x, np.float32)
    s, z = asymmetric_qparams(x.min(), x.max(), layer.act_bits, signed=True)
    rows = rows_of(layer, quantize(x, s, z, bits=layer.act_bits, signed=True), z)
    y = integer_linear(rows, z, layer.w_q).astype(np.float64) * (float(s) * layer.w_scale.astype(np.float64))
    if layer.bias is not None:
        y += layer.bias
    return unrows(layer, y.astype(np.float32), x.shape)


class QuantizedLayer(nn.Module):
    def __init__(self, kind, w_q, w_scale, bias_q=None, bias=None, in_qparams=None, out_qparams=None,
                 multiplier=None, bits=8, act_bits=8, kernel_size=None, stride=1, padding=0):
        in_scale, in_zp = (None, None) if in_qparams is None else in_qparams
        out_scale, out_zp = (None, None) if out_qparams is None else out_qparams
        vars(self).update(kind=kind, w_q=w_q, w_scale=w_scale, bias_q=bias_q, bias=bias,
                          in_scale=in_scale, in_zp=in_zp, out_scale=out_scale, out_zp=out_zp,
                          multiplier=multiplier, bits=bits, act_bits=act_bits,
                          kernel_size=kernel_size, stride=stride, padding=padding, training=False)

    @classmethod
    def from_float(cls, layer, weight_observer, bits=8, act_bits=8, in_qparams=None, out_qparams=None):
        w = layer.weight.data
        w_q, w_scale = quantize_weight(w.reshape(len(w), -1), weight_observer(), bits)
        if isinstance(layer, nn.Conv2d):
            shape = {"kind": "conv", "kernel_size": layer.kernel_size, "stride": layer.stride,
                     "padding": layer.padding}
        else:
            shape = {"kind": "linear"}
        bias = None if layer.bias is None else np.array(layer.bias.data, np.float32)
        if in_qparams is None:                    # dynamic: the float bias stays
            return cls(w_q=w_q, w_scale=w_scale, bias=bias, bits=bits, act_bits=act_bits, **shape)
        s_in, s_out = np.float32(in_qparams[0]), np.float32(out_qparams[0])
        mult = float(s_in) * w_scale.astype(np.float64) / float(s_out)
        return cls(w_q=w_q, w_scale=w_scale, bias_q=quantize_bias(bias, s_in, w_scale), multiplier=mult,
                   in_qparams=(s_in, int(in_qparams[1])), out_qparams=(s_out, int(out_qparams[1])),
                   bits=bits, act_bits=act_bits, **shape)

    @property
    def dynamic(self):                            # no input qparams: measured on each batch instead
        return self.in_scale is None

    def forward(self, x):
        return dynamic_forward(self, x) if self.dynamic else static_forward(self, x)

    def _to_rows(self, x_q, pad_value=0):          # the learner's dynamic_forward calls these
        return rows_of(self, x_q, pad_value)

    def _from_rows(self, y, in_shape):
        return unrows(self, y, in_shape)

    @property
    def nbytes(self):
        """Every array held, plus 16 bytes for a static layer's activation qparams."""
        held = (self.w_q, self.w_scale, self.bias_q, self.bias, self.multiplier)
        total = sum(np.asarray(a).nbytes for a in held if a is not None)
        return int(total + (0 if self.dynamic else 16))

    @property
    def packed_nbytes(self):
        code_bytes = (self.w_q.size * self.bits + 7) // 8
        return int(self.nbytes - self.w_q.nbytes + code_bytes)


class Observed(nn.Module):
    """A layer between two observers; each observer records what passes and hands it on unchanged."""

    def __init__(self, layer, in_observer, out_observer):
        vars(self).update(layer=layer, in_observer=in_observer, out_observer=out_observer)

    def forward(self, x):
        seen = self.in_observer(x)
        return self.out_observer(self.layer(seen))


def calibrate(model, calib_batches, activation_observer=MinMaxObserver, layers=None):
    names = quantizable_layers(model) if layers is None else list(layers)
    found = {name: (activation_observer(), activation_observer()) for name in names}
    shadow = copy.deepcopy(model)
    shadow.eval()
    for name, (o_in, o_out) in found.items():
        shadow.set_submodule(name, Observed(shadow.get_submodule(name), o_in, o_out))
    for batch in calib_batches:
        shadow(batch[0] if isinstance(batch, (tuple, list)) else batch)
    return found


def quantize_model(model, calib_batches, weight_observer=per_channel, activation_observer=MinMaxObserver,
                   bits=8, act_bits=8, layers=None):
    found = calibrate(model, calib_batches, activation_observer, layers)
    act = dict(bits=act_bits, symmetric=False, signed=True)
    qparams = {name: [o.calculate_qparams(**act) for o in pair] for name, pair in found.items()}
    out = copy.deepcopy(model)
    out.eval()
    for name, (qp_in, qp_out) in qparams.items():
        float_layer = out.get_submodule(name)
        out.set_submodule(name, QuantizedLayer.from_float(float_layer, weight_observer, bits, act_bits,
                                                          in_qparams=qp_in, out_qparams=qp_out))
    return out


def quantize_dynamic(model, weight_observer=per_channel, bits=8, act_bits=8, layers=None):
    out = copy.deepcopy(model)
    out.eval()
    for name in (quantizable_layers(model) if layers is None else list(layers)):
        out.set_submodule(name, QuantizedLayer.from_float(out.get_submodule(name), weight_observer,
                                                          bits=bits, act_bits=act_bits))
    return out


def sensitivity(model, calib_batches, eval_fn, **kw):
    batches = list(calib_batches)
    reference = float(eval_fn(model))
    drops = {}
    for name in quantizable_layers(model):
        alone = quantize_model(model, batches, layers=[name], **kw)
        drops[name] = reference - float(eval_fn(alone))
    return drops


def mixed_choice(model, q_all, sens, budget):
    """The set of layers the greedy rule keeps in FP32 (None when even q_all exceeds the budget)."""
    room = budget - model_nbytes(q_all)
    if room < 0:
        return None
    cost = {n: model_nbytes(model.get_submodule(n)) - model_nbytes(q_all.get_submodule(n)) for n in sens}
    keep = []
    for name in sorted(sens, key=sens.get, reverse=True):        # stable: ties stay in model order
        if cost[name] <= room:
            keep.append(name)
            room -= cost[name]
    return keep


def mixed_precision(model, calib_batches, eval_fn, budget, **kw):
    batches = list(calib_batches)
    sens = sensitivity(model, batches, eval_fn, **kw)
    keep = mixed_choice(model, quantize_model(model, batches, **kw), sens, budget)
    if keep is None:
        raise ValueError("budget below the fully quantized size")
    rest = [n for n in quantizable_layers(model) if n not in keep]
    return quantize_model(model, batches, layers=rest, **kw)
