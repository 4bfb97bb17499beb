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
# # Module 20: INT8 GEMM kernels on the GPU — CUDA for CuPy, built and checked on the CPU
#
# Module 19 wrote an int8 GEMM for a CPU core: `C = A_q @ W_q.T` with int8 operands and int32
# accumulators. This module writes the same GEMM four times as CUDA C kernels that CuPy launches
# (`cupy.RawKernel`), each one a step up the ladder every GPU GEMM climbs:
#
# | variant | idea | what it removes |
# |---|---|---|
# | `naive` | one thread per output | nothing: every operand byte comes from DRAM/L2, K times per row |
# | `tiled` | blocks stage tiles of A and W in **shared memory** | global traffic: each byte is read once per tile, reused 32 times |
# | `dp4a`  | `__dp4a` (4 int8 products + int32 in one instruction) and a 4x4 **register tile** per thread, 16-byte loads | instruction count: 4 multiply-adds per instruction, 8 shared loads for 16 dp4a |
# | `mma`   | int8 **tensor cores**: `mma.sync.m16n8k32`, one warp multiplies 16x32 by 32x8 | the scalar pipeline: 4096 multiply-adds per warp instruction |
#
# **No GPU needed to do this module.** Everything you write is compiled, inspected and checked on
# the CPU:
# * NVIDIA's runtime compiler NVRTC (`pip install -e '.[nvrtc]'`, included in `.[gpu]`: the `cuda-bindings` and
#   `nvidia-cuda-nvrtc-cu12` wheels) turns your CUDA C into PTX and machine code for `sm_75`
#   (Turing, Colab's T4), `sm_80` (A100) and `sm_90` (H100) without a driver; `tinyq.cuda_nvrtc`
#   reads back registers per thread, spills, shared memory and the instructions the compiler chose.
# * A small CPU emulator (`tinyq.cuda_emulator`) compiles the **same source, unchanged**, with g++:
#   every CUDA thread is a `std::thread`, `__syncthreads()` a barrier, `__shared__` one array per
#   block, and the tensor-core instruction a function that follows the PTX ISA's fragment layout.
#   Your kernels' results are graded there, exactly.
#
# Speed needs a GPU. Where one exists (Colab's T4 runs `naive`, `tiled`, `dp4a`; `mma` needs an
# A100/H100-class `sm_80+`), the same tests run your kernels on it and time them against cuBLAS.
#
# **How to work**: edit the cells marked `# YOUR CODE HERE`, run the test below each one, then
# `tito export 20` and `tito test 20` in a terminal to grade your package.

# %%
#| default_exp gpu_kernels

# %%
#| export
import numpy as np

from tinyq.cuda_emulator import emulate as _emulate
from tinyq.cuda_nvrtc import compile_report as _compile_report
from tinyq.cuda_nvrtc import raw_kernel as _raw_kernel

VARIANTS = ("naive", "tiled", "dp4a", "mma")
KERNEL_NAMES = {"naive": "gemm_naive", "tiled": "gemm_tiled", "dp4a": "gemm_dp4a", "mma": "gemm_mma"}

# %% [markdown]
# ## 1. The memory hierarchy, and the first kernel
#
# A GPU runs thousands of threads in groups of 32, **warps**, that issue one instruction together.
# Threads are grouped into **blocks** (up to 1024 threads) that run on one streaming multiprocessor
# (SM) and share its fast on-chip **shared memory**; the blocks of a launch form a **grid**.
#
# | level | size (H100) | latency | who sees it |
# |---|---|---|---|
# | registers | 64 K x 32 bit per SM | 1 cycle | one thread |
# | shared memory / L1 | up to 228 KiB per SM | ~30 cycles | one block |
# | L2 | 50 MiB | ~200 cycles | everyone |
# | HBM (global) | 80 GB, 3.35 TB/s | ~500 cycles | everyone |
#
# **Coalescing**: a warp's 32 loads are served together when they fall in the same 32-byte
# sectors. If consecutive threads read consecutive addresses, one transaction feeds many threads;
# if each thread reads its own row (stride K), every thread pays for a whole sector.
#
# The naive kernel gives each thread one output `C[m, n] = sum_k A[m, k] W[n, k]` and reads both
# rows straight from global memory. Both operands are row-major int8 (`W` is `[N, K]`, like a
# `Linear` weight), so the product is `A @ W.T`. Every CUDA kernel of this module has one signature:
#
# ```c
# extern "C" __global__ void gemm_<variant>(const signed char* A, const signed char* W, int* C,
#                                           int M, int N, int K)
# ```
# `extern "C"` keeps the name unmangled so that CuPy finds it. Threads are numbered by
# `blockIdx`, `blockDim` and `threadIdx` (x fastest); a thread outside the `M x N` output must write
# nothing (the grid is rounded up to whole blocks). Index with `size_t` so that `m * K` cannot
# overflow an `int` on large matrices.

# %% nbgrader={"grade": false, "grade_id": "naive_source", "locked": false, "schema_version": 3, "solution": true}
#| export
def naive_source():
    """The CUDA C of `gemm_naive`: one thread per output element.

    TODO: return the source (a Python string) of
    `extern "C" __global__ void gemm_naive(const signed char* A, const signed char* W, int* C,
    int M, int N, int K)` that computes C[m, n] = sum over k of A[m, k] * W[n, k] (row-major, int32
    accumulation) for ANY M, N, K >= 1.

    APPROACH: the column n comes from the x dimensions (blockIdx.x times blockDim.x plus threadIdx.x),
    the row m from the y dimensions. A thread whose (m, n) falls outside the matrix returns at once.
    Otherwise it walks k over both rows, accumulating int products in an int, and stores one int.
    Launched by `launch_config("naive", M, N)` (section 5): blocks of 32 x 8 threads.

    EXAMPLE: a 3 x 2 output with blocks of 32 x 8 threads: one block, of which 6 threads write.

    HINTS: cast each signed char to int before multiplying. Compute the row pointers with a size_t
    offset. Consecutive threadIdx.x should mean consecutive n, so the stores of a warp coalesce.
    """
    ### BEGIN SOLUTION
    return r'''
extern "C" __global__ void gemm_naive(const signed char* __restrict__ A, const signed char* __restrict__ W,
                                      int* __restrict__ C, int M, int N, int K) {
    int n = blockIdx.x * blockDim.x + threadIdx.x;     // consecutive threads: consecutive columns of C
    int m = blockIdx.y * blockDim.y + threadIdx.y;
    if (m >= M || n >= N) return;
    const signed char* arow = A + (size_t)m * K;
    const signed char* wrow = W + (size_t)n * K;
    int acc = 0;
    for (int k = 0; k < K; ++k)
        acc += (int)arow[k] * (int)wrow[k];
    C[(size_t)m * N + n] = acc;
}
'''
    ### END SOLUTION


# %% [markdown]
# The emulator runs it on the CPU: `emulate(source, name, grid, block, *args)` launches the blocks
# one after another, each with one `std::thread` per CUDA thread. The first call compiles the
# source with g++ (about a second, then cached by the source's hash).

# %% nbgrader={"grade": false, "grade_id": "test_naive_source", "locked": true, "schema_version": 3, "solution": false}
from tinyq.cuda_emulator import emulate, find_compiler

_rng = np.random.default_rng(0)


def _check_in_emulator(source, name, grid, block, m, n, k):
    a = _rng.integers(-128, 128, size=(m, k), dtype=np.int8)
    w = _rng.integers(-128, 128, size=(n, k), dtype=np.int8)
    c = np.full((m, n), -1, np.int32)            # poisoned: every output must be written
    emulate(source, name, grid, block, a, w, c, m, n, k)
    expected = a.astype(np.int32) @ w.astype(np.int32).T
    assert np.array_equal(c, expected), f"{name} is wrong at M={m} N={n} K={k}"


if find_compiler() is None:
    print("no C++20 compiler here: the emulator checks are skipped")
else:
    _check_in_emulator(naive_source(), "gemm_naive", (1, 1), (32, 8), 3, 2, 5)
    _check_in_emulator(naive_source(), "gemm_naive", (2, 3), (32, 8), 17, 33, 40)
    print("naive_source: ok")

# %% [markdown]
# ## 2. Shared-memory tiles: read once, use 32 times
#
# In the naive kernel, the 32 threads of a warp that share a row `m` each read `A[m, k]`
# separately, and each `W` byte is read by every row of outputs: `2 M N K` loads for `2 M N K`
# operations. A **tile** fixes that: a block computes a `32 x 32` tile of `C`; in steps of 32 along
# K it first copies the `32 x 32` tiles of `A` and `W` into shared memory (each thread copies a few
# bytes, consecutive threads consecutive bytes: coalesced), waits for the whole block
# (`__syncthreads()`), then every thread computes from shared memory, and waits again before the
# next tile overwrites it. Each global byte now serves 32 outputs: the arithmetic intensity grows
# 32-fold.
#
# Two details decide the speed of shared memory. It has 32 **banks** of 4 bytes; threads of a warp
# hitting different addresses in one bank wait for each other. Storing the tiles widened to `int`
# with one column of padding (`[32][33]`) puts the 32 rows of a column in 32 different banks. And
# **register reuse**: with blocks of 32 x 8 threads, each thread computes 4 outputs of the same
# column, so one `W` value from shared memory feeds 4 multiply-adds.

# %% nbgrader={"grade": false, "grade_id": "tiled_source", "locked": false, "schema_version": 3, "solution": true}
#| export
def tiled_source():
    """The CUDA C of `gemm_tiled`: 32 x 32 output tiles staged through shared memory.

    TODO: return the source of `extern "C" __global__ void gemm_tiled(...)` (the signature of
    gemm_naive) for blocks of 32 x 8 threads, each block one 32 x 32 tile of C, each thread 4 outputs
    of one column (rows ty, ty + 8, ty + 16, ty + 24 of the tile). Exact for ANY M, N, K.

    APPROACH: two `__shared__ int` tiles [32][33]. For k0 = 0, 32, 64, ...: every thread copies rows
    ty, ty + 8, ... of the A tile and of the W tile at column tx (the k offset), writing 0 where the
    row or k is outside the matrix; barrier; accumulate over the 32 k of the tile, reading one W value
    per k and four A values; barrier. Finally write the 4 outputs that are inside C.

    EXAMPLE: M = N = 40, K = 70: a grid of 2 x 2 blocks and 3 tiles along K, the last one 6 wide
    (zero-filled beyond K, so the zeros add nothing).

    HINTS: the zero fill is what makes odd shapes exact, and it must happen before the first barrier.
    The second barrier matters as much as the first: without it a fast warp overwrites a tile others
    still read. Every thread must reach every barrier, so do not return early.
    """
    ### BEGIN SOLUTION
    return r'''
#define TILE 32
extern "C" __global__ void gemm_tiled(const signed char* __restrict__ A, const signed char* __restrict__ W,
                                      int* __restrict__ C, int M, int N, int K) {
    __shared__ int As[TILE][TILE + 1];     // A[m0 + r][k0 + k] widened to int; +1 spreads a column over the banks
    __shared__ int Ws[TILE][TILE + 1];     // W[n0 + r][k0 + k]
    int tx = threadIdx.x, ty = threadIdx.y;
    int m0 = blockIdx.y * TILE, n0 = blockIdx.x * TILE;
    int acc[4] = {0, 0, 0, 0};
    for (int k0 = 0; k0 < K; k0 += TILE) {
        for (int r = ty; r < TILE; r += 8) {           // a warp copies 32 consecutive bytes of one row
            int kk = k0 + tx;
            As[r][tx] = (m0 + r < M && kk < K) ? (int)A[(size_t)(m0 + r) * K + kk] : 0;
            Ws[r][tx] = (n0 + r < N && kk < K) ? (int)W[(size_t)(n0 + r) * K + kk] : 0;
        }
        __syncthreads();
        for (int k = 0; k < TILE; ++k) {
            int wv = Ws[tx][k];
            for (int i = 0; i < 4; ++i)
                acc[i] += As[ty + 8 * i][k] * wv;
        }
        __syncthreads();
    }
    for (int i = 0; i < 4; ++i) {
        int m = m0 + ty + 8 * i, n = n0 + tx;
        if (m < M && n < N) C[(size_t)m * N + n] = acc[i];
    }
}
'''
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_tiled_source", "locked": true, "schema_version": 3, "solution": false}
if find_compiler() is not None:
    _check_in_emulator(tiled_source(), "gemm_tiled", (1, 1), (32, 8), 5, 7, 3)
    _check_in_emulator(tiled_source(), "gemm_tiled", (2, 2), (32, 8), 40, 33, 70)
    print("tiled_source: ok")

# %% [markdown]
# ## 3. `__dp4a` and a register tile
#
# The tiled kernel spends most of its instructions on moving data: per multiply-add it loads a
# value from shared memory. Two changes turn that around.
#
# * **`__dp4a(a, b, c)`** (`sm_61+`) treats two 32-bit registers as four int8 each and returns
#   `c + a0*b0 + a1*b1 + a2*b2 + a3*b3`: four multiply-adds in one instruction, and the operands stay
#   packed four to a register (and four to a shared-memory word).
# * A **register tile**: each of the 16 x 16 threads of a block computes a 4 x 4 patch of a 64 x 64
#   output tile. Per step it loads 4 words of A and 4 of W from shared memory and issues 16 `dp4a`:
#   64 multiply-adds for 8 loads.
#
# The tiles come in with 16-byte loads (`ld.global.v4`, one `int4` per thread) where a row is
# whole and 16-byte aligned, byte by byte at the ragged edges. That loader is given (below): it is
# the same for the tensor-core kernel. The shared tiles are `int [64][LDS]`, 8 words (32 int8 of K)
# per row plus padding; define `LDS` before pasting the loader into your source.

# %%
#| export
TILE_LOADER = r'''
// Copy rows r0..r0+63, bytes k0..k0+31 of a row-major int8 [rows, K] matrix into dst[64][LDS] (ints,
// 4 int8 of K per int, byte i of an int = k + i), zero outside the matrix. Every thread of the block
// calls it with its linear index tid, nthreads in all (nthreads <= 128 copies 16 bytes per thread).
// The 16-byte load needs a 16-byte aligned address: K a multiple of 16 and an aligned matrix.
__device__ __forceinline__ void load_tile_64x32(int (*dst)[LDS], const signed char* __restrict__ src,
                                                int rows, int K, int r0, int k0, int tid, int nthreads) {
    for (int c = tid; c < 128; c += nthreads) {
        int r = c >> 1, part = c & 1;
        int k = k0 + 16 * part;
        int4 v = make_int4(0, 0, 0, 0);
        if (r0 + r < rows) {
            const signed char* p = src + (size_t)(r0 + r) * K + k;
            if ((K & 15) == 0 && k + 16 <= K && ((size_t)src & 15) == 0) {
                v = *reinterpret_cast<const int4*>(p);          // one 16-byte load (ld.global.v4)
            } else {
                int word[4] = {0, 0, 0, 0};
                for (int b = 0; b < 16; ++b)
                    if (k + b < K) word[b >> 2] |= (int)(unsigned char)p[b] << (8 * (b & 3));
                v = make_int4(word[0], word[1], word[2], word[3]);
            }
        }
        int* d = &dst[r][4 * part];
        d[0] = v.x; d[1] = v.y; d[2] = v.z; d[3] = v.w;
    }
}
'''

# %% nbgrader={"grade": false, "grade_id": "dp4a_source", "locked": false, "schema_version": 3, "solution": true}
#| export
def dp4a_source():
    """The CUDA C of `gemm_dp4a`: 64 x 64 tiles, a 4 x 4 register tile per thread, `__dp4a`.

    TODO: return the source of `extern "C" __global__ void gemm_dp4a(...)` (the signature of
    gemm_naive) for blocks of 16 x 16 threads, each block a 64 x 64 tile of C, each thread the outputs
    (ty + 16 i, tx + 16 j) of the tile for i, j in 0..3. Exact for ANY M, N, K; no spills.

    APPROACH: define LDS (9: eight words of K plus one of padding) and include TILE_LOADER. Per step
    of 32 along K: load the A tile (rows from blockIdx.y) and the W tile (rows from blockIdx.x) with
    load_tile_64x32 (linear thread index, 256 threads), barrier; for each of the 8 words of the step
    read 4 words of A and 4 of W into registers and update the 16 accumulators with __dp4a; barrier.
    Write the accumulators that fall inside C.

    EXAMPLE: K = 70 is three steps; the loader zero-fills bytes 70..95, and dp4a of a zero word adds 0.

    HINTS: keep the 4 x 4 accumulators in a local array with loops the compiler can unroll (constant
    bounds), or it spills them to local memory. Padding the shared rows to 9 words keeps the 16
    rows a warp reads in distinct banks. `__launch_bounds__(256)` tells the compiler the block size.
    """
    ### BEGIN SOLUTION
    return r'''
#define LDS 9                    // 8 words (32 int8 of K) + 1: the rows of a column fall in different banks
''' + TILE_LOADER + r'''
extern "C" __global__ void __launch_bounds__(256) gemm_dp4a(const signed char* __restrict__ A,
        const signed char* __restrict__ W, int* __restrict__ C, int M, int N, int K) {
    __shared__ int As[64][LDS];
    __shared__ int Ws[64][LDS];
    int tx = threadIdx.x, ty = threadIdx.y, tid = ty * 16 + tx;
    int m0 = blockIdx.y * 64, n0 = blockIdx.x * 64;
    int acc[4][4] = {};
    for (int k0 = 0; k0 < K; k0 += 32) {
        load_tile_64x32(As, A, M, K, m0, k0, tid, 256);
        load_tile_64x32(Ws, W, N, K, n0, k0, tid, 256);
        __syncthreads();
        for (int kw = 0; kw < 8; ++kw) {
            int ra[4], rb[4];
            for (int i = 0; i < 4; ++i) ra[i] = As[ty + 16 * i][kw];
            for (int j = 0; j < 4; ++j) rb[j] = Ws[tx + 16 * j][kw];
            for (int i = 0; i < 4; ++i)
                for (int j = 0; j < 4; ++j)
                    acc[i][j] = __dp4a(ra[i], rb[j], acc[i][j]);
        }
        __syncthreads();
    }
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) {
            int m = m0 + ty + 16 * i, n = n0 + tx + 16 * j;
            if (m < M && n < N) C[(size_t)m * N + n] = acc[i][j];
        }
}
'''
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_dp4a_source", "locked": true, "schema_version": 3, "solution": false}
if find_compiler() is not None:
    _check_in_emulator(dp4a_source(), "gemm_dp4a", (1, 1), (16, 16), 3, 5, 7)
    _check_in_emulator(dp4a_source(), "gemm_dp4a", (2, 2), (16, 16), 65, 70, 96)
    print("dp4a_source: ok")

# %% [markdown]
# ## 4. Tensor cores: `mma.sync.m16n8k32` with int8
#
# From `sm_80` (A100, H100, RTX 30xx) on, a tensor core multiplies small int8 matrices in one warp
# instruction: `mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32` computes
# `D (16x8, int32) = A (16x32, int8) x B (32x8, int8) + C` — 4096 multiply-adds, where `dp4a` does 4.
# The catch: no thread holds a matrix. The 32 lanes of the warp each hold a **fragment**, and the
# instruction reads them all. With `g = lane >> 2` (groupID) and `t = lane % 4`
# (threadID_in_group), the PTX ISA's layout for `.s8` is:
#
# | operand | registers (4 int8 each, byte i = k + i) | holds |
# |---|---|---|
# | A (row) | `a[0]`, `a[1]`, `a[2]`, `a[3]` | rows g, g+8, g, g+8; k = 4t..4t+3 for a[0], a[1]; k = 16+4t.. for a[2], a[3] |
# | B (col) | `b[0]`, `b[1]` | column (output n) g; k = 4t..4t+3, then k = 16+4t.. |
# | C, D    | `c[0..3]` (int32) | rows g, g, g+8, g+8; columns 2t, 2t+1, 2t, 2t+1 |
#
# "B col" means B is stored column by column: column n of B is row n of `W`, so `W`'s row-major
# layout is exactly what the instruction wants, and so is `A`'s. With the tiles in shared memory as
# words of 4 int8 along K (the loader above), `a[0]` of lane (g, t) is simply word `t` of tile row
# `g`. The module gives you one device function with this layout,
#
# ```c
# void mma_m16n8k32_s8(int d[4], const unsigned a[4], const unsigned b[2], const int c[4]);
# ```
#
# compiled on a GPU as the inline PTX instruction (`tinyq.cuda_nvrtc.PRELUDE`) and on the CPU by the
# emulator (all 32 lanes deposit their fragments in a per-warp scratch, wait at a warp barrier, and
# each computes its four outputs). Your kernel uses the same call on both.
#
# The kernel: blocks of 128 threads (4 warps), a 64 x 64 tile of C per block, each warp a 32 x 32
# quarter of it: 2 x 4 tiles of 16 x 8, so 8 `mma` per step of 32 along K with 32 accumulators per
# thread. With 8 words per shared row, the 8 groups of a fragment load would hit the same 4 banks
# 8 at a time; padding the rows to 12 words puts all 32 lanes in different banks.

# %% nbgrader={"grade": false, "grade_id": "mma_source", "locked": false, "schema_version": 3, "solution": true}
#| export
def mma_source():
    """The CUDA C of `gemm_mma`: int8 tensor cores through `mma_m16n8k32_s8`.

    TODO: return the source of `extern "C" __global__ void gemm_mma(...)` (the signature of
    gemm_naive) for blocks of 128 threads (blockDim.x = 128), each block a 64 x 64 tile of C, warp w
    the 32 x 32 quarter at rows 32 (w / 2), columns 32 (w % 2) of it. Exact for ANY M, N, K.

    APPROACH: define LDS (12) and include TILE_LOADER. Per step of 32 along K: load both tiles
    (128 threads), barrier; build the A fragments of the warp's two 16-row slices and the B fragments
    of its four 8-column slices from shared memory following the layout table above; call
    mma_m16n8k32_s8 for each of the 2 x 4 pairs, accumulating in place (d and c may be the same
    array); barrier. Write the accumulators back following the C/D row of the table, inside C only.

    EXAMPLE: lane 5 is g = 1, t = 1: its a[0] is word 1 of tile row 1 (k = 4..7), its a[3] word 5 of
    tile row 9 (k = 20..23), and its d[2], d[3] are C[9][2], C[9][3] of the 16 x 8 tile.

    HINTS: lane = threadIdx.x % 32 and warp = threadIdx.x / 32. All 32 lanes must call the mma
    together (no lane may skip it on a ragged edge: the zero-filled tiles make the extra work
    harmless, and only the final stores are guarded).
    """
    ### BEGIN SOLUTION
    return r'''
#define LDS 12                   // 8 words + 4: the 8 groups of a fragment load fall in 32 different banks
''' + TILE_LOADER + r'''
extern "C" __global__ void __launch_bounds__(128) gemm_mma(const signed char* __restrict__ A,
        const signed char* __restrict__ W, int* __restrict__ C, int M, int N, int K) {
    __shared__ int As[64][LDS];
    __shared__ int Ws[64][LDS];
    int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    int g = lane >> 2, t = lane & 3;
    int wm = (warp >> 1) * 32, wn = (warp & 1) * 32;
    int m0 = blockIdx.y * 64, n0 = blockIdx.x * 64;
    int acc[2][4][4] = {};
    for (int k0 = 0; k0 < K; k0 += 32) {
        load_tile_64x32(As, A, M, K, m0, k0, tid, 128);
        load_tile_64x32(Ws, W, N, K, n0, k0, tid, 128);
        __syncthreads();
        unsigned fa[2][4], fb[4][2];
        for (int i = 0; i < 2; ++i) {
            int r = wm + 16 * i + g;
            fa[i][0] = As[r][t];     fa[i][1] = As[r + 8][t];
            fa[i][2] = As[r][t + 4]; fa[i][3] = As[r + 8][t + 4];
        }
        for (int j = 0; j < 4; ++j) {
            int col = wn + 8 * j + g;
            fb[j][0] = Ws[col][t];
            fb[j][1] = Ws[col][t + 4];
        }
        for (int i = 0; i < 2; ++i)
            for (int j = 0; j < 4; ++j)
                mma_m16n8k32_s8(acc[i][j], fa[i], fb[j], acc[i][j]);
        __syncthreads();
    }
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 4; ++j)
            for (int e = 0; e < 4; ++e) {
                int m = m0 + wm + 16 * i + g + (e >= 2 ? 8 : 0);
                int n = n0 + wn + 8 * j + 2 * t + (e & 1);
                if (m < M && n < N) C[(size_t)m * N + n] = acc[i][j][e];
            }
}
'''
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_mma_source", "locked": true, "schema_version": 3, "solution": false}
if find_compiler() is not None:
    _check_in_emulator(mma_source(), "gemm_mma", (1, 1), (128,), 16, 8, 32)
    _check_in_emulator(mma_source(), "gemm_mma", (2, 2), (128,), 70, 65, 100)
    print("mma_source: ok")

# %% [markdown]
# `kernel_source(variant)` (given) returns the source of a variant from your four functions.

# %%
#| export
def kernel_source(variant):
    """The CUDA C source of `variant` ("naive", "tiled", "dp4a" or "mma"); ValueError otherwise."""
    makers = {"naive": naive_source, "tiled": tiled_source, "dp4a": dp4a_source, "mma": mma_source}
    if variant not in makers:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    return makers[variant]()


# %% [markdown]
# ## 5. Launch configuration
#
# A launch names a grid of blocks and a block of threads, each up to three sizes `(x, y, z)`. The
# grid must cover the whole output, rounded **up** to whole tiles (the kernels skip what lies
# outside), with x along N (columns) and y along M (rows):
#
# | variant | block | tile of C per block |
# |---|---|---|
# | naive | (32, 8, 1) | 8 rows x 32 columns |
# | tiled | (32, 8, 1) | 32 x 32 |
# | dp4a  | (16, 16, 1) | 64 x 64 |
# | mma   | (128, 1, 1) | 64 x 64 |
#
# A grid's y and z are limited to 65535 blocks (x to 2^31 - 1).

# %% nbgrader={"grade": false, "grade_id": "launch_config", "locked": false, "schema_version": 3, "solution": true}
#| export
def launch_config(variant, M, N):
    """(grid, block) of `variant` for an M x N output, each a tuple of three ints (x, y, z).

    TODO: return the block of the table above and the grid that covers M rows (y) and N columns (x)
    with whole tiles.

    APPROACH: look up the block and the tile (rows, columns) of the variant, then the number of tiles
    along each axis rounded up. Raise ValueError for an unknown variant, for M or N below 1, and for
    a grid whose y exceeds 65535.

    EXAMPLE: launch_config("dp4a", 100, 130) -> ((3, 2, 1), (16, 16, 1))

    HINTS: integer ceiling division without floats: negate, floor-divide, negate. Return plain
    Python ints.
    """
    ### BEGIN SOLUTION
    shapes = {"naive": ((32, 8, 1), (8, 32)), "tiled": ((32, 8, 1), (32, 32)),
              "dp4a": ((16, 16, 1), (64, 64)), "mma": ((128, 1, 1), (64, 64))}
    if variant not in shapes:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    M, N = int(M), int(N)
    if M < 1 or N < 1:
        raise ValueError(f"launch_config: M and N must be >= 1, got M={M} N={N}")
    block, (tile_m, tile_n) = shapes[variant]
    grid = (-(-N // tile_n), -(-M // tile_m), 1)
    if grid[1] > 65535:
        raise ValueError(f"launch_config: {grid[1]} blocks along y exceed the limit of 65535")
    return grid, block
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_launch_config", "locked": true, "schema_version": 3, "solution": false}
assert launch_config("dp4a", 100, 130) == ((3, 2, 1), (16, 16, 1))
assert launch_config("naive", 1, 1) == ((1, 1, 1), (32, 8, 1))
assert launch_config("mma", 64, 65) == ((2, 1, 1), (128, 1, 1))
### BEGIN HIDDEN TESTS
assert launch_config("tiled", 33, 32) == ((1, 2, 1), (32, 8, 1))
### END HIDDEN TESTS
print("launch_config: ok")

# %% [markdown]
# ## 6. The host function
#
# `gemm_int8_gpu(a_q, w_q, variant)` is what a model calls: check the operands, put them on the
# device as contiguous int8, allocate the int32 output, launch. On a GPU it compiles the kernel once
# with CuPy (`tinyq.cuda_nvrtc.raw_kernel(source, name)` returns a cached `cupy.RawKernel`) and
# launches it as `kernel(grid, block, (a, w, c, np.int32(M), np.int32(N), np.int32(K)))`: the
# scalars must be `np.int32`, the C `int` of the signature. With `emulate=True` it runs the same
# kernel in the CPU emulator instead (`tinyq.cuda_emulator.emulate(source, name, grid, block, a, w, c,
# M, N, K)`) on NumPy arrays, and returns a NumPy array.
#
# The accumulator is int32: as in module 19, `K * 128 * 128` must stay below `2^31`, so
# `K <= 131071`.

# %% nbgrader={"grade": false, "grade_id": "gemm_int8_gpu", "locked": false, "schema_version": 3, "solution": true}
#| export
def gemm_int8_gpu(a_q, w_q, variant="mma", *, emulate=False):
    """Exact int32 `a_q @ w_q.T` of int8 [M, K] and [N, K] matrices with the kernel of `variant`.

    TODO: validate, then run kernel_source(variant) with launch_config(variant, M, N). On the GPU
    (emulate=False) the inputs may be CuPy or NumPy arrays and the result is a CuPy int32 [M, N]
    array; with emulate=True the kernel runs in the CPU emulator and the result is a NumPy array.

    APPROACH: TypeError unless both inputs have dtype int8. ValueError for an unknown variant, for
    inputs that are not 2-D, for K that differ, for an empty dimension, and for K above 131071.
    Then make both operands contiguous (on the device, or as NumPy arrays for the emulator: a CuPy
    array has .get()), allocate the int32 output, and launch with the kernel's name from KERNEL_NAMES.

    EXAMPLE: gemm_int8_gpu(np.ones((2, 3), np.int8), np.ones((4, 3), np.int8), "tiled", emulate=True)
    -> a 2 x 4 int32 array of 3s

    HINTS: the scalars of the launch are int32 (np.int32 for CuPy; Python ints work for the
    emulator). Check the dtype before the shape, so that a float matrix is a TypeError.
    """
    ### BEGIN SOLUTION
    for name, x in (("a_q", a_q), ("w_q", w_q)):
        if np.dtype(getattr(x, "dtype", None) or np.float64) != np.int8:
            raise TypeError(f"gemm_int8_gpu: {name} must be int8, got {getattr(x, 'dtype', type(x).__name__)}")
    if variant not in KERNEL_NAMES:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if a_q.ndim != 2 or w_q.ndim != 2:
        raise ValueError(f"gemm_int8_gpu: 2-D operands needed, got {a_q.ndim}-D and {w_q.ndim}-D")
    (M, K), (N, K2) = a_q.shape, w_q.shape
    if K != K2:
        raise ValueError(f"gemm_int8_gpu: K differs, a_q is {a_q.shape} and w_q is {w_q.shape}")
    if min(M, N, K) < 1:
        raise ValueError(f"gemm_int8_gpu: empty operand ({M} x {K} by {N} x {K2})")
    if K > 131071:
        raise ValueError(f"gemm_int8_gpu: K={K} could overflow the int32 accumulators (max 131071)")
    grid, block = launch_config(variant, M, N)
    source, kernel_name = kernel_source(variant), KERNEL_NAMES[variant]
    if emulate:
        a = np.ascontiguousarray(a_q.get() if hasattr(a_q, "get") else a_q)
        w = np.ascontiguousarray(w_q.get() if hasattr(w_q, "get") else w_q)
        c = np.empty((M, N), np.int32)
        _emulate(source, kernel_name, grid, block, a, w, c, M, N, K)
        return c
    import cupy
    a = cupy.ascontiguousarray(cupy.asarray(a_q))
    w = cupy.ascontiguousarray(cupy.asarray(w_q))
    c = cupy.empty((M, N), cupy.int32)
    _raw_kernel(source, kernel_name)(grid, block, (a, w, c, np.int32(M), np.int32(N), np.int32(K)))
    return c
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_gemm_int8_gpu", "locked": true, "schema_version": 3, "solution": false}
if find_compiler() is not None:
    _a = _rng.integers(-128, 128, size=(9, 40), dtype=np.int8)
    _w = _rng.integers(-128, 128, size=(11, 40), dtype=np.int8)
    for _v in VARIANTS:
        _c = gemm_int8_gpu(_a, _w, _v, emulate=True)
        assert _c.dtype == np.int32 and np.array_equal(_c, _a.astype(np.int32) @ _w.astype(np.int32).T), _v
try:
    gemm_int8_gpu(np.ones((2, 3), np.float32), np.ones((2, 3), np.int8), "naive", emulate=True)
except TypeError:
    pass
else:
    raise AssertionError("a float32 operand should raise TypeError")
print("gemm_int8_gpu: ok")

# %% [markdown]
# ## 7. What the compiler made of it: compile reports
#
# `compile_report(variant, arch)` (given) compiles your kernel with NVRTC for `arch` on this CPU
# and returns what ptxas reports and what the PTX contains: registers per thread, spill bytes (a
# kernel that runs out of registers stores them in slow local memory), static shared memory per
# block, and the count of the instructions that matter: `dp4a`, `mma` (int8 `mma.sync` m16n8k32),
# `ld_shared`, `bar_sync` (`__syncthreads`) and `ld_global_v4` (16-byte loads).

# %%
#| export
def compile_report(variant, arch="sm_80"):
    """NVRTC + ptxas report of the kernel of `variant` for `arch` (no GPU needed): registers,
    spill_store_bytes, spill_load_bytes, stack_bytes, shared_bytes, barriers and the PTX counts dp4a,
    mma, ld_shared, bar_sync, ld_global_v4."""
    return _compile_report(kernel_source(variant), KERNEL_NAMES[variant], arch)


# %% [markdown]
# ## 8. Occupancy
#
# An SM runs as many blocks at once as its resources allow, and those resident warps are what
# hides memory latency: while one waits, another issues. **Occupancy** is resident warps over the
# SM's maximum. Four limits decide how many blocks fit (NVIDIA's occupancy calculator, simplified):
#
# * **warps**: `max_warps // warps_per_block`, with `warps_per_block = ceil(threads / 32)`;
# * **registers**: each warp takes `ceil(32 * registers / 256) * 256` registers (allocated in units
#   of 256 per warp); `(registers_per_sm // that) // warps_per_block` blocks fit;
# * **shared memory**: each block takes its static shared memory plus the `reserved` bytes the
#   system keeps per block, rounded up to the allocation unit; `shared_per_sm // that` blocks fit;
# * **blocks**: at most `max_blocks` per SM.
#
# The smallest wins. `SM_LIMITS` holds the numbers of the architectures of this module.

# %%
#| export
SM_LIMITS = {
    # max_warps, max_blocks, registers_per_sm, shared_per_sm (bytes, the largest carve-out),
    # reserved shared bytes per block, shared allocation unit (bytes)
    "sm_75": dict(max_warps=32, max_blocks=16, registers_per_sm=65536, shared_per_sm=65536,
                  reserved=0, shared_unit=256),
    "sm_80": dict(max_warps=64, max_blocks=32, registers_per_sm=65536, shared_per_sm=167936,
                  reserved=1024, shared_unit=128),
    "sm_86": dict(max_warps=48, max_blocks=16, registers_per_sm=65536, shared_per_sm=102400,
                  reserved=1024, shared_unit=128),
    "sm_90": dict(max_warps=64, max_blocks=32, registers_per_sm=65536, shared_per_sm=233472,
                  reserved=1024, shared_unit=128),
}

# %% nbgrader={"grade": false, "grade_id": "occupancy", "locked": false, "schema_version": 3, "solution": true}
#| export
def occupancy(report, arch, threads_per_block):
    """Resident blocks and warps per SM of a kernel with `report`'s registers and shared memory.

    TODO: return {"blocks_per_sm": int, "warps_per_sm": int, "occupancy": float in (0, 1],
    "limited_by": one of "warps", "registers", "shared", "blocks"} from SM_LIMITS[arch] and the rules
    above. `report` needs the keys "registers" and "shared_bytes" (a compile_report).

    APPROACH: compute the four block limits, take the smallest (on a tie, the first of the order
    warps, registers, shared, blocks names it), then warps_per_sm = blocks * warps_per_block and
    occupancy = warps_per_sm / max_warps. ValueError for an unknown arch, for threads_per_block
    outside 1..1024, for registers outside 0..255 or negative shared bytes, and for a block that does
    not fit an SM at all (no resident block).

    EXAMPLE: 32 registers, 4608 shared bytes, 256 threads on sm_80: 8 warps per block; 8 blocks by
    warps, 8 by registers, 29 by shared memory -> 8 blocks, 64 warps, occupancy 1.0, "warps".

    HINTS: ceil with integers (negate, floor-divide, negate). A kernel with no shared memory on sm_80
    still takes the reserved 1 KiB per block. Zero registers limit nothing.
    """
    ### BEGIN SOLUTION
    if arch not in SM_LIMITS:
        raise ValueError(f"occupancy: unknown arch {arch!r} (known: {', '.join(SM_LIMITS)})")
    lim = SM_LIMITS[arch]
    threads = int(threads_per_block)
    if not 1 <= threads <= 1024:
        raise ValueError(f"occupancy: threads_per_block must be in 1..1024, got {threads}")
    regs, shared = int(report["registers"]), int(report["shared_bytes"])
    if not 0 <= regs <= 255 or shared < 0:
        raise ValueError(f"occupancy: registers must be in 0..255 and shared bytes >= 0, got {regs}, {shared}")
    warps = -(-threads // 32)
    by_warps = lim["max_warps"] // warps
    regs_per_warp = -(-32 * regs // 256) * 256
    by_regs = (lim["registers_per_sm"] // regs_per_warp) // warps if regs else lim["max_blocks"]
    unit = lim["shared_unit"]
    smem = -(-(shared + lim["reserved"]) // unit) * unit
    by_shared = lim["shared_per_sm"] // smem if smem else lim["max_blocks"]
    limits = {"warps": by_warps, "registers": by_regs, "shared": by_shared, "blocks": lim["max_blocks"]}
    limited_by = min(limits, key=limits.get)
    blocks = limits[limited_by]
    if blocks < 1:
        raise ValueError(f"occupancy: no block fits an SM of {arch} (limited by {limited_by})")
    return {"blocks_per_sm": blocks, "warps_per_sm": blocks * warps,
            "occupancy": blocks * warps / lim["max_warps"], "limited_by": limited_by}
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_occupancy", "locked": true, "schema_version": 3, "solution": false}
_o = occupancy({"registers": 32, "shared_bytes": 4608}, "sm_80", 256)
assert _o == {"blocks_per_sm": 8, "warps_per_sm": 64, "occupancy": 1.0, "limited_by": "warps"}, _o
_o = occupancy({"registers": 128, "shared_bytes": 0}, "sm_90", 256)
assert _o["blocks_per_sm"] == 2 and _o["limited_by"] == "registers" and _o["occupancy"] == 0.25, _o
### BEGIN HIDDEN TESTS
_o = occupancy({"registers": 16, "shared_bytes": 40000}, "sm_75", 64)
assert _o["blocks_per_sm"] == 1 and _o["limited_by"] == "shared", _o
### END HIDDEN TESTS
print("occupancy: ok")

# %% [markdown]
# ## 9. Systems analysis — your kernels, compiled and (where a GPU exists) measured
#
# Every number below comes from your functions: the compile reports of each variant for Turing
# (`sm_75`, Colab's T4), Ampere (`sm_80`, A100) and Hopper (`sm_90`, H100), and the occupancy those
# numbers give with your launch configuration. `mma` needs `sm_80`: for `sm_75` the device function
# compiles to a trap instead of the tensor-core instruction.

# %%
from tinyq.cuda_nvrtc import nvrtc_available

ARCHES = ("sm_75", "sm_80", "sm_90")
reports = {}
if nvrtc_available():
    print(f"{'variant':<7}{'arch':>7}{'regs':>6}{'spill':>7}{'smem B':>8}{'dp4a':>6}{'mma':>5}"
          f"{'ld.shared':>10}{'bar.sync':>9}{'ld.v4':>7}{'blocks/SM':>10}{'occupancy':>10}")
    for variant in VARIANTS:
        threads = int(np.prod(launch_config(variant, 1, 1)[1]))
        for arch in ARCHES:
            if variant == "mma" and arch == "sm_75":
                continue
            r = compile_report(variant, arch)
            reports[variant, arch] = r
            o = occupancy(r, arch, threads)
            print(f"{variant:<7}{arch:>7}{r['registers']:>6}{r['spill_store_bytes']:>7}{r['shared_bytes']:>8}"
                  f"{r['dp4a']:>6}{r['mma']:>5}{r['ld_shared']:>10}{r['bar_sync']:>9}{r['ld_global_v4']:>7}"
                  f"{o['blocks_per_sm']:>10}{o['occupancy']:>10.0%}")
else:
    print("NVRTC is not installed (pip install -e '.[nvrtc]', or '.[gpu]' on a GPU machine): no compile reports here")

# %% [markdown]
# Read the table as the compiler's account of your code. The `naive` kernel may already show one
# `dp4a`: the compiler recognises four consecutive byte products added up and packs them itself.
# `tiled` has the barriers and shared loads of its tiles; `dp4a` issues 16 `dp4a` per word of K in
# its loop body (the count shows how far the compiler unrolled the word loop) and loads its tiles
# with `ld.global.v4`; `mma` issues 8 tensor-core instructions per step. Zero spills everywhere, and
# every block's shared memory far below the 48 KiB a block may use statically.
#
# ### The measured ladder
#
# On a GPU the cell below times each variant at 4096³ against cuBLAS FP32 (`cupy.matmul` on float32
# copies of the same matrices), with CUDA events, interleaved, after warm-up, and reports TOP/s
# (`2 M N K / time`). Without a GPU it says so: the ladder needs one.

# %%
import matplotlib.pyplot as plt

from tinyq.cuda_nvrtc import gpu_compare, gpu_unusable_reason

why_not = gpu_unusable_reason()
if why_not is not None:
    print(f"no measured ladder here ({why_not}): run this notebook on a GPU (Colab's T4 runs naive, "
          "tiled and dp4a; mma needs sm_80+), or `python benchmarks/gpu_kernels.py` on one.")
    if reports:
        sm80 = [v for v in VARIANTS if (v, "sm_80") in reports]
        fig, ax = plt.subplots(figsize=(6, 2.5))
        ax.bar(sm80, [reports[v, "sm_80"]["registers"] for v in sm80])
        ax.set_ylabel("registers / thread (sm_80)")
        fig.tight_layout()
else:
    import cupy
    cc = int(cupy.cuda.Device().compute_capability)     # "80" for sm_80
    size = 4096
    a = cupy.random.randint(-128, 128, size=(size, size), dtype=cupy.int8)
    w = cupy.random.randint(-128, 128, size=(size, size), dtype=cupy.int8)
    a_f, w_f = a.astype(cupy.float32), w.astype(cupy.float32)
    ladder = {}
    for variant in VARIANTS:
        if variant == "mma" and cc < 80:
            continue
        r = gpu_compare(lambda: gemm_int8_gpu(a, w, variant), lambda: cupy.matmul(a_f, w_f.T), repeats=5)
        ladder[variant] = (2 * size**3 / r["candidate_s"] / 1e12, r["speedup"])
        cublas = 2 * size**3 / r["baseline_s"] / 1e12
    print(f"{'kernel':<16}{'TOP/s':>8}{'x cuBLAS FP32':>15}")
    print(f"{'cuBLAS FP32':<16}{cublas:>8.1f}{1.0:>15.2f}")
    for variant, (tops, speedup) in ladder.items():
        print(f"{variant:<16}{tops:>8.1f}{speedup:>15.2f}")
    fig, ax = plt.subplots(figsize=(6, 2.5))
    ax.bar(["cuBLAS FP32", *ladder], [cublas, *[t for t, _ in ladder.values()]])
    ax.set_ylabel("TOP/s at 4096³")
    fig.tight_layout()

# %% [markdown]
# ### What the CPU cannot tell you
#
# The emulator proves that your indexing, tiling, zero fill, barriers and fragment layout give the
# exact result on every shape it ran. It cannot show speed (no coalescing, bank conflicts or
# occupancy: one thread per `std::thread`, blocks one after another), it cannot expose every race a
# real warp would (its extra barriers in warp operations synchronise more than a GPU promises), and
# it can miss an out-of-bounds read that lands in mapped memory. Run the GPU tests once on a real
# device: `python benchmarks/gpu_kernels.py`.
#
# ## What you built
# * `naive_source`, `tiled_source`, `dp4a_source`, `mma_source`: four int8 GEMM kernels, from one
#   thread per output to tensor cores, exact for any shape.
# * `launch_config`: grids and blocks that cover any M x N.
# * `gemm_int8_gpu`: the host function, on a GPU through CuPy or on the CPU through the emulator.
# * `occupancy`: resident warps per SM from registers and shared memory, by the CUDA rules.
