"""Tests of tinyq.data and tinyq.zoo (not graded: no points)."""
import numpy as np
import pytest

from tinyq import nn, zoo
from tinyq.data import batches, load_digits


def test_digits_splits():
    d = load_digits()
    assert d.x_train.shape == (1097, 1, 8, 8) and d.x_calib.shape == (200, 1, 8, 8)
    assert d.x_test.shape == (500, 1, 8, 8)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int64
    assert abs(float(d.x_train.mean())) < 1e-3 and abs(float(d.x_train.std()) - 1) < 1e-3
    for y in (d.y_train, d.y_calib, d.y_test):
        assert np.bincount(y, minlength=10).min() >= 0.08 * len(y)      # stratified
    assert load_digits() is d                                             # cached, same arrays
    with pytest.raises(ValueError):
        d.x_test[0, 0, 0, 0] = 1.0                                        # read-only
    seen = np.concatenate([xb for xb, _ in d.batches("test", 64)])
    np.testing.assert_array_equal(seen, d.x_test)
    shuffled = [yb for _, yb in batches(d.x_test, d.y_test, 100, shuffle=True, seed=1)]
    assert len(shuffled) == 5 and sorted(np.concatenate(shuffled)) == sorted(d.y_test)


@pytest.mark.parametrize("name,bar", [("digits_cnn", 0.97), ("digits_mlp", 0.95)])
def test_zoo_accuracy(name, bar, record_property):
    d = load_digits()
    model = zoo.load(name)
    acc = nn.accuracy(model(d.x_test), d.y_test)
    record_property("fp32_test_accuracy", acc)
    print(f"{name}: FP32 test accuracy {acc:.4f}")
    with np.load(zoo.weights_path(name)) as f:
        assert acc == pytest.approx(float(f["_test_accuracy"]))          # what train.py measured
    assert acc >= bar


def test_zoo_load_is_deterministic_and_fresh():
    a, b = zoo.load("digits_cnn"), zoo.load("digits_cnn")
    assert a is not b and not a.training
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert na == nb and pa.data.dtype == np.float32
        np.testing.assert_array_equal(pa.data, pb.data)
    a.fc2.weight.data[:] = 0                                              # editing one copy ...
    assert np.abs(zoo.load("digits_cnn").fc2.weight.data).sum() > 0     # ... leaves the files alone
    assert [n for n, m in a.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))] == \
        ["conv1", "conv2", "fc1", "fc2"]
    with pytest.raises(KeyError):
        zoo.load("resnet50")
