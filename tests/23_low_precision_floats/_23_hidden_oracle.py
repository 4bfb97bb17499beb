"""Instructor-only oracle of module 23's exercises, written independently of the reference solution:
every conversion goes through the `ml_dtypes` types (numpy's float16) instead of bit arithmetic.
Removed from the student release.

The `only` fixture puts these functions in place of the exercises a test does not grade, and the
hidden tests compare the learner's results with them. Formats are given by name or by any object with
a `.name` (the package's FloatFormat): the name selects the ml_dtypes type.
"""
import ml_dtypes
import numpy as np

_NO_NAN = {"float4_e2m1fn", "float6_e2m3fn", "float6_e3m2fn"}
_MX_EMAX = {"float8_e4m3fn": 8, "float8_e5m2": 15, "float6_e3m2fn": 4, "float6_e2m3fn": 2,
            "float4_e2m1fn": 2, "int8": 0}


def _name(fmt):
    return getattr(fmt, "name", fmt)


def _type(fmt):
    name = _name(fmt)
    if name == "float16":
        return np.float16
    if not isinstance(name, str) or not hasattr(ml_dtypes, name):
        raise ValueError(f"unknown float format {fmt!r}")
    return getattr(ml_dtypes, name)


def _finfo(fmt):
    return ml_dtypes.finfo(_type(fmt))


def _storage(fmt):
    return np.uint16 if np.dtype(_type(fmt)).itemsize == 2 else np.uint8


def decode(bits, fmt):
    codes = np.asarray(bits)
    if codes.dtype.kind not in "ui":
        raise ValueError("codes must be integers")
    width = _finfo(fmt).bits
    if codes.size and (codes.min() < 0 or codes.max() >= 2 ** width):
        raise ValueError("code out of range")
    return codes.astype(_storage(fmt)).view(_type(fmt)).astype(np.float32)


def encode(x, fmt, saturate=False):
    x = np.asarray(x, dtype=np.float32)
    name = _name(fmt)
    nan = np.isnan(x)
    if name in _NO_NAN and nan.any():
        raise ValueError(f"{name} has no NaN")
    if saturate:
        top = np.float32(_finfo(fmt).max)
        x = np.where(nan, x, np.clip(x, -top, top)).astype(np.float32)
    with np.errstate(all="ignore"):
        codes = x.astype(_type(fmt)).view(_storage(fmt))
    if name == "float8_e8m0fnu":
        # below 2^-126: the nearer of 2^-127 (code 0) and 2^-126 (code 1), a tie going up
        tiny = (x > 0) & (x < np.float32(2.0 ** -126))
        codes = np.where(tiny, (x >= np.float32(1.5 * 2.0 ** -127)).astype(np.uint8), codes).astype(np.uint8)
    return codes.reshape(x.shape)


def format_info(fmt):
    info = _finfo(fmt)
    width = info.bits
    values = np.arange(2 ** width).astype(_storage(fmt)).view(_type(fmt)).astype(np.float64)
    return {"name": _name(fmt), "bits": int(width), "max": float(info.max),
            "min_normal": float(info.smallest_normal), "min_subnormal": float(info.smallest_subnormal),
            "eps": float(info.eps), "finite_codes": int(np.isfinite(values).sum())}


def fp8_quantize(x, fmt="float8_e4m3fn", scale=None):
    if _name(fmt) == "float8_e8m0fnu":
        raise ValueError("unsigned format")
    x = np.asarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise ValueError("NaN or inf in x")
    if scale is None:
        amax = np.float64(np.abs(x).max()) if x.size else np.float64(0.0)
        scale = np.float32(amax / np.float64(_finfo(fmt).max))
        if scale == 0:
            scale = np.float32(1.0)
    else:
        scale = np.float32(scale)
        if not np.isfinite(scale) or scale <= 0:
            raise ValueError("bad scale")
    return encode(x / scale, fmt, saturate=True), scale


def fp8_dequantize(codes, scale, fmt="float8_e4m3fn"):
    return (decode(codes, fmt) * np.float32(scale)).astype(np.float32)


class DelayedScaling:
    def __init__(self, fmt="float8_e4m3fn", history_len=16, algo="max", margin=0):
        if algo not in ("max", "most_recent") or int(history_len) < 1 or int(margin) < 0:
            raise ValueError("bad DelayedScaling arguments")
        if _name(fmt) == "float8_e8m0fnu":
            raise ValueError("unsigned format")
        self.fmt, self.algo, self.margin, self.length = fmt, algo, int(margin), int(history_len)
        self.recent = []                      # oldest first
        self.scale = np.float32(1.0)

    @property
    def amax_history(self):
        newest_first = self.recent[::-1]
        return np.array(newest_first + [0.0] * (self.length - len(newest_first)), dtype=np.float32)

    def quantize(self, x):
        x = np.asarray(x, dtype=np.float32)
        codes, used = fp8_quantize(x, self.fmt, scale=self.scale)
        self.recent = (self.recent + [float(np.float32(np.abs(x).max()) if x.size else 0.0)])[-self.length:]
        amax = max(self.recent) if self.algo == "max" else self.recent[-1]
        if amax > 0:
            self.scale = np.float32(amax * 2.0 ** self.margin / float(_finfo(self.fmt).max))
        return codes, used


def fp8_matmul(a_codes, a_scale, b_codes, b_scale, a_fmt="float8_e4m3fn", b_fmt="float8_e4m3fn"):
    a = decode(a_codes, a_fmt)
    b = decode(b_codes, b_fmt)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError("shapes")
    sa = np.asarray(a_scale, np.float32).reshape(-1, 1)
    sb = np.asarray(b_scale, np.float32).reshape(1, -1)
    return (np.matmul(a, b) * (sa * sb)).astype(np.float32)


def _blocks(x, block):
    x = np.asarray(x, dtype=np.float32)
    if block < 1 or x.ndim == 0 or x.shape[-1] % block:
        raise ValueError("block size does not divide the last axis")
    return x, x.reshape(x.shape[:-1] + (x.shape[-1] // block, block))


def mx_quantize(x, elem="float4_e2m1fn", block=32):
    """The straightforward reference: log2 in float64, scale and elements cast by ml_dtypes."""
    if elem not in _MX_EMAX:
        raise ValueError("unknown element")
    x, blocks = _blocks(x, block)
    amax = np.abs(blocks).max(axis=-1).astype(np.float64)
    special = ~np.isfinite(amax)
    with np.errstate(divide="ignore", invalid="ignore"):
        exponent = np.floor(np.log2(amax)) - _MX_EMAX[elem]
    exponent = np.where(amax == 0, -127, np.clip(np.nan_to_num(exponent), -127, 127))
    scale = np.where(special, np.nan, 2.0 ** exponent).astype(np.float32)
    scale_codes = scale.astype(ml_dtypes.float8_e8m0fnu).view(np.uint8)
    with np.errstate(invalid="ignore"):
        ratio = (blocks / np.where(special, np.float32(1), scale)[..., None]).astype(np.float32)
    ratio[special] = 0
    if elem == "int8":
        codes = np.clip(np.round(ratio * 64), -127, 127).astype(np.int8)
    else:
        codes = encode(ratio, elem, saturate=True)
    return scale_codes, codes.reshape(x.shape)


def mx_dequantize(scale_codes, codes, elem="float4_e2m1fn", block=32):
    scale = np.asarray(scale_codes, np.uint8).view(ml_dtypes.float8_e8m0fnu).astype(np.float32)
    codes = np.asarray(codes)
    values = codes.astype(np.float32) / 64 if elem == "int8" else decode(codes, elem)
    blocks = values.reshape(scale.shape + (block,))
    return (blocks * scale[..., None]).astype(np.float32).reshape(codes.shape)


def nvfp4_quantize(x, block=16):
    x, blocks = _blocks(x, block)
    if not np.isfinite(x).all():
        raise ValueError("NaN or inf in x")
    amax = np.float64(np.abs(x).max()) if x.size else np.float64(0.0)
    tensor_scale = np.float32(amax / 2688.0)
    if tensor_scale == 0:
        tensor_scale = np.float32(1.0)
    wanted = np.abs(blocks).max(axis=-1) / np.float32(6) / tensor_scale
    scale_codes = np.minimum(wanted, np.float32(448)).astype(ml_dtypes.float8_e4m3fn).view(np.uint8)
    step = scale_codes.view(ml_dtypes.float8_e4m3fn).astype(np.float32) * tensor_scale
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(step[..., None] > 0, blocks / step[..., None], np.float32(0)).astype(np.float32)
    codes = ratio.astype(ml_dtypes.float4_e2m1fn).view(np.uint8)
    return codes.reshape(x.shape), scale_codes, tensor_scale


def nvfp4_dequantize(codes, scale_codes, tensor_scale, block=16):
    scale_codes = np.asarray(scale_codes, np.uint8)
    step = scale_codes.view(ml_dtypes.float8_e4m3fn).astype(np.float32) * np.float32(tensor_scale)
    codes = np.asarray(codes, np.uint8)
    values = codes.view(ml_dtypes.float4_e2m1fn).astype(np.float32).reshape(scale_codes.shape + (block,))
    return (values * step[..., None]).astype(np.float32).reshape(codes.shape)
