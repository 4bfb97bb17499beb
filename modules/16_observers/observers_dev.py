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
# # Module 16: Observers — choosing the range to quantize
#
# Module 15 turned a range into quantization parameters: give it $a_{max}$ (or $[x_{min}, x_{max}]$)
# and it returns a scale and a zero point. It never asked **which** range. For a weight tensor the
# answer looks obvious (its min and max), for an activation it is not: activations only exist while
# the network runs, they change with every input, and a handful of rare, huge values can decide the
# whole range. An **observer** is the object that watches tensors go by and answers that question.
#
# $$\text{data} \;\xrightarrow{\text{observer}}\; [\alpha, \beta] \;\xrightarrow{\text{module 15}}\; (s, z)$$
#
# **When observers run.**
# * *Post-training quantization (PTQ)*: after training, an observer is attached to every weight and
#   to every activation you will quantize. You run a few hundred **calibration** inputs through the
#   float model in eval mode; each observer records what passes through it and returns it unchanged,
#   so the model computes exactly what it computed before. Then you ask each observer for its
#   parameters and freeze them. Weights are observed once (they do not change).
# * *Quantization-aware training (QAT, module 18)*: observers keep running during fine-tuning and
#   track ranges that move as the weights learn; a moving average keeps them from jumping.
#
# **What goes wrong.** Quantization error has two parts. Inside the range every value is rounded to
# the nearest of the evenly spaced codes, an error of at most $s/2$ and on average about $s^2/12$ in
# mean square. Outside the range values are **clipped** to the end of the range, an error that grows
# with the distance. A wide range never clips but makes $s$ large; a narrow one gives a fine grid but
# clips. Min-max observers sit at one extreme (no clipping at all). You will build observers that
# trade a little clipping for a much finer grid, and measure when that pays off.
#
# You will write, in order: a check of the calibration batches, the per-channel layout, the min-max
# and moving-average observers (PyTorch's semantics), percentile and MSE observers, a fixed-memory
# histogram observer with TensorRT's entropy search and the L2 search, and per-group parameters for
# 4-bit weights. The module ends with a systems analysis computed from *your* code: per-channel vs
# per-tensor on the model zoo's real conv weights, outliers, calibration set size and makeup, group
# size against storage, and what each observer costs.
#
# **How to work**: edit the cells marked `# YOUR CODE HERE`, run the test below each one, then
# `tito export 16` and `tito test 16` in a terminal to grade your package.

# %%
#| default_exp observers

# %%
#| export
import numpy as np

from tinyq.quantize import asymmetric_qparams, dequantize, quantize, symmetric_qparams

# %% [markdown]
# ## 1. Calibration data hygiene
#
# A single NaN that reaches a min-max observer poisons it for good: `min(NaN, x)` is NaN, the
# scale becomes NaN, and every value quantized with it is garbage. PyTorch's observers behave exactly
# like that (see the course's reference sheet: "NaN propagates: scale becomes NaN"), and an `inf`
# makes the scale infinite. The failure shows up much later, far from its cause, as a model that
# outputs nonsense. So our observers check every batch on the way in and refuse bad ones loudly,
# saying **how many** values are bad and **which observer** refused them (a model has dozens of
# observers; the message must tell you which one).
#
# Empty batches (a zero-sized tensor, e.g. from an empty slice at the end of a data set) carry no
# information; they are simply ignored, as PyTorch does.

# %% nbgrader={"grade": false, "grade_id": "check_batch", "locked": false, "schema_version": 3, "solution": true}
#| export
def check_batch(x, who="observer"):
    """Return `x` as a float64 numpy array, refusing NaN and inf.

    TODO: convert x (a list, a scalar or any numpy array) to a float64 array and return it. If any
    value is NaN or +-inf, raise ValueError with a message that names `who` and says how many values
    are bad out of how many, e.g. "MinMaxObserver: 3 of 12 values are NaN or inf".
    An empty array is fine: return it (empty).

    APPROACH: np.asarray(x, dtype=np.float64); count the values where np.isfinite is False.

    EXAMPLE: check_batch([1, 2]) -> array([1., 2.]);
             check_batch([1, np.nan, np.inf], "obs") raises ValueError("obs: 2 of 3 values are NaN or inf ...")

    HINTS: np.count_nonzero(~np.isfinite(a)) counts the bad ones; put the number in the message.
    """
    ### BEGIN SOLUTION
    arr = np.asarray(x, dtype=np.float64)
    bad = arr.size - int(np.count_nonzero(np.isfinite(arr)))
    if bad:
        n_nan = int(np.count_nonzero(np.isnan(arr)))
        raise ValueError(f"{who}: {bad} of {arr.size} values are NaN or inf ({n_nan} NaN, "
                         f"{bad - n_nan} inf); clean the batch before observing it")
    return arr
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_check_batch", "locked": true, "schema_version": 3, "solution": false}
out = check_batch([1, 2, 3])
assert out.dtype == np.float64 and out.tolist() == [1.0, 2.0, 3.0]
assert check_batch(np.zeros((0, 4))).shape == (0, 4)
try:
    check_batch([1.0, np.nan, np.inf, -np.inf, 2.0], "MyObserver")
    raise AssertionError("NaN/inf must be refused")
except ValueError as err:
    assert "MyObserver" in str(err) and "3" in str(err), str(err)
    print("refused:", err)
### BEGIN HIDDEN TESTS
assert check_batch(np.float32(2.5)).shape == ()
### END HIDDEN TESTS
print("check_batch: ok")

# %% [markdown]
# ## 2. Per-tensor and per-channel: one layout for both
#
# A **per-tensor** observer keeps one range for the whole tensor. A **per-channel** observer keeps one
# range per index of a chosen **channel axis** and reduces over every other axis. For a conv weight
# of shape `(out_channels, in_channels, kh, kw)` the channel axis is 0: each output channel gets its
# own scale. For a batch of activations `(N, C, H, W)` it would be axis 1.
#
# Both cases become the same code if we first rearrange the data as a 2-D array of shape `(C, N)`:
# row `c` holds every value of channel `c`. Per-tensor is just the case $C = 1$. That is exactly what
# PyTorch's `PerChannelMinMaxObserver` does (it swaps the channel axis to the front and flattens the
# rest). Every statistic below is then a reduction along axis 1 of this array.
#
# ```
# x.shape = (2, 3, 4), axis=1   ->   channel_view(x, 1).shape = (3, 8)
#   row c = all 8 values x[:, c, :]
# ```

# %% nbgrader={"grade": false, "grade_id": "channel_view", "locked": false, "schema_version": 3, "solution": true}
#| export
def channel_view(x, axis=None):
    """Rearrange `x` as a 2-D array (C, N): row c holds every value of channel c.

    TODO: axis=None -> shape (1, x.size) (one "channel": the whole tensor).
    axis=k (negative allowed) -> shape (x.shape[k], x.size // x.shape[k]); row c holds exactly the
    values of np.take(x, c, axis=k) (in any order). Raise ValueError if the axis does not exist.

    APPROACH: move the channel axis to the front with np.moveaxis, then reshape to (C, -1).

    EXAMPLE: channel_view(np.arange(6).reshape(2, 3), axis=1) -> [[0, 3], [1, 4], [2, 5]]
             channel_view(np.arange(6).reshape(2, 3))         -> [[0, 1, 2, 3, 4, 5]]

    HINTS: check `-x.ndim <= axis < x.ndim` yourself so the error message can say what was wrong.
    """
    ### BEGIN SOLUTION
    x = np.asarray(x)
    if axis is None:
        return x.reshape(1, -1)
    if not isinstance(axis, (int, np.integer)) or not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis {axis!r} does not exist for an array of shape {x.shape}")
    return np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_channel_view", "locked": true, "schema_version": 3, "solution": false}
a = np.arange(6).reshape(2, 3)
assert channel_view(a).tolist() == [[0, 1, 2, 3, 4, 5]]
assert channel_view(a, axis=1).tolist() == [[0, 3], [1, 4], [2, 5]]
assert channel_view(a, axis=-2).tolist() == [[0, 1, 2], [3, 4, 5]]
b = np.random.default_rng(0).normal(size=(2, 3, 4))
assert channel_view(b, 1).shape == (3, 8)
assert sorted(channel_view(b, 1)[2]) == sorted(b[:, 2, :].ravel())
try:
    channel_view(b, 3)
    raise AssertionError("axis 3 of a 3-D array must be refused")
except ValueError:
    pass
print("channel_view: ok")

# %% [markdown]
# ## 3. The observer contract
#
# Every observer in this module follows one contract, written once in the base class below
# (provided, read it):
#
# * `obs(x)` **records** the batch and returns `x` itself, unchanged, so an observer can sit in the
#   middle of a forward pass. Empty batches are ignored; NaN/inf raise (your `check_batch`).
# * `axis=None` observes per tensor; `axis=k` keeps one range per index of axis `k`. Every batch
#   must have the same number of channels.
# * `obs.calculate_range(bits=8, symmetric=True)` returns the clipping range $[\alpha, \beta]$ the
#   observer recommends: two floats per tensor, or two arrays of shape `(C,)` per channel. With
#   `symmetric=True` the range is symmetric, $\alpha = -\beta$. Some observers (MSE, histogram)
#   choose a different range for 4 bits than for 8 bits, which is why `bits` is an argument.
# * `obs.calculate_qparams(bits=8, symmetric=True, signed=True)` turns that range into `(scale,
#   zero_point)` with **your module 15 functions**: symmetric → `symmetric_qparams(β, bits)` (narrow
#   signed codes, $z=0$); asymmetric → `asymmetric_qparams(α, β, bits, signed)`.
# * An observer that has seen no data returns the range $(0, 0)$, hence scale 1.0 and zero point 0
#   (PyTorch returns the same defaults).
#
# Each observer you write fills in two methods that work on the `(C, N)` layout of section 2:
# `_observe(self, x2)` updates the observer's state from one batch, and `_range(self, bits,
# symmetric)` returns two float arrays `(lo, hi)` of shape `(C,)`.

# %%
#| export
class Observer:
    """Base class of the observers (provided): validation, layout and qparams live here once.

    Subclasses implement `_observe(x2)` (x2: float64 array (C, N), one row per channel) and
    `_range(bits, symmetric) -> (lo, hi)`, two float arrays of shape (C,).
    """

    def __init__(self, axis=None):
        if axis is not None and not isinstance(axis, (int, np.integer)):
            raise ValueError(f"axis must be None or an int, got {axis!r}")
        self.axis = axis
        self.n_channels = None     # C, fixed by the first non-empty batch
        self.n_batches = 0         # non-empty batches recorded
        self.n_values = 0          # values recorded

    def __call__(self, x):
        arr = check_batch(x, type(self).__name__)
        if arr.size == 0:
            return x
        x2 = channel_view(arr, self.axis)
        if self.n_channels is not None and x2.shape[0] != self.n_channels:
            raise ValueError(f"{type(self).__name__}: this batch has {x2.shape[0]} channels along axis "
                             f"{self.axis}, earlier batches had {self.n_channels}")
        self._observe(x2)
        self.n_channels = x2.shape[0]
        self.n_batches += 1
        self.n_values += arr.size
        return x

    def _observe(self, x2):
        raise NotImplementedError(f"{type(self).__name__} must implement _observe")

    def _range(self, bits, symmetric):
        raise NotImplementedError(f"{type(self).__name__} must implement _range")

    def calculate_range(self, bits=8, symmetric=True):
        """The clipping range (lo, hi): floats per tensor, arrays of shape (C,) per channel."""
        if self.n_batches == 0:
            return 0.0, 0.0
        lo, hi = self._range(bits, symmetric)
        lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
        if self.axis is None:
            return float(lo.reshape(-1)[0]), float(hi.reshape(-1)[0])
        return lo, hi

    def calculate_qparams(self, bits=8, symmetric=True, signed=True):
        """(scale, zero_point) of the recommended range, from module 15's functions."""
        lo, hi = self.calculate_range(bits, symmetric)
        if symmetric:
            if not signed:
                raise ValueError("symmetric quantization uses signed codes (zero point 0); "
                                 "for unsigned codes use symmetric=False")
            return symmetric_qparams(np.maximum(np.abs(lo), np.abs(hi)), bits)
        return asymmetric_qparams(lo, hi, bits, signed=signed)

    def __repr__(self):
        return f"{type(self).__name__}(axis={self.axis}, batches={self.n_batches})"


# %% [markdown]
# ## 4. Min-max observer
#
# The simplest answer: the range is everything seen so far.
#
# $$\alpha_c = \min_{\text{batches, } i} x_{c,i} \qquad \beta_c = \max_{\text{batches, } i} x_{c,i}$$
#
# The state is two arrays of length $C$, updated with `np.minimum`/`np.maximum` after each batch, so
# the result does not depend on how the data was split into batches. With `symmetric=True` the range
# is $[-a, a]$ with $a = \max(|\alpha|, |\beta|)$; with `symmetric=False` it is $[\alpha, \beta]$
# (module 15 then widens it to include 0).
#
# *Cross-check with PyTorch* (reference sheet): `MinMaxObserver` on $x = [-1, 0, 0.5, 2]$ with
# asymmetric `quint8` gives scale $3/255 = 0.011764706$ and zero point 85, exactly what our
# asymmetric unsigned path gives. Its symmetric `qint8` scale is $2/127.5$; ours is $2/127$ because
# we use the narrow range $[-127, 127]$ like ONNX Runtime and TFLite (module 15).

# %% nbgrader={"grade": false, "grade_id": "MinMaxObserver", "locked": false, "schema_version": 3, "solution": true}
#| export
class MinMaxObserver(Observer):
    """Running min and max of everything observed, per tensor or per channel.

    State: self.min_val, self.max_val: float64 arrays of shape (C,), None before the first batch.

    TODO (_observe): fold the batch's per-channel min and max (reduce x2 along axis 1) into the state.
    TODO (_range): symmetric -> (-a, a) with a = max(|min_val|, |max_val|); else (min_val, max_val).

    EXAMPLE: obs = MinMaxObserver(); obs([-1.0, 0.5]); obs([2.0]); obs.calculate_range(symmetric=False)
             -> (-1.0, 2.0);  obs.calculate_range() -> (-2.0, 2.0)

    HINTS: np.minimum / np.maximum combine two arrays element-wise; return copies, not the state.
    """

    def __init__(self, axis=None):
        super().__init__(axis)
        self.min_val = None
        self.max_val = None

    def _observe(self, x2):
        ### BEGIN SOLUTION
        lo, hi = x2.min(axis=1), x2.max(axis=1)
        if self.min_val is None:
            self.min_val, self.max_val = lo, hi
        else:
            self.min_val = np.minimum(self.min_val, lo)
            self.max_val = np.maximum(self.max_val, hi)
        ### END SOLUTION

    def _range(self, bits, symmetric):
        ### BEGIN SOLUTION
        if symmetric:
            a = np.maximum(np.abs(self.min_val), np.abs(self.max_val))
            return -a, a.copy()
        return self.min_val.copy(), self.max_val.copy()
        ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_MinMaxObserver", "locked": true, "schema_version": 3, "solution": false}
obs = MinMaxObserver()
batch = np.array([-1.0, 0.0, 0.5, 2.0], dtype=np.float32)
assert obs(batch) is batch                      # returns its input, unchanged
assert obs.calculate_range(symmetric=False) == (-1.0, 2.0)
assert obs.calculate_range() == (-2.0, 2.0)
scale, zp = obs.calculate_qparams(symmetric=False, signed=False)
assert np.isclose(scale, 3 / 255) and zp == 85  # PyTorch's anchor (quint8, affine)
scale, zp = obs.calculate_qparams()
assert np.isclose(scale, 2 / 127) and zp == 0   # narrow symmetric int8
obs(np.zeros((0,)))                              # empty batch: ignored
assert obs.n_batches == 1
pc = MinMaxObserver(axis=0)
pc(np.array([[1.0, -2.0], [0.5, 4.0]]))
lo, hi = pc.calculate_range(symmetric=False)
assert lo.tolist() == [-2.0, 0.5] and hi.tolist() == [1.0, 4.0]
### BEGIN HIDDEN TESTS
assert MinMaxObserver().calculate_qparams() == (1.0, 0)  # nothing seen: PyTorch's defaults
### END HIDDEN TESTS
print("MinMaxObserver: ok")

# %% [markdown]
# ### A first look at granularity
# Per-channel min-max on a conv weight whose output channels have very different scales (common after
# batch-norm folding) gives every channel its own step size. Per tensor, the widest channel sets the
# step for all of them, and a narrow channel ends up using only a few of its 255 codes:

# %%
_rng = np.random.default_rng(0)
_w = _rng.normal(size=(4, 8, 3, 3)) * np.array([1.0, 0.3, 0.05, 0.01])[:, None, None, None]
_per_tensor = MinMaxObserver()
_per_tensor(_w)
_per_channel = MinMaxObserver(axis=0)
_per_channel(_w)
_s_t, _ = _per_tensor.calculate_qparams()
_s_c, _ = _per_channel.calculate_qparams()
for _c in range(4):
    _amax = np.abs(_w[_c]).max()
    print(f"channel {_c}: max|w| = {_amax:.4f}   codes used per tensor: +-{_amax / _s_t:5.1f}"
          f"   per channel: +-{_amax / _s_c[_c]:5.1f}")

# %% [markdown]
# ## 5. Moving-average min-max observer
#
# During QAT (and for activations of a model that drifts) the plain min-max range only ever grows:
# one unusual early batch fixes it forever. PyTorch's `MovingAverageMinMaxObserver` instead tracks an
# exponential moving average of each batch's min and max:
#
# $$m \leftarrow m + c\,(m_{\text{batch}} - m), \qquad c = \texttt{averaging\_constant} = 0.01$$
#
# with one special case: the **first** batch sets $m$ directly (otherwise the average would start
# from 0 and take hundreds of batches to get anywhere). Reference anchor (PyTorch, verified): batches
# $[-1, 1]$ then $[-3, 5]$ give $\min = -1 + 0.01(-3 + 1) = -1.02$ and $\max = 1 + 0.01(5 - 1) = 1.04$.
#
# The result depends on the batch order and on how the data is split into batches, unlike min-max.
# With $c = 1$ it degenerates to "the last batch's range".

# %% nbgrader={"grade": false, "grade_id": "MovingAverageMinMaxObserver", "locked": false, "schema_version": 3, "solution": true}
#| export
class MovingAverageMinMaxObserver(Observer):
    """Exponential moving average of each batch's min and max (PyTorch's semantics).

    State: self.min_val, self.max_val: float64 arrays (C,), None before the first batch.

    TODO (_observe): the first batch sets min_val/max_val to its per-channel min/max; every later
    batch moves them: m <- m + c * (batch_m - m), with c = self.averaging_constant.
    TODO (_range): as in MinMaxObserver.

    EXAMPLE: obs = MovingAverageMinMaxObserver(averaging_constant=0.01)
             obs([-1.0, 1.0]); obs([-3.0, 5.0]); obs.calculate_range(symmetric=False) -> (-1.02, 1.04)
    """

    def __init__(self, averaging_constant=0.01, axis=None):
        super().__init__(axis)
        if not 0 < averaging_constant <= 1:
            raise ValueError(f"averaging_constant must be in (0, 1], got {averaging_constant!r}")
        self.averaging_constant = float(averaging_constant)
        self.min_val = None
        self.max_val = None

    def _observe(self, x2):
        ### BEGIN SOLUTION
        lo, hi = x2.min(axis=1), x2.max(axis=1)
        if self.min_val is None:
            self.min_val, self.max_val = lo, hi
        else:
            c = self.averaging_constant
            self.min_val = self.min_val + c * (lo - self.min_val)
            self.max_val = self.max_val + c * (hi - self.max_val)
        ### END SOLUTION

    def _range(self, bits, symmetric):
        ### BEGIN SOLUTION
        if symmetric:
            a = np.maximum(np.abs(self.min_val), np.abs(self.max_val))
            return -a, a.copy()
        return self.min_val.copy(), self.max_val.copy()
        ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_MovingAverageMinMaxObserver", "locked": true, "schema_version": 3, "solution": false}
obs = MovingAverageMinMaxObserver(averaging_constant=0.01)
obs(np.array([-1.0, 1.0]))
assert obs.calculate_range(symmetric=False) == (-1.0, 1.0)     # first batch sets the state
obs(np.array([-3.0, 5.0]))
lo, hi = obs.calculate_range(symmetric=False)
assert np.isclose(lo, -1.02) and np.isclose(hi, 1.04), (lo, hi)  # PyTorch's anchor
obs(np.array([]))                                              # empty: ignored, no update
assert np.isclose(obs.calculate_range(symmetric=False)[1], 1.04)
print("MovingAverageMinMaxObserver: ok")

# %% [markdown]
# ## 6. Outliers, and two observers that clip them
#
# Suppose $10^5$ activations lie in about $[0, 5]$ and a single one is $200$ (this happens: large
# transformers have "massive activations", detection nets rare huge responses). With min-max and
# uint8 the scale is $200/255 \approx 0.78$: the whole bulk is squeezed into a handful of codes.
# Clipping at 5 instead gives $s = 5/255 \approx 0.02$, a grid 40 times finer, for a large error on one
# value. Let us measure it with module 15's functions before building anything:

# %%
_rng = np.random.default_rng(1)
_bulk = np.abs(_rng.normal(0, 1.3, size=100_000))
_acts = np.append(_bulk, 200.0)
for _hi in (_acts.max(), 5.0):
    _s, _z = asymmetric_qparams(0.0, _hi, bits=8, signed=False)
    _x_hat = dequantize(quantize(_acts, _s, _z, bits=8, signed=False), _s, _z)
    print(f"range [0, {_hi:5.1f}]: scale {float(_s):.4f}  distinct codes used {len(np.unique(_x_hat)):3d}"
          f"  bulk MSE {np.mean((_x_hat[:-1] - _bulk) ** 2):.1e}  outlier error {_acts[-1] - _x_hat[-1]:6.1f}"
          f"  MSE of all {np.mean((_x_hat - _acts) ** 2):.1e}")

# %% [markdown]
# Look at all three error columns. For 99.999% of the values the clipped range is more than 1000
# times more accurate. But the one clipped outlier is off by 195, and because squared errors add up, that
# single value outweighs the whole bulk: by *total* mean squared error, min-max wins here. No range is
# best for every measure. An observer that minimises total MSE (below) keeps an outlier when it is big
# and frequent enough to dominate the error, and clips it otherwise; which measure predicts accuracy
# depends on what the outlier means to the network (module 17 measures accuracy). The observers below
# give you the knobs; the systems analysis shows where each one lands.
#
# ### Percentile observer
# Ignore the most extreme fraction of values: take the range from the distribution's percentiles.
# With `percentile=p`:
# * symmetric: $\beta = P_p(|x|)$, the $p$-th percentile of the magnitudes, and $\alpha = -\beta$;
# * asymmetric: keep the central $p\%$, cutting $(100-p)/2\,\%$ from each tail:
#   $\alpha = P_{(100-p)/2}(x)$, $\beta = P_{100-(100-p)/2}(x)$.
#
# This is ONNX Runtime's `Percentile` calibrator's rule (reference sheet). Percentiles of the union of
# batches cannot be computed from per-batch summaries, so this observer **keeps every value** it has
# seen (per channel) and computes exact percentiles with `np.percentile` (its default linear
# interpolation). Memory grows with the calibration set: the systems analysis measures it, and the
# histogram observer (section 8) is the fixed-memory alternative ONNX Runtime actually uses.

# %% nbgrader={"grade": false, "grade_id": "PercentileObserver", "locked": false, "schema_version": 3, "solution": true}
#| export
class PercentileObserver(Observer):
    """Range from percentiles of every value seen (values are stored).

    State: self.batches: list of float64 arrays, each (C, n_i): the observed batches in (C, N) layout.

    TODO (_observe): store the batch (x2).
    TODO (_range): join the stored batches along axis 1 into (C, N); then
      symmetric:  a = np.percentile(|x|, p, axis=1); return (-a, a)
      asymmetric: tail = (100 - p) / 2; return (np.percentile(x, tail, axis=1),
                                                np.percentile(x, 100 - tail, axis=1))

    EXAMPLE: obs = PercentileObserver(percentile=99.99); obs(np.arange(10_001.0))
             obs.calculate_range() -> (-9999.0, 9999.0)   (up to rounding: 0.9999 * 10000 in floats)
    """

    def __init__(self, percentile=99.99, axis=None):
        super().__init__(axis)
        if not 0 < percentile <= 100:
            raise ValueError(f"percentile must be in (0, 100], got {percentile!r}")
        self.percentile = float(percentile)
        self.batches = []

    def _observe(self, x2):
        ### BEGIN SOLUTION
        self.batches.append(x2)
        ### END SOLUTION

    def _range(self, bits, symmetric):
        ### BEGIN SOLUTION
        data = np.concatenate(self.batches, axis=1)
        p = self.percentile
        if symmetric:
            a = np.percentile(np.abs(data), p, axis=1)
            return -a, a
        tail = (100.0 - p) / 2
        return np.percentile(data, tail, axis=1), np.percentile(data, 100.0 - tail, axis=1)
        ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_PercentileObserver", "locked": true, "schema_version": 3, "solution": false}
obs = PercentileObserver(percentile=99.99)
obs(np.arange(5001.0))
obs(np.arange(5001.0, 10001.0))                  # two batches: percentiles of the union
assert np.allclose(obs.calculate_range(), (-9999.0, 9999.0))
lo, hi = obs.calculate_range(symmetric=False)    # central 99.99%: 0.005% cut from each tail
assert np.isclose(lo, 0.5) and np.isclose(hi, 9999.5), (lo, hi)
full = PercentileObserver(percentile=100.0)
full(np.array([-3.0, 1.0, 2.0]))
assert full.calculate_range(symmetric=False) == (-3.0, 2.0)
print("PercentileObserver: ok")

# %% [markdown]
# ### MSE observer
# A percentile is a guess: 99.99 is right for some tensors and wrong for others, and it ignores the bit
# width (4-bit codes are so coarse that clipping pays off much sooner than at 8 bits). The MSE
# observer instead *measures*: it tries a grid of candidate ranges and keeps the one whose
# quantize-dequantize round trip has the smallest mean squared error on the data seen,
#
# $$\beta^* = \arg\min_{\beta} \frac{1}{N}\sum_i \big(x_i - \hat{x}_i(\beta)\big)^2 .$$
#
# Candidates shrink the observed range toward 0 by a factor $k/G$, $k = 1, \dots, G$ (`grid` $= G =
# 100$ by default, so the last candidate is min-max itself):
# * symmetric: $[-\tfrac{k}{G}a, \tfrac{k}{G}a]$ with $a = \max|x|$, quantized with
#   `symmetric_qparams` and narrow signed codes;
# * asymmetric: $[\tfrac{k}{G}\alpha_0, \tfrac{k}{G}\beta_0]$ with $\alpha_0 = \min(\min x, 0)$,
#   $\beta_0 = \max(\max x, 0)$, quantized with `asymmetric_qparams(..., signed=False)` and unsigned
#   codes.
#
# Use **your** `quantize`/`dequantize` for the round trip: with `axis=0` on the `(C, N)` layout, one
# call evaluates a candidate for every channel at once; keep, per channel, the candidate with the
# smallest error (on ties, the smallest range). Like the percentile observer it stores the values
# it has seen, and it costs $G$ round trips over all of them.

# %% nbgrader={"grade": false, "grade_id": "MSEObserver", "locked": false, "schema_version": 3, "solution": true}
#| export
class MSEObserver(Observer):
    """Grid search of the clipping range with the smallest quantization MSE on the stored values.

    State: self.batches: list of float64 arrays (C, n_i).

    TODO (_observe): store the batch.
    TODO (_range): join the batches into data (C, N). For k = 1..grid, candidate range = (k / grid)
    times the full range (symmetric: a = max|x| per channel; asymmetric: lo0 = min(min x, 0),
    hi0 = max(max x, 0)); qparams from symmetric_qparams(a_k, bits) or
    asymmetric_qparams(lo_k, hi_k, bits, signed=False); x_hat = dequantize(quantize(data, scale,
    zp, bits=bits, signed=..., narrow=..., axis=0), scale, zp, axis=0); error = mean((x_hat - data)**2)
    per channel. Return the per-channel best (lo, hi) (symmetric: (-a_best, a_best)).

    EXAMPLE: data uniform in [-1, 1] plus two values at +-5, bits=4: min-max gives 5, the MSE
             observer about 1 (the optimum is 14/15; the grid steps by 5/100 = 0.05).

    HINTS: keep best_err (C,) initialised to +inf and update with a boolean mask `err < best_err`.
    """

    def __init__(self, grid=100, axis=None):
        super().__init__(axis)
        if int(grid) != grid or grid < 1:
            raise ValueError(f"grid must be a positive integer, got {grid!r}")
        self.grid = int(grid)
        self.batches = []

    def _observe(self, x2):
        ### BEGIN SOLUTION
        self.batches.append(x2)
        ### END SOLUTION

    def _range(self, bits, symmetric):
        ### BEGIN SOLUTION
        data = np.concatenate(self.batches, axis=1)
        if symmetric:
            full_lo, full_hi = -np.abs(data).max(axis=1), np.abs(data).max(axis=1)
        else:
            full_lo, full_hi = np.minimum(data.min(axis=1), 0.0), np.maximum(data.max(axis=1), 0.0)
        best_err = np.full(data.shape[0], np.inf)
        best_lo, best_hi = full_lo.copy(), full_hi.copy()
        for k in range(1, self.grid + 1):
            lo, hi = full_lo * (k / self.grid), full_hi * (k / self.grid)
            if symmetric:
                scale, zp = symmetric_qparams(hi, bits)
                q = quantize(data, scale, zp, bits=bits, signed=True, narrow=True, axis=0)
            else:
                scale, zp = asymmetric_qparams(lo, hi, bits, signed=False)
                q = quantize(data, scale, zp, bits=bits, signed=False, axis=0)
            err = np.mean((dequantize(q, scale, zp, axis=0) - data) ** 2, axis=1)
            better = err < best_err
            best_err[better] = err[better]
            best_lo[better], best_hi[better] = lo[better], hi[better]
        return best_lo, best_hi
        ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_MSEObserver", "locked": true, "schema_version": 3, "solution": false}
_rng = np.random.default_rng(2)
_x = np.append(_rng.uniform(-1, 1, 50_000), [5.0, -5.0])
mse_obs = MSEObserver()
mse_obs(_x)
lo, hi = mse_obs.calculate_range(bits=4)
assert lo == -hi and 0.85 <= hi <= 1.05, hi      # optimum for uniform data at 4 bits: 14/15
mm = MinMaxObserver()
mm(_x)
def _fq_mse(obs, bits):
    s, z = obs.calculate_qparams(bits=bits)
    return np.mean((dequantize(quantize(_x, s, z, bits=bits, narrow=True), s, z) - _x) ** 2)
assert _fq_mse(mse_obs, 4) < 0.2 * _fq_mse(mm, 4)
relu = MSEObserver(axis=0)
relu(np.abs(_x).reshape(1, -1))
lo, hi = relu.calculate_range(bits=4, symmetric=False)
assert lo[0] == 0.0 and 0.85 <= hi[0] <= 1.05, (lo, hi)
print(f"MSEObserver: ok (4-bit range {float(hi[0]):.2f} instead of 5.0)")

# %% [markdown]
# ## 7. Histogram observers: the same search in fixed memory
#
# Storing every activation of a calibration run is not an option for a real network (one conv layer of
# a ResNet on 512 images produces hundreds of millions of values). TensorRT, PyTorch and ONNX Runtime
# all summarise each tensor by a **histogram** and search the range on the histogram instead.
#
# Our `HistogramObserver(bins=2048, method="entropy" | "l2")` keeps, per channel:
# * the running $a_{max} = \max|x|$;
# * two histograms of `bins` bins each over $[0, a_{max}]$: one of the positive values, one of the
#   magnitudes of the negative values. Together they form the **signed histogram** over
#   $[-a_{max}, a_{max}]$ with $2\cdot$`bins` bins and 0 at its middle edge; folded, they give the
#   histogram of $|x|$ with `bins` bins, the one TensorRT uses. (Keeping the two halves, instead of
#   one histogram over $[\min, \max]$, gives both views at full resolution.)
# * the count of **exact zeros**, kept aside. Zero is always represented exactly (that is what the
#   zero point is for), so zeros carry no quantization error whatever the range, and a ReLU layer
#   produces a lot of them (40–50% of the zoo model's activations). Left in the first bin they form a spike
#   that distorts both searches; kept aside they cannot.
#
# When a batch raises $a_{max}$, the old counts must move to the new, wider bins. We **re-bin**
# assuming the counts are spread uniformly inside each old bin: the cumulative count at the old
# edges, linearly interpolated at the new edges and differenced, gives the new histogram
# (`np.interp` does the interpolation; outside the old range the cumulative count is flat). This
# conserves the total count exactly and smears each old bin over at most two new ones. PyTorch
# re-bins differently (it upsamples each bin 16 times), with the same idea.
#
# The histogram has one weakness you should keep in mind: its resolution is $a_{max}/$`bins`. An
# outlier $10^4$ times larger than the bulk puts the whole bulk into the first bin or two, and no
# search can recover what the histogram no longer holds.

# %% nbgrader={"grade": false, "grade_id": "HistogramObserver", "locked": false, "schema_version": 3, "solution": true}
#| export
class HistogramObserver(Observer):
    """Fixed-memory histogram of the observed values, with an entropy or L2 range search.

    State (per channel c, arrays with a first axis of length C; None before the first batch):
      self.amax      (C,)        running max|x|
      self.hist_pos  (C, bins)   counts of positive values over [0, amax] (bins of width amax/bins)
      self.hist_neg  (C, bins)   counts of |x| for negative x, same bins
      self.zeros     (C,)        count of exact zeros (not in the histograms)
      self.min_val, self.max_val (C,)  running min and max

    TODO (_observe): update min/max and amax; where amax grew (and was > 0 before), re-bin both
    histograms of that channel from [0, old amax] to [0, new amax]; then add the batch's positive
    values and magnitudes of negative values with np.histogram(v, bins, range=(0, amax)); count the zeros.
    TODO (histogram): the signed histogram of channel c: concatenate(hist_neg[c][::-1], hist_pos[c])
    (2*bins counts over [-amax, amax]), and amax[c].
    TODO (_range): per channel: amax == 0 -> (0, 0); else search = entropy_search or l2_search
    (self.method); (lo, hi) = search(hist, amax, bits=bits, symmetric=symmetric); for asymmetric,
    clamp the result to [min(min_val, 0), max(max_val, 0)].

    HINTS: re-binning: cum = np.concatenate([[0], np.cumsum(h)]); new = np.diff(np.interp(new_edges,
    old_edges, cum)), with edges = np.linspace(0, amax, bins + 1).
    """

    def __init__(self, bins=2048, method="entropy", axis=None):
        super().__init__(axis)
        if method not in ("entropy", "l2"):
            raise ValueError(f"method must be 'entropy' or 'l2', got {method!r}")
        if int(bins) != bins or bins < 1:
            raise ValueError(f"bins must be a positive integer, got {bins!r}")
        self.bins, self.method = int(bins), method
        self.amax = self.hist_pos = self.hist_neg = self.zeros = None
        self.min_val = self.max_val = None

    def _observe(self, x2):
        ### BEGIN SOLUTION
        n_ch, bins = x2.shape[0], self.bins
        if self.amax is None:
            self.amax = np.zeros(n_ch)
            self.hist_pos, self.hist_neg = np.zeros((n_ch, bins)), np.zeros((n_ch, bins))
            self.zeros = np.zeros(n_ch)
            self.min_val, self.max_val = np.full(n_ch, np.inf), np.full(n_ch, -np.inf)
        self.min_val = np.minimum(self.min_val, x2.min(axis=1))
        self.max_val = np.maximum(self.max_val, x2.max(axis=1))
        new_amax = np.maximum(self.amax, np.abs(x2).max(axis=1))
        for c in range(n_ch):
            old, new = self.amax[c], new_amax[c]
            if new > old > 0:                       # re-bin the old counts onto the wider range
                old_edges, new_edges = np.linspace(0, old, bins + 1), np.linspace(0, new, bins + 1)
                for h in (self.hist_pos, self.hist_neg):
                    cum = np.concatenate([[0.0], np.cumsum(h[c])])
                    h[c] = np.diff(np.interp(new_edges, old_edges, cum))
            row = x2[c]
            self.zeros[c] += np.count_nonzero(row == 0)
            if new > 0:
                self.hist_pos[c] += np.histogram(row[row > 0], bins, range=(0, new))[0]
                self.hist_neg[c] += np.histogram(-row[row < 0], bins, range=(0, new))[0]
        self.amax = new_amax
        ### END SOLUTION

    def histogram(self, channel=0):
        """(signed histogram with 2*bins counts over [-amax, amax], amax) of one channel."""
        ### BEGIN SOLUTION
        return (np.concatenate([self.hist_neg[channel][::-1], self.hist_pos[channel]]),
                float(self.amax[channel]))
        ### END SOLUTION

    def _range(self, bits, symmetric):
        ### BEGIN SOLUTION
        search = entropy_search if self.method == "entropy" else l2_search
        lo, hi = np.zeros(self.n_channels), np.zeros(self.n_channels)
        for c in range(self.n_channels):
            hist, amax = self.histogram(c)
            if amax == 0:
                continue
            lo[c], hi[c] = search(hist, amax, bits=bits, symmetric=symmetric)
            if not symmetric:
                lo[c] = max(lo[c], min(self.min_val[c], 0.0))
                hi[c] = min(hi[c], max(self.max_val[c], 0.0))
        return lo, hi
        ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_HistogramObserver", "locked": true, "schema_version": 3, "solution": false}
hobs = HistogramObserver(bins=4)
hobs(np.array([0.0, 0.5, -1.5, 2.0, 0.0]))           # amax 2: bins of width 0.5 over [0, 2]
hist, amax = hobs.histogram()
assert amax == 2.0 and hist.tolist() == [1, 0, 0, 0, 0, 1, 0, 1], hist   # [-2, 2], 8 bins; zeros aside
assert hobs.zeros[0] == 2
hobs(np.array([4.0]))                                # amax doubles: old counts re-binned
hist, amax = hobs.histogram()
assert amax == 4.0 and hist.sum() == 4 and hist.tolist() == [0, 0, 1, 0, 1, 1, 0, 1], hist
print("HistogramObserver (collection): ok")

# %% [markdown]
# ### Searching a histogram
#
# Both searches receive a signed histogram `hist` (an even number of bins over $[-a_{max}, a_{max}]$,
# bin width $w = 2a_{max}/$`hist.size`) and return a range `(lo, hi)` whose ends are bin edges. Two
# provided helpers give them their candidates:
# * `fold_histogram(hist)`: the histogram of $|x|$ (`hist.size // 2` bins over $[0, a_{max}]$);
#   symmetric searches try every threshold $t = i\,w$, $i = 1, \dots$ on it, i.e. ranges $[-t, t]$;
# * `asymmetric_windows(hist)`: the windows `hist[a:b]` an asymmetric search tries. The observed
#   extent (from the outermost non-empty bin on each side to 0) shrunk toward 0 by a common factor
#   $j/m$: $m$ windows, the last one the full extent. Window `(a, b)` is the range
#   $[(a - h)\,w,\; (b - h)\,w]$ with $h$ = `hist.size // 2`. For ReLU outputs (nothing negative) these
#   are the ranges $[0, j\,w]$.

# %%
#| export
def fold_histogram(hist):
    """Histogram of |x| (hist.size // 2 bins over [0, amax]) from a signed histogram over [-amax, amax]."""
    hist = np.asarray(hist, dtype=np.float64)
    if hist.ndim != 1 or hist.size == 0 or hist.size % 2:
        raise ValueError(f"a signed histogram needs an even, non-zero number of bins; got shape {hist.shape}")
    half = hist.size // 2
    return hist[half:] + hist[half - 1::-1]


def asymmetric_windows(hist):
    """Candidate windows (a, b) -- the bins hist[a:b] -- of an asymmetric range search, narrowest first."""
    hist = np.asarray(hist)
    half = hist.size // 2
    filled = np.flatnonzero(hist)
    if filled.size == 0:
        return []
    n_neg, n_pos = max(half - int(filled[0]), 0), max(int(filled[-1]) + 1 - half, 0)
    m = max(n_neg, n_pos)
    return [(half - (j * n_neg + m - 1) // m, half + (j * n_pos + m - 1) // m) for j in range(1, m + 1)]


# %% [markdown]
# ### L2 search
# The expected squared error of a range, computed from the histogram: treat the $n_k$ values of bin
# $k$ as sitting at the bin centre $c_k$ and add up
#
# $$E(\alpha, \beta) = \frac{1}{\sum_k n_k}\sum_k n_k\,\big(c_k - \hat{c}_k(\alpha, \beta)\big)^2,$$
#
# where $\hat{c}_k$ is $c_k$ after quantize-dequantize with the range's parameters. The clipping error
# of the values beyond the range is included automatically (`quantize` clamps them). This is the
# objective of PyTorch's `HistogramObserver` (a port of Caffe2's norm minimization, which integrates
# over each bin instead of using its centre, and shrinks the range greedily instead of trying every
# candidate). With 2048 bins per side and at most 256 codes, every code spans several bins, so the
# centre approximation costs little.
#
# * symmetric: values = centres of the folded histogram, candidates $t = i w$ for $i = 1 \dots$
#   `half`, parameters `symmetric_qparams(t, bits)`, narrow signed codes; return $(-t^*, t^*)$;
# * asymmetric: values = centres of the signed histogram, candidates from `asymmetric_windows`,
#   parameters `asymmetric_qparams(lo, hi, bits, signed=False)`, unsigned codes.
#
# Keep the first candidate with the smallest error. All-empty histogram or $a_{max} = 0$: return $(0, 0)$.
# Empty bins contribute nothing, so you may drop them before evaluating (a ReLU output leaves the
# whole negative half empty).

# %% nbgrader={"grade": false, "grade_id": "l2_search", "locked": false, "schema_version": 3, "solution": true}
#| export
def l2_search(hist, amax, bits=8, symmetric=True):
    """The range with the smallest expected squared quantization error on a signed histogram.

    TODO: see the markdown above. hist: counts over [-amax, amax] (even size). Returns (lo, hi)
    as Python floats, ends on bin edges.

    APPROACH: width = 2 * amax / hist.size. For each candidate range compute scale/zp with your
    module 15 functions, round-trip the bin centres through quantize/dequantize, weight the squared
    errors by the counts, keep the best.

    EXAMPLE: uniform values in [-1, 1] plus a few at +-5, bits=4: about (-0.933, 0.933) (= 14/15,
             the optimum for uniform data: clip at 2q/(2q+1) with q = 7).

    HINTS: one call can evaluate many candidates: np.broadcast_to(centres, (n, len(centres))) and
    quantize(..., axis=0) with n scales. A plain loop over candidates is fine too (just slower).
    """
    ### BEGIN SOLUTION
    hist = np.asarray(hist, dtype=np.float64)
    mass_total = hist.sum() if hist.size else 0.0
    if hist.size % 2 or hist.ndim != 1:
        raise ValueError(f"l2_search needs a 1-D histogram with an even number of bins, got {hist.shape}")
    if amax <= 0 or mass_total == 0:
        return 0.0, 0.0
    half = hist.size // 2
    width = amax / half
    if symmetric:
        mass = fold_histogram(hist)
        centres = (np.arange(half) + 0.5) * width
        highs = np.arange(1, half + 1) * width
        lows = -highs
    else:
        mass = hist
        centres = (np.arange(hist.size) - half + 0.5) * width
        windows = np.array(asymmetric_windows(hist), dtype=np.float64)
        lows, highs = (windows[:, 0] - half) * width, (windows[:, 1] - half) * width
    keep = mass > 0                                  # empty bins add nothing to the error
    centres, mass = centres[keep], mass[keep]
    errors = np.empty(highs.size)
    chunk = max(1, 2 ** 20 // centres.size)
    for start in range(0, highs.size, chunk):
        lo, hi = lows[start:start + chunk], highs[start:start + chunk]
        x = np.broadcast_to(centres, (hi.size, centres.size))
        if symmetric:
            scale, zp = symmetric_qparams(hi, bits)
            q = quantize(x, scale, zp, bits=bits, signed=True, narrow=True, axis=0)
        else:
            scale, zp = asymmetric_qparams(lo, hi, bits, signed=False)
            q = quantize(x, scale, zp, bits=bits, signed=False, axis=0)
        errors[start:start + chunk] = (dequantize(q, scale, zp, axis=0) - centres) ** 2 @ mass
    best = int(np.argmin(errors))
    return float(lows[best]), float(highs[best])
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_l2_search", "locked": true, "schema_version": 3, "solution": false}
def _signed_hist(x, bins):
    """Signed histogram of nonzero values of x with `bins` bins per side (test helper)."""
    amax = np.abs(x).max()
    pos = np.histogram(x[x > 0], bins, range=(0, amax))[0]
    neg = np.histogram(-x[x < 0], bins, range=(0, amax))[0]
    return np.concatenate([neg[::-1], pos]).astype(float), amax

_rng = np.random.default_rng(3)
_x = np.concatenate([_rng.uniform(-1, 1, 200_000), [5.0, -5.0, 4.8]])
_h, _a = _signed_hist(_x, 2048)
lo, hi = l2_search(_h, _a, bits=4)
assert lo == -hi and abs(hi - 14 / 15) < 0.02, hi
t4 = hi
lo, hi = l2_search(_h, _a, bits=4, symmetric=False)
assert 0.9 <= hi <= 1.05 and abs(lo + hi) < 0.01, (lo, hi)   # both ends shrink by the same factor
_hr, _ar = _signed_hist(np.abs(_x), 2048)          # ReLU-like: nothing negative
lo, hi = l2_search(_hr, _ar, bits=4, symmetric=False)
assert lo == 0.0 and abs(hi - 0.96) < 0.03, hi      # unsigned 4-bit: 15 steps, optimum 30/31
print(f"l2_search: ok (4-bit symmetric threshold {t4:.3f}; theory 14/15 = 0.933)")

# %% [markdown]
# ### Entropy (KL divergence) search — TensorRT's calibration
# Szymon Migacz's *8-bit Inference with TensorRT* (GTC 2017) picks the threshold that loses the least
# **information**: it compares the clipped distribution $P$ with its quantized version $Q$ by the
# Kullback-Leibler divergence $\mathrm{KL}(P\|Q) = \sum_k P_k \log(P_k / Q_k)$ and keeps the threshold
# with the smallest one. For a window of $n$ bins (`window = mass[:i]` in the symmetric case) and $G$
# quantization levels:
#
# 1. **Reference $P$**: the window's counts, with every count *beyond* the window added to its last
#    bin (clipped values land on the edge). Asymmetric windows also add the counts below the window
#    to its first bin.
# 2. **Candidate $Q$**: split the window (without the clipped counts) into $G$ consecutive groups,
#    group $g$ = bins $\lfloor gn/G\rfloor$ to $\lfloor (g+1)n/G\rfloor - 1$, one group per code; each
#    group's total is spread evenly over the group's bins where $P > 0$ (bins where $P = 0$ stay 0:
#    quantization does not create values where there were none).
# 3. Normalise both to sum 1 and compute $\mathrm{KL}(P\|Q)$ over the bins where $P > 0$. Where
#    $Q = 0$ but $P > 0$ (clipped values in a window whose last group is empty), use
#    $Q = 10^{-10}$ so the divergence is large but finite.
#
# Levels: symmetric searches work on $|x|$ with $G = 2^{b-1}$ (128 for 8 bits: codes $0 \dots 127$, as
# TensorRT) and windows of $i = G, \dots,$ `half` bins (a window needs at least one bin per level);
# asymmetric searches use $G = 2^b$ and the windows of `asymmetric_windows` that have at least $G$
# bins (if none does, return the full extent: the last window). The range is the window's edges.
#
# The entropy objective does not measure squared error: it cares about the *shape* of the distribution,
# and is known to clip more aggressively than L2 on heavy-tailed data. The systems analysis compares
# the two.

# %% nbgrader={"grade": false, "grade_id": "entropy_search", "locked": false, "schema_version": 3, "solution": true}
#| export
def kl_window(window, below, above, levels):
    """KL(P || Q) of one candidate window (steps 1-3 above); below/above: counts clipped on each side."""
    ### BEGIN SOLUTION
    window = np.asarray(window, dtype=np.float64)
    n = window.size
    p = window.copy()
    p[0] += below
    p[-1] += above
    filled = p > 0
    starts = np.arange(levels) * n // levels               # first bin of each group
    group_sum = np.add.reduceat(window, starts)
    group_filled = np.add.reduceat(filled, starts, dtype=np.int64)
    q = np.repeat(group_sum / np.maximum(group_filled, 1), np.diff(starts, append=n))
    p, q = p[filled], q[filled]
    if q.sum() == 0:
        return np.inf
    p = p / p.sum()
    q = np.maximum(q / q.sum(), 1e-10)
    return float(np.sum(p * np.log(p / q)))
    ### END SOLUTION


def entropy_search(hist, amax, bits=8, symmetric=True):
    """The range whose quantized histogram has the smallest KL divergence from the clipped one.

    TODO: see the markdown above; same inputs and outputs as l2_search.

    APPROACH: width = 2 * amax / hist.size. Symmetric: mass = fold_histogram(hist), G = 2**(bits-1),
    for i in G..half: kl_window(mass[:i], 0, mass[i:].sum(), G); best i -> (-i*width, i*width).
    Asymmetric: G = 2**bits, for (a, b) in asymmetric_windows(hist) with b - a >= G:
    kl_window(hist[a:b], hist[:a].sum(), hist[b:].sum(), G); best -> ((a-half)*width, (b-half)*width).
    Keep the first smallest divergence.

    EXAMPLE: uniform values in [-1, 1] plus a few at +-4: about (-1.0, 1.0).

    HINTS: np.add.reduceat(window, starts) sums consecutive groups; np.repeat expands them back.
    """
    ### BEGIN SOLUTION
    hist = np.asarray(hist, dtype=np.float64)
    if hist.size % 2 or hist.ndim != 1:
        raise ValueError(f"entropy_search needs a 1-D histogram with an even number of bins, got {hist.shape}")
    if amax <= 0 or hist.sum() == 0:
        return 0.0, 0.0
    half = hist.size // 2
    width = amax / half
    if symmetric:
        mass = fold_histogram(hist)
        levels = 2 ** (bits - 1)
        if half < levels:
            return -amax, amax
        above = np.concatenate([np.cumsum(mass[::-1])[::-1], [0.0]])   # above[i] = mass[i:].sum()
        best_kl, best_i = np.inf, half
        for i in range(levels, half + 1):
            kl = kl_window(mass[:i], 0.0, above[i], levels)
            if kl < best_kl:
                best_kl, best_i = kl, i
        return -best_i * width, best_i * width
    levels = 2 ** bits
    windows = asymmetric_windows(hist)
    cum = np.concatenate([[0.0], np.cumsum(hist)])
    best_kl, (best_a, best_b) = np.inf, windows[-1]
    for a, b in windows:
        if b - a < levels:
            continue
        kl = kl_window(hist[a:b], cum[a], cum[-1] - cum[b], levels)
        if kl < best_kl:
            best_kl, best_a, best_b = kl, a, b
    return (best_a - half) * width, (best_b - half) * width
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_entropy_search", "locked": true, "schema_version": 3, "solution": false}
# a tiny hand-checkable case of kl_window: no clipping and one bin per level -> Q == P -> KL 0
assert abs(kl_window([1.0, 2.0, 3.0, 4.0], 0, 0, 4)) < 1e-12
# two bins per level, [1, 3] -> Q = [2, 2]: KL = 1/4 log(1/2) + 3/4 log(3/2)
assert np.isclose(kl_window([1.0, 3.0], 0, 0, 1), 0.25 * np.log(0.5) + 0.75 * np.log(1.5))
_x = np.concatenate([_rng.uniform(-1, 1, 200_000), [4.0, -4.0, 3.9]])
_h, _a = _signed_hist(_x, 2048)
lo, hi = entropy_search(_h, _a, bits=8)
assert lo == -hi and 0.97 <= hi <= 1.06, hi
_hr, _ar = _signed_hist(np.abs(_x), 2048)
lo, hi = entropy_search(_hr, _ar, bits=8, symmetric=False)
assert lo == 0.0 and 0.97 <= hi <= 1.06, (lo, hi)
h_obs = HistogramObserver(method="entropy")
for _part in np.array_split(_x, 4):                  # streamed in 4 batches, ranges grow
    h_obs(_part)
lo, hi = h_obs.calculate_range()
assert 0.95 <= hi <= 1.08, hi
h_l2 = HistogramObserver(method="l2")
h_l2(_x)
assert abs(h_l2.calculate_range(bits=4)[1] - 14 / 15) < 0.03
print(f"entropy_search: ok (threshold {hi:.3f} while min-max says {np.abs(_x).max():.1f})")

# %% [markdown]
# ## 8. Per-group parameters for low-bit weights
#
# At 4 bits there are only 15 symmetric codes, and one range per output channel is too coarse: a single
# large weight in a row of 4096 sets the step for all of them. LLM weight quantizers (GPTQ, AWQ,
# llama.cpp's blocks) therefore use one scale per **group** of consecutive weights along the input
# dimension $K$ (the last axis of a `(rows, K)` weight): with `group_size` $g$, row $r$ has $K/g$
# groups, group $j$ covering columns $jg, \dots, (j+1)g - 1$.
#
# The parameters have shape `(rows, K // g)`. Storage: each group stores one scale (fp16 in most
# formats: 16 bits) plus, asymmetric, a zero point, so 4-bit weights with $g = 128$ cost
# $4 + 16/128 = 4.125$ bits per weight. Smaller groups: finer ranges, more overhead.
#
# `K` must be a multiple of `group_size` (GGUF raises for the same reason; padding is the caller's job).
# Symmetric groups use `symmetric_qparams(max|w|, bits)`; asymmetric groups use
# `asymmetric_qparams(min, max, bits, signed=False)`, unsigned codes as in AWQ and GPTQ.

# %% nbgrader={"grade": false, "grade_id": "group_qparams", "locked": false, "schema_version": 3, "solution": true}
#| export
def group_qparams(w, group_size=128, bits=4, symmetric=True):
    """Per-group (scale, zero_point) of a weight, groups of `group_size` along the last axis.

    TODO: w of shape (..., K) -> scale and zero_point of shape (..., K // group_size).
    Refuse NaN/inf with check_batch(w, "group_qparams"); raise ValueError (saying K and group_size)
    when K is not a multiple of group_size or group_size < 1.

    APPROACH: reshape to (..., K // g, g) and reduce over the last axis; symmetric ->
    symmetric_qparams(max |w|, bits); asymmetric -> asymmetric_qparams(min, max, bits, signed=False).

    EXAMPLE: group_qparams(np.array([[1., -2., 3., -4., .5, .5, .5, .5]]), group_size=4, bits=4)
             -> scale [[4/7, 0.5/7]], zero_point [[0, 0]]
    """
    ### BEGIN SOLUTION
    w = check_batch(w, "group_qparams")
    if w.ndim < 1:
        raise ValueError("group_qparams needs an array with at least one axis")
    k = w.shape[-1]
    if int(group_size) != group_size or group_size < 1 or k % group_size:
        raise ValueError(f"group_qparams: the last axis has K={k} values, not a multiple of "
                         f"group_size={group_size}; pad K or choose a group size that divides it")
    groups = w.reshape(*w.shape[:-1], k // int(group_size), int(group_size))
    if symmetric:
        return symmetric_qparams(np.abs(groups).max(axis=-1), bits)
    return asymmetric_qparams(groups.min(axis=-1), groups.max(axis=-1), bits, signed=False)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_group_qparams", "locked": true, "schema_version": 3, "solution": false}
_w = np.array([[1.0, -2.0, 3.0, -4.0, 0.5, 0.5, 0.5, 0.5]])
s, z = group_qparams(_w, group_size=4, bits=4)
assert s.shape == (1, 2) and np.allclose(s, [[4 / 7, 0.5 / 7]]) and np.all(z == 0)
s, z = group_qparams(_w, group_size=4, bits=4, symmetric=False)
assert np.allclose(s, [[7 / 15, 0.5 / 15]]) and z.tolist() == [[9, 0]], (s, z)
assert group_qparams(np.ones((3, 256)))[0].shape == (3, 2)
try:
    group_qparams(np.ones((2, 100)), group_size=128)
    raise AssertionError("K=100 is not a multiple of 128")
except ValueError as err:
    assert "128" in str(err) and "100" in str(err)
print("group_qparams: ok")

# %% [markdown]
# ## 9. Systems analysis — measured with your observers
#
# Everything below runs on the code you just wrote (and your module 15). Re-run it after any change.
# Real data comes from the course's model zoo: `digits_cnn`, a small CNN trained on scikit-learn's
# 8×8 digits (conv1 → ReLU → conv2 → ReLU → pool → fc1 → ReLU → fc2), with its fixed calibration
# (200 images) and test (500 images) splits.

# %%
import time

import matplotlib.pyplot as plt

from tinyq import zoo
from tinyq.bench import time_interleaved
from tinyq.data import load_digits
from tinyq.quantize import sqnr_db

digits = load_digits()
cnn = zoo.load("digits_cnn")


def fake_quant(x, scale, zp, bits=8, symmetric=True, axis=None):
    """Quantize-dequantize round trip with module 15 (signed narrow if symmetric, else unsigned)."""
    if symmetric:
        q = quantize(x, scale, zp, bits=bits, signed=True, narrow=True, axis=axis)
    else:
        q = quantize(x, scale, zp, bits=bits, signed=False, axis=axis)
    return dequantize(q, scale, zp, axis=axis)


def relu2_activations(images):
    """Output of the zoo CNN's second ReLU: post-ReLU activations (N, 32, 8, 8)."""
    return cnn.relu2(cnn.conv2(cnn.relu1(cnn.conv1(images))))


def observed_sqnr(obs, calib, test, bits=8, symmetric=False, axis=None):
    """Calibrate `obs` on `calib` (a list of batches), then SQNR (dB) of `test` quantized with it."""
    for batch in calib:
        obs(batch)
    scale, zp = obs.calculate_qparams(bits=bits, symmetric=symmetric, signed=symmetric)
    return sqnr_db(test, fake_quant(test, scale, zp, bits, symmetric, axis)), obs

# %% [markdown]
# ### 9.1 Per-channel against per-tensor on real conv weights
# Weights are observed once, symmetric, with min-max (the standard choice for weights). Per channel
# means one scale per output channel (axis 0 of a conv weight, axis 0 of a `Linear` weight).

# %%
rows = []
for name in ("conv1", "conv2", "fc1"):
    w = getattr(cnn, name).weight.data
    amax_per_channel = np.abs(channel_view(w, 0)).max(axis=1)
    for bits in (8, 4):
        sq = {}
        for gran, axis in (("tensor", None), ("channel", 0)):
            obs = MinMaxObserver(axis=axis)
            obs(w)
            s, z = obs.calculate_qparams(bits=bits)
            sq[gran] = sqnr_db(w, fake_quant(w, s, z, bits, True, axis))
        rows.append((name, w.shape, amax_per_channel.max() / amax_per_channel.min(), bits,
                     sq["tensor"], sq["channel"]))
print(f"{'layer':6} {'shape':>15} {'max/min chan amax':>17} {'bits':>4} {'per-tensor dB':>13} "
      f"{'per-channel dB':>14} {'gain dB':>7}")
for name, shape, spread, bits, t, c in rows:
    print(f"{name:6} {str(shape):>15} {spread:17.2f} {bits:4d} {t:13.2f} {c:14.2f} {c - t:7.2f}")

# %% [markdown]
# The zoo model was trained briefly from a uniform initialisation and has no batch norm, so the
# output channels of its conv layers have similar ranges (see the max/min ratio of the per-channel
# $a_{max}$) and per-channel buys only a couple of dB; `fc1` has a few rows with much smaller
# weights than the others and gains more. Real networks
# with batch norm folded into their convolutions have channel ranges that differ by 10–100×. The
# synthetic weight below has that structure (Laplace-distributed weights, channel scales log-uniform
# up to a given spread). Watch two numbers: the SQNR of the whole tensor, and the SQNR of the **worst
# channel**. Per tensor, a channel whose $a_{max}$ is $r$ times below the largest gets a step $r$ times
# too coarse for it and loses about $20\log_{10} r$ dB, but the whole-tensor SQNR hardly shows it:
# the large channels hold most of the signal energy. The next layer, however, uses every channel.

# %%
rng = np.random.default_rng(16)
spreads = [1, 3, 10, 30, 100, 300]
gain_rows = []          # per spread: (tensor SQNR, worst channel SQNR) per-tensor, then per-channel
for spread in spreads:
    scales = np.exp(rng.uniform(0, np.log(spread), size=64))
    scales[:2] = 1.0, spread                                    # the spread is exactly `spread`
    w_syn = (rng.laplace(size=(64, 32, 3, 3)) * scales[:, None, None, None] * 0.02).astype(np.float32)
    res = []
    for axis in (None, 0):
        obs = MinMaxObserver(axis=axis)
        obs(w_syn)
        s, z = obs.calculate_qparams(bits=8)
        w_hat = fake_quant(w_syn, s, z, 8, True, axis)
        worst = min(sqnr_db(w_syn[c], w_hat[c]) for c in range(64))
        res += [sqnr_db(w_syn, w_hat), worst]
    gain_rows.append(res)
gain_rows = np.array(gain_rows)
fig, ax = plt.subplots(1, 2, figsize=(10, 3.2))
ax[0].semilogx(spreads, gain_rows[:, 0], "o-", label="per-tensor, whole tensor")
ax[0].semilogx(spreads, gain_rows[:, 1], "o--", label="per-tensor, worst channel")
ax[0].semilogx(spreads, gain_rows[:, 2], "s-", label="per-channel, whole tensor")
ax[0].semilogx(spreads, gain_rows[:, 3], "s--", label="per-channel, worst channel")
ax[0].set_xlabel("spread of channel scales (max/min)"); ax[0].set_ylabel("SQNR (dB), 8-bit")
ax[0].legend(fontsize=7); ax[0].set_title("synthetic conv weight 64x32x3x3")
w2 = cnn.conv2.weight.data
ax[1].bar(range(32), np.sort(np.abs(channel_view(w2, 0)).max(axis=1))[::-1])
ax[1].set_xlabel("output channel (sorted)"); ax[1].set_ylabel("max |w|"); ax[1].set_title("zoo conv2")
plt.tight_layout()
print(f"{'spread':>6} | {'per-tensor: tensor':>18} {'worst ch':>8} | {'per-channel: tensor':>19} {'worst ch':>8}")
for spread, (t, tw, c, cw) in zip(spreads, gain_rows):
    print(f"{spread:5d}x | {t:18.2f} {tw:8.2f} | {c:19.2f} {cw:8.2f}")

# %% [markdown]
# ### 9.2 Outliers: what each observer recovers
# Real activations of the zoo CNN (after `relu2`) have no extreme outliers. To see what outliers do we
# inject a few: one value in 20 000 is replaced by 12× the largest activation (the "massive activation"
# pattern of large transformers). Each observer is calibrated on 100 calibration images *with*
# outliers and evaluated on the 500 test images *with* outliers (asymmetric, unsigned codes: the
# standard for post-ReLU activations). SQNR counts every value, the outliers too; "bulk SQNR" ignores
# the outlier positions, i.e. what the other 99.995% of the values see.

# %%
rng = np.random.default_rng(160)


def with_outliers(acts, rate=5e-5, factor=12.0):
    out = acts.copy()
    mask = rng.random(out.shape) < rate
    out[mask] = factor * acts.max() * rng.uniform(0.8, 1.0, size=mask.sum())
    return out, mask


act_calib = relu2_activations(digits.x_calib[:100])
act_test = relu2_activations(digits.x_test)
calib_out, _ = with_outliers(act_calib)
test_out, test_mask = with_outliers(act_test)
calib_batches = np.array_split(calib_out, 10)

observers = {
    "min-max": lambda: MinMaxObserver(),
    "moving avg": lambda: MovingAverageMinMaxObserver(),
    "percentile 99.99": lambda: PercentileObserver(99.99),
    "MSE": lambda: MSEObserver(),
    "hist entropy": lambda: HistogramObserver(method="entropy"),
    "hist L2": lambda: HistogramObserver(method="l2"),
}
print(f"calibration max {calib_out.max():.2f}, 99.99th percentile {np.percentile(calib_out, 99.99):.2f}, "
      f"fraction of exact zeros {np.mean(calib_out == 0):.2f}")
print(f"{'observer':17} {'bits':>4} {'range hi':>9} {'SQNR dB':>8} {'bulk SQNR dB':>12}")
outlier_results = {}
for name, make in observers.items():
    for bits in (8, 4):
        obs = make()
        for batch in calib_batches:
            obs(batch)
        lo, hi = obs.calculate_range(bits=bits, symmetric=False)
        s, z = obs.calculate_qparams(bits=bits, symmetric=False, signed=False)
        x_hat = fake_quant(test_out, s, z, bits, symmetric=False)
        total = sqnr_db(test_out, x_hat)
        bulk = sqnr_db(test_out[~test_mask], x_hat[~test_mask])
        outlier_results[name, bits] = (hi, total, bulk)
        print(f"{name:17} {bits:4d} {hi:9.2f} {total:8.2f} {bulk:12.2f}")

# %%
fig, ax = plt.subplots(1, 2, figsize=(11, 3.4))
ax[0].hist(calib_out[calib_out > 0].ravel(), bins=200, log=True, color="0.6")
for (name, bits), (hi, _, _) in outlier_results.items():
    if bits == 8:
        ax[0].axvline(hi, ls="--", lw=1, label=name, color=plt.cm.tab10(list(observers).index(name)))
ax[0].set_xlabel("activation (nonzero)"); ax[0].set_ylabel("count"); ax[0].legend(fontsize=7)
ax[0].set_title("calibration activations and each observer's 8-bit range")
names = list(observers)
for k, bits in enumerate((8, 4)):
    ax[1].bar(np.arange(len(names)) + 0.4 * k, [outlier_results[n, bits][2] for n in names], 0.4,
              label=f"{bits}-bit")
ax[1].set_xticks(np.arange(len(names)) + 0.2, names, rotation=30, fontsize=8)
ax[1].set_ylabel("bulk SQNR (dB)"); ax[1].legend(); ax[1].set_title("test set, with outliers")
plt.tight_layout()

# %% [markdown]
# Read the table before the plot.
# * **Min-max** takes the outliers at face value: the bulk gets a handful of codes, and at 4 bits
#   almost none.
# * **Percentile** and **entropy** clip the outliers and win the bulk back (compare the bulk SQNR
#   columns). Their *total* SQNR drops instead: the few clipped outliers now dominate the error.
# * **MSE** and **L2** minimise the total squared error, so they decide by arithmetic: at 8 bits each
#   outlier's clipping error outweighs what a finer grid saves on the bulk, and they keep the outliers
#   (a range close to min-max); at 4 bits rounding errors are 16 times larger and they clip, though
#   less than percentile and entropy.
# * The **moving average** clips here by accident: the first batch set a small range and 1% steps
#   never caught up with the rare outlier batches. Change the batch order and it changes.
#
# Which of these keeps a model accurate is not a question about squared error: module 17 measures it.
#
# ### 9.3 How calibration set size moves the range
# Min-max's range is the largest value seen, so it only grows with more calibration data, and with rare
# outliers it jumps the first time one is seen. A percentile clips the outliers only while they are
# rarer than the tail it cuts (asymmetric 99.99: the top 0.005%); once the calibration set holds more
# of them than that, the percentile lands among them. Below: ranges and bulk test SQNR (8-bit, outlier data)
# as the calibration set grows from 1 to 200 images of the zoo activations (2048 values per image),
# three random draws for each size below 200.

# %%
calib_all, _ = with_outliers(relu2_activations(digits.x_calib))
sizes = [1, 4, 16, 64, 200]
size_obs = {"min-max": observers["min-max"], "percentile 99.99": observers["percentile 99.99"],
            "hist entropy": observers["hist entropy"], "hist L2": observers["hist L2"]}
size_results = {name: np.zeros((len(sizes), 3, 2)) for name in size_obs}
for draw in range(3):
    order = np.random.default_rng(draw).permutation(len(calib_all))
    for i, n in enumerate(sizes):
        if n == len(calib_all) and draw > 0:          # every draw of the full set is the same set
            for res in size_results.values():
                res[i, draw] = res[i, 0]
            continue
        subset = calib_all[order[:n]]
        for name, make in size_obs.items():
            obs = make()
            obs(subset)
            s, z = obs.calculate_qparams(bits=8, symmetric=False, signed=False)
            x_hat = fake_quant(test_out, s, z, 8, symmetric=False)
            size_results[name][i, draw] = (obs.calculate_range(symmetric=False)[1],
                                           sqnr_db(test_out[~test_mask], x_hat[~test_mask]))
fig, ax = plt.subplots(1, 2, figsize=(11, 3.4))
for name, res in size_results.items():
    ax[0].errorbar(sizes, res[:, :, 0].mean(1), yerr=res[:, :, 0].std(1), marker="o", capsize=3, label=name)
    ax[1].errorbar(sizes, res[:, :, 1].mean(1), yerr=res[:, :, 1].std(1), marker="o", capsize=3, label=name)
for a, label in zip(ax, ("range hi", "bulk SQNR of the test set (dB), 8-bit")):
    a.set_xscale("log"); a.set_xlabel("calibration images"); a.set_ylabel(label); a.legend(fontsize=8)
plt.tight_layout()
print("range hi (mean ± std over draws) by number of calibration images")
print(f"{'observer':17} " + " ".join(f"{n:>12}" for n in sizes))
for name, res in size_results.items():
    print(f"{name:17} " + " ".join(f"{m:6.2f}±{sd:<5.2f}" for m, sd in zip(res[:, :, 0].mean(1), res[:, :, 0].std(1))))

# %% [markdown]
# With one or a few images, whether min-max (and L2, which follows it at 8 bits) sees an outlier at all
# is luck: hence the huge spread between draws. With more images the range settles at the outliers.
# The percentile observer follows once the calibration set holds more outliers than its tail. The
# entropy search settles after a few images and stays put. A bigger calibration set makes min-max
# *more* certain to be ruined by outliers; it only makes the robust observers more stable.

# %% [markdown]
# ### 9.4 How calibration set *makeup* moves the range
# Calibration data should look like deployment data. Here the activations are real (no injected
# outliers) and we calibrate on 60 images chosen four ways: a balanced set (6 per digit), only 0s,
# only 1s, and a balanced set fed through the wrong preprocessing (raw pixels in $[0, 1]$ instead of
# the normalised ones the model was trained on: a classic bug of calibration scripts). Then we quantize
# the activations of all 500 (correctly preprocessed) test images. A range that is too small clips
# whatever the calibration set never showed; one that is too large wastes codes.

# %%
makeup_rows = []
y_calib = digits.y_calib
x_pool = np.concatenate([digits.x_calib, digits.x_train[:600]])
y_pool = np.concatenate([y_calib, digits.y_train[:600]])
balanced = np.concatenate([np.flatnonzero(y_pool == d)[:6] for d in range(10)])
sets = {"balanced": x_pool[balanced],
        "only 0s": x_pool[np.flatnonzero(y_pool == 0)[:60]],
        "only 1s": x_pool[np.flatnonzero(y_pool == 1)[:60]],
        "raw pixels (bug)": x_pool[balanced] * digits.std + digits.mean}
for set_name, images in sets.items():
    acts = relu2_activations(images)
    for name in ("min-max", "hist entropy"):
        obs = observers[name]()
        obs(acts)
        for bits in (8, 4):
            hi = obs.calculate_range(bits, symmetric=False)[1]
            s, z = obs.calculate_qparams(bits, symmetric=False, signed=False)
            sq = sqnr_db(act_test, fake_quant(act_test, s, z, bits, symmetric=False))
            makeup_rows.append((set_name, name, bits, hi, np.mean(act_test > hi), sq))
print(f"test activations: max {act_test.max():.2f}")
print(f"{'calibration set':17} {'observer':13} {'bits':>4} {'range hi':>8} {'test clipped':>12} {'test SQNR dB':>12}")
for set_name, name, bits, hi, clipped, sq in makeup_rows:
    print(f"{set_name:17} {name:13} {bits:4d} {hi:8.2f} {clipped:12.4%} {sq:12.2f}")

# %% [markdown]
# For this model the digit classes barely move the range: every digit drives conv2's features to
# similar peaks. The preprocessing bug does not forgive: the calibration activations are about half the
# size of the real ones, so a couple of percent of the test activations are clipped and the SQNR
# collapses. No observer can fix calibration data that is wrong; check the input pipeline first.

# %% [markdown]
# ### 9.5 Per-group 4-bit weights: accuracy against storage
# A `Linear`-like weight of shape (256, 1024) whose input columns have uneven scales (a few "salient"
# input channels 10× larger, the pattern AWQ exploits in LLMs). Per-channel (one scale per row) lets
# the large columns set every row's scale; groups along $K$ confine them. Storage counts 4-bit codes
# plus one fp16 scale per group (per row for per-channel, one for the tensor).

# %%
rng = np.random.default_rng(1600)
col_scale = np.ones(1024)
col_scale[rng.choice(1024, 8, replace=False)] = 10.0
w_lin = (rng.normal(size=(256, 1024)) * col_scale * rng.uniform(0.5, 2.0, size=(256, 1))).astype(np.float32) * 0.02
group_rows = []
mm_t = MinMaxObserver()
mm_t(w_lin)
s, z = mm_t.calculate_qparams(bits=4)
group_rows.append(("per-tensor", 4 + 16 / w_lin.size, sqnr_db(w_lin, fake_quant(w_lin, s, z, 4))))
mm_c = MinMaxObserver(axis=0)
mm_c(w_lin)
s, z = mm_c.calculate_qparams(bits=4)
group_rows.append(("per-channel", 4 + 16 / 1024, sqnr_db(w_lin, fake_quant(w_lin, s, z, 4, True, 0))))
for g in (512, 256, 128, 64, 32):
    s, z = group_qparams(w_lin, group_size=g, bits=4)
    flat = w_lin.reshape(-1, g)                      # one row per group, same order as s.ravel()
    w_hat = fake_quant(flat, s.ravel(), z.ravel(), 4, True, 0).reshape(w_lin.shape)
    group_rows.append((f"group {g}", 4 + 16 / g, sqnr_db(w_lin, w_hat)))
print(f"{'granularity':12} {'bits/weight':>11} {'SQNR dB':>8}")
for name, bpw, sq in group_rows:
    print(f"{name:12} {bpw:11.3f} {sq:8.2f}")
plt.figure(figsize=(5, 3.2))
plt.plot([r[1] for r in group_rows], [r[2] for r in group_rows], "o-")
for name, bpw, sq in group_rows:
    plt.annotate(name, (bpw, sq), fontsize=7, xytext=(3, -10), textcoords="offset points")
plt.xlabel("bits per weight (4-bit codes + fp16 scales)"); plt.ylabel("SQNR (dB)")
plt.title("4-bit symmetric weight, 256x1024"); plt.tight_layout()

# %% [markdown]
# ### 9.6 What an observer costs
# Observers run on every calibration batch, so their cost matters, and so does their memory: min-max
# keeps two numbers per channel, the histogram observer a fixed `2 x bins` counts per channel, while
# the percentile and MSE observers keep every value they have seen. Timed with `tinyq.bench` (median
# of interleaved runs) on one batch of the zoo activations (10 images: 20 480 values), per tensor;
# "range" is one `calculate_range(bits=8, symmetric=False)` after 10 batches.

# %%
def state_bytes(obs):
    """Bytes of numpy state an observer holds (arrays and lists of arrays)."""
    total = 0
    for value in vars(obs).values():
        items = value if isinstance(value, list) else [value]
        total += sum(v.nbytes for v in items if isinstance(v, np.ndarray))
    return total


one_batch = calib_batches[0]
cost_rows = []
for name, make in observers.items():
    fresh = lambda make=make: make()(one_batch)
    full = make()
    for batch in calib_batches:
        full(batch)
    observe_s, range_s = time_interleaved(
        [fresh, lambda full=full: full.calculate_range(8, symmetric=False)], repeats=3, warmup=1,
        min_sample_s=0.01)
    cost_rows.append((name, observe_s * 1e3, range_s * 1e3, state_bytes(full)))
print(f"{'observer':17} {'observe ms':>10} {'range ms':>9} {'state bytes after 10 batches':>28}")
for name, obs_ms, rng_ms, nbytes in cost_rows:
    print(f"{name:17} {obs_ms:10.3f} {rng_ms:9.2f} {nbytes:28,d}")
plt.figure(figsize=(5, 3))
plt.barh([r[0] for r in cost_rows], [r[3] for r in cost_rows])
plt.xscale("log"); plt.xlabel("state after 10 batches (bytes, log)"); plt.tight_layout()

# %% [markdown]
# The robust observers move the cost from observing to deciding: a histogram update costs a few
# `np.histogram` calls per channel and batch, and a search runs once per tensor at conversion time.
# The storing observers are cheap per batch, but their memory grows with every batch and their
# search is as long as the data: fine for a weight or a small calibration run, not for a large model's
# activations. That is why production toolkits calibrate activations with histograms.

# %% [markdown]
# ## Summary
#
# * An observer turns data into a clipping range; module 15 turns the range into $(s, z)$. It runs
#   during calibration (and QAT) and must leave the data untouched and refuse NaN/inf.
# * Per-channel ranges matter as much as the channels' scales differ: little on the zoo's evenly
#   trained conv layers, tens of dB for the weakest channel when channel ranges span two decades
#   (while the whole-tensor SQNR hides it).
# * Min-max is exact and cheap but hostage to its largest value; the range only grows with more
#   calibration data. Percentile, MSE, entropy and L2 trade a little clipping for a finer grid, and
#   the trade is worth more at 4 bits than at 8.
# * Histograms make the searches fixed-memory; their resolution ($a_{max}$/bins) limits what they can
#   recover when outliers are extreme.
# * Calibration data must look like deployment data: calibrating on one kind of input sets ranges
#   that clip (or waste codes on) the others.
# * At 4 bits, per-group scales buy SQNR for an overhead of $16/g$ bits per weight.
#
# Next, module 17 attaches these observers to a whole model, converts it to int8, and measures what
# the ranges do to accuracy.
