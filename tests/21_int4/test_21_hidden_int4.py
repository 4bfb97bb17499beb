"""Hidden graded tests of module 21: run by the instructor, absent from the student release."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tinyq.int4 as t4
import _21_hidden_oracle as oracle
from _21_helpers import (assert_gemv_close, q8_dequantized, random_int4_weights, run_w4_emulated, split_order,
                         w4_gpu_case)


def gguf_quants():
    import gguf      # the Q8_0/Q4_0 oracle; tests that use it are marked requires("gguf")
    from gguf.quants import dequantize, quantize
    return gguf.GGMLQuantizationType, quantize, dequantize


def gguf_test_data(seed):
    """Blocks that exercise every rule: many magnitudes, ties, zeros, a positive and a negative max,
    values so small that the fp16 scale underflows."""
    rng = np.random.default_rng(seed)
    parts = [rng.normal(0, s, size=(4, 64)) for s in (1e-3, 0.02, 1.0, 300.0)]
    ties = np.zeros((2, 64))
    ties[0, :32] = np.r_[127.0, np.arange(-15.5, 15.0, 1.0)]              # Q8_0: d = 1, x.5 ties
    ties[1, :32] = np.r_[-8.0, np.arange(-7.5, 7.6, 0.5)][:32]            # Q4_0: d = 1, x.5 ties
    ties[1, 32:] = np.r_[8.0, -8.0, rng.uniform(-8, 8, 30)]               # equal |max|, first positive
    special = np.zeros((2, 64))
    special[0, 5] = 3e-6                                                  # fp16(d) underflows
    special[1] = -rng.uniform(0, 1, 64)
    return np.concatenate(parts + [ties, special]).astype(np.float32)


# ---------------------------------------------------------------- pack_int4
@pytest.mark.points(1, exercise="pack_int4")
@settings(max_examples=60, deadline=None)
@given(lead=st.lists(st.integers(1, 3), max_size=2), k=st.integers(1, 40), signed=st.booleans(),
       seed=st.integers(0, 2**31))
def test_pack_round_trip_any_shape(lead, k, signed, seed):
    rng = np.random.default_rng(seed)
    lo, hi = (-8, 8) if signed else (0, 16)
    q = rng.integers(lo, hi, size=tuple(lead) + (k,)).astype(np.int8 if signed else np.uint8)
    packed = t4.pack_int4(q)
    assert packed.dtype == np.uint8 and packed.shape == tuple(lead) + ((k + 1) // 2,)
    assert np.array_equal(oracle.unpack_int4(packed, k, signed=signed), q)
    if k % 2:
        assert np.all(packed[..., -1] >> 4 == 0), "the padding nibble must be zero"


# ---------------------------------------------------------------- unpack_int4
@pytest.mark.points(1, exercise="unpack_int4")
def test_unpack_shapes_and_bad_sizes():
    q = np.random.default_rng(8).integers(-8, 8, size=(2, 3, 7))
    codes = t4.unpack_int4(oracle.pack_int4(q), 7)
    assert codes.shape == (2, 3, 7) and np.array_equal(codes, q)
    with pytest.raises(ValueError):
        t4.unpack_int4(np.zeros(2, np.uint8), 5)          # 5 codes need 3 bytes
    with pytest.raises(ValueError):
        t4.unpack_int4(np.zeros(3, np.uint8), 4)          # 4 codes need 2 bytes


# ---------------------------------------------------------------- quantize_int4_groups
def oracle_codes(w, group_size, symmetric):
    scale, zp = oracle.group_qparams(w, group_size, 4, symmetric)
    g = w.reshape(w.shape[:-1] + (w.shape[-1] // group_size, group_size))
    v = np.rint(g / scale[..., None])
    q = np.clip(v, -7, 7) if symmetric else np.clip(v + zp[..., None], 0, 15)
    return q.reshape(w.shape).astype(np.int64), scale, zp


@pytest.mark.points(1, exercise="quantize_int4_groups")
def test_groups_random_match_oracle(only):
    only("quantize_int4_groups")
    rng = np.random.default_rng(9)
    w = (rng.normal(0, 0.05, size=(16, 256)) + rng.normal(0, 0.05, size=(16, 1))).astype(np.float32)
    for symmetric in (True, False):
        packed, scale, zp = t4.quantize_int4_groups(w, 64, symmetric=symmetric)
        q, s_ref, zp_ref = oracle_codes(w, 64, symmetric)
        np.testing.assert_array_equal(scale, s_ref)
        assert np.array_equal(oracle.unpack_int4(packed, 256, signed=symmetric).astype(np.int64), q)
        if not symmetric:
            assert np.array_equal(np.asarray(zp).astype(np.int64), zp_ref)


@pytest.mark.points(1, exercise="quantize_int4_groups")
def test_groups_any_leading_shape_and_errors(only):
    only("quantize_int4_groups")
    w = np.random.default_rng(10).normal(size=(2, 3, 96)).astype(np.float32)
    packed, scale, _ = t4.quantize_int4_groups(w, 32)
    assert packed.shape == (2, 3, 48) and scale.shape == (2, 3, 3)
    q, _, _ = oracle_codes(w, 32, True)
    assert np.array_equal(oracle.unpack_int4(packed, 96).astype(np.int64), q)
    packed, scale, _ = t4.quantize_int4_groups(w[0, 0], 96)
    assert packed.shape == (48,) and scale.shape == (1,)
    with pytest.raises(ValueError):
        t4.quantize_int4_groups(np.zeros((4, 100), np.float32), 64)


# ---------------------------------------------------------------- dequantize_int4_groups
@pytest.mark.points(1, exercise="dequantize_int4_groups")
def test_dequantize_groups_random(only):
    only("dequantize_int4_groups")
    rng = np.random.default_rng(11)
    w = rng.normal(0, 0.05, size=(8, 3, 128)).astype(np.float32)
    for symmetric in (True, False):
        q, scale, zp = oracle_codes(w, 64, symmetric)
        packed = oracle.pack_int4(q)
        zero_point = None if symmetric else zp.astype(np.uint8)
        w_hat = t4.dequantize_int4_groups(packed, scale, zero_point, 64)
        assert w_hat.dtype == np.float32 and w_hat.shape == w.shape
        expect = ((q.reshape(8, 3, 2, 64) - (0 if symmetric else zp[..., None])) * scale[..., None]).reshape(w.shape)
        np.testing.assert_allclose(w_hat, expect, rtol=1e-6, atol=1e-9)
        assert np.all(np.abs(w_hat - w).reshape(8, 3, 2, 64) <= scale[..., None] / 2 * 1.0001 + 1e-7)


def assert_bytes_match_gguf(kind, quantize_ours, block_bytes):
    """Our bytes for GGUF type `kind` equal gguf-py's on two random tensors, byte for byte."""
    qtype, quantize, _ = gguf_quants()
    for seed in (0, 1):
        x = gguf_test_data(seed)
        expect = quantize(x, getattr(qtype, kind)).reshape(-1)
        got = quantize_ours(x)
        assert got.dtype == np.uint8 and got.shape == expect.shape
        bad = np.flatnonzero(got != expect)
        assert bad.size == 0, f"{bad.size} bytes differ from gguf-py, first in block {bad[0] // block_bytes}"


def assert_dequantize_matches_gguf(kind, dequantize_ours, seed):
    """Our float32 values of gguf-py's bytes of type `kind` equal gguf-py's own dequantization."""
    qtype, quantize, dequantize = gguf_quants()
    raw = quantize(gguf_test_data(seed), getattr(qtype, kind))
    expect = dequantize(raw, getattr(qtype, kind)).reshape(-1)
    got = dequantize_ours(raw.reshape(-1))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expect)


# ---------------------------------------------------------------- q8_0
@pytest.mark.points(2, exercise="q8_0")
@pytest.mark.requires("gguf")
def test_q8_0_bytes_match_gguf():
    assert_bytes_match_gguf("Q8_0", t4.quantize_q8_0, block_bytes=34)


@pytest.mark.points(1, exercise="q8_0")
@pytest.mark.requires("gguf")
def test_q8_0_dequantize_matches_gguf():
    assert_dequantize_matches_gguf("Q8_0", t4.dequantize_q8_0, seed=2)


# ---------------------------------------------------------------- q4_0
@pytest.mark.points(2, exercise="q4_0")
@pytest.mark.requires("gguf")
def test_q4_0_bytes_match_gguf():
    assert_bytes_match_gguf("Q4_0", t4.quantize_q4_0, block_bytes=18)


@pytest.mark.points(1, exercise="q4_0")
@pytest.mark.requires("gguf")
def test_q4_0_dequantize_matches_gguf():
    assert_dequantize_matches_gguf("Q4_0", t4.dequantize_q4_0, seed=3)


# ---------------------------------------------------------------- nf4
@pytest.mark.points(1, exercise="nf4")
def test_nf4_random_match_oracle():
    w = np.random.default_rng(12).normal(0, 0.03, size=(37, 91)).astype(np.float32)   # 3367: odd, short last block
    packed, absmax = t4.quantize_nf4(w)
    ref_packed, ref_absmax = oracle.quantize_nf4(w)
    np.testing.assert_array_equal(absmax, ref_absmax)
    assert packed.shape == ref_packed.shape and np.array_equal(packed, ref_packed)
    assert packed[-1] & 0x0F == 7, "an odd count pads the last low nibble with the code of 0.0"


@pytest.mark.points(1, exercise="nf4")
def test_nf4_ties_go_to_the_lower_code():
    mids = np.array([(oracle.NF4[i] + oracle.NF4[i + 1]) / np.float32(2) for i in range(15)], np.float32)
    x = np.concatenate([[np.float32(1.0)], mids]).astype(np.float32)      # absmax 1: scaled == x exactly
    packed, _ = t4.quantize_nf4(x)
    idx = np.stack([packed >> 4, packed & 15], axis=1).reshape(-1)
    assert idx.tolist() == [15] + list(range(15))


@pytest.mark.points(1, exercise="nf4")
def test_nf4_dequantize_random():
    w = np.random.default_rng(13).normal(0, 0.03, size=(3, 43)).astype(np.float32)    # 129 values
    packed, absmax = oracle.quantize_nf4(w)
    got = t4.dequantize_nf4(packed, absmax, w.shape)
    idx = np.stack([packed >> 4, packed & 15], axis=1).reshape(-1)[:w.size]
    expect = (oracle.NF4[idx] * np.repeat(absmax, 64)[:w.size]).reshape(w.shape)
    assert got.dtype == np.float32 and got.shape == w.shape
    np.testing.assert_allclose(got, expect, rtol=1e-6)


# ---------------------------------------------------------------- gemv_w4
@pytest.mark.points(1, exercise="gemv_w4")
def test_gemv_random_shapes_both_layouts():
    rng = np.random.default_rng(14)
    for n, k, g in ((1, 2, 2), (5, 4096, 128), (33, 512, 256), (130, 96, 32)):
        codes, scales, w64 = random_int4_weights(rng, n, k, g)
        x = rng.normal(size=k)                                  # float64 input: converted to float32
        ref = w64 @ x.astype(np.float32).astype(np.float64)
        tol = dict(rtol=1e-5, atol=1e-5 * max(np.abs(ref).max(), 1e-3))
        np.testing.assert_allclose(t4.gemv_w4(oracle.pack_int4(codes), scales, x, g), ref, **tol)
        y = t4.gemv_w4(oracle.pack_int4(split_order(codes, g)), scales, x, g, layout="split")
        np.testing.assert_allclose(y, ref, **tol)


@pytest.mark.points(1, exercise="gemv_w4")
def test_gemv_rejects_bad_arguments():
    rng = np.random.default_rng(15)
    codes, scales, _ = random_int4_weights(rng, 8, 256, 64)
    packed, x = oracle.pack_int4(codes), rng.normal(size=256).astype(np.float32)
    assert t4.gemv_w4(packed, scales, x, 64).shape == (8,)
    for args in ((packed[:, :100], scales, x, 64),             # bytes do not match K
                 (packed, scales, x[:200], 64),                # x too short
                 (packed, scales, x, 63),                      # odd group size
                 (packed.astype(np.int16), scales, x, 64)):    # not bytes
        with pytest.raises(ValueError):
            t4.gemv_w4(*args)
    with pytest.raises(ValueError):
        t4.gemv_w4(packed, scales, x, 64, layout="columns")


# ---------------------------------------------------------------- gemv_w4_source (CUDA, in the CPU emulator)
@pytest.mark.points(1, exercise="gemv_w4_source")
@pytest.mark.requires("a C++20 compiler")
def test_gemv_w4_source_random_shapes_match_the_oracle(only):
    only("gemv_w4_source")
    rng = np.random.default_rng(2110)
    source = t4.gemv_w4_source()
    for _ in range(4):
        g = int(rng.choice([32, 64, 128, 256]))
        n, k = int(rng.integers(1, 40)), g * int(rng.integers(1, 9))
        packed, scales, x16, _ = w4_gpu_case(rng, n, k, g)
        expected = run_w4_emulated(oracle.gemv_w4_source(), packed, scales, x16, g)
        assert_gemv_close(run_w4_emulated(source, packed, scales, x16, g), expected.astype(np.float64),
                          f"gemv_w4a16 in the CPU emulator at N={n} K={k} group_size={g}")


# ---------------------------------------------------------------- gemv_w4a8
@pytest.mark.points(1, exercise="gemv_w4a8")
def test_gemv_w4a8_random_shapes():
    rng = np.random.default_rng(2130)
    for _ in range(4):
        g = int(rng.choice([64, 128, 256]))
        n, k = int(rng.integers(1, 70)), g * int(rng.integers(1, 9))
        codes, scales, w64 = random_int4_weights(rng, n, k, g)
        x = rng.normal(size=k) * rng.uniform(0.01, 100)                  # float64 in: converted to float32
        expected = w64 @ q8_dequantized(x.astype(np.float32))
        assert_gemv_close(t4.gemv_w4a8(oracle.pack_int4(codes), scales, x, g), expected,
                          f"gemv_w4a8 at N={n} K={k} group_size={g}")
