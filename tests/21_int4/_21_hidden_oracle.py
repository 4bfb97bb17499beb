"""Instructor-only oracles of module 21's exercises, written independently of the reference
solution (other formulations). Removed from the student release."""
import numpy as np

NF4 = np.array([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0], dtype=np.float32)


def group_qparams(w, group_size=128, bits=4, symmetric=True):
    w = np.asarray(w, dtype=np.float64)
    if not np.isfinite(w).all():
        raise ValueError(f"group_qparams: {np.count_nonzero(~np.isfinite(w))} NaN/inf values")
    k = w.shape[-1]
    if group_size < 1 or k % group_size:
        raise ValueError(f"group_qparams: K={k} is not a multiple of group_size={group_size}")
    g = w.reshape(w.shape[:-1] + (k // group_size, group_size))
    if symmetric:
        qmax = 2 ** (bits - 1) - 1
        amax = np.abs(g).max(axis=-1)
        scale = np.where(amax > 0, amax / qmax, 1.0).astype(np.float32)
        scale = np.where(scale > 0, scale, np.float32(1.0)).astype(np.float32)
        return scale, np.zeros(scale.shape, np.int32)
    lo = np.minimum(g.min(axis=-1), 0.0)
    hi = np.maximum(g.max(axis=-1), 0.0)
    levels = 2 ** bits - 1
    s64 = (hi - lo) / levels
    ok = s64.astype(np.float32) > 0
    s64 = np.where(ok, s64, 1.0)
    zp = np.clip(np.round(-lo / s64), 0, levels).astype(np.int32)
    return s64.astype(np.float32), zp


def pack_int4(q):
    q = np.asarray(q).astype(np.int64)
    if q.size and (q.min() < -8 or q.max() > 15 or (q.min() < 0 and q.max() > 7)):
        raise ValueError("not 4-bit codes")
    k = q.shape[-1]
    flat = np.where(q < 0, q + 16, q).reshape(-1, k)
    out = np.zeros((flat.shape[0], (k + 1) // 2), np.uint8)
    for i in range(k):
        out[:, i // 2] |= (flat[:, i] << (4 * (i % 2))).astype(np.uint8)
    return out.reshape(q.shape[:-1] + ((k + 1) // 2,))


def unpack_int4(packed, n, signed=True):
    packed = np.asarray(packed, dtype=np.uint8)
    if packed.shape[-1] != (n + 1) // 2:
        raise ValueError("wrong number of bytes")
    flat = packed.reshape(-1, packed.shape[-1]).astype(np.int64)
    out = np.zeros((flat.shape[0], n), np.int64)
    for i in range(n):
        out[:, i] = (flat[:, i // 2] >> (4 * (i % 2))) & 15
    if signed:
        out = np.where(out >= 8, out - 16, out)
        return out.astype(np.int8).reshape(packed.shape[:-1] + (n,))
    return out.astype(np.uint8).reshape(packed.shape[:-1] + (n,))


def quantize_nf4(w, block_size=64):
    """NF4 by counting the float32 midpoints strictly below each scaled value."""
    x = np.asarray(w, dtype=np.float32).ravel()
    n = x.size
    mids = np.array([(NF4[i] + NF4[i + 1]) / np.float32(2) for i in range(15)], np.float32)
    idx = np.zeros(n + (n % 2), np.int64) + 7
    absmax = []
    for start in range(0, n, block_size):
        blk = x[start:start + block_size]
        amax = np.float32(np.max(np.abs(blk)))
        absmax.append(amax)
        recip = np.float32(1.0) / np.float32(max(amax, np.float32(1e-38)))
        scaled = np.minimum(np.maximum(blk * recip, np.float32(-1)), np.float32(1))
        idx[start:start + blk.size] = (scaled[:, None] > mids[None, :]).sum(axis=1)
    packed = (idx[0::2] * 16 + idx[1::2]).astype(np.uint8)
    return packed, np.array(absmax, np.float32)


def gemv_w4_source():
    """gemv_w4a16 written another way: each lane walks single bytes of a row (both nibbles by
    arithmetic shifts of a sign-extended byte), one row after another, shuffles down to lane 0."""
    from tinyq.int4 import W4_HELPERS
    return W4_HELPERS + r'''
extern "C" __global__ void gemv_w4a16(const unsigned char* packed, const float* scales,
        const unsigned short* x, float* y, int N, int K, int group_size) {
    int lane = threadIdx.x % 32;
    int first = blockIdx.x * 16 + (threadIdx.x / 32) * 4;
    int half_k = K / 2, n_groups = K / group_size;
    for (int r = 0; r < 4; ++r) {
        int row = first + r;
        bool real = row < N;
        if (!real) row = 0;
        float sum = 0.0f;
        for (int j = lane; j < half_k; j += 32) {
            int b = (int)(signed char)packed[(size_t)row * half_k + j];
            int lo = (int)(signed char)(unsigned char)(b << 4) >> 4, hi = b >> 4;
            float s = scales[(size_t)row * n_groups + (2 * j) / group_size];
            sum += s * ((float)lo * half_to_float(x[2 * j]) + (float)hi * half_to_float(x[2 * j + 1]));
        }
        for (int d = 1; d < 32; d *= 2)
            sum += __shfl_down_sync(0xffffffffu, sum, d);
        if (lane == 0 && real) y[row] = sum;
    }
}
'''
