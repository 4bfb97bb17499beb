"""Helpers of module 22's tests. Public: they ship to learners with the public tests, so they
hold data and small utilities, never an answer (import them as `from _22_helpers import ...`)."""
import numpy as np


def layer(seed, out_features=64, in_features=256, n_samples=512, outlier=None):
    """A reproducible weight matrix (float32) and correlated calibration inputs (float64) for it;
    `outlier=(channel, factor)` multiplies one input channel, as in a transformer's activations."""
    rng = np.random.default_rng(seed)
    w = (rng.normal(size=(out_features, in_features)) * 0.05).astype(np.float32)
    mix = rng.normal(size=(in_features, in_features)) / np.sqrt(in_features)
    x = rng.normal(size=(n_samples, in_features)) @ (np.eye(in_features) + mix)
    if outlier is not None:
        channel, factor = outlier
        x[:, channel] *= factor
    return w, x


def output_mse(w_q, w, x):
    """Mean squared error of the layer's output x @ w_q.T against x @ w.T (float64)."""
    w = np.asarray(w, np.float64)
    return float(np.mean((x @ (np.asarray(w_q, np.float64) - w).T) ** 2))
