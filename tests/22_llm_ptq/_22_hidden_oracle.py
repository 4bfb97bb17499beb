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


def embedding_metrics(reference, quantized, k=10):
    a = np.asarray(reference, np.float64)
    b = np.asarray(quantized, np.float64)
    n = len(a)
    if a.shape != b.shape or a.ndim != 2 or not 1 <= k < n:
        raise ValueError("embedding_metrics: bad shapes or k")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("embedding_metrics: NaN")
    na, nb = np.sqrt(np.einsum("ij,ij->i", a, a)), np.sqrt(np.einsum("ij,ij->i", b, b))
    if (na == 0).any() or (nb == 0).any():
        raise ValueError("embedding_metrics: zero vector")
    a, b = a / na[:, None], b / nb[:, None]
    sa, sb = a @ a.T, b @ b.T
    top1 = top = 0.0
    for i in range(n):
        ra, rb = np.delete(sa[i], i), np.delete(sb[i], i)
        oa, ob = np.argsort(-ra, kind="stable"), np.argsort(-rb, kind="stable")
        top1 += oa[0] == ob[0]
        top += len(set(oa[:k]) & set(ob[:k])) / k
    iu = np.triu_indices(n, 1)
    xa, xb = sa[iu], sb[iu]

    def rank(v):
        r = np.empty(len(v))
        r[np.argsort(v, kind="stable")] = np.arange(len(v))
        return r
    ra, rb = rank(xa) - (len(xa) - 1) / 2, rank(xb) - (len(xb) - 1) / 2
    return {"mean_cos": float(np.mean(np.einsum("ij,ij->i", a, b))), "top1": float(top1 / n), f"top{k}": top / n,
            "spearman": float(ra @ rb / np.sqrt((ra @ ra) * (rb @ rb)))}


def outlier_channels(absmax, ratio=6.0):
    v = np.asarray(absmax, np.float64)
    if v.ndim != 1 or len(v) == 0 or np.isnan(v).any() or (v < 0).any() or not ratio > 0:
        raise ValueError("outlier_channels: bad input")
    limit = ratio * np.percentile(v, 50)
    chosen = [(-v[i], i) for i in range(len(v)) if v[i] > limit]
    return np.array([i for _, i in sorted(chosen)], dtype=np.int64)


def fake_quant_activations(x, scale=None, bits=8):
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or not np.isfinite(x).all():
        raise ValueError("fake_quant_activations: bad x")
    top = 2 ** (bits - 1) - 1
    if scale is None:
        steps = np.array([max(np.max(np.abs(row)), 0.0) / top for row in x])
        steps[steps == 0] = 1.0
        steps = steps[:, None]
    else:
        if not (np.isfinite(scale) and scale > 0):
            raise ValueError("fake_quant_activations: bad scale")
        steps = float(scale)
    return (np.minimum(np.maximum(np.rint(x / steps), -top), top) * steps).astype(np.float32)


def smooth_scales(act_absmax, weights, alpha=0.5):
    a = np.asarray(act_absmax, np.float64)
    if not 0 <= alpha <= 1 or not weights:
        raise ValueError("smooth_scales: bad alpha or no weights")
    stacked = np.concatenate([np.asarray(w, np.float64) for w in weights], axis=0)
    if stacked.shape[1] != len(a) or not (np.isfinite(stacked).all() and np.isfinite(a).all()):
        raise ValueError("smooth_scales: shapes")
    wmax = np.abs(stacked).max(axis=0)
    s = np.ones(len(a))
    for j in range(len(a)):
        if a[j] > 0 and wmax[j] > 0:
            s[j] = np.exp(alpha * np.log(a[j]) - (1 - alpha) * np.log(wmax[j]))
    return s.astype(np.float32)


def smooth_layernorm(ln_weight, ln_bias, weights, s):
    s = np.asarray(s, np.float64)
    if not (np.isfinite(s).all() and (s > 0).all()):
        raise ValueError("smooth_layernorm: bad scales")
    inv = 1.0 / s
    g, b = np.asarray(ln_weight, np.float64), np.asarray(ln_bias, np.float64)
    ws = [np.asarray(w, np.float64) for w in weights]
    if g.shape != s.shape or b.shape != s.shape or any(w.ndim != 2 or w.shape[1] != len(s) for w in ws):
        raise ValueError("smooth_layernorm: shapes")
    return ((g * inv).astype(np.float32), (b * inv).astype(np.float32),
            [(w @ np.diag(s)).astype(np.float32) for w in ws])
