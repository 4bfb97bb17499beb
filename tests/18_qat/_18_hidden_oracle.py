"""Instructor-only oracles of module 18 (qat) and of what it uses from modules 15, 16 and 17.
Removed from the student release.

Written independently of the reference solution (numpy only). The arithmetic takes a float64 route
that gives the float32 results bit for bit: a float32 quotient or product is the float64 one rounded
once to float32 (double rounding is harmless for +, -, *, / when 53 >= 2 * 24 + 2), and the codes are
clamped before they are rounded (rint is monotone and leaves the integer bounds alone). The classes
follow the attribute contracts of `tinyq.qat` (FakeQuantize, LSQFakeQuantize, QATLayer) and
`tinyq.ptq.QuantizedLayer`, so oracle objects and learner objects can stand in for each other in tests.
"""
import copy

import numpy as np

from tinyq import nn

F64 = np.float64


# ------------------------------------------------------------------ module 15 (quantize)
def qrange(bits=8, signed=True, narrow=False):
    levels = 1 << bits
    if not signed:
        return 0, levels - 1
    half = levels >> 1
    return -half + (1 if narrow else 0), half - 1


def _along(param, ndim, axis, dtype):
    """`param` as `dtype`, shaped to broadcast along `axis` of an ndim-array (a 0-d array for None)."""
    flat = np.asarray(param, dtype).reshape(-1)
    if axis is None:
        return flat.reshape(())
    trailing = ndim - 1 - axis % ndim
    return flat.reshape((-1,) + (1,) * trailing)


def _offsets(x, scale, zero_point, qmin, qmax, axis):
    """(s, z, u): s float32 and z (float64) broadcast along `axis`; u = the float32 quotient x / s in
    float64, bounded to one step beyond the codes' reach [qmin - z, qmax - z] (no overflow, same
    clamped codes)."""
    s = _along(scale, x.ndim, axis, np.float32)
    z = _along(zero_point, x.ndim, axis, np.float32).astype(F64)
    wide = np.clip(x.astype(F64) / s, qmin - z - 1, qmax - z + 1)
    return s, z, wide.astype(np.float32).astype(F64)


def _code_dtype(bits, signed):
    return np.dtype(("" if signed else "u") + ("int8" if bits <= 8 else "int16"))


def quantize(x, scale, zero_point, bits=8, signed=True, narrow=False, axis=None):
    x = np.asarray(x, np.float32)
    lo, hi = qrange(bits, signed, narrow)
    _, z, u = _offsets(x, scale, zero_point, lo, hi, axis)
    return (np.rint(np.clip(u, lo - z, hi - z)) + z).astype(_code_dtype(bits, signed))


def dequantize(q, scale, zero_point, axis=None):
    q = np.asarray(q)
    s = _along(scale, q.ndim, axis, np.float32)
    z = _along(zero_point, q.ndim, axis, np.float32)
    return ((q.astype(F64) - z) * s).astype(np.float32)


def _qparams(lo, hi, bits, symmetric, signed):
    """(scale float32, zero_point int32) for the range [lo, hi] (scalars, or arrays per channel)."""
    lo, hi = np.asarray(lo, F64), np.asarray(hi, F64)
    if symmetric:
        reach = np.max(np.abs(np.stack([lo, hi])), axis=0)
        step = (reach / qrange(bits, True, True)[1]).astype(np.float32)
        step = np.where(step > 0, step, np.float32(1)).astype(np.float32)
        return step[()], np.zeros(step.shape, np.int32)[()]
    qmin, qmax = qrange(bits, signed)
    neg = np.minimum(lo, 0.0)
    step = (np.maximum(hi, 0.0) - neg) / (qmax - qmin)
    step = np.where(step.astype(np.float32) > 0, step, 1.0)
    zp = np.clip(np.round(qmin - neg / step), qmin, qmax).astype(np.int32)
    return step.astype(np.float32)[()], zp[()]


# ------------------------------------------------------------------ module 16 (observers)
def _extent(x, axis):
    """(min, max) of x in float64: over everything (axis None), or one per index along `axis`."""
    a = np.asarray(x, F64)
    if axis is None:
        return a.min(), a.max()
    rest = tuple(i for i in range(a.ndim) if i != axis % a.ndim)
    return a.min(axis=rest), a.max(axis=rest)


class _RangeObserver:
    """Keeps [min; max] stacked in one float64 array; subclasses say how a new batch is merged."""

    def __init__(self, axis=None):
        self.axis = axis
        self._span = None

    @property
    def min_val(self):
        return None if self._span is None else self._span[0]

    @property
    def max_val(self):
        return None if self._span is None else self._span[1]

    def __call__(self, x):
        if np.size(x):
            seen = np.stack(_extent(x, self.axis))
            self._span = seen if self._span is None else self._merge(self._span, seen)
        return x

    def calculate_qparams(self, bits=8, symmetric=True, signed=True):
        span = np.zeros(2) if self._span is None else self._span
        return _qparams(span[0], span[1], bits, symmetric, signed)


class MovingAverageMinMaxObserver(_RangeObserver):
    """Per-tensor or per-channel min/max with an exponential moving average (first batch sets them)."""

    def __init__(self, averaging_constant=0.01, axis=None):
        super().__init__(axis)
        self.averaging_constant = float(averaging_constant)

    def _merge(self, old, seen):
        return old + self.averaging_constant * (seen - old)


class MinMaxObserver(_RangeObserver):
    def _merge(self, old, seen):
        return np.stack([np.fmin(old[0], seen[0]), np.fmax(old[1], seen[1])])


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
def fake_quantize(x, scale, zero_point, qmin, qmax, axis=None):
    x = np.asarray(x, np.float32)
    bad = x.size - np.count_nonzero(np.isfinite(x))
    if bad:
        raise ValueError(f"{bad} of {x.size} values are NaN or inf")
    s, z, u = _offsets(x, scale, zero_point, qmin, qmax, axis)
    steps = np.rint(np.clip(u, qmin - z, qmax - z))          # code - zero point, already clamped
    return (steps * s).astype(np.float32)


def fake_quantize_grad(x, grad_out, scale, zero_point, qmin, qmax, axis=None):
    x = np.asarray(x, np.float32)
    _, z, u = _offsets(x, scale, zero_point, qmin, qmax, axis)
    r = np.rint(u)
    passes = (qmin - z <= r) & (r <= qmax - z)
    return np.where(passes, np.asarray(grad_out, np.float32), np.float32(0)).astype(np.float32)


def _per_channel_sum(v, axis):
    """Sum of v over everything (a float) or over every axis but `axis` (float32, one per channel)."""
    if axis is None:
        return float(np.sum(v))
    rows = np.moveaxis(v, axis, 0)
    return rows.reshape(rows.shape[0], -1).sum(axis=1).astype(np.float32)


def lsq_grad(x, grad_out, scale, zero_point, qmin, qmax, grad_scale=1.0, axis=None):
    """fq(x) = s * k with k = clip(rint(x / s), qmin - z, qmax - z): d fq / d s = k - x / s where k
    follows x (inside) and k where it is pinned; d fq / d z = -s where pinned."""
    x = np.asarray(x, np.float32)
    s, z, u = _offsets(x, scale, zero_point, qmin, qmax, axis)
    r = np.rint(u)
    k = np.clip(r, qmin - z, qmax - z)
    follows = k == r
    g = np.asarray(grad_out, np.float32).astype(F64)
    d_s = k - np.where(follows, u, 0.0)
    d_z = np.where(follows, 0.0, -np.broadcast_to(s, x.shape).astype(F64))
    grad_x = np.where(follows, g, 0.0).astype(np.float32)
    return grad_x, grad_scale * _per_channel_sum(g * d_s, axis), grad_scale * _per_channel_sum(g * d_z, axis)


class _FakeQuantizer(nn.Module):
    """What FakeQuantize and LSQFakeQuantize share: the code range, the on/off switch, and a forward
    pass that fake-quantizes with `qparams()` and keeps (x, s, z) for the backward pass in training.
    Subclasses give `_before(x)` (update the qparams) and `_through(grad, x, s, z)` (the backward)."""

    def _setup(self, bits, symmetric, axis):
        self.bits, self.symmetric, self.axis = bits, bool(symmetric), axis
        self.qmin, self.qmax = qrange(bits, True, self.symmetric)
        self.fake_quant_enabled = True
        self._saved = None

    def _switch(self, flag, on):
        setattr(self, flag, bool(on))
        return self

    def enable_fake_quant(self, enabled=True):
        return self._switch("fake_quant_enabled", enabled)

    def disable_fake_quant(self):
        return self._switch("fake_quant_enabled", False)

    def forward(self, x):
        x = np.asarray(x, np.float32)
        self._before(x)
        live = self.fake_quant_enabled
        s_z = self.qparams() if live else None
        self._saved = (x,) + tuple(s_z) if live and self.training else None
        return fake_quantize(x, *s_z, self.qmin, self.qmax, self.axis) if live else x

    def backward(self, grad_out):
        if self._saved is None:
            return np.asarray(grad_out, np.float32)
        return self._through(grad_out, *self._saved)


class FakeQuantize(_FakeQuantizer):
    def __init__(self, bits=8, symmetric=False, axis=None, observer=None):
        self._setup(bits, symmetric, axis)
        self.observer = MovingAverageMinMaxObserver(axis=axis) if observer is None else observer
        self.observer_enabled = True
        self.scale = self.zero_point = None

    def enable_observer(self, enabled=True):
        return self._switch("observer_enabled", enabled)

    def disable_observer(self):
        return self._switch("observer_enabled", False)

    def qparams(self):
        if self.scale is None:
            raise RuntimeError("no qparams yet: nothing was observed")
        return self.scale, self.zero_point

    def _before(self, x):
        if self.training and self.observer_enabled:
            self.observer(x)
            s, z = self.observer.calculate_qparams(bits=self.bits, symmetric=self.symmetric, signed=True)
            self.scale, self.zero_point = np.asarray(s, np.float32), np.asarray(z, np.int32)

    def _through(self, grad_out, x, s, z):
        return fake_quantize_grad(x, grad_out, s, z, self.qmin, self.qmax, self.axis)


class LSQFakeQuantize(_FakeQuantizer):
    EPS = 1e-8

    def __init__(self, bits=8, symmetric=True, axis=None, channels=None, init="minmax"):
        self._setup(bits, symmetric, axis)
        self.init = init
        shape = () if axis is None else (int(channels),)
        self.scale = nn.Parameter(np.ones(shape))
        self.zero_point = np.zeros(shape, np.int32)
        self.initialized = False

    def qparams(self):
        if not self.initialized:
            raise RuntimeError("the step size is not initialised yet")
        return np.maximum(self.scale.data, self.EPS).astype(np.float32), self.zero_point

    def initialize(self, x):
        if self.init == "lsq":                      # the LSQ paper: 2 mean|x| / sqrt(qmax), zero point 0
            a = np.abs(np.asarray(x, F64))
            if self.axis is not None:
                a = np.moveaxis(a, self.axis, 0).reshape(a.shape[self.axis], -1)
            mean = a.mean() if self.axis is None else a.mean(axis=1)
            s, z = 2.0 * mean / np.sqrt(self.qmax), 0
        else:                                       # min-max of this first batch
            s, z = _qparams(*_extent(x, self.axis), self.bits, self.symmetric, True)
        self.scale.data[...] = np.maximum(np.asarray(s, np.float32), self.EPS)
        self.zero_point = np.zeros(self.scale.data.shape, np.int32) + np.asarray(z, np.int32)
        self.initialized = True

    def _before(self, x):
        if self.training and not self.initialized:
            self.initialize(x)

    def _through(self, grad_out, x, s, z):
        per_step = x.size / np.size(s)              # elements that share one step size
        gx, gs, _ = lsq_grad(x, grad_out, s, z, self.qmin, self.qmax,
                             grad_scale=1.0 / np.sqrt(per_step * self.qmax), axis=self.axis)
        grad = self.scale.grad
        self.scale.grad = grad + np.asarray(gs, grad.dtype).reshape(grad.shape)
        return gx


class QATLayer(nn.Module):
    """Each forward pass runs a shallow copy of the layer (a "shadow") that shares the bias but holds
    the fake-quantized weight as its own Parameter; backward runs the shadow's backward (the bias
    gradient lands in the shared bias) and passes the shadow weight's gradient through weight_fq."""

    def __init__(self, layer, weight_fq, in_fq, out_fq):
        self.layer, self.weight_fq, self.in_fq, self.out_fq = layer, weight_fq, in_fq, out_fq
        self._shadow = ()                           # a tuple: not a sub-module, not walked

    def forward(self, x):
        x_fq = self.in_fq(x)
        shadow = copy.copy(self.layer)
        shadow.weight = nn.Parameter(self.weight_fq(self.layer.weight.data))
        self._shadow = (shadow,)
        return self.out_fq(shadow(x_fq))

    def backward(self, grad_out):
        (shadow,) = self._shadow
        dx = shadow.backward(self.out_fq.backward(grad_out))
        weight = self.layer.weight
        weight.grad = weight.grad + self.weight_fq.backward(shadow.weight.grad)
        return self.in_fq.backward(dx)


def _quantizers_for(layer, weight_bits, act_bits, per_channel, lsq):
    """(weight_fq, in_fq, out_fq) of one layer."""
    axis = 0 if per_channel else None
    if lsq:
        act = lambda: LSQFakeQuantize(act_bits, symmetric=False)
        n_out = len(layer.weight.data) if per_channel else None
        return (LSQFakeQuantize(weight_bits, symmetric=True, axis=axis, channels=n_out), act(), act())
    act = lambda: FakeQuantize(act_bits, symmetric=False)
    weight_obs = MovingAverageMinMaxObserver(averaging_constant=1.0, axis=axis)
    return (FakeQuantize(weight_bits, symmetric=True, axis=axis, observer=weight_obs), act(), act())


def prepare_qat(model, weight_bits=8, act_bits=8, per_channel=True, lsq=False):
    twin = copy.deepcopy(model)
    for name in quantizable_layers(twin):
        layer = twin.get_submodule(name)
        twin.set_submodule(name, QATLayer(layer, *_quantizers_for(layer, weight_bits, act_bits,
                                                                  per_channel, lsq)))
    return twin.train()


class _Preset:
    """A weight observer for QuantizedLayer.from_float that is its own factory: calling it returns
    itself, and it reports a step size fixed in advance (zero point 0)."""

    def __init__(self, scale):
        self.scale = np.asarray(scale, np.float32)

    def __call__(self, *_):
        return self

    def calculate_qparams(self, **_):
        return self.scale, np.zeros(self.scale.shape, np.int32)


def _integer_twin(name, m):
    """The QuantizedLayer that computes what QATLayer `m` computes, with its trained qparams."""
    w_fq = m.weight_fq
    if not w_fq.symmetric:
        raise ValueError(f"{name}: integer layers need a symmetric weight quantizer")
    settings = dict(bits=w_fq.bits, act_bits=m.in_fq.bits,
                    in_qparams=m.in_fq.qparams(), out_qparams=m.out_fq.qparams())
    return QuantizedLayer.from_float(m.layer, _Preset(w_fq.qparams()[0]), **settings)


def convert_qat(model):
    twin = copy.deepcopy(model).eval()
    for name in [n for n, m in twin.named_modules() if isinstance(m, QATLayer)]:
        twin.set_submodule(name, _integer_twin(name, twin.get_submodule(name)))
    return twin


def train_qat(model, x, y, epochs=3, lr=1e-4, batch_size=32, seed=0, freeze_observers_after=None,
              eval_fn=None, eval_every=None):
    opt = nn.Adam(model.parameters(), lr=lr)
    hist = {"loss": [], "eval_step": [], "eval": []}
    losses = hist["loss"]

    def evaluate():
        model.eval()
        hist["eval_step"].append(len(losses))
        hist["eval"].append(float(eval_fn(model)))

    cuts = np.arange(batch_size, len(x), batch_size)
    model.train()
    for epoch in range(epochs):
        order = np.random.default_rng(seed + epoch).permutation(len(x))
        for idx in (np.split(order, cuts) if len(x) else []):
            if len(losses) == freeze_observers_after:
                for m in model.modules():
                    if hasattr(m, "disable_observer"):
                        m.disable_observer()
            loss, d_logits = nn.cross_entropy(model(x[idx]), y[idx])
            model.zero_grad()
            model.backward(d_logits)
            opt.step()
            losses.append(float(loss))
            if eval_fn is not None and eval_every and len(losses) % eval_every == 0:
                evaluate()
                model.train()
    if eval_fn is not None and hist["eval_step"][-1:] != [len(losses)]:
        evaluate()
    model.eval()
    return hist
