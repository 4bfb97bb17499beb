"""Helpers of module 23's tests. Public: they ship to learners with the public tests, so they hold
data and the yardstick (`ml_dtypes`, numpy's float16), never an answer built without it
(import them as `from _23_helpers import ...`)."""
import ml_dtypes
import numpy as np

NAMES = ("float16", "bfloat16", "float8_e4m3fn", "float8_e5m2", "float6_e3m2fn", "float6_e2m3fn",
         "float4_e2m1fn", "float8_e8m0fnu")
NO_NAN = ("float6_e3m2fn", "float6_e2m3fn", "float4_e2m1fn")


def ml_type(name):
    """The numpy scalar type of format `name`: numpy's float16, else the ml_dtypes type."""
    return np.float16 if name == "float16" else getattr(ml_dtypes, name)


def width(name):
    return ml_dtypes.finfo(ml_type(name)).bits


def storage(name):
    return np.uint16 if width(name) > 8 else np.uint8


def all_codes(name):
    """Every code of the format, in its storage type."""
    return np.arange(2 ** width(name)).astype(storage(name))


def ml_decode(codes, name):
    return np.asarray(codes).astype(storage(name)).view(ml_type(name)).astype(np.float32)


def ml_encode(x, name, saturate=False):
    """ml_dtypes' astype as codes; with saturate=True, non-NaN values are clipped to +-max first."""
    x = np.asarray(x, dtype=np.float32)
    if saturate:
        top = np.float32(ml_dtypes.finfo(ml_type(name)).max)
        x = np.where(np.isnan(x), x, np.clip(x, -top, top)).astype(np.float32)
    with np.errstate(all="ignore"):
        return x.astype(ml_type(name)).view(storage(name))


def bits_of(values):
    """float32 values as their uint32 bit patterns (tells -0.0 from 0.0)."""
    return np.asarray(values, dtype=np.float32).view(np.uint32)


def first_difference(got, expected, inputs=None):
    """A short text about the first position where two arrays differ ('' if none)."""
    got, expected = np.asarray(got), np.asarray(expected)
    diff = np.flatnonzero(got.reshape(-1) != expected.reshape(-1))
    if diff.size == 0:
        return ""
    i = int(diff[0])
    shown = lambda v: hex(int(v)) if np.asarray(v).dtype.kind in "ui" else repr(v)
    where = "" if inputs is None else f" (input {np.asarray(inputs).reshape(-1)[i]!r})"
    return (f"{diff.size} of {got.size} differ; first at flat index {i}{where}: "
            f"expected {shown(expected.reshape(-1)[i])}, got {shown(got.reshape(-1)[i])}")


def spread_values(n, name, seed=0):
    """`n` random float32 values over the whole range of format `name` and beyond: random mantissa
    bits, exponents from below its smallest subnormal to above its max, both signs; no NaN."""
    rng = np.random.default_rng(seed)
    info = ml_dtypes.finfo(ml_type(name))
    lo = max(int(np.floor(np.log2(float(info.smallest_subnormal)))) - 3, -149)
    hi = min(int(np.floor(np.log2(float(info.max)))) + 3, 127)
    exponent = rng.integers(lo, hi + 1, size=n)
    fields = np.clip(exponent + 127, 0, 254).astype(np.uint32)
    mantissa = rng.integers(0, 1 << 23, size=n, dtype=np.uint32)
    sign = rng.integers(0, 2, size=n, dtype=np.uint32)
    x = ((sign << 31) | (fields << 23) | mantissa).view(np.float32)
    if name == "float8_e8m0fnu":
        x = np.abs(x)
    return x


def midpoints(name):
    """The exact halfway points between neighbouring finite non-negative values of the format (ties)."""
    values = ml_decode(all_codes(name), name)
    values = np.unique(values[np.isfinite(values) & (values >= 0)].astype(np.float64))
    return ((values[:-1] + values[1:]) / 2).astype(np.float32)


def gaussian(n, seed=0, dtype=np.float32):
    """`n` reproducible standard-normal values."""
    return np.random.default_rng(seed).normal(size=n).astype(dtype)
