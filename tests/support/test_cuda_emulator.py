"""tinyq.cuda_emulator: CUDA C kernels compiled by the system C++ compiler and run on the CPU.

The emulator is what module 20 grades exactness with, so its own semantics are checked here against
independent definitions: blocks and threads, shared memory per block, __syncthreads, warp shuffles,
__dp4a, and the fragment layout of mma.m16n8k32 .s8 written from the PTX ISA's formulas (not from
the emulator's code)."""
import numpy as np
import pytest

from tinyq import cuda_emulator as emu

pytestmark = pytest.mark.skipif(emu.find_compiler() is None, reason="needs a C++20 compiler (g++ >= 11)")

# one source, so one build for all the tests of the semantics
KERNELS = r'''extern "C" __global__ void ids(int* out, int n) {
    int bx = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    int t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    int i = bx * blockDim.x * blockDim.y * blockDim.z + t;
    if (i < n) out[i] += i + 1;
}
extern "C" __global__ void rev(const int* in, int* out) {
    __shared__ int tile[64];
    int t = threadIdx.x, base = blockIdx.x * 64;
    tile[t] = in[base + t];
    __syncthreads();
    out[base + t] = tile[63 - t];
}
extern "C" __global__ void part(int* out, int n) {
    __shared__ int s[32];
    int t = threadIdx.x;
    if (t >= n) return;               // exited threads must not block the others' barrier
    s[t] = t;
    __syncthreads();
    out[t] = s[n - 1 - t];
}
extern "C" __global__ void shf(const int* in, int* out) {
    int t = threadIdx.x, v = in[t];
    out[t] = __shfl_sync(0xffffffff, v, 3);
    out[64 + t] = __shfl_xor_sync(0xffffffff, v, 1);
    out[128 + t] = __shfl_down_sync(0xffffffff, v, 4);
    out[192 + t] = __shfl_up_sync(0xffffffff, v, 2);
    int s = v;                                      // butterfly sum over the warp
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffff, s, o);
    out[256 + t] = s;
}
extern "C" __global__ void d4(const int* a, const int* b, int* out) { out[threadIdx.x] = __dp4a(a[threadIdx.x], b[threadIdx.x], 7); }
extern "C" __global__ void mma1(const unsigned* fa, const unsigned* fb, const int* fc, int* fd) {
    int l = threadIdx.x;
    unsigned a[4] = {fa[4 * l], fa[4 * l + 1], fa[4 * l + 2], fa[4 * l + 3]};
    unsigned b[2] = {fb[2 * l], fb[2 * l + 1]};
    int c[4] = {fc[4 * l], fc[4 * l + 1], fc[4 * l + 2], fc[4 * l + 3]};
    int d[4];
    mma_m16n8k32_s8(d, a, b, c);
    for (int i = 0; i < 4; ++i) fd[4 * l + i] = d[i];
}
'''


def test_every_thread_of_every_block_runs_once():
    n = 2 * 3 * 2 * 4 * 3 * 2
    out = np.zeros(n, np.int32)
    emu.emulate(KERNELS, "ids", (2, 3, 2), (4, 3, 2), out, n)
    assert np.array_equal(out, np.arange(1, n + 1))


def test_shared_memory_and_syncthreads_per_block():
    """A block reverses its slice through shared memory: correct only with a barrier, per block."""
    x = np.arange(4 * 64, dtype=np.int32)
    out = np.zeros_like(x)
    emu.emulate(KERNELS, "rev", 4, 64, x, out)
    assert np.array_equal(out, x.reshape(4, 64)[:, ::-1].ravel())


def test_early_return_leaves_the_barrier():
    out = np.full(32, -1, np.int32)
    emu.emulate(KERNELS, "part", 1, 32, out, 20)
    assert np.array_equal(out[:20], np.arange(19, -1, -1)) and np.all(out[20:] == -1)


def test_warp_shuffles():
    x = np.random.default_rng(0).integers(-1000, 1000, 64).astype(np.int32)
    out = np.zeros(320, np.int32)
    emu.emulate(KERNELS, "shf", 1, 64, x, out)
    lanes = np.arange(64) % 32
    base = np.arange(64) - lanes
    assert np.array_equal(out[:64], x[base + 3])
    assert np.array_equal(out[64:128], x[base + (lanes ^ 1)])
    assert np.array_equal(out[128:192], x[np.where(lanes + 4 < 32, np.arange(64) + 4, np.arange(64))])
    assert np.array_equal(out[192:256], x[np.where(lanes >= 2, np.arange(64) - 2, np.arange(64))])
    assert np.array_equal(out[256:], np.repeat(x.reshape(2, 32).sum(axis=1), 32))


def test_dp4a():
    rng = np.random.default_rng(1)
    a8, b8 = rng.integers(-128, 128, (32, 4)).astype(np.int8), rng.integers(-128, 128, (32, 4)).astype(np.int8)
    out = np.zeros(32, np.int32)
    emu.emulate(KERNELS, "d4", 1, 32, a8.view(np.int32).ravel().copy(), b8.view(np.int32).ravel().copy(), out)
    assert np.array_equal(out, (a8.astype(np.int32) * b8).sum(axis=1) + 7)


def _isa_fragments(A, B, C):
    """Per-lane registers of mma.m16n8k32 .s8 from the PTX ISA's formulas (groupID, threadID_in_group)."""
    a = np.zeros((32, 16), np.int8)
    b = np.zeros((32, 8), np.int8)
    c = np.zeros((32, 4), np.int32)
    for lane in range(32):
        g, t = lane >> 2, lane % 4
        for i in range(16):              # a_i: row g for 0 <= i < 4 or 8 <= i < 12, else g + 8
            row = g if (i < 4 or 8 <= i < 12) else g + 8
            col = t * 4 + (i & 3) + (16 if i >= 8 else 0)
            a[lane, i] = A[row, col]
        for i in range(8):               # b_i: row (k) t*4 + (i & 3), + 16 for i >= 4; col g
            b[lane, i] = B[t * 4 + (i & 3) + (16 if i >= 4 else 0), g]
        for i in range(4):               # c_i: row g (+8 for i >= 2), col 2t + (i & 1)
            c[lane, i] = C[g + (8 if i >= 2 else 0), 2 * t + (i & 1)]
    return a.view(np.uint32), b.view(np.uint32), c


def test_mma_m16n8k32_follows_the_ptx_isa_layout():
    rng = np.random.default_rng(2)
    A = rng.integers(-128, 128, (16, 32)).astype(np.int8)
    B = rng.integers(-128, 128, (32, 8)).astype(np.int8)
    C = rng.integers(-1000, 1000, (16, 8)).astype(np.int32)
    fa, fb, fc = _isa_fragments(A, B, C)
    fd = np.zeros((32, 4), np.int32)
    emu.emulate(KERNELS, "mma1", 1, 32, fa.ravel().copy(), fb.ravel().copy(), fc.ravel().copy(), fd)
    D = A.astype(np.int32) @ B.astype(np.int32) + C
    _, _, expected = _isa_fragments(np.zeros((16, 32), np.int8), np.zeros((32, 8), np.int8), D)
    assert np.array_equal(fd, expected)


def test_a_compile_error_is_reported_and_sources_are_cached():
    with pytest.raises(emu.EmulatorBuildError):
        emu.build('extern "C" __global__ void bad(int* x) { x[0] = undefined_name; }')
    src = 'extern "C" __global__ void ok(int* x) { x[threadIdx.x] = 1; }'
    assert emu.build(src) is emu.build(src)
    with pytest.raises(ValueError):
        emu.emulate(src, "ok", 1, 1025, np.zeros(1025, np.int32))
