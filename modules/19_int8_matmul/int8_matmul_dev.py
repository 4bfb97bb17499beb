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
# # Module 19: INT8 matmul kernels in Numba
#
# Module 15 stored weights as real `np.int8`. Storage alone saves memory; it does not make anything
# faster. Speed comes from *kernels* that read the int8 codes directly and multiply in integer
# arithmetic. In this module you write those kernels with Numba and time each one against numpy's
# float32 BLAS at the same shape. Some of them win and some do not, and the systems analysis at the
# end explains which and why.
#
# | exercise | computes | float32 baseline |
# |---|---|---|
# | `gemv_w8` | $y = s_w \odot (W_q\,x)$: int8 weights, float32 vector (LLM decoding) | `w @ x` |
# | `int32_safe_k`, `gemm_int8` | $C = A_q W_q^\top$: int8 x int8, exact int32 accumulation up to a stated $K$ | `a @ w.T` |
# | `gemm_u8s8` | $C = A_u W_q^\top$: uint8 x int8 with `vpmaddubsw` (or VNNI's `vpdpbusd`), exact, about 2x float32 on AVX2 (3x with VNNI) | `a @ w.T` |
# | `gemm_int8_zp` | $\sum_k (a_k - z_a)\,w_k$, an activation zero point (int8 or uint8 activations) handled with precomputed sums | |
# | `quantize_multiplier`, `requantize` | int32 accumulators back to int8 with gemmlowp fixed point, bit-exact | |
# | `quantized_linear` | the whole int8-in, int8-out layer | `x @ w.T + b` |
#
# Conventions (as in module 15): weights are symmetric int8 in the narrow range $[-127, 127]$ with zero
# point 0 and per-output-channel scales. Activations are int8 in $[-128, 127]$ with any zero point.
# Integer matmuls accumulate in **int32**, and each kernel states the largest $K$ for which that is
# safe. Weight matrices are stored like `nn.Linear`'s, as $N \times K$ (one row per output channel),
# so both the GEMV and the GEMM read rows of $W$ contiguously.
#
# **How to work**: edit the cells marked `# YOUR CODE HERE`, run the test below each one, then
# `tito export 19` and `tito test 19` in a terminal to grade your package. The first call of each
# Numba kernel compiles it (a few seconds). `cache=True` stores the machine code on disk, so later
# runs start quickly.

# %%
#| default_exp int8_matmul

# %%
#| export
import numpy as np
from numba import njit, prange

# %% [markdown]
# ## 1. GEMV with int8 weights: `gemv_w8`
#
# When a language model generates text, each new token multiplies every weight matrix by a single
# vector. That is a GEMV. For an $N \times K$ matrix it does $2NK$ flops and reads $NK$ weights,
# and each weight is used exactly once. In float32 it reads 4 bytes per 2 flops. A CPU can do far
# more than 0.5 flop in the time it takes to fetch a byte from DRAM, so a GEMV is **memory-bound**:
# its speed is set by how many bytes it reads, not by how fast it multiplies.
#
# Store $W$ as int8 codes with one scale per output channel (row) and the matrix becomes 4x
# smaller. The scale factors out of the sum:
#
# $$y_n = \sum_k \big(s_n\, q_{nk}\big)\, x_k \;=\; s_n \sum_k q_{nk}\, x_k .$$
#
# So the kernel converts each code to float32 in a register (`float32(q)`, a `vpmovsxbd` and a
# `vcvtdq2ps` on x86), multiplies and accumulates, and applies $s_n$ once per row. Nothing is
# dequantized into memory. At 4096 x 4096, numpy's float32 GEMV reads 64 MB of weights and yours
# reads 16 MB.
#
# Three things make it fast in Numba:
# * `prange` over blocks of rows uses every core (`parallel=True`).
# * Several rows per block share each load of `x[k]`, which stays in a register.
# * The inner loop over `k` is a float **reduction**. LLVM vectorises a float reduction only if it may
#   reorder the additions, and that takes `fastmath={"reassoc", "contract"}` ("contract" also allows
#   fused multiply-add). It changes the rounding order, not the mathematics, so results match a
#   float64 reference to float32 accuracy rather than bit for bit.

# %% nbgrader={"grade": false, "grade_id": "gemv_w8", "locked": false, "schema_version": 3, "solution": true}
#| export
@njit(parallel=True, cache=True, fastmath={"reassoc", "contract"})
def _gemv_w8_kernel(w_q, w_scale, x, y):
    """y[n] = w_scale[n] * sum_k float32(w_q[n, k]) * x[k] for every row n, written into y.

    w_q: (N, K) int8 C-contiguous, w_scale: (N,) float32, x: (K,) float32, y: (N,) float32 output.
    """
    ### BEGIN SOLUTION
    N, K = w_q.shape
    nblocks = (N + 3) // 4
    for b in prange(nblocks):
        n = b * 4
        if n + 4 <= N:
            r0 = w_q[n]
            r1 = w_q[n + 1]
            r2 = w_q[n + 2]
            r3 = w_q[n + 3]
            a0 = np.float32(0.0)
            a1 = np.float32(0.0)
            a2 = np.float32(0.0)
            a3 = np.float32(0.0)
            for k in range(K):
                xk = x[k]
                a0 += np.float32(r0[k]) * xk
                a1 += np.float32(r1[k]) * xk
                a2 += np.float32(r2[k]) * xk
                a3 += np.float32(r3[k]) * xk
            y[n] = a0 * w_scale[n]
            y[n + 1] = a1 * w_scale[n + 1]
            y[n + 2] = a2 * w_scale[n + 2]
            y[n + 3] = a3 * w_scale[n + 3]
        else:
            for m in range(n, N):
                row = w_q[m]
                acc = np.float32(0.0)
                for k in range(K):
                    acc += np.float32(row[k]) * x[k]
                y[m] = acc * w_scale[m]
    ### END SOLUTION


def gemv_w8(w_q, w_scale, x):
    """y = w_scale * (w_q @ x): int8 weights (N, K) with per-row float32 scales, times a float32 vector.

    TODO: validate the inputs, make them contiguous with the right dtypes, allocate y (float32, shape
    (N,)) and fill it with a Numba kernel. Never build a float copy of w_q.

    APPROACH: w_q must be a 2-D int8 array (raise TypeError otherwise), x a vector of length K
    (ValueError otherwise), and w_scale a scalar (per-tensor, broadcast it) or an array of N scales.
    Convert x and w_scale to contiguous float32 and call `_gemv_w8_kernel`. In the kernel, use `prange`
    over blocks of 4 rows and keep 4 float32 accumulators, so each x[k] is loaded once for 4 rows.
    Finish the rows left over when N is not a multiple of 4.

    EXAMPLE: gemv_w8(np.array([[1, -2], [3, 4]], np.int8), np.array([0.5, 0.25], np.float32),
             np.array([1.0, 2.0], np.float32)) -> array([-1.5, 2.75], dtype=float32)

    HINTS: `np.broadcast_to(np.asarray(w_scale, np.float32), (N,))`; `np.ascontiguousarray`; inside
    the kernel `np.float32(q)` converts a code without going through float64.
    """
    ### BEGIN SOLUTION
    w_q = np.asarray(w_q)
    if w_q.dtype != np.int8 or w_q.ndim != 2:
        raise TypeError(f"gemv_w8: w_q must be a 2-D int8 array, got {w_q.dtype} with shape {w_q.shape}")
    N, K = w_q.shape
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.shape != (K,):
        raise ValueError(f"gemv_w8: x must have shape ({K},) to match w_q {w_q.shape}, got {x.shape}")
    scale = np.asarray(w_scale, dtype=np.float32)
    if scale.ndim == 0:
        scale = np.full(N, scale, dtype=np.float32)
    if scale.shape != (N,):
        raise ValueError(f"gemv_w8: w_scale must be a scalar or have shape ({N},), got {scale.shape}")
    y = np.empty(N, dtype=np.float32)
    _gemv_w8_kernel(np.ascontiguousarray(w_q), np.ascontiguousarray(scale), x, y)
    return y
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_gemv_w8", "locked": true, "schema_version": 3, "solution": false}
_w = np.array([[1, -2], [3, 4]], np.int8)
assert np.allclose(gemv_w8(_w, np.array([0.5, 0.25], np.float32), np.array([1.0, 2.0], np.float32)), [-1.5, 2.75])
_rng = np.random.default_rng(0)
for _n, _k in [(1, 1), (5, 7), (33, 130), (64, 1000)]:
    _wq = _rng.integers(-127, 128, size=(_n, _k), dtype=np.int8)
    _s = _rng.uniform(0.001, 0.1, size=_n).astype(np.float32)
    _x = _rng.standard_normal(_k).astype(np.float32)
    _ref = (_wq.astype(np.float64) @ _x.astype(np.float64)) * _s
    _y = gemv_w8(_wq, _s, _x)
    assert _y.dtype == np.float32 and _y.shape == (_n,)
    _bound = 2 * _k * 6e-8 * _s * (np.abs(_wq).astype(np.float64) @ np.abs(_x)) + 1e-30   # float32 rounding
    assert np.all(np.abs(_y - _ref) <= _bound), (_n, _k)
print("gemv_w8: ok")
### BEGIN HIDDEN TESTS
assert np.allclose(gemv_w8(_wq, 0.5, _x), 0.5 * (_wq.astype(np.float64) @ _x), rtol=1e-4, atol=1e-2)
### END HIDDEN TESTS

# %% [markdown]
# ## 2. GEMM with int8 operands and int32 accumulation: `gemm_int8`
#
# Prefill (a whole prompt at once), batched inference and convolutions turn into matrix-matrix
# products. With int8 activations $A$ ($M \times K$) and int8 weights $W$ ($N \times K$):
#
# $$C_{mn} = \sum_{k=0}^{K-1} a_{mk}\, w_{nk} \qquad \text{(int32)}$$
#
# **Why int32, and how far does it reach?** One product of two int8 values has magnitude at most
# $128 \cdot 128 = 2^{14}$, reached only by $(-128)(-128)$. A sum of $K$ such products has magnitude
# at most $K \cdot 2^{14}$. int32 holds up to $2^{31} - 1$, so the accumulator cannot overflow while
#
# $$K \le \left\lfloor \frac{2^{31} - 1}{2^{14}} \right\rfloor = 131071 .$$
#
# The round number you will see quoted is $2^{31}/2^{14} = 131072 = 2^{17}$. At exactly that $K$,
# all $-128$ inputs sum to $+2^{31}$, one past `INT32_MAX`. The general bound for operands with
# magnitudes up to $|a|_{max}$ and $|w|_{max}$ is $\lfloor (2^{31}-1) / (|a|_{max}\,|w|_{max}) \rfloor$.
# For zero-point-shifted activations $a - z_a \in [-255, 255]$ (section 3) it drops to 65793.
# Real layers have $K$ in the thousands, so int32 is plenty. An int16 accumulator would not be: two
# products can already overflow it. (Section 2b shows the one place where fast libraries do sum a
# *pair* of products into int16, and the range condition that keeps it exact.) Your `gemm_int8` must refuse a $K$ it
# cannot compute exactly, with a `ValueError`. First write the bound itself, for any operand magnitudes.

# %% nbgrader={"grade": false, "grade_id": "int32_safe_k", "locked": false, "schema_version": 3, "solution": true}
#| export
INT32_MAX = 2**31 - 1


def int32_safe_k(max_abs_a=128, max_abs_w=128):
    """The largest K for which a sum of K products a*w (|a| <= max_abs_a, |w| <= max_abs_w) fits int32.

    TODO: return it as a Python int. Reject non-positive magnitudes with ValueError.

    APPROACH: the worst case sum is K * max_abs_a * max_abs_w; it must stay <= 2**31 - 1.

    EXAMPLE: int32_safe_k() -> 131071   (int8 x int8);   int32_safe_k(255, 128) -> 65793
             (activations shifted by a zero point, section 3)

    HINTS: integer division `//`.
    """
    ### BEGIN SOLUTION
    if max_abs_a <= 0 or max_abs_w <= 0:
        raise ValueError(f"int32_safe_k: magnitudes must be positive, got {max_abs_a} and {max_abs_w}")
    return int(INT32_MAX // (int(max_abs_a) * int(max_abs_w)))
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_int32_safe_k", "locked": true, "schema_version": 3, "solution": false}
assert int32_safe_k() == 131071 and int32_safe_k(255, 128) == 65793
print("int32_safe_k: ok")

# %% [markdown]
# ### The kernel: `gemm_int8`
#
# **Making it fast.** A plain triple loop computes one dot product at a time. Each output then loads
# one byte of $A$ and one byte of $W$ per multiply-add, and the loads, not the multiplies, set the
# speed. **Register blocking** fixes that. Compute a $4 \times 2$ tile of $C$ at once, with 8 int32
# accumulators that live in registers. Every $a_{mk}$ you load is used twice and every $w_{nk}$ four
# times: 6 loads for 8 multiply-adds instead of 16. The innermost loop runs over $k$, along contiguous
# rows of both $A$ and $W$ (that is why $W$ is stored $N \times K$). LLVM vectorises it 8 lanes at a
# time: `vpmovsxbd` widens 8 int8 to 8 int32, `vpmulld` multiplies, `vpaddd` accumulates.
#
# **A Numba typing trap.** Numba types `int32 * int32` as **int64** (Python-style promotion). Keep the
# accumulators int32 by writing `s = np.int32(s + np.int32(a) * np.int32(w))`. LLVM then sees that
# only 32 bits survive and multiplies in 32 bits. Without the cast you get 4-lane int64 arithmetic,
# half as fast and no longer what the hardware accumulates.
#
# Numba resolves globals when it compiles. A kernel that calls another Numba function has that
# function compiled in, so tests cannot swap it. Keep each exercise's kernel private (`_gemm_int8_kernel`)
# and call other exercises only from plain Python.

# %% nbgrader={"grade": false, "grade_id": "gemm_int8", "locked": false, "schema_version": 3, "solution": true}
#| export
@njit(inline="always")
def _dot_i8(x, y):
    """int32 dot product of two int8 vectors of the same length (for leftover rows and columns)."""
    ### BEGIN SOLUTION
    s = np.int32(0)
    for k in range(x.shape[0]):
        s = np.int32(s + np.int32(x[k]) * np.int32(y[k]))
    return s
    ### END SOLUTION


@njit(parallel=True, cache=True)
def _gemm_int8_kernel(a_q, w_q, out):
    """out[m, n] = sum_k a_q[m, k] * w_q[n, k] in int32, written into out (M, N) int32.

    a_q: (M, K) int8 and w_q: (N, K) int8, both C-contiguous.
    """
    ### BEGIN SOLUTION
    M, K = a_q.shape
    N = w_q.shape[0]
    full = M // 4
    # 4 x 2 register tiles: 8 int32 accumulators, 6 row loads per 8 multiply-adds
    for ib in prange(full):
        i = ib * 4
        a0 = a_q[i]
        a1 = a_q[i + 1]
        a2 = a_q[i + 2]
        a3 = a_q[i + 3]
        for j in range(0, N - 1, 2):
            w0 = w_q[j]
            w1 = w_q[j + 1]
            s00 = s01 = s10 = s11 = np.int32(0)
            s20 = s21 = s30 = s31 = np.int32(0)
            for k in range(K):
                x0 = np.int32(a0[k])
                x1 = np.int32(a1[k])
                x2 = np.int32(a2[k])
                x3 = np.int32(a3[k])
                y0 = np.int32(w0[k])
                y1 = np.int32(w1[k])
                s00 = np.int32(s00 + x0 * y0)
                s01 = np.int32(s01 + x0 * y1)
                s10 = np.int32(s10 + x1 * y0)
                s11 = np.int32(s11 + x1 * y1)
                s20 = np.int32(s20 + x2 * y0)
                s21 = np.int32(s21 + x2 * y1)
                s30 = np.int32(s30 + x3 * y0)
                s31 = np.int32(s31 + x3 * y1)
            out[i, j] = s00
            out[i, j + 1] = s01
            out[i + 1, j] = s10
            out[i + 1, j + 1] = s11
            out[i + 2, j] = s20
            out[i + 2, j + 1] = s21
            out[i + 3, j] = s30
            out[i + 3, j + 1] = s31
        if N % 2:
            j = N - 1
            for r in range(4):
                out[i + r, j] = _dot_i8(a_q[i + r], w_q[j])
    # rows left over when M is not a multiple of 4 (all of them when M < 4): parallel over columns
    if full * 4 < M:
        for j in prange(N):
            for r in range(full * 4, M):
                out[r, j] = _dot_i8(a_q[r], w_q[j])
    ### END SOLUTION


def gemm_int8(a_q, w_q):
    """C = a_q @ w_q.T with int8 inputs and exact int32 accumulation.

    TODO: validate, refuse a K that could overflow int32, allocate the (M, N) int32 output and fill
    it with `_gemm_int8_kernel`.

    APPROACH: both inputs 2-D int8 (TypeError otherwise) with the same K (ValueError otherwise);
    K > int32_safe_k() raises ValueError saying what the bound is. Make both contiguous. In the kernel,
    `prange` over blocks of 4 rows of A. For each pair of rows of W, keep 8 int32 accumulators and
    loop over k innermost. Handle a leftover column (N odd) and leftover rows (M % 4), including M < 4.

    EXAMPLE: gemm_int8(np.array([[1, 2], [3, 4]], np.int8), np.array([[1, 0], [0, 1], [1, 1]], np.int8))
             -> array([[1, 2, 3], [3, 4, 7]], dtype=int32)

    HINTS: `np.int32(s + np.int32(x) * np.int32(y))` keeps the accumulator int32 (see above). M, N
    or K equal to 0 should give an empty or zero result, not an error.
    """
    ### BEGIN SOLUTION
    a_q = np.asarray(a_q)
    w_q = np.asarray(w_q)
    for name, arr in (("a_q", a_q), ("w_q", w_q)):
        if arr.dtype != np.int8 or arr.ndim != 2:
            raise TypeError(f"gemm_int8: {name} must be a 2-D int8 array, got {arr.dtype} with shape {arr.shape}")
    (M, K), (N, K2) = a_q.shape, w_q.shape
    if K != K2:
        raise ValueError(f"gemm_int8: a_q is {a_q.shape} and w_q is {w_q.shape}: their K differ")
    k_max = int32_safe_k()
    if K > k_max:
        raise ValueError(f"gemm_int8: K={K} can overflow the int32 accumulator; int8 x int8 is exact "
                         f"only for K <= {k_max} = (2**31 - 1) // 2**14")
    out = np.empty((M, N), dtype=np.int32)
    if M and N:
        _gemm_int8_kernel(np.ascontiguousarray(a_q), np.ascontiguousarray(w_q), out)
    return out
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_gemm_int8", "locked": true, "schema_version": 3, "solution": false}
_c = gemm_int8(np.array([[1, 2], [3, 4]], np.int8), np.array([[1, 0], [0, 1], [1, 1]], np.int8))
assert _c.dtype == np.int32 and _c.tolist() == [[1, 2, 3], [3, 4, 7]]
for _m, _n, _k in [(1, 1, 1), (1, 9, 31), (7, 1, 17), (9, 13, 67), (64, 48, 256)]:
    _a = _rng.integers(-128, 128, size=(_m, _k), dtype=np.int8)
    _w = _rng.integers(-128, 128, size=(_n, _k), dtype=np.int8)
    assert np.array_equal(gemm_int8(_a, _w), _a.astype(np.int64) @ _w.astype(np.int64).T), (_m, _n, _k)
try:
    gemm_int8(np.zeros((1, 131072), np.int8), np.zeros((1, 131072), np.int8))
    raise AssertionError("K = 131072 must be refused")
except ValueError:
    pass
print("gemm_int8: ok")
### BEGIN HIDDEN TESTS
_big = np.full((1, 131071), -128, np.int8)
assert gemm_int8(_big, _big)[0, 0] == 131071 * 16384
### END HIDDEN TESTS

# %% [markdown]
# ## 2b. Beating float32 on AVX2: `gemm_u8s8`
#
# `gemm_int8` multiplies 8 int32 lanes per instruction, the same as float32's `vfmadd231ps`, and
# spends extra instructions widening bytes. x86 has better instructions for bytes; LLVM just does
# not pick them from a blocked loop. Here is the budget of one 256-bit instruction:
#
# | instruction | ISA | multiply-adds per instruction | what it does |
# |---|---|---|---|
# | `vfmadd231ps` | AVX2/FMA | 8 | fp32 $c \mathrel{+}= a b$, 8 lanes (numpy's SGEMM) |
# | `vpmulld` + `vpaddd` | AVX2 | 8 in 2 instructions | int32 lanes (`gemm_int8`'s loop) |
# | `vpmaddwd` | AVX2 | 16 | int16 pairs $a_0 b_0 + a_1 b_1$ into 8 int32 lanes, exact |
# | `vpmaddubsw` | AVX2 | 32 | **uint8 x int8** pairs $u_0 s_0 + u_1 s_1$ into 16 int16 lanes, **saturating** |
# | `vpdpbusd` | AVX-VNNI, AVX512-VNNI | 32 | uint8 x int8 quadruples summed into 8 int32 lanes, exact, one instruction |
#
# fbgemm (PyTorch), ONNX Runtime and oneDNN on AVX2 all do the same thing: `vpmaddubsw` sums pairs
# of uint8 x int8 products into int16, then `vpmaddwd` against a vector of int16 ones adds neighbouring
# pairs into int32, and `vpaddd` accumulates. That is 3 instructions for 32 multiply-adds. On most
# cores the two multiplies share 2 ports, as do float32's two FMAs, so per cycle: 16 multiply-adds for
# float32 (2 FMAs of 8), 32 for this int8 chain (one `vpmaddubsw` and one `vpmaddwd`, 32 products).
# **The ceiling is 2x float32 on plain AVX2**, and the libraries get close to it. VNNI's `vpdpbusd`
# does the whole chain in one instruction.
#
# **The saturation hazard.** A pair $u_0 s_0 + u_1 s_1$ with $u \in [0, 255]$ and $s \in [-128, 127]$
# reaches $2 \cdot 255 \cdot 128 = 65280$, and int16 stops at 32767: `vpmaddubsw` clamps, silently.
# The pair fits when one operand has only 7 bits:
# * activations in $[0, 127]$: $2 \cdot 127 \cdot 128 = 32512$. This is fbgemm's `reduce_range`
#   (PyTorch's x86 quantized Linear quantizes activations to 7 bits for exactly this reason);
# * or weights in $[-64, 63]$: $2 \cdot 255 \cdot 64 = 32640$ (7-bit weights, another library choice).
#
# When neither holds, **split** the activations: $u = u_{lo} + 128\,u_{hi}$ with
# $u_{lo} = u \mathbin{\&} 127$ and $u_{hi} = u \gg 7 \in \{0, 1\}$. Both halves are 7-bit operands, so
# $\sum_k u_k s_k = \sum_k u_{lo,k} s_k + 128 \sum_k u_{hi,k} s_k$ is exact: two saturation-free GEMMs,
# half the speed, never a wrong answer. The int32 result of uint8 x int8 is at most $255 \cdot 128 \cdot K$
# in magnitude, so $K \le$ `int32_safe_k(255, 128)` $= 65793$.
#
# ### Reaching an instruction from Numba: `tinyq.simd`
#
# Numba has no vector type and no way to ask for `vpmaddubsw`. `numba.extending.intrinsic` adds both:
# an `@intrinsic` is a function Numba does not compile from Python. Instead, wherever a kernel calls
# it, Numba runs its `codegen` function, which writes LLVM IR directly; for `maddubs` that IR is one
# call of LLVM's `llvm.x86.avx2.pmadd.ub.sw`, which becomes `vpmaddubsw`. The hand-written support
# module `tinyq/simd.py` (read it: each function is ten lines) gives you a 32-byte register type,
# `vec256`, and these operations on it:
#
# | `tinyq.simd` | x86 | |
# |---|---|---|
# | `load256(arr, i)` | `vmovdqu` | the 32 bytes `arr[i:i+32]` of a flat C-contiguous uint8/int8 array, no bounds check |
# | `zero256()`, `splat_i16(v)` | `vpxor`, `vpbroadcastw` | all zeros; 16 int16 lanes equal to `v` |
# | `maddubs(u, s)` | `vpmaddubsw` | 16 int16 pair sums of uint8 x int8, saturating |
# | `madd_i16(x, y)` | `vpmaddwd` | 8 int32 pair sums of int16 x int16 |
# | `add_i32(x, y)` | `vpaddd` | 8 int32 sums |
# | `hsum_i32(x)` | shuffles + adds | the sum of the 8 int32 lanes, as an int32 |
# | `dpbusd(acc, u, s)` | `vpdpbusd` (VNNI) | `acc` + the sums of 4 neighbouring uint8 x int8 products, exact |
#
# It emits the x86 intrinsics only where LLVM reports them on the host (`tinyq.simd.HAS_AVX2`, and
# `HAS_VNNI` for `dpbusd`). On any other CPU the same functions emit plain LLVM vector code with the
# same results, saturation included, so your kernel is portable and only its speed changes.
#
# **The multiply-add step, `_u8s8_madd`.** One step of the micro-kernel adds 32 products of a row of
# $A$ and a row of $W$ into an accumulator. On plain AVX2 that is the three-instruction chain. On a
# CPU with VNNI (AVX512-VNNI with AVX512VL, e.g. AMD Zen 4 and Intel Ice Lake servers, or AVX-VNNI on
# Alder Lake and later) it is one `vpdpbusd`, which sums four products straight into int32: half the
# instructions, no int16 step, no saturation. Branch on `HAS_VNNI`: Numba reads a global once, when
# it compiles, so the kernel keeps only the branch for this CPU (and `cache=True` is safe, since
# Numba's cache is keyed on the CPU). With VNNI nothing saturates, so `gemm_u8s8` needs the split
# only where `HAS_VNNI` is false: full-range activations then cost one pass instead of two.
#
# ### The kernel
#
# The layout is the *dot-product* one: both operands stay row-major ($A$ is $M \times K$, $W$ is
# $N \times K$), so 32 consecutive $k$ of a row are one `load256`. An accumulator register holds 8 partial
# sums of one output, and `hsum_i32` adds them up once, at the end of $K$.
# * **Packed panels.** Copy $A$ and $W$ into zero-filled buffers whose rows are padded to a multiple of
#   32 bytes and whose row counts are padded to the tile size, flattened to 1-D. Zeros add nothing to
#   a dot product, so the micro-kernel never handles a leftover $k$ or a partial tile.
# * **Register tile.** Each step of 32 $k$ loads 4 rows of $A$ and 3 rows of $W$ (7 loads) and does
#   $4 \times 3 = 12$ chains `add_i32(c, madd_i16(maddubs(a_r, w_c), ones))` into 12 accumulators:
#   384 multiply-adds per 7 loads. 12 accumulators, 4 rows of $A$ in turn, 3 of $W$ and the ones
#   fit the 16 `ymm` registers of AVX2.
# * **Cache blocking.** Split $W$ into blocks of 48 rows (48 KiB at $K = 1024$, resident in L2). For each
#   block, walk every 4-row tile of $A$ (4 KiB, stays in L1 while it meets all 16 tiles of the block).
# * **Threads.** `prange` over the blocks of $W$: each thread writes its own columns of the output.

# %% nbgrader={"grade": false, "grade_id": "gemm_u8s8", "locked": false, "schema_version": 3, "solution": true}
#| export
from tinyq.simd import HAS_VNNI, add_i32, dpbusd, hsum_i32, load256, madd_i16, maddubs, splat_i16, zero256

U8S8_MR, U8S8_NR, U8S8_NB = 4, 3, 48     # register tile (rows of A x rows of W), rows of W per cache block


def pack_panel(x, rows_multiple, dtype):
    """x (R, K) copied into a zero-filled (R', K') buffer, R' a multiple of rows_multiple and K' of 32
    (at least 32), returned flattened to 1-D with K'. Given: the copy is not the lesson."""
    rows, k = x.shape
    padded_rows = -(-max(rows, 1) // rows_multiple) * rows_multiple
    padded_k = max(32, -(-k // 32) * 32)
    out = np.zeros((padded_rows, padded_k), dtype)
    out[:rows, :k] = x
    return out.reshape(-1), padded_k


@njit(inline="always")
def _u8s8_madd(acc, a, w, ones):
    """acc + the uint8 x int8 products of a and w, 4 neighbouring k per int32 lane (vec256 in and out):
    VNNI's dpbusd where the CPU has it (HAS_VNNI), else the AVX2 chain maddubs -> madd_i16 -> add_i32.
    `ones` holds 16 int16 ones. Exact where no pair of products leaves int16."""
    ### BEGIN SOLUTION
    if HAS_VNNI:
        return dpbusd(acc, a, w)
    return add_i32(acc, madd_i16(maddubs(a, w), ones))
    ### END SOLUTION


@njit(parallel=True, cache=True)
def _gemm_u8s8_kernel(a_p, w_p, kp, out, high):
    """out[m, n] = sum_k a[m, k] * w[n, k] (high=False), or out[m, n] += 128 * that sum (high=True).

    a_p: A packed by pack_panel (flat uint8, rows padded to U8S8_MR, row stride kp bytes), w_p: W
    packed the same way (flat int8, rows padded to U8S8_NR); out: (M, N) int32. Exact only where no
    pair a[m, 2i] * w[n, 2i] + a[m, 2i+1] * w[n, 2i+1] leaves int16 (7-bit A or 7-bit W)."""
    ### BEGIN SOLUTION
    M, N = out.shape
    m_tiles = (M + U8S8_MR - 1) // U8S8_MR
    n_tiles = (N + U8S8_NR - 1) // U8S8_NR
    per_block = U8S8_NB // U8S8_NR
    n_blocks = (n_tiles + per_block - 1) // per_block
    for blk in prange(n_blocks):
        ones = splat_i16(1)
        tile = np.empty((U8S8_MR, U8S8_NR), np.int32)
        for mt in range(m_tiles):
            i = mt * U8S8_MR
            ra0 = i * kp
            ra1 = ra0 + kp
            ra2 = ra1 + kp
            ra3 = ra2 + kp
            for nt in range(blk * per_block, min(n_tiles, (blk + 1) * per_block)):
                j = nt * U8S8_NR
                rw0 = j * kp
                rw1 = rw0 + kp
                rw2 = rw1 + kp
                c00 = zero256(); c01 = zero256(); c02 = zero256()
                c10 = zero256(); c11 = zero256(); c12 = zero256()
                c20 = zero256(); c21 = zero256(); c22 = zero256()
                c30 = zero256(); c31 = zero256(); c32 = zero256()
                for k in range(0, kp, 32):
                    w0 = load256(w_p, rw0 + k)
                    w1 = load256(w_p, rw1 + k)
                    w2 = load256(w_p, rw2 + k)
                    x = load256(a_p, ra0 + k)
                    c00 = _u8s8_madd(c00, x, w0, ones)
                    c01 = _u8s8_madd(c01, x, w1, ones)
                    c02 = _u8s8_madd(c02, x, w2, ones)
                    x = load256(a_p, ra1 + k)
                    c10 = _u8s8_madd(c10, x, w0, ones)
                    c11 = _u8s8_madd(c11, x, w1, ones)
                    c12 = _u8s8_madd(c12, x, w2, ones)
                    x = load256(a_p, ra2 + k)
                    c20 = _u8s8_madd(c20, x, w0, ones)
                    c21 = _u8s8_madd(c21, x, w1, ones)
                    c22 = _u8s8_madd(c22, x, w2, ones)
                    x = load256(a_p, ra3 + k)
                    c30 = _u8s8_madd(c30, x, w0, ones)
                    c31 = _u8s8_madd(c31, x, w1, ones)
                    c32 = _u8s8_madd(c32, x, w2, ones)
                tile[0, 0] = hsum_i32(c00); tile[0, 1] = hsum_i32(c01); tile[0, 2] = hsum_i32(c02)
                tile[1, 0] = hsum_i32(c10); tile[1, 1] = hsum_i32(c11); tile[1, 2] = hsum_i32(c12)
                tile[2, 0] = hsum_i32(c20); tile[2, 1] = hsum_i32(c21); tile[2, 2] = hsum_i32(c22)
                tile[3, 0] = hsum_i32(c30); tile[3, 1] = hsum_i32(c31); tile[3, 2] = hsum_i32(c32)
                for r in range(min(U8S8_MR, M - i)):
                    for q in range(min(U8S8_NR, N - j)):
                        if high:
                            out[i + r, j + q] += np.int32(tile[r, q] * np.int32(128))
                        else:
                            out[i + r, j + q] = tile[r, q]
    ### END SOLUTION


def gemm_u8s8(a_u8, w_s8):
    """C = a_u8 @ w_s8.T: uint8 activations (M, K) times int8 weights (N, K), exact int32 (M, N).

    TODO: validate, pack both operands, and run `_gemm_u8s8_kernel` once when a pair cannot
    saturate int16, twice (low 7 bits, then the high bit) when it can.

    APPROACH: a_u8 must be a 2-D uint8 array and w_s8 a 2-D int8 array (TypeError otherwise), with the
    same K (ValueError otherwise); K > int32_safe_k(255, 128) raises ValueError. Pack W with
    `pack_panel(w, U8S8_NR, np.int8)`. If the CPU has VNNI (HAS_VNNI: no saturation), or A's largest
    value is at most 127, or W lies in [-64, 63], pack A once and call the kernel with high=False. Otherwise pack A & 127 for a first call
    (high=False) and A >> 7 for a second call that adds 128 times its sums (high=True).
    In `_u8s8_madd`: one dpbusd where HAS_VNNI, else the three-instruction chain with the int16 ones.
    In the kernel: prange over blocks of U8S8_NB rows of W; inside a block, every U8S8_MR-row tile of
    A against every U8S8_NR-row tile of W; 12 vec256 accumulators, each step of 32 k loads 4 + 3
    vectors and updates every accumulator with `_u8s8_madd`; at the end hsum_i32 each accumulator
    and store the part of the tile inside (M, N).

    EXAMPLE: gemm_u8s8(np.array([[200, 3]], np.uint8), np.array([[1, -1], [-128, 127]], np.int8))
             -> array([[197, -25219]], dtype=int32)

    HINTS: the kernel's pointers are byte offsets into the flat panels: row r starts at r * kp.
    A tile row or column past M or N holds zeros: compute it, do not store it. M, N or K equal to 0
    gives an empty or zero result, not an error.
    """
    ### BEGIN SOLUTION
    a_u8 = np.asarray(a_u8)
    w_s8 = np.asarray(w_s8)
    if a_u8.dtype != np.uint8 or a_u8.ndim != 2:
        raise TypeError(f"gemm_u8s8: a_u8 must be a 2-D uint8 array, got {a_u8.dtype} with shape {a_u8.shape}")
    if w_s8.dtype != np.int8 or w_s8.ndim != 2:
        raise TypeError(f"gemm_u8s8: w_s8 must be a 2-D int8 array, got {w_s8.dtype} with shape {w_s8.shape}")
    (M, K), (N, K2) = a_u8.shape, w_s8.shape
    if K != K2:
        raise ValueError(f"gemm_u8s8: a_u8 is {a_u8.shape} and w_s8 is {w_s8.shape}: their K differ")
    k_max = int32_safe_k(255, 128)
    if K > k_max:
        raise ValueError(f"gemm_u8s8: K={K} can overflow int32; uint8 x int8 is exact for K <= {k_max}")
    out = np.zeros((M, N), dtype=np.int32)
    if M == 0 or N == 0 or K == 0:
        return out
    w_p, kp = pack_panel(w_s8, U8S8_NR, np.int8)
    seven_bit_w = int(w_s8.min()) >= -64 and int(w_s8.max()) <= 63
    if HAS_VNNI or seven_bit_w or int(a_u8.max()) <= 127:
        a_p, _ = pack_panel(a_u8, U8S8_MR, np.uint8)
        _gemm_u8s8_kernel(a_p, w_p, kp, out, False)
    else:
        low, _ = pack_panel(a_u8 & np.uint8(127), U8S8_MR, np.uint8)
        _gemm_u8s8_kernel(low, w_p, kp, out, False)
        high, _ = pack_panel(a_u8 >> np.uint8(7), U8S8_MR, np.uint8)
        _gemm_u8s8_kernel(high, w_p, kp, out, True)
    return out
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_gemm_u8s8", "locked": true, "schema_version": 3, "solution": false}
_c = gemm_u8s8(np.array([[200, 3]], np.uint8), np.array([[1, -1], [-128, 127]], np.int8))
assert _c.dtype == np.int32 and _c.tolist() == [[197, -25219]]
for _m, _n, _k in [(1, 1, 1), (1, 9, 31), (7, 1, 17), (9, 13, 67), (64, 50, 300)]:
    for _hi in (127, 255):                       # 7-bit activations, full range (the split without VNNI)
        _a = _rng.integers(0, _hi + 1, size=(_m, _k), dtype=np.uint8)
        _w = _rng.integers(-128, 128, size=(_n, _k), dtype=np.int8)
        assert np.array_equal(gemm_u8s8(_a, _w), _a.astype(np.int64) @ _w.astype(np.int64).T), (_m, _n, _k, _hi)
_a = np.full((5, 64), 255, np.uint8)             # the worst pair: 255 * -128 twice saturates int16
_w = np.full((7, 64), -128, np.int8)
assert np.all(gemm_u8s8(_a, _w) == 64 * 255 * -128)
print("gemm_u8s8: ok")
### BEGIN HIDDEN TESTS
_w = _rng.integers(-64, 64, size=(6, 100), dtype=np.int8)     # 7-bit weights: one call, full-range A
_a = _rng.integers(0, 256, size=(10, 100), dtype=np.uint8)
assert np.array_equal(gemm_u8s8(_a, _w), _a.astype(np.int64) @ _w.astype(np.int64).T)
### END HIDDEN TESTS

# %% [markdown]
# ## 3. Zero points: `weight_colsums` and `gemm_int8_zp`
#
# Activations are usually asymmetric: a post-ReLU tensor has codes $a$ with zero point $z_a$, and the
# real value is $s_a (a - z_a)$. Module 15, ONNX Runtime, fbgemm and gemmlowp store such activations as
# **uint8** with $z_a \in [0, 255]$ by default; int8 codes with $z_a \in [-128, 127]$ are the other
# convention. `gemm_int8_zp` takes both: int8 activations go through `gemm_int8`, uint8 ones through
# `gemm_u8s8`, their natural home. The matmul needs $\sum_k (a_k - z_a) w_k$. Subtracting $z_a$ from every
# element of $A$ costs a full pass over $A$, and the difference no longer fits int8 ($a - z_a$ spans
# $[-255, 255]$). Distribute instead:
#
# $$\sum_k (a_{mk} - z_a)\, w_{nk} \;=\; \underbrace{\sum_k a_{mk} w_{nk}}_{\texttt{gemm\_int8}} \;-\; z_a \underbrace{\sum_k w_{nk}}_{\text{weight sums}} .$$
#
# The weight sums $c_n = \sum_k w_{nk}$ depend only on the weights. They are the "column sums" of
# $W^\top$, one per output channel. Compute them **once**, when the layer is built, and the correction
# costs one multiply-subtract per output: $O(MN)$ next to the GEMM's $O(MNK)$. With weight zero
# points as well there would be two more terms, $-z_w \sum_k a_{mk} + K z_a z_w$, and that is one reason
# weights are kept symmetric.
#
# Overflow: for int8 activations $a - z_a \in [-255, 255]$, and for uint8 ones $a - z_a \in [-255, 255]$
# as well, so in both cases the true result can reach $255 \cdot 128 \cdot K$ and `gemm_int8_zp` is
# exact for $K \le$ `int32_safe_k(255, 128)` $= 65793$. (The plain products stay within that too:
# $128 \cdot 128 \cdot K$ for `gemm_int8`, $255 \cdot 128 \cdot K$ for `gemm_u8s8`.) Inside that bound, int32 wraparound in the intermediate
# terms does no harm. Two's-complement arithmetic is exact modulo $2^{32}$, so if the final value fits,
# it is right.

# %% nbgrader={"grade": false, "grade_id": "gemm_int8_zp", "locked": false, "schema_version": 3, "solution": true}
#| export
def weight_colsums(w_q):
    """Per-output-channel sums of an (N, K) int8 weight matrix: c[n] = sum_k w_q[n, k], as int32 (N,).

    TODO: compute them in one vectorised pass without overflowing int8.

    EXAMPLE: weight_colsums(np.array([[1, 2, 3], [-128, -128, 0]], np.int8)) -> array([6, -256], dtype=int32)

    HINTS: `ndarray.sum(axis=..., dtype=...)` accumulates in the dtype you ask for.
    """
    ### BEGIN SOLUTION
    w_q = np.asarray(w_q)
    if w_q.dtype != np.int8 or w_q.ndim != 2:
        raise TypeError(f"weight_colsums: w_q must be a 2-D int8 array, got {w_q.dtype} with shape {w_q.shape}")
    return w_q.sum(axis=1, dtype=np.int32)
    ### END SOLUTION


def gemm_int8_zp(a_q, a_zp, w_q, w_colsums=None):
    """sum_k (a_q[m, k] - a_zp) * w_q[n, k] as int32 (M, N), via gemm_int8 and the weight sums.

    TODO: return gemm_int8(a_q, w_q) - a_zp * colsums, with colsums = w_colsums if given (precomputed
    once per layer), else weight_colsums(w_q).

    APPROACH: a_q is int8 with a_zp an integer in [-128, 127], or uint8 with a_zp an integer in
    [0, 255] (ValueError for a zero point outside its range, TypeError for any other dtype of a_q).
    Either way K <= int32_safe_k(255, 128) = 65793 (ValueError otherwise). A given w_colsums must
    have shape (N,). Call `gemm_int8` (int8 A) or `gemm_u8s8` (uint8 A) and `weight_colsums` (the
    exercises above, from Python) and subtract in int32. Broadcasting subtracts one row vector from
    every row.

    EXAMPLE: a = [[5, 6]], a_zp = 5, w = [[1, 1], [2, -1]] -> [[0 + 1, 0 - 1]] = array([[1, -1]], dtype=int32)
             a = uint8 [[200, 3]], a_zp = 128, w = [[1, -1]] -> [[72 + 125]] = array([[197]], dtype=int32)

    HINTS: `np.int32(a_zp) * colsums` stays int32; an in-place `-=` avoids a second (M, N) array.
    """
    ### BEGIN SOLUTION
    a_q = np.asarray(a_q)
    if a_q.dtype == np.uint8:
        zp_low, zp_high, gemm = 0, 255, gemm_u8s8
    elif a_q.dtype == np.int8:
        zp_low, zp_high, gemm = -128, 127, gemm_int8
    else:
        raise TypeError(f"gemm_int8_zp: a_q must be an int8 or uint8 array, got {a_q.dtype}")
    if (isinstance(a_zp, (bool, np.bool_)) or not isinstance(a_zp, (int, np.integer))
            or not zp_low <= a_zp <= zp_high):
        raise ValueError(f"gemm_int8_zp: a_zp must be an integer in [{zp_low}, {zp_high}] for {a_q.dtype} "
                         f"activations, got {a_zp!r}")
    K = a_q.shape[-1]
    k_max = int32_safe_k(255, 128)
    if K > k_max:
        raise ValueError(f"gemm_int8_zp: K={K} can overflow int32 once a - a_zp spans [-255, 255]; "
                         f"the bound is K <= {k_max}")
    colsums = weight_colsums(w_q) if w_colsums is None else np.asarray(w_colsums, dtype=np.int32)
    acc = gemm(a_q, w_q)
    if colsums.shape != (acc.shape[1],):
        raise ValueError(f"gemm_int8_zp: w_colsums must have shape ({acc.shape[1]},), got {colsums.shape}")
    if a_zp:
        acc -= np.int32(a_zp) * colsums
    return acc
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_gemm_int8_zp", "locked": true, "schema_version": 3, "solution": false}
assert weight_colsums(np.array([[1, 2, 3], [-128, -128, 0]], np.int8)).tolist() == [6, -256]
assert gemm_int8_zp(np.array([[5, 6]], np.int8), 5, np.array([[1, 1], [2, -1]], np.int8)).tolist() == [[1, -1]]
_a = _rng.integers(-128, 128, size=(6, 300), dtype=np.int8)
_w = _rng.integers(-127, 128, size=(11, 300), dtype=np.int8)
for _zp in (-128, -3, 0, 77, 127):
    _ref = (_a.astype(np.int64) - _zp) @ _w.astype(np.int64).T
    assert np.array_equal(gemm_int8_zp(_a, _zp, _w), _ref)
    assert np.array_equal(gemm_int8_zp(_a, _zp, _w, weight_colsums(_w)), _ref)
assert gemm_int8_zp(np.array([[200, 3]], np.uint8), 128, np.array([[1, -1]], np.int8)).tolist() == [[197]]
_a = _rng.integers(0, 256, size=(6, 300), dtype=np.uint8)
for _zp in (0, 113, 255):
    _ref = (_a.astype(np.int64) - _zp) @ _w.astype(np.int64).T
    assert np.array_equal(gemm_int8_zp(_a, _zp, _w), _ref)
print("gemm_int8_zp: ok")

# %% [markdown]
# ## 4. Fixed-point requantization: `quantize_multiplier` and `requantize`
#
# The int32 accumulator of a quantized layer stands for the real value $s_a s_w \cdot acc$. The layer's
# int8 output with scale $s_o$ and zero point $z_o$ is
#
# $$q_o = \mathrm{clamp}\Big(z_o + \mathrm{round}\big(M \cdot acc\big),\ -128,\ 127\Big), \qquad M = \frac{s_a\, s_w}{s_o}.$$
#
# $M$ is a real number, usually well below 1. Integer-only hardware, and every inference engine that
# wants the same answer on every machine, does not multiply by a float. gemmlowp and TFLite write
# $M = M_0 \cdot 2^{\text{shift}}$ with $M_0 \in [2^{30}, 2^{31})$ a **Q31 fixed-point** number
# (it means $M_0 / 2^{31} \in [0.5, 1)$):
#
# * `QuantizeMultiplier(M)`: `q, shift = frexp(M)` gives $q \in [0.5, 1)$. Then
#   $M_0 = \mathrm{round\_half\_away}(q \cdot 2^{31})$. If rounding reaches $2^{31}$, halve it and add 1
#   to `shift`. $M = 0$ gives $(0, 0)$, and a shift below $-31$ flushes to $(0, 0)$.
# * `SRDHM(a, b)` (SaturatingRoundingDoublingHighMul): the high half of $2ab$ in int64, rounded to
#   nearest. The nudge is $2^{30}$ when $ab \ge 0$ and $1 - 2^{30}$ otherwise. The sum is divided by
#   $2^{31}$ with C's truncating division. The one overflowing case, $a = b = -2^{31}$, saturates to
#   `INT32_MAX`.
# * `RDBPOT(x, e)` (RoundingDivideByPOT): $x / 2^e$ rounded half **away from zero**:
#   `mask = 2^e - 1; rem = x & mask; thr = (mask >> 1) + (x < 0); (x >> e) + (rem > thr)`.
# * `MultiplyByQuantizedMultiplier(x, M0, shift) = RDBPOT(SRDHM(x * 2^max(shift,0), M0), max(-shift, 0))`.
#
# Anchors from the reference sheet: $M = 0.0123456 \to M_0 = 1696766344$, shift $= -6$;
# $x = 40500 \to 500$; $\mathrm{RDBPOT}(-3, 1) = -2$ (that is $-1.5$, rounded away from zero).
#
# The result is rounded twice, once in SRDHM and once in RDBPOT, so it can differ by 1 from
# $\mathrm{round}(x \cdot M)$ near ties. That is fine. What matters is that the result is
# **bit-exact** with TFLite, so a model gives the same int8 outputs here and on a phone. Compute
# everything in int64 (`np.int64`), where $ab$ with $|a|, |b| < 2^{31}$ cannot overflow, and use
# `>>` on negative numbers: it is an arithmetic (flooring) shift in numpy and Numba, as in C++20.
#
# `srdhm` and `rdbpot` below act on scalars and are compiled with Numba, so `requantize`'s kernel can
# call them for every element of an $M \times N$ accumulator. `requantize` takes per-tensor
# (scalar) or per-channel ($N$ values along the last axis) multipliers.

# %% nbgrader={"grade": false, "grade_id": "quantize_multiplier", "locked": false, "schema_version": 3, "solution": true}
#| export
def quantize_multiplier(m):
    """gemmlowp/TFLite QuantizeMultiplier: M = M0 * 2**shift with M0 a Q31 int32 in [2**30, 2**31).

    TODO: return (m0, shift) as int32 (scalars for a scalar m, arrays for an array of multipliers).

    APPROACH: m in float64, finite and >= 0 (ValueError otherwise). q, shift = np.frexp(m);
    m0 = round_half_away(q * 2**31) (q >= 0, so floor(q * 2**31 + 0.5)); where m0 == 2**31 halve it
    and add 1 to shift; where m == 0 or shift < -31 give (0, 0). Refuse m >= 2**30 (shift > 30) with
    a ValueError too.

    EXAMPLE: quantize_multiplier(0.0123456) -> (1696766344, -6);  quantize_multiplier(0.5) -> (1073741824, 0);
             quantize_multiplier(1.0) -> (1073741824, 1)

    HINTS: multiplying q by 2**31 is exact in float64; np.round rounds half to EVEN, which is not
    what TFLite does (std::round, half away from zero).
    """
    ### BEGIN SOLUTION
    m = np.asarray(m, dtype=np.float64)
    if not np.all(np.isfinite(m)) or np.any(m < 0):
        raise ValueError("quantize_multiplier: multipliers must be finite and >= 0")
    q, shift = np.frexp(m)
    m0 = np.floor(q * 2.0**31 + 0.5)
    carry = m0 == 2.0**31
    m0 = np.where(carry, m0 / 2, m0)
    shift = np.where(carry, shift + 1, shift)
    if np.any(shift > 30):
        raise ValueError("quantize_multiplier: multipliers >= 2**30 cannot be represented")
    flush = (m == 0) | (shift < -31)
    m0 = np.where(flush, 0, m0).astype(np.int32)
    shift = np.where(flush, 0, shift).astype(np.int32)
    return m0[()], shift[()]
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_quantize_multiplier", "locked": true, "schema_version": 3, "solution": false}
assert quantize_multiplier(0.0123456) == (1696766344, -6)
assert quantize_multiplier(0.5) == (2**30, 0) and quantize_multiplier(1.0) == (2**30, 1)
assert quantize_multiplier(0.0) == (0, 0)
_m0, _sh = quantize_multiplier(np.array([0.0123456, 0.25, 0.75]))
assert _m0.tolist() == [1696766344, 2**30, 3 * 2**29] and _sh.tolist() == [-6, -1, 0]
print("quantize_multiplier: ok")

# %% nbgrader={"grade": false, "grade_id": "requantize", "locked": false, "schema_version": 3, "solution": true}
#| export
@njit(cache=True)
def srdhm(a, b):
    """gemmlowp SaturatingRoundingDoublingHighMul of two int32 values (returns an int).

    TODO: if a == b == -2**31 return 2**31 - 1; else ab = a * b in int64; nudge = 2**30 if ab >= 0
    else 1 - 2**30; return (ab + nudge) / 2**31 with C (truncating) division.

    EXAMPLE: srdhm(40500, 1696766344) -> 32000;  srdhm(-2**31, -2**31) -> 2147483647

    HINTS: `np.int64(a) * np.int64(b)`; truncating division of v by 2**31 is `v >> 31` for v >= 0 and
    `-((-v) >> 31)` for v < 0.
    """
    ### BEGIN SOLUTION
    a = np.int64(a)
    b = np.int64(b)
    if a == b and a == -2147483648:
        return np.int64(2147483647)
    ab = a * b
    v = ab + (np.int64(1 << 30) if ab >= 0 else np.int64(1 - (1 << 30)))
    if v >= 0:
        return v >> 31
    return -((-v) >> 31)
    ### END SOLUTION


@njit(cache=True)
def rdbpot(x, exponent):
    """gemmlowp RoundingDivideByPOT: x / 2**exponent rounded to nearest, ties away from zero.

    TODO: for 0 <= exponent <= 31: mask = 2**exponent - 1; rem = x & mask;
    threshold = (mask >> 1) + (1 if x < 0 else 0); return (x >> exponent) + (1 if rem > threshold else 0).
    Raise ValueError for an exponent outside [0, 31].

    EXAMPLE: rdbpot(32000, 6) -> 500;  rdbpot(-3, 1) -> -2;  rdbpot(3, 1) -> 2;  rdbpot(-5, 2) -> -1

    HINTS: work in np.int64; `&` and `>>` on a negative int64 behave as on two's-complement int32.
    """
    ### BEGIN SOLUTION
    if exponent < 0 or exponent > 31:
        raise ValueError("rdbpot: exponent must be in [0, 31]")
    x = np.int64(x)
    e = np.int64(exponent)
    mask = (np.int64(1) << e) - 1
    rem = x & mask
    threshold = (mask >> 1) + (np.int64(1) if x < 0 else np.int64(0))
    return (x >> e) + (np.int64(1) if rem > threshold else np.int64(0))
    ### END SOLUTION


@njit(parallel=True, cache=True)
def _requantize_kernel(acc, m0, shift, out_zp, qmin, qmax, out):
    """out[r, n] = clamp(out_zp + MultiplyByQuantizedMultiplier(acc[r, n], m0[n], shift[n]), qmin, qmax).

    acc: (R, N) int32 or int64, m0 and shift: (N,) int64, out: (R, N) output array.
    """
    ### BEGIN SOLUTION
    R, N = acc.shape
    for r in prange(R):
        for n in range(N):
            s = shift[n]
            x = np.int64(acc[r, n])
            if s > 0:
                x = x << s
            v = np.int64(out_zp) + rdbpot(srdhm(x, m0[n]), max(-s, 0))
            out[r, n] = min(max(v, qmin), qmax)
    ### END SOLUTION


def requantize(acc_i32, m0, shift, out_zp, qmin=-128, qmax=127):
    """int32 accumulators to integer codes: clamp(out_zp + RDBPOT(SRDHM(acc * 2**max(shift, 0), m0), max(-shift, 0))).

    TODO: validate, broadcast per-tensor parameters to one per channel, allocate the output and run
    `_requantize_kernel`.

    APPROACH: acc_i32 is an integer array (TypeError otherwise) whose values fit int32 (ValueError
    otherwise); m0 and shift are scalars or arrays of length acc.shape[-1] (per output channel, the
    last axis), with 0 <= m0 < 2**31 and -31 <= shift <= 30 (ValueError otherwise). With shift > 0
    the shifted acc must still fit int32 (ValueError). qmin <= out_zp <= qmax (ValueError otherwise).
    Output dtype: int8 if [qmin, qmax] fits int8, uint8 if it fits uint8, else int32. Reshape acc to
    2-D (rows, channels) for the kernel, and the result back.

    EXAMPLE: requantize(np.array([40500, -40500], np.int32), 1696766344, -6, 0, -1000, 1000)
             -> array([500, -500], dtype=int32)

    HINTS: `np.broadcast_to(np.asarray(m0, np.int64), (N,))`; `acc.reshape(-1, N)`.
    """
    ### BEGIN SOLUTION
    acc = np.asarray(acc_i32)
    if acc.dtype.kind not in "iu":
        raise TypeError(f"requantize: acc_i32 must be an integer array, got {acc.dtype}")
    if acc.dtype.itemsize > 4 or acc.dtype == np.uint32:
        if acc.size and (acc.min() < -2**31 or acc.max() > INT32_MAX):
            raise ValueError("requantize: accumulator values must fit int32")
    if not qmin <= out_zp <= qmax:
        raise ValueError(f"requantize: need qmin <= out_zp <= qmax, got {qmin}, {out_zp}, {qmax}")
    N = acc.shape[-1] if acc.ndim else 1
    m0 = np.broadcast_to(np.asarray(m0, dtype=np.int64), (N,))
    shift = np.broadcast_to(np.asarray(shift, dtype=np.int64), (N,))
    if np.any((m0 < 0) | (m0 > INT32_MAX)) or np.any((shift < -31) | (shift > 30)):
        raise ValueError("requantize: need 0 <= m0 < 2**31 and -31 <= shift <= 30")
    if np.any(shift > 0) and acc.size:
        peak = np.abs(acc.reshape(-1, N).astype(np.int64)).max(axis=0) << np.maximum(shift, 0)
        if np.any(peak > INT32_MAX):
            raise ValueError("requantize: acc * 2**shift overflows int32")
    if qmin >= -128 and qmax <= 127:
        dtype = np.int8
    elif qmin >= 0 and qmax <= 255:
        dtype = np.uint8
    else:
        dtype = np.int32
    acc2 = np.ascontiguousarray(acc.reshape(-1, N))
    out = np.empty(acc2.shape, dtype=dtype)
    _requantize_kernel(acc2, np.ascontiguousarray(m0), np.ascontiguousarray(shift),
                       int(out_zp), int(qmin), int(qmax), out)
    return out.reshape(acc.shape)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_requantize", "locked": true, "schema_version": 3, "solution": false}
assert srdhm(40500, 1696766344) == 32000 and srdhm(-2**31, -2**31) == 2**31 - 1
assert rdbpot(32000, 6) == 500 and rdbpot(-3, 1) == -2 and rdbpot(3, 1) == 2 and rdbpot(-5, 2) == -1
_q = requantize(np.array([40500, -40500], np.int32), 1696766344, -6, 0, -1000, 1000)
assert _q.tolist() == [500, -500] and _q.dtype == np.int32
_q = requantize(np.array([[40500, 40500], [-40500, 0]], np.int32), np.array([1696766344, 2**30]), np.array([-6, -10]), 3)
assert _q.dtype == np.int8 and _q.tolist() == [[127, 23], [-128, 3]]
print("requantize: ok")

# %% [markdown]
# ## 5. The whole layer: `quantized_linear`
#
# Now put it together. An int8 input $x_q$ (scale $s_x$, zero point $z_x$) goes through symmetric int8
# weights (per-tensor $s_w$, or one $s_{w,n}$ per output channel) and an int32 bias with scale
# $s_x s_w$ and zero point 0, and comes out as int8 (scale $s_o$, zero point $z_o$):
#
# $$acc_{mn} = \sum_k (x_{mk} - z_x)\, w_{nk} + b_n, \qquad
#   q_{mn} = \mathrm{clamp}\big(z_o + \mathrm{MBQM}(acc_{mn}, M_{0,n}, \mathrm{shift}_n), -128, 127\big),
#   \qquad M_n = \frac{s_x\, s_{w,n}}{s_o}.$$
#
# Follow TFLite and compute $M_n$ in **float64** from the float32 scales. Per-channel weight scales
# just mean one $(M_0, \text{shift})$ pair per output channel, which `requantize` already takes.
# Everything between the int8 input and the int8 output is integer arithmetic.

# %% nbgrader={"grade": false, "grade_id": "quantized_linear", "locked": false, "schema_version": 3, "solution": true}
#| export
def quantized_linear(x_q, x_scale, x_zp, w_q, w_scale, bias_i32, out_scale, out_zp):
    """int8 in, int8 out: requantize(gemm_int8_zp(x_q, x_zp, w_q) + bias, M = x_scale * w_scale / out_scale).

    TODO: x_q is (K,) or (M, K) int8; w_q (N, K) int8; w_scale a scalar or (N,) scales; bias_i32 None
    or (N,) int32. Return int8 codes of shape (N,) or (M, N).

    APPROACH: view a vector as one row; acc = gemm_int8_zp(x2d, x_zp, w_q, weight_colsums(w_q));
    add the bias; multipliers M = float64(x_scale) * float64(w_scale) / float64(out_scale) (one per
    channel or one for all); m0, shift = quantize_multiplier(M); requantize(acc, m0, shift, out_zp,
    -128, 127). Call the other exercises' functions, do not re-implement them.

    EXAMPLE: x_q=[10, 20], x_scale=0.5, x_zp=0, w_q=[[1, 1]], w_scale=0.5, bias=None, out_scale=1.0,
             out_zp=0 -> acc 30, M = 0.25 -> array([8], dtype=int8)   (7.5 rounds away from zero)

    HINTS: `np.asarray(w_scale, np.float32).astype(np.float64)` keeps TFLite's float32 -> double.
    """
    ### BEGIN SOLUTION
    x = np.asarray(x_q)
    vector = x.ndim == 1
    x2 = x.reshape(1, -1) if vector else x
    w_q = np.asarray(w_q)
    acc = gemm_int8_zp(x2, x_zp, w_q, weight_colsums(w_q))
    if bias_i32 is not None:
        bias = np.asarray(bias_i32)
        if bias.shape != (w_q.shape[0],):
            raise ValueError(f"quantized_linear: bias must have shape ({w_q.shape[0]},), got {bias.shape}")
        acc += bias.astype(np.int32)
    multiplier = (np.float64(np.float32(x_scale)) * np.asarray(w_scale, np.float32).astype(np.float64)
                  / np.float64(np.float32(out_scale)))
    m0, shift = quantize_multiplier(multiplier)
    out = requantize(acc, m0, shift, out_zp, -128, 127)
    return out[0] if vector else out
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_quantized_linear", "locked": true, "schema_version": 3, "solution": false}
_y = quantized_linear(np.array([10, 20], np.int8), 0.5, 0, np.array([[1, 1]], np.int8), 0.5, None, 1.0, 0)
assert _y.dtype == np.int8 and _y.tolist() == [8]
# against float arithmetic: dequantize, multiply in float64, quantize -- within 1 LSB (double rounding)
_x = _rng.integers(-128, 128, size=(5, 64), dtype=np.int8)
_w = _rng.integers(-127, 128, size=(12, 64), dtype=np.int8)
_sw = _rng.uniform(0.002, 0.02, size=12).astype(np.float32)
_b = _rng.integers(-2000, 2000, size=12).astype(np.int32)
_yq = quantized_linear(_x, np.float32(0.05), 3, _w, _sw, _b, np.float32(0.25), -5)
_real = ((_x.astype(np.float64) - 3) @ _w.astype(np.float64).T + _b) * (np.float64(np.float32(0.05)) * _sw) / np.float64(np.float32(0.25))
_ref = np.clip(np.round(_real) - 5, -128, 127)
assert _yq.shape == (5, 12) and np.abs(_yq.astype(np.int64) - _ref).max() <= 1
print("quantized_linear: ok")

# %% [markdown]
# ## 6. Systems analysis — measured with your kernels
#
# Everything below runs your functions and times them with `tinyq.bench`: same process, interleaved
# with the baseline, after warm-up, median of several runs. The numbers come from *your* machine.
# Another CPU, or a busy one, gives other numbers. The text explains what to expect and why.

# %%
import contextlib
import io
import re
import time

import llvmlite.binding as llvm
import matplotlib.pyplot as plt
import numba

from tinyq.bench import compare, time_interleaved

rng = np.random.default_rng(19)
features = llvm.get_host_cpu_features()
cpu_flags = {f: bool(features.get(f, False)) for f in ("avx2", "fma", "avx512bw", "avx512vnni", "avxvnni")}
print("CPU (as LLVM sees it):", llvm.get_host_cpu_name(), "| Numba threads:", numba.get_num_threads())
print("instruction sets:", ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in cpu_flags.items()))


SETTLE_S = 0.2   # pause before every timed sample when numpy's BLAS is involved (section 6.2)


# %% [markdown]
# ### 6.1 Your machine's two roofs
#
# Two limits cap a kernel's speed: how fast the cores compute (flop/s) and how fast memory
# delivers bytes (B/s). The flops a kernel does per byte it reads is its **arithmetic intensity**,
# and the *roofline* says the attainable rate is
# $\min(\text{peak flop/s},\ \text{intensity} \times \text{bandwidth})$.
# Two numpy calls measure both roofs. A big float32 GEMM, with an intensity in the hundreds, gives
# the compute roof. A float32 GEMV on a matrix much larger than the caches gives the bandwidth roof,
# because all it does is stream the matrix.

# %%
n_big = 1024
a_f = rng.standard_normal((n_big, n_big), dtype=np.float32)
b_f = rng.standard_normal((n_big, n_big), dtype=np.float32)
t_sgemm = time_interleaved([lambda: a_f @ b_f.T], repeats=5)[0]
peak_gflops = 2 * n_big**3 / t_sgemm / 1e9

n_gemv = 4096
w_f = rng.standard_normal((n_gemv, n_gemv), dtype=np.float32)
x_f = rng.standard_normal(n_gemv, dtype=np.float32)
t_sgemv = time_interleaved([lambda: w_f @ x_f], repeats=7)[0]
bandwidth = w_f.nbytes / t_sgemv / 1e9
print(f"compute roof  : numpy SGEMM {n_big}^3      {t_sgemm * 1e3:7.2f} ms -> {peak_gflops:6.1f} GFLOP/s")
print(f"bandwidth roof: numpy SGEMV {n_gemv}^2 reads {w_f.nbytes / 2**20:.0f} MiB in {t_sgemv * 1e3:6.2f} ms "
      f"-> {bandwidth:5.1f} GB/s")
print(f"ridge point   : {peak_gflops / bandwidth:.1f} flop/byte (below it a kernel is memory-bound)")

# %% [markdown]
# ### 6.2 A trap when you time against numpy: threads that keep spinning
#
# numpy's BLAS (OpenBLAS) runs a large GEMM or GEMV on worker threads. When a call returns, those
# threads do not go to sleep. They **busy-wait** for the next call for a while. The timeout is set by
# the environment variable `OPENBLAS_THREAD_TIMEOUT`, and by default it is of the order of 0.1 s.
# A Numba kernel that starts right after a numpy call therefore shares a core with a spinning thread.
# `compare` interleaves candidate and baseline, so every candidate sample starts right after a
# baseline sample. Measure the same kernel three ways:

# %%
a8 = rng.integers(-128, 128, size=(n_big, n_big), dtype=np.int8)
w8 = rng.integers(-127, 128, size=(n_big, n_big), dtype=np.int8)
a8f, w8f = a8.astype(np.float32), w8.astype(np.float32)
t_alone = time_interleaved([lambda: gemm_int8(a8, w8)], repeats=5)[0]
plain = compare(lambda: gemm_int8(a8, w8), lambda: a8f @ w8f.T, repeats=5)
settled = compare(lambda: gemm_int8(a8, w8), lambda: a8f @ w8f.T, repeats=5, settle_s=SETTLE_S)
print(f"gemm_int8 {n_big}^3 timed alone               : {t_alone * 1e3:6.2f} ms")
print(f"  interleaved right after numpy (compare) : {plain.candidate_s * 1e3:6.2f} ms -> {plain.speedup:.2f}x numpy")
print(f"  with a {SETTLE_S:.1f} s pause before each sample : {settled.candidate_s * 1e3:6.2f} ms -> {settled.speedup:.2f}x numpy")

# %% [markdown]
# On a 2-core machine the middle line can be twice as slow as the others. The kernel is the same;
# it just had half a machine. So every comparison below uses `compare(..., settle_s=SETTLE_S)`: the
# same interleaved timing, with a pause before each sample so both sides start on quiet cores. A real
# program that calls numpy and Numba kernels in turn *does* pay this price. That is one more reason
# to keep a hot loop in one runtime, or to shorten the spin (`OPENBLAS_THREAD_TIMEOUT=4`, set
# before numpy is imported). It is also a reason to distrust any single speedup number until you
# know what else was running.

# %% [markdown]
# ### 6.3 GEMV: int8 weights against float32, across sizes
#
# Your `gemv_w8` reads 1 byte per weight where numpy reads 4. If both ran at the bandwidth roof, int8
# would be 4x faster. Two things get in the way. Converting each code to float costs instructions,
# and at small sizes both matrices fit in cache, where the bandwidth is much higher and each call
# does very little work. Also watch for the size at which the *float32* matrix no longer fits in the
# last-level cache while the int8 one still does. The ratio can then go beyond 4x. That is a cache
# effect, not magic.

# %%
gemv_rows = []
for n in (512, 1024, 2048, 4096):
    wf = rng.standard_normal((n, n), dtype=np.float32) if n != n_gemv else w_f
    xf = rng.standard_normal(n, dtype=np.float32)
    scale = (np.abs(wf).max(axis=1) / 127).astype(np.float32)
    wq = np.clip(np.rint(wf / scale[:, None]), -127, 127).astype(np.int8)
    r = compare(lambda: gemv_w8(wq, scale, xf), lambda: wf @ xf, repeats=5, settle_s=SETTLE_S)
    gemv_rows.append((n, wf.nbytes, wq.nbytes, r.baseline_s, r.candidate_s, r.speedup))
print(f"{'N=K':>6} {'fp32 MiB':>9} {'int8 MiB':>9} {'numpy ms':>9} {'gemv_w8 ms':>11} {'speedup':>8} {'int8 GB/s':>10}")
for n, fb, qb, tb, tc, sp in gemv_rows:
    print(f"{n:>6} {fb / 2**20:9.1f} {qb / 2**20:9.1f} {tb * 1e3:9.3f} {tc * 1e3:11.3f} {sp:7.2f}x {qb / tc / 1e9:10.1f}")
gemv_speedup_4096 = gemv_rows[-1][-1]

# %% [markdown]
# ### 6.4 GEMM: int8 against float32, and against the libraries
#
# A 1024³ GEMM does 2.1 GFLOP on 8 MiB of float32 operands. Its intensity is far above the ridge
# point, so it is **compute-bound**: reading fewer bytes buys almost nothing, and what counts is
# multiply-adds per instruction (the table of section 2b). `gemm_int8` lets LLVM choose, and LLVM
# chooses `vpmulld`: 8 multiply-adds per multiply, like `vfmadd231ps`, plus widening instructions, so
# it lands below numpy's SGEMM. `gemm_u8s8` asks for `vpmaddubsw` + `vpmaddwd`: 32 multiply-adds per
# pair of multiplies, twice float32's budget, and on plain AVX2 it lands near 2x. Where the CPU has
# VNNI, its `vpdpbusd` branch does 32 per instruction, and the ceiling is 4x. With full-range
# activations and no VNNI it runs the split (two passes) and gives half of that back. The table times all of them, interleaved
# with numpy, on your machine (`time_interleaved` with a settle pause before each sample).
#
# Then the libraries at 1024³, where they are installed: ONNX Runtime's `MatMulInteger` (uint8 x int8
# to int32, the weight given as a constant so ORT packs it once) and PyTorch's dynamic int8 `Linear`
# (fbgemm: float in, float out, it quantizes the activations to 7 bits on every call). Both run the
# same `vpmaddubsw` chain (or VNNI's `vpdpbusd` where the CPU has it). Each gets the same number of
# threads as numpy and your kernels. Neither package is needed by tinyq: a missing one is reported,
# not an error.

# %%
from tinyq.baselines import ort_matmul_integer, torch_dynamic_linear   # hand-written support


def pause():
    time.sleep(SETTLE_S)


threads = numba.get_num_threads()
gemm_rows, library_rows = [], []
for m, n, k in ((1024, 1024, 1024), (64, 4096, 1024)):
    aq = rng.integers(-128, 128, size=(m, k), dtype=np.int8)
    wq = rng.integers(-127, 128, size=(n, k), dtype=np.int8)
    au7 = rng.integers(0, 128, size=(m, k), dtype=np.uint8)     # 7-bit activations: one pass
    au8 = rng.integers(0, 256, size=(m, k), dtype=np.uint8)     # full range: the split without VNNI
    af, wf = aq.astype(np.float32), wq.astype(np.float32)
    runs = [("numpy fp32 SGEMM", lambda: af @ wf.T), ("gemm_int8", lambda: gemm_int8(aq, wq)),
            ("gemm_u8s8, 7-bit A", lambda: gemm_u8s8(au7, wq)), ("gemm_u8s8, 8-bit A", lambda: gemm_u8s8(au8, wq))]
    if (m, n, k) == (1024, 1024, 1024):                       # the libraries, where installed
        ort_fn = ort_matmul_integer(wq, threads)
        if ort_fn is None:
            print("onnxruntime (or onnx) is not installed: no ONNX Runtime row (pip install -e '.[deploy]')")
        else:
            assert np.array_equal(ort_fn(au7), gemm_u8s8(au7, wq))       # the same exact int32 result
            runs.append(("ONNX Runtime MatMulInteger, 7-bit A", lambda: ort_fn(au7)))
        torch_fn = torch_dynamic_linear(wf, threads)
        if torch_fn is None:
            print("torch is not installed: no fbgemm row")
        else:
            au7f = au7.astype(np.float32)
            runs.append(("torch dynamic int8 Linear (fbgemm)", lambda: torch_fn(au7f)))
    timed = []
    for _, fn in runs:
        timed += [fn, pause]                                     # a settle pause before every sample
    times = time_interleaved(timed, repeats=5)[::2]
    gemm_rows.append(((m, n, k), *times[:4]))
    if (m, n, k) == (1024, 1024, 1024):
        library_rows = [(label, t) for (label, _), t in zip(runs, times)]
print(f"{'M x N x K':>16} {'numpy fp32 ms':>14} {'gemm_int8':>16} {'gemm_u8s8 7-bit':>18} {'gemm_u8s8 8-bit':>18}")
for (m, n, k), t_np, t_i8, t_u7, t_u8 in gemm_rows:
    print(f"{f'{m}x{n}x{k}':>16} {t_np * 1e3:14.3f} " + " ".join(
        f"{t * 1e3:9.3f} ({t_np / t:4.2f}x)" for t in (t_i8, t_u7, t_u8)))
print(f"\n1024^3 on {threads} thread(s), all interleaved, median of 5:")
for label, t in library_rows:
    print(f"  {label:36} {t * 1e3:8.2f} ms  {library_rows[0][1] / t:5.2f}x numpy SGEMM")
gemm_speedup_1024 = gemm_rows[0][1] / gemm_rows[0][2]
u8s8_speedup_1024 = gemm_rows[0][1] / gemm_rows[0][3]

# %% [markdown]
# The last row is a "fat GEMV": $M = 64$ tokens against a $4096 \times 1024$ weight. The weights are
# read once for only 64 uses, so bytes matter again. The roofline below puts every kernel you timed
# on one picture. On the x axis is flops per byte, counting the weights, the inputs and the output
# as each crossing the memory bus once. On the y axis is the achieved rate in GFLOP/s (for int8,
# GOP/s). Points under the slanted line are limited by memory, points under the flat line by compute.

# %%
def intensity(m, n, k, a_bytes, w_bytes, c_bytes):
    """flops per byte when A (m x k), W (n x k) and C (m x n) each cross the memory bus once."""
    return 2 * m * n * k / (a_bytes * m * k + w_bytes * n * k + c_bytes * m * n)


gemv_flops = 2 * n_gemv**2
points = [("fp32 GEMV", intensity(1, n_gemv, n_gemv, 4, 4, 4), gemv_flops / gemv_rows[-1][3] / 1e9),
          ("int8 GEMV (gemv_w8)", intensity(1, n_gemv, n_gemv, 4, 1, 4), gemv_flops / gemv_rows[-1][4] / 1e9)]
for (m, n, k), tb, t_i8, t_u7, _ in gemm_rows:
    points.append((f"fp32 {m}x{n}x{k}", intensity(m, n, k, 4, 4, 4), 2 * m * n * k / tb / 1e9))
    points.append((f"int8 {m}x{n}x{k}", intensity(m, n, k, 1, 1, 4), 2 * m * n * k / t_i8 / 1e9))
    points.append((f"u8s8 {m}x{n}x{k}", intensity(m, n, k, 1, 1, 4), 2 * m * n * k / t_u7 / 1e9))
ai = np.logspace(-1, 3, 200)
plt.figure(figsize=(7, 4))
plt.loglog(ai, np.minimum(peak_gflops, ai * bandwidth), "k-", lw=2, label="roofline (measured with numpy)")
for label, x_ai, gf in points:
    fp32 = label.startswith("fp32")
    color = "tab:blue" if fp32 else "tab:green" if label.startswith("u8s8") else "tab:red"
    plt.loglog([x_ai], [gf], "o" if fp32 else "s", color=color)
    plt.annotate(label, (x_ai, gf), fontsize=7, xytext=(4, -10), textcoords="offset points")
plt.xlabel("arithmetic intensity (flop per byte moved)")
plt.ylabel("GFLOP/s (int8: GOP/s)")
plt.title("Roofline: gemm_int8 / gemv_w8 (red), gemm_u8s8 (green), numpy fp32 (blue)")
plt.legend(loc="lower right"); plt.grid(True, which="both", alpha=0.3); plt.tight_layout()

# %% [markdown]
# The int8 GEMV usually lands *above* the DRAM roofline. That is not an error: its 16 MiB of weights
# fit in a large last-level cache, so it streams from cache, not from DRAM. The float32 matrix, at
# 64 MiB, does not fit. Try `n_gemv = 8192` (256 MiB in float32) to see both come from DRAM.

# %% [markdown]
# ### 6.5 What the zero-point correction costs
#
# The correction $-z_a c_n$ is $O(MN)$ work on top of the GEMM's $O(MNK)$, and computing the weight
# sums $c_n$ is $O(NK)$. For a big batch both are negligible. For $M = 1$ (decoding one token),
# computing the sums costs as much as the GEMV itself. Hence: **precompute the sums once per layer.**
# The table times `gemm_int8` alone, `gemm_int8_zp` with the sums given, and `gemm_int8_zp`
# recomputing them on every call. All three are Numba or numpy-reduction code, so no BLAS threads
# are involved and plain `time_interleaved` is fair.

# %%
zp_rows = []
for m, n, k in ((1, 4096, 4096), (16, 2048, 2048), (256, 1024, 1024)):
    aq = rng.integers(-128, 128, size=(m, k), dtype=np.int8)
    wq = rng.integers(-127, 128, size=(n, k), dtype=np.int8)
    cs = weight_colsums(wq)
    t_plain, t_pre, t_fly = time_interleaved([lambda: gemm_int8(aq, wq), lambda: gemm_int8_zp(aq, 7, wq, cs),
                                              lambda: gemm_int8_zp(aq, 7, wq)], repeats=5)
    zp_rows.append(((m, n, k), t_plain, t_pre, t_fly))
print(f"{'M x N x K':>16} {'gemm_int8 ms':>13} {'zp, sums given':>18} {'zp, sums per call':>19}")
for (m, n, k), t0, t1, t2 in zp_rows:
    print(f"{f'{m}x{n}x{k}':>16} {t0 * 1e3:13.3f} {t1 * 1e3:10.3f} ({t1 / t0:4.2f}x) {t2 * 1e3:11.3f} ({t2 / t0:4.2f}x)")

# %% [markdown]
# ### 6.6 Fixed point against float rounding, and the whole layer
#
# How often does gemmlowp's doubly rounded result differ from $\mathrm{round}(acc \cdot M)$ computed
# in float64? Count it on a million random accumulators. Then time the whole int8 layer against
# float32 `x @ w.T + b` at a prefill-like shape, and check it against float arithmetic. With int8
# activations the layer runs on `gemm_int8`, which lands below SGEMM (6.4), and it adds a
# requantization pass over the outputs and the weight sums, so expect it to be *slower* than float32.
# Fed uint8 activations it would take `gemm_u8s8`'s path instead (7-bit ones in one pass). In a real engine you would
# compute the sums and multipliers once, when the layer is built, and fuse requantization into the
# GEMM's final loop so the int32 accumulators never go back to memory.

# %%
acc_samples = rng.integers(-2**24, 2**24, size=1_000_000).astype(np.int32)
mult = 0.0123456
fixed = requantize(acc_samples, *quantize_multiplier(mult), 0, -2**31, 2**31 - 1).astype(np.int64)
exact = acc_samples.astype(np.float64) * mult
rounded = np.sign(exact) * np.floor(np.abs(exact) + 0.5)
diff = fixed - rounded
print(f"fixed point vs round-half-away(acc * M) in float64: {np.count_nonzero(diff)} of {diff.size} differ, "
      f"max |diff| = {np.abs(diff).max():.0f}")

m_tok, k_in, n_out = 128, 1024, 1024
x_q = rng.integers(-128, 128, size=(m_tok, k_in), dtype=np.int8)
w_fl = rng.standard_normal((n_out, k_in)).astype(np.float32) * 0.05
w_scale = (np.abs(w_fl).max(axis=1) / 127).astype(np.float32)
w_q = np.clip(np.rint(w_fl / w_scale[:, None]), -127, 127).astype(np.int8)
x_scale, x_zp, out_scale, out_zp = np.float32(0.02), -3, np.float32(0.5), 2
bias = rng.integers(-5000, 5000, size=n_out).astype(np.int32)
x_fl = ((x_q.astype(np.float32) - x_zp) * x_scale).astype(np.float32)
w_dq = (w_q.astype(np.float32) * w_scale[:, None]).astype(np.float32)
b_fl = (bias * x_scale * w_scale).astype(np.float32)
layer = compare(lambda: quantized_linear(x_q, x_scale, x_zp, w_q, w_scale, bias, out_scale, out_zp),
                lambda: x_fl @ w_dq.T + b_fl, repeats=5, settle_s=SETTLE_S)
y_q = quantized_linear(x_q, x_scale, x_zp, w_q, w_scale, bias, out_scale, out_zp)
y_ref = np.clip(np.round((x_fl.astype(np.float64) @ w_dq.T.astype(np.float64) + b_fl) / out_scale) + out_zp, -128, 127)
lsb = np.abs(y_q.astype(np.int64) - y_ref)
print(f"quantized_linear {m_tok}x{k_in} -> {n_out}: {layer.candidate_s * 1e3:.2f} ms vs float32 "
      f"{layer.baseline_s * 1e3:.2f} ms ({layer.speedup:.2f}x); outputs within {lsb.max():.0f} LSB of float, "
      f"{np.mean(lsb == 0) * 100:.2f}% identical")
fig, ax = plt.subplots(1, 2, figsize=(8, 2.8))
ax[0].hist(diff, bins=np.arange(-2.5, 3), rwidth=0.8)
ax[0].set_yscale("log"); ax[0].set_title("fixed point - float rounding"); ax[0].set_xlabel("LSB")
ax[1].bar(["GEMV 4096²", "GEMM s8s8", "GEMM u8s8", "int8 layer"],
          [gemv_speedup_4096, gemm_speedup_1024, u8s8_speedup_1024, layer.speedup],
          color=["tab:green", "tab:orange", "tab:red", "tab:purple"])
ax[1].axhline(1.0, color="k", lw=1); ax[1].set_ylabel("speedup vs numpy fp32"); plt.tight_layout()

# %% [markdown]
# ### 6.7 The kernel path: what LLVM actually built
#
# Do not guess which instructions your kernel uses; Numba will show you. `kernel.inspect_asm()`
# returns the x86 assembly of every signature the kernel was compiled for. Count the instructions
# that matter:
# * register width: `ymm` is 256-bit AVX2, `xmm` 128-bit, `zmm` AVX-512;
# * int8 widening: `vpmovsxbd` turns 8 int8 into 8 int32, `vpmovsxbw` 16 int8 into 16 int16;
# * multiplies: `vpmulld`, `vpmaddwd`, `vpdpbusd`;
# * in the GEMV, the float conversion and FMA: `vcvtdq2ps`, `vfmadd231ps`.
#
# `parallel_diagnostics()` tells you which loops `prange` turned into parallel work. The counts are
# static (instructions present in the code, not instructions executed), but they show the path.
# One catch: a kernel that `cache=True` loaded from disk carries machine code only, with no assembly
# text and no diagnostics. So the cell compiles a fresh, uncached copy of each kernel for the same
# argument types and inspects that copy.

# %%
ASM_PATTERNS = {"ymm": r"%ymm\d", "xmm": r"%xmm\d", "zmm": r"%zmm\d", "vpmovsxbd": r"\bvpmovsxbd\b",
                "vpmovsxbw": r"\bvpmovsxbw\b", "vpmulld": r"\bvpmulld\b", "vpmaddwd": r"\bvpmaddwd\b",
                "vpmaddubsw": r"\bvpmaddubsw\b", "vpdpbusd": r"\bvpdpbusd\b", "vpdpwssd": r"\bvpdpwssd\b",
                "vcvtdq2ps": r"\bvcvtdq2ps\b", "vfmadd*ps": r"\bvfmadd\d+ps\b"}


def fresh_copy(kernel):
    """An uncached copy of a Numba kernel, compiled for the argument types the kernel has seen."""
    options = {k: v for k, v in kernel.targetoptions.items() if k != "cache"}  # a cached copy would load again
    copy = numba.njit(**options)(kernel.py_func)
    for signature in kernel.signatures:
        copy.compile(signature)
    return copy


def asm_profile(kernel):
    """How often each pattern occurs in the assembly of every signature `kernel` was compiled for."""
    text = "\n".join(kernel.inspect_asm().values())
    return {name: len(re.findall(pattern, text)) for name, pattern in ASM_PATTERNS.items()}


def hot_loop(kernel, mnemonic):
    """The loop (label ... backward jump) of the assembly densest in `mnemonic` instructions."""
    lines = "\n".join(kernel.inspect_asm().values()).splitlines()
    labels = {ln.strip()[:-1]: i for i, ln in enumerate(lines) if re.match(r"^\.LBB\S+:$", ln.strip())}
    best = None
    for i, ln in enumerate(lines):
        jump = re.match(r"^\s+j\w+\s+(\.LBB\S+)$", ln)
        if jump and jump.group(1) in labels and labels[jump.group(1)] < i:
            body = lines[labels[jump.group(1)]:i + 1]
            count = sum(mnemonic in b for b in body)
            if count and (best is None or count / len(body) > sum(mnemonic in b for b in best) / len(best)):
                best = body
    return best or []


kernels = {name: fresh_copy(k) for name, k in (("_gemv_w8_kernel", _gemv_w8_kernel),
                                               ("_gemm_int8_kernel", _gemm_int8_kernel),
                                               ("_gemm_u8s8_kernel", _gemm_u8s8_kernel),
                                               ("_requantize_kernel", _requantize_kernel))}
profiles = {name: asm_profile(k) for name, k in kernels.items()}
names = list(next(iter(profiles.values())))
print(f"{'kernel':>20} " + " ".join(f"{n:>10}" for n in names))
for kernel_name, prof in profiles.items():
    print(f"{kernel_name:>20} " + " ".join(f"{prof[n]:>10}" for n in names))

loop = hot_loop(kernels["_gemm_int8_kernel"], "vpmulld")
print(f"\nthe multiply loop of _gemm_int8_kernel ({len(loop)} lines):")
print("\n".join(loop))

loop = hot_loop(kernels["_gemm_u8s8_kernel"], "vpdpbusd" if HAS_VNNI else "vpmaddubsw")
print(f"\nthe multiply loop of _gemm_u8s8_kernel ({len(loop)} lines):")
print("\n".join(loop))

buffer = io.StringIO()
with contextlib.redirect_stdout(buffer):
    kernels["_gemm_int8_kernel"].parallel_diagnostics(level=1)
lines = [ln for ln in buffer.getvalue().splitlines() if re.search(r"prange", ln)]
print("\nparallel diagnostics of _gemm_int8_kernel (the loops turned into parallel work):")
print("\n".join(lines[:12]))

# %% [markdown]
# How to read it, for the reference solution on an x86 machine with AVX2 (yours may differ):
#
# * The GEMV kernel runs entirely on `ymm` registers. `vpmovsxbd` widens 8 codes, `vcvtdq2ps` turns
#   them into floats and `vfmadd231ps` accumulates: 3 instructions per 8 weights. That is less work
#   than the memory system needs to deliver those 8 bytes, so the GEMV stays memory-bound, as it
#   should.
# * The GEMM's multiply loop (printed above) is 6 `vpmovsxbd` (4 rows of A and 2 rows of W, 8 values
#   each), 8 `vpmulld` and 8 `vpaddd`: the 4 x 2 tile, 8 lanes of $k$ at a time. That is 8 int32
#   multiply-adds per multiply, the same lane count as `vfmadd231ps`, and it comes with extra
#   widening instructions. The few `vpmaddwd` in the profile belong to `_dot_i8`, which handles the
#   leftover rows and columns. LLVM forms `vpmaddwd` from a plain loop only when each widened operand
#   feeds a *single* multiply. Register blocking reuses every widened value 2 or 4 times, so the hot
#   loop keeps `vpmulld`, and the kernel lands below float32 (compare your table in 6.4).
# * `_gemm_u8s8_kernel`'s loop is what you asked for, instruction by instruction. On a CPU with VNNI
#   it is 7 loads (some folded into the multiplies as memory operands) and 12 `vpdpbusd`: 384
#   multiply-adds in 12 instructions, 4x float32's 8 per FMA. On plain AVX2 it is 12 `vpmaddubsw`,
#   12 `vpmaddwd` against the register of ones and 12 `vpaddd`: 32 multiply-adds per pair of
#   multiplies, 2x float32. (On an AVX512-VNNI CPU the AVX2 branch, compiled there, shows
#   `vpdpwssd` instead of `vpmaddwd` + `vpaddd`: LLVM fuses the int16 multiply-add and the add into
#   VNNI's int16 instruction by itself.) Hence the place of `gemm_u8s8` in 6.4, next to ONNX Runtime
#   and fbgemm, which run the same instructions. The loop may use `ymm16`-`ymm31` as well: LLVM
#   compiles for the host CPU, and AVX512VL gives 32 vector registers.
# * If you see `xmm` where you expected `ymm`, or `vpmuldq`/`vpmuludq` (64-bit products) instead of
#   `vpmulld`, an int64 has crept in: look for a missing `np.int32(...)` around the accumulation.
#
# **Summary.** int8 wins where bytes dominate. The GEMV, which is the LLM decode shape, runs several
# times faster with 4x smaller weights, on any CPU. Where compute dominates, as in the big GEMM,
# int8 wins by the instructions it uses: left to LLVM's choice (`vpmulld`) it stays below float32,
# and with `vpmaddubsw` + `vpmaddwd` on plain AVX2 it does 32 multiply-adds where an FMA does 8 and
# reaches about 2x float32, provided a 7-bit operand (or the split) keeps the int16 pair sums exact;
# VNNI's `vpdpbusd` takes it further. Requantizing in
# fixed point costs one pass over the outputs and makes the layer bit-exact with TFLite. Finally,
# the way you time changes the answer. Threads left spinning by one library can halve the speed of
# the next one, so look at what else is running before you believe a speedup.
