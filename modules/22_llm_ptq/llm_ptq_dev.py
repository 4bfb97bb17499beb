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
# **How to work**: edit the cells marked `# YOUR CODE HERE`, run the test below each one, then
# `tito export 22` and `tito test 22` in a terminal to grade your package.

# %%
#| default_exp llm_ptq

# %%
#| export
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
# ## 4. Four-bit weights: round-to-nearest with group scales (RTN)
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
