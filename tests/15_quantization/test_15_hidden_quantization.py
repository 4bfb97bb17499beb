"""Hidden graded tests of module 15: run by the instructor, absent from the student release."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import tinyq.quantize as tq
from _15_helpers import as_list


@pytest.mark.points(1, exercise="qrange")
@settings(max_examples=40, deadline=None)
@given(bits=st.integers(2, 16), signed=st.booleans(), narrow=st.booleans())
def test_qrange_counts_codes(bits, signed, narrow):
    if narrow and not signed:
        with pytest.raises(ValueError):
            tq.qrange(bits, signed, narrow)
        return
    qmin, qmax = tq.qrange(bits, signed, narrow)
    assert isinstance(qmin, int) and isinstance(qmax, int)
    assert qmax - qmin + 1 == 2 ** bits - (1 if narrow else 0)
    if narrow:
        assert qmin == -qmax


@pytest.mark.points(1, exercise="symmetric_qparams")
def test_symmetric_rejects_bad_amax(only):
    only("symmetric_qparams")
    with pytest.raises(ValueError):
        tq.symmetric_qparams(-1.0)
    with pytest.raises(ValueError):
        tq.symmetric_qparams(np.array([1.0, np.nan]))


@pytest.mark.points(1, exercise="symmetric_qparams")
def test_symmetric_2d_and_bits(only):
    only("symmetric_qparams")
    amax = np.array([[7.0, 14.0], [0.0, 3.5]])
    scale, zp = tq.symmetric_qparams(amax, bits=4)
    assert scale.shape == (2, 2) and scale.dtype == np.float32 and zp.shape == (2, 2)
    np.testing.assert_array_equal(scale, np.array([[1.0, 2.0], [1.0, 0.5]], np.float32))


@pytest.mark.points(1, exercise="asymmetric_qparams")
def test_asymmetric_all_zero_and_arrays(only):
    only("asymmetric_qparams")
    scale, zp = tq.asymmetric_qparams(0.0, 0.0)
    assert scale == 1.0 and zp == 0
    scale, zp = tq.asymmetric_qparams(np.array([-1.0, 0.0, -3.0]), np.array([3.0, 0.0, 0.0]), bits=4, signed=True)
    np.testing.assert_array_equal(scale, np.array([4 / 15, 1.0, 3 / 15], np.float32))
    assert as_list(zp) == [-4, -8, 7]
    with pytest.raises(ValueError):
        tq.asymmetric_qparams(2.0, 1.0)


@pytest.mark.points(2, exercise="asymmetric_qparams")
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lo=st.floats(-1e4, 1e4), width=st.floats(1e-3, 1e4), bits=st.integers(2, 8), signed=st.booleans())
def test_asymmetric_zero_is_exact_and_range_covered(lo, width, bits, signed, only):
    hi = lo + width
    only("asymmetric_qparams")   # patches stay for every example hypothesis runs
    scale, zp = tq.asymmetric_qparams(lo, hi, bits=bits, signed=signed)
    qmin, qmax = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)
    assert qmin <= int(zp) <= qmax and float(scale) > 0
    # 0 is code zp exactly, and both ends of the widened range are within one step of a code
    for end in (min(lo, 0.0), max(hi, 0.0)):
        code = np.clip(np.rint(end / float(scale)) + int(zp), qmin, qmax)
        assert abs((code - int(zp)) * float(scale) - end) <= float(scale) * 1.01


def _onnx_quantize(x, scale, zero_point, axis=None):
    """Run ONNX Runtime's QuantizeLinear (opset 13) on x."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    zp = np.asarray(zero_point)
    inits = [numpy_helper.from_array(np.asarray(scale, np.float32), "s"), numpy_helper.from_array(zp, "zp")]
    attrs = {} if axis is None else {"axis": axis}
    out_type = TensorProto.INT8 if zp.dtype == np.int8 else TensorProto.UINT8
    graph = helper.make_graph([helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], **attrs)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                              [helper.make_tensor_value_info("q", out_type, list(x.shape))], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 9
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.mark.points(2, exercise="quantize")
@pytest.mark.requires("onnxruntime", "onnx")
def test_quantize_bit_exact_with_onnxruntime(only):
    only("quantize")
    rng = np.random.default_rng(5)
    ties = ((np.arange(-300, 300) + 0.5) * 0.125).astype(np.float32)       # exact .5 ties at scale 1/8
    noise = rng.normal(0, 20, size=5000).astype(np.float32)
    for x, scale, zp in [(ties, 0.125, np.int8(0)), (ties, 0.125, np.uint8(128)),
                         (noise, np.float32(0.0731), np.int8(-3)), (noise, np.float32(0.31), np.uint8(17))]:
        signed = zp.dtype == np.int8
        ours = tq.quantize(x, scale, int(zp), signed=signed)
        np.testing.assert_array_equal(ours, _onnx_quantize(x, scale, zp))
    w = rng.normal(size=(6, 50)).astype(np.float32) * rng.uniform(0.1, 3, size=(6, 1)).astype(np.float32)
    scales = (np.abs(w).max(axis=1) / 127).astype(np.float32)
    ours = tq.quantize(w, scales, np.zeros(6, np.int32), axis=0)
    np.testing.assert_array_equal(ours, _onnx_quantize(w, scales, np.zeros(6, np.int8), axis=0))


@pytest.mark.points(2, exercise="dequantize")
def test_dequantize_last_axis_and_wide_codes(only):
    only("dequantize")
    q = np.array([[0, 15], [8, 3]], np.uint8)
    x_hat = tq.dequantize(q, np.array([0.5, 0.25], np.float32), np.array([8, 8]), axis=-1)
    np.testing.assert_array_equal(x_hat, [[-4.0, 1.75], [0.0, -1.25]])
    big = tq.dequantize(np.array([-32768, 32767], np.int16), 1.0, 0)
    assert big.dtype == np.float32 and big.tolist() == [-32768.0, 32767.0]


@pytest.mark.points(1, exercise="quantized_tensor")
def test_quantized_tensor_per_channel(only):
    only("quantized_tensor")
    rng = np.random.default_rng(6)
    w = (rng.normal(size=(4, 3, 5)) * np.array([0.1, 1.0, 10.0, 0.01])[:, None, None]).astype(np.float32)
    qt = tq.QuantizedTensor.from_float(w, axis=0)
    assert qt.scale.shape == (4,) and qt.axis == 0
    np.testing.assert_allclose(qt.scale, np.abs(w).max(axis=(1, 2)) / 127, rtol=1e-6)
    assert qt.nbytes == w.size + 4 * 4 + 4 * qt.zero_point.itemsize
    qt1 = tq.QuantizedTensor.from_float(w, axis=1)
    np.testing.assert_allclose(qt1.scale, np.abs(w).max(axis=(0, 2)) / 127, rtol=1e-6)
    err = np.abs(qt1.dequantize() - w)
    assert np.all(err <= qt1.scale[None, :, None] / 2 + 1e-6)


@pytest.mark.points(2, exercise="quantized_tensor")
def test_quantized_tensor_zero_and_constant(only):
    only("quantized_tensor")
    zeros = tq.QuantizedTensor.from_float(np.zeros((3, 3), np.float32))
    assert float(zeros.scale) == 1.0 and np.all(zeros.dequantize() == 0)
    zeros_asym = tq.QuantizedTensor.from_float(np.zeros(5, np.float32), symmetric=False)
    assert np.all(zeros_asym.dequantize() == 0)
    const = tq.QuantizedTensor.from_float(np.full(10, -2.5, np.float32))
    np.testing.assert_allclose(const.dequantize(), -2.5, rtol=1e-6)
    empty = tq.QuantizedTensor.from_float(np.zeros((0,), np.float32))
    assert empty.q.shape == (0,) and empty.dequantize().shape == (0,)
    with pytest.raises(ValueError, match="1 of 3"):
        tq.QuantizedTensor.from_float(np.array([1.0, np.inf, 2.0], np.float32))


@pytest.mark.points(1, exercise="metrics")
def test_metrics_float64_and_shapes():
    x = np.full(10_000_000, 1.0, np.float32)
    x_hat = x + np.float32(1e-3)
    # a float32 running sum of 1e7 values would be off by far more than this
    assert abs(tq.mse(x, x_hat) - 1e-6) < 1e-9
    assert abs(tq.sqnr_db(x, x_hat) - 60.0) < 1e-3
    with pytest.raises(ValueError):
        tq.mse(np.ones(3), np.ones(4))
