"""Instructor-only oracles of module 18 (qat) and of what it uses from modules 15, 16 and 17.
Removed from the student release.

Written independently of the reference solution (numpy only; float64 where it does not change the
result). The classes follow the attribute contracts of `tinyq.qat` (FakeQuantize, LSQFakeQuantize,
QATLayer) and `tinyq.ptq.QuantizedLayer`, so oracle objects and learner objects can stand in for each
other in tests.
"""
import copy

import numpy as np

from tinyq import nn


# ------------------------------------------------------------------ module 15 (quantize)
def qrange(bits=8, signed=True, narrow=False):
    if not signed:
        return 0, 2 ** bits - 1
    top = 2 ** (bits - 1) - 1
    return (-top if narrow else -top - 1), top


def _shape_like(param, ndim, axis, dtype):
    param = np.asarray(param, dtype=dtype)
    if axis is None:
        return param.reshape(())
    shape = [1] * ndim
    shape[axis] = param.size
    return param.reshape(shape)


def quantize(x, scale, zero_point, bits=8, signed=True, narrow=False, axis=None):
    x = np.asarray(x, np.float32)
    lo, hi = qrange(bits, signed, narrow)
    s = _shape_like(scale, x.ndim, axis, np.float32)
    z = _shape_like(zero_point, x.ndim, axis, np.float32)
    codes = np.minimum(np.maximum(np.round(np.divide(x, s)) + z, lo), hi)
    return codes.astype({(True, True): np.int8, (True, False): np.uint8,
                         (False, True): np.int16, (False, False): np.uint16}[(bits <= 8, signed)])


def dequantize(q, scale, zero_point, axis=None):
    q = np.asarray(q)
    s = _shape_like(scale, q.ndim, axis, np.float32)
    z = _shape_like(zero_point, q.ndim, axis, np.float32)
    return ((q.astype(np.float32) - z) * s).astype(np.float32)


def _qparams_from_range(lo, hi, bits, symmetric, signed):
    lo = np.asarray(lo, np.float64)
    hi = np.asarray(hi, np.float64)
    if symmetric:
        top = qrange(bits, True, True)[1]
        amax = np.maximum(np.abs(lo), np.abs(hi))
        scale = (amax / top).astype(np.float32)
        scale = np.where(scale > 0, scale, np.float32(1.0)).astype(np.float32)
        return scale[()], np.zeros(amax.shape, np.int32)[()]
    qmin, qmax = qrange(bits, signed)
    lo, hi = np.minimum(lo, 0.0), np.maximum(hi, 0.0)
    step = (hi - lo) / (qmax - qmin)
    step = np.where(step.astype(np.float32) > 0, step, 1.0)
    zp = np.clip(np.round(qmin - lo / step), qmin, qmax).astype(np.int32)
    return step.astype(np.float32)[()], zp[()]


# ------------------------------------------------------------------ module 16 (observers)
class MovingAverageMinMaxObserver:
    """Per-tensor or per-channel min/max with an exponential moving average (first batch sets them)."""

    def __init__(self, averaging_constant=0.01, axis=None):
        self.averaging_constant = float(averaging_constant)
        self.axis = axis
        self.min_val = self.max_val = None

    def _rows(self, x):
        a = np.asarray(x, np.float64)
        if self.axis is None:
            return a.reshape(1, -1)
        return np.moveaxis(a, self.axis, 0).reshape(a.shape[self.axis], -1)

    def __call__(self, x):
        rows = self._rows(x)
        if rows.size == 0:
            return x
        lo, hi = rows.min(axis=1), rows.max(axis=1)
        if self.min_val is None:
            self.min_val, self.max_val = lo, hi
        else:
            c = self.averaging_constant
            self.min_val = self.min_val + c * (lo - self.min_val)
            self.max_val = self.max_val + c * (hi - self.max_val)
        return x

    def calculate_qparams(self, bits=8, symmetric=True, signed=True):
        if self.min_val is None:
            lo = hi = np.zeros(1)
        else:
            lo, hi = self.min_val, self.max_val
        if self.axis is None:
            lo, hi = lo[0], hi[0]
        return _qparams_from_range(lo, hi, bits, symmetric, signed)


class MinMaxObserver(MovingAverageMinMaxObserver):
    def __init__(self, axis=None):
        super().__init__(1.0, axis)

    def __call__(self, x):
        rows = self._rows(x)
        if rows.size == 0:
            return x
        lo, hi = rows.min(axis=1), rows.max(axis=1)
        self.min_val = lo if self.min_val is None else np.minimum(self.min_val, lo)
        self.max_val = hi if self.max_val is None else np.maximum(self.max_val, hi)
        return x


# ------------------------------------------------------------------ module 17 (ptq)
class QuantizedLayer(nn.Module):
    """Static integer Linear/Conv2d with the attribute contract of tinyq.ptq.QuantizedLayer."""

    def __init__(self, kind, w_q, w_scale, bias_q=None, bias=None, in_qparams=None, out_qparams=None,
                 multiplier=None, bits=8, act_bits=8, kernel_size=None, stride=1, padding=0):
        self.kind, self.w_q, self.w_scale, self.bias_q, self.bias = kind, w_q, w_scale, bias_q, bias
        self.in_scale, self.in_zp = in_qparams if in_qparams is not None else (None, None)
        self.out_scale, self.out_zp = out_qparams if out_qparams is not None else (None, None)
        self.multiplier, self.bits, self.act_bits = multiplier, bits, act_bits
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.training = False

    @classmethod
    def from_float(cls, layer, weight_observer, bits=8, act_bits=8, in_qparams=None, out_qparams=None):
        w = np.asarray(layer.weight.data, np.float32)
        rows = w.reshape(w.shape[0], -1)
        obs = weight_observer()
        obs(rows)
        scale, _ = obs.calculate_qparams(bits=bits, symmetric=True, signed=True)
        w_scale = (np.zeros(w.shape[0], np.float32) + np.asarray(scale, np.float32).reshape(-1)).astype(np.float32)
        top = qrange(bits, True, True)[1]
        w_q = np.clip(np.round(rows / w_scale[:, None]), -top, top).astype(np.int8)
        s_x, z_x = np.float32(in_qparams[0]), int(in_qparams[1])
        s_y, z_y = np.float32(out_qparams[0]), int(out_qparams[1])
        bias_q = None
        if layer.bias is not None:
            bias_q = np.clip(np.round(layer.bias.data.astype(np.float64) / (np.float64(s_x) * w_scale)),
                             -2 ** 31, 2 ** 31 - 1).astype(np.int32)
        geometry = {}
        kind = "linear"
        if isinstance(layer, nn.Conv2d):
            kind = "conv"
            geometry = dict(kernel_size=layer.kernel_size, stride=layer.stride, padding=layer.padding)
        mult = np.float64(s_x) * w_scale.astype(np.float64) / np.float64(s_y)
        return cls(kind, w_q, w_scale, bias_q=bias_q, in_qparams=(s_x, z_x), out_qparams=(s_y, z_y),
                   multiplier=mult, bits=bits, act_bits=act_bits, **geometry)

    def forward(self, x):
        x = np.asarray(x, np.float32)
        lo, hi = qrange(self.act_bits, True)
        xq = np.clip(np.round(x / self.in_scale) + self.in_zp, lo, hi).astype(np.int64)
        if self.kind == "linear":
            rows = xq.reshape(-1, xq.shape[-1])
        else:
            k = self.kernel_size
            rows = nn.im2col(xq, k, k, self.stride, self.padding, pad_value=self.in_zp)
        acc = (rows - self.in_zp) @ self.w_q.astype(np.int64).T
        if self.bias_q is not None:
            acc = acc + self.bias_q
        yq = np.clip(np.round(acc * self.multiplier) + self.out_zp, lo, hi)
        y = ((yq - self.out_zp) * np.float32(self.out_scale)).astype(np.float32)
        if self.kind == "linear":
            return y.reshape(*x.shape[:-1], -1)
        n, _, h, w = x.shape
        oh = nn.conv_output_size(h, self.kernel_size, self.stride, self.padding)
        ow = nn.conv_output_size(w, self.kernel_size, self.stride, self.padding)
        return y.reshape(n, oh, ow, -1).transpose(0, 3, 1, 2)


def quantizable_layers(model):
    return [n for n, m in model.named_modules() if type(m) in (nn.Linear, nn.Conv2d)]


# ------------------------------------------------------------------ module 18 (qat)
def _codes(x, scale, zero_point, axis):
    x = np.asarray(x, np.float32)
    s = _shape_like(scale, x.ndim, axis, np.float32)
    z = _shape_like(zero_point, x.ndim, axis, np.float32)
    return x, s, z, np.round(x / s) + z


def fake_quantize(x, scale, zero_point, qmin, qmax, axis=None):
    x, s, z, q = _codes(x, scale, zero_point, axis)
    if not np.isfinite(x).all():
        raise ValueError(f"{np.count_nonzero(~np.isfinite(x))} of {x.size} values are NaN or inf")
    return ((np.minimum(np.maximum(q, qmin), qmax) - z) * s).astype(np.float32)


def fake_quantize_grad(x, grad_out, scale, zero_point, qmin, qmax, axis=None):
    x, s, z, q = _codes(x, scale, zero_point, axis)
    clamped = np.minimum(np.maximum(q, qmin), qmax)
    return np.where(clamped == q, np.asarray(grad_out, np.float32), np.float32(0)).astype(np.float32)


def lsq_grad(x, grad_out, scale, zero_point, qmin, qmax, grad_scale=1.0, axis=None):
    x, s, z, q = _codes(x, scale, zero_point, axis)
    g = np.asarray(grad_out, np.float64)
    u = x / s
    low, high = q < qmin, q > qmax
    mid = ~low & ~high
    ds = mid * (np.round(u) - u) + low * (qmin - z) + high * (qmax - z)
    dz = np.where(low | high, -np.broadcast_to(s, x.shape).astype(np.float64), 0.0)
    other = tuple(i for i in range(x.ndim) if axis is None or i != axis % x.ndim)
    gs = grad_scale * (g * ds).sum(axis=other)
    gz = grad_scale * (g * dz).sum(axis=other)
    if axis is None:
        gs, gz = float(gs), float(gz)
    else:
        gs, gz = gs.astype(np.float32), gz.astype(np.float32)
    return (g * mid).astype(np.float32), gs, gz


class FakeQuantize(nn.Module):
    def __init__(self, bits=8, symmetric=False, axis=None, observer=None):
        self.bits, self.symmetric, self.axis = bits, bool(symmetric), axis
        self.qmin, self.qmax = qrange(bits, True, self.symmetric)
        self.observer = observer if observer is not None else MovingAverageMinMaxObserver(axis=axis)
        self.scale = self.zero_point = None
        self.observer_enabled = self.fake_quant_enabled = True
        self._saved = None

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
        if self.scale is None:
            raise RuntimeError("no qparams yet")
        return self.scale, self.zero_point

    def forward(self, x):
        x = np.asarray(x, np.float32)
        if self.training and self.observer_enabled:
            self.observer(x)
            s, z = self.observer.calculate_qparams(bits=self.bits, symmetric=self.symmetric, signed=True)
            self.scale, self.zero_point = np.asarray(s, np.float32), np.asarray(z, np.int32)
        self._saved = None
        if not self.fake_quant_enabled:
            return x
        s, z = self.qparams()
        if self.training:
            self._saved = (x, s, z)
        return fake_quantize(x, s, z, self.qmin, self.qmax, self.axis)

    def backward(self, grad_out):
        if self._saved is None:
            return np.asarray(grad_out, np.float32)
        x, s, z = self._saved
        return fake_quantize_grad(x, grad_out, s, z, self.qmin, self.qmax, self.axis)


class LSQFakeQuantize(nn.Module):
    EPS = 1e-8

    def __init__(self, bits=8, symmetric=True, axis=None, channels=None, init="minmax"):
        self.bits, self.symmetric, self.axis, self.init = bits, bool(symmetric), axis, init
        self.qmin, self.qmax = qrange(bits, True, self.symmetric)
        shape = () if axis is None else (int(channels),)
        self.scale = nn.Parameter(np.ones(shape))
        self.zero_point = np.zeros(shape, np.int32)
        self.initialized = False
        self.fake_quant_enabled = True
        self._saved = None

    def enable_fake_quant(self, enabled=True):
        self.fake_quant_enabled = bool(enabled)
        return self

    def disable_fake_quant(self):
        return self.enable_fake_quant(False)

    def qparams(self):
        if not self.initialized:
            raise RuntimeError("not initialised")
        return np.maximum(self.scale.data, self.EPS).astype(np.float32), self.zero_point

    def initialize(self, x):
        x = np.asarray(x, np.float32)
        if self.init == "lsq":
            other = tuple(i for i in range(x.ndim) if self.axis is None or i != self.axis % x.ndim)
            s = 2 * np.abs(x).mean(axis=other) / np.sqrt(self.qmax)
            z = np.zeros(np.shape(s), np.int32)
        else:
            obs = MinMaxObserver(axis=self.axis)
            obs(x)
            s, z = obs.calculate_qparams(bits=self.bits, symmetric=self.symmetric, signed=True)
        self.scale.data[...] = np.maximum(np.asarray(s, np.float32), self.EPS)
        self.zero_point = np.asarray(z, np.int32).reshape(self.scale.data.shape)
        self.initialized = True

    def forward(self, x):
        x = np.asarray(x, np.float32)
        if self.training and not self.initialized:
            self.initialize(x)
        self._saved = None
        if not self.fake_quant_enabled:
            return x
        s, z = self.qparams()
        if self.training:
            self._saved = (x, s, z)
        return fake_quantize(x, s, z, self.qmin, self.qmax, self.axis)

    def backward(self, grad_out):
        if self._saved is None:
            return np.asarray(grad_out, np.float32)
        x, s, z = self._saved
        g = 1.0 / np.sqrt(x.size / s.size * self.qmax)
        gx, gs, _ = lsq_grad(x, grad_out, s, z, self.qmin, self.qmax, grad_scale=g, axis=self.axis)
        self.scale.grad = self.scale.grad + np.reshape(gs, self.scale.grad.shape).astype(self.scale.grad.dtype)
        return gx


class QATLayer(nn.Module):
    def __init__(self, layer, weight_fq, in_fq, out_fq):
        self.layer, self.weight_fq, self.in_fq, self.out_fq = layer, weight_fq, in_fq, out_fq
        self._w_fq = None

    def _with_weight(self, w, fn, *args):
        p = self.layer.weight
        keep = p.data
        p.data = w
        try:
            return fn(*args)
        finally:
            p.data = keep

    def forward(self, x):
        xq = self.in_fq(x)
        w_fq = self.weight_fq(self.layer.weight.data)
        y = self._with_weight(w_fq, self.layer.forward, xq)
        self._w_fq = w_fq
        return self.out_fq(y)

    def backward(self, grad_out):
        g = self.out_fq.backward(grad_out)
        p = self.layer.weight
        acc = p.grad
        p.grad = np.zeros_like(p.data)
        dx = self._with_weight(self._w_fq, self.layer.backward, g)
        d_wfq = p.grad
        p.grad = acc + self.weight_fq.backward(d_wfq)
        return self.in_fq.backward(dx)


def prepare_qat(model, weight_bits=8, act_bits=8, per_channel=True, lsq=False):
    out = copy.deepcopy(model)
    ax = 0 if per_channel else None
    for name in quantizable_layers(out):
        layer = out.get_submodule(name)
        if lsq:
            wfq = LSQFakeQuantize(weight_bits, True, ax, layer.weight.data.shape[0] if per_channel else None)
            fqs = [LSQFakeQuantize(act_bits, False) for _ in range(2)]
        else:
            wfq = FakeQuantize(weight_bits, True, ax, MovingAverageMinMaxObserver(1.0, ax))
            fqs = [FakeQuantize(act_bits, False) for _ in range(2)]
        out.set_submodule(name, QATLayer(layer, wfq, *fqs))
    return out.train()


class _Fixed:
    def __init__(self, scale):
        self.scale = np.asarray(scale, np.float32)

    def __call__(self, x):
        return x

    def calculate_qparams(self, bits=8, symmetric=True, signed=True):
        return self.scale, np.zeros(self.scale.shape, np.int32)


def convert_qat(model):
    out = copy.deepcopy(model).eval()
    for name in [n for n, m in out.named_modules() if isinstance(m, QATLayer)]:
        m = out.get_submodule(name)
        s_w = m.weight_fq.qparams()[0]
        out.set_submodule(name, QuantizedLayer.from_float(
            m.layer, lambda s=s_w: _Fixed(s), bits=m.weight_fq.bits, act_bits=m.in_fq.bits,
            in_qparams=m.in_fq.qparams(), out_qparams=m.out_fq.qparams()))
    return out


def _fake_quantizers(model):
    return [m for m in model.modules() if hasattr(m, "fake_quant_enabled")]


def train_qat(model, x, y, epochs=3, lr=1e-4, batch_size=32, seed=0, freeze_observers_after=None,
              eval_fn=None, eval_every=None):
    opt = nn.Adam(model.parameters(), lr=lr)
    hist = {"loss": [], "eval_step": [], "eval": []}
    step = 0
    model.train()
    for epoch in range(epochs):
        order = np.random.default_rng(seed + epoch).permutation(len(x))
        for start in range(0, len(x), batch_size):
            idx = order[start:start + batch_size]
            if freeze_observers_after is not None and step == freeze_observers_after:
                for m in _fake_quantizers(model):
                    if hasattr(m, "observer_enabled"):
                        m.observer_enabled = False
            loss, grad = nn.cross_entropy(model(x[idx]), y[idx])
            for p in opt.params:
                p.grad = np.zeros_like(p.data)
            model.backward(grad)
            opt.step()
            step += 1
            hist["loss"].append(float(loss))
            if eval_fn is not None and eval_every and step % eval_every == 0:
                model.eval()
                hist["eval_step"].append(step)
                hist["eval"].append(float(eval_fn(model)))
                model.train()
    if eval_fn is not None and (not hist["eval_step"] or hist["eval_step"][-1] != step):
        model.eval()
        hist["eval_step"].append(step)
        hist["eval"].append(float(eval_fn(model)))
    model.eval()
    return hist
