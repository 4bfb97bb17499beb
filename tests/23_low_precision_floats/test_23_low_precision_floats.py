"""Public graded tests of module 23 (low_precision_floats). Hidden tests add more cases at grading time.

The yardstick is `ml_dtypes` (numpy's own float16 for "float16"): decode and encode must agree with it
bit for bit. `only("x")` grades exercise x on its own: while the test runs, the module's other
exercises are the instructor's oracle (in the student flavour `only` does nothing).
"""
import ml_dtypes
import numpy as np
import pytest

import tinyq.low_precision as lp
from tito.grading.kit import check_call, check_equal
from _23_helpers import (NAMES, NO_NAN, all_codes, bits_of, first_difference, midpoints, ml_decode,
                         ml_encode, spread_values, storage)

E4M3, E5M2, FP4, E8M0 = "float8_e4m3fn", "float8_e5m2", "float4_e2m1fn", "float8_e8m0fnu"


def same_floats(got, expected, what):
    """Equal as float32 bit patterns, except that any NaN matches any NaN."""
    got = np.asarray(got)
    assert got.dtype == np.float32, f"{what}: expected float32 values, got dtype {got.dtype}"
    assert got.shape == np.shape(expected), f"{what}: expected shape {np.shape(expected)}, got {got.shape}"
    nan = np.isnan(expected)
    assert np.array_equal(np.isnan(got), nan), f"{what}: NaN in the wrong places: {first_difference(np.isnan(got), nan)}"
    message = first_difference(bits_of(got)[~nan], bits_of(expected)[~nan])
    assert not message, f"{what}: {message}"


# ---------------------------------------------------------------- decode
@pytest.mark.points(2, exercise="decode")
def test_decode_anchors(only):
    only("decode")
    got = lp.decode(np.array([0x38, 0x7E, 0x01, 0x08, 0x80, 0xFE], np.uint8), E4M3)
    check_equal(got, np.float32([1.0, 448.0, 2.0 ** -9, 2.0 ** -6, -0.0, -448.0]), "decode(E4M3 codes)")
    assert np.signbit(got[4]), "decode(0x80, float8_e4m3fn) must be -0.0, not +0.0"
    assert np.isnan(lp.decode(np.array([0x7F, 0xFF], np.uint8), E4M3)).all(), "0x7F and 0xFF are E4M3FN's NaN"
    check_equal(lp.decode(np.array([0x7C, 0xFC, 0x7B, 0x01], np.uint8), E5M2),
                np.float32([np.inf, -np.inf, 57344.0, 2.0 ** -16]), "decode(E5M2 codes)")
    check_equal(lp.decode(np.array([0x1, 0x7, 0xF, 0x9], np.uint8), FP4), np.float32([0.5, 6.0, -6.0, -0.5]),
                "decode(FP4 codes)")
    check_equal(lp.decode(np.array([0, 127, 128, 254], np.uint8), E8M0),
                np.float32([2.0 ** -127, 1.0, 2.0, 2.0 ** 127]), "decode(E8M0 codes)")
    check_equal(lp.decode(np.array([0x3C00, 0x0001, 0x7BFF, 0xFC00], np.uint16), "float16"),
                np.float32([1.0, 2.0 ** -24, 65504.0, -np.inf]), "decode(float16 codes)")
    check_equal(lp.decode(np.array([0x3F80, 0x0001], np.uint16), "bfloat16"), np.float32([1.0, 2.0 ** -133]),
                "decode(bfloat16 codes)")


@pytest.mark.points(3, exercise="decode")
def test_decode_every_code_of_every_format_matches_ml_dtypes(only):
    only("decode")
    for name in NAMES:       # 8-, 6- and 4-bit formats in full, and all 65,536 float16/bfloat16 codes
        codes = all_codes(name)
        same_floats(lp.decode(codes, name), ml_decode(codes, name), f"decode(every {name} code)")


# ---------------------------------------------------------------- encode
@pytest.mark.points(2, exercise="encode")
def test_encode_anchors(only):
    only("encode")
    # ties to even: 1.0625 lies halfway between 1.0 (mantissa 000) and 1.125 (001), 1.1875 between
    # 1.125 and 1.25 (010); 464 between 448 (110) and the NaN code; 465 is past it
    check_call(lp.encode, np.float32([1.0, 1.0625, 1.1875, 464.0, 465.0, -0.0, -3.0]), E4M3,
               expected=np.array([0x38, 0x38, 0x3A, 0x7E, 0x7F, 0x80, 0xC4], np.uint8))
    # E4M3 subnormals: 2^-10 is halfway between 0 and 2^-9, 3 * 2^-10 between 2^-9 and 2^-8
    check_call(lp.encode, np.float32([2.0 ** -10, 3 * 2.0 ** -10, 2.0 ** -9, 2.0 ** -6 - 2.0 ** -10]), E4M3,
               expected=np.array([0x00, 0x02, 0x01, 0x08], np.uint8))
    # E5M2: 61440 is halfway between 57344 (mantissa 11) and 65536 = inf (even): inf
    check_call(lp.encode, np.float32([61439.0, 61440.0, -1e6, np.inf]), E5M2,
               expected=np.array([0x7B, 0x7C, 0xFC, 0x7C], np.uint8))
    check_call(lp.encode, np.float32([0.25, 0.75, 5.0, 7.0, -100.0, np.inf]), FP4,
               expected=np.array([0x0, 0x2, 0x6, 0x7, 0xF, 0x7], np.uint8))
    check_call(lp.encode, np.float32([1.0, 65504.0, 65519.0, 65520.0, 2.0 ** -25, 3 * 2.0 ** -25]), "float16",
               expected=np.array([0x3C00, 0x7BFF, 0x7BFF, 0x7C00, 0x0000, 0x0002], np.uint16))
    check_call(lp.encode, np.float32([1.0, 1.00390625, 1.01171875]), "bfloat16",
               expected=np.array([0x3F80, 0x3F80, 0x3F82], np.uint16))
    # E8M0: powers of two; a significand of exactly 1.5 rounds up; no zero, no sign
    check_call(lp.encode, np.float32([1.0, 0.75, 1.4, 2.0 ** -127, 2.0 ** 127, 0.0, -1.0]), E8M0,
               expected=np.array([127, 127, 127, 0, 254, 255, 255], np.uint8))


@pytest.mark.points(3, exercise="encode")
def test_encode_a_million_values_like_ml_dtypes(only):
    only("encode")
    for k, name in enumerate(NAMES):
        x = spread_values(1_000_000, name, seed=k)
        if name == E8M0:                     # E8M0 below 2^-126: see the hidden tests and the notebook
            x = x[x >= np.float32(2.0 ** -126)]
        x = np.concatenate([x, midpoints(name), -midpoints(name)]) if name != E8M0 else x
        for saturate in (False, True):
            got = lp.encode(x, name, saturate=saturate)
            assert got.dtype == storage(name), f"encode(..., {name!r}): codes must be {np.dtype(storage(name))}"
            message = first_difference(got, ml_encode(x, name, saturate=saturate), x)
            assert not message, f"encode(1M values, {name!r}, saturate={saturate}): {message}"


@pytest.mark.points(2, exercise="encode")
def test_encode_saturate_and_specials(only):
    only("encode")
    specials = np.float32([1e6, -1e6, np.inf, -np.inf, 3e38, np.nan, -np.nan])
    check_call(lp.encode, specials, E4M3, expected=np.array([0x7F, 0xFF, 0x7F, 0xFF, 0x7F, 0x7F, 0xFF], np.uint8))
    check_call(lp.encode, specials, E4M3, saturate=True,
               expected=np.array([0x7E, 0xFE, 0x7E, 0xFE, 0x7E, 0x7F, 0xFF], np.uint8))
    check_call(lp.encode, specials, E5M2, expected=np.array([0x7C, 0xFC, 0x7C, 0xFC, 0x7C, 0x7E, 0xFE], np.uint8))
    check_call(lp.encode, specials, E5M2, saturate=True,
               expected=np.array([0x7B, 0xFB, 0x7B, 0xFB, 0x7B, 0x7E, 0xFE], np.uint8))
    check_call(lp.encode, specials, "bfloat16", saturate=True,
               expected=np.array([0x4974, 0xC974, 0x7F7F, 0xFF7F, 0x7F62, 0x7FC0, 0xFFC0], np.uint16))
    check_call(lp.encode, specials, "float16", expected=np.array([0x7C00, 0xFC00, 0x7C00, 0xFC00, 0x7C00, 0x7E00,
                                                                0xFE00], np.uint16))
    for name in NAMES:
        finite = specials[:5] if name in NO_NAN else specials
        got = lp.encode(finite, name, saturate=True)
        message = first_difference(got, ml_encode(finite, name, saturate=True), finite)
        assert not message, f"encode(specials, {name!r}, saturate=True): {message}"


@pytest.mark.perf
@pytest.mark.points(3, exercise="encode")
def test_encode_speed_vs_ml_dtypes(perf, only):
    only("encode")
    from tinyq.bench import compare      # the one way speed is measured on the CPU
    target = ml_dtypes.float8_e4m3fn
    small = spread_values(10_000, E4M3, seed=11)
    quick = compare(lambda: lp.encode(small, E4M3), lambda: small.astype(target), repeats=3, warmup=1)
    if quick.slowdown > 150:             # a loop over elements: no need to time it on a million values
        perf.record(quick.slowdown, bar=20.0, floor=60.0, lower_is_better=True, unit="× ml_dtypes astype")
        return                           # (not reached: record fails past the floor)
    x = spread_values(1_000_000, E4M3, seed=12)
    result = compare(lambda: lp.encode(x, E4M3), lambda: x.astype(target), repeats=5, warmup=1)
    perf.record(result.slowdown, bar=20.0, floor=60.0, lower_is_better=True, unit="× ml_dtypes astype")


# ---------------------------------------------------------------- format_info
@pytest.mark.points(3, exercise="format_info")
def test_format_info_matches_ml_dtypes_finfo(only):
    only("format_info")
    check_call(lp.format_info, E4M3, expected={"name": E4M3, "bits": 8, "max": 448.0, "min_normal": 2.0 ** -6,
                                              "min_subnormal": 2.0 ** -9, "eps": 0.125, "finite_codes": 254})
    for name in NAMES:
        info = lp.format_info(name)
        fi = ml_dtypes.finfo(np.float16 if name == "float16" else getattr(ml_dtypes, name))
        values = ml_decode(all_codes(name), name)
        expected = {"name": name, "bits": int(fi.bits), "max": float(fi.max), "min_normal": float(fi.smallest_normal),
                    "min_subnormal": float(fi.smallest_subnormal), "eps": float(fi.eps),
                    "finite_codes": int(np.isfinite(values).sum())}
        check_equal(info, expected, f"format_info({name!r})")
        assert all(type(info[k]) is float for k in ("max", "min_normal", "min_subnormal", "eps")), (
            f"format_info({name!r}): give Python floats, got {[type(info[k]).__name__ for k in info]}")
        assert type(info["finite_codes"]) is int and type(info["bits"]) is int


# ---------------------------------------------------------------- per-tensor scaled FP8
@pytest.mark.points(2, exercise="scaled_fp8")
def test_fp8_quantize_per_tensor_scale(only):
    only("scaled_fp8")
    codes, scale = lp.fp8_quantize(np.float32([896.0, -1.0, 0.0, 3.0]))
    assert isinstance(scale, np.float32) and scale == 2.0, f"scale: expected np.float32(2.0), got {scale!r}"
    check_equal(codes, np.array([0x7E, 0xB0, 0x00, 0x3C], np.uint8), "fp8_quantize([896, -1, 0, 3])", "codes")
    x = np.random.default_rng(1).standard_t(3, size=(64, 32)).astype(np.float32) * np.float32(3e-4)
    for name, top in ((E4M3, 448.0), (E5M2, 57344.0)):
        codes, scale = lp.fp8_quantize(x, name)
        want = np.float32(float(np.abs(x).max()) / top)
        assert scale == want, f"fp8_quantize(x, {name!r}): scale expected {want!r}, got {scale!r}"
        check_equal(codes, ml_encode(x / want, name, saturate=True), f"fp8_quantize(x, {name!r})", "codes")
        x_hat = lp.fp8_dequantize(codes, scale, name)
        check_equal(x_hat, (ml_decode(codes, name) * want).astype(np.float32), f"fp8_dequantize(codes, s, {name!r})")


@pytest.mark.points(1, exercise="scaled_fp8")
def test_fp8_quantize_given_scale_saturates(only):
    only("scaled_fp8")
    codes, scale = lp.fp8_quantize(np.float32([1.0, 1000.0, -1e30, 0.5]), scale=0.5)
    assert scale == np.float32(0.5)
    check_equal(codes, np.array([0x40, 0x7E, 0xFE, 0x38], np.uint8), "fp8_quantize(x, scale=0.5)", "codes")
    codes, scale = lp.fp8_quantize(np.float32([1e6]), E5M2, scale=1.0)
    check_equal(codes, np.array([0x7B], np.uint8), "fp8_quantize([1e6], 'float8_e5m2', scale=1.0)", "codes")


# ---------------------------------------------------------------- delayed scaling
@pytest.mark.points(2, exercise="delayed_scaling")
def test_delayed_scaling_uses_the_previous_amax(only):
    only("delayed_scaling")
    d = lp.DelayedScaling(history_len=3)
    codes, used = d.quantize(np.float32([896.0, 1.0]))          # no history yet: scale 1, 896 saturates
    assert used == 1.0 and codes.tolist() == [0x7E, 0x38], (used, codes.tolist())
    assert d.scale == np.float32(2.0), f"after amax 896 the scale is 896 / 448 = 2, got {d.scale!r}"
    codes, used = d.quantize(np.float32([224.0]))
    assert used == 2.0 and codes.tolist() == [0x6E], (used, codes.tolist())
    assert d.scale == np.float32(2.0), "the history still holds 896"
    for _ in range(2):
        d.quantize(np.float32([224.0]))
    assert d.scale == np.float32(0.5), f"896 left the 3-step window: 224 / 448 = 0.5, got {d.scale!r}"
    d = lp.DelayedScaling(E5M2, history_len=4, algo="most_recent")
    d.quantize(np.float32([57344.0 * 4]))
    d.quantize(np.float32([57344.0]))
    assert d.scale == np.float32(1.0), f"most_recent: 57344 / 57344 = 1, got {d.scale!r}"


# ---------------------------------------------------------------- FP8 matmul
@pytest.mark.points(2, exercise="fp8_matmul")
def test_fp8_matmul_small_exact(only):
    only("fp8_matmul")
    a = np.float32([[1.0, 2.0, -3.0], [0.5, 0.0, 4.0]])
    b = np.float32([[1.0, -1.0], [2.0, 0.25], [-0.5, 6.0]])
    out = lp.fp8_matmul(ml_encode(a, E4M3), np.float32(0.5), ml_encode(b, E4M3), np.float32(4.0))
    check_equal(out, (a @ b * 2.0).astype(np.float32), "fp8_matmul(A, 0.5, B, 4.0)")
    out = lp.fp8_matmul(ml_encode(a, E4M3), 1.0, ml_encode(b, E5M2), 1.0, b_fmt=E5M2)
    check_equal(out, (a @ ml_decode(ml_encode(b, E5M2), E5M2)).astype(np.float32), "fp8_matmul(E4M3 A, E5M2 B)")


@pytest.mark.points(1, exercise="fp8_matmul")
def test_fp8_matmul_accumulates_in_fp32(only):
    only("fp8_matmul")
    rng = np.random.default_rng(2)
    qa = ml_encode(rng.normal(size=(16, 512)) * 100, E4M3, saturate=True)
    qb = ml_encode(rng.normal(size=(512, 8)) * 100, E4M3, saturate=True)
    sa, sb = np.float32(0.01), np.float32(0.003)
    out = lp.fp8_matmul(qa, sa, qb, sb)
    a64, b64 = ml_decode(qa, E4M3).astype(np.float64), ml_decode(qb, E4M3).astype(np.float64)
    exact = (a64 @ b64) * float(sa) * float(sb)
    bound = 512 * 2.0 ** -23 * (np.abs(a64) @ np.abs(b64)) * float(sa) * float(sb) + 1e-30
    assert out.dtype == np.float32 and out.shape == (16, 8)
    worst = float(np.max(np.abs(out - exact) / bound))
    assert worst <= 1.0, f"fp8_matmul: error {worst:.2f}x the float32 accumulation bound"


# ---------------------------------------------------------------- MX block formats
@pytest.mark.points(2, exercise="mx")
def test_mxfp4_hand_block(only):
    only("mx")
    x = np.zeros(64, np.float32)
    x[:4] = [5.0, -1.2, 0.3, 7.0]        # amax 7: floor(log2 7) - 2 = 0: X = 1, scale code 127
    x[32:35] = [100.0, -3.0, 1.0]        # amax 100: floor(log2 100) - 2 = 4: X = 16, scale code 131
    scales, codes = lp.mx_quantize(x)
    check_equal(scales, np.array([127, 131], np.uint8), "mx_quantize(x)", "scale codes")
    expected = np.zeros(64, np.uint8)
    expected[:4] = [0x6, 0xA, 0x1, 0x7]    # 5 is a tie: 4; -1.2 -> -1; 0.3 -> 0.5; 7 saturates to 6
    expected[32:35] = [0x7, 0x8, 0x0]      # 100/16 = 6.25 -> 6; -3/16 = -0.1875 -> -0.0 (0x8); 1/16 -> 0
    check_equal(codes, expected, "mx_quantize(x)", "element codes")
    back = lp.mx_dequantize(scales, codes)
    check_equal(back[[0, 1, 2, 3, 32, 33]], np.float32([4.0, -1.0, 0.5, 6.0, 96.0, -0.0]), "mx_dequantize(...)")


@pytest.mark.points(1, exercise="mx")
def test_mx_block_size_must_divide_the_last_axis(only):
    only("mx")
    scales, codes = lp.mx_quantize(np.ones((2, 32), np.float32))    # it works before it refuses
    check_equal(scales, np.array([[125], [125]], np.uint8), "mx_quantize(ones((2, 32)))", "scale codes")
    for shape, block in (((48,), 32), ((3, 40), 32), ((32,), 0), ((30,), 16)):
        with pytest.raises(ValueError):
            lp.mx_quantize(np.ones(shape, np.float32), block=block)
            pytest.fail(f"mx_quantize(x of shape {shape}, block={block}) returned instead of raising ValueError")


@pytest.mark.points(1, exercise="mx")
def test_mx_round_trip_error(only):
    only("mx")
    rng = np.random.default_rng(3)
    x = (rng.standard_t(3, size=(8, 256)) * np.exp(rng.uniform(-8, 8, size=(8, 1)))).astype(np.float32)
    for elem, rel in (("float8_e4m3fn", 2.0 ** -4), ("float4_e2m1fn", 2.0 ** -1), ("int8", None)):
        scales, codes = lp.mx_quantize(x, elem)
        assert scales.shape == (8, 8) and codes.shape == x.shape, (elem, scales.shape, codes.shape)
        back = lp.mx_dequantize(scales, codes, elem)
        step = np.ldexp(np.float32(1.0), scales.astype(np.int32) - 127).repeat(32, axis=1)
        amax = np.abs(x.reshape(8, 8, 32)).max(axis=2).repeat(32, axis=1)
        if rel is None:      # int8: one step of 2^-6 X, plus clipping at 127/64 X
            assert np.all(np.abs(back - x) <= step * 2.0 ** -6 + np.maximum(np.abs(x) - 127 / 64 * step, 0)), elem
        else:                # floats: relative error, subnormal floor, and the clip at the element max
            top = {"float8_e4m3fn": 448.0, "float4_e2m1fn": 6.0}[elem]
            floor_ = {"float8_e4m3fn": 2.0 ** -9, "float4_e2m1fn": 0.5}[elem]
            clip = np.maximum(np.abs(x) - top * step, 0)
            assert np.all(np.abs(back - x) <= np.abs(x) * rel + floor_ * step / 2 + clip + 1e-30 * amax), elem


# ---------------------------------------------------------------- NVFP4
@pytest.mark.points(2, exercise="nvfp4")
def test_nvfp4_hand_block(only):
    only("nvfp4")
    x = np.zeros(32, np.float32)
    x[0] = 6.0                                      # tensor amax 6: tensor scale 6 / 2688
    x[16:19] = [0.75, -0.5, 0.1]                    # block amax 0.75: block scale 0.75 / 6 / (6 / 2688) = 56
    codes, scale_codes, tensor_scale = lp.nvfp4_quantize(x)
    assert isinstance(tensor_scale, np.float32) and tensor_scale == np.float32(6.0 / 2688), tensor_scale
    check_equal(scale_codes, np.array([0x7E, 0x66], np.uint8), "nvfp4_quantize(x)", "E4M3 scale codes (448, 56)")
    expected = np.zeros(32, np.uint8)
    expected[0] = 0x7
    expected[16:19] = [0x7, 0xE, 0x2]     # in steps of 56 * tensor scale = 0.125: 6 -> 6, -4 -> -4, 0.8 -> 1
    check_equal(codes, expected, "nvfp4_quantize(x)", "FP4 codes")
    back = lp.nvfp4_dequantize(codes, scale_codes, tensor_scale)
    step = np.float32(56.0) * tensor_scale
    check_equal(back[16:19], (np.float32([6.0, -4.0, 1.0]) * step).astype(np.float32), "nvfp4_dequantize(...)")
