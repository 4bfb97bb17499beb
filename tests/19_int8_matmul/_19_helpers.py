"""Helpers of module 19's tests (public)."""
import time

import numpy as np

from tito.grading import kit

EPS32 = float(np.finfo(np.float32).eps)


def oracle():
    """The instructor's oracle module, or None in the student flavour."""
    return kit.load_oracle("_19_hidden_oracle")


def int_matmul(a, w):
    """The exact reference: int64 numpy matmul of A (M, K) and W (N, K) -> (M, N) int64."""
    return np.asarray(a, np.int64) @ np.asarray(w, np.int64).T


def random_int8(rng, shape, low=-128, high=127):
    return rng.integers(low, high + 1, size=shape, dtype=np.int8)


def gemv_reference_and_bound(w_q, w_scale, x):
    """float64 reference of w_scale * (w_q @ x) and a float32 rounding bound for any summation order."""
    w64 = np.asarray(w_q, np.float64)
    x64 = np.asarray(x, np.float64)
    s64 = np.broadcast_to(np.asarray(w_scale, np.float64), (w64.shape[0],))
    ref = (w64 @ x64) * s64
    k = max(w64.shape[1], 1)
    bound = (2 * k + 4) * EPS32 * s64 * (np.abs(w64) @ np.abs(x64)) + 1e-30
    return ref, bound


def peak_traced_bytes(fn):
    """Peak memory that numpy (and Python) allocate while fn runs, via tracemalloc. Call fn once
    before, so JIT compilation is not counted. Numba-internal allocations are not traced."""
    import tracemalloc
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def fails_fast(fn, limit_s, what):
    """Call fn twice (the first call compiles) and fail the test with a clear message if the second
    call takes longer than limit_s: keeps a pure-Python loop from hanging the perf test at full size."""
    fn()
    start = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - start
    assert elapsed < limit_s, (f"{what} took {elapsed * 1e3:.0f} ms on a small problem (limit "
                               f"{limit_s * 1e3:.0f} ms): is it a Python loop instead of a Numba kernel?")
