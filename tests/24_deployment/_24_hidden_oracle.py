"""Instructor-only oracles of module 24's exercises, written independently of the reference
solution (other formulations). Removed from the student release."""
import math
import os
import tempfile
from collections import Counter

import numpy as np

from tinyq import nn
from tinyq.bench import compare
from tinyq.int4 import dequantize_q4_0, dequantize_q8_0, quantize_q4_0, quantize_q8_0
from tinyq.ptq import QuantizedLayer


def _tensor(name, value):
    from onnx import numpy_helper
    return numpy_helper.from_array(np.asarray(value), name=name)


def _node(op, ins, outs, **kw):
    from onnx import helper
    return helper.make_node(op, ins, outs, name=outs[0], **kw)


def qdq_layer(name, layer, x):
    if not isinstance(layer, QuantizedLayer) or layer.in_scale is None or layer.act_bits != 8:
        raise ValueError(f"{name}: not a static 8-bit-activation QuantizedLayer")
    out_ch = int(layer.w_q.shape[0])
    shape = (out_ch, layer.w_q.shape[1] // layer.kernel_size ** 2, layer.kernel_size, layer.kernel_size) \
        if layer.kind == "conv" else layer.w_q.shape
    t = {"x_scale": np.float32(layer.in_scale), "x_zp": np.int8(layer.in_zp),
         "w_q": np.asarray(layer.w_q, np.int8).reshape(shape), "w_scale": np.asarray(layer.w_scale, np.float32),
         "w_zp": np.zeros(out_ch, np.int8), "y_scale": np.float32(layer.out_scale), "y_zp": np.int8(layer.out_zp)}
    has_bias = layer.bias_q is not None
    if has_bias:
        t["b_q"] = np.asarray(layer.bias_q, np.int32)
        t["b_scale"] = np.asarray(np.float32(layer.in_scale) * np.asarray(layer.w_scale, np.float32), np.float32)
        t["b_zp"] = np.zeros(out_ch, np.int32)
    n = lambda s: f"{name}.{s}"
    nodes = [_node("DequantizeLinear", [n("w_q"), n("w_scale"), n("w_zp")], [n("w")], axis=0)]
    if has_bias:
        nodes.append(_node("DequantizeLinear", [n("b_q"), n("b_scale"), n("b_zp")], [n("b")], axis=0))
    nodes += [_node("QuantizeLinear", [x, n("x_scale"), n("x_zp")], [n("x_q")]),
              _node("DequantizeLinear", [n("x_q"), n("x_scale"), n("x_zp")], [n("x_dq")])]
    ins = [n("x_dq"), n("w")] + ([n("b")] if has_bias else [])
    if layer.kind == "conv":
        nodes.append(_node("Conv", ins, [n("y")], kernel_shape=[layer.kernel_size] * 2,
                           strides=[layer.stride] * 2, pads=[layer.padding] * 4))
    else:
        nodes.append(_node("Gemm", ins, [n("y")], transB=1))
    nodes += [_node("QuantizeLinear", [n("y"), n("y_scale"), n("y_zp")], [n("y_q")]),
              _node("DequantizeLinear", [n("y_q"), n("y_scale"), n("y_zp")], [n("out")])]
    return nodes, [_tensor(n(k), v) for k, v in t.items()], n("out")


def _float_nodes(name, layer, x):
    out = name + ".out"
    if isinstance(layer, nn.ReLU):
        return [_node("Relu", [x], [out])], [], out
    if isinstance(layer, nn.Flatten):
        return [_node("Flatten", [x], [out], axis=1)], [], out
    if isinstance(layer, nn.MaxPool2d):
        return [_node("MaxPool", [x], [out], kernel_shape=[layer.kernel_size] * 2,
                      strides=[layer.stride] * 2)], [], out
    if isinstance(layer, (nn.Linear, nn.Conv2d)):
        inits = [_tensor(name + ".weight", layer.weight.data)]
        ins = [x, name + ".weight"]
        if layer.bias is not None:
            inits.append(_tensor(name + ".bias", layer.bias.data))
            ins.append(name + ".bias")
        if isinstance(layer, nn.Linear):
            return [_node("Gemm", ins, [out], transB=1)], inits, out
        return [_node("Conv", ins, [out], kernel_shape=[layer.kernel_size] * 2, strides=[layer.stride] * 2,
                      pads=[layer.padding] * 4)], inits, out
    raise ValueError(f"{name}: cannot export {type(layer).__name__}")


def _model(nodes, inits, out, input_shape, n_out):
    import onnx
    from onnx import TensorProto, helper
    g = helper.make_graph(nodes, "oracle", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *input_shape])],
                          [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", n_out])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(m, full_check=True)
    return m


def export_onnx(model, input_shape=(1, 8, 8)):
    nodes, inits, x, n_out = [], [], "input", None
    for name, layer in model.named_children():
        if isinstance(layer, QuantizedLayer):
            nd, it, x = qdq_layer(name, layer, x)
            n_out = layer.w_q.shape[0]
        else:
            nd, it, x = _float_nodes(name, layer, x)
            n_out = layer.weight.data.shape[0] if hasattr(layer, "weight") else n_out
        nodes.extend(nd)
        inits.extend(it)
    return _model(nodes, inits, x, input_shape, n_out)


def validate_qdq(model):
    from onnx import numpy_helper
    arrays = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    counts = Counter()
    for nd in model.graph.node:
        if nd.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        label = f"{nd.op_type} {nd.output[0]!r}"
        ins = list(nd.input) + [""] * 3
        if "" in ins[:3]:
            raise ValueError(f"{label}: missing scale or zero point")
        if ins[1] not in arrays or ins[2] not in arrays:
            raise ValueError(f"{label}: scale {ins[1]!r} or zero point {ins[2]!r} is not an initializer")
        s, z = arrays[ins[1]], arrays[ins[2]]
        if s.dtype.name != "float32" or not np.isfinite(s).all() or (s <= 0).any():
            raise ValueError(f"{label}: bad scale {ins[1]!r}")
        if s.shape != z.shape:
            raise ValueError(f"{label}: zero point shape {z.shape} differs from scale shape {s.shape}")
        data = arrays.get(ins[0]) if nd.op_type == "DequantizeLinear" else None
        if data is not None and data.dtype.name not in ("int8", "int32"):
            raise ValueError(f"{label}: data {ins[0]!r} is {data.dtype.name}")
        want = "int32" if data is not None and data.dtype.name == "int32" else "int8"
        if z.dtype.name != want:
            raise ValueError(f"{label}: zero point {ins[2]!r} is {z.dtype.name}, expected {want}")
        if want == "int32" and z.any():
            raise ValueError(f"{label}: int32 zero point must be 0")
        if data is not None and s.size > 1:
            axis = 1
            for a in nd.attribute:
                if a.name == "axis":
                    axis = a.i
            if data.shape[axis] != s.size:
                raise ValueError(f"{label}: per-axis scale of {s.size} for axis of {data.shape[axis]}")
        counts[nd.op_type] += 1
    return {"QuantizeLinear": counts["QuantizeLinear"], "DequantizeLinear": counts["DequantizeLinear"]}


def _session(model, path=None):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    so.add_session_config_entry("session.x64quantprecision", "1")
    if path:
        so.optimized_model_filepath = path
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def optimized_ops(model):
    import onnx
    validate_qdq(model)
    d = tempfile.mkdtemp()
    path = os.path.join(d, "o.onnx")
    _session(model, path)
    ops = Counter(n.op_type for n in onnx.load(path).graph.node)
    os.remove(path)
    os.rmdir(d)
    return ops


def _run(session, x):
    name = session.get_inputs()[0].name
    return session.run(None, {name: np.asarray(x, np.float32)})[0]


def agreement(qmodel, session, x):
    weighted = [(n, m) for n, m in qmodel.named_modules() if isinstance(m, (QuantizedLayer, nn.Linear, nn.Conv2d))]
    if not weighted or not isinstance(weighted[-1][1], QuantizedLayer) or weighted[-1][1].out_scale is None:
        raise ValueError("agreement: no static quantized output layer")
    s = float(weighted[-1][1].out_scale)
    a, b = np.asarray(qmodel(x), np.float64), _run(session, x).astype(np.float64)
    return {"top1": float((a.argmax(1) == b.argmax(1)).sum() / len(a)), "max_lsb": float(np.abs(a - b).max() / s),
            "n": len(a)}


def ort_speed(int8_session, fp32_session, x, repeats=5):
    x = np.asarray(x, np.float32).copy()
    return compare(lambda: _run(int8_session, x), lambda: _run(fp32_session, x), repeats=repeats)


def export_dynamic(model, input_shape=(1, 8, 8)):
    from onnx import TensorProto
    nodes, inits, x, n_out = [], [], "input", None
    for name, layer in model.named_children():
        if isinstance(layer, QuantizedLayer):
            if layer.in_scale is not None or layer.kind != "linear":
                raise ValueError(f"{name}: not a dynamic linear layer")
            k = lambda s: f"{name}.{s}"
            inits += [_tensor(k("w_t"), np.asarray(layer.w_q, np.int8).T.copy()),
                      _tensor(k("w_scale"), np.asarray(layer.w_scale, np.float32))]
            nodes += [_node("DynamicQuantizeLinear", [x], [k("x_q"), k("x_scale"), k("x_zp")]),
                      _node("MatMulInteger", [k("x_q"), k("w_t"), k("x_zp")], [k("acc")]),
                      _node("Cast", [k("acc")], [k("acc_f")], to=TensorProto.FLOAT),
                      _node("Mul", [k("x_scale"), k("w_scale")], [k("scale")])]
            last = k("out") if layer.bias is None else k("y")
            nodes.append(_node("Mul", [k("acc_f"), k("scale")], [last]))
            if layer.bias is not None:
                inits.append(_tensor(k("bias"), np.asarray(layer.bias, np.float32)))
                nodes.append(_node("Add", [k("y"), k("bias")], [k("out")]))
            x, n_out = k("out"), layer.w_q.shape[0]
        else:
            nd, it, x = _float_nodes(name, layer, x)
            nodes += nd
            inits += it
            n_out = layer.weight.data.shape[0] if hasattr(layer, "weight") else n_out
    return _model(nodes, inits, x, input_shape, n_out)


def write_gguf(path, tensors, qtype="Q8_0", arch="tinyq"):
    import gguf
    if qtype not in ("Q8_0", "Q4_0"):
        raise ValueError(f"unknown qtype {qtype!r}")
    enc = quantize_q8_0 if qtype == "Q8_0" else quantize_q4_0
    w = gguf.GGUFWriter(str(path), arch)
    kinds = {}
    for name, value in tensors.items():
        m = np.asarray(value, np.float32)
        m = m.reshape(len(m), m.size // len(m))
        if m.shape[1] % 32:
            w.add_tensor(name, m.copy())
            kinds[name] = "F32"
        else:
            raw = enc(m).reshape(len(m), -1)
            w.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=getattr(gguf.GGMLQuantizationType, qtype))
            kinds[name] = qtype
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return kinds


def read_gguf(path):
    import gguf
    result = {}
    for t in gguf.GGUFReader(str(path)).tensors:
        kind = t.tensor_type.name
        rows, cols = int(np.prod(t.shape[1:])), int(t.shape[0])
        data = np.asarray(t.data)
        if kind == "F32":
            v = data.astype(np.float32).reshape(rows, cols)
        elif kind == "Q8_0":
            v = dequantize_q8_0(data.astype(np.uint8).ravel()).reshape(rows, cols)
        elif kind == "Q4_0":
            v = dequantize_q4_0(data.astype(np.uint8).ravel()).reshape(rows, cols)
        else:
            raise ValueError(f"{t.name}: unsupported type {kind}")
        result[t.name] = (kind, v)
    return result


CARD_KEYS = ("model", "method", "layers", "calibration", "calibration_size", "evaluation", "accuracy_fp32",
             "accuracy_quant", "size_fp32", "size_quant", "latency_fp32_s", "latency_quant_s", "runtime",
             "machine", "higher_precision", "failure_modes")


def _num(v):
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


def quantization_card(facts):
    lacking = [k for k in CARD_KEYS if k not in facts]
    if lacking:
        raise ValueError(f"missing {lacking}")
    if not all(_num(facts[k]) and 0 <= facts[k] <= 1 for k in ("accuracy_fp32", "accuracy_quant")):
        raise ValueError("accuracies must be fractions")
    if not all(isinstance(facts[k], (int, np.integer)) and not isinstance(facts[k], bool) and facts[k] > 0
               for k in ("size_fp32", "size_quant")):
        raise ValueError("sizes must be positive ints")
    if not all(_num(facts[k]) and facts[k] > 0 for k in ("latency_fp32_s", "latency_quant_s")):
        raise ValueError("latencies must be positive")
    if len(facts["failure_modes"]) == 0:
        raise ValueError("no failure modes")
    f = dict(facts)
    table = "".join(f"| {r['name']} | {r['weights']} | {r['activations']} |\n" for r in f["layers"])
    kept = "; ".join(f["higher_precision"]) if f["higher_precision"] else "none"
    modes = "".join(f"- {m}\n" for m in f["failure_modes"])
    a, b, s, t, l, m = (f["accuracy_fp32"], f["accuracy_quant"], f["size_fp32"], f["size_quant"],
                        f["latency_fp32_s"], f["latency_quant_s"])
    return (f"# Quantization card: {f['model']}\n\n"
            f"- **Method**: {f['method']}\n"
            f"- **Calibration**: {f['calibration']}, {f['calibration_size']} samples\n"
            f"- **Evaluation**: {f['evaluation']}\n\n"
            "| layer | weights | activations |\n|---|---|---|\n" + table + "\n"
            f"- **Accuracy**: FP32 {a:.2%}, quantized {b:.2%} ({(b - a) * 100:+.2f} pt)\n"
            f"- **Size**: FP32 {s:,} bytes, quantized {t:,} bytes ({s / t:.2f}x smaller)\n"
            f"- **Latency**: FP32 {l * 1e3:.3f} ms, quantized {m * 1e3:.3f} ms (FP32/quantized = {l / m:.2f}x) "
            f"on {f['runtime']}, {f['machine']}\n"
            f"- **Kept in higher precision**: {kept}\n\n## Known failure modes\n\n" + modes)


def pareto_front(sizes, errors):
    s, e = list(map(float, sizes)), list(map(float, errors))
    if len(s) != len(e) or any(math.isnan(v) for v in s + e):
        raise ValueError("bad input")
    keep = [i for i in range(len(s))
            if not any(s[j] <= s[i] and e[j] <= e[i] and (s[j] < s[i] or e[j] < e[i]) for j in range(len(s)))]
    return sorted(keep, key=lambda i: (s[i], e[i], i))
