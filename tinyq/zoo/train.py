# Hand-written support (not exported from a module): trains the zoo's models.
"""Regenerate the zoo's weights: `python -m tinyq.zoo.train [name ...]` (a few seconds on a CPU).

Deterministic: seeded initialisation (see `tinyq.zoo.build`), seeded shuffling, the fixed splits of
`tinyq.data`. Bit-identical weights need the same numpy build and BLAS thread count; the shipped
`.npz` files are the reference. Training uses only the train split; the FP32 test accuracy is
stored in the file as `_test_accuracy` for the record.
"""
from __future__ import annotations

import sys
import time

import numpy as np

from tinyq import nn
from tinyq.data import batches, load_digits
from tinyq.zoo import build, names, weights_path

# name -> (epochs, learning rate, batch size, weight decay)
RECIPES = {
    "digits_cnn": (12, 2e-3, 32, 1e-4),
    "digits_mlp": (30, 2e-3, 32, 1e-4),
}


def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int = 500) -> float:
    model.eval()
    logits = np.concatenate([model(xb) for xb in batches(x, None, batch_size)])
    return nn.accuracy(logits, y)


def train(name: str, verbose: bool = True) -> tuple[nn.Module, float]:
    epochs, lr, batch_size, wd = RECIPES[name]
    data = load_digits()
    model = build(name)
    opt = nn.Adam(model.parameters(), lr=lr, weight_decay=wd)
    for epoch in range(epochs):
        model.train()
        step_lr = lr * 0.5 * (1 + np.cos(np.pi * epoch / epochs))     # cosine schedule
        opt.lr = step_lr
        total = 0.0
        for xb, yb in batches(data.x_train, data.y_train, batch_size, shuffle=True, seed=epoch):
            loss, grad = nn.cross_entropy(model(xb), yb)
            model.zero_grad()
            model.backward(grad)
            opt.step()
            total += loss * len(xb)
        if verbose and (epoch % 5 == 4 or epoch == epochs - 1):
            print(f"{name} epoch {epoch + 1:3d}  loss {total / len(data.x_train):.4f}  "
                  f"calib acc {evaluate(model, data.x_calib, data.y_calib):.4f}")
    acc = evaluate(model, data.x_test, data.y_test)
    return model.eval(), acc


def main(argv: list[str]) -> None:
    for name in argv or names():
        start = time.perf_counter()
        model, acc = train(name)
        state = model.state_dict()
        np.savez(weights_path(name), **state, _test_accuracy=np.float64(acc))
        print(f"{name}: FP32 test accuracy {acc:.4f}, wrote {weights_path(name)} "
              f"in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
