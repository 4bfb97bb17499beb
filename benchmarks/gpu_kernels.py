"""Module 20 on a real GPU in one command: the device, the module's GPU tests, and the ladder.

Run from the repository root on a machine with a CUDA device and CuPy (nothing else to install: NumPy,
pytest and CuPy; the project on PYTHONPATH or installed):

    python benchmarks/gpu_kernels.py [--size 4096] [--rounds 7] [--json results.json]

1. prints the device (name, compute capability, SMs, memory) and the CuPy/CUDA versions;
2. runs the GPU tests of tests/20_gpu_kernels (exactness on the device with poisoned outputs, and the
   speed bars against cuBLAS FP32) with the grading plugin, as `tito test` does;
3. measures the ladder with the kernels exported in `tinyq.gpu_kernels` (the reference solutions or
   your own): each variant at size^3 against cuBLAS FP32 (`cupy.matmul` on float32 copies of the same
   int8 matrices), CUDA events around each call, interleaved, after warm-up, median of `--rounds`;
   TOP/s = 2 M N K / time. `mma` is skipped below sm_80.
Kernels are compiled by CuPy's NVRTC for the device (no cuda-bindings needed). Ends within a few
minutes on an H100 (the naive kernel at 4096^3 is the slowest rung).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def device_info(cp) -> dict:
    dev = cp.cuda.Device()
    props = cp.cuda.runtime.getDeviceProperties(dev.id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return {"name": name, "compute_capability": dev.compute_capability,
            "sms": props["multiProcessorCount"], "memory_gib": round(props["totalGlobalMem"] / 2**30, 1),
            "cupy": cp.__version__, "cuda_runtime": cp.cuda.runtime.runtimeGetVersion(),
            "driver": cp.cuda.runtime.driverGetVersion()}


def run_tests() -> int:
    cmd = [sys.executable, "-m", "pytest", "tests/20_gpu_kernels", "-q", "-rs", "--noconftest",
           "-k", "on_the_gpu or speed", "-s"]
    print("$", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT).returncode


def ladder(cp, size: int, rounds: int) -> list[dict]:
    from tinyq.cuda_nvrtc import gpu_compare
    from tinyq.gpu_kernels import VARIANTS, gemm_int8_gpu

    cc = int(cp.cuda.Device().compute_capability)
    rng = np.random.default_rng(0)
    a = cp.asarray(rng.integers(-128, 128, size=(size, size), dtype=np.int8))
    w = cp.asarray(rng.integers(-128, 128, size=(size, size), dtype=np.int8))
    a_f, w_f = a.astype(cp.float32), w.astype(cp.float32)
    ops = 2 * size**3
    rows = []
    expected = cp.asnumpy(a[:256]).astype(np.int64) @ cp.asnumpy(w[:256]).astype(np.int64).T
    for variant in VARIANTS:
        if variant == "mma" and cc < 80:
            print(f"{variant}: skipped (int8 mma.sync m16n8k32 needs sm_80+, this is sm_{cc})")
            continue
        ok = bool(np.array_equal(cp.asnumpy(gemm_int8_gpu(a[:256], w[:256], variant)), expected))
        r = gpu_compare(lambda: gemm_int8_gpu(a, w, variant), lambda: cp.matmul(a_f, w_f.T),
                        repeats=rounds, warmup=2)
        rows.append({"variant": variant, "exact_256": ok, "tops": ops / r["candidate_s"] / 1e12,
                     "cublas_fp32_tflops": ops / r["baseline_s"] / 1e12, "x_cublas_fp32": r["speedup"],
                     "ms": r["candidate_s"] * 1e3})
        print(f"{variant:<6} {rows[-1]['ms']:8.2f} ms {rows[-1]['tops']:7.1f} TOP/s   cuBLAS FP32 "
              f"{rows[-1]['cublas_fp32_tflops']:6.1f} TFLOP/s   {r['speedup']:5.2f}x   exact: {ok}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--skip-tests", action="store_true", help="only the ladder")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))

    import cupy as cp
    info = device_info(cp)
    print("device:", ", ".join(f"{k}={v}" for k, v in info.items()), flush=True)
    start = time.perf_counter()
    rc = 0 if args.skip_tests else run_tests()
    print(f"tests: exit status {rc} ({time.perf_counter() - start:.0f} s)", flush=True)
    print(f"ladder at {args.size}^3 (int8 in, int32 out) against cuBLAS FP32:", flush=True)
    rows = ladder(cp, args.size, args.rounds)
    print(f"total {time.perf_counter() - start:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": info, "tests_exit_status": rc, "ladder": rows}, indent=1))
    sys.exit(rc)


if __name__ == "__main__":
    main()
