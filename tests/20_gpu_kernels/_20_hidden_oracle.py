"""Instructor-only oracle of module 20's exercises, written independently of the reference
solution (another formulation of the same definition). Removed from the student release.

The `only` fixture puts these functions in place of the exercises a test does not grade, and the
hidden tests compare the learner's results with them.
"""
import math

import numpy as np

from tinyq.gpu_kernels import KERNEL_NAMES, SM_LIMITS, TILE_LOADER, VARIANTS


def naive_source():
    return r'''
extern "C" __global__ void gemm_naive(const signed char* A, const signed char* W, int* C, int M, int N, int K) {
    int col = threadIdx.x + blockDim.x * blockIdx.x;
    int row = threadIdx.y + blockDim.y * blockIdx.y;
    if (row < M && col < N) {
        int s = 0;
        for (int k = 0; k < K; k++)
            s += A[(size_t)row * K + k] * W[(size_t)col * K + k];
        C[(size_t)row * N + col] = s;
    }
}
'''


def tiled_source():
    return r'''
extern "C" __global__ void gemm_tiled(const signed char* A, const signed char* W, int* C, int M, int N, int K) {
    __shared__ signed char sa[32][36];
    __shared__ signed char sw[32][36];
    int x = threadIdx.x, y = threadIdx.y;
    int rowBase = 32 * blockIdx.y, colBase = 32 * blockIdx.x;
    int s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int tiles = (K + 31) / 32;
    for (int tIdx = 0; tIdx < tiles; tIdx++) {
        int kk = 32 * tIdx + x;
        for (int q = 0; q < 4; q++) {
            int r = y + 8 * q;
            sa[r][x] = (rowBase + r < M && kk < K) ? A[(size_t)(rowBase + r) * K + kk] : (signed char)0;
            sw[r][x] = (colBase + r < N && kk < K) ? W[(size_t)(colBase + r) * K + kk] : (signed char)0;
        }
        __syncthreads();
        for (int k = 0; k < 32; k++) {
            int b = sw[x][k];
            s0 += sa[y][k] * b; s1 += sa[y + 8][k] * b; s2 += sa[y + 16][k] * b; s3 += sa[y + 24][k] * b;
        }
        __syncthreads();
    }
    int col = colBase + x;
    if (col < N) {
        if (rowBase + y < M) C[(size_t)(rowBase + y) * N + col] = s0;
        if (rowBase + y + 8 < M) C[(size_t)(rowBase + y + 8) * N + col] = s1;
        if (rowBase + y + 16 < M) C[(size_t)(rowBase + y + 16) * N + col] = s2;
        if (rowBase + y + 24 < M) C[(size_t)(rowBase + y + 24) * N + col] = s3;
    }
}
'''


def dp4a_source():
    return "#define LDS 9\n" + TILE_LOADER + r'''
extern "C" __global__ void gemm_dp4a(const signed char* A, const signed char* W, int* C, int M, int N, int K) {
    __shared__ int ta[64][LDS];
    __shared__ int tw[64][LDS];
    int lin = threadIdx.y * blockDim.x + threadIdx.x;
    int s[16];
    for (int q = 0; q < 16; q++) s[q] = 0;
    for (int k0 = 0; k0 < K; k0 += 32) {
        load_tile_64x32(ta, A, M, K, 64 * blockIdx.y, k0, lin, 256);
        load_tile_64x32(tw, W, N, K, 64 * blockIdx.x, k0, lin, 256);
        __syncthreads();
        for (int j = 0; j < 4; j++)
            for (int word = 0; word < 8; word++) {
                int b = tw[threadIdx.x + 16 * j][word];
                for (int i = 0; i < 4; i++)
                    s[4 * i + j] = __dp4a(ta[threadIdx.y + 16 * i][word], b, s[4 * i + j]);
            }
        __syncthreads();
    }
    for (int q = 0; q < 16; q++) {
        int row = 64 * blockIdx.y + threadIdx.y + 16 * (q / 4);
        int col = 64 * blockIdx.x + threadIdx.x + 16 * (q % 4);
        if (row < M && col < N) C[(size_t)row * N + col] = s[q];
    }
}
'''


def mma_source():
    return "#define LDS 12\n" + TILE_LOADER + r'''
extern "C" __global__ void gemm_mma(const signed char* A, const signed char* W, int* C, int M, int N, int K) {
    __shared__ int ta[64][LDS];
    __shared__ int tw[64][LDS];
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    int groupID = lane / 4, tig = lane % 4;
    int rowW = 64 * blockIdx.y + 32 * (warp / 2), colW = 64 * blockIdx.x + 32 * (warp % 2);
    int d[8][4];
    for (int p = 0; p < 8; p++) for (int e = 0; e < 4; e++) d[p][e] = 0;
    for (int k0 = 0; k0 < K; k0 += 32) {
        load_tile_64x32(ta, A, M, K, 64 * blockIdx.y, k0, threadIdx.x, 128);
        load_tile_64x32(tw, W, N, K, 64 * blockIdx.x, k0, threadIdx.x, 128);
        __syncthreads();
        for (int p = 0; p < 8; p++) {
            int mi = p / 4, nj = p % 4;
            unsigned a[4], b[2];
            for (int r = 0; r < 4; r++)       // a[r]: row groupID (+8 for odd r), k words tig (+4 for r >= 2)
                a[r] = ta[32 * (warp / 2) + 16 * mi + groupID + 8 * (r & 1)][tig + 4 * (r >> 1)];
            for (int r = 0; r < 2; r++)
                b[r] = tw[32 * (warp % 2) + 8 * nj + groupID][tig + 4 * r];
            mma_m16n8k32_s8(d[p], a, b, d[p]);
        }
        __syncthreads();
    }
    for (int p = 0; p < 8; p++)
        for (int e = 0; e < 4; e++) {
            int row = rowW + 16 * (p / 4) + groupID + 8 * (e / 2);
            int col = colW + 8 * (p % 4) + 2 * tig + e % 2;
            if (row < M && col < N) C[(size_t)row * N + col] = d[p][e];
        }
}
'''


def launch_config(variant, M, N):
    table = {"naive": (32, 8, 8, 32), "tiled": (32, 8, 32, 32), "dp4a": (16, 16, 64, 64), "mma": (128, 1, 64, 64)}
    if variant not in table or M < 1 or N < 1:
        raise ValueError("bad launch")
    bx, by, tm, tn = table[variant]
    gy = math.ceil(M / tm)
    if gy > 65535:
        raise ValueError("grid too tall")
    return (math.ceil(N / tn), gy, 1), (bx, by, 1)


def gemm_int8_gpu(a_q, w_q, variant="mma", *, emulate=False):
    if getattr(a_q, "dtype", None) != np.int8 or getattr(w_q, "dtype", None) != np.int8:
        raise TypeError("int8 operands needed")
    if variant not in VARIANTS or a_q.ndim != 2 or w_q.ndim != 2 or a_q.shape[1] != w_q.shape[1]:
        raise ValueError("bad operands")
    m, k = a_q.shape
    n = w_q.shape[0]
    if m == 0 or n == 0 or k == 0 or k > 131071:
        raise ValueError("bad sizes")
    import tinyq.gpu_kernels as g
    grid, block = g.launch_config(variant, m, n)
    if emulate:
        from tinyq.cuda_emulator import emulate as run
        a = np.ascontiguousarray(a_q.get() if hasattr(a_q, "get") else a_q)
        w = np.ascontiguousarray(w_q.get() if hasattr(w_q, "get") else w_q)
        c = np.zeros((m, n), np.int32)
        run(g.kernel_source(variant), KERNEL_NAMES[variant], grid, block, a, w, c, m, n, k)
        return c
    import cupy
    from tinyq.cuda_nvrtc import raw_kernel
    a, w = cupy.ascontiguousarray(cupy.asarray(a_q)), cupy.ascontiguousarray(cupy.asarray(w_q))
    c = cupy.zeros((m, n), cupy.int32)
    raw_kernel(g.kernel_source(variant), KERNEL_NAMES[variant])(
        grid, block, (a, w, c, np.int32(m), np.int32(n), np.int32(k)))
    return c


def occupancy(report, arch, threads_per_block):
    if arch not in SM_LIMITS or not 0 < threads_per_block <= 1024:
        raise ValueError("bad arch or block")
    L = SM_LIMITS[arch]
    regs, smem = report["registers"], report["shared_bytes"]
    if regs < 0 or regs > 255 or smem < 0:
        raise ValueError("bad report")
    warps = math.ceil(threads_per_block / 32)
    reg_block = warps * math.ceil(regs * 32 / 256) * 256
    smem_block = math.ceil((smem + L["reserved"]) / L["shared_unit"]) * L["shared_unit"]

    def fits(b):                       # do b blocks fit, by every rule?
        reg_ok = regs == 0 or (L["registers_per_sm"] // (reg_block // warps)) >= b * warps
        return (b * warps <= L["max_warps"] and reg_ok and b * smem_block <= L["shared_per_sm"]
                and b <= L["max_blocks"])

    b = 0
    while fits(b + 1):
        b += 1
    if b == 0:
        raise ValueError("no block fits")
    for name, ok in (("warps", (b + 1) * warps <= L["max_warps"]),
                     ("registers", regs == 0 or (L["registers_per_sm"] // (reg_block // warps)) >= (b + 1) * warps),
                     ("shared", (b + 1) * smem_block <= L["shared_per_sm"]),
                     ("blocks", b + 1 <= L["max_blocks"])):
        if not ok:
            limited = name
            break
    return {"blocks_per_sm": b, "warps_per_sm": b * warps, "occupancy": b * warps / L["max_warps"],
            "limited_by": limited}
