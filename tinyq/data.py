# Hand-written support (not exported from a module): the course's data set.
"""scikit-learn's bundled 8x8 handwritten digits (1797 images, no download) with fixed splits.

    d = load_digits()
    d.x_train.shape   # (1097, 1, 8, 8) float32, normalised with the training split's mean and std
    for xb, yb in batches(d.x_train, d.y_train, 64, shuffle=True, seed=0): ...

The splits are stratified by class and seeded, so every learner, test and notebook sees the same
images: train (1097) to fit models, calib (200) to calibrate quantizers, test (500) to report.
The arrays are read-only (shared by every caller); copy before editing.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

import numpy as np

__all__ = ["Digits", "load_digits", "batches", "SPLIT_SEED", "N_CALIB", "N_TEST"]

SPLIT_SEED = 0
N_CALIB = 200
N_TEST = 500


@dataclass(frozen=True)
class Digits:
    x_train: np.ndarray   # (N, 1, 8, 8) float32
    y_train: np.ndarray   # (N,) int64 in 0..9
    x_calib: np.ndarray
    y_calib: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    mean: float           # normalisation: x = (pixel / 16 - mean) / std, from the training split
    std: float

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """("train" | "calib" | "test") -> (x, y)."""
        if name not in ("train", "calib", "test"):
            raise ValueError(f"unknown split {name!r}: use 'train', 'calib' or 'test'")
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

    def batches(self, name: str, batch_size: int = 64, **kwargs):
        """`batches(*self.split(name), batch_size, **kwargs)`."""
        return batches(*self.split(name), batch_size, **kwargs)


def batches(x: np.ndarray, y: np.ndarray | None = None, batch_size: int = 64, *,
            shuffle: bool = False, seed: int | None = None) -> Iterator:
    """Yield (x_batch, y_batch) pairs (or x batches when `y` is None); the last batch may be short.

    `shuffle=True` permutes the rows first with `np.random.default_rng(seed)`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = np.random.default_rng(seed).permutation(len(x)) if shuffle else np.arange(len(x))
    for start in range(0, len(x), batch_size):
        idx = order[start:start + batch_size]
        yield x[idx] if y is None else (x[idx], y[idx])


def _stratified_split(y: np.ndarray, sizes: tuple[int, ...], seed: int) -> list[np.ndarray]:
    """Index sets of the given sizes (the rest is the first set), each with ~the class proportions."""
    rng = np.random.default_rng(seed)
    n = len(y)
    per_class = {c: rng.permutation(np.flatnonzero(y == c)) for c in np.unique(y)}
    # Interleave the classes so that any prefix is (nearly) stratified, then cut prefixes.
    ranked = []
    for c, idx in per_class.items():
        frac = (np.arange(len(idx)) + rng.uniform()) / len(idx)
        ranked += [(f, i) for f, i in zip(frac, idx)]
    order = np.array([i for _, i in sorted(ranked)])
    out, start = [], 0
    for size in sizes:
        out.append(np.sort(order[start:start + size]))
        start += size
    rest = np.sort(order[start:])
    assert len(rest) + sum(sizes) == n
    return [rest] + out


@lru_cache(maxsize=1)
def load_digits() -> Digits:
    """The digits splits (cached: every call returns the same read-only arrays)."""
    from sklearn.datasets import load_digits as _sk_load_digits

    raw = _sk_load_digits()
    images = (raw.images / 16.0).astype(np.float32)[:, None]      # (1797, 1, 8, 8) in [0, 1]
    labels = raw.target.astype(np.int64)
    train, calib, test = _stratified_split(labels, (N_CALIB, N_TEST), SPLIT_SEED)
    mean = float(images[train].mean())
    std = float(images[train].std())
    norm = ((images - mean) / std).astype(np.float32)
    arrays = [norm[train], labels[train], norm[calib], labels[calib], norm[test], labels[test]]
    for a in arrays:
        a.setflags(write=False)
    return Digits(*arrays, mean=mean, std=std)
