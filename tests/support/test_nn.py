"""Tests of the hand-written support library tinyq.nn (not graded: no points)."""
import numpy as np
import pytest

from tinyq import nn


def _to64(module):
    """Run a module in float64 so finite differences are precise."""
    for p in module.parameters():
        p.data = p.data.astype(np.float64)
        p.grad = np.zeros_like(p.data)
    return module


def _check_grads(module, x, eps=1e-6, tol=1e-6):
    """Compare backward() with central differences of L = sum(forward(x) * r)."""
    rng = np.random.default_rng(0)
    module.train()
    y = module(x)
    r = rng.standard_normal(y.shape)
    module.zero_grad()
    dx = module.backward(r)

    def loss():
        return float((module(x) * r).sum())

    def numeric(arr):
        g = np.zeros_like(arr)
        it = np.nditer(arr, flags=["multi_index"])
        for _ in it:
            i = it.multi_index
            old = arr[i]
            arr[i] = old + eps
            up = loss()
            arr[i] = old - eps
            down = loss()
            arr[i] = old
            g[i] = (up - down) / (2 * eps)
        return g

    np.testing.assert_allclose(dx, numeric(x), rtol=tol, atol=tol)
    for name, p in module.named_parameters():
        np.testing.assert_allclose(p.grad, numeric(p.data), rtol=tol, atol=tol, err_msg=name)


def test_linear_gradients():
    layer = _to64(nn.Linear(5, 3, rng=0))
    layer.bias.data[:] = np.random.default_rng(1).standard_normal(3)
    _check_grads(layer, np.random.default_rng(2).standard_normal((4, 5)))


@pytest.mark.parametrize("stride,padding", [(1, 0), (1, 1), (2, 1)])
def test_conv2d_gradients(stride, padding):
    layer = _to64(nn.Conv2d(2, 3, 3, stride=stride, padding=padding, rng=0))
    layer.bias.data[:] = np.random.default_rng(1).standard_normal(3)
    _check_grads(layer, np.random.default_rng(2).standard_normal((2, 2, 5, 5)))


def test_conv2d_matches_direct_convolution():
    rng = np.random.default_rng(0)
    layer = nn.Conv2d(2, 3, 3, stride=2, padding=1, rng=0)
    layer.bias.data[:] = rng.standard_normal(3)
    x = rng.standard_normal((2, 2, 6, 7)).astype(np.float32)
    y = layer(x)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    ref = np.zeros((2, 3, 3, 4))
    for o in range(3):
        for i in range(3):
            for j in range(4):
                patch = xp[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3]
                ref[:, o, i, j] = (patch * layer.weight.data[o]).sum(axis=(1, 2, 3)) + layer.bias.data[o]
    assert y.dtype == np.float32 and y.shape == (2, 3, 3, 4)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def test_im2col_keeps_integer_dtype_and_pad_value():
    x = np.arange(2 * 1 * 3 * 3, dtype=np.int8).reshape(2, 1, 3, 3)
    cols = nn.im2col(x, 3, 3, padding=1, pad_value=-5)
    assert cols.dtype == np.int8 and cols.shape == (2 * 9, 9)
    assert cols[0, 0] == -5 and cols[4].tolist() == list(range(9))


def test_maxpool_gradients():
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 6))
    _check_grads(nn.MaxPool2d(2), x)
    _check_grads(nn.MaxPool2d(3, stride=1), x)


def test_relu_flatten_sequential_gradients():
    model = _to64(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, rng=0), nn.ReLU(), nn.MaxPool2d(2),
                                nn.Flatten(), nn.Linear(8, 3, rng=1)))
    _check_grads(model, np.random.default_rng(3).standard_normal((2, 1, 4, 4)))


def test_cross_entropy_value_and_gradient():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((5, 4))
    labels = np.array([0, 3, 1, 1, 2])
    loss, grad = nn.cross_entropy(logits, labels)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert loss == pytest.approx(-np.log(p[np.arange(5), labels]).mean())
    eps = 1e-6
    num = np.zeros_like(logits)
    for i in np.ndindex(*logits.shape):
        up, down = logits.copy(), logits.copy()
        up[i] += eps
        down[i] -= eps
        num[i] = (nn.cross_entropy(up, labels)[0] - nn.cross_entropy(down, labels)[0]) / (2 * eps)
    np.testing.assert_allclose(grad, num, atol=1e-7)
    # stable for huge logits
    loss, grad = nn.cross_entropy(np.array([[1000.0, 0.0]], np.float32), np.array([0]))
    assert loss == 0.0 and np.isfinite(grad).all() and grad.dtype == np.float32


def test_sgd_step():
    p = nn.Parameter([1.0, -2.0])
    p.grad[:] = [0.5, 1.0]
    nn.SGD([p], lr=0.1).step()
    np.testing.assert_allclose(p.data, [0.95, -2.1])
    q = nn.Parameter([1.0])
    opt = nn.SGD([q], lr=0.1, momentum=0.9)
    q.grad[:] = 1.0
    opt.step()
    opt.step()                    # v = 1, then 1.9
    np.testing.assert_allclose(q.data, [1.0 - 0.1 - 0.19], rtol=1e-6)


def test_adam_step():
    p = nn.Parameter([1.0, -1.0])
    opt = nn.Adam([p], lr=0.01)
    p.grad[:] = [3.0, -0.5]
    opt.step()                    # first step moves each weight by lr * sign(grad)
    np.testing.assert_allclose(p.data, [0.99, -0.99], rtol=1e-5)
    assert p.data.dtype == np.float32


def test_training_reduces_loss():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    model = nn.Sequential(nn.Linear(4, 8, rng=0), nn.ReLU(), nn.Linear(8, 2, rng=1))
    opt = nn.Adam(model.parameters(), lr=0.05)
    first = nn.cross_entropy(model(x), y)[0]
    for _ in range(50):
        loss, g = nn.cross_entropy(model(x), y)
        model.zero_grad()
        model.backward(g)
        opt.step()
    assert loss < first / 4


def test_walk_and_replace_layers():
    inner = nn.Sequential(a=nn.Linear(2, 2, rng=0), b=nn.ReLU())
    model = nn.Sequential(inner, nn.Flatten(), head=nn.Linear(2, 1, rng=1))
    names = [n for n, _ in model.named_modules()]
    assert names == ["", "0", "0.a", "0.b", "1", "head"]
    assert [n for n, _ in model.named_parameters()] == ["0.a.weight", "0.a.bias", "head.weight", "head.bias"]
    new = nn.Linear(2, 2, rng=5)
    model.set_submodule("0.a", new)
    assert model.get_submodule("0.a") is new and inner["a"] is new and model[0] is inner
    model.eval()
    assert not any(m.training for m in model.modules())
    state = model.state_dict()
    other = nn.Sequential(nn.Sequential(a=nn.Linear(2, 2), b=nn.ReLU()), nn.Flatten(), head=nn.Linear(2, 1))
    other.load_state_dict(state)
    x = np.ones((3, 2), np.float32)
    np.testing.assert_array_equal(other.eval()(x), model(x))
    with pytest.raises(KeyError):
        model.set_submodule("0.zz", new)
