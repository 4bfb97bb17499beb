"""Speed of the course's CPU kernels against numpy FP32, as exported in the installed `tinyq`.

Run from the repository root after `tito export` (the reference solutions, or your own):

    python benchmarks/cpu_kernels.py [--rounds 5] [--json results.json]

Every figure is tinyq.bench.compare with a settle pause (numpy's BLAS threads spin after each
call): candidate and baseline in one process, interleaved, after warm-up, median of runs. Unlike
the graded perf tests, which stop at their bar, this prints every round at 1 and 2 threads (the
same count for numpy and for Numba), so the spread on a noisy machine is visible.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics

import numba
import numpy as np
from threadpoolctl import threadpool_limits

from tinyq.bench import compare


def cases(rng):
    """(name, candidate, FP32 baseline) for each kernel with a speed bar."""
    from tinyq.int4 import gemv_w4, quantize_int4_groups
    from tinyq.int8_matmul import gemm_int8, gemv_w8

    n = 4096
    w = rng.standard_normal((n, n), dtype=np.float32)
    x = rng.standard_normal(n, dtype=np.float32)
    w_q = rng.integers(-127, 128, size=(n, n), dtype=np.int8)
    scale = np.full(n, 0.01, np.float32)
    packed, scales4, _ = quantize_int4_groups(w, 128)
    m = 1024
    a_q = rng.integers(-128, 128, size=(m, m), dtype=np.int8)
    b_q = rng.integers(-127, 128, size=(m, m), dtype=np.int8)
    a_f, b_f = a_q.astype(np.float32), b_q.astype(np.float32)
    return [
        ("19 gemv_w8 4096x4096", lambda: gemv_w8(w_q, scale, x), lambda: w @ x),
        ("19 gemm_int8 1024^3", lambda: gemm_int8(a_q, b_q), lambda: a_f @ b_f.T),
        ("21 gemv_w4 g128 4096x4096", lambda: gemv_w4(packed, scales4, x, 128), lambda: w @ x),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="measurements per kernel and thread count")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    results = []
    saved = numba.get_num_threads()
    for name, candidate, baseline in cases(rng):
        for threads in (1, 2):
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            with threadpool_limits(limits=threads, user_api="blas"):
                runs = [compare(candidate, baseline, repeats=5, settle_s=0.2) for _ in range(args.rounds)]
            speedups = [r.speedup for r in runs]
            results.append({"kernel": name, "threads": threads,
                            "candidate_ms": statistics.median(r.candidate_s for r in runs) * 1e3,
                            "numpy_fp32_ms": statistics.median(r.baseline_s for r in runs) * 1e3,
                            "speedup_median": statistics.median(speedups),
                            "speedup_min": min(speedups), "speedup_max": max(speedups)})
            row = results[-1]
            print(f"{name:28} {threads} thr  {row['candidate_ms']:8.3f} ms vs numpy {row['numpy_fp32_ms']:8.3f} ms"
                  f"  speedup median {row['speedup_median']:.2f}x (min {row['speedup_min']:.2f}, "
                  f"max {row['speedup_max']:.2f})", flush=True)
    numba.set_num_threads(saved)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": platform.processor() or platform.machine(), "numba": numba.__version__,
                       "numpy": np.__version__, "results": results}, fh, indent=2)


if __name__ == "__main__":
    main()
