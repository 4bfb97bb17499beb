# Hand-written support (not exported from a module): 256-bit integer SIMD operations for Numba kernels.
"""256-bit integer vectors and the x86 multiply-add instructions behind int8 GEMMs, for Numba kernels.

Numba has no vector type and no way to ask LLVM for one particular instruction. This module adds both,
with `numba.extending.intrinsic`: an `@intrinsic` is a function that Numba does not compile from
Python but asks to *emit LLVM IR itself* wherever a kernel calls it. So a kernel can write

    acc = add_i32(acc, madd_i16(maddubs(load256(a, i), load256(w, j)), ONES))

and the machine code is `vpmaddubsw`, `vpmaddwd`, `vpaddd` on `ymm` registers, as a C programmer
would get from `_mm256_maddubs_epi16` / `_mm256_madd_epi16` / `_mm256_add_epi32`.

The one type, `vec256`, is 32 bytes held in a register (LLVM `<8 x i32>`). What the bytes mean
depends on the operation that reads them: 32 uint8 or int8 for `maddubs`, 16 int16 for `madd_i16`,
8 int32 for `add_i32` and `hsum_i32`. Reinterpreting a register costs nothing (an LLVM bitcast).

| function | computes | x86 (AVX2) |
|---|---|---|
| `load256(arr, i)` | the 32 bytes arr[i:i+32] of a uint8/int8 array (no alignment needed) | `vmovdqu` |
| `zero256()` | 32 zero bytes | `vpxor` |
| `splat_i16(v)` | 16 int16 lanes equal to v | `vpbroadcastw` |
| `maddubs(u, s)` | 16 int16: u[2i]*s[2i] + u[2i+1]*s[2i+1], u uint8, s int8, **saturated** to int16 | `vpmaddubsw` |
| `madd_i16(x, y)` | 8 int32: x[2i]*y[2i] + x[2i+1]*y[2i+1], int16 lanes, exact | `vpmaddwd` |
| `add_i32(x, y)` | 8 int32 sums, wrapping | `vpaddd` |
| `hsum_i32(x)` | the sum of the 8 int32 lanes, as int32 | shuffles and adds |
| `dpbusd(acc, u, s)` | 8 int32: acc[i] + u[4i]*s[4i] + ... + u[4i+3]*s[4i+3], uint8 x int8, exact (wrapping) | `vpdpbusd` (VNNI) |
| `store256(out, i, x)` | out[i:i+8] = the 8 int32 lanes of x (an int32 array; view it as int16 for 16 lanes) | `vmovdqu` |
| `splat_i8(v)` | 32 bytes equal to v | `vpbroadcastb` |
| `and256(x, y)`, `xor256(x, y)` | bitwise AND / XOR of 256 bits | `vpand`, `vpxor` |
| `srli_i16(x, n)` | 16 uint16 lanes shifted right by n (zeros in) | `vpsrlw` |
| `add_i16(x, y)` | 16 int16 sums, wrapping | `vpaddw` |
| `cvt_i32_f32(x)` | 8 float32 lanes from 8 int32 lanes | `vcvtdq2ps` |
| `load_f32x8(arr, i)` | the 8 float32 arr[i:i+8] of a float32 array | `vmovups` |
| `splat_f32(v)` | 8 float32 lanes equal to v | `vbroadcastss` |
| `fma_f32(a, b, c)` | 8 float32 lanes a * b + c (fused where the CPU has FMA) | `vfmadd231ps` |
| `hsum_f32(x)` | the sum of the 8 float32 lanes, as float32 | shuffles and adds |

`maddubs` is the instruction of the int8 GEMMs of fbgemm, ONNX Runtime and oneDNN on AVX2: 32
multiply-adds per instruction, but the pair sum saturates at +-32767 (255 * 127 * 2 = 64770 does not
fit). It is exact when one operand has 7 bits: activations in [0, 127], or weights in [-64, 63].
The float32 operations (`cvt_i32_f32` ... `hsum_f32`) read and write the same `vec256` as 8 float32
lanes; they are plain LLVM vector IR, which LLVM turns into the AVX2/FMA instructions of the table
where the CPU has them and into other instructions elsewhere, as are the bitwise ones.

`dpbusd` is VNNI's one-instruction replacement for the whole chain maddubs -> madd_i16(ones) ->
add_i32, without the int16 step, so without saturation.

Portability: the x86 intrinsics are emitted only where the host CPU has them (`HAS_AVX2`; `HAS_VNNI`
for `dpbusd`: AVX512-VNNI with AVX512VL, or AVX-VNNI), from LLVM's own host feature list, the one
Numba compiles for. Elsewhere the same functions emit generic LLVM vector IR with the *same*
results, saturation included (widen, multiply, pairwise add, `llvm.sadd.sat`), which LLVM lowers to
whatever the CPU has: slower, never different. A kernel that should take the VNNI instruction only
where it is fast branches on `HAS_VNNI`, a global Numba freezes into the compiled code. A kernel using
them may be cached (`cache=True`): Numba keys its cache on the CPU name and features, so a cache built
on an AVX2 machine is never loaded on another kind of CPU.
"""
from __future__ import annotations

import llvmlite.binding as _llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

__all__ = ["HAS_AVX2", "HAS_VNNI", "vec256", "load256", "zero256", "splat_i16", "maddubs",
           "madd_i16", "add_i32", "hsum_i32", "dpbusd", "store256", "cpu_features",
           "splat_i8", "and256", "xor256", "srli_i16", "add_i16",
           "cvt_i32_f32", "load_f32x8", "splat_f32", "fma_f32", "hsum_f32"]


def cpu_features() -> dict:
    """The host CPU features LLVM (and so Numba) compiles for: {"avx2": True, ...}."""
    return dict(_llvm.get_host_cpu_features())


_FEATURES = cpu_features()
HAS_AVX2 = bool(_FEATURES.get("avx2", False))
HAS_VNNI = bool((_FEATURES.get("avx512vnni", False) and _FEATURES.get("avx512vl", False))
                or _FEATURES.get("avxvnni", False))
_USE_X86 = HAS_AVX2      # tests flip these two to compile the generic path on an AVX2 / VNNI machine
_USE_VNNI = HAS_VNNI

_I8, _I16, _I32 = ir.IntType(8), ir.IntType(16), ir.IntType(32)
_V8, _V16, _V32 = ir.VectorType(_I8, 32), ir.VectorType(_I16, 16), ir.VectorType(_I32, 8)
_F32 = ir.FloatType()
_VF = ir.VectorType(_F32, 8)


class Vec256Type(types.Type):
    """32 bytes in a SIMD register (LLVM <8 x i32>); the operation that reads it gives the lanes a type."""

    def __init__(self):
        super().__init__(name="vec256")


vec256 = Vec256Type()


@register_model(Vec256Type)
class _Vec256Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _V32)


def _declare(builder, name, ret, args):
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(ret, args), name)


def _pairs(builder, wide, n):
    """Even and odd lanes of a <2n x iW> vector, as two <n x iW> vectors."""
    even = builder.shuffle_vector(wide, wide, ir.Constant(ir.VectorType(_I32, n), [2 * i for i in range(n)]))
    odd = builder.shuffle_vector(wide, wide, ir.Constant(ir.VectorType(_I32, n), [2 * i + 1 for i in range(n)]))
    return even, odd


# ----------------------------------------------------------------------------------------- intrinsics
@intrinsic
def load256(typingctx, arr, index):
    """vec256 of the 32 bytes arr[index:index+32] of a C-contiguous uint8/int8 array (unaligned load).

    No bounds check: the caller guarantees index + 32 <= arr.size (pad the operands)."""
    if not (isinstance(arr, types.Array) and arr.dtype in (types.uint8, types.int8) and arr.layout == "C"):
        return None
    if not isinstance(index, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        i = context.cast(builder, args[1], signature.args[1], types.intp)
        ptr = builder.gep(builder.bitcast(ary.data, _I8.as_pointer()), [i])
        return builder.load(builder.bitcast(ptr, _V32.as_pointer()), align=1)

    return vec256(arr, index), codegen


@intrinsic
def zero256(typingctx):
    """vec256 of 32 zero bytes (8 int32 zeros)."""
    def codegen(context, builder, signature, args):
        return ir.Constant(_V32, None)

    return vec256(), codegen


@intrinsic
def splat_i16(typingctx, value):
    """vec256 of 16 int16 lanes all equal to `value` (truncated to int16)."""
    if not isinstance(value, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        v = builder.trunc(context.cast(builder, args[0], signature.args[0], types.int64), _I16)
        vec = builder.insert_element(ir.Constant(_V16, None), v, ir.Constant(_I32, 0))
        vec = builder.shuffle_vector(vec, vec, ir.Constant(ir.VectorType(_I32, 16), [0] * 16))
        return builder.bitcast(vec, _V32)

    return vec256(value), codegen


@intrinsic
def maddubs(typingctx, u8, s8):
    """16 int16 lanes: u8[2i]*s8[2i] + u8[2i+1]*s8[2i+1] (bytes of u8 unsigned, of s8 signed), the pair
    sum saturated to [-32768, 32767]. x86: vpmaddubsw."""
    if u8 is not vec256 or s8 is not vec256:
        return None

    def codegen(context, builder, signature, args):
        u = builder.bitcast(args[0], _V8)
        s = builder.bitcast(args[1], _V8)
        if _USE_X86:
            r = builder.call(_declare(builder, "llvm.x86.avx2.pmadd.ub.sw", _V16, [_V8, _V8]), [u, s])
        else:
            w32 = ir.VectorType(_I16, 32)
            prod = builder.mul(builder.zext(u, w32), builder.sext(s, w32))     # |u*s| <= 32640: fits int16
            even, odd = _pairs(builder, prod, 16)
            r = builder.call(_declare(builder, "llvm.sadd.sat.v16i16", _V16, [_V16, _V16]), [even, odd])
        return builder.bitcast(r, _V32)

    return vec256(u8, s8), codegen


@intrinsic
def madd_i16(typingctx, x, y):
    """8 int32 lanes: x[2i]*y[2i] + x[2i+1]*y[2i+1] of int16 lanes, exact except for the one pair
    (-32768)*(-32768) twice, which wraps. x86: vpmaddwd."""
    if x is not vec256 or y is not vec256:
        return None

    def codegen(context, builder, signature, args):
        a = builder.bitcast(args[0], _V16)
        b = builder.bitcast(args[1], _V16)
        if _USE_X86:
            return builder.call(_declare(builder, "llvm.x86.avx2.pmadd.wd", _V32, [_V16, _V16]), [a, b])
        w32 = ir.VectorType(_I32, 16)
        prod = builder.mul(builder.sext(a, w32), builder.sext(b, w32))
        even, odd = _pairs(builder, prod, 8)
        return builder.add(even, odd)

    return vec256(x, y), codegen


@intrinsic
def add_i32(typingctx, x, y):
    """8 int32 lanes x + y, wrapping modulo 2**32. x86: vpaddd."""
    if x is not vec256 or y is not vec256:
        return None

    def codegen(context, builder, signature, args):
        return builder.add(args[0], args[1])

    return vec256(x, y), codegen


@intrinsic
def hsum_i32(typingctx, x):
    """The sum of the 8 int32 lanes of x, as an int32 (wrapping)."""
    if x is not vec256:
        return None

    def codegen(context, builder, signature, args):
        v = args[0]
        width = 8
        while width > 1:                      # fold the upper half onto the lower half: 8 -> 4 -> 2 -> 1
            width //= 2
            hi = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(_I32, 8),
                                                          [width + i if i < width else i for i in range(8)]))
            v = builder.add(v, hi)
        return builder.extract_element(v, ir.Constant(_I32, 0))

    return types.int32(x), codegen


@intrinsic
def store256(typingctx, out, index, x):
    """out[index:index+8] = the 8 int32 lanes of x, for a C-contiguous int32 array (unaligned store, no
    bounds check: the caller guarantees index + 8 <= out.size)."""
    if not (isinstance(out, types.Array) and out.dtype == types.int32 and out.layout == "C"):
        return None
    if not isinstance(index, types.Integer) or x is not vec256:
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        i = context.cast(builder, args[1], signature.args[1], types.intp)
        ptr = builder.gep(builder.bitcast(ary.data, _I32.as_pointer()), [i])
        builder.store(args[2], builder.bitcast(ptr, _V32.as_pointer()), align=1)
        return context.get_dummy_value()

    return types.none(out, index, x), codegen



@intrinsic
def dpbusd(typingctx, acc, u8, s8):
    """8 int32 lanes: acc[i] + sum_{j<4} u8[4i+j] * s8[4i+j] (bytes of u8 unsigned, of s8 signed),
    exact, wrapping modulo 2**32. x86 with VNNI: vpdpbusd."""
    if acc is not vec256 or u8 is not vec256 or s8 is not vec256:
        return None

    def codegen(context, builder, signature, args):
        if _USE_VNNI:
            fn = _declare(builder, "llvm.x86.avx512.vpdpbusd.256", _V32, [_V32, _V32, _V32])
            return builder.call(fn, list(args))
        w32 = ir.VectorType(_I32, 32)
        prod = builder.mul(builder.zext(builder.bitcast(args[1], _V8), w32),
                           builder.sext(builder.bitcast(args[2], _V8), w32))
        total = args[0]
        for j in range(4):
            lane = builder.shuffle_vector(prod, prod, ir.Constant(ir.VectorType(_I32, 8),
                                                                  [4 * i + j for i in range(8)]))
            total = builder.add(total, lane)
        return total

    return vec256(acc, u8, s8), codegen


# ------------------------------------------------------------------ bytes, int16 lanes and float32 lanes
def _splat(builder, value, vec_type):
    """A vector of vec_type with every lane equal to the scalar `value` (already of the lane type)."""
    vec = builder.insert_element(ir.Constant(vec_type, None), value, ir.Constant(_I32, 0))
    return builder.shuffle_vector(vec, vec, ir.Constant(ir.VectorType(_I32, vec_type.count), [0] * vec_type.count))


@intrinsic
def splat_i8(typingctx, value):
    """vec256 of 32 bytes all equal to `value` (truncated to 8 bits)."""
    if not isinstance(value, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        v = builder.trunc(context.cast(builder, args[0], signature.args[0], types.int64), _I8)
        return builder.bitcast(_splat(builder, v, _V8), _V32)

    return vec256(value), codegen


@intrinsic
def and256(typingctx, x, y):
    """vec256 x AND y, bit by bit. x86: vpand."""
    if x is not vec256 or y is not vec256:
        return None

    def codegen(context, builder, signature, args):
        return builder.and_(args[0], args[1])

    return vec256(x, y), codegen


@intrinsic
def xor256(typingctx, x, y):
    """vec256 x XOR y, bit by bit. x86: vpxor."""
    if x is not vec256 or y is not vec256:
        return None

    def codegen(context, builder, signature, args):
        return builder.xor(args[0], args[1])

    return vec256(x, y), codegen


@intrinsic
def srli_i16(typingctx, x, count):
    """16 uint16 lanes of x shifted right by `count` (0..15), zeros shifted in. x86: vpsrlw."""
    if x is not vec256 or not isinstance(count, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        n = builder.trunc(context.cast(builder, args[1], signature.args[1], types.int64), _I16)
        r = builder.lshr(builder.bitcast(args[0], _V16), _splat(builder, n, _V16))
        return builder.bitcast(r, _V32)

    return vec256(x, count), codegen


@intrinsic
def add_i16(typingctx, x, y):
    """16 int16 lanes x + y, wrapping modulo 2**16. x86: vpaddw."""
    if x is not vec256 or y is not vec256:
        return None

    def codegen(context, builder, signature, args):
        r = builder.add(builder.bitcast(args[0], _V16), builder.bitcast(args[1], _V16))
        return builder.bitcast(r, _V32)

    return vec256(x, y), codegen


@intrinsic
def cvt_i32_f32(typingctx, x):
    """8 float32 lanes, each the int32 lane of x converted (rounded to nearest). x86: vcvtdq2ps."""
    if x is not vec256:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(builder.sitofp(args[0], _VF), _V32)

    return vec256(x), codegen


@intrinsic
def load_f32x8(typingctx, arr, index):
    """vec256 of the 8 float32 arr[index:index+8] of a C-contiguous float32 array (unaligned load, no
    bounds check: the caller guarantees index + 8 <= arr.size)."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.float32 and arr.layout == "C"):
        return None
    if not isinstance(index, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        i = context.cast(builder, args[1], signature.args[1], types.intp)
        ptr = builder.gep(builder.bitcast(ary.data, _F32.as_pointer()), [i])
        return builder.bitcast(builder.load(builder.bitcast(ptr, _VF.as_pointer()), align=4), _V32)

    return vec256(arr, index), codegen


@intrinsic
def splat_f32(typingctx, value):
    """8 float32 lanes all equal to `value` (converted to float32). x86: vbroadcastss."""
    if not isinstance(value, (types.Float, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        v = context.cast(builder, args[0], signature.args[0], types.float32)
        return builder.bitcast(_splat(builder, v, _VF), _V32)

    return vec256(value), codegen


@intrinsic
def fma_f32(typingctx, a, b, c):
    """8 float32 lanes a * b + c, fused (one rounding) where the CPU has FMA, else a multiply and an add
    (LLVM's llvm.fmuladd). x86 with FMA: vfmadd231ps."""
    if a is not vec256 or b is not vec256 or c is not vec256:
        return None

    def codegen(context, builder, signature, args):
        fa, fb, fc = (builder.bitcast(v, _VF) for v in args)
        fn = _declare(builder, "llvm.fmuladd.v8f32", _VF, [_VF, _VF, _VF])
        return builder.bitcast(builder.call(fn, [fa, fb, fc]), _V32)

    return vec256(a, b, c), codegen


@intrinsic
def hsum_f32(typingctx, x):
    """The sum of the 8 float32 lanes of x, as float32: (l0 + l4) + (l2 + l6) + ... by halving."""
    if x is not vec256:
        return None

    def codegen(context, builder, signature, args):
        v = builder.bitcast(args[0], _VF)
        width = 8
        while width > 1:
            width //= 2
            hi = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(_I32, 8),
                                                          [width + i if i < width else i for i in range(8)]))
            v = builder.fadd(v, hi)
        return builder.extract_element(v, ir.Constant(_I32, 0))

    return types.float32(x), codegen
