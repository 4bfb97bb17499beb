"""Hidden graded tests of module 24 (deployment): against the instructor's oracle and more cases."""
import numpy as np
import pytest

import tinyq.deployment as dep
from _24_helpers import (card_facts, copy_model, digits, fp32, int8, ort_logits, out_scale, reference,
                         set_initializer)
from test_24_deployment import gguf_weights

needs_ort = pytest.mark.requires("onnx", "onnxruntime")


@needs_ort
@pytest.mark.points(1, exercise="qdq_layer")
def test_hidden_qdq_layer_without_bias_runs(only):
    only("qdq_layer")
    from tinyq import nn
    from tinyq.ptq import QuantizedLayer
    from tinyq.observers import MinMaxObserver
    import functools
    layer = nn.Linear(64, 10, bias=False, rng=7)
    q = QuantizedLayer.from_float(layer, functools.partial(MinMaxObserver, axis=0),
                                  in_qparams=(np.float32(0.05), -3), out_qparams=(np.float32(0.2), 1))
    nodes, inits, out = dep.qdq_layer("lin", q, "input")
    assert not any(i.name.startswith("lin.b") for i in inits)
    assert len(next(n for n in nodes if n.op_type == "Gemm").input) == 2
    x = np.random.default_rng(0).normal(size=(16, 64)).astype(np.float32)
    import tinyq.deployment as d
    m = d.make_model(nodes, inits, out, (64,), 10)
    np.testing.assert_allclose(ort_logits(m, x), q(x), atol=0.2 * (1 + 1e-5), rtol=0)


@needs_ort
@pytest.mark.points(1, exercise="export_onnx")
def test_hidden_export_mixed_precision(only):
    only("export_onnx")
    mixed = int8(layers=("conv2", "fc1", "fc2"))          # conv1 kept in FP32
    m = dep.export_onnx(mixed)
    ops = [n.op_type for n in m.graph.node]
    assert ops.count("QuantizeLinear") == 6 and ops[0] == "Conv"
    x = digits().x_test
    y, ref = ort_logits(m, x), mixed(x)
    assert np.mean(y.argmax(1) == ref.argmax(1)) >= 0.998
    assert np.abs(y - ref).max() <= 2 * out_scale(mixed) + 1e-6


@needs_ort
@pytest.mark.points(1, exercise="validate_qdq")
def test_hidden_validate_per_axis_and_weight_dtype(only):
    only("validate_qdq")
    good = reference("export_onnx")(int8())
    dep.validate_qdq(good)
    bad = set_initializer(copy_model(good), "fc1.w_scale", np.full(10, 0.01, np.float32))
    bad = set_initializer(bad, "fc1.w_zp", np.zeros(10, np.int8))
    with pytest.raises(ValueError, match="fc1"):
        dep.validate_qdq(bad)
    w = {i.name: i for i in good.graph.initializer}
    from onnx import numpy_helper
    bad = set_initializer(copy_model(good), "fc2.w_q", numpy_helper.to_array(w["fc2.w_q"]).astype(np.int16))
    with pytest.raises(ValueError, match="fc2"):
        dep.validate_qdq(bad)


@pytest.mark.requires("gguf")
@pytest.mark.points(1, exercise="write_gguf")
def test_hidden_gguf_file_identical_to_gguf_py(only, tmp_path):
    only("write_gguf")
    import gguf
    ours = tmp_path / "ours.gguf"
    dep.write_gguf(ours, gguf_weights(), "Q4_0")
    theirs = tmp_path / "theirs.gguf"
    w = gguf.GGUFWriter(str(theirs), "tinyq")
    for name, value in gguf_weights().items():
        rows = value.reshape(value.shape[0], -1)
        if rows.shape[1] % 32:
            w.add_tensor(name, rows.copy())
        else:
            data = gguf.quants.quantize(rows, gguf.GGMLQuantizationType.Q4_0)
            w.add_tensor(name, data, raw_shape=data.shape, raw_dtype=gguf.GGMLQuantizationType.Q4_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    assert ours.read_bytes() == theirs.read_bytes()


@pytest.mark.requires("gguf")
@pytest.mark.points(1, exercise="read_gguf")
def test_hidden_read_gguf_random_shapes(only, tmp_path):
    only("read_gguf")
    rng = np.random.default_rng(3)
    tensors = {"a": rng.normal(size=(3, 96)).astype(np.float32), "b": rng.normal(size=(5, 7)).astype(np.float32)}
    path = tmp_path / "r.gguf"
    reference("write_gguf")(path, tensors, "Q8_0")
    back = dep.read_gguf(path)
    expected = reference("read_gguf")(path)
    for name in tensors:
        assert back[name][0] == expected[name][0]
        assert np.array_equal(back[name][1], expected[name][1])


@pytest.mark.points(1, exercise="quantization_card")
def test_hidden_card_equals_oracle(only):
    only("quantization_card")
    facts = {**card_facts(), "accuracy_quant": 0.99, "higher_precision": []}
    assert dep.quantization_card(facts) == reference("quantization_card")(facts)


@pytest.mark.points(1, exercise="pareto_front")
def test_hidden_pareto_against_brute_force(only):
    only("pareto_front")
    rng = np.random.default_rng(5)
    for _ in range(30):
        n = int(rng.integers(1, 12))
        sizes = rng.integers(1, 6, n).astype(float)
        errors = rng.integers(0, 4, n) / 10
        assert dep.pareto_front(sizes, errors) == reference("pareto_front")(sizes, errors)
