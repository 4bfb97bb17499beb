"""Speed of the course's CPU kernels against numpy FP32, as exported in the installed `tinyq`.

Run from the repository root after `tito export` (the reference solutions, or your own):

    python benchmarks/cpu_kernels.py [--rounds 5] [--json results.json]

Every figure is tinyq.bench.compare with a settle pause (numpy's BLAS threads spin after each
call): candidate and baseline in one process, interleaved, after warm-up, median of runs. Unlike
the graded perf tests, which stop at their bar, this prints every round at 1 and 2 threads (the
same count for numpy and for Numba), so the spread on a noisy machine is visible.

Module 21's rows are its two 4-bit GEMVs: W4A16 (`gemv_w4`, float activations) and W4A8
(`gemv_w4a8`, activations quantized to int8 blocks of 32 inside the call, `vpmaddubsw`), next to
ONNX Runtime's MatMulNBits on the same packed weights, in float (W4A32) and with its int8
activation path (accuracy_level 4, W4A8).

The int8 GEMM rows also time the libraries on the same operands, where they are installed (neither
is needed by tinyq): ONNX Runtime's MatMulInteger (uint8 x int8 -> int32, the weight a constant it
packs once; `pip install -e '.[deploy]'`) and PyTorch's dynamic int8 Linear (fbgemm; float in, float
out). Each gets the same thread count as numpy.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics

import numba
import numpy as np
from threadpoolctl import threadpool_limits

from tinyq.baselines import ort_matmul_integer, ort_matmul_nbits, torch_dynamic_linear
from tinyq.bench import compare


def cases(rng, threads):
    """(name, candidate, FP32 baseline) for each kernel with a speed bar, and the libraries' int8 GEMMs."""
    from tinyq.int4 import gemv_w4, gemv_w4a8, quantize_int4_groups
    from tinyq.int8_matmul import gemm_int8, gemm_u8s8, gemv_w8

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
    a_u7 = rng.integers(0, 128, size=(m, m), dtype=np.uint8)       # 7-bit activations (reduce_range)
    a_u8 = rng.integers(0, 256, size=(m, m), dtype=np.uint8)       # full range: the split without VNNI
    a_u7f = a_u7.astype(np.float32)
    rows = [
        ("19 gemv_w8 4096x4096", lambda: gemv_w8(w_q, scale, x), lambda: w @ x),
        ("19 gemm_int8 1024^3", lambda: gemm_int8(a_q, b_q), lambda: a_f @ b_f.T),
        ("19 gemm_u8s8 7-bit A 1024^3", lambda: gemm_u8s8(a_u7, b_q), lambda: a_u7f @ b_f.T),
        ("19 gemm_u8s8 8-bit A 1024^3", lambda: gemm_u8s8(a_u8, b_q), lambda: a_u7f @ b_f.T),
    ]
    ort_fn = ort_matmul_integer(b_q, threads)
    if ort_fn is None:
        print("(onnxruntime or onnx not installed: no ONNX Runtime row)")
    else:
        assert np.array_equal(ort_fn(a_u7), gemm_u8s8(a_u7, b_q))
        rows.append(("ORT MatMulInteger 7-bit A 1024^3", lambda: ort_fn(a_u7), lambda: a_u7f @ b_f.T))
    torch_fn = torch_dynamic_linear(b_f, threads)
    if torch_fn is None:
        print("(torch not installed: no fbgemm row)")
    else:
        rows.append(("torch fbgemm dyn. Linear 1024^3", lambda: torch_fn(a_u7f), lambda: a_u7f @ b_f.T))
    rows.append(("21 gemv_w4 g128 4096x4096", lambda: gemv_w4(packed, scales4, x, 128), lambda: w @ x))
    rows.append(("21 gemv_w4a8 g128 4096x4096", lambda: gemv_w4a8(packed, scales4, x, 128), lambda: w @ x))
    for label, int8_x in (("ORT MatMulNBits W4A32 g128 4096x4096", False), ("ORT MatMulNBits W4A8 g128 4096x4096", True)):
        nbits_fn = ort_matmul_nbits(packed, scales4, n, 128, threads, int8_activations=int8_x)
        if nbits_fn is not None:
            rows.append((label, lambda f=nbits_fn: f(x), lambda: w @ x))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="measurements per kernel and thread count")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--only", help="run only the rows whose name contains this text")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts to measure")
    args = parser.parse_args()

    results = []
    saved = numba.get_num_threads()
    for threads in args.threads:
        rng = np.random.default_rng(0)
        for name, candidate, baseline in cases(rng, threads):
            if args.only and args.only not in name:
                continue
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
            print(f"{name:33} {threads} thr  {row['candidate_ms']:8.3f} ms vs numpy {row['numpy_fp32_ms']:8.3f} ms"
                  f"  speedup median {row['speedup_median']:.2f}x (min {row['speedup_min']:.2f}, "
                  f"max {row['speedup_max']:.2f})", flush=True)
    numba.set_num_threads(saved)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": platform.processor() or platform.machine(), "numba": numba.__version__,
                       "numpy": np.__version__, "results": results}, fh, indent=2)


if __name__ == "__main__":
    main()
