"""Public graded tests of module 24 (deployment). Hidden tests add more cases at grading time."""
import math
import re

import numpy as np
import pytest

import tinyq.deployment as dep
from tinyq.bench import Comparison
from _24_helpers import (FakeSession, card_facts, copy_model, digits, dynamic_mlp, fp32, initializers, int8,
                         op_counts, ort_logits, out_scale, reference, session, set_initializer)

needs_ort = pytest.mark.requires("onnx", "onnxruntime")


# ---------------------------------------------------------------- qdq_layer
@needs_ort
@pytest.mark.points(2, exercise="qdq_layer")
def test_qdq_layer_structure(only):
    only("qdq_layer")
    q = int8()
    nodes, inits, out = dep.qdq_layer("conv2", q.conv2, "relu1.out")
    assert out == "conv2.out"
    assert sorted(n.op_type for n in nodes) == sorted(["QuantizeLinear", "DequantizeLinear"] * 2
                                                      + ["DequantizeLinear"] * 2 + ["Conv"])
    conv = next(n for n in nodes if n.op_type == "Conv")
    attrs = {a.name: list(a.ints) for a in conv.attribute}
    assert attrs["kernel_shape"] == [3, 3] and attrs["pads"] == [1, 1, 1, 1] and attrs["strides"] == [1, 1]
    first_q = next(n for n in nodes if n.op_type == "QuantizeLinear" and n.input[0] == "relu1.out")
    assert first_q.input[1:] == ["conv2.x_scale", "conv2.x_zp"]
    from onnx import numpy_helper
    arrays = {i.name: numpy_helper.to_array(i) for i in inits}
    expect = {"conv2.w_q": (np.int8, (32, 16, 3, 3)), "conv2.w_scale": (np.float32, (32,)),
              "conv2.w_zp": (np.int8, (32,)), "conv2.b_q": (np.int32, (32,)), "conv2.b_scale": (np.float32, (32,)),
              "conv2.b_zp": (np.int32, (32,)), "conv2.x_scale": (np.float32, ()), "conv2.x_zp": (np.int8, ()),
              "conv2.y_scale": (np.float32, ()), "conv2.y_zp": (np.int8, ())}
    for name, (dtype, shape) in expect.items():
        assert name in arrays, f"initializer {name} missing"
        assert arrays[name].dtype == dtype and arrays[name].shape == shape, (name, arrays[name].dtype, arrays[name].shape)


@needs_ort
@pytest.mark.points(1, exercise="qdq_layer")
def test_qdq_layer_values_and_refusals(only):
    only("qdq_layer")
    q = int8()
    nodes, inits, out = dep.qdq_layer("fc1", q.fc1, "x")
    arrays = {i.name: i for i in inits}
    from onnx import numpy_helper
    get = lambda n: numpy_helper.to_array(arrays[n])
    assert np.array_equal(get("fc1.w_q"), q.fc1.w_q) and np.array_equal(get("fc1.b_q"), q.fc1.bias_q)
    assert get("fc1.x_zp") == q.fc1.in_zp and get("fc1.y_zp") == q.fc1.out_zp
    np.testing.assert_array_equal(get("fc1.b_scale"), (np.float32(q.fc1.in_scale) * q.fc1.w_scale).astype(np.float32))
    assert next(n for n in nodes if n.op_type == "Gemm").attribute[0].i == 1     # transB
    with pytest.raises(ValueError):
        dep.qdq_layer("fc1", dynamic_mlp().fc1, "x")


# ---------------------------------------------------------------- export_onnx
@needs_ort
@pytest.mark.points(2, exercise="export_onnx")
def test_export_structure_and_checker(only):
    only("export_onnx")
    import onnx
    m = dep.export_onnx(int8())
    onnx.checker.check_model(m, full_check=True)
    ops = op_counts(m)
    assert ops["QuantizeLinear"] == 8 and ops["DequantizeLinear"] == 16
    assert ops["Conv"] == 2 and ops["Gemm"] == 2 and ops["Relu"] == 3 and ops["MaxPool"] == 1
    assert [i.name for i in m.graph.input] == ["input"] and len(m.graph.output) == 1
    assert {o.domain: o.version for o in m.opset_import}.get("", 0) >= 13


@needs_ort
@pytest.mark.points(2, exercise="export_onnx")
def test_export_runs_in_ort_like_tinyq(only):
    only("export_onnx")
    x = digits().x_test
    y = ort_logits(dep.export_onnx(int8()), x)
    ref = int8()(x)
    assert y.shape == (500, 10)
    assert np.array_equal(y.argmax(1), ref.argmax(1))
    assert np.abs(y - ref).max() <= out_scale(int8()) * (1 + 1e-5)


@needs_ort
@pytest.mark.points(1, exercise="export_onnx")
def test_export_fp32_model(only):
    only("export_onnx")
    x = digits().x_test[:64]
    m = dep.export_onnx(fp32())
    assert not {"QuantizeLinear", "DequantizeLinear"} & set(op_counts(m))
    np.testing.assert_allclose(ort_logits(m, x), fp32()(x), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- validate_qdq
@needs_ort
@pytest.mark.points(1, exercise="validate_qdq")
def test_validate_counts(only):
    only("validate_qdq")
    assert dep.validate_qdq(reference("export_onnx")(int8())) == {"QuantizeLinear": 8, "DequantizeLinear": 16}
    assert dep.validate_qdq(reference("export_onnx")(fp32())) == {"QuantizeLinear": 0, "DequantizeLinear": 0}


@needs_ort
@pytest.mark.points(1, exercise="validate_qdq")
def test_validate_wrong_zero_point_dtype(only):
    only("validate_qdq")
    good = reference("export_onnx")(int8())
    dep.validate_qdq(good)
    bad = set_initializer(copy_model(good), "conv2.x_zp", np.uint8(0))
    with pytest.raises(ValueError, match="conv2"):
        dep.validate_qdq(bad)
    bad = set_initializer(copy_model(good), "fc1.b_zp", np.zeros(64, np.int8))    # a bias needs int32
    with pytest.raises(ValueError, match="fc1"):
        dep.validate_qdq(bad)


@needs_ort
@pytest.mark.points(1, exercise="validate_qdq")
def test_validate_missing_scale(only):
    only("validate_qdq")
    good = reference("export_onnx")(int8())
    dep.validate_qdq(good)
    bad = copy_model(good)
    node = next(n for n in bad.graph.node if n.output[0] == "fc1.w")
    node.input[1] = "nowhere"
    with pytest.raises(ValueError, match="fc1"):
        dep.validate_qdq(bad)
    bad = copy_model(good)
    node = next(n for n in bad.graph.node if n.op_type == "QuantizeLinear" and n.output[0].startswith("fc2"))
    del node.input[2]                                           # no zero point: ONNX would emit uint8
    with pytest.raises(ValueError, match="fc2"):
        dep.validate_qdq(bad)


@needs_ort
@pytest.mark.points(1, exercise="validate_qdq")
def test_validate_bad_scale_values(only):
    only("validate_qdq")
    good = reference("export_onnx")(int8())
    dep.validate_qdq(good)
    for value in (np.float32(0.0), np.float32(-0.1), np.float32(np.nan), np.float64(0.1)):
        with pytest.raises(ValueError, match="conv1"):
            dep.validate_qdq(set_initializer(copy_model(good), "conv1.x_scale", value))


# ---------------------------------------------------------------- optimized_ops
@needs_ort
@pytest.mark.points(2, exercise="optimized_ops")
def test_ort_fuses_qdq_into_integer_kernels(only):
    only("optimized_ops")
    ops = dep.optimized_ops(reference("export_onnx")(int8()))
    assert ops["QLinearConv"] == 2, ops
    assert sum(ops[k] for k in ("QGemm", "QLinearMatMul", "MatMulInteger")) >= 2, ops
    assert not {"Conv", "Gemm", "FusedGemm", "MatMul"} & set(ops), ops


@needs_ort
@pytest.mark.points(1, exercise="optimized_ops")
def test_fp32_graph_has_no_integer_kernel(only):
    only("optimized_ops")
    ops = dep.optimized_ops(reference("export_onnx")(fp32()))
    assert sum(ops.values()) > 0 and not set(ops) & set(dep.INTEGER_KERNELS), ops


# ---------------------------------------------------------------- agreement
@needs_ort
@pytest.mark.points(1, exercise="agreement")
def test_agreement_on_the_test_split(only):
    only("agreement")
    x = digits().x_test
    a = dep.agreement(int8(), session(int8()), x)
    assert a["n"] == 500 and a["top1"] == 1.0 and 0 <= a["max_lsb"] <= 1 + 1e-6, a


@pytest.mark.points(1, exercise="agreement")
def test_agreement_measures_in_lsb(only):
    only("agreement")
    x = digits().x_test[:40]
    ref = int8()(x).astype(np.float32)
    shifted = ref.copy()
    shifted[3, 2] += np.float32(3.0 * out_scale(int8()))
    flip = ref.copy()
    flip[:10] = -flip[:10]                       # a different argmax on the first 10 rows (10 classes)
    a = dep.agreement(int8(), FakeSession(shifted), x)
    assert a["n"] == 40 and math.isclose(a["max_lsb"], 3.0, rel_tol=1e-4), a
    b = dep.agreement(int8(), FakeSession(flip), x)
    assert math.isclose(b["top1"], 30 / 40), b


@pytest.mark.points(1, exercise="agreement")
def test_agreement_needs_an_output_scale(only):
    only("agreement")
    x = digits().x_test[:8]
    dep.agreement(int8(), FakeSession(int8()(x)), x)
    with pytest.raises(ValueError):
        dep.agreement(fp32(), FakeSession(fp32()(x)), x)
    with pytest.raises(ValueError):
        dep.agreement(int8(layers=("conv1", "conv2", "fc1")), FakeSession(fp32()(x)), x)


# ---------------------------------------------------------------- ort_speed
@needs_ort
@pytest.mark.points(2, exercise="ort_speed")
def test_ort_speed_measures_both_sessions(only):
    only("ort_speed")
    x = digits().x_test[:100]
    r = dep.ort_speed(session(int8()), session(fp32()), x, repeats=3)
    assert isinstance(r, Comparison)
    assert r.candidate_s > 0 and r.baseline_s > 0 and math.isfinite(r.speedup) and r.speedup > 0
    assert r.candidate_s < 1.0 and r.baseline_s < 1.0      # seconds per call, not per batch of calls


@pytest.mark.points(1, exercise="ort_speed")
def test_ort_speed_candidate_is_int8(only):
    only("ort_speed")
    x = digits().x_test[:4]
    r = dep.ort_speed(FakeSession(sleep_s=0.004), FakeSession(sleep_s=0.0005), x, repeats=3)
    assert r.candidate_s > 0.003 and r.baseline_s < 0.003 and r.speedup < 0.6, r


# ---------------------------------------------------------------- export_dynamic
@needs_ort
@pytest.mark.points(1, exercise="export_dynamic")
def test_dynamic_structure(only):
    only("export_dynamic")
    m = dep.export_dynamic(dynamic_mlp())
    ops = op_counts(m)
    assert ops["DynamicQuantizeLinear"] == 3 and ops["MatMulInteger"] == 3 and ops["Relu"] == 2, ops
    assert not {"QuantizeLinear", "DequantizeLinear", "Gemm"} & set(ops), ops
    arrays = initializers(m)
    assert arrays["fc1.w_t"].dtype == np.int8 and arrays["fc1.w_t"].shape == (64, 128)


@needs_ort
@pytest.mark.points(2, exercise="export_dynamic")
def test_dynamic_runs_like_tinyq(only):
    only("export_dynamic")
    x = digits().x_test
    y = ort_logits(dep.export_dynamic(dynamic_mlp()), x)
    ref = dynamic_mlp()(x)
    assert np.mean(y.argmax(1) == ref.argmax(1)) >= 0.99
    np.testing.assert_allclose(y, ref, rtol=1e-3, atol=1e-3 * float(np.abs(ref).max()))


@needs_ort
@pytest.mark.points(1, exercise="export_dynamic")
def test_dynamic_refuses_static_layers(only):
    only("export_dynamic")
    dep.export_dynamic(dynamic_mlp())
    with pytest.raises(ValueError):
        dep.export_dynamic(int8())


# ---------------------------------------------------------------- write_gguf / read_gguf
def gguf_weights():
    m = fp32()
    return {name: m.get_submodule(name).weight.data for name in ("conv1", "conv2", "fc1", "fc2")}


@pytest.mark.requires("gguf")
@pytest.mark.points(1, exercise="write_gguf")
def test_write_gguf_types(only, tmp_path):
    only("write_gguf")
    types = dep.write_gguf(tmp_path / "m.gguf", gguf_weights(), "Q4_0")
    assert types == {"conv1": "F32", "conv2": "F32", "fc1": "Q4_0", "fc2": "Q4_0"}
    with pytest.raises(ValueError):
        dep.write_gguf(tmp_path / "bad.gguf", gguf_weights(), "Q5_K")


@pytest.mark.requires("gguf")
@pytest.mark.points(1, exercise="write_gguf")
@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0"])
def test_write_gguf_bytes_equal_gguf_py(only, tmp_path, qtype):
    only("write_gguf")
    import gguf
    path = tmp_path / f"m.{qtype}.gguf"
    dep.write_gguf(path, gguf_weights(), qtype)
    tensors = {t.name: t for t in gguf.GGUFReader(str(path)).tensors}
    assert list(tensors) == ["conv1", "conv2", "fc1", "fc2"]
    for name in ("fc1", "fc2"):
        w = gguf_weights()[name]
        theirs = gguf.quants.quantize(w, gguf.GGMLQuantizationType[qtype])
        assert tensors[name].tensor_type.name == qtype
        assert np.asarray(tensors[name].data).tobytes() == theirs.tobytes(), f"{name}: not gguf-py's {qtype} bytes"
    assert np.array_equal(np.asarray(tensors["conv2"].data).reshape(32, 144), gguf_weights()["conv2"].reshape(32, 144))


@pytest.mark.requires("gguf")
@pytest.mark.points(2, exercise="read_gguf")
@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0"])
def test_read_gguf_dequantizes(only, tmp_path, qtype):
    only("read_gguf")
    import gguf
    path = tmp_path / "m.gguf"
    reference("write_gguf")(path, gguf_weights(), qtype)
    back = dep.read_gguf(path)
    assert list(back) == ["conv1", "conv2", "fc1", "fc2"]
    for name, w in gguf_weights().items():
        rows = w.reshape(w.shape[0], -1)
        kind, values = back[name]
        assert values.dtype == np.float32 and values.shape == rows.shape
        if name.startswith("conv"):
            assert kind == "F32" and np.array_equal(values, rows)
        else:
            t = gguf.GGMLQuantizationType[qtype]
            assert kind == qtype
            assert np.array_equal(values, gguf.quants.dequantize(gguf.quants.quantize(rows, t), t))


# ---------------------------------------------------------------- quantization_card
@pytest.mark.points(2, exercise="quantization_card")
def test_card_format(only):
    only("quantization_card")
    card = dep.quantization_card(card_facts())
    lines = card.splitlines()
    assert lines[0] == "# Quantization card: digits_cnn"
    for expected in ["- **Method**: static PTQ, ONNX QDQ",
                     "- **Calibration**: min-max on calib, 200 samples",
                     "- **Evaluation**: top-1 on 500 test images",
                     "| layer | weights | activations |",
                     "| conv1 | int8 per channel | int8 per tensor |",
                     "| fc2 | float32 | float32 |",
                     "- **Accuracy**: FP32 98.60%, quantized 98.20% (-0.40 pt)",
                     "- **Size**: FP32 154,073 bytes, quantized 43,649 bytes (3.53x smaller)",
                     "- **Latency**: FP32 3.353 ms, quantized 6.819 ms (FP32/quantized = 0.49x) on ORT 1 thread, AMD EPYC",
                     "- **Kept in higher precision**: fc2 in FP32; int32 bias",
                     "## Known failure modes",
                     "- inputs beyond the calibrated range clip", "- AVX2 saturation"]:
        assert expected in lines, f"line not found: {expected!r}"
    assert lines.index("## Known failure modes") < lines.index("- AVX2 saturation")


@pytest.mark.points(1, exercise="quantization_card")
def test_card_refuses_missing_facts(only):
    only("quantization_card")
    dep.quantization_card(card_facts())
    facts = card_facts()
    del facts["machine"], facts["calibration_size"]
    with pytest.raises(ValueError, match="machine"):
        dep.quantization_card(facts)


@pytest.mark.points(1, exercise="quantization_card")
def test_card_refuses_bad_values(only):
    only("quantization_card")
    assert "none" in dep.quantization_card({**card_facts(), "higher_precision": []})
    for key, value in [("accuracy_quant", 98.2), ("accuracy_fp32", float("nan")), ("size_quant", 0),
                       ("size_fp32", 1.5e5), ("latency_quant_s", -1.0), ("latency_fp32_s", float("inf")),
                       ("failure_modes", [])]:
        with pytest.raises(ValueError):
            dep.quantization_card({**card_facts(), key: value})


# ---------------------------------------------------------------- pareto_front
@pytest.mark.points(1, exercise="pareto_front")
def test_pareto_examples(only):
    only("pareto_front")
    assert dep.pareto_front([4, 1, 2, 3], [0.0, 0.5, 0.2, 0.3]) == [1, 2, 0]
    assert dep.pareto_front([1, 1, 2], [0.3, 0.3, 0.1]) == [0, 1, 2]
    assert dep.pareto_front([1, 2], [0.1, 0.1]) == [0]
    assert dep.pareto_front([2, 1], [0.1, 0.2]) == [1, 0]
    assert dep.pareto_front([], []) == []


@pytest.mark.points(1, exercise="pareto_front")
def test_pareto_refuses_bad_input(only):
    only("pareto_front")
    assert dep.pareto_front([3.0], [0.1]) == [0]
    with pytest.raises(ValueError):
        dep.pareto_front([1, 2], [0.1])
    with pytest.raises(ValueError):
        dep.pareto_front([1, float("nan")], [0.1, 0.2])
