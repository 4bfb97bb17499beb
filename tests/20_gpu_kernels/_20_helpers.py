"""Helpers of module 20's tests. Public: they ship to learners with the public tests, so they
hold data and small utilities, never an answer (import them as `from _20_helpers import ...`)."""
import numpy as np

VARIANTS = ("naive", "tiled", "dp4a", "mma")
SOURCE_OF = {"naive": "naive_source", "tiled": "tiled_source", "dp4a": "dp4a_source", "mma": "mma_source"}
NAME_OF = {"naive": "gemm_naive", "tiled": "gemm_tiled", "dp4a": "gemm_dp4a", "mma": "gemm_mma"}
BLOCK_OF = {"naive": (32, 8, 1), "tiled": (32, 8, 1), "dp4a": (16, 16, 1), "mma": (128, 1, 1)}
TILE_OF = {"naive": (8, 32), "tiled": (32, 32), "dp4a": (64, 64), "mma": (64, 64)}   # (rows, columns) of C
SHARED_LIMIT = 48 * 1024           # static shared memory a block may declare


def random_int8(rng, shape, low=-128, high=127):
    return rng.integers(low, high + 1, size=shape, dtype=np.int8)


def int_matmul(a, w):
    """Exact a @ w.T in int64, as int32 (every test keeps K * 128 * 128 below 2**31)."""
    return (a.astype(np.int64) @ w.astype(np.int64).T).astype(np.int32)


def grid_for(variant, m, n):
    """A grid of whole tiles that covers an m x n output (the tests' own launch, not launch_config)."""
    rows, cols = TILE_OF[variant]
    return ((n + cols - 1) // cols, (m + rows - 1) // rows, 1)


def run_emulated(source, variant, a, w):
    """Run `source`'s kernel of `variant` in the CPU emulator on a poisoned output; return it."""
    from tinyq.cuda_emulator import emulate
    m, k = a.shape
    n = w.shape[0]
    c = np.full((m, n), -0x5A5A5A5A, np.int32)          # poisoned: every output must be written
    emulate(source, NAME_OF[variant], grid_for(variant, m, n), BLOCK_OF[variant],
            np.ascontiguousarray(a), np.ascontiguousarray(w), c, m, n, k)
    return c


