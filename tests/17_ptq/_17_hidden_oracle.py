"""Instructor-only oracles of module 17 (ptq) and of what it uses from modules 15 and 16.
Removed from the student release.

Written independently of the reference solution: numpy only, int64 accumulation, float64 qparams.
The layer class follows the attribute contract of `tinyq.ptq.QuantizedLayer` so that oracle layers
and learner layers can stand in for each other in tests.
"""
import copy

import numpy as np

from tinyq import nn

INT32 = np.iinfo(np.int32)


# ------------------------------------------------------------------ module 15 (quantize)
def qrange(bits=8, signed=True, narrow=False):
    half = 1 << (bits - 1)
    if signed:
        return (-half + 1 if narrow else -half), half - 1
    return 0, (1 << bits) - 1


def symmetric_qparams(amax, bits=8):
    amax = np.asarray(amax, np.float64)
    scale = (amax / qrange(bits, narrow=True)[1]).astype(np.float32)
    scale = np.where(scale > 0, scale, np.float32(1)).astype(np.float32)
    return scale[()], np.zeros(amax.shape, np.int32)[()]


def asymmetric_qparams(xmin, xmax, bits=8, signed=False):
    lo = np.minimum(np.asarray(xmin, np.float64), 0.0)
    hi = np.maximum(np.asarray(xmax, np.float64), 0.0)
    qmin, qmax = qrange(bits, signed)
    s64 = (hi - lo) / (qmax - qmin)
    ok = s64.astype(np.float32) > 0
    s64 = np.where(ok, s64, 1.0)
    zp = np.clip(np.round(qmin - lo / s64), qmin, qmax).astype(np.int32)
    return s64.astype(np.float32)[()], zp[()]


def _along(param, ndim, axis):
    param = np.asarray(param)
    if axis is None:
        return param.reshape(())
    shape = [1] * ndim
    shape[axis] = param.size
    return param.reshape(shape)


def quantize(x, scale, zero_point, bits=8, signed=True, narrow=False, axis=None):
    x = np.asarray(x, np.float32)
    qmin, qmax = qrange(bits, signed, narrow)
    s = _along(np.asarray(scale, np.float32), x.ndim, axis)
    z = _along(zero_point, x.ndim, axis)
    dtype = (np.int8 if signed else np.uint8) if bits <= 8 else (np.int16 if signed else np.uint16)
    return np.clip(np.round(x / s) + z, qmin, qmax).astype(dtype)


def dequantize(q, scale, zero_point, axis=None):
    q = np.asarray(q)
    s = _along(np.asarray(scale, np.float32), q.ndim, axis)
    z = _along(zero_point, q.ndim, axis)
    return ((q.astype(np.float32) - z.astype(np.float32)) * s).astype(np.float32)


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
    return [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def model_nbytes(model, packed=False):
    total = sum(p.data.nbytes for p in model.parameters())
    for m in model.modules():
        if hasattr(m, "w_q") and hasattr(m, "nbytes"):
            total += m.packed_nbytes if packed else m.nbytes
    return int(total)


def _inputs(batch):
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def quantize_weight(w, observer, bits=8):
    w = np.asarray(w, np.float32)
    observer(w)
    scale, _ = observer.calculate_qparams(bits=bits, symmetric=True, signed=True)
    scale = np.asarray(scale, np.float32)
    if scale.size == 1:
        scale = np.full(w.shape[0], scale.reshape(()), np.float32)
    q = quantize(w, scale, np.zeros(w.shape[0], np.int32), bits, True, True, axis=0)
    return q, scale.astype(np.float32)


def quantize_bias(bias, in_scale, w_scale):
    if bias is None:
        return None
    step = np.float64(in_scale) * np.asarray(w_scale, np.float64)
    return np.clip(np.round(np.asarray(bias, np.float64) / step), INT32.min, INT32.max).astype(np.int32)


def integer_linear(x_q, x_zp, w_q, bias_q=None):
    acc = (np.asarray(x_q, np.int64) - int(x_zp)) @ np.asarray(w_q, np.int64).T
    if bias_q is not None:
        acc = acc + np.asarray(bias_q, np.int64)
    assert np.abs(acc).max(initial=0) <= INT32.max, "oracle: int32 overflow"
    return acc.astype(np.int32)


def requantize(acc, multiplier, zero_point, bits=8):
    qmin, qmax = qrange(bits, True)
    y = np.round(np.asarray(acc, np.float64) * np.asarray(multiplier, np.float64)) + zero_point
    return np.clip(y, qmin, qmax).astype(np.int8)


def rows_of(layer, x_q, pad_value):
    if layer.kind == "linear":
        return x_q.reshape(-1, x_q.shape[-1])
    k = layer.kernel_size
    return nn.im2col(x_q, k, k, layer.stride, layer.padding, pad_value=pad_value)


def unrows(layer, y, in_shape):
    out = layer.w_q.shape[0]
    if layer.kind == "linear":
        return y.reshape(*in_shape[:-1], out)
    n, _, h, w = in_shape
    k, s, p = layer.kernel_size, layer.stride, layer.padding
    oh, ow = nn.conv_output_size(h, k, s, p), nn.conv_output_size(w, k, s, p)
    return y.reshape(n, oh, ow, out).transpose(0, 3, 1, 2)


def static_forward(layer, x):
    """The static forward pass computed from a layer's attributes (either class)."""
    x_q = quantize(x, layer.in_scale, layer.in_zp, bits=layer.act_bits, signed=True)
    acc = integer_linear(rows_of(layer, x_q, layer.in_zp), layer.in_zp, layer.w_q, layer.bias_q)
    y_q = requantize(acc, layer.multiplier, layer.out_zp, layer.act_bits)
    return unrows(layer, dequantize(y_q, layer.out_scale, layer.out_zp), np.shape(x))


def dynamic_forward(layer, x):
    x = np.asarray(x, np.float32)
    s, z = asymmetric_qparams(x.min(), x.max(), layer.act_bits, signed=True)
    x_q = quantize(x, s, z, bits=layer.act_bits, signed=True)
    acc = integer_linear(rows_of(layer, x_q, z), z, layer.w_q)
    y = acc.astype(np.float32) * (np.float32(s) * layer.w_scale)
    if layer.bias is not None:
        y = y + layer.bias
    return unrows(layer, y, x.shape)


class QuantizedLayer(nn.Module):
    def __init__(self, kind, w_q, w_scale, bias_q=None, bias=None, in_qparams=None, out_qparams=None,
                 multiplier=None, bits=8, act_bits=8, kernel_size=None, stride=1, padding=0):
        self.kind, self.bits, self.act_bits = kind, bits, act_bits
        self.w_q, self.w_scale, self.bias_q, self.bias = w_q, w_scale, bias_q, bias
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
        conv = isinstance(layer, nn.Conv2d)
        w = layer.weight.data
        w_q, w_scale = quantize_weight(w.reshape(w.shape[0], -1), weight_observer(), bits)
        geo = dict(kernel_size=layer.kernel_size, stride=layer.stride, padding=layer.padding) if conv else {}
        kind = "conv" if conv else "linear"
        bias = None if layer.bias is None else layer.bias.data.astype(np.float32).copy()
        if in_qparams is None:
            return cls(kind, w_q, w_scale, bias=bias, bits=bits, act_bits=act_bits, **geo)
        s_x, z_x = np.float32(in_qparams[0]), int(in_qparams[1])
        s_y, z_y = np.float32(out_qparams[0]), int(out_qparams[1])
        mult = np.float64(s_x) * w_scale.astype(np.float64) / np.float64(s_y)
        return cls(kind, w_q, w_scale, bias_q=quantize_bias(bias, s_x, w_scale), in_qparams=(s_x, z_x),
                   out_qparams=(s_y, z_y), multiplier=mult, bits=bits, act_bits=act_bits, **geo)

    def forward(self, x):
        return dynamic_forward(self, x) if self.dynamic else static_forward(self, x)

    def _to_rows(self, x_q, pad_value=0):          # the learner's dynamic_forward calls these
        return rows_of(self, x_q, pad_value)

    def _from_rows(self, y, in_shape):
        return unrows(self, y, in_shape)

    @property
    def nbytes(self):
        arrays = [a for a in (self.w_scale, self.bias_q, self.bias, self.multiplier) if a is not None]
        return int(self.w_q.nbytes + sum(np.asarray(a).nbytes for a in arrays) + (0 if self.dynamic else 16))

    @property
    def packed_nbytes(self):
        return int(self.nbytes - self.w_q.nbytes + -(-self.w_q.size * self.bits // 8))


class Observed(nn.Module):
    def __init__(self, layer, in_observer, out_observer):
        self.layer, self.in_observer, self.out_observer = layer, in_observer, out_observer

    def forward(self, x):
        return self.out_observer(self.layer(self.in_observer(x)))


def calibrate(model, calib_batches, activation_observer=MinMaxObserver, layers=None):
    work = copy.deepcopy(model).eval()
    found = {}
    for name in (quantizable_layers(model) if layers is None else list(layers)):
        pair = (activation_observer(), activation_observer())
        work.set_submodule(name, Observed(work.get_submodule(name), *pair))
        found[name] = pair
    for batch in calib_batches:
        work(_inputs(batch))
    return found


def quantize_model(model, calib_batches, weight_observer=per_channel, activation_observer=MinMaxObserver,
                   bits=8, act_bits=8, layers=None):
    found = calibrate(model, calib_batches, activation_observer, layers)
    q = copy.deepcopy(model).eval()
    for name, (o_in, o_out) in found.items():
        qp_in = o_in.calculate_qparams(bits=act_bits, symmetric=False, signed=True)
        qp_out = o_out.calculate_qparams(bits=act_bits, symmetric=False, signed=True)
        q.set_submodule(name, QuantizedLayer.from_float(q.get_submodule(name), weight_observer, bits,
                                                        act_bits, qp_in, qp_out))
    return q


def quantize_dynamic(model, weight_observer=per_channel, bits=8, act_bits=8, layers=None):
    q = copy.deepcopy(model).eval()
    for name in (quantizable_layers(model) if layers is None else layers):
        q.set_submodule(name, QuantizedLayer.from_float(q.get_submodule(name), weight_observer, bits, act_bits))
    return q


def sensitivity(model, calib_batches, eval_fn, **kw):
    calib = list(calib_batches)
    base = float(eval_fn(model))
    return {n: base - float(eval_fn(quantize_model(model, calib, layers=[n], **kw)))
            for n in quantizable_layers(model)}


def mixed_choice(model, q_all, sens, budget):
    """The set of layers the greedy rule keeps in FP32 (None when even q_all exceeds the budget)."""
    size = model_nbytes(q_all)
    if size > budget:
        return None
    keep = []
    for name in sorted(sens, key=lambda n: -sens[n]):
        extra = model_nbytes(model.get_submodule(name)) - model_nbytes(q_all.get_submodule(name))
        if size + extra <= budget:
            keep.append(name)
            size += extra
    return keep


def mixed_precision(model, calib_batches, eval_fn, budget, **kw):
    calib = list(calib_batches)
    sens = sensitivity(model, calib, eval_fn, **kw)
    q_all = quantize_model(model, calib, **kw)
    keep = mixed_choice(model, q_all, sens, budget)
    if keep is None:
        raise ValueError("budget below the fully quantized size")
    return quantize_model(model, calib, layers=[n for n in quantizable_layers(model) if n not in keep], **kw)
