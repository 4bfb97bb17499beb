"""Modules 20 and 21 on a real GPU in one command: the device, their GPU tests, the ladder and the W4 row.

Run from the repository root on a machine with a CUDA device and CuPy (nothing else to install: NumPy,
pytest and CuPy; the project on PYTHONPATH or installed):

    python benchmarks/gpu_kernels.py [--size 4096] [--rounds 7] [--json results.json]

1. prints the device (name, compute capability, SMs, memory) and the CuPy/CUDA versions;
2. runs the GPU tests of tests/20_gpu_kernels and tests/21_int4 (exactness on the device with poisoned
   outputs, and the speed bars against cuBLAS) with the grading plugin, as `tito test` does;
3. measures the ladder with the kernels exported in `tinyq.gpu_kernels` (the reference solutions or
   your own): each variant at size^3 against cuBLAS FP32 (`cupy.matmul` on float32 copies of the same
   int8 matrices), CUDA events around each call, interleaved, after warm-up, median of `--rounds`;
   TOP/s = 2 M N K / time. `mma` is skipped below sm_80.
4. measures module 21's W4A16 GEMV (`tinyq.int4.gemv_w4_gpu`, 4-bit weights in groups of 128 with
   float32 scales, FP16 activations) at 8192 x 8192 against cuBLAS FP32 and FP16 GEMV (`cupy.matmul`
   of a matrix by a vector), with the device's copy bandwidth and the bytes-over-bandwidth bound of each;
   20 calls back to back per CUDA-event sample, so that Python's launch overhead overlaps GPU work.
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
    cmd = [sys.executable, "-m", "pytest", "tests/20_gpu_kernels", "tests/21_int4", "-q", "-rs", "--noconftest",
           "-k", "on_the_gpu or speed_vs_cublas", "-s"]
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


W4_TARGET_FP32, W4_TARGET_FP16 = 5.0, 2.0     # what the reference gemv_w4_gpu aims at (the graded bars are lower)


def w4_row(cp, rounds: int, size: int = 8192, calls: int = 20) -> dict:
    """Module 21's gemv_w4_gpu against cuBLAS FP32 and FP16 GEMV at size x size, and the copy bandwidth."""
    from tinyq.cuda_nvrtc import gpu_compare
    from tinyq.int4 import dequantize_int4_groups, gemv_w4_gpu, quantize_int4_groups

    def back_to_back(fn):
        return lambda: [fn() for _ in range(calls)]

    big = cp.empty(2**30, cp.uint8)
    copy = gpu_compare(back_to_back(big.copy), back_to_back(big.copy), repeats=3)
    bandwidth = 2 * big.nbytes * calls / copy["candidate_s"]
    del big
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.02, size=(size, size)).astype(np.float32)
    packed, scales, _ = quantize_int4_groups(w, 128)
    x16 = rng.normal(size=size).astype(np.float16)
    expected = dequantize_int4_groups(packed[:256], scales[:256], None, 128).astype(np.float64) @ x16.astype(np.float64)
    p, s, x = cp.asarray(packed), cp.asarray(scales), cp.asarray(x16)
    got = cp.asnumpy(gemv_w4_gpu(p, s, x, 128))[:256]
    ok = bool(np.allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max()))
    w32 = cp.asarray(w)
    w16, x32 = w32.astype(cp.float16), x.astype(cp.float32)
    del w
    w4 = back_to_back(lambda: gemv_w4_gpu(p, s, x, 128))
    r32 = gpu_compare(w4, back_to_back(lambda: cp.matmul(w32, x32)), repeats=rounds)
    r16 = gpu_compare(w4, back_to_back(lambda: cp.matmul(w16, x)), repeats=rounds)
    nbytes = {"fp32": 4 * size * size, "fp16": 2 * size * size, "w4": packed.nbytes + scales.nbytes}
    row = {"size": size, "exact_256": ok, "copy_tb_s": bandwidth / 1e12,
           "w4_us": r16["candidate_s"] / calls * 1e6, "fp32_us": r32["baseline_s"] / calls * 1e6,
           "fp16_us": r16["baseline_s"] / calls * 1e6, "x_cublas_fp32": r32["speedup"], "x_cublas_fp16": r16["speedup"]}
    print(f"device copy {row['copy_tb_s']:.2f} TB/s (read + write)")
    for name in ("fp32", "fp16", "w4"):
        t = row[f"{name}_us"] / 1e6
        print(f"{name:<5} GEMV {size}^2: {t * 1e6:8.1f} us  {nbytes[name] / t / 1e12:5.2f} TB/s  "
              f"bound {nbytes[name] / bandwidth * 1e6:7.1f} us", flush=True)
    print(f"W4 g128 row: {row['x_cublas_fp32']:.2f}x cuBLAS FP32, {row['x_cublas_fp16']:.2f}x cuBLAS FP16 "
          f"(bytes allow {nbytes['fp32'] / nbytes['w4']:.2f}x and {nbytes['fp16'] / nbytes['w4']:.2f}x)   exact: {ok}")
    met = row["x_cublas_fp32"] >= W4_TARGET_FP32 and row["x_cublas_fp16"] >= W4_TARGET_FP16
    print(f"reference target (>= {W4_TARGET_FP32}x FP32 and >= {W4_TARGET_FP16}x FP16): {'met' if met else 'NOT met'}")
    return row


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
    print("module 21, W4A16 GEMV against cuBLAS GEMV:", flush=True)
    w4 = w4_row(cp, args.rounds)
    print(f"total {time.perf_counter() - start:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": info, "tests_exit_status": rc, "ladder": rows, "w4": w4},
                                              indent=1))
    sys.exit(rc)


if __name__ == "__main__":
    main()
