# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: nbgrader,tags,-all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Module 21: INT4 — two weights per byte
#
# When a language model generates text, each new token multiplies every weight matrix by **one**
# activation vector: a matrix-vector product (GEMV). Each weight is read from memory once and used
# for a single multiply-add, so the time per token is set by how many **bytes** of weights the
# processor has to pull through its memory bus, not by how fast it multiplies. Halve the bytes and,
# to first order, you double the tokens per second. That is why 4-bit weights are everywhere in LLM
# inference: FP32 stores a weight in 4 bytes, INT8 in 1, INT4 in half a byte (plus a few scales).
#
# Half a byte is not a type that numpy, C or a SIMD register has. Every 4-bit format therefore
# answers the same questions, and answers them differently:
#
# * **Which nibble holds which weight?** ONNX (opset 21 `INT4`) puts the first element in the *low*
#   nibble; bitsandbytes puts it in the *high* nibble; GGUF's Q4_0 pairs element $j$ with element
#   $j+16$ of the same block.
# * **How many weights share a scale?** One scale per output channel is too coarse at 4 bits: 15
#   codes cannot cover a row with a few large weights and many small ones. Formats use **groups**
#   (blocks) of 32–128 consecutive weights along the input dimension $K$, each with its own scale.
# * **Which 16 values do the codes stand for?** Evenly spaced integers (INT4, Q4_0) or the quantiles
#   of a normal distribution (NF4).
#
# You will write: nibble packing in ONNX's order, per-group INT4 quantization of a weight matrix,
# llama.cpp's **Q8_0** and **Q4_0** blocks byte for byte (checked against the `gguf` package that
# llama.cpp's tools use), bitsandbytes' **NF4**, and a **W4A16 GEMV** kernel in Numba (4-bit weights,
# float activations). Section 6 measures all of it with your code: model sizes from real `nbytes`,
# the accuracy of the digits models with 4-bit weights, bytes moved against memory bandwidth, and
# how the nibble layout decides the speed of the kernel. Section 7 writes the same GEMV for a GPU,
# as a CUDA kernel that CuPy launches, built and checked on the CPU as in module 20 (NVRTC and the
# CPU emulator), and timed against cuBLAS where a GPU is at hand. Section 8 returns to the CPU with
# a **W4A8** GEMV: activations rounded to int8 blocks as llama.cpp does, so that the inner loop can
# multiply 32 bytes per instruction.
#
# **How to work**: edit the cells marked `# YOUR CODE HERE`, run the test below each one, then
# `tito export 21` and `tito test 21` in a terminal to grade your package.

# %%
#| default_exp int4

# %%
#| export
import numpy as np
from numba import njit, prange

from tinyq.observers import group_qparams

# %% [markdown]
# ## 1. Two codes per byte
#
# A signed 4-bit code $q \in [-8, 7]$ is stored as its two's-complement **nibble** $q \bmod 16$
# (`q & 0xF`): $3 \to$ `0x3`, $-3 \to$ `0xD`, $-8 \to$ `0x8`. An unsigned code $u \in [0, 15]$ is
# its own nibble. Both fit the same packing, so `pack_int4` does not need to know which kind it
# was given; `unpack_int4` does, because nibble `0xD` means $-3$ signed and $13$ unsigned.
#
# ONNX's order: element $2i$ goes to the **low** nibble of byte $i$ and element $2i+1$ to the
# **high** nibble:
#
# $$\text{byte}_i = \text{nib}(q_{2i}) \;|\; \text{nib}(q_{2i+1}) \ll 4$$
#
# `onnx.helper.make_tensor(INT4, [1, 2, -3])` stores exactly the bytes `[0x21, 0x0D]`: 1 in the low
# nibble and 2 in the high nibble of the first byte, then $-3$ (`0xD`) alone, padded with a zero
# nibble, in the second. An odd count always leaves one nibble of padding.
#
# We pack along the **last axis**: a weight matrix of shape $(N, K)$ becomes $(N, \lceil K/2 \rceil)$
# bytes, each row packed on its own, so a row of weights is a contiguous run of bytes — the shape a
# GEMV kernel wants.
#
# Sign extension on the way back: the nibble $u$ of a signed code is $q + 16$ when $q < 0$. XOR-ing
# with 8 and subtracting 8 undoes it without a branch: $(u \oplus 8) - 8$ maps $0..7 \to 0..7$ and
# $8..15 \to -8..-1$.

# %% nbgrader={"grade": false, "grade_id": "pack_int4", "locked": false, "schema_version": 3, "solution": true}
#| export
def pack_int4(q):
    """Pack 4-bit codes two per byte along the last axis, first code in the LOW nibble (ONNX order).

    TODO: q is an integer array (..., K) of signed codes in [-8, 7] or unsigned codes in [0, 15].
    Return np.uint8 of shape (..., ceil(K / 2)) with byte i = nib(q[2i]) | nib(q[2i+1]) << 4,
    where nib(v) = v & 0xF; an odd K pads the last high nibble with 0.

    APPROACH:
      1. q = np.asarray(q); refuse a 0-d array and non-integer dtypes (ValueError).
      2. Refuse codes outside [-8, 15], and arrays that mix negative codes with codes above 7
         (neither signed nor unsigned 4-bit): ValueError saying what was found.
      3. nibbles = (q & 0xF) as uint8 (do the & in a type wide enough for q: int16 is safe);
         pad one zero column when K is odd.
      4. Combine the even columns (low) and the odd columns (shifted left by 4).

    EXAMPLE: pack_int4([1, 2, -3]) -> array([0x21, 0x0D], dtype=uint8)
             pack_int4([[15, 0], [7, 8]]) -> array([[0x0F], [0x87]], dtype=uint8)

    HINTS: q[..., 0::2] and q[..., 1::2] are the even and odd columns; np.pad with
    pad_width [(0, 0)] * (q.ndim - 1) + [(0, 1)] adds one column.
    """
    ### BEGIN SOLUTION
    q = np.asarray(q)
    if q.ndim == 0:
        raise ValueError("pack_int4 needs an array with at least one axis, got a scalar")
    if not np.issubdtype(q.dtype, np.integer):
        raise ValueError(f"pack_int4 packs integer codes, got dtype {q.dtype}")
    if q.size:
        lowest, highest = int(q.min()), int(q.max())
        if lowest < -8 or highest > 15:
            raise ValueError(f"pack_int4: codes must lie in [-8, 7] (signed) or [0, 15] (unsigned), "
                             f"found values in [{lowest}, {highest}]")
        if lowest < 0 and highest > 7:
            raise ValueError(f"pack_int4: the codes mix negative values ({lowest}) with values above 7 "
                             f"({highest}); they are neither signed nor unsigned 4-bit codes")
    nibbles = (q.astype(np.int16) & 0xF).astype(np.uint8)
    if nibbles.shape[-1] % 2:
        nibbles = np.pad(nibbles, [(0, 0)] * (nibbles.ndim - 1) + [(0, 1)])
    return (nibbles[..., 0::2] | (nibbles[..., 1::2] << np.uint8(4))).astype(np.uint8)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_pack_int4", "locked": true, "schema_version": 3, "solution": false}
packed = pack_int4([1, 2, -3])
assert packed.dtype == np.uint8 and packed.tolist() == [0x21, 0x0D]       # ONNX's own bytes
assert pack_int4(np.array([[15, 0], [7, 8]])).tolist() == [[0x0F], [0x87]]
assert pack_int4(np.zeros((3, 0), np.int8)).shape == (3, 0)
for bad in ([16], [-9], [-1, 9]):
    try:
        pack_int4(bad)
        raise AssertionError(f"{bad} must be refused")
    except ValueError:
        pass
print("pack_int4: ok")

# %% nbgrader={"grade": false, "grade_id": "unpack_int4", "locked": false, "schema_version": 3, "solution": true}
#| export
def unpack_int4(packed, n, signed=True):
    """Unpack `n` 4-bit codes per row from bytes packed by `pack_int4` (ONNX order).

    TODO: packed is np.uint8 of shape (..., ceil(n / 2)). Return (..., n) codes: np.int8 in [-8, 7]
    when signed, np.uint8 in [0, 15] otherwise. Code 2i is the low nibble of byte i, code 2i+1 the
    high nibble; a padding nibble (odd n) is dropped.

    APPROACH: check dtype (uint8) and that the last axis has exactly ceil(n / 2) bytes (ValueError
    otherwise); low = packed & 0xF, high = packed >> 4; interleave them into a (..., 2 * bytes)
    array (even columns low, odd columns high) and keep the first n; sign-extend with (u ^ 8) - 8.

    EXAMPLE: unpack_int4(np.array([0x21, 0x0D], np.uint8), 3) -> array([1, 2, -3], dtype=int8)
             unpack_int4(np.array([0x21, 0x0D], np.uint8), 3, signed=False) -> array([1, 2, 13], uint8)
    """
    ### BEGIN SOLUTION
    packed = np.asarray(packed)
    if packed.ndim == 0:
        raise ValueError("unpack_int4 needs an array of bytes with at least one axis")
    if packed.dtype != np.uint8:
        raise ValueError(f"unpack_int4 reads np.uint8 bytes, got dtype {packed.dtype}")
    n = int(n)
    if n < 0 or packed.shape[-1] != (n + 1) // 2:
        raise ValueError(f"unpack_int4: {n} codes need {(n + 1) // 2} bytes per row, "
                         f"the last axis has {packed.shape[-1]}")
    codes = np.empty(packed.shape[:-1] + (2 * packed.shape[-1],), dtype=np.uint8)
    codes[..., 0::2] = packed & np.uint8(0x0F)
    codes[..., 1::2] = packed >> np.uint8(4)
    codes = codes[..., :n]
    if not signed:
        return np.ascontiguousarray(codes)
    return ((codes ^ np.uint8(8)).astype(np.int8) - np.int8(8)).astype(np.int8)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_unpack_int4", "locked": true, "schema_version": 3, "solution": false}
codes = unpack_int4(np.array([0x21, 0x0D], np.uint8), 3)
assert codes.dtype == np.int8 and codes.tolist() == [1, 2, -3]
assert unpack_int4(np.array([0x21, 0x0D], np.uint8), 3, signed=False).tolist() == [1, 2, 13]
q = np.arange(-8, 8).reshape(2, 8)
assert np.array_equal(unpack_int4(pack_int4(q), 8), q)
u = np.arange(15).reshape(3, 5)                       # odd rows: one padding nibble per row
assert np.array_equal(unpack_int4(pack_int4(u), 5, signed=False), u)
print("unpack_int4: ok")

# %% [markdown]
# ## 2. One scale per group of weights
#
# At 8 bits, one scale per output channel (row) is enough (module 15). At 4 bits it is not: a row
# of 4096 weights with a single outlier gets a scale so large that most weights round to 0. The
# fix used by GPTQ, AWQ, llama.cpp and ONNX's blocked quantization is a scale per **group** of $g$
# consecutive weights along the input dimension $K$ (module 16's `group_qparams`):
#
# $$q_{n,k} = \mathrm{clip}\Big(\mathrm{round}\big(w_{n,k} / s_{n,\lfloor k/g \rfloor}\big),\, -7,\, 7\Big)
# \qquad \hat w_{n,k} = q_{n,k}\, s_{n,\lfloor k/g \rfloor}$$
#
# (symmetric, narrow range $[-7, 7]$, as in module 15), or with unsigned codes in $[0, 15]$ and a
# zero point per group (asymmetric, as AWQ does). Groups cost memory: a float32 scale per $g$
# weights adds $32/g$ bits per weight, so INT4 with $g = 128$ stores $4 + 0.25 = 4.25$ bits per
# weight, a ratio of $32 / 4.25 = 7.5\times$ against FP32, not $8\times$. A zero point stored as a
# byte adds another $8/g$.
#
# `group_qparams(w, group_size, bits=4, symmetric)` (module 16, imported above) gives the scales and
# zero points of every group; here you turn them into packed codes and back. Quantize exactly as
# module 15 does: **divide** by the scale, round half to even (`np.rint`), add the zero point, clip.

# %% nbgrader={"grade": false, "grade_id": "quantize_int4_groups", "locked": false, "schema_version": 3, "solution": true}
#| export
def quantize_int4_groups(w, group_size=128, symmetric=True):
    """Quantize a weight matrix (..., K) to packed INT4 with one scale per group along K.

    TODO: return (packed, scale, zero_point):
      packed     np.uint8 (..., ceil(K / 2)), the codes packed with `pack_int4` (ONNX order);
      scale      np.float32 (..., K // group_size), from `group_qparams(w, group_size, 4, symmetric)`;
      zero_point None when symmetric (codes are signed, in [-7, 7]); otherwise np.uint8
                 (..., K // group_size) in [0, 15] and codes unsigned in [0, 15].

    APPROACH:
      1. w = float32 array; scale, zp = group_qparams(w, group_size, bits=4, symmetric=symmetric)
         (it raises ValueError for NaN/inf and for a K that group_size does not divide).
      2. View w as (..., K // group_size, group_size) so each group lines up with its scale
         (scale[..., None] broadcasts).
      3. symmetric: codes = clip(rint(w / scale), -7, 7);
         asymmetric: codes = clip(rint(w / scale) + zp, 0, 15).
      4. Back to (..., K), as integers, and pack_int4.

    EXAMPLE: quantize_int4_groups(np.array([[1., -2., 3., -7., .5, .5, .5, .7]]), group_size=4)
             -> scale [[1.0, 0.1]], codes [[1, -2, 3, -7, 5, 5, 5, 7]], packed [[0xE1, 0x93, 0x55, 0x75]]

    HINTS: np.divide keeps float32 when both operands are float32.
    """
    ### BEGIN SOLUTION
    w = np.asarray(w, dtype=np.float32)
    scale, zp = group_qparams(w, group_size, bits=4, symmetric=symmetric)
    scale = np.asarray(scale, dtype=np.float32)
    groups = w.reshape(*w.shape[:-1], w.shape[-1] // group_size, group_size)
    v = np.rint(np.divide(groups, scale[..., None]))
    if symmetric:
        codes = np.clip(v, -7, 7)
        zero_point = None
    else:
        zp = np.asarray(zp)
        codes = np.clip(v + zp[..., None], 0, 15)
        zero_point = zp.astype(np.uint8)
    codes = codes.reshape(w.shape).astype(np.int8)
    return pack_int4(codes), scale, zero_point
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_quantize_int4_groups", "locked": true, "schema_version": 3, "solution": false}
w_small = np.array([[1.0, -2.0, 3.0, -7.0, 0.5, 0.5, 0.5, 0.7]], np.float32)
packed, scale, zp = quantize_int4_groups(w_small, group_size=4)
assert zp is None and packed.dtype == np.uint8 and packed.shape == (1, 4)
assert np.allclose(scale, [[1.0, 0.1]])
assert unpack_int4(packed, 8).tolist() == [[1, -2, 3, -7, 5, 5, 5, 7]]
packed, scale, zp = quantize_int4_groups(np.array([[0.0, 1.5, 3.0, 1.0]]), group_size=4, symmetric=False)
assert zp.dtype == np.uint8 and zp.tolist() == [[0]] and np.allclose(scale, [[0.2]])
assert unpack_int4(packed, 4, signed=False).tolist() == [[0, 8, 15, 5]]     # 7.5 -> 8 (half to even)
print("quantize_int4_groups: ok")

# %% nbgrader={"grade": false, "grade_id": "dequantize_int4_groups", "locked": false, "schema_version": 3, "solution": true}
#| export
def dequantize_int4_groups(packed, scale, zero_point=None, group_size=128):
    """The float32 weights (..., K) that packed INT4 codes with per-group scales stand for.

    TODO: K = scale.shape[-1] * group_size; unpack K codes per row (signed when zero_point is None,
    unsigned otherwise) and return (codes - zero_point) * scale in float32, each group with its own
    scale and zero point.

    APPROACH: unpack_int4(packed, K, signed=zero_point is None) -> float32, view it as
    (..., K // group_size, group_size), subtract zero_point[..., None] (if any), multiply by
    scale[..., None], reshape back to (..., K).

    EXAMPLE: dequantize_int4_groups(np.array([[0xE1, 0x93, 0x55, 0x75]], np.uint8),
                                    np.array([[1.0, 0.1]], np.float32), group_size=4)
             -> [[1., -2., 3., -7., .5, .5, .5, .7]]
    """
    ### BEGIN SOLUTION
    scale = np.asarray(scale, dtype=np.float32)
    k = scale.shape[-1] * group_size
    codes = unpack_int4(packed, k, signed=zero_point is None).astype(np.float32)
    codes = codes.reshape(*codes.shape[:-1], scale.shape[-1], group_size)
    if zero_point is not None:
        codes -= np.asarray(zero_point).astype(np.float32)[..., None]
    return (codes * scale[..., None]).reshape(*codes.shape[:-2], k)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_dequantize_int4_groups", "locked": true, "schema_version": 3, "solution": false}
w_hat = dequantize_int4_groups(np.array([[0xE1, 0x93, 0x55, 0x75]], np.uint8), np.array([[1.0, 0.1]], np.float32), group_size=4)
assert w_hat.dtype == np.float32 and w_hat.shape == (1, 8)
assert np.allclose(w_hat, [[1, -2, 3, -7, 0.5, 0.5, 0.5, 0.7]])
rng = np.random.default_rng(0)
w = rng.normal(size=(16, 256)).astype(np.float32)
for sym in (True, False):
    p, s, z = quantize_int4_groups(w, 64, symmetric=sym)
    err = np.abs(dequantize_int4_groups(p, s, z, 64) - w).reshape(16, 4, 64)
    assert np.all(err <= s[..., None] / 2 * 1.0001 + 1e-7)           # within half a step, every group
print("dequantize_int4_groups: ok")

# %% [markdown]
# ## 3. GGUF blocks: llama.cpp's Q8_0 and Q4_0
#
# llama.cpp stores models in GGUF files whose tensors are arrays of fixed-size **blocks** of 32
# weights. A block is a C struct, so the file format *is* the memory layout the kernels read:
#
# | type | bytes / 32 weights | struct | bits / weight |
# |---|---|---|---|
# | Q8_0 | 34 | `{ fp16 d; int8 qs[32]; }` | 8.5 |
# | Q4_0 | 18 | `{ fp16 d; uint8 qs[16]; }` | 4.5 |
#
# The scale `d` is stored as an IEEE **half** (2 bytes, little-endian) but *computed* in float32, and
# the codes are computed with the float32 `d`; dequantization uses the stored fp16 `d`. To be
# byte-compatible with llama.cpp's reference quantizers (`quantize_row_q8_0_ref`,
# `quantize_row_q4_0_ref` in `ggml-quants.c`) you must copy their arithmetic exactly, float32 step
# by float32 step — and it differs from ONNX's in three places:
#
# **Q8_0.** `amax = max|x|`, `d = amax / 127`, `id = 1/d` (0 when d is 0), `q = roundf(x * id)`:
# multiply by the reciprocal (not divide), and `roundf` rounds half **away from zero** (2.5 → 3,
# −2.5 → −3), not half to even.
#
# **Q4_0.** No symmetric range here: `max` is the element with the largest magnitude, *with its
# sign* (the first one on ties), and `d = max / -8`, so that element maps exactly to code −8, the
# end of the signed 4-bit range that the narrow range throws away. Then
# `q = min(15, (int8)(x * id + 8.5f))`: codes are stored **offset by 8** (nibble 0 means −8), the
# `+ 8.5` and the truncating cast round half **up**, and an element of the opposite sign and equal
# magnitude lands on 16 and is clipped to 15. `d` may be negative. An all-zero block has
# `max = 0`, `d = -0.0` (fp16 bytes `00 80`) and every nibble 8.
#
# **Q4_0's nibble order.** Byte $j$ of the block holds element $j$ in its low nibble and element
# $j + 16$ in its high nibble: `qs[j] = q[j] | q[j+16] << 4`. Not ONNX's order (elements $2j$ and
# $2j+1$): §6.4 measures why a kernel prefers this one.
#
# Both functions take any float array whose last axis is a multiple of 32 and work on the flattened
# values (as gguf-py does for each row); they return the raw bytes as one flat `np.uint8` array of
# `n_blocks * 34` or `n_blocks * 18` bytes. `_gguf_blocks` below is given.

# %%
#| exporti
QK = 32   # weights per GGUF block of Q8_0 / Q4_0


def _gguf_blocks(x, where):
    """x as float32 blocks of shape (n_blocks, 32); refuses NaN/inf and a last axis not divisible by 32."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 0 or x.shape[-1] % QK:
        raise ValueError(f"{where}: the last axis must be a multiple of {QK} (GGUF blocks), got shape {x.shape}")
    bad = int(np.count_nonzero(~np.isfinite(x)))
    if bad:
        raise ValueError(f"{where}: {bad} of {x.size} values are NaN or inf; GGUF quantizers leave them undefined")
    return x.reshape(-1, QK)


def _gguf_raw(data, block_bytes, where):
    """Raw GGUF bytes as (n_blocks, block_bytes) uint8."""
    data = np.asarray(data)
    if data.dtype != np.uint8 or data.size % block_bytes:
        raise ValueError(f"{where}: expected np.uint8 bytes, a multiple of {block_bytes}; "
                         f"got {data.dtype} with {data.size} bytes")
    return data.reshape(-1, block_bytes)


# %% nbgrader={"grade": false, "grade_id": "q8_0", "locked": false, "schema_version": 3, "solution": true}
#| export
def quantize_q8_0(x):
    """GGUF Q8_0 blocks of x, byte-identical to llama.cpp's quantize_row_q8_0_ref.

    TODO: for each block of 32 float32 values: amax = max|x|; d = amax / 127 (float32);
    id = 1 / d, or 0 when d == 0 (float32); q = roundf(x * id) as int8 (round half AWAY from zero).
    Block bytes: d as little-endian fp16 (2 bytes) then the 32 int8 codes. Return one flat np.uint8
    array of n_blocks * 34 bytes.

    APPROACH: the given `_gguf_blocks` cuts x into blocks of 32, and raises ValueError when the last
    axis is not a multiple of 32 or a value is NaN or inf; keep every step in float32 (np.float32(127),
    blocks * id[:, None]); round half away from zero with sign(v) * floor(|v| + 0.5) computed in
    float64 (exact for float32 inputs); d.astype("<f2").view(np.uint8) gives the 2 scale bytes;
    fill an (n_blocks, 34) uint8 array and ravel it.

    EXAMPLE: quantize_q8_0([127, 2.5, -2.5, 3.5, 0.5] + [0] * 27)[:7]
             -> [0x00, 0x3C, 127, 3, 253, 4, 1]     (d = 1.0 is fp16 0x3C00; -3 is byte 253)
    """
    ### BEGIN SOLUTION
    blocks = _gguf_blocks(x, "quantize_q8_0")
    amax = np.abs(blocks).max(axis=1)
    d = (amax / np.float32(127)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)
    v = (blocks * inv[:, None]).astype(np.float64)
    q = np.sign(v) * np.floor(np.abs(v) + 0.5)
    out = np.empty((blocks.shape[0], 2 + QK), dtype=np.uint8)
    out[:, :2] = d.astype("<f2").view(np.uint8).reshape(-1, 2)
    out[:, 2:] = q.astype(np.int8).view(np.uint8)
    return out.reshape(-1)
    ### END SOLUTION


def dequantize_q8_0(data):
    """float32 values of GGUF Q8_0 bytes: q * d, with d read back from its fp16 bytes.

    TODO: data is np.uint8 with a multiple of 34 bytes; return n_blocks * 32 float32 values.

    APPROACH: raw = _gguf_raw(data, 34, "dequantize_q8_0"); d = raw[:, :2] viewed as "<f2" (copy the
    slice first: a view needs contiguous bytes) -> float32; q = raw[:, 2:] viewed as int8.
    """
    ### BEGIN SOLUTION
    raw = _gguf_raw(data, 2 + QK, "dequantize_q8_0")
    d = np.ascontiguousarray(raw[:, :2]).view("<f2").astype(np.float32)
    q = raw[:, 2:].view(np.int8).astype(np.float32)
    return (q * d).reshape(-1)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_q8_0", "locked": true, "schema_version": 3, "solution": false}
raw = quantize_q8_0(np.array([127, 2.5, -2.5, 3.5, 0.5] + [0] * 27, np.float32))
assert raw.dtype == np.uint8 and raw.shape == (34,)
assert raw[:2].tolist() == [0x00, 0x3C]                                # d = 1.0 in fp16
assert raw[2:7].view(np.int8).tolist() == [127, 3, -3, 4, 1]            # half away from zero
assert np.allclose(dequantize_q8_0(raw)[:5], [127, 3, -3, 4, 1])
assert quantize_q8_0(np.zeros((2, 64), np.float32)).shape == (4 * 34,)
print("q8_0: ok")

# %% nbgrader={"grade": false, "grade_id": "q4_0", "locked": false, "schema_version": 3, "solution": true}
#| export
def quantize_q4_0(x):
    """GGUF Q4_0 blocks of x, byte-identical to llama.cpp's quantize_row_q4_0_ref.

    TODO: for each block of 32 float32 values: m = the value with the largest |x| (keep its sign;
    the first one on ties); d = m / -8; id = 1 / d, or 0 when d == 0; q = min(15, trunc(x * id + 8.5))
    (float32 arithmetic; q in [0, 15] is the code offset by 8). Pack qs[j] = q[j] | q[j + 16] << 4
    for j in 0..15. Block bytes: d as little-endian fp16, then the 16 bytes qs. Return one flat np.uint8
    array of n_blocks * 18 bytes.

    APPROACH: blocks from `_gguf_blocks`, as in Q8_0 (a ValueError when the last axis is not a
    multiple of 32, or for NaN/inf); np.argmax(np.abs(blocks), axis=1) returns the first index on
    ties; np.take_along_axis (or fancy indexing) picks the signed value; keep float32 throughout
    (np.float32(-8), np.float32(8.5)); np.trunc then np.minimum(..., 15).

    EXAMPLE: the block [-8, 7, 8, 1, -1, .5, -.5, 1.5, 2.5, 3] + [0] * 22 has m = -8 (first of the
             two with |x| = 8), d = 1.0, codes - 8 = [-8, 7, 7, 1, -1, 1, 0, 2, 3, 3, 0, ...];
             bytes: 00 3C, then 0x80 (q0 = 0, q16 = 8), 0x8F, ...
    """
    ### BEGIN SOLUTION
    blocks = _gguf_blocks(x, "quantize_q4_0")
    n_blocks = blocks.shape[0]
    first_max = np.argmax(np.abs(blocks), axis=1)
    m = blocks[np.arange(n_blocks), first_max]
    d = (m / np.float32(-8)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)
    v = (blocks * inv[:, None]).astype(np.float32) + np.float32(8.5)
    q = np.minimum(np.trunc(v), 15).astype(np.uint8)
    out = np.empty((n_blocks, 2 + QK // 2), dtype=np.uint8)
    out[:, :2] = d.astype("<f2").view(np.uint8).reshape(-1, 2)
    out[:, 2:] = q[:, :QK // 2] | (q[:, QK // 2:] << np.uint8(4))
    return out.reshape(-1)
    ### END SOLUTION


def dequantize_q4_0(data):
    """float32 values of GGUF Q4_0 bytes: (nibble - 8) * d, element j low nibble, j + 16 high nibble.

    TODO: data is np.uint8 with a multiple of 18 bytes; return n_blocks * 32 float32 values.
    """
    ### BEGIN SOLUTION
    raw = _gguf_raw(data, 2 + QK // 2, "dequantize_q4_0")
    d = np.ascontiguousarray(raw[:, :2]).view("<f2").astype(np.float32)
    qs = raw[:, 2:]
    codes = np.concatenate([qs & np.uint8(0x0F), qs >> np.uint8(4)], axis=1).astype(np.float32) - 8
    return (codes * d).reshape(-1)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_q4_0", "locked": true, "schema_version": 3, "solution": false}
block = np.array([-8, 7, 8, 1, -1, 0.5, -0.5, 1.5, 2.5, 3] + [0] * 22, np.float32)
raw = quantize_q4_0(block)
assert raw.dtype == np.uint8 and raw.shape == (18,) and raw[:2].tolist() == [0x00, 0x3C]
codes = np.concatenate([raw[2:] & 0xF, raw[2:] >> 4]).astype(int) - 8
assert codes[:10].tolist() == [-8, 7, 7, 1, -1, 1, 0, 2, 3, 3]            # half up; +8 clipped to 7
assert raw[2] == 0x80                                                     # q[0] | q[16] << 4
assert quantize_q4_0(np.zeros(32, np.float32)).tolist() == [0x00, 0x80] + [0x88] * 16   # d = -0.0
assert np.allclose(dequantize_q4_0(raw)[:10], [-8, 7, 7, 1, -1, 1, 0, 2, 3, 3])
print("q4_0: ok")

# %% [markdown]
# ## 4. NF4: codes at the quantiles of a normal distribution
#
# Trained weights are roughly normally distributed: many near zero, few large. Evenly spaced codes
# waste levels in the sparse tails. **NF4** (NormalFloat4, from QLoRA, Dettmers et al. 2023) spaces
# its 16 values at quantiles of $\mathcal{N}(0, 1)$, scaled into $[-1, 1]$, with an exact 0:
# 7 negative levels, 0, and 8 positive ones. bitsandbytes' table is `NF4_CODE` below.
#
# Quantization is **blockwise absmax** over the *flattened* tensor, blocks of 64:
#
# 1. `absmax` = $\max |x|$ of the block, a float32 per block (0.5 bits per weight at block 64);
# 2. `scaled = clip(x * (1 / absmax), -1, 1)` — multiply by the float32 reciprocal, as bitsandbytes
#    does; an all-zero block would divide by zero, so the reciprocal uses $\max(\text{absmax}, 10^{-38})$;
# 3. the code is the index of the **nearest** `NF4_CODE` value; a value exactly halfway between two
#    codes takes the **lower** index (bitsandbytes compares with the float32 midpoints
#    `(code[i] + code[i+1]) / 2` and counts the midpoints strictly below the value);
# 4. dequantization is `NF4_CODE[index] * absmax`.
#
# **Packing: high nibble first.** bitsandbytes stores `byte = q[2i] << 4 | q[2i+1]`: the first
# element in the **high** nibble, the opposite of ONNX's order (`pack_int4`). Same half-byte per
# weight, incompatible bytes: `[1, 2]` is `0x21` in ONNX and `0x12` in bitsandbytes. A file format
# must say which; an odd count pads the last low nibble with the code of 0.0 (index 7), as
# bitsandbytes pads with the value 0. An all-zero block gives index 7 everywhere: bytes `0x77`.

# %%
#| export
NF4_CODE = np.array([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0], dtype=np.float32)
NF4_BLOCK = 64

# %% nbgrader={"grade": false, "grade_id": "nf4", "locked": false, "schema_version": 3, "solution": true}
#| export
def quantize_nf4(w, block_size=NF4_BLOCK):
    """bitsandbytes NF4 of w: (packed, absmax) over the flattened values, blocks of `block_size`.

    TODO:
      packed  np.uint8 of ceil(n / 2) bytes, byte i = q[2i] << 4 | q[2i+1] (HIGH nibble first);
              an odd n pads the last low nibble with 7 (the code of 0.0)
      absmax  np.float32 of ceil(n / block_size) values, max |x| of each block (the last may be short)
    with q the index of the nearest NF4_CODE value to clip(x * (1 / max(absmax, 1e-38)), -1, 1),
    ties to the lower index.

    APPROACH: flatten to float32 (refuse NaN/inf: ValueError); pad with zeros to whole blocks (zeros
    change no absmax); absmax per block; multiply by the float32 reciprocal; midpoints =
    (NF4_CODE[:-1] + NF4_CODE[1:]) / 2 in float32; np.searchsorted(midpoints, scaled, side="left")
    counts the midpoints strictly below each value, which is the index with ties to the lower one;
    keep the first n indices, pad to even with 7, pack.

    EXAMPLE: quantize_nf4(NF4_CODE * 3) -> packed [0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF],
             absmax [3.0]
    """
    ### BEGIN SOLUTION
    x = np.asarray(w, dtype=np.float32).reshape(-1)
    bad = int(np.count_nonzero(~np.isfinite(x)))
    if bad:
        raise ValueError(f"quantize_nf4: {bad} of {x.size} values are NaN or inf")
    if int(block_size) != block_size or block_size < 1:
        raise ValueError(f"quantize_nf4: block_size must be a positive integer, got {block_size}")
    n = x.size
    n_blocks = -(-n // block_size)
    blocks = np.zeros(n_blocks * block_size, dtype=np.float32)
    blocks[:n] = x
    blocks = blocks.reshape(n_blocks, block_size)
    absmax = np.abs(blocks).max(axis=1) if n else np.zeros(0, np.float32)
    inv = (np.float32(1) / np.maximum(absmax, np.float32(1e-38))).astype(np.float32)
    scaled = np.clip(blocks * inv[:, None], np.float32(-1), np.float32(1)).reshape(-1)[:n]
    midpoints = ((NF4_CODE[:-1] + NF4_CODE[1:]) / np.float32(2)).astype(np.float32)
    idx = np.searchsorted(midpoints, scaled, side="left").astype(np.uint8)
    if n % 2:
        idx = np.append(idx, np.uint8(7))
    packed = (idx[0::2] << np.uint8(4)) | idx[1::2]
    return packed.astype(np.uint8), absmax.astype(np.float32)
    ### END SOLUTION


def dequantize_nf4(packed, absmax, shape, block_size=NF4_BLOCK):
    """float32 array of `shape` from NF4 bytes: NF4_CODE[index] * absmax of the element's block.

    TODO: n = prod(shape); indices: high nibble of byte i is element 2i, low nibble element 2i+1;
    keep the first n; multiply each block of `block_size` by its absmax; reshape.
    """
    ### BEGIN SOLUTION
    packed = np.asarray(packed, dtype=np.uint8).reshape(-1)
    absmax = np.asarray(absmax, dtype=np.float32).reshape(-1)
    n = int(np.prod(shape))
    if packed.size != (n + 1) // 2 or absmax.size != -(-n // block_size):
        raise ValueError(f"dequantize_nf4: {n} values need {(n + 1) // 2} bytes and "
                         f"{-(-n // block_size)} absmax values, got {packed.size} and {absmax.size}")
    idx = np.empty(2 * packed.size, dtype=np.uint8)
    idx[0::2] = packed >> np.uint8(4)
    idx[1::2] = packed & np.uint8(0x0F)
    values = np.zeros(absmax.size * block_size, dtype=np.float32)
    values[:n] = NF4_CODE[idx[:n]]
    values = values.reshape(-1, block_size) * absmax[:, None]
    return values.reshape(-1)[:n].reshape(shape)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_nf4", "locked": true, "schema_version": 3, "solution": false}
packed, absmax = quantize_nf4(NF4_CODE * 3)
assert packed.dtype == np.uint8 and packed.tolist() == [0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF]
assert absmax.dtype == np.float32 and absmax.tolist() == [3.0]
packed, absmax = quantize_nf4(np.zeros(64, np.float32))
assert packed.tolist() == [0x77] * 32                                     # all-zero block
assert np.all(dequantize_nf4(packed, absmax, (64,)) == 0)
w = np.random.default_rng(1).normal(size=(10, 13)).astype(np.float32)    # 130 values: 3 blocks, the last short
packed, absmax = quantize_nf4(w)
assert packed.shape == (65,) and absmax.shape == (3,)
w_hat = dequantize_nf4(packed, absmax, w.shape)
assert w_hat.shape == w.shape and np.max(np.abs(w_hat - w)) <= 0.17 * absmax.max()
print("nf4: ok")

# %% [markdown]
# ## 5. A W4A16 GEMV kernel
#
# The product of a packed INT4 weight $W$ ($N \times K$, symmetric codes, scales per group of $g$)
# with a float activation vector $x$ is
#
# $$y_n = \sum_{k} q_{n,k}\, s_{n,\lfloor k/g \rfloor}\, x_k
#      = \sum_{G} s_{n,G} \underbrace{\sum_{k \in G} q_{n,k}\, x_k}_{\text{one group}}$$
#
# The right-hand form is how to compute it: **accumulate codes times activations over a group,
# then multiply by the group's scale once**. Dequantizing every weight first costs an extra multiply
# per weight and, if done into an array, writes 4 bytes per weight — exactly the traffic INT4 was
# meant to remove.
#
# Inside the loop, every weight costs: getting its nibble, sign-extending it, converting it to a
# float, one fused multiply-add. With AVX2 the last three are one instruction each for 8 weights at
# a time — *if* the compiler can vectorize the loop. Three things decide whether it can:
#
# 1. **Sign extension for free.** Shifting a byte left by 4 puts the low nibble in the top half;
#    read as `int8`, that is exactly $16\,q_{lo}$ (two's complement does the sign); `byte & 0xF0`
#    read as `int8` is $16\,q_{hi}$. So the kernel accumulates $16\,q$ and multiplies the row's sum
#    by $1/16$ at the end — exact, since it is a power of two. Numba types most integer arithmetic
#    as 64-bit, so writing the nibble maths with `int64` shifts and masks makes LLVM vectorize over 4
#    lanes instead of 32; `np.int8(b << np.uint8(4))` and `np.int8(b & np.uint8(0xF0))` stay bytes.
#    Do it on the byte just loaded, inside the group's loop: LLVM vectorizes the whole loop body, so
#    one vector of packed bytes is split, widened and converted in registers and never goes back
#    to memory. (An earlier reference first wrote each row's nibbles into two `int8` scratch rows,
#    to split 32 bytes per instruction; timed against this kernel with `compare`, in one process,
#    that extra store and reload made it 1.15–1.7× slower at 4096–11008 wide, with AVX2 and with
#    AVX-512 code alike.)
# 2. **Contiguous activations.** In ONNX's layout the low nibbles pair with $x_0, x_2, x_4, \dots$ and
#    the high nibbles with $x_1, x_3, \dots$: a stride-2 read that SIMD loads cannot do directly.
#    Deinterleave $x$ **once per call** into `x[0::2]` and `x[1::2]` ($K$ floats, nothing next to
#    the $N \cdot K / 2$ bytes of weights) and both reads become contiguous. GGUF's layout (element $j$
#    with $j + g/2$) needs no copy: the halves of each group are already contiguous (`layout="split"`
#    below). §6.4 measures all of this.
# 3. **Indices the compiler can trust.** Numba supports negative indices, so `a[i]` with an `i` it
#    cannot prove non-negative compiles to a check-and-wrap per element, which defeats vectorization.
#    Loops `for j in range(n)` start at 0 and are fine; `range(start, stop)` with a computed start is
#    not. Reshape instead: `x_lo.reshape(n_groups, g // 2)` and index `[group, j]`.
#
# Then parallelize over rows with `prange` (each row is independent), and let LLVM reassociate the
# float sums (`fastmath={"reassoc", "contract"}`) so it can keep several partial sums in vector
# registers. `cache=True` keeps the compiled kernel between sessions.
#
# `layout="split"` describes packed bytes whose group $G$ stores, in byte $j$ of the group, element
# $j$ (low nibble) and element $j + g/2$ (high nibble) — Q4_0's order, with any group size.

# %% nbgrader={"grade": false, "grade_id": "gemv_w4", "locked": false, "schema_version": 3, "solution": true}
#| export
@njit(parallel=True, fastmath={"reassoc", "contract"}, cache=True)
def _gemv_w4_kernel(packed, scales, x_lo, x_hi):
    """y[n] = sum_G scales[n, G] * sum_j (lo(packed[n, G*h + j]) * x_lo[G, j] + hi(...) * x_hi[G, j]).

    packed: (N, K/2) uint8, signed codes; scales: (N, n_groups) float32; x_lo, x_hi: (n_groups, h)
    float32 contiguous, the activations paired with the low and with the high nibbles (h = g / 2).
    Returns float32 (N,).
    """
    ### BEGIN SOLUTION
    n_rows = packed.shape[0]
    n_groups, half = x_lo.shape
    out = np.empty(n_rows, dtype=np.float32)
    for r in prange(n_rows):
        row = packed[r].reshape(n_groups, half)          # byte j of group G: elements 2j and 2j + 1
        acc = np.float32(0.0)
        for grp in range(n_groups):
            s = np.float32(0.0)
            for j in range(half):                        # LLVM vectorizes this loop
                b = row[grp, j]
                lo16 = np.int8(b << np.uint8(4))         # 16 * low code, sign included
                hi16 = np.int8(b & np.uint8(0xF0))       # 16 * high code
                s += np.float32(lo16) * x_lo[grp, j] + np.float32(hi16) * x_hi[grp, j]
            acc += s * scales[r, grp]                    # the group scale, once per group
        out[r] = acc * np.float32(0.0625)                # undo the 16 of the shifted nibbles
    return out
    ### END SOLUTION


def gemv_w4(packed, scales, x, group_size=128, layout="interleaved"):
    """y = W x for INT4 weights W (symmetric codes, packed (N, K/2), scales (N, K // group_size)).

    TODO: check the arguments, build the two activation arrays the kernel pairs with the low and the
    high nibbles, and call `_gemv_w4_kernel`. Return float32 (N,), equal (up to float32 rounding) to
    dequantize_int4_groups(packed, scales, None, group_size) @ x.

    APPROACH:
      1. packed: np.uint8 2-D; scales: float32 (N, n_groups); x: float32 (K,) with
         K = n_groups * group_size; group_size even; packed.shape == (N, K // 2); layout one of
         "interleaved" (ONNX / pack_int4 order) or "split" (byte j of a group: elements j and j + g/2).
         Anything else: ValueError saying what did not match.
      2. interleaved: x_lo = x[0::2], x_hi = x[1::2]; split: x viewed as (n_groups, 2, g/2) gives
         x_lo = [:, 0, :] and x_hi = [:, 1, :]. Both as contiguous (n_groups, g/2) float32 arrays
         (np.ascontiguousarray).
      3. return _gemv_w4_kernel(packed, scales, x_lo, x_hi)

    EXAMPLE: packed, s, _ = quantize_int4_groups(w, 128); gemv_w4(packed, s, x, 128)
             ~= dequantize_int4_groups(packed, s, None, 128) @ x

    HINTS (the kernel): prange over the rows; view each row's bytes as (n_groups, g/2) with
    packed[r].reshape(...) and index [group, j] with j from range(g/2); per byte take
    np.int8(b << np.uint8(4)) and np.int8(b & np.uint8(0xF0)) (16 times the low and the high code),
    accumulate float32(lo) * x_lo + float32(hi) * x_hi in a float32 scalar per group and add
    scale * sum to the row's total; multiply by 1/16 at the end.
    """
    ### BEGIN SOLUTION
    packed = np.asarray(packed)
    scales = np.ascontiguousarray(scales, dtype=np.float32)
    x = np.asarray(x, dtype=np.float32)
    if packed.dtype != np.uint8 or packed.ndim != 2:
        raise ValueError(f"gemv_w4: packed must be a 2-D np.uint8 array, got {packed.dtype} {packed.shape}")
    if layout not in ("interleaved", "split"):
        raise ValueError(f"gemv_w4: layout must be 'interleaved' or 'split', got {layout!r}")
    if int(group_size) != group_size or group_size < 2 or group_size % 2:
        raise ValueError(f"gemv_w4: group_size must be a positive even integer, got {group_size}")
    n_rows = packed.shape[0]
    if scales.ndim != 2 or scales.shape[0] != n_rows:
        raise ValueError(f"gemv_w4: scales must have shape ({n_rows}, K // group_size), got {scales.shape}")
    n_groups = scales.shape[1]
    k = n_groups * group_size
    if x.shape != (k,) or packed.shape[1] != k // 2:
        raise ValueError(f"gemv_w4: {n_groups} groups of {group_size} need x of shape ({k},) and packed "
                         f"of shape ({n_rows}, {k // 2}); got x {x.shape}, packed {packed.shape}")
    half = group_size // 2
    if layout == "interleaved":
        x_lo = np.ascontiguousarray(x[0::2]).reshape(n_groups, half)
        x_hi = np.ascontiguousarray(x[1::2]).reshape(n_groups, half)
    else:
        halves = x.reshape(n_groups, 2, half)
        x_lo = np.ascontiguousarray(halves[:, 0, :])
        x_hi = np.ascontiguousarray(halves[:, 1, :])
    return _gemv_w4_kernel(np.ascontiguousarray(packed), scales, x_lo, x_hi)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_gemv_w4", "locked": true, "schema_version": 3, "solution": false}
rng = np.random.default_rng(2)
w = rng.normal(size=(300, 512)).astype(np.float32)
x = rng.normal(size=512).astype(np.float32)
packed, scale, _ = quantize_int4_groups(w, 128)
y = gemv_w4(packed, scale, x, 128)
reference = dequantize_int4_groups(packed, scale, None, 128).astype(np.float64) @ x.astype(np.float64)
assert y.dtype == np.float32 and y.shape == (300,)
assert np.allclose(y, reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())
print("gemv_w4: ok, max |error| =", float(np.abs(y - reference).max()))

# %% [markdown]
# ## 6. Systems analysis — measured with your functions
#
# Everything below runs on the functions you just wrote. Re-run it after changing them.
#
# **How the speed figures are taken.** `tinyq.bench` times candidate and baseline in the same
# process, interleaved, after warm-up, and takes medians. One more precaution is needed on a small
# machine: numpy's BLAS (OpenBLAS) keeps its worker threads **spinning** for about 0.1–0.2 s after
# each call, waiting for more work. On a 2-core machine a spinning BLAS thread takes a core from a
# parallel Numba kernel timed right after it, and the kernel waits for its second thread (§6.3
# shows the effect). So `speedup` below interleaves a short pause between the samples: each side is
# timed as it runs on its own.

# %%
import matplotlib.pyplot as plt

from tinyq import zoo
from tinyq import nn
from tinyq.bench import compare
from tinyq.data import load_digits
from tinyq.quantize import QuantizedTensor, sqnr_db

PAUSE_S = 0.2


def speedup(candidate, baseline, repeats=5):
    """baseline time / candidate time, interleaved with pauses that let BLAS threads go to sleep."""
    r = compare(candidate, baseline, repeats=repeats, settle_s=PAUSE_S)
    return r.speedup, r.candidate_s, r.baseline_s


# %% [markdown]
# ### 6.1 What a 4096 × 4096 layer costs in each format
#
# Bytes are counted from the arrays each format really stores (`nbytes`): codes **and** scales,
# zero points, absmax values. SQNR (module 15) measures the error of the dequantized weights.

# %%
rng = np.random.default_rng(0)
N = K = 4096
W = rng.normal(0.0, 0.02, size=(N, K)).astype(np.float32)

formats = {}
qt8 = QuantizedTensor.from_float(W, bits=8, axis=0)
formats["INT8 per-channel"] = (qt8.nbytes, qt8.dequantize())
p4, s4, _ = quantize_int4_groups(W, 128)
formats["INT4 g128 symmetric"] = (p4.nbytes + s4.nbytes, dequantize_int4_groups(p4, s4, None, 128))
pa, sa, za = quantize_int4_groups(W, 128, symmetric=False)
formats["INT4 g128 + zero point"] = (pa.nbytes + sa.nbytes + za.nbytes, dequantize_int4_groups(pa, sa, za, 128))
pn, an = quantize_nf4(W)
formats["NF4 block 64"] = (pn.nbytes + an.nbytes, dequantize_nf4(pn, an, W.shape))
q8raw = quantize_q8_0(W)
formats["GGUF Q8_0"] = (q8raw.nbytes, dequantize_q8_0(q8raw).reshape(W.shape))
q4raw = quantize_q4_0(W)
formats["GGUF Q4_0"] = (q4raw.nbytes, dequantize_q4_0(q4raw).reshape(W.shape))

print(f"{'format':<24} {'bytes':>12} {'bits/weight':>12} {'vs FP32':>8} {'SQNR dB':>8}")
print(f"{'FP32':<24} {W.nbytes:>12,} {32.0:>12.3f} {1.0:>7.2f}x {'inf':>8}")
size_rows = []
for name, (nbytes, w_hat) in formats.items():
    size_rows.append((name, nbytes, 8 * nbytes / W.size, W.nbytes / nbytes, sqnr_db(W, w_hat)))
    print(f"{name:<24} {nbytes:>12,} {8 * nbytes / W.size:>12.3f} {W.nbytes / nbytes:>7.2f}x {size_rows[-1][4]:>8.2f}")
del formats

# %% [markdown]
# The INT4 formats land at 4.25–4.5 bits per weight, not 4: the scales are a real part of the
# file, and a zero point per group costs another 1/16 bit. Read the SQNR column against the bits
# column: NF4 (a float32 absmax per 64 weights) and Q4_0 (an fp16 scale per 32) spend a quarter bit
# more per weight than INT4 g128 on scales, and finer blocks buy a few dB. NF4 also places its 16
# levels where Gaussian weights are dense; Q4_0's `d = max / -8` uses all 16 codes where the narrow
# symmetric INT4 range uses 15.

# %%
fig, ax = plt.subplots(1, 2, figsize=(10, 3))
names = [r[0] for r in size_rows]
ax[0].barh(["FP32"] + names, [32.0] + [r[2] for r in size_rows])
ax[0].set_xlabel("bits per weight (codes + scales)")
ax[1].barh(names, [r[4] for r in size_rows])
ax[1].set_xlabel("SQNR of the dequantized weights (dB)")
plt.tight_layout()

# %% [markdown]
# ### 6.2 The digits models with 4-bit weights
#
# The zoo's digits MLP and CNN get their weight matrices (conv kernels flattened to
# $(C_{out}, C_{in} k_h k_w)$) replaced by the dequantized versions. Their layers are tiny ($K$ is
# 9 to 512), so groups along $K$ use the largest divisor of $K$ up to 128 (the first conv, $K=9$,
# gets one group per row); NF4 uses blocks of 64 over the flattened tensor. Biases stay FP32.
# The sizes count the whole model: quantized weights with their scales, plus the FP32 biases.

# %%
digits = load_digits()


def largest_group(k, limit=128):
    return max(d for d in range(1, min(k, limit) + 1) if k % d == 0)


def with_weights(name, method):
    """A fresh zoo model whose weight matrices are replaced by `method(w2d)` -> (w_hat2d, nbytes)."""
    model = zoo.load(name)
    total = 0
    for _, param in model.named_parameters():
        if param.data.ndim < 2:
            total += param.data.nbytes
            continue
        w2d = param.data.reshape(param.data.shape[0], -1)
        w_hat, nbytes = method(w2d)
        param.data = w_hat.reshape(param.data.shape).astype(np.float32)
        total += nbytes
    return model, total


def fp32_method(w):
    return w, w.nbytes


def int8_method(w):
    qt = QuantizedTensor.from_float(w, bits=8, axis=0)
    return qt.dequantize(), qt.nbytes


def int4_method(w, symmetric=True):
    g = largest_group(w.shape[1])
    p, s, z = quantize_int4_groups(w, g, symmetric=symmetric)
    return dequantize_int4_groups(p, s, z, g), p.nbytes + s.nbytes + (0 if z is None else z.nbytes)


def nf4_method(w):
    p, a = quantize_nf4(w)
    return dequantize_nf4(p, a, w.shape), p.nbytes + a.nbytes


methods = {"FP32": fp32_method, "INT8 per-channel": int8_method, "INT4 groups": int4_method,
           "INT4 groups + zp": lambda w: int4_method(w, symmetric=False), "NF4 block 64": nf4_method}
acc_rows = []
for model_name in ("digits_mlp", "digits_cnn"):
    for label, method in methods.items():
        model, nbytes = with_weights(model_name, method)
        acc = nn.accuracy(model(digits.x_test), digits.y_test)
        acc_rows.append((model_name, label, nbytes, acc))
print(f"{'model':<11} {'weights':<18} {'bytes':>8} {'vs FP32':>8} {'test acc':>9}")
for model_name, label, nbytes, acc in acc_rows:
    fp32_bytes = next(b for m, l, b, _ in acc_rows if m == model_name and l == "FP32")
    print(f"{model_name:<11} {label:<18} {nbytes:>8,} {fp32_bytes / nbytes:>7.2f}x {acc:>9.2%}")

# %% [markdown]
# Small models pay more for their scales than a 4096-wide layer (a group of 9 weights carries a
# 4-byte scale) and have biases that stay FP32, so their size ratios stay well below 7.5×. The
# accuracy column shows how much 4-bit *round-to-nearest* costs these models; module 22's GPTQ and
# AWQ exist to shrink that gap on large models.

# %% [markdown]
# ### 6.3 Bytes moved against memory bandwidth
#
# A GEMV touches every weight once. FP32 moves $4NK$ bytes; the INT4 kernel moves $NK/2$ bytes of
# codes plus $4 N K / g$ of scales: 7.5× less at $g = 128$. If both ran at the memory bandwidth,
# INT4 would be 7.5× faster. It is not, because the INT4 kernel must *also* do work per weight
# (extract, sign-extend, convert, multiply-add), and on a small CPU that work, not the bytes, sets
# its time: it is **compute-bound**, while the FP32 GEMV streams 64 MiB from DRAM and is
# **memory-bound**. The table shows the effective bandwidth (bytes moved / time) of each, with 2
# threads and with 1 thread on each side. (The 8.5 MiB INT4 matrix fits in a 32 MiB L3 cache, so
# repeated calls read it from cache; its effective bandwidth is far below what the FP32 GEMV pulls
# from DRAM, so it would be just as compute-bound reading from DRAM.)
#
# Why the 1-thread row: a GEMV on 2 threads is a fork-join. When another process holds one of the
# 2 cores, each call waits for a whole scheduler time slice (a few ms) before its second half can
# run — numpy's and yours alike — and every ratio collapses towards 1. The graded test therefore
# keeps the better of the 2-thread and the 1-thread comparison, always with the same number of
# threads on both sides.

# %%
import numba
from threadpoolctl import threadpool_limits

x_vec = rng.normal(size=K).astype(np.float32)
gemv_int4 = lambda: gemv_w4(p4, s4, x_vec, 128)
gemv_fp32 = lambda: W @ x_vec
gemv_int4()                                              # compile (or load from cache)
bytes_fp32 = W.nbytes + x_vec.nbytes
bytes_int4 = p4.nbytes + s4.nbytes + x_vec.nbytes
bw_rows = []
for threads in (2, 1):
    numba.set_num_threads(threads)
    with threadpool_limits(limits=threads, user_api="blas"):
        bw_rows.append((threads,) + speedup(gemv_int4, gemv_fp32))
numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
print(f"{'threads':>7} {'kernel':<13} {'ms':>7} {'MiB moved':>10} {'GB/s':>6} {'weights/ns':>11} {'speedup':>8}")
for threads, ratio, t_int4, t_fp32 in bw_rows:
    for name, t, b in (("numpy FP32", t_fp32, bytes_fp32), ("gemv_w4 INT4", t_int4, bytes_int4)):
        extra = f"{ratio:>7.2f}x" if name.startswith("gemv") else ""
        print(f"{threads:>7} {name:<13} {t * 1e3:>7.3f} {b / 2**20:>10.1f} {b / t / 1e9:>6.1f} "
              f"{N * K / t / 1e9:>11.1f} {extra:>8}")
print(f"bytes alone would allow {bytes_fp32 / bytes_int4:.1f}x")
plain = compare(gemv_int4, gemv_fp32)
print(f"2 threads timed by compare() without pauses: {plain.speedup:.2f}x "
      f"(gemv_w4 {plain.candidate_s * 1e3:.3f} ms there, {bw_rows[0][2] * 1e3:.3f} ms with pauses)")

# %% [markdown]
# ### 6.4 The nibble layout decides how the kernel reads $x$
#
# Two layouts of the same codes: ONNX's **interleaved** order (elements $2j$, $2j+1$ share byte
# $j$) and GGUF's **split** order (byte $j$ of a group holds elements $j$ and $j + g/2$). The
# weights cost the same bytes; what differs is which activations each nibble meets:
#
# * interleaved: low nibbles meet $x_0, x_2, x_4, \dots$ — a stride-2 read of $x$;
# * split: low nibbles meet $x_0 \dots x_{g/2-1}$, high nibbles $x_{g/2} \dots x_{g-1}$ — two
#   contiguous reads, exactly what a SIMD load wants.
#
# The first experiment isolates that read: the same dot products of int8 codes with $x$ (no nibbles,
# no scales, one thread), once reading $x$ with stride 2 and once reading two contiguous halves.
# The second runs your kernel on both layouts: since `gemv_w4` deinterleaves $x$ once per call
# (16 KiB for $K = 4096$), it runs the interleaved layout as fast as the split one.

# %%
@njit(fastmath={"reassoc", "contract"})
def dot_pairs_strided(codes_a, codes_b, x):
    """sum_j a[j] * x[2j] + b[j] * x[2j+1] for every row: the interleaved pairing, read in place."""
    out = np.empty(codes_a.shape[0], dtype=np.float32)
    x_pairs = x.reshape(-1, 2)
    for r in range(codes_a.shape[0]):
        total = np.float32(0.0)
        for j in range(codes_a.shape[1]):
            total += np.float32(codes_a[r, j]) * x_pairs[j, 0] + np.float32(codes_b[r, j]) * x_pairs[j, 1]
        out[r] = total
    return out


@njit(fastmath={"reassoc", "contract"})
def dot_pairs_halves(codes_a, codes_b, x):
    """sum_j a[j] * x[j] + b[j] * x[h + j] for every row: the split pairing, two contiguous reads."""
    out = np.empty(codes_a.shape[0], dtype=np.float32)
    x_halves = x.reshape(2, -1)
    for r in range(codes_a.shape[0]):
        total = np.float32(0.0)
        for j in range(codes_a.shape[1]):
            total += np.float32(codes_a[r, j]) * x_halves[0, j] + np.float32(codes_b[r, j]) * x_halves[1, j]
        out[r] = total
    return out


def to_split_layout(packed, k, group_size):
    """Re-pack interleaved (ONNX) INT4 rows so that byte j of each group holds elements j and j + g/2."""
    codes = unpack_int4(packed, k)
    n_rows, half = codes.shape[0], group_size // 2
    pairs = codes.reshape(n_rows, k // group_size, 2, half).transpose(0, 1, 3, 2)
    return pack_int4(pairs.reshape(n_rows, k))


rows = 1024
codes = unpack_int4(p4[:rows], K)
codes_a, codes_b = np.ascontiguousarray(codes[:, 0::2]), np.ascontiguousarray(codes[:, 1::2])
x_split_order = np.concatenate([x_vec[0::2], x_vec[1::2]])
for f in (dot_pairs_strided, dot_pairs_halves):
    f(codes_a, codes_b, x_vec)
assert np.allclose(dot_pairs_strided(codes_a, codes_b, x_vec), dot_pairs_halves(codes_a, codes_b, x_split_order),
                   rtol=1e-4, atol=1e-2)
r_dot = compare(lambda: dot_pairs_strided(codes_a, codes_b, x_vec),
                lambda: dot_pairs_halves(codes_a, codes_b, x_split_order))
p4_split = to_split_layout(p4, K, 128)
assert np.allclose(gemv_w4(p4_split, s4, x_vec, 128, layout="split"), gemv_w4(p4, s4, x_vec, 128), rtol=1e-4, atol=1e-5)
numba.set_num_threads(1)                 # one thread: keep the scheduler's noise out of a layout comparison
r_layout = compare(lambda: gemv_w4(p4, s4, x_vec, 128, layout="interleaved"),
                   lambda: gemv_w4(p4_split, s4, x_vec, 128, layout="split"))
numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
t_deint = compare(lambda: (np.ascontiguousarray(x_vec[0::2]), np.ascontiguousarray(x_vec[1::2])), lambda: None)
layout_rows = [
    ("dot, x read with stride 2 (interleaved)", r_dot.candidate_s * 1e3),
    ("dot, x read as two halves (split)", r_dot.baseline_s * 1e3),
    ("gemv_w4 (1 thread), interleaved + deinterleave x", r_layout.candidate_s * 1e3),
    ("gemv_w4 (1 thread), split layout", r_layout.baseline_s * 1e3),
]
print(f"{'kernel (' + str(rows) + ' rows for dot, 4096 for gemv)':<50} {'ms':>8}")
for label, ms in layout_rows:
    print(f"{label:<50} {ms:>8.3f}")
print(f"strided read costs {r_dot.slowdown:.1f}x; deinterleaving x once costs {t_deint.candidate_s * 1e6:.1f} us per call")
plt.figure(figsize=(7, 2.6))
plt.barh([r[0] for r in layout_rows], [r[1] for r in layout_rows])
plt.xlabel("ms per call (median)")
plt.tight_layout()

# %% [markdown]
# The strided read is several times slower although it does the same arithmetic: LLVM cannot load
# 8 consecutive-but-every-other floats in one instruction, so it gathers or shuffles them. That is
# why llama.cpp's Q4_0 splits a block into halves — its SIMD code reads $x$ (quantized to Q8_0
# blocks) with plain loads — and why ONNX-ordered INT4 needs a repacking step or, as here, a
# one-time deinterleave of the activations. With the deinterleave both layouts run alike.
#
# ### 6.5 When does INT4 pay off?
#
# The speedup depends on where the FP32 weights live. A 1024 × 1024 FP32 matrix (4 MiB) fits in
# the L3 cache of most CPUs (32 MiB on the course's 2-core EPYC), so BLAS does not wait for DRAM and the bytes INT4 saves matter
# little; a 4096 × 4096 one (64 MiB) streams from DRAM on every call, which is where 7.5× fewer
# bytes can show. (On a busy machine the smallest size, a few tens of microseconds per call, is
# also the noisiest.)

# %%
sizes = (1024, 2048, 4096)
speedups = []
for n in sizes:
    w_n = rng.normal(0.0, 0.02, size=(n, n)).astype(np.float32)
    x_n = rng.normal(size=n).astype(np.float32)
    p_n, s_n, _ = quantize_int4_groups(w_n, 128)
    speedups.append(speedup(lambda: gemv_w4(p_n, s_n, x_n, 128), lambda: w_n @ x_n, repeats=3)[0])
for n, s in zip(sizes, speedups):
    print(f"{n:>5} x {n:<5} FP32 {4 * n * n / 2**20:6.1f} MiB  gemv_w4 speedup {s:5.2f}x")
plt.figure(figsize=(5, 3))
plt.bar([f"{n}x{n}" for n in sizes], speedups)
plt.axhline(1.0, color="k", lw=0.8)
plt.ylabel("speedup over numpy FP32 GEMV")
plt.tight_layout()

# %% [markdown]
# ## 7. The GPU half: a W4A16 GEMV in CUDA
#
# ### 7.1 Why decoding a token is a memory problem
#
# Generating one token of an LLM multiplies every weight matrix by one activation vector. A GEMV
# does 2 floating-point operations (a multiply and an add) per weight and reads each weight once,
# so its **arithmetic intensity** is 2 FLOP divided by the bytes a weight takes:
#
# | format | bits per weight | bytes of an 8192 × 8192 matrix | FLOP per byte |
# |---|---|---|---|
# | FP32 | 32 | 268.4 MB | 0.5 |
# | FP16 | 16 | 134.2 MB | 1 |
# | W8, one FP32 scale per row | 8 + 32/K ≈ 8.004 | 67.1 MB | 2.0 |
# | W4 g128, one FP32 scale per 128 | 4 + 32/128 = **4.25** | 35.7 MB | 3.76 |
#
# An H100 does about 60 TFLOP/s of FP32 arithmetic (without tensor cores) and reads about 3 TB/s
# from its HBM: it needs 20 FLOP per byte to be limited by arithmetic rather than by memory (the
# **ridge point** of the roofline model). Every row of the table is far to the left of it, so the
# time of a GEMV is, to first order, `bytes / bandwidth`, and 4-bit weights promise
# 268.4 / 35.7 = 7.5× over FP32 and 134.2 / 35.7 = 3.76× over FP16. That promise holds only if the
# kernel does so little work per weight that unpacking never becomes the bottleneck: 35.7 MB at
# 3 TB/s is 12 µs, and in those 12 µs the 132 SMs of an H100 issue about 3.5 × 10⁸ warp-lane
# instructions for 6.7 × 10⁷ weights, roughly **five instructions per weight**, all included.
#
# ### 7.2 The kernel
#
# The kernel `gemv_w4a16` reads the packed weights exactly as `quantize_int4_groups` wrote them (ONNX
# nibble order, FP32 scales per group, symmetric codes) and the activations as FP16:
#
# * **a warp per 4 rows**: blocks of 128 threads (4 warps), block `b` computes rows `16 b … 16 b + 15`,
#   warp `w` of it rows `16 b + 4 w … + 3`. Lane `l` of the warp handles the **chunks** `l, l + 32,
#   l + 64, …` of 32 consecutive weights: 16 bytes of a row, one 16-byte load (`int4`, PTX
#   `ld.global.nc.v4.u32`). The 32 lanes of a warp read 512 consecutive bytes of a row: perfectly
#   coalesced.
# * the 32 activations of a chunk come in with four 16-byte loads (8 halves each), are converted to
#   float once, and serve the 4 rows of the warp: reading $x$ costs a quarter of what it would with
#   one row per warp.
# * **dequantize in registers, never in memory**: a 32-bit word of a chunk holds 8 nibbles, nibble
#   $j$ of word $i$ is element $8i + j$ of the chunk (ONNX order and little-endian bytes). The chunk's
#   32 weights lie in one group (the group size is a multiple of 32), so the kernel sums
#   $q \cdot x$ over the chunk and multiplies by the group's scale once.
# * **warp-shuffle reduction**: each lane ends with partial sums of its 4 rows; five
#   `__shfl_xor_sync` steps (16, 8, 4, 2, 1) add the 32 partial sums of a row in registers, and
#   lane 0 writes it. No shared memory, no `__syncthreads`.
#
# **The magic-number trick** (FasterTransformer, Marlin, llama.cpp's CUDA kernels). Turning a
# nibble into a float the obvious way, `(float)(int)q`, is an integer-to-float conversion
# (`I2F`), which an SM executes at a quarter of the rate of an FMA or less. The trick builds the float
# from bits instead. `0x4B000000` is the float $2^{23}$; its 23 mantissa bits count in units of
# exactly 1 at that exponent, so OR-ing a 4-bit value $u$ into the low bits gives the float
# $2^{23} + u$, exactly. Subtracting $2^{23} + 8$ then yields $u - 8$. With $u = q + 8$, obtained for
# all 8 nibbles of a word at once by `word ^ 0x88888888` (the XOR flips the sign bit of every nibble:
# two's complement $q$ becomes offset-binary $q + 8$), each weight costs a shift, an AND/OR
# (`(u >> 4j) & 0xF | 0x4B000000`, which ptxas fuses into one `LOP3`, the three-input logic
# instruction), one FADD and the FMA with $x$. Marlin goes further with FP16 arithmetic: one
# `LOP3` with `0x64006400` makes **two** halves $1024 + u$ at once and one `HSUB2`/`HFMA2` handles
# two weights per instruction; this kernel accumulates in FP32, as asked, and pays one FADD per weight.
#
# **One given helper differs between the GPU and the CPU emulator.** CUDA's `__half` type lives in
# `cuda_fp16.h`, which NVRTC does not ship; the kernel therefore reads the activations as their raw
# 16-bit patterns (`unsigned short`) and converts them with `half_to_float`: one PTX instruction
# (`cvt.f32.f16`) on the GPU, an exact software conversion in the emulator. `W4_HELPERS` below holds
# it, and `__uint_as_float` (a CUDA built-in) for the emulator; put it at the start of your source.

# %%
#| export
from tinyq.cuda_emulator import emulate as _emulate
from tinyq.cuda_nvrtc import compile_cuda as _compile_cuda
from tinyq.cuda_nvrtc import compile_report as _compile_report
from tinyq.cuda_nvrtc import ptx_body as _ptx_body
from tinyq.cuda_nvrtc import raw_kernel as _raw_kernel

W4_KERNEL = "gemv_w4a16"          # the kernel's name in the source
W4_THREADS = 128                  # threads per block: 4 warps
W4_ROWS_PER_BLOCK = 16            # 4 rows per warp

W4_HELPERS = r'''
// module 21's given device helpers: the only lines where the GPU and the CPU emulator differ
#ifdef TINYQ_EMULATOR
#include <cstring>
inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
inline float half_to_float(unsigned short h) {          // IEEE binary16 -> binary32, exact, in software
    unsigned sign = (unsigned)(h & 0x8000u) << 16, e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
    if (e == 0) { float f = (float)m * 5.9604644775390625e-8f; return sign ? -f : f; }   // zero, subnormal: m * 2^-24
    unsigned bits = sign | (e == 31 ? 0x7F800000u | (m << 13) : ((e + 112u) << 23) | (m << 13));
    return __uint_as_float(bits);
}
#else
__device__ __forceinline__ float half_to_float(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));       // one conversion instruction
    return f;
}
#endif
'''

# %% nbgrader={"grade": false, "grade_id": "gemv_w4_source", "locked": false, "schema_version": 3, "solution": true}
#| export
def gemv_w4_source():
    """The CUDA C of `gemv_w4a16`: y = W x for packed INT4 weights and FP16 activations.

    TODO: return W4_HELPERS + the source of
    `extern "C" __global__ void gemv_w4a16(const unsigned char* packed, const float* scales,
    const unsigned short* x, float* y, int N, int K, int group_size)` where
      packed  (N, K/2) bytes in pack_int4's order, signed codes (q & 0xF);
      scales  (N, K / group_size) float32;
      x       K FP16 values as their 16-bit patterns (convert with half_to_float);
      y       N float32 outputs: y[n] = sum_k q[n, k] * scales[n, k / group_size] * x[k].
    Launched with blocks of W4_THREADS = 128 threads and ceil(N / 16) blocks: block b computes rows
    16b .. 16b + 15, warp w of it rows 16b + 4w .. 16b + 4w + 3. Exact (within float rounding) for any
    N >= 1 and any K that is a multiple of group_size, group_size a multiple of 32.

    APPROACH: lane l of a warp takes the chunks c = l, l + 32, ... of 32 weights (16 bytes of a row,
    one int4 load at byte offset 16c of the row). Per chunk: load its 32 halves of x (four int4 loads
    from x + 32c) and convert them; then for each of the warp's 4 rows load the row's int4, turn each
    nibble into a float (shift and mask; the magic-number trick saves the conversion instruction),
    sum q * x over the chunk and add (sum * scale of group 32c / group_size) to that row's
    accumulator. Finally reduce each row's accumulator over the warp with __shfl_xor_sync and let
    lane 0 store the rows that exist (< N).

    EXAMPLE: N = 5, K = 256, group_size = 128: one block; warp 0 rows 0-3, warp 1 row 4 (its other
    rows do not exist: they must not be stored), warps 2, 3 nothing. Chunks 0-7 per row: lanes 0-7
    work, the others add zeros to the reduction.

    HINTS: nibble j of 32-bit word i of a chunk is element 8i + j (low nibble first, little-endian
    words). Clamp row indices to N - 1 for the loads (the extra rows are computed and dropped) so that
    every lane of a warp runs the same shuffles. Index rows with size_t: N * K / 2 can exceed 2^31.
    """
    ### BEGIN SOLUTION
    return W4_HELPERS + r'''
#define ROWS 4                  // rows of W per warp: the converted x of a chunk serves all 4
#define WARPS 4                 // warps per block
extern "C" __global__ void __launch_bounds__(128) gemv_w4a16(const unsigned char* __restrict__ packed,
        const float* __restrict__ scales, const unsigned short* __restrict__ x, float* __restrict__ y,
        int N, int K, int group_size) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int row0 = (blockIdx.x * WARPS + warp) * ROWS;
    if (row0 >= N) return;                          // the whole warp leaves together
    int chunks = K >> 5, n_groups = K / group_size;
    const int4* w_rows[ROWS];
    const float* s_rows[ROWS];
    for (int r = 0; r < ROWS; ++r) {
        int row = min(row0 + r, N - 1);             // rows past N recompute row N - 1, never stored
        w_rows[r] = reinterpret_cast<const int4*>(packed + (size_t)row * (K >> 1));
        s_rows[r] = scales + (size_t)row * n_groups;
    }
    float acc[ROWS] = {};
    for (int c = lane; c < chunks; c += 32) {       // chunk c: weights 32c .. 32c + 31, 16 bytes of a row
        float xf[32];
        const int4* xv = reinterpret_cast<const int4*>(x + 32 * c);
        for (int i = 0; i < 4; ++i) {               // four 16-byte loads: 32 halves
            int4 v = xv[i];
            unsigned h[4] = {(unsigned)v.x, (unsigned)v.y, (unsigned)v.z, (unsigned)v.w};
            for (int j = 0; j < 4; ++j) {
                xf[8 * i + 2 * j] = half_to_float((unsigned short)(h[j] & 0xFFFFu));
                xf[8 * i + 2 * j + 1] = half_to_float((unsigned short)(h[j] >> 16));
            }
        }
        int g = (32 * c) / group_size;
        for (int r = 0; r < ROWS; ++r) {
            int4 w = w_rows[r][c];                  // 32 nibbles: element 8i + j is nibble j of word i
            unsigned words[4] = {(unsigned)w.x, (unsigned)w.y, (unsigned)w.z, (unsigned)w.w};
            float part[4];
            for (int i = 0; i < 4; ++i) {
                unsigned u = words[i] ^ 0x88888888u;     // every signed nibble q becomes q + 8
                float d = 0.0f;
                for (int j = 0; j < 8; ++j) {
                    // 0x4B000000 is 2^23: (q + 8) in its low mantissa bits is the float 2^23 + q + 8
                    float q = __uint_as_float(((u >> (4 * j)) & 0xFu) | 0x4B000000u) - 8388616.0f;
                    d += q * xf[8 * i + j];
                }
                part[i] = d;
            }
            acc[r] += ((part[0] + part[1]) + (part[2] + part[3])) * s_rows[r][g];
        }
    }
    for (int r = 0; r < ROWS; ++r) {
        float v = acc[r];
        for (int off = 16; off > 0; off >>= 1)      // butterfly: every lane ends with the row's sum
            v += __shfl_xor_sync(0xffffffffu, v, off);
        if (lane == 0 && row0 + r < N) y[row0 + r] = v;
    }
}
'''
    ### END SOLUTION


# %% [markdown]
# The emulator runs your kernel on the CPU (first call: a second or two for g++), compared here with
# `dequantize_int4_groups(...) @ x` in float64. Every output is poisoned with NaN first, so a row
# the kernel forgets to write fails.

# %% nbgrader={"grade": false, "grade_id": "test_gemv_w4_source", "locked": true, "schema_version": 3, "solution": false}
from tinyq.cuda_emulator import find_compiler


def _w4_case(n, k, g, seed=0):
    """Random packed weights, scales and FP16 activations, and the float64 result they must give."""
    r = np.random.default_rng(seed)
    p = pack_int4(r.integers(-8, 8, size=(n, k)))
    s = r.uniform(0.001, 0.05, size=(n, k // g)).astype(np.float32)
    x16 = r.normal(size=k).astype(np.float16)
    return p, s, x16, dequantize_int4_groups(p, s, None, g).astype(np.float64) @ x16.astype(np.float64)


if find_compiler() is None:
    print("no C++20 compiler here: the emulator checks are skipped")
else:
    for n, k, g in ((1, 128, 128), (5, 256, 128), (37, 1024, 64)):
        p, s, x16, ref = _w4_case(n, k, g)
        y = np.full(n, np.nan, np.float32)
        _emulate(gemv_w4_source(), W4_KERNEL, (-(-n // W4_ROWS_PER_BLOCK),), (W4_THREADS,),
                 p, s, x16.view(np.uint16), y, n, k, g)
        assert np.allclose(y, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max()), (n, k, g)
    print("gemv_w4_source: ok")

# %% [markdown]
# ### 7.3 The host function
#
# `gemv_w4_gpu(packed, scales, x, group_size=128)` is what a model calls. It checks the arguments
# (clear `ValueError`s that name what does not match), converts `x` to FP16 if it came as float32,
# allocates `y` and launches. On a GPU the arrays may be NumPy or CuPy; the result is a CuPy array.
# With `emulate=True` it runs the same source in the CPU emulator on NumPy arrays.
#
# Two details matter on a GPU. The scalar arguments must be `np.int32` (the kernel's C `int`), and
# the 16-byte loads need 16-byte aligned addresses: every CuPy allocation is aligned, but a slice of
# one may not be, so an array whose data pointer is not a multiple of 16 is copied first (as a
# contiguous copy, it is aligned).

# %% nbgrader={"grade": false, "grade_id": "gemv_w4_gpu", "locked": false, "schema_version": 3, "solution": true}
#| export
def gemv_w4_gpu(packed, scales, x, group_size=128, *, emulate=False):
    """y = W x for INT4 weights (packed (N, K/2) uint8, symmetric codes, scales (N, K // group_size)
    float32) and FP16 activations x (K,), on the GPU with the kernel of gemv_w4_source().

    TODO: validate, convert, launch W4_KERNEL with ceil(N / W4_ROWS_PER_BLOCK) blocks of W4_THREADS
    threads, return y, float32 (N,): a CuPy array on the GPU, a NumPy array with emulate=True. Equal
    within float rounding to dequantize_int4_groups(packed, scales, None, group_size) @ x (x as FP16).

    APPROACH:
      1. ValueError unless: packed is 2-D uint8 with N >= 1 rows; group_size is a positive multiple of
         32; scales is 2-D float32 (float16 is accepted and converted) with N rows and at least one
         group; x is 1-D with K = n_groups * group_size values and a float dtype (float32 is
         converted to float16; anything else is an error); packed has K // 2 bytes per row.
         Check the dtypes before the shapes.
      2. Make the arrays contiguous and 16-byte aligned (NumPy for emulate=True: a CuPy array has
         .get(); CuPy otherwise: cupy.asarray).
      3. emulate=True: tinyq.cuda_emulator.emulate(gemv_w4_source(), W4_KERNEL, grid, block, packed,
         scales, x16.view(np.uint16), y, N, K, group_size); on the GPU: raw_kernel(source,
         W4_KERNEL)(grid, block, (packed, scales, x16.view(cupy.uint16), y, np.int32(N), ...)).

    EXAMPLE: p, s, _ = quantize_int4_groups(w, 128); gemv_w4_gpu(p, s, x.astype(np.float16), emulate=True)

    HINTS: x.dtype.kind == "f" says floating point; int(a.data.ptr) (CuPy) and a.ctypes.data (NumPy)
    are the addresses to check for alignment.
    """
    ### BEGIN SOLUTION
    packed, scales, x = (a if hasattr(a, "__cuda_array_interface__") else np.asarray(a) for a in (packed, scales, x))
    if np.dtype(packed.dtype) != np.uint8 or np.ndim(packed) != 2 or packed.shape[0] < 1:
        raise ValueError(f"gemv_w4_gpu: packed must be a 2-D uint8 array with at least one row, got "
                         f"{np.dtype(packed.dtype)} of shape {np.shape(packed)}")
    if int(group_size) != group_size or group_size < 32 or group_size % 32:
        raise ValueError(f"gemv_w4_gpu: group_size must be a positive multiple of 32 (each thread reads "
                         f"32 weights of one group), got {group_size}")
    if np.dtype(scales.dtype) not in (np.float32, np.float16):
        raise ValueError(f"gemv_w4_gpu: scales must be float32 (or float16), got {np.dtype(scales.dtype)}")
    if np.dtype(x.dtype).kind != "f" or np.dtype(x.dtype).itemsize > 4:
        raise ValueError(f"gemv_w4_gpu: x must be float16 or float32, got {np.dtype(x.dtype)}")
    n = packed.shape[0]
    if np.ndim(scales) != 2 or scales.shape[0] != n or scales.shape[1] < 1:
        raise ValueError(f"gemv_w4_gpu: scales must have shape ({n}, K // group_size), got {np.shape(scales)}")
    k = scales.shape[1] * int(group_size)
    if np.shape(x) != (k,) or packed.shape[1] != k // 2:
        raise ValueError(f"gemv_w4_gpu: {scales.shape[1]} groups of {group_size} need x of shape ({k},) and "
                         f"packed of shape ({n}, {k // 2}); got x {np.shape(x)}, packed {packed.shape}")
    grid, block = (-(-n // W4_ROWS_PER_BLOCK),), (W4_THREADS,)
    if emulate:
        def host(a, dtype):                            # a fresh C-contiguous NumPy copy: aligned
            return np.array(a.get() if hasattr(a, "get") else a, dtype=dtype, order="C", copy=True)

        p, s, x16 = host(packed, np.uint8), host(scales, np.float32), host(x, np.float16)
        y = np.full(n, np.nan, np.float32)
        _emulate(gemv_w4_source(), W4_KERNEL, grid, block, p, s, x16.view(np.uint16), y, n, k, int(group_size))
        return y
    import cupy

    def device(a, dtype):
        a = cupy.ascontiguousarray(cupy.asarray(a, dtype=dtype))
        return a if int(a.data.ptr) % 16 == 0 else a.copy()

    p, s, x16 = device(packed, cupy.uint8), device(scales, cupy.float32), device(x, cupy.float16)
    y = cupy.empty(n, cupy.float32)
    _raw_kernel(gemv_w4_source(), W4_KERNEL)(grid, block, (p, s, x16.view(cupy.uint16), y, np.int32(n),
                                                           np.int32(k), np.int32(group_size)))
    return y
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_gemv_w4_gpu", "locked": true, "schema_version": 3, "solution": false}
p, s, x16, ref = _w4_case(19, 512, 128, seed=1)
if find_compiler() is not None:
    y = gemv_w4_gpu(p, s, x16.astype(np.float32), 128, emulate=True)
    assert isinstance(y, np.ndarray) and y.dtype == np.float32 and y.shape == (19,)
    assert np.allclose(y, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
for bad in ((p[:, :100], s, x16, 128), (p, s, x16[:300], 128), (p, s, x16, 48), (p.view(np.int8), s, x16, 128),
            (p, s, x16.astype(np.int32), 128)):
    try:
        gemv_w4_gpu(*bad, emulate=True)
        raise AssertionError("bad arguments must raise ValueError")
    except ValueError:
        pass
print("gemv_w4_gpu: ok")

# %% [markdown]
# ### 7.4 What the compiler made of it
#
# `compile_report_w4(arch)` (given) compiles your source with NVRTC for `arch`, on this CPU, and
# adds to module 20's compile report the number of warp shuffles in the PTX. The bars: no spills, at
# least one 16-byte global load (`ld.global[.nc].v4`) and at least 5 shuffles, on Turing, Ampere and
# Hopper.

# %%
#| export
def compile_report_w4(arch="sm_80"):
    """Module 20's compile_report of gemv_w4_source() for `arch`, plus "shfl": the number of
    shfl.sync instructions in the kernel's PTX."""
    import re
    source = gemv_w4_source()
    report = _compile_report(source, W4_KERNEL, arch)
    body = _ptx_body(_compile_cuda(source, arch)["ptx"], W4_KERNEL)
    report["shfl"] = len(re.findall(r"^\s*(?:@!?%p\d+\s+)?shfl\.sync\.", body, flags=re.M))
    return report


# %%
from tinyq.cuda_nvrtc import nvrtc_available

w4_reports = {}
if nvrtc_available():
    print(f"{'arch':<7}{'regs':>6}{'spill':>7}{'smem B':>8}{'ld.v4':>7}{'shfl':>6}")
    for arch in ("sm_75", "sm_80", "sm_90"):
        r = w4_reports[arch] = compile_report_w4(arch)
        print(f"{arch:<7}{r['registers']:>6}{r['spill_store_bytes']:>7}{r['shared_bytes']:>8}"
              f"{r['ld_global_v4']:>7}{r['shfl']:>6}")
else:
    print("NVRTC is not installed (pip install -e '.[nvrtc]'): no compile reports here")

# %% [markdown]
# ### 7.5 The roofline, and the measured table
#
# The time a GEMV cannot beat is its bytes divided by the memory bandwidth. On a GPU the cell below
# measures that bandwidth (a device-to-device copy of 1 GiB: read once, written once) and times
# `gemv_w4_gpu`, cuBLAS FP32 and cuBLAS FP16 GEMV (`cupy.matmul` of an 8192 × 8192 matrix by a
# vector) with CUDA events, interleaved, after warm-up. A kernel of 12 µs is shorter than the few µs
# Python needs to launch it plus the event's own cost, so each sample times 20 calls back to back:
# launches are asynchronous, and while the GPU runs one the host queues the next. Without a GPU it prints the bounds from the
# figures measured on one H100 (80 GB HBM3) when this module was written: a device copy ran at
# 2.95 TB/s, cuBLAS FP32 GEMV at 8192² in 138 µs (1.95 TB/s).

# %%
from tinyq.cuda_nvrtc import gpu_compare, gpu_unusable_reason

n_gpu = k_gpu = 8192
bytes_of = {"FP32": 4 * n_gpu * k_gpu, "FP16": 2 * n_gpu * k_gpu,
            "W4 g128": n_gpu * k_gpu // 2 + 4 * n_gpu * (k_gpu // 128)}
why_not = gpu_unusable_reason()
measured = {}
CALLS = 20          # calls per CUDA-event sample, back to back: Python's launch overhead overlaps GPU work


def back_to_back(fn):
    return lambda: [fn() for _ in range(CALLS)]


if why_not is None:
    import cupy
    big = cupy.empty(2**30, cupy.uint8)
    copy = gpu_compare(back_to_back(big.copy), back_to_back(big.copy), repeats=3)
    bandwidth = 2 * big.nbytes * CALLS / copy["candidate_s"]          # read + write
    del big
    rng_gpu = np.random.default_rng(21)
    w_gpu = rng_gpu.normal(0, 0.02, size=(n_gpu, k_gpu)).astype(np.float32)
    p_gpu, s_gpu, _ = quantize_int4_groups(w_gpu, 128)
    x_gpu = cupy.asarray(rng_gpu.normal(size=k_gpu).astype(np.float16))
    w32, w16 = cupy.asarray(w_gpu), cupy.asarray(w_gpu.astype(np.float16))
    p_dev, s_dev, x32 = cupy.asarray(p_gpu), cupy.asarray(s_gpu), x_gpu.astype(cupy.float32)
    del w_gpu
    w4_call = back_to_back(lambda: gemv_w4_gpu(p_dev, s_dev, x_gpu, 128))
    r32 = gpu_compare(w4_call, back_to_back(lambda: cupy.matmul(w32, x32)), repeats=10)
    r16 = gpu_compare(w4_call, back_to_back(lambda: cupy.matmul(w16, x_gpu)), repeats=10)
    measured = {"FP32": r32["baseline_s"] / CALLS, "FP16": r16["baseline_s"] / CALLS,
                "W4 g128": r16["candidate_s"] / CALLS}
    source_of_bw = f"measured here ({cupy.cuda.runtime.getDeviceProperties(0)['name'].decode()})"
else:
    bandwidth = 2.95e12
    source_of_bw = f"an H100's copy bandwidth (no GPU here: {why_not})"
print(f"bandwidth {bandwidth / 1e12:.2f} TB/s, {source_of_bw}")
print(f"{'GEMV 8192x8192':<16}{'MB moved':>9}{'bound us':>10}{'measured us':>13}{'TB/s':>7}")
for name, nbytes in bytes_of.items():
    t = measured.get(name)
    shown = f"{t * 1e6:>13.1f}{nbytes / t / 1e12:>7.2f}" if t else f"{'-':>13}{'-':>7}"
    print(f"{name:<16}{nbytes / 1e6:>9.1f}{nbytes / bandwidth * 1e6:>10.1f}{shown}")
if measured:
    print(f"W4A16: {measured['FP32'] / measured['W4 g128']:.2f}x cuBLAS FP32, "
          f"{measured['FP16'] / measured['W4 g128']:.2f}x cuBLAS FP16 (the bytes allow 3.76x over FP16)")
fig, ax = plt.subplots(figsize=(6, 2.6))
names = list(bytes_of)
ax.bar([i - 0.2 for i in range(3)], [bytes_of[n] / bandwidth * 1e6 for n in names], width=0.4,
       label="bytes / bandwidth")
if measured:
    ax.bar([i + 0.2 for i in range(3)], [measured[n] * 1e6 for n in names], width=0.4, label="measured")
ax.set_xticks(range(3), names)
ax.set_ylabel("µs per 8192² GEMV")
ax.legend()
fig.tight_layout()

# %% [markdown]
# The bound column is the whole argument of 4-bit weights in one line: 91 µs for FP32, 45 µs for
# FP16, 12 µs for W4 g128 at 2.95 TB/s. How close a kernel gets depends on two things the bound
# ignores: whether enough loads are in flight to cover the HBM's latency (each SM needs tens of KB
# outstanding: here 4 warps × 4 rows × 512 bytes per block, several blocks per SM), and whether the
# unpacking fits in the instruction budget of §7.1. For reference, Marlin's W4A16 kernel ran a
# 1 × 8192 × 8192 product 2.17× faster than FP16 on an H100, out of the 3.76× the bytes allow.
#
# **What the CPU cannot tell you.** The emulator proves that the indexing, the nibble order, the
# group scales, the clamped rows and the shuffles give the right sums on every shape it ran; NVRTC
# proves the kernel compiles to 16-byte loads and shuffles without spills. Speed needs a GPU:
# `python benchmarks/gpu_kernels.py` runs module 20's and this module's GPU tests (exact results on
# the device, speed against cuBLAS FP32 and FP16) and prints the W4 row of the table.


# %% [markdown]
# ## 8. W4A8 on the CPU: int8 activations and `vpmaddubsw`
#
# §6.3 found the CPU's W4A16 GEMV bound by instructions, not bytes: every weight is extracted,
# sign-extended, converted to float and multiplied in its own float lane, 8 per AVX2 instruction.
# Module 19's `gemm_u8s8` showed the instruction that integer kernels use instead: `vpmaddubsw`
# multiplies 32 unsigned bytes by 32 signed bytes and adds neighbouring pairs into 16 int16 lanes,
# **32 multiply-adds per instruction**, and `vpmaddwd` by a vector of ones then adds pairs of those
# into int32. To use it, the activations must be bytes too. That is what llama.cpp does for its
# Q4_0 weights: before the dot products it quantizes the activation vector to **Q8_0** blocks (one
# scale per 32 values, codes in [-127, 127]), and the inner loop becomes integer-only. This is a
# **W4A8** GEMV: 4-bit weights, 8-bit activations. It is a different computation from W4A16, since
# the activations are rounded; §8.2 measures what that costs.
#
# **The activations, once per call.** For each block $b$ of 32 values: $d_b = \max|x| / 127$
# (float32), $q_k = \mathrm{rint}(x_k / d_b)$ (0 when $d_b = 0$). Unlike `quantize_q8_0`, the scale
# stays float32 (llama.cpp rounds it to fp16) and the rounding is half to even, as in module 15.
# With the weight codes $w_k$ and the group scale $s$ of the row:
#
# $$y = \sum_{G} s_G \sum_{b \in G} d_b \sum_{k \in b} w_k\, q_k$$
#
# The innermost sum is an exact integer; everything outside it is float32 arithmetic on a few values
# per 32 weights.
#
# **Which operand is unsigned.** `vpmaddubsw` wants its first operand unsigned. The weight nibbles
# are signed; XOR-ing a packed byte with `0x88` turns both of its two's-complement nibbles into
# offset-binary $u = w + 8 \in [0, 15]$ (the §7 trick, on a CPU). Then
# $\sum w_k q_k = \sum u_k q_k - 8 \sum q_k$, and the sums $\sum_{k \in b} q_k$ depend on the
# activations only: computed once per call, they become one float correction per group,
# $c_G = 8 \sum_{b \in G} d_b \sum_{k \in b} q_k$, so that $y = \sum_G s_G\,(\text{dot}_G - c_G)$.
# And no saturation: a pair sum is at most $2 \cdot 15 \cdot 127 = 3810$, far inside int16 (the
# low-nibble and the high-nibble products of a lane even add up to at most 7620). Module 19 needed
# 7-bit activations for the same instruction because its weights were 8-bit; 4-bit weights leave
# room to spare.
#
# **The loop, per 32 bytes of a row (64 weights).** With ONNX's nibble order the low nibbles are the
# even elements and the high nibbles the odd ones, so the int8 activations are stored deinterleaved
# (`xq_lo = q[0::2]`, `xq_hi = q[1::2]`, as `gemv_w4` does with $x$):
#
# | step | operation | instruction |
# |---|---|---|
# | 1 | 32 packed bytes, XOR `0x88` | `vmovdqu`, `vpxor` |
# | 2 | low nibbles: AND `0x0F`; high nibbles: shift right 4, AND `0x0F` | `vpand`, `vpsrlw`, `vpand` |
# | 3 | `maddubs(lo, xq_lo[...])` + `maddubs(hi, xq_hi[...])`: 16 int16 lanes of 4 products | 2 `vpmaddubsw`, `vpaddw` |
# | 4 | `madd_i16(..., ones)`: 8 int32 lanes of 8 products | `vpmaddwd` |
# | 5 | to float, times the block scale of each lane, into the group's float sums | `vcvtdq2ps`, `vfmadd231ps` |
#
# About a dozen instructions for 64 weights, where the W4A16 kernel needs several per 8. Which lane
# holds which weights: int16 lane $i$ of step 3 covers the elements $4i \dots 4i + 3$ of the 64,
# int32 lane $l$ of step 4 the elements $8l \dots 8l + 7$. Lanes 0–3 therefore belong to the first
# Q8_0 block of the 64 and lanes 4–7 to the second: the per-lane scales are $d_b$ repeated 4 times
# (`d8 = np.repeat(d, 4)`, loaded 8 at a time at index `byte_offset // 4`).
#
# The vector operations come from `tinyq.simd` (given support, shared with module 19): each is a
# Numba `@intrinsic` that emits one LLVM operation, `maddubs` and `madd_i16` the x86 intrinsics where
# the CPU has AVX2 (a generic path with the same results elsewhere), the float ones plain LLVM vector
# IR. Rows are independent: `prange` over blocks of rows.

# %%
#| export
from tinyq.simd import (add_i16, and256, cvt_i32_f32, fma_f32, hsum_f32, load256, load_f32x8, madd_i16,
                        maddubs, splat_f32, splat_i16, splat_i8, srli_i16, xor256, zero256)

Q8_BLOCK = 32        # activations per int8 block (llama.cpp's Q8_0)

# %% nbgrader={"grade": false, "grade_id": "gemv_w4a8", "locked": false, "schema_version": 3, "solution": true}
#| export
@njit(cache=True)
def _q8_activations(x, group_size):
    """x (K,) float32 -> (xq_lo, xq_hi, d8, corr): the int8 codes of the even and of the odd elements
    (K/2 each), the block scale of each int32 lane (K/8: d of block b at 4b .. 4b + 3), and per group of
    `group_size` the correction c_G = 8 * sum_b d_b * sum(q in block b)."""
    ### BEGIN SOLUTION
    k = x.size
    q = np.empty(k, np.int8)
    d8 = np.empty(k // 8, np.float32)
    corr = np.zeros(k // group_size, np.float32)
    for b in range(k // Q8_BLOCK):
        block = x[b * Q8_BLOCK:(b + 1) * Q8_BLOCK]
        d = np.max(np.abs(block)) / np.float32(127)
        total = 0
        for i in range(Q8_BLOCK):
            v = 0 if d == 0 else int(np.rint(block[i] / d))
            q[b * Q8_BLOCK + i] = v
            total += v
        d8[4 * b:4 * b + 4] = d
        corr[b * Q8_BLOCK // group_size] += np.float32(8) * d * np.float32(total)
    return np.ascontiguousarray(q[0::2]), np.ascontiguousarray(q[1::2]), d8, corr
    ### END SOLUTION


@njit(parallel=True, cache=True)
def _gemv_w4a8_kernel(packed, scales, xq_lo, xq_hi, d8, corr):
    """y[n] = sum_G scales[n, G] * (sum over the group's 64-weight steps of the lane sums of
    int(u * q) * d8 - corr[G]), u = nibble ^ 8, for packed (N, K/2) uint8 signed codes."""
    ### BEGIN SOLUTION
    n_rows, n_bytes = packed.shape
    n_groups = scales.shape[1]
    group_bytes = n_bytes // n_groups
    out = np.empty(n_rows, dtype=np.float32)
    rows_per_task = 16
    for task in prange((n_rows + rows_per_task - 1) // rows_per_task):
        low4, flip, ones = splat_i8(0x0F), splat_i8(0x88), splat_i16(1)
        for r in range(task * rows_per_task, min(n_rows, (task + 1) * rows_per_task)):
            row = packed[r]
            acc = zero256()
            correction = np.float32(0.0)
            for g in range(n_groups):
                group_acc = zero256()
                for off in range(g * group_bytes, (g + 1) * group_bytes, 32):
                    b = xor256(load256(row, off), flip)                  # nibbles w -> w + 8
                    lo = and256(b, low4)
                    hi = and256(srli_i16(b, 4), low4)
                    pairs = add_i16(maddubs(lo, load256(xq_lo, off)), maddubs(hi, load256(xq_hi, off)))
                    group_acc = fma_f32(cvt_i32_f32(madd_i16(pairs, ones)), load_f32x8(d8, off // 4), group_acc)
                s = scales[r, g]
                acc = fma_f32(group_acc, splat_f32(s), acc)
                correction += s * corr[g]
            out[r] = hsum_f32(acc) - correction
    return out
    ### END SOLUTION


def gemv_w4a8(packed, scales, x, group_size=128):
    """y = W x with W packed INT4 (symmetric codes, ONNX order, float32 scales per group) and x
    quantized to int8 per block of 32 (Q8_0 style); float32 (N,).

    TODO: validate, quantize x with _q8_activations, run _gemv_w4a8_kernel. The result equals, within
    float32 rounding, dequantize_int4_groups(packed, scales, None, group_size) @ (q * d) where q and d
    are the int8 codes and scales of x's blocks of 32.

    APPROACH (the three functions of this cell):
      * _q8_activations: per block of 32, d = max|x| / 127 (float32) and q = rint(x / d), 0 where d is
        0; keep the block's sum of q for the correction of its group; split q into even and odd
        elements; repeat each d 4 times for the 8 int32 lanes of a 64-weight step.
      * _gemv_w4a8_kernel: per row and group, for each 32 bytes: XOR 0x88, low and high nibbles,
        two maddubs with the int8 activations, add them, madd_i16 by ones, convert to float and
        fma with the lanes' block scales into the group's vector; then fma with the group scale into
        the row's vector and add scale * corr[G] to a scalar correction; y = hsum - correction.
      * gemv_w4a8: ValueError unless packed is 2-D uint8, group_size a positive multiple of 64 (a
        64-weight step must stay inside a group and its two Q8_0 blocks), scales (N, n_groups) with
        N rows and at least one group, x of shape (K,) with K = n_groups * group_size and finite
        values, packed of shape (N, K / 2). Convert x to float32 and the arrays to contiguous ones.

    EXAMPLE: packed, s, _ = quantize_int4_groups(w, 128); gemv_w4a8(packed, s, x) ~= gemv_w4(packed, s, x)
             within the rounding of x to 8 bits (~0.5 % of the output's RMS for Gaussian x).

    HINTS: tinyq.simd's splat_i8, xor256, and256, srli_i16, maddubs, add_i16, madd_i16, splat_i16(1),
    cvt_i32_f32, load_f32x8, fma_f32, splat_f32, hsum_f32 (each a given @intrinsic). load256 takes a
    byte offset into a contiguous 1-D uint8/int8 array: packed[r] is one.
    """
    ### BEGIN SOLUTION
    packed = np.asarray(packed)
    if packed.dtype != np.uint8 or packed.ndim != 2:
        raise ValueError(f"gemv_w4a8: packed must be a 2-D np.uint8 array, got {packed.dtype} {packed.shape}")
    if int(group_size) != group_size or group_size < 64 or group_size % 64:
        raise ValueError(f"gemv_w4a8: group_size must be a positive multiple of 64, got {group_size}")
    scales = np.ascontiguousarray(scales, dtype=np.float32)
    n_rows = packed.shape[0]
    if scales.ndim != 2 or scales.shape[0] != n_rows or scales.shape[1] < 1:
        raise ValueError(f"gemv_w4a8: scales must have shape ({n_rows}, K // group_size), got {scales.shape}")
    x = np.asarray(x, dtype=np.float32)
    k = scales.shape[1] * int(group_size)
    if x.shape != (k,) or packed.shape[1] != k // 2:
        raise ValueError(f"gemv_w4a8: {scales.shape[1]} groups of {group_size} need x of shape ({k},) and "
                         f"packed of shape ({n_rows}, {k // 2}); got x {x.shape}, packed {packed.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"gemv_w4a8: x has {int(np.count_nonzero(~np.isfinite(x)))} NaN/inf values")
    xq_lo, xq_hi, d8, corr = _q8_activations(x, int(group_size))
    return _gemv_w4a8_kernel(np.ascontiguousarray(packed), scales, xq_lo, xq_hi, d8, corr)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_gemv_w4a8", "locked": true, "schema_version": 3, "solution": false}
def q8_dequantized(x):
    """x after Q8_0-style rounding: q * d per block of 32 (float64), the activations W4A8 really uses."""
    blocks = np.asarray(x, np.float32).reshape(-1, Q8_BLOCK)
    d = (np.abs(blocks).max(axis=1) / np.float32(127)).astype(np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = np.where(d[:, None] > 0, np.rint(blocks / d[:, None]), 0)
    return (q * d[:, None].astype(np.float64)).reshape(-1)


rng = np.random.default_rng(3)
w = rng.normal(size=(300, 512)).astype(np.float32)
x = rng.normal(size=512).astype(np.float32)
x[64:96] = 0                                                     # an all-zero block: d = 0
packed, scale, _ = quantize_int4_groups(w, 128)
w_hat = dequantize_int4_groups(packed, scale, None, 128).astype(np.float64)
y8 = gemv_w4a8(packed, scale, x, 128)
reference = w_hat @ q8_dequantized(x)
assert y8.dtype == np.float32 and y8.shape == (300,)
assert np.allclose(y8, reference, rtol=1e-5, atol=1e-5 * np.abs(reference).max())
cost = np.sqrt(np.mean((y8 - w_hat @ x) ** 2) / np.mean((w_hat @ x) ** 2))
print(f"gemv_w4a8: ok; int8 activations move y by {cost:.2%} of its RMS")

# %% [markdown]
# ### 8.1 Speed, and how it scales with threads
#
# The same 4096 × 4096 layer as §6.3, at 1 and 2 threads (numpy's BLAS given the same count), with
# the W4A16 times of §6.3 beside it; the time of W4A8 includes quantizing $x$.

# %%
y_a8 = lambda: gemv_w4a8(p4, s4, x_vec, 128)
y_a8()
w4a16_ms = {threads: t_int4 for threads, _, t_int4, _ in bw_rows}
a8_rows = []
for threads in (1, 2):
    numba.set_num_threads(threads)
    with threadpool_limits(limits=threads, user_api="blas"):
        r8 = compare(y_a8, gemv_fp32, repeats=3, settle_s=PAUSE_S)
    a8_rows.append((threads, r8.baseline_s, w4a16_ms[threads], r8.candidate_s))
numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
print(f"{'threads':>7} {'numpy FP32 ms':>14} {'W4A16 ms':>9} {'W4A8 ms':>8} {'W4A8 vs FP32':>13} {'GB/s W4A8':>10}")
for threads, t32, t4, t8 in a8_rows:
    print(f"{threads:>7} {t32 * 1e3:>14.3f} {t4 * 1e3:>9.3f} {t8 * 1e3:>8.3f} {t32 / t8:>12.2f}x "
          f"{bytes_int4 / t8 / 1e9:>10.1f}")
print(f"W4A8 from 1 to 2 threads: {a8_rows[0][3] / a8_rows[1][3]:.2f}x faster "
      "(2.0 would be perfect; a busy neighbour on a 2-core machine takes its share)")

# %% [markdown]
# ### 8.2 What 8-bit activations cost
#
# W4A8 and W4A16 use the same weights; they differ by the rounding of $x$. Two activation vectors:
# Gaussian, and one with outliers (1 % of the channels 30 times larger, the pattern LLM activations
# are known for, module 22). The errors are relative RMS errors of $y$, against the exact product of
# the FP32 weights (`W @ x` in float64) and against W4A16.

# %%
x_outliers = rng.normal(size=K).astype(np.float32)
x_outliers[rng.choice(K, K // 100, replace=False)] *= 30
w_hat4 = dequantize_int4_groups(p4, s4, None, 128).astype(np.float64)


def rel_rms(y, ref):
    return float(np.sqrt(np.mean((np.asarray(y, np.float64) - ref) ** 2) / np.mean(ref ** 2)))


acc_a8 = []
for label, xv in (("Gaussian x", x_vec), ("x with 1 % outliers", x_outliers)):
    exact = W.astype(np.float64) @ xv.astype(np.float64)
    y16, y8 = gemv_w4(p4, s4, xv, 128), gemv_w4a8(p4, s4, xv, 128)
    acc_a8.append((label, rel_rms(y16, exact), rel_rms(y8, exact), rel_rms(y8, w_hat4 @ xv.astype(np.float64))))
print(f"{'activations':<22} {'W4A16 vs FP32':>14} {'W4A8 vs FP32':>13} {'W4A8 vs W4A16':>14}")
for label, e16, e8, e_act in acc_a8:
    print(f"{label:<22} {e16:>14.2%} {e8:>13.2%} {e_act:>14.2%}")
fig, ax = plt.subplots(1, 2, figsize=(10, 2.8))
ax[0].bar([f"{t} thr" for t, *_ in a8_rows for _ in range(3)],
          [v * 1e3 for _, t32, t4, t8 in a8_rows for v in (t32, t4, t8)],
          color=["tab:gray", "tab:blue", "tab:orange"] * len(a8_rows))
ax[0].set_ylabel("ms (gray FP32, blue W4A16, orange W4A8)")
ax[1].bar([r[0] for r in acc_a8], [r[3] * 100 for r in acc_a8], color="tab:orange")
ax[1].set_ylabel("W4A8 vs W4A16, % RMS")
fig.tight_layout()

# %% [markdown]
# Read the two tables together. The rounding of the weights to 4 bits (W4A16 against FP32) costs
# about a tenth of the output's RMS here, for random Gaussian weights, and rounding the activations
# to 8 bits adds about half a percent for Gaussian activations. Independent errors add in
# quadrature, so the W4A8 column barely differs from the W4A16 one. Outliers change the picture: a
# block of 32 that contains one large value gets a large $d_b$, and its 31 other values are rounded
# on a coarse grid, so the activation error more than doubles. That is the case for finer activation blocks (llama.cpp's 32
# rather than one scale for the whole vector) and, in module 22, for smoothing the outliers away
# (SmoothQuant). In exchange, the integer inner loop runs several times faster than the float one on
# this CPU, and for the first time the CPU kernel's time is set by the bytes it reads, not by the
# instructions per weight.

# %% [markdown]
# ### 8.3 Against a library: ONNX Runtime's MatMulNBits
#
# ONNX Runtime runs 4-bit LLM weights with its `MatMulNBits` operator, on exactly this storage
# (4-bit codes, low nibble first, a float scale per group of 128 along K; it stores codes + 8, so
# the bytes are `packed ^ 0x88`: `tinyq.baselines.ort_matmul_nbits`). It has a float path and,
# with `accuracy_level=4`, an int8-activation path like your W4A8. One thread each, interleaved:

# %%
from tinyq.baselines import ort_matmul_nbits

numba.set_num_threads(1)
for label, int8_x in (("ORT MatMulNBits, float x", False), ("ORT MatMulNBits, int8 x", True)):
    library = ort_matmul_nbits(p4, s4, K, 128, 1, int8_activations=int8_x)
    if library is None:
        print("onnxruntime is not installed (pip install -e '.[deploy]'): no library row")
        break
    r = compare(lambda: library(x_vec), y_a8, repeats=3)
    print(f"{label:<26} {r.candidate_s * 1e3:7.3f} ms   your gemv_w4a8 {r.baseline_s * 1e3:7.3f} ms   "
          f"your time / library's: {r.baseline_s / r.candidate_s:.2f} (above 1: the library is faster)")
numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)

# %% [markdown]
# Where the library's int8 path is faster than yours (on the machine this course was written on,
# 1.5 to 2 times as fast at one thread), the reasons are the ones module 19 met for GEMMs: it repacks
# the weights once, when the session is created, into the order its kernels read, and it has
# kernels for each instruction set — on a CPU with AVX-512 VNNI, one `vpdpbusd` does what
# `vpmaddubsw` + `vpmaddwd` + `vpaddd` do in your loop. Its float path, like your W4A16, is bound by
# the instructions that turn nibbles into floats, not by the bytes.


# %% [markdown]
# ## What you built
# * `pack_int4` / `unpack_int4`: two codes per byte in ONNX's order, signed or unsigned, odd lengths;
# * `quantize_int4_groups` / `dequantize_int4_groups`: INT4 weights with a scale (and zero point) per
#   group of 128, at 4.25 bits per weight;
# * `quantize_q8_0`, `quantize_q4_0` and their inverses: llama.cpp's blocks, byte for byte;
# * `quantize_nf4` / `dequantize_nf4`: bitsandbytes' NF4 with its high-nibble-first packing;
# * `gemv_w4`: a W4A16 GEMV that keeps scales out of the inner loop and reads $x$ contiguously;
# * `gemv_w4_source` / `gemv_w4_gpu`: the same product as a CUDA kernel (16-byte loads, nibbles
#   turned into floats in registers by the magic-number trick, warp-shuffle reduction) and its host
#   function, compiled for sm_75/80/90 and exact in the CPU emulator;
# * `gemv_w4a8`: the CPU GEMV with int8 activations (Q8_0 blocks), nibbles XOR-ed to unsigned and
#   multiplied 32 at a time with `vpmaddubsw`, and what the rounding of $x$ costs.
#
# **What the measurements say.** On a 2-core CPU the INT4 GEMV is limited by the instructions it
# needs per weight, not by the 7.5× fewer bytes it reads. On a 2-core EPYC (Zen 4, AVX-512), the
# reference `gemv_w4` took 1.1–1.5 ms (1 thread) and 0.76–0.86 ms (2) at 4096 × 4096,
# numpy 2.1–3.6 ms: `python benchmarks/cpu_kernels.py` gave medians of 2.3–2.8× at 1 thread
# and 2.3–3.0× at 2 threads over four runs (single rounds 2.0–4.0×; one of the runs with the kernel compiled for AVX2
# only, `NUMBA_CPU_NAME=znver3`, which ran alike), where the bytes alone would allow 7.5×. ONNX
# Runtime's float `MatMulNBits` on the same packed weights ran 2.3–2.5× (1 thread) and 1.6× (2
# threads). The graded bar is 1.8×. Four things make that speed: reading $x$ contiguously (the
# strided read of §6.4 is far slower), nibble maths kept in bytes, splitting the nibbles in
# registers rather than through scratch rows (1.15–1.7× faster), and timing without BLAS's spinning
# threads in the way (§6.3).
#
# W4A8 (§8) changes the instruction count rather than the bytes: about a dozen AVX2 instructions per
# 64 weights. On the same Zen 4 machine the reference `gemv_w4a8` took 0.45–0.55 ms on 1 thread and
# 0.30–0.33 ms on 2 at 4096 × 4096, quantization of $x$ included: `python benchmarks/cpu_kernels.py`
# gave medians of 6.3–6.5× numpy FP32 at 1 thread and 6.9–7.4× at 2 over two runs (single rounds
# 6.0–8.9×), where ONNX Runtime's int8-activation `MatMulNBits` ran 12.1× and 8.3–8.5× (§8.3 shows
# why it is faster). The graded bar is 2.5×. The price is the rounding of $x$: half a percent of the
# output for Gaussian activations, more with outliers. GPUs move the balance further towards the
# bytes: on a GPU (§7) the same 4.25 bits per weight are the whole story, as long as the unpacking
# stays within about five instructions per weight. Next: module 22 makes 4-bit weights *accurate*
# (GPTQ, AWQ).
