# Hand-written support (not exported from a module): the model zoo.
"""Small pretrained models for the quantization modules.

    from tinyq import zoo
    model = zoo.load("digits_cnn")     # tinyq.nn.Sequential in eval mode, FP32 weights
    zoo.names()                        # ['digits_cnn', 'digits_mlp']

The weights are `.npz` files shipped in this package, produced by `python -m tinyq.zoo.train`
(deterministic: fixed seeds, fixed data splits). Each call of `load` returns a fresh model, so a
caller may quantize or edit it freely.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyq import nn

__all__ = ["names", "build", "load", "weights_path"]

_HERE = Path(__file__).resolve().parent


def _digits_cnn() -> nn.Sequential:
    return nn.Sequential(
        conv1=nn.Conv2d(1, 16, 3, padding=1, rng=1), relu1=nn.ReLU(),
        conv2=nn.Conv2d(16, 32, 3, padding=1, rng=2), relu2=nn.ReLU(),
        pool=nn.MaxPool2d(2), flatten=nn.Flatten(),
        fc1=nn.Linear(32 * 4 * 4, 64, rng=3), relu3=nn.ReLU(),
        fc2=nn.Linear(64, 10, rng=4))


def _digits_mlp() -> nn.Sequential:
    return nn.Sequential(
        flatten=nn.Flatten(),
        fc1=nn.Linear(64, 128, rng=1), relu1=nn.ReLU(),
        fc2=nn.Linear(128, 64, rng=2), relu2=nn.ReLU(),
        fc3=nn.Linear(64, 10, rng=3))


_BUILDERS = {"digits_cnn": _digits_cnn, "digits_mlp": _digits_mlp}


def names() -> list[str]:
    return sorted(_BUILDERS)


def build(name: str) -> nn.Sequential:
    """The architecture `name` with fresh (seeded, untrained) weights."""
    if name not in _BUILDERS:
        raise KeyError(f"unknown zoo model {name!r}; available: {', '.join(names())}")
    return _BUILDERS[name]()


def weights_path(name: str) -> Path:
    return _HERE / f"{name}.npz"


def load(name: str) -> nn.Sequential:
    """The pretrained model `name`, in eval mode."""
    model = build(name)
    path = weights_path(name)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `python -m tinyq.zoo.train` to create it")
    with np.load(path) as f:
        model.load_state_dict({k: f[k] for k in f.files if not k.startswith("_")})
    return model.eval()
