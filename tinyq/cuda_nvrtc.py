"""Compile and inspect CUDA C kernels on the CPU with NVRTC, and run them with CuPy on a GPU.

Hand-written support of module 20 (not generated).

* `compile_cuda(source, arch)`: NVRTC (NVIDIA's runtime compiler, from the `cuda-bindings` and
  `nvidia-cuda-nvrtc-cu12` wheels: `pip install -e '.[nvrtc]'`, also in `.[gpu]`) compiles CUDA C to PTX and, through
  ptxas, to a cubin for `sm_75`, `sm_80`, `sm_90`, ... with no GPU and no driver. `-Xptxas=-v` makes
  ptxas report each kernel's registers, spills and static shared memory.
* `compile_report(source, arch)`: those numbers plus the count of the PTX instructions that say what
  a kernel really does (dp4a, mma.sync, ld.shared, bar.sync, ld.global.v4).
* `PRELUDE`: what every kernel of module 20 is compiled with on a GPU: the one tensor-core device
  function `mma_m16n8k32_s8` as inline PTX (the CPU emulator, tinyq.cuda_emulator, defines the same
  function following the PTX ISA's fragment layout).
* `raw_kernel(source, name)`: a `cupy.RawKernel` of PRELUDE + source (CuPy's own NVRTC compiles it
  for the device at hand), cached.
"""
from __future__ import annotations

import functools
import re

PRELUDE = r"""
// tinyq module 20 device prelude (tinyq/cuda_nvrtc.py)
__device__ __forceinline__ void mma_m16n8k32_s8(int d[4], const unsigned a[4], const unsigned b[2],
                                                const int c[4]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};\n"
        : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]),
          "r"(c[0]), "r"(c[1]), "r"(c[2]), "r"(c[3]));
#else
    __trap();   // int8 mma.sync m16n8k32 needs sm_80 or newer
#endif
}
"""

INSTRUCTIONS = {                         # report key: PTX pattern (at the start of an instruction)
    "dp4a": r"dp4a\.",
    "mma": r"mma\.sync\.aligned\.m16n8k32\.row\.col\.s32\.s8\.s8\.s32",
    "ld_shared": r"ld\.shared\.",
    "bar_sync": r"(?:bar\.sync|barrier\.sync)",
    "ld_global_v4": r"ld\.global(?:\.nc)?(?:\.L\w+::\w+)*\.v4\.",
}
ARCHES = ("sm_75", "sm_80", "sm_86", "sm_89", "sm_90")


class CompileError(RuntimeError):
    """NVRTC rejected the source; the compiler's log is the message."""


def nvrtc_available() -> bool:
    try:
        from cuda.bindings import nvrtc
        return nvrtc.nvrtcVersion()[0] == nvrtc.nvrtcResult.NVRTC_SUCCESS
    except Exception:
        return False


def _check(result, prog, nvrtc) -> None:
    if result != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        raise CompileError(f"NVRTC: {result.name}\n{_log(prog, nvrtc)}")


def _log(prog, nvrtc) -> str:
    _, size = nvrtc.nvrtcGetProgramLogSize(prog)
    buf = b" " * size
    nvrtc.nvrtcGetProgramLog(prog, buf)
    return buf.decode(errors="replace").rstrip("\x00 \n")


@functools.lru_cache(maxsize=64)
def compile_cuda(source: str, arch: str = "sm_80") -> dict:
    """{'ptx': str, 'cubin': bytes, 'log': str} of PRELUDE + source, compiled for `arch` on the CPU."""
    if not re.fullmatch(r"sm_\d{2,3}a?", arch):
        raise ValueError(f"arch must look like 'sm_80', got {arch!r}")
    from cuda.bindings import nvrtc
    full = (PRELUDE + '\n#line 1 "kernel.cu"\n' + source).encode()
    err, prog = nvrtc.nvrtcCreateProgram(full, b"kernel.cu", 0, [], [])
    if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        raise CompileError(f"NVRTC: {err.name}")
    try:
        opts = [f"-arch={arch}".encode(), b"-Xptxas=-v", b"-std=c++17", b"-default-device"]
        (err,) = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
        log = _log(prog, nvrtc)
        if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            raise CompileError(f"NVRTC could not compile the kernel for {arch}:\n{log}")
        _, size = nvrtc.nvrtcGetPTXSize(prog)
        ptx = b" " * size
        _check(nvrtc.nvrtcGetPTX(prog, ptx)[0], prog, nvrtc)
        _, size = nvrtc.nvrtcGetCUBINSize(prog)
        cubin = b" " * size
        _check(nvrtc.nvrtcGetCUBIN(prog, cubin)[0], prog, nvrtc)
        return {"ptx": ptx.decode().rstrip("\x00"), "cubin": bytes(cubin), "log": log}
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


def _ptxas_numbers(log: str, kernel: str) -> dict:
    """Registers, spills and static shared memory of `kernel` from ptxas' -v report."""
    block = log.split(f"Compiling entry function '{kernel}'", 1)
    if len(block) < 2:
        raise CompileError(f"no ptxas report for kernel {kernel!r} in:\n{log}")
    text = block[1].split("Compiling entry function", 1)[0]

    def num(pattern: str) -> int:
        m = re.search(pattern, text)
        return int(m.group(1)) if m else 0

    return {"registers": num(r"Used (\d+) registers"),
            "spill_store_bytes": num(r"(\d+) bytes spill stores"),
            "spill_load_bytes": num(r"(\d+) bytes spill loads"),
            "stack_bytes": num(r"(\d+) bytes stack frame"),
            "shared_bytes": num(r"(\d+) bytes smem"),
            "barriers": num(r"used (\d+) barriers")}


def ptx_body(ptx: str, kernel: str) -> str:
    """The PTX of one `.entry` (device functions are inlined into it)."""
    m = re.search(r"\.entry\s+" + re.escape(kernel) + r"\s*\(", ptx)
    if m is None:
        raise CompileError(f"no .entry {kernel} in the PTX")
    nxt = re.search(r"\.entry\s+\w+\s*\(", ptx[m.end():])
    return ptx[m.start(): m.end() + nxt.start() if nxt else len(ptx)]


def count_instructions(ptx: str) -> dict:
    """How many times each instruction of INSTRUCTIONS appears in (a kernel's) PTX."""
    lines = [ln.strip() for ln in ptx.splitlines()]
    lines = [ln.split("//")[0].strip() for ln in lines]
    out = {}
    for key, pattern in INSTRUCTIONS.items():
        rx = re.compile(r"^(?:@!?%p\d+\s+)?" + pattern)
        out[key] = sum(1 for ln in lines if rx.match(ln))
    return out


def compile_report(source: str, kernel: str, arch: str = "sm_80") -> dict:
    """Per-thread registers, spill bytes, static shared bytes and PTX instruction counts of `kernel`."""
    built = compile_cuda(source, arch)
    report = {"kernel": kernel, "arch": arch}
    report.update(_ptxas_numbers(built["log"], kernel))
    report.update(count_instructions(ptx_body(built["ptx"], kernel)))
    return report


@functools.lru_cache(maxsize=32)
def raw_kernel(source: str, name: str):
    """A cupy.RawKernel of PRELUDE + source (compiled by CuPy for the current device)."""
    import cupy
    return cupy.RawKernel(PRELUDE + '\n#line 1 "kernel.cu"\n' + source, name, options=("-std=c++17",))


def gpu_unusable_reason() -> str | None:
    """None where CuPy runs on a CUDA device, else why not (the grading plugin's own check)."""
    from tito.grading.plugin import gpu_unusable_reason as reason
    return reason()


def gpu_compare(candidate, baseline, *, repeats: int = 10, warmup: int = 2) -> dict:
    """Median seconds of `candidate()` and `baseline()` on the GPU, timed with CUDA events around each
    call, interleaved round by round in one process after `warmup` calls of each (compilation
    excluded): {'candidate_s', 'baseline_s', 'speedup'} (speedup = baseline / candidate)."""
    import statistics

    import cupy
    for _ in range(warmup):
        candidate()
        baseline()
    cupy.cuda.Device().synchronize()
    times = {"candidate": [], "baseline": []}
    start, stop = cupy.cuda.Event(), cupy.cuda.Event()
    for _ in range(repeats):
        for key, fn in (("candidate", candidate), ("baseline", baseline)):
            start.record()
            fn()
            stop.record()
            stop.synchronize()
            times[key].append(cupy.cuda.get_elapsed_time(start, stop) / 1e3)
    c, b = statistics.median(times["candidate"]), statistics.median(times["baseline"])
    return {"candidate_s": c, "baseline_s": b, "speedup": b / c}
