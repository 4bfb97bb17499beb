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


# ------------------------------------------------------------------ the real model (MiniLM)
import functools

import pytest

# skipped as "needs the MiniLM weights: run `tito data minilm` ..." (or the missing package) where absent
needs_minilm = pytest.mark.requires("safetensors", "tokenizers", "the MiniLM weights")


@functools.lru_cache(maxsize=None)
def minilm_split(n_calibration=64, n_evaluation=120):
    """The model (loaded once per session), calibration and evaluation sentences, and the FP32
    embeddings of the evaluation sentences."""
    from tinyq.corpus import calibration_evaluation_split
    from tinyq.minilm import load_minilm
    model = load_minilm()
    calibration, evaluation = calibration_evaluation_split(n_calibration, n_evaluation, seed=22)
    return model, calibration, evaluation, model.encode(evaluation)


@functools.lru_cache(maxsize=None)
def minilm_inputs(n_calibration=64, max_rows=1024):
    """name -> FP32 input rows (float32) of each linear layer on the calibration sentences (recorded
    here with the model's hook, independently of the learner's pipeline), and per-channel absmax
    over all calibration tokens."""
    model, calibration, _, _ = minilm_split(n_calibration)
    rows, absmax = {}, {}

    def record(name, x):
        rows.setdefault(name, []).append(x)
        m = np.abs(x).max(axis=0)
        absmax[name] = np.maximum(absmax.get(name, m), m)

    model.encode(calibration, hook=record)
    pick = {}
    for name, chunks in rows.items():
        x = np.concatenate(chunks)
        if len(x) > max_rows:
            x = x[np.sort(np.random.default_rng(0).choice(len(x), max_rows, replace=False))]
        pick[name] = x
    return pick, absmax
