"""Instructor-only oracle of module 22's exercises, written independently of the reference
solution (other formulations of the same definitions). Removed from the student release.

The `only` fixture puts these functions in place of the exercises a test does not grade, and the
hidden tests compare the learner's results with them.
"""
import numpy as np


def rtn_quantize(w, bits=4, group_size=128):
    w = np.array(w, dtype=np.float64)
    if w.ndim != 2 or not np.isfinite(w).all():
        raise ValueError("rtn_quantize: w must be a finite 2-D matrix")
    k = w.shape[1]
    size = k if group_size is None else group_size
    if size < 1 or k % size:
        raise ValueError(f"rtn_quantize: {size} does not divide {k}")
    top = 2 ** (bits - 1) - 1
    out = np.empty_like(w)
    for start in range(0, k, size):
        part = w[:, start:start + size]
        step = np.float32(np.max(np.abs(part), axis=1) / top).astype(np.float64)
        step[step == 0] = 1.0
        out[:, start:start + size] = np.minimum(np.maximum(np.rint(part / step[:, None]), -top), top) * step[:, None]
    return out.astype(np.float32)


def awq_quantize(w, x, bits=4, group_size=128, n_grid=20):
    w = np.asarray(w, np.float64)
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or x.shape[1] != w.shape[1] or not np.isfinite(x).all() or n_grid < 1:
        raise ValueError("awq_quantize: bad x or n_grid")
    target = np.einsum("nk,ok->no", x, w)
    mean_abs = np.maximum(np.mean(np.abs(x), axis=0), 1e-8)
    results = []
    for i in range(n_grid):
        s = np.exp(np.log(mean_abs) * (i / n_grid))
        s = (s / np.sqrt(np.max(s) * np.min(s))).astype(np.float32)
        w_eff = (rtn_quantize(w * s, bits, group_size) / s).astype(np.float32)
        results.append((np.mean((np.einsum("nk,ok->no", x, w_eff) - target) ** 2), i, w_eff, s))
    best = min(results, key=lambda r: (r[0], r[1]))
    return best[2], best[3]


def gptq_quantize(w, x, bits=4, group_size=128, damp=0.01, block_size=128, act_order=False):
    """Optimal-Brain-Quantizer form: the explicit inverse Hessian, shrunk by one column at a time
    (no Cholesky factor, no blocks); mathematically the same updates as GPTQ."""
    w = np.array(w, np.float64)
    x = np.asarray(x, np.float64)
    if w.ndim != 2 or not np.isfinite(w).all() or x.shape[-1] != w.shape[1] or not np.isfinite(x).all():
        raise ValueError("gptq_quantize: bad w or x")
    n_out, k = w.shape
    size = k if group_size is None else group_size
    if k % size:
        raise ValueError("gptq_quantize: group size")
    top = 2 ** (bits - 1) - 1
    h = (x.T @ x) * (2.0 / len(x))
    for j in np.flatnonzero(np.diag(h) == 0):
        h[j, j] = 1.0
        w[:, j] = 0.0
    h = h + np.eye(k) * (damp * np.trace(h) / k)
    if np.min(np.linalg.eigvalsh(h)) <= 0:
        raise ValueError("gptq_quantize: Hessian not positive definite")
    hinv = np.linalg.inv(h)
    order = list(np.argsort(-np.diag(h), kind="stable")) if act_order else list(range(k))

    def step_of(cols):
        s = np.float32(np.max(np.abs(w[:, cols]), axis=1) / top).astype(np.float64)
        s[s == 0] = 1.0
        return s

    steps = {}
    if act_order:
        for g in range(k // size):
            steps[g] = step_of(slice(g * size, (g + 1) * size))
    q = np.zeros_like(w)
    remaining = list(order)
    for pos, j in enumerate(order):
        g = j // size
        if g not in steps:
            steps[g] = step_of(slice(g * size, (g + 1) * size))
        q[:, j] = np.clip(np.rint(w[:, j] / steps[g]), -top, top) * steps[g]
        rest = remaining[1:]
        err = (w[:, j] - q[:, j]) / hinv[j, j]
        w[:, rest] -= np.outer(err, hinv[j, rest])
        hinv[np.ix_(rest, rest)] -= np.outer(hinv[rest, j], hinv[j, rest]) / hinv[j, j]
        remaining = rest
    return q.astype(np.float32)
