# Hand-written support (not exported from a module): tinyq's small neural-network library.
"""Layers with explicit forward and backward passes in numpy (float32).

Every layer caches what its backward pass needs during `forward` (only in training mode), and
`backward(grad_out)` returns the gradient with respect to the layer's input while *accumulating*
into `.grad` of its `Parameter`s. A model is a tree of `Module`s that can be walked
(`named_modules`) and edited (`set_submodule`), which is what the quantization modules use to swap
float layers for quantized ones.

    model = Sequential(conv1=Conv2d(1, 8, 3, padding=1), relu1=ReLU(), flat=Flatten(),
                       fc=Linear(8 * 8 * 8, 10))
    loss, grad = cross_entropy(model(x), y)
    model.zero_grad(); model.backward(grad); opt.step()
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Iterator

import numpy as np

__all__ = ["Parameter", "Module", "Linear", "Conv2d", "ReLU", "MaxPool2d", "Flatten", "Sequential",
           "im2col", "col2im", "conv_output_size", "softmax", "cross_entropy", "accuracy",
           "SGD", "Adam"]


class Parameter:
    """A trainable array (`.data`) and the gradient accumulated into it (`.grad`)."""

    def __init__(self, data, dtype=np.float32):
        self.data = np.array(data, dtype=dtype)
        self.grad = np.zeros_like(self.data)

    @property
    def shape(self):
        return self.data.shape

    def __repr__(self):
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class Module:
    """Base class: finds its parameters and sub-modules among its attributes."""

    training = True

    def __call__(self, x):
        return self.forward(x)

    def forward(self, x):  # pragma: no cover - every layer overrides it
        raise NotImplementedError

    def backward(self, grad_out):  # pragma: no cover
        raise NotImplementedError(f"{type(self).__name__} has no backward pass")

    # -- walking the tree ---------------------------------------------------------------------
    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def children(self) -> Iterator["Module"]:
        for _, child in self.named_children():
            yield child

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        """This module (name `prefix`, "" for the root) and every descendant, depth first."""
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator["Module"]:
        for _, module in self.named_modules():
            yield module

    def get_submodule(self, name: str) -> "Module":
        module = self
        for part in filter(None, name.split(".")):
            module = module._get_child(part)
        return module

    def set_submodule(self, name: str, new: "Module") -> None:
        """Replace the descendant called `name` (as listed by `named_modules`) by `new`."""
        parent_name, _, child = name.rpartition(".")
        if not child:
            raise ValueError("cannot replace the root module")
        self.get_submodule(parent_name)._set_child(child, new)

    def _get_child(self, name: str) -> "Module":
        value = getattr(self, name, None)
        if not isinstance(value, Module):
            raise KeyError(f"{type(self).__name__} has no sub-module {name!r}")
        return value

    def _set_child(self, name: str, new: "Module") -> None:
        if not isinstance(getattr(self, name, None), Module):
            raise KeyError(f"{type(self).__name__} has no sub-module {name!r}")
        setattr(self, name, new)

    # -- parameters ---------------------------------------------------------------------------
    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        seen = set()
        for prefix, module in self.named_modules():
            for name, value in vars(module).items():
                if isinstance(value, Parameter) and id(value) not in seen:
                    seen.add(id(value))
                    yield (f"{prefix}.{name}" if prefix else name), value

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = np.zeros_like(p.data)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {name: p.data.copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state: dict) -> None:
        params = dict(self.named_parameters())
        missing = sorted(set(params) - set(state))
        unexpected = sorted(set(state) - set(params))
        if missing or unexpected:
            raise KeyError(f"state_dict mismatch: missing {missing}, unexpected {unexpected}")
        for name, p in params.items():
            value = np.asarray(state[name])
            if value.shape != p.data.shape:
                raise ValueError(f"{name}: shape {value.shape}, expected {p.data.shape}")
            p.data = value.astype(p.data.dtype, copy=True)
            p.grad = np.zeros_like(p.data)

    # -- modes ----------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        for module in self.modules():
            module.training = mode
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def __repr__(self):
        inner = [f"  ({name}): " + repr(child).replace("\n", "\n  ") for name, child in self.named_children()]
        head = f"{type(self).__name__}({self.extra_repr()})"
        return head if not inner else f"{type(self).__name__}(\n" + "\n".join(inner) + "\n)"

    def extra_repr(self) -> str:
        return ""


def _init_uniform(rng: np.random.Generator, shape, fan_in: int) -> np.ndarray:
    """Kaiming-uniform initialisation for ReLU networks: U(-b, b), b = sqrt(6 / fan_in)."""
    bound = np.sqrt(6.0 / fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(np.float32)


class Linear(Module):
    """y = x @ W.T + b, with W of shape (out_features, in_features)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, rng=None):
        rng = np.random.default_rng(rng)
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(_init_uniform(rng, (out_features, in_features), in_features))
        self.bias = Parameter(np.zeros(out_features)) if bias else None

    def forward(self, x):
        if self.training:
            self._x = x
        y = x @ self.weight.data.T
        return y + self.bias.data if self.bias is not None else y

    def backward(self, grad_out):
        self.weight.grad += grad_out.T @ self._x
        if self.bias is not None:
            self.bias.grad += grad_out.sum(axis=0)
        return grad_out @ self.weight.data

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def im2col(x: np.ndarray, kh: int, kw: int, stride: int = 1, padding: int = 0,
           pad_value=0) -> np.ndarray:
    """Unfold NCHW `x` into rows of patches: shape (N*OH*OW, C*kh*kw), dtype of `x` kept.

    Row `(n, oh, ow)` holds the patch under output pixel (oh, ow) of image n, flattened in the
    order (c, i, j) -- the order of a conv weight reshaped to (out_channels, C*kh*kw). The border is
    filled with `pad_value` (for an integer image: its zero point, the code of the real value 0).
    """
    n, c, h, w = x.shape
    oh, ow = conv_output_size(h, kh, stride, padding), conv_output_size(w, kw, stride, padding)
    if padding:
        x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)),
                   constant_values=np.asarray(pad_value, dtype=x.dtype))
    cols = np.empty((n, c, kh, kw, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = x[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
    return cols.transpose(0, 4, 5, 1, 2, 3).reshape(n * oh * ow, c * kh * kw)


def col2im(cols: np.ndarray, shape, kh: int, kw: int, stride: int = 1, padding: int = 0) -> np.ndarray:
    """Adjoint of `im2col`: add every patch row back onto an NCHW array of `shape`."""
    n, c, h, w = shape
    oh, ow = conv_output_size(h, kh, stride, padding), conv_output_size(w, kw, stride, padding)
    cols = cols.reshape(n, oh, ow, c, kh, kw).transpose(0, 3, 4, 5, 1, 2)
    out = np.zeros((n, c, h + 2 * padding, w + 2 * padding), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += cols[:, :, i, j]
    return out[:, :, padding:padding + h, padding:padding + w]


class Conv2d(Module):
    """2-D convolution on NCHW input by im2col + matmul; weight (out, in, kh, kw)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = True, rng=None):
        rng = np.random.default_rng(rng)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        fan_in = in_channels * kernel_size * kernel_size
        self.weight = Parameter(_init_uniform(
            rng, (out_channels, in_channels, kernel_size, kernel_size), fan_in))
        self.bias = Parameter(np.zeros(out_channels)) if bias else None

    def forward(self, x):
        k, s, p = self.kernel_size, self.stride, self.padding
        n, _, h, w = x.shape
        oh, ow = conv_output_size(h, k, s, p), conv_output_size(w, k, s, p)
        cols = im2col(x, k, k, s, p)                          # (N*OH*OW, C*k*k)
        y = cols @ self.weight.data.reshape(self.out_channels, -1).T
        if self.bias is not None:
            y = y + self.bias.data
        if self.training:
            self._cols, self._shape = cols, x.shape
        return y.reshape(n, oh, ow, self.out_channels).transpose(0, 3, 1, 2)

    def backward(self, grad_out):
        k, s, p = self.kernel_size, self.stride, self.padding
        g = grad_out.transpose(0, 2, 3, 1).reshape(-1, self.out_channels)   # (N*OH*OW, out)
        self.weight.grad += (g.T @ self._cols).reshape(self.weight.data.shape)
        if self.bias is not None:
            self.bias.grad += g.sum(axis=0)
        dcols = g @ self.weight.data.reshape(self.out_channels, -1)
        return col2im(dcols, self._shape, k, k, s, p)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")


class ReLU(Module):
    def forward(self, x):
        if self.training:
            self._mask = x > 0
        return np.maximum(x, 0)

    def backward(self, grad_out):
        return grad_out * self._mask


class MaxPool2d(Module):
    """Max over k x k windows (stride defaults to k); the gradient goes to each window's maximum."""

    def __init__(self, kernel_size: int, stride: int | None = None):
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride

    def _windows(self, x):
        k, s = self.kernel_size, self.stride
        oh, ow = conv_output_size(x.shape[2], k, s, 0), conv_output_size(x.shape[3], k, s, 0)
        return [x[:, :, i:i + s * oh:s, j:j + s * ow:s] for i in range(k) for j in range(k)]

    def forward(self, x):
        windows = np.stack(self._windows(x))                 # (k*k, N, C, OH, OW)
        arg = windows.argmax(axis=0)
        if self.training:
            self._arg, self._shape, self._dtype = arg, x.shape, x.dtype
        return np.take_along_axis(windows, arg[None], axis=0)[0]

    def backward(self, grad_out):
        dx = np.zeros(self._shape, dtype=grad_out.dtype)
        for idx, view in enumerate(self._windows(dx)):
            view += grad_out * (self._arg == idx)            # views into dx: overlaps add up
        return dx

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class Flatten(Module):
    """(N, ...) -> (N, prod(...))."""

    def forward(self, x):
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad_out):
        return grad_out.reshape(self._shape)


class Sequential(Module):
    """Layers applied in order. Children are named by keyword (`Sequential(fc=Linear(...))`) or,
    for positional layers, by their index ("0", "1", ...). Index with an int or a name."""

    def __init__(self, *layers: Module, **named: Module):
        self._layers: OrderedDict[str, Module] = OrderedDict()
        for i, layer in enumerate(layers):
            self._layers[str(i)] = layer
        for name, layer in named.items():
            if name in self._layers:
                raise ValueError(f"duplicate layer name {name!r}")
            self._layers[name] = layer

    def named_children(self):
        yield from self._layers.items()

    def _get_child(self, name):
        if name not in self._layers:
            raise KeyError(f"Sequential has no layer {name!r}")
        return self._layers[name]

    def _set_child(self, name, new):
        if name not in self._layers:
            raise KeyError(f"Sequential has no layer {name!r}")
        self._layers[name] = new

    def __getattr__(self, name):          # model.fc1 for a layer named "fc1"
        layers = self.__dict__.get("_layers")
        if layers is not None and name in layers:
            return layers[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __getitem__(self, key):
        return list(self._layers.values())[key] if isinstance(key, int) else self._layers[key]

    def __setitem__(self, key, new):
        self._set_child(list(self._layers)[key] if isinstance(key, int) else key, new)

    def __len__(self):
        return len(self._layers)

    def __iter__(self):
        return iter(self._layers.values())

    def forward(self, x):
        for layer in self._layers.values():
            x = layer(x)
        return x

    def backward(self, grad_out):
        for layer in reversed(self._layers.values()):
            grad_out = layer.backward(grad_out)
        return grad_out


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy of (N, classes) logits against integer labels, and d loss / d logits."""
    n = logits.shape[0]
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    loss = -log_p[np.arange(n), labels].mean()
    grad = np.exp(log_p)
    grad[np.arange(n), labels] -= 1
    return float(loss), (grad / n).astype(logits.dtype)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Share of rows whose largest logit is the label (0..1)."""
    return float((np.asarray(logits).argmax(axis=1) == labels).mean())


class SGD:
    """p <- p - lr * v,  v <- momentum * v + (grad + weight_decay * p)."""

    def __init__(self, params, lr: float = 0.01, momentum: float = 0.0, weight_decay: float = 0.0):
        self.params, self.lr, self.momentum, self.weight_decay = list(params), lr, momentum, weight_decay
        self._v = [np.zeros_like(p.data) for p in self.params]

    def zero_grad(self):
        for p in self.params:
            p.grad = np.zeros_like(p.data)

    def step(self):
        for p, v in zip(self.params, self._v):
            g = p.grad + self.weight_decay * p.data
            if self.momentum:
                v *= self.momentum
                v += g
                g = v
            p.data -= (self.lr * g).astype(p.data.dtype)


class Adam:
    """Adam (Kingma & Ba 2015) with bias correction; `weight_decay` is L2 added to the gradient."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        self.params, self.lr, self.betas, self.eps = list(params), lr, betas, eps
        self.weight_decay = weight_decay
        self._m = [np.zeros_like(p.data) for p in self.params]
        self._v = [np.zeros_like(p.data) for p in self.params]
        self.t = 0

    def zero_grad(self):
        for p in self.params:
            p.grad = np.zeros_like(p.data)

    def step(self):
        self.t += 1
        b1, b2 = self.betas
        for p, m, v in zip(self.params, self._m, self._v):
            g = p.grad + self.weight_decay * p.data
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            m_hat = m / (1 - b1 ** self.t)
            v_hat = v / (1 - b2 ** self.t)
            p.data -= (self.lr * m_hat / (np.sqrt(v_hat) + self.eps)).astype(p.data.dtype)
