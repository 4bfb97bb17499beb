"""Run CUDA C kernels on the CPU: the same source a GPU compiles, built by the system C++ compiler.

Hand-written support of module 20 (not generated). A kernel source written for CuPy's RawKernel is
compiled UNCHANGED by g++/clang++ (C++20) after a small header that gives the CUDA names a CPU
meaning:

* `__global__`, `__device__`, `__forceinline__` are plain (inline) functions;
* `__shared__` is `static`: one copy for the whole process. Shared memory belongs to a block, and
  the blocks of a launch run one after another, so one copy is exactly what each block sees
  (`thread_local` would be wrong: it would give every thread its own "shared" array);
* every thread of a block is a `std::thread`, `threadIdx`/`blockIdx` are thread-local,
  `__syncthreads()` is a `std::barrier` of the block's threads (a thread that returns early drops
  out of it, as an exited thread does on a GPU);
* the warps are real groups of 32 consecutive threads (by linear thread index) with a barrier and
  a scratch area each: `__syncwarp`, `__shfl_sync`/`_up_`/`_down_`/`_xor_` exchange values through
  the scratch, and `mma_m16n8k32_s8` (the module's one tensor-core device function) gathers the
  fragments of the 32 lanes, multiplies the 16x32 by 32x8 int8 tiles exactly, and hands each lane
  its accumulators, following the PTX ISA's fragment layout of `mma.m16n8k32.row.col.s32.s8.s8.s32`;
* `__dp4a` is four int8 products added to an int32, `int4`/`char4` are plain structs.

What the emulator cannot show: the speed of anything (no coalescing, no bank conflicts, no
occupancy, no time); races that a real warp exposes (its threads are scheduled by the OS, and the
barriers it adds for warp operations synchronise more than a GPU guarantees); out-of-bounds reads
that happen to land in mapped memory; the exact floating-point behaviour of GPU math (this
module's kernels are integer-only). It shows that the indexing, the tiling, the bounds checks, the
barriers and the fragment layout give the exact result.

`emulate(source, name, grid, block, *args)`: compile once per source (cached by its hash under
TINYQ_CUDA_EMU_CACHE, default a folder in the temp dir) and launch. Arguments: NumPy arrays (passed
by pointer, written in place) and Python ints (C `int`) or NumPy scalars of the parameter's type.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

HEADER = r"""
// tinyq CUDA-on-CPU emulator header (see tinyq/cuda_emulator.py)
#include <algorithm>
#include <barrier>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#define TINYQ_EMULATOR 1
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)

struct dim3 { unsigned x, y, z; };
struct int4 { int x, y, z, w; };
struct char4 { signed char x, y, z, w; };
inline int4 make_int4(int x, int y, int z, int w) { return int4{x, y, z, w}; }
using std::min;
using std::max;

namespace tqemu {
using Barrier = std::barrier<>;
struct Warp {
    std::unique_ptr<Barrier> bar;
    unsigned long long slot[32];                 // shuffles: one value per lane
    unsigned a[32][4], b[32][2]; int c[32][4];   // mma: the fragments of the 32 lanes
};
inline dim3 grid_dim, block_dim;
inline thread_local dim3 thread_idx, block_idx;
inline thread_local unsigned linear_tid;
inline std::unique_ptr<Barrier> block_bar;
inline std::vector<Warp> warps;

inline Warp& my_warp() { return warps[linear_tid / 32]; }
inline unsigned lane() { return linear_tid % 32; }
inline void warp_sync() { my_warp().bar->arrive_and_wait(); }

template <class T> T shfl_from(T v, int src) {
    static_assert(sizeof(T) <= 8, "shuffle of a value wider than 8 bytes");
    Warp& w = my_warp();
    unsigned long long bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    w.slot[lane()] = bits;
    w.bar->arrive_and_wait();
    T out;
    unsigned long long got = w.slot[src];
    std::memcpy(&out, &got, sizeof(T));
    w.bar->arrive_and_wait();
    return out;
}

template <class... P, std::size_t... I>
void call_with(void (*f)(P...), void** args, std::index_sequence<I...>) {
    f(*static_cast<std::remove_reference_t<P>*>(args[I])...);
}

template <class... P>
int launch(void (*f)(P...), dim3 grid, dim3 block, void** args) {
    unsigned n = block.x * block.y * block.z;
    if (n == 0 || n > 1024 || grid.x == 0 || grid.y == 0 || grid.z == 0) return 1;
    grid_dim = grid; block_dim = block;
    unsigned nwarps = (n + 31) / 32;
    for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
    for (unsigned bx = 0; bx < grid.x; ++bx) {
        block_bar = std::make_unique<Barrier>(n);
        warps = std::vector<Warp>(nwarps);
        for (unsigned w = 0; w < nwarps; ++w)
            warps[w].bar = std::make_unique<Barrier>(std::min(32u, n - 32 * w));
        std::vector<std::thread> threads;
        threads.reserve(n);
        for (unsigned t = 0; t < n; ++t) {
            threads.emplace_back([=] {
                linear_tid = t;
                thread_idx = dim3{t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
                block_idx = dim3{bx, by, bz};
                call_with(f, args, std::index_sequence_for<P...>{});
                warps[t / 32].bar->arrive_and_drop();   // an exited thread leaves both barriers
                block_bar->arrive_and_drop();
            });
        }
        for (auto& th : threads) th.join();
    }
    return 0;
}
}  // namespace tqemu

#define threadIdx (tqemu::thread_idx)
#define blockIdx (tqemu::block_idx)
#define blockDim (tqemu::block_dim)
#define gridDim (tqemu::grid_dim)
#define warpSize 32

inline void __syncthreads() { tqemu::block_bar->arrive_and_wait(); }
inline void __syncwarp(unsigned = 0xffffffffu) { tqemu::warp_sync(); }
inline unsigned __activemask() { return 0xffffffffu; }
template <class T> T __shfl_sync(unsigned, T v, int src, int width = 32) {
    int base = tqemu::lane() / width * width;
    return tqemu::shfl_from(v, base + (src % width + width) % width);
}
template <class T> T __shfl_down_sync(unsigned, T v, unsigned d, int width = 32) {
    int l = tqemu::lane(), base = l / width * width;
    return tqemu::shfl_from(v, (int)(l - base + d) < width ? l + (int)d : l);
}
template <class T> T __shfl_up_sync(unsigned, T v, unsigned d, int width = 32) {
    int l = tqemu::lane(), base = l / width * width;
    return tqemu::shfl_from(v, (int)(l - base) >= (int)d ? l - (int)d : l);
}
template <class T> T __shfl_xor_sync(unsigned, T v, int mask, int width = 32) {
    int l = tqemu::lane(), base = l / width * width;
    int src = l ^ mask;
    return tqemu::shfl_from(v, src - base < width && src >= base ? src : l);
}

inline int __dp4a(int a, int b, int c) {
    int s = c;
    for (int i = 0; i < 4; ++i)
        s += (int)(signed char)((unsigned)a >> (8 * i)) * (int)(signed char)((unsigned)b >> (8 * i));
    return s;
}

inline signed char tq_byte(unsigned r, int i) { return (signed char)(r >> (8 * i)); }

// D = A (16x32, row) * B (32x8, col) + C, int8 x int8 -> int32, for the whole warp.
// Fragment layout of mma.m16n8k32 with .s8 operands (PTX ISA, "Matrix Fragments for mma.m16n8k32"):
//   groupID = laneid >> 2, tig = laneid % 4
//   A: a[0] row g,   k 4*tig..4*tig+3     a[1] row g+8, k 4*tig..
//      a[2] row g,   k 16+4*tig..         a[3] row g+8, k 16+4*tig..   (byte i of a register: k + i)
//   B: b[0] col g,   k 4*tig..4*tig+3     b[1] col g,   k 16+4*tig..
//   C/D: c[0], c[1] row g, cols 2*tig, 2*tig+1;  c[2], c[3] row g+8, the same cols
inline void mma_m16n8k32_s8(int d[4], const unsigned a[4], const unsigned b[2], const int c[4]) {
    tqemu::Warp& w = tqemu::my_warp();
    unsigned me = tqemu::lane();
    for (int i = 0; i < 4; ++i) { w.a[me][i] = a[i]; w.c[me][i] = c[i]; }
    w.b[me][0] = b[0]; w.b[me][1] = b[1];
    w.bar->arrive_and_wait();
    int g = me >> 2, t = me & 3;
    for (int i = 0; i < 4; ++i) {
        int row = g + (i >= 2 ? 8 : 0), col = 2 * t + (i & 1);
        int acc = c[i];
        for (int k = 0; k < 32; ++k) {
            // the lane and register holding A[row][k] and B[k][col]
            int ka = k % 16, hi = k / 16;
            unsigned la = (row % 8) * 4 + ka / 4;
            unsigned ra = (row >= 8 ? 1 : 0) + 2 * hi;
            unsigned lb = col * 4 + ka / 4;
            acc += (int)tq_byte(w.a[la][ra], ka % 4) * (int)tq_byte(w.b[lb][hi], ka % 4);
        }
        d[i] = acc;
    }
    w.bar->arrive_and_wait();
}
"""

LAUNCHER = """
extern "C" int tqemu_launch_{name}(unsigned gx, unsigned gy, unsigned gz,
                                   unsigned bx, unsigned by, unsigned bz, void** args) {{
    return tqemu::launch({name}, dim3{{gx, gy, gz}}, dim3{{bx, by, bz}}, args);
}}
"""

KERNEL_NAME = re.compile(r'extern\s+"C"\s+__global__\s+(?:__launch_bounds__\([^)]*\)\s*)?void\s+'
                         r'(?:__launch_bounds__\([^)]*\)\s*)?(\w+)\s*\(')
_lock = threading.Lock()
_libraries: dict[str, ctypes.CDLL] = {}


def find_compiler() -> str | None:
    """A C++ compiler that builds the emulator (C++20 with <barrier>), or None."""
    for name in (os.environ.get("CXX"), "g++", "clang++", "c++"):
        if name and shutil.which(name) and _supports_cxx20(shutil.which(name)):
            return shutil.which(name)
    return None


_cxx20: dict[str, bool] = {}


def _supports_cxx20(cxx: str) -> bool:
    if cxx not in _cxx20:
        probe = "#include <barrier>\nint main() { std::barrier<> b(1); b.arrive_and_wait(); }\n"
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "probe.cpp"
            src.write_text(probe)
            try:
                r = subprocess.run([cxx, "-std=c++20", "-pthread", "-fsyntax-only", str(src)],
                                   capture_output=True, timeout=60)
                _cxx20[cxx] = r.returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                _cxx20[cxx] = False
    return _cxx20[cxx]


def cache_dir() -> Path:
    """Where built kernels are kept: TINYQ_CUDA_EMU_CACHE, else a private folder of this user in the
    temp dir (the libraries there are loaded and run, so nobody else may write to it)."""
    user = os.getuid() if hasattr(os, "getuid") else os.getlogin()
    path = Path(os.environ.get("TINYQ_CUDA_EMU_CACHE") or Path(tempfile.gettempdir()) / f"tinyq-cuda-emu-{user}")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def kernel_names(source: str) -> list[str]:
    """The `extern "C" __global__` kernels a source defines."""
    return KERNEL_NAME.findall(source)


class EmulatorBuildError(RuntimeError):
    """The C++ compiler rejected the kernel source (its messages are in the exception)."""


def build(source: str) -> ctypes.CDLL:
    """Compile `source` (with the header and one launcher per kernel) into a shared library, once."""
    names = kernel_names(source)
    if not names:
        raise ValueError('the source defines no kernel (extern "C" __global__ void name(...))')
    full = HEADER + "\n#line 1 \"kernel.cu\"\n" + source + "\n" + "".join(LAUNCHER.format(name=n) for n in names)
    cxx = find_compiler()
    if cxx is None:
        raise RuntimeError("needs a C++ compiler with C++20 (<barrier>): install g++ >= 11 or clang++ >= 15")
    key = hashlib.sha256((cxx + "\0" + full).encode()).hexdigest()[:24]
    with _lock:
        if key in _libraries:
            return _libraries[key]
        lib_path = cache_dir() / f"k{key}.so"
        if not lib_path.exists():
            with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
                src = Path(tmp) / "kernel.cpp"
                src.write_text(full)
                out = Path(tmp) / "kernel.so"
                r = subprocess.run([cxx, "-std=c++20", "-O1", "-pthread", "-fPIC", "-shared", "-w",
                                    "-o", str(out), str(src)], capture_output=True, text=True)
                if r.returncode != 0:
                    raise EmulatorBuildError("the C++ compiler rejected the kernel source:\n" + r.stderr[-4000:])
                os.replace(out, lib_path)       # atomic: a concurrent build of the same key is harmless
        lib = ctypes.CDLL(str(lib_path))
        _libraries[key] = lib
        return lib


def _arg(value):
    if isinstance(value, np.ndarray):
        if not value.flags.c_contiguous:
            raise ValueError("emulate: array arguments must be C-contiguous")
        return ctypes.c_void_p(value.ctypes.data)
    if isinstance(value, (bool, np.bool_)):
        raise TypeError("emulate: pass ints, not booleans")
    if isinstance(value, (int, np.int32)):
        return ctypes.c_int(int(value))
    if isinstance(value, np.int64):
        return ctypes.c_longlong(int(value))
    if isinstance(value, (np.uint32,)):
        return ctypes.c_uint(int(value))
    raise TypeError(f"emulate: unsupported argument type {type(value).__name__}")


def _dim(value) -> tuple[int, int, int]:
    t = tuple(int(v) for v in (value if isinstance(value, (tuple, list)) else (value,)))
    if not 1 <= len(t) <= 3 or min(t) < 1:
        raise ValueError(f"emulate: a grid or block is 1 to 3 positive sizes, got {value!r}")
    return t + (1,) * (3 - len(t))


def emulate(source: str, name: str, grid, block, *args) -> None:
    """Launch kernel `name` of `source` on the CPU with `grid` x `block` threads (blocks in order)."""
    lib = build(source)
    if name not in kernel_names(source):
        raise ValueError(f"emulate: no kernel {name!r} in the source (it has {kernel_names(source)})")
    g, b = _dim(grid), _dim(block)
    if b[0] * b[1] * b[2] > 1024:
        raise ValueError(f"emulate: {b[0] * b[1] * b[2]} threads per block (a GPU allows at most 1024)")
    held = [_arg(a) for a in args]
    ptrs = (ctypes.c_void_p * max(1, len(held)))(*[ctypes.cast(ctypes.byref(h), ctypes.c_void_p) for h in held])
    fn = getattr(lib, f"tqemu_launch_{name}")
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_uint] * 6 + [ctypes.c_void_p]
    with _lock:                    # the emulator's state (barriers, warps) is one per process
        rc = fn(*g, *b, ptrs)
    if rc != 0:
        raise ValueError(f"emulate: bad launch configuration grid={g} block={b}")
