"""Hidden graded tests of module 23 (low_precision_floats): run by the instructor, absent from the student
release. Edge cases of every format against ml_dtypes, formats outside the module's table, and the
scaled / block formats against the oracle in _23_hidden_oracle.py (itself built on ml_dtypes)."""
import ml_dtypes
import numpy as np
import pytest

import tinyq.low_precision as lp
from tito.grading import kit
from _23_helpers import (NAMES, NO_NAN, all_codes, bits_of, first_difference, midpoints, ml_decode, ml_encode,
                         spread_values, storage)

oracle = kit.load_oracle("_23_hidden_oracle")     # always here: it is removed with this file

E4M3, E5M2, FP4, E8M0 = "float8_e4m3fn", "float8_e5m2", "float4_e2m1fn", "float8_e8m0fnu"
# IEEE-style 8-bit formats that are not in the module's table: the code must follow the fields
OUTSIDE = (lp.FloatFormat("float8_e4m3", 4, 3, 7, has_inf=True, nan="ieee"),
           lp.FloatFormat("float8_e3m4", 3, 4, 3, has_inf=True, nan="ieee"))


def same_floats(got, expected, what):
    got = np.asarray(got)
    assert got.dtype == np.float32 and got.shape == np.shape(expected), (
        f"{what}: expected float32 of shape {np.shape(expected)}, got {got.dtype} of shape {got.shape}")
    nan = np.isnan(expected)
    assert np.array_equal(np.isnan(got), nan), f"{what}: NaN in the wrong places"
    message = first_difference(bits_of(got)[~nan], bits_of(expected)[~nan])
    assert not message, f"{what}: {message}"


def edge_values(name):
    """Zeros, ties and their float32 neighbours, the subnormal boundaries, the largest finite value,
    just past it and the tie after it, float32's extremes, inf and NaN (where the format has NaN)."""
    fi = ml_dtypes.finfo(np.float16 if name == "float16" else getattr(ml_dtypes, name))
    top, sub, normal, eps = (float(fi.max), float(fi.smallest_subnormal), float(fi.smallest_normal), float(fi.eps))
    ulp_at_top = eps * 2.0 ** np.floor(np.log2(top))
    base = [0.0, sub, sub / 2, sub * 1.5, sub * 0.75, normal, normal * (1 - 2.0 ** -20), normal - sub / 2,
            top, top + ulp_at_top / 2, top + ulp_at_top, 2.0 * top, 1.0, 1.0 + eps / 2, 1.0 + 1.5 * eps,
            3.4028234663852886e38, 2.0 ** -149, 2.0 ** -126]
    mids = midpoints(name)
    if mids.size > 4000:
        mids = mids[np.random.default_rng(0).choice(mids.size, 4000, replace=False)]
    x = np.concatenate([np.float32([v for v in base if v <= 3.4028234663852886e38]), mids])
    with np.errstate(over="ignore"):
        x = np.concatenate([x, np.nextafter(x, np.float32(np.inf)), np.nextafter(x, np.float32(0))])
    x = np.concatenate([x, -x, np.float32([np.inf, -np.inf])])
    if name not in NO_NAN:
        x = np.concatenate([x, np.float32([np.nan, -np.nan])])
    return x.astype(np.float32)


# ---------------------------------------------------------------- decode
@pytest.mark.points(1, exercise="decode")
def test_decode_rejects_bad_codes_and_formats(only):
    only("decode")
    kit.check_equal(lp.decode(np.array([0x7], np.uint8), FP4), np.float32([6.0]), "decode([0x7], 'float4_e2m1fn')")
    for bad, fmt in (([16], FP4), ([64], "float6_e2m3fn"), ([256], E4M3), ([-1], E4M3), ([65536], "float16")):
        with pytest.raises(ValueError):
            lp.decode(np.array(bad, np.int64), fmt)
            pytest.fail(f"decode({bad}, {fmt!r}) returned instead of raising ValueError")
    with pytest.raises(ValueError):
        lp.decode(np.float32([1.0]), E4M3)
        pytest.fail("decode(float codes) returned instead of raising ValueError")
    with pytest.raises(ValueError):
        lp.decode(np.array([1], np.uint8), "float7_e3m3")
        pytest.fail("decode(codes, 'float7_e3m3') returned instead of raising ValueError")


@pytest.mark.points(1, exercise="decode")
def test_decode_formats_outside_the_table(only):
    only("decode")
    for spec in OUTSIDE:
        codes = all_codes(spec.name)
        same_floats(lp.decode(codes, spec), ml_decode(codes, spec.name), f"decode(every {spec.name} code)")


@pytest.mark.points(1, exercise="decode")
def test_decode_shapes_and_integer_types(only):
    only("decode")
    grid = np.array([[0x38, 0xB8], [0x00, 0x7E], [0x01, 0x81]], np.uint8)
    got = lp.decode(grid, E4M3)
    kit.check_equal(got, np.float32([[1.0, -1.0], [0.0, 448.0], [2.0 ** -9, -(2.0 ** -9)]]), "decode(3x2 E4M3 codes)")
    assert got.dtype == np.float32
    kit.check_equal(lp.decode(np.array([0x3C00], np.int64), "float16"), np.float32([1.0]), "decode(int64 codes)")
    kit.check_equal(lp.decode([0x3F80, 0xBF80], "bfloat16"), np.float32([1.0, -1.0]), "decode(a list of codes)")
    empty = lp.decode(np.zeros((0, 4), np.uint8), E5M2)
    assert empty.shape == (0, 4) and empty.dtype == np.float32


# ---------------------------------------------------------------- encode
@pytest.mark.points(2, exercise="encode")
def test_encode_edge_cases_of_every_format(only):
    only("encode")
    for name in NAMES:
        x = edge_values(name)
        if name == E8M0:          # no sign: the negatives are NaN; below 2^-126 has its own test
            x = x[~((x > 0) & (x < np.float32(2.0 ** -126)))]
            x = np.concatenate([x, np.float32([1.5, 3.0, 0.75, 1.5 * 2.0 ** 127, 2.0 ** 127, 2.0 ** -126])])
        for saturate in (False, True):
            message = first_difference(lp.encode(x, name, saturate=saturate), ml_encode(x, name, saturate=saturate), x)
            assert not message, f"encode(edge cases, {name!r}, saturate={saturate}): {message}"


@pytest.mark.points(1, exercise="encode")
def test_encode_formats_outside_the_table(only):
    only("encode")
    for k, spec in enumerate(OUTSIDE):
        x = np.concatenate([spread_values(200_000, spec.name, seed=40 + k), edge_values(spec.name)])
        for saturate in (False, True):
            got = lp.encode(x, spec, saturate=saturate)
            message = first_difference(got, ml_encode(x, spec.name, saturate=saturate), x)
            assert not message, f"encode(x, FloatFormat {spec.name!r}, saturate={saturate}): {message}"


@pytest.mark.points(1, exercise="encode")
def test_encode_nan_has_no_fp4_or_fp6_code(only):
    only("encode")
    for name in NO_NAN:
        top = {"float4_e2m1fn": 0x7, "float6_e2m3fn": 0x1F, "float6_e3m2fn": 0x1F}[name]
        sign = 1 << (ml_dtypes.finfo(getattr(ml_dtypes, name)).bits - 1)
        kit.check_call(lp.encode, np.float32([np.inf, -np.inf, 1e30]), name,
                       expected=np.array([top, top | sign, top], np.uint8))
        for saturate in (False, True):
            with pytest.raises(ValueError):
                lp.encode(np.float32([1.0, np.nan]), name, saturate=saturate)
                pytest.fail(f"encode([1.0, nan], {name!r}) returned instead of raising ValueError")


@pytest.mark.points(1, exercise="encode")
def test_encode_e8m0_below_the_float32_normals(only):
    only("encode")
    t = 2.0 ** -127
    x = np.float32([t, 1.25 * t, 1.5 * t, 1.75 * t, t / 2, 2.0 ** -149, 2.0 ** -126 * (1 - 2.0 ** -23)])
    kit.check_call(lp.encode, x, E8M0, expected=np.array([0, 0, 1, 1, 0, 0, 1], np.uint8))
    kit.check_call(lp.encode, x, E8M0, saturate=True, expected=np.array([0, 0, 1, 1, 0, 0, 1], np.uint8))


@pytest.mark.points(1, exercise="encode")
def test_encode_shapes_inputs_and_round_trip(only):
    only("encode")
    grid = np.float32([[1.0, -2.0], [0.5, 448.0], [0.0, -0.0]])
    kit.check_equal(lp.encode(grid, E4M3), np.array([[0x38, 0xC0], [0x30, 0x7E], [0x00, 0x80]], np.uint8),
                    "encode(3x2 array, 'float8_e4m3fn')")
    kit.check_equal(lp.encode(grid.T, "float16"), ml_encode(grid.T, "float16"), "encode(a transposed view, 'float16')")
    kit.check_equal(lp.encode([1.0, 2.0], "bfloat16"), np.array([0x3F80, 0x4000], np.uint16), "encode(a list)")
    scalar = lp.encode(np.float32(1.5), FP4)
    assert np.shape(scalar) == () and int(scalar) == 0x3, f"encode(np.float32(1.5), FP4): got {scalar!r}"
    empty = lp.encode(np.zeros((2, 0), np.float32), E5M2)
    assert empty.shape == (2, 0) and empty.dtype == np.uint8
    for name in NAMES:                           # every code that is not NaN comes back to itself
        codes = all_codes(name)
        values = ml_decode(codes, name)
        keep = ~np.isnan(values)
        message = first_difference(lp.encode(values[keep], name), codes[keep], values[keep])
        assert not message, f"encode(decoded {name} codes): {message}"


# ---------------------------------------------------------------- format_info
@pytest.mark.points(1, exercise="format_info")
def test_format_info_outside_the_table_and_unknown(only):
    only("format_info")
    for spec in OUTSIDE:
        fi = ml_dtypes.finfo(getattr(ml_dtypes, spec.name))
        values = ml_decode(all_codes(spec.name), spec.name)
        expected = {"name": spec.name, "bits": 8, "max": float(fi.max), "min_normal": float(fi.smallest_normal),
                    "min_subnormal": float(fi.smallest_subnormal), "eps": float(fi.eps),
                    "finite_codes": int(np.isfinite(values).sum())}
        kit.check_equal(lp.format_info(spec), expected, f"format_info(FloatFormat {spec.name!r})")
    with pytest.raises(ValueError):
        lp.format_info("float7_e3m3")
        pytest.fail("format_info('float7_e3m3') returned instead of raising ValueError")


# ---------------------------------------------------------------- per-tensor scaled FP8
@pytest.mark.points(1, exercise="scaled_fp8")
def test_fp8_quantize_matches_the_oracle(only):
    only("scaled_fp8")
    rng = np.random.default_rng(8)
    for trial in range(12):
        shape = [(1000,), (16, 64), (3, 5, 7)][trial % 3]
        x = (rng.standard_t(2 + trial % 4, size=shape) * 10.0 ** rng.uniform(-30, 30)).astype(np.float32)
        name = (E4M3, E5M2)[trial % 2]
        codes, scale = lp.fp8_quantize(x, name)
        want_codes, want_scale = oracle.fp8_quantize(x, name)
        assert scale == want_scale and isinstance(scale, np.float32), (trial, scale, want_scale)
        kit.check_equal(codes, want_codes, f"fp8_quantize(x of shape {shape}, {name!r})", "codes")
        same_floats(lp.fp8_dequantize(codes, scale, name), oracle.fp8_dequantize(codes, scale, name),
                    f"fp8_dequantize(codes, {scale!r}, {name!r})")
        given = np.float32(want_scale / 4)
        codes, scale = lp.fp8_quantize(x, name, scale=given)
        kit.check_equal(codes, oracle.fp8_quantize(x, name, scale=given)[0], f"fp8_quantize(x, {name!r}, scale)",
                        "codes")


@pytest.mark.points(1, exercise="scaled_fp8")
def test_fp8_quantize_edge_cases(only):
    only("scaled_fp8")
    codes, scale = lp.fp8_quantize(np.zeros((2, 3), np.float32))
    assert scale == np.float32(1.0) and codes.shape == (2, 3) and not codes.any(), (scale, codes)
    codes, scale = lp.fp8_quantize(np.float32([1e-45, -1e-45]))        # amax / 448 underflows in float32
    assert scale == np.float32(1.0), f"a scale that underflows to 0 becomes 1.0, got {scale!r}"
    codes, scale = lp.fp8_quantize(np.zeros(0, np.float32))
    assert codes.shape == (0,) and scale == np.float32(1.0)
    for bad in (np.float32([1.0, np.nan]), np.float32([np.inf, 1.0])):
        with pytest.raises(ValueError):
            lp.fp8_quantize(bad)
            pytest.fail(f"fp8_quantize({bad}) returned instead of raising ValueError")
    for scale in (0.0, -1.0, np.nan, np.inf):
        with pytest.raises(ValueError):
            lp.fp8_quantize(np.float32([1.0]), scale=scale)
            pytest.fail(f"fp8_quantize(x, scale={scale}) returned instead of raising ValueError")
    with pytest.raises(ValueError):
        lp.fp8_quantize(np.float32([1.0]), E8M0)
        pytest.fail("fp8_quantize(x, 'float8_e8m0fnu') returned instead of raising ValueError")


# ---------------------------------------------------------------- delayed scaling
@pytest.mark.points(1, exercise="delayed_scaling")
def test_delayed_scaling_matches_the_oracle_over_a_run(only):
    only("delayed_scaling")
    rng = np.random.default_rng(9)
    for fmt, length, algo, margin in ((E4M3, 4, "max", 0), (E5M2, 3, "most_recent", 1), (E4M3, 1, "max", 2)):
        mine, ref = lp.DelayedScaling(fmt, length, algo, margin), oracle.DelayedScaling(fmt, length, algo, margin)
        for step in range(15):
            level = 10.0 ** rng.uniform(-3, 3) * (50.0 if step == 7 else 1.0)
            x = (rng.normal(size=(8, 16)) * level).astype(np.float32)
            if step == 10:
                x[:] = 0.0
            codes, used = mine.quantize(x)
            want_codes, want_used = ref.quantize(x)
            where = f"DelayedScaling({fmt!r}, {length}, {algo!r}, {margin}) step {step}"
            assert used == want_used, f"{where}: used scale {used!r}, expected {want_used!r}"
            kit.check_equal(codes, want_codes, where, "codes")
            assert mine.scale == ref.scale, f"{where}: next scale {mine.scale!r}, expected {ref.scale!r}"
            assert isinstance(mine.scale, np.float32), f"{where}: the scale must stay a np.float32"
            kit.check_equal(mine.amax_history, ref.amax_history, where, "amax history (newest first)")


@pytest.mark.points(1, exercise="delayed_scaling")
def test_delayed_scaling_zero_steps_and_errors(only):
    only("delayed_scaling")
    d = lp.DelayedScaling(history_len=2)
    d.quantize(np.float32([0.0, 0.0]))
    assert d.scale == np.float32(1.0), "an all-zero history leaves the scale at 1"
    d.quantize(np.float32([4.48]))
    d.quantize(np.zeros(3, np.float32))
    assert d.scale == np.float32(0.01), f"4.48 is still in the window: 4.48 / 448, got {d.scale!r}"
    d.quantize(np.zeros(3, np.float32))
    assert d.scale == np.float32(0.01), "a window of zeros keeps the last scale"
    with pytest.raises(ValueError):
        d.quantize(np.float32([1.0, np.nan]))
        pytest.fail("DelayedScaling.quantize([1, nan]) returned instead of raising ValueError")
    for kwargs in ({"algo": "mean"}, {"history_len": 0}, {"margin": -1}, {"fmt": E8M0}):
        with pytest.raises(ValueError):
            lp.DelayedScaling(**kwargs)
            pytest.fail(f"DelayedScaling(**{kwargs}) returned instead of raising ValueError")


# ---------------------------------------------------------------- FP8 matmul
@pytest.mark.points(1, exercise="fp8_matmul")
def test_fp8_matmul_vector_scales_and_errors(only):
    only("fp8_matmul")
    rng = np.random.default_rng(10)
    qa = ml_encode(rng.normal(size=(6, 40)) * 50, E4M3, saturate=True)
    qb = ml_encode(rng.normal(size=(40, 3)) * 5000, E5M2, saturate=True)
    sa = rng.uniform(0.001, 1, size=6).astype(np.float32)
    sb = rng.uniform(0.001, 1, size=3).astype(np.float32)
    out = lp.fp8_matmul(qa, sa, qb, sb, b_fmt=E5M2)
    a64, b64 = ml_decode(qa, E4M3).astype(np.float64), ml_decode(qb, E5M2).astype(np.float64)
    exact = (a64 @ b64) * sa[:, None].astype(np.float64) * sb[None, :].astype(np.float64)
    bound = 64 * 2.0 ** -23 * (np.abs(a64) @ np.abs(b64)) * sa[:, None] * sb[None, :] + 1e-30
    assert out.shape == (6, 3) and out.dtype == np.float32
    assert np.all(np.abs(out - exact) <= bound), "fp8_matmul with per-row and per-column scales"
    for args in ((qa, 1.0, qa, 1.0), (qa[0], 1.0, qb, 1.0), (qa, np.ones(5, np.float32), qb, 1.0),
                 (qa, 1.0, qb, np.ones(4, np.float32))):
        with pytest.raises(ValueError):
            lp.fp8_matmul(*args, b_fmt=E5M2)
            pytest.fail("fp8_matmul with mismatched shapes returned instead of raising ValueError")


# ---------------------------------------------------------------- MX
def _mx_blocks(rng, n_blocks, block=32):
    """Blocks of every kind: Gaussian at magnitudes from 2^-140 to 2^120, exact powers of two and
    values at the element max after scaling, FP4 ties, a zero block."""
    rows = []
    for i in range(n_blocks):
        kind = i % 6
        magnitude = 2.0 ** rng.uniform(-140, 120)
        if kind == 0:
            row = rng.normal(size=block) * magnitude
        elif kind == 1:
            row = 2.0 ** rng.integers(-20, 20, size=block) * rng.choice([-1, 1], size=block)
        elif kind == 2:                             # multiples of a quarter around the FP4 grid: many ties
            row = rng.integers(-32, 33, size=block) / 4.0 * 2.0 ** rng.integers(-10, 10)
        elif kind == 3:
            row = rng.standard_t(2, size=block) * magnitude
        elif kind == 4:
            row = np.full(block, 7.0) * 2.0 ** rng.integers(-30, 30)
        else:
            row = np.zeros(block)
        rows.append(row)
    return np.asarray(rows, dtype=np.float64).reshape(-1).astype(np.float32)


@pytest.mark.points(2, exercise="mx")
def test_mxfp4_bit_identical_to_an_ml_dtypes_reference(only):
    only("mx")
    rng = np.random.default_rng(11)
    x = _mx_blocks(rng, 600).reshape(20, -1)
    scales, codes = lp.mx_quantize(x, FP4)
    want_scales, want_codes = oracle.mx_quantize(x, FP4)
    kit.check_equal(scales, want_scales, "mx_quantize(600 blocks, 'float4_e2m1fn')", "scale codes")
    kit.check_equal(codes, want_codes, "mx_quantize(600 blocks, 'float4_e2m1fn')", "element codes")
    same_floats(lp.mx_dequantize(scales, codes, FP4), oracle.mx_dequantize(scales, codes, FP4),
                "mx_dequantize(600 blocks)")


@pytest.mark.points(1, exercise="mx")
def test_mx_other_elements_match_the_reference(only):
    only("mx")
    rng = np.random.default_rng(12)
    for k, elem in enumerate(("float8_e4m3fn", "float8_e5m2", "float6_e3m2fn", "float6_e2m3fn", "int8")):
        block = (32, 16, 64)[k % 3]
        x = _mx_blocks(rng, 96, block).reshape(4, -1)
        scales, codes = lp.mx_quantize(x, elem, block=block)
        want_scales, want_codes = oracle.mx_quantize(x, elem, block=block)
        assert codes.dtype == want_codes.dtype, f"mx_quantize(x, {elem!r}): codes must be {want_codes.dtype}"
        kit.check_equal(scales, want_scales, f"mx_quantize(x, {elem!r}, block={block})", "scale codes")
        kit.check_equal(codes, want_codes, f"mx_quantize(x, {elem!r}, block={block})", "element codes")
        same_floats(lp.mx_dequantize(scales, codes, elem, block=block),
                    oracle.mx_dequantize(scales, codes, elem, block=block), f"mx_dequantize(..., {elem!r})")


@pytest.mark.points(1, exercise="mx")
def test_mx_zero_nan_and_inf_blocks(only):
    only("mx")
    x = np.ones((4, 32), np.float32)
    x[1] = 0.0
    x[2, 5] = np.nan
    x[3, 0] = -np.inf
    scales, codes = lp.mx_quantize(x)
    kit.check_equal(scales, np.array([[125], [0], [255], [255]], np.uint8), "mx_quantize(ones, zeros, NaN, inf)",
                    "scale codes")
    assert not codes[1:].any(), "an all-zero block and the NaN/inf blocks have element codes 0"
    back = lp.mx_dequantize(scales, codes)
    assert np.all(back[0] == 1.0) and np.all(back[1] == 0.0) and np.isnan(back[2:]).all()
    with pytest.raises(ValueError):
        lp.mx_quantize(x, "float7_e3m3")
        pytest.fail("mx_quantize(x, 'float7_e3m3') returned instead of raising ValueError")
    with pytest.raises(ValueError):
        lp.mx_dequantize(scales[:3], codes)
        pytest.fail("mx_dequantize with 3 scale rows for 4 code rows returned instead of raising ValueError")


# ---------------------------------------------------------------- NVFP4
@pytest.mark.points(1, exercise="nvfp4")
def test_nvfp4_matches_the_oracle(only):
    only("nvfp4")
    rng = np.random.default_rng(13)
    for trial in range(6):
        x = _mx_blocks(rng, 64, 16).reshape(8, -1) if trial % 2 else \
            (rng.standard_t(3, size=(16, 96)) * 10.0 ** rng.uniform(-20, 20)).astype(np.float32)
        codes, scale_codes, tensor_scale = lp.nvfp4_quantize(x)
        want = oracle.nvfp4_quantize(x)
        assert tensor_scale == want[2] and isinstance(tensor_scale, np.float32), (tensor_scale, want[2])
        kit.check_equal(scale_codes, want[1], f"nvfp4_quantize(trial {trial})", "E4M3 scale codes")
        kit.check_equal(codes, want[0], f"nvfp4_quantize(trial {trial})", "FP4 codes")
        same_floats(lp.nvfp4_dequantize(codes, scale_codes, tensor_scale),
                    oracle.nvfp4_dequantize(codes, scale_codes, tensor_scale), f"nvfp4_dequantize(trial {trial})")


@pytest.mark.points(1, exercise="nvfp4")
def test_nvfp4_zeros_and_errors(only):
    only("nvfp4")
    codes, scale_codes, tensor_scale = lp.nvfp4_quantize(np.zeros((2, 16), np.float32))
    assert tensor_scale == np.float32(1.0) and not codes.any() and not scale_codes.any()
    assert not lp.nvfp4_dequantize(codes, scale_codes, tensor_scale).any()
    for bad in (np.ones(24, np.float32), np.float32([np.nan] + [1.0] * 15), np.float32([np.inf] * 16)):
        with pytest.raises(ValueError):
            lp.nvfp4_quantize(bad)
            pytest.fail(f"nvfp4_quantize(x of shape {bad.shape}) returned instead of raising ValueError")
    with pytest.raises(ValueError):
        lp.nvfp4_dequantize(codes, scale_codes[:1], tensor_scale)
        pytest.fail("nvfp4_dequantize with mismatched shapes returned instead of raising ValueError")
