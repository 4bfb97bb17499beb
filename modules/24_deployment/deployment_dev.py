# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: nbgrader,tags,-all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Module 24: Deployment — ONNX QDQ, ONNX Runtime, GGUF, a quantization card and a trade-off matrix
#
# A quantized model is only useful once a runtime serves it. Every earlier module computed in tinyq's
# own numpy code; this one hands your results to the formats that production runtimes load, and
# checks that they compute **the same numbers**:
#
# 1. **ONNX in QDQ form.** Module 17's static INT8 digits CNN becomes an ONNX graph where every
#    Conv and Gemm is wrapped in `QuantizeLinear` / `DequantizeLinear` (QDQ) nodes that carry *your*
#    scales and zero points, with int8 weights and int32 biases stored as initializers. ONNX Runtime
#    (ORT) recognises the pattern and replaces it by integer kernels (`QLinearConv`, `QGemm`); we
#    check that its logits equal tinyq's integer model's to within one step of the output scale, read
#    the fused graph back, and time ORT INT8 against ORT FP32 in one process.
# 2. **Dynamic quantization in ONNX** (`DynamicQuantizeLinear` + `MatMulInteger`) for the digits MLP,
#    the contrast: activation ranges measured per batch at run time, nothing to calibrate.
# 3. **GGUF**, llama.cpp's file format: the weights in Q8_0 and Q4_0 blocks (module 21's encoders)
#    written with the `gguf` package's `GGUFWriter`, read back with `GGUFReader`, byte for byte what
#    gguf-py's own quantizer writes.
# 4. The two documents a team decides with: a **quantization card** generated from measured values
#    only, and a **trade-off matrix** (accuracy, bytes, latency) of every method the course built,
#    with its Pareto front.
#
# A QDQ graph is a *description*: `DequantizeLinear(q, s, z) = (q - z) * s` in float, then a float
# Conv, then `QuantizeLinear`. Run literally it is a float model with rounding in between. Its value
# is that it states exactly which integer computation is meant, so a runtime may replace
# `DQ -> Conv -> Q` by one integer kernel with the same result:
#
# $$q_y = \mathrm{clamp}\Big(\mathrm{round}\big(M_j\,\textstyle\sum_k q_{w,jk}(q_{x,k}-z_x) + M_j\,q_{b,j}\big) + z_y\Big),\qquad M_j = \frac{s_x s_{w,j}}{s_y}$$
#
# which is what module 17's `QuantizedLayer` computes. The bias is stored as int32 at scale
# $s_x s_{w,j}$ so that it adds into the accumulator; the weights are int8 with zero point 0.
#
# **Needs** `pip install -e '.[deploy]'` (onnx, onnxruntime, gguf). **How to work**: edit the cells
# marked `# YOUR CODE HERE`, run the test below each one, then `tito export 24` and `tito test 24`.

# %%
#| default_exp deployment

# %%
#| export
import collections
import math
import os
import platform
import tempfile

import numpy as np

from tinyq import nn
from tinyq.bench import compare
from tinyq.int4 import dequantize_q4_0, dequantize_q8_0, quantize_q4_0, quantize_q8_0
from tinyq.ptq import QuantizedLayer

OPSET = 13          # per-axis QuantizeLinear/DequantizeLinear (the scales of per-channel weights)
IR_VERSION = 8      # an IR version every ONNX Runtime since 1.10 loads
INPUT = "input"
INTEGER_KERNELS = ("QLinearConv", "QLinearMatMul", "QGemm", "MatMulInteger", "ConvInteger",
                   "DynamicQuantizeMatMul", "MatMulIntegerToFloat")
GGUF_TYPES = ("Q8_0", "Q4_0")


def _onnx():
    """The onnx package, imported when first needed (an optional dependency: the `deploy` extra)."""
    import onnx
    return onnx


def initializer(name, array):
    """An ONNX initializer (TensorProto) holding `array` with its own dtype and shape."""
    from onnx import numpy_helper
    return numpy_helper.from_array(np.asarray(array), name)


def node(op_type, inputs, outputs, **attrs):
    """One ONNX node; its name is its first output's, so an error can point at it."""
    from onnx import helper
    return helper.make_node(op_type, list(inputs), list(outputs), name=outputs[0], **attrs)


def float_layer(name, layer, x):
    """The float nodes of a layer that is not quantized: (nodes, initializers, output name).

    nn.Conv2d -> Conv, nn.Linear -> Gemm (transB=1, as tinyq stores W as (out, in)), nn.ReLU -> Relu,
    nn.MaxPool2d -> MaxPool, nn.Flatten -> Flatten(axis=1). Anything else is a ValueError.
    """
    out = f"{name}.out"
    if isinstance(layer, (nn.Conv2d, nn.Linear)):
        inits = [initializer(f"{name}.weight", layer.weight.data)]
        inputs = [x, f"{name}.weight"]
        if layer.bias is not None:
            inits.append(initializer(f"{name}.bias", layer.bias.data))
            inputs.append(f"{name}.bias")
        if isinstance(layer, nn.Conv2d):
            k, s, p = layer.kernel_size, layer.stride, layer.padding
            return [node("Conv", inputs, [out], kernel_shape=[k, k], strides=[s, s], pads=[p] * 4)], inits, out
        return [node("Gemm", inputs, [out], transB=1)], inits, out
    if isinstance(layer, nn.ReLU):
        return [node("Relu", [x], [out])], [], out
    if isinstance(layer, nn.MaxPool2d):
        k, s = layer.kernel_size, layer.stride
        return [node("MaxPool", [x], [out], kernel_shape=[k, k], strides=[s, s])], [], out
    if isinstance(layer, nn.Flatten):
        return [node("Flatten", [x], [out], axis=1)], [], out
    raise ValueError(f"layer {name!r}: no ONNX export for {type(layer).__name__}")


def make_model(nodes, initializers, output, input_shape, n_outputs):
    """A checked ONNX model: input `INPUT` of shape (N, *input_shape) float32, output (N, n_outputs)."""
    onnx = _onnx()
    from onnx import TensorProto, helper
    graph = helper.make_graph(
        nodes, "tinyq", [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", *input_shape])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["N", n_outputs])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                              producer_name="tinyq")
    onnx.checker.check_model(model, full_check=True)
    return model


# %% [markdown]
# ## 0. The model, the data and the integer model to export
#
# The digits CNN of the zoo and module 17's static PTQ: per-channel symmetric int8 weights, int8
# asymmetric activations calibrated with min-max on the 200 calibration images, int32 biases. This
# `int8` model is tinyq's integer reference: ORT must reproduce its logits.

# %%
import functools
import io
import time

import matplotlib.pyplot as plt

from tinyq import zoo
from tinyq.bench import time_interleaved
from tinyq.data import load_digits
from tinyq.ptq import model_nbytes, quantizable_layers, quantize_dynamic, quantize_model, sensitivity
from tinyq.quantize import quantize

QUICK = os.environ.get("TINYQ_QUICK") == "1"   # the notebook test may ask for a lighter run
digits = load_digits()
calib = list(digits.batches("calib", 50))
fp32 = zoo.load("digits_cnn")
int8 = quantize_model(fp32, calib)


def test_accuracy(model):
    return nn.accuracy(model(digits.x_test), digits.y_test)


print(int8)
print(f"FP32 {test_accuracy(fp32):.2%}, static INT8 {test_accuracy(int8):.2%} on {len(digits.y_test)} test images")

# %% [markdown]
# ## 1. One quantized layer as QDQ nodes
#
# For a static `QuantizedLayer` called `name` whose input tensor is `x`, the QDQ pattern is:
#
# ```
# x --QuantizeLinear(s_x, z_x)--> x_q --DequantizeLinear(s_x, z_x)--> x_dq ----------------.
# w_q (int8 initializer) --DequantizeLinear(s_w per channel, 0, axis=0)--> w ------------- Conv / Gemm --> y
# b_q (int32 initializer) --DequantizeLinear(s_x * s_w, 0, axis=0)--> b ------------------'
# y --QuantizeLinear(s_y, z_y)--> y_q --DequantizeLinear(s_y, z_y)--> name.out
# ```
#
# Each scale and zero point is an initializer: scales float32 (a scalar for activations, one per
# output channel for weights and bias), zero points with **the dtype of the codes they belong to**:
# int8 for activations and weights, int32 for the bias. ONNX reads the code type from the zero point:
# a `QuantizeLinear` with a uint8 zero point produces uint8 codes. The bias scale must be exactly
# $s_x s_{w,j}$ in float32 (ORT's fusion feeds the int32 bias straight into the accumulator).
#
# The conv weight goes back to ONNX's layout (out, C, kh, kw) (tinyq keeps it as rows (out, C·kh·kw)),
# with `pads` and `strides` from the layer; a Linear becomes `Gemm` with `transB=1`.

# %% nbgrader={"grade": false, "grade_id": "qdq_layer", "locked": false, "schema_version": 3, "solution": true}
#| export
def qdq_layer(name, layer, x):
    """The QDQ nodes of a static QuantizedLayer: (nodes, initializers, output name).

    TODO: the pattern above. Initializer names: f"{name}.x_scale", ".x_zp", ".w_q", ".w_scale",
    ".w_zp", ".b_q", ".b_scale", ".b_zp", ".y_scale", ".y_zp"; the output is f"{name}.out". A layer
    without a bias has no bias initializers and a Conv/Gemm with two inputs.

    APPROACH: build the nodes with the given `node(op_type, inputs, outputs, **attrs)` and the
    initializers with `initializer(name, array)`, in the dtypes the markdown lists. Conv gets
    kernel_shape, strides and pads (4 values) from layer.kernel_size, .stride, .padding; Gemm gets
    transB=1. A dynamic layer (layer.dynamic) or one with act_bits != 8 cannot be written with int8
    QDQ nodes: raise ValueError naming the layer.

    EXAMPLE: qdq_layer("fc2", int8.fc2, "relu3.out") -> 8 nodes (QuantizeLinear, DequantizeLinear,
             DequantizeLinear, DequantizeLinear, Gemm, QuantizeLinear, DequantizeLinear ... in some
             order), 10 initializers, "fc2.out"

    HINTS: np.float32(...) and np.int8(...) make scalar initializers; the bias scale is
    (np.float32(s_x) * w_scale).astype(np.float32).
    """
    ### BEGIN SOLUTION
    if not isinstance(layer, QuantizedLayer) or layer.dynamic:
        raise ValueError(f"layer {name!r}: only a static QuantizedLayer has QDQ nodes (use export_dynamic)")
    if layer.act_bits != 8:
        raise ValueError(f"layer {name!r}: activations of {layer.act_bits} bits do not fit int8 QDQ nodes")
    n_out = layer.w_q.shape[0]
    w = layer.w_q
    if layer.kind == "conv":
        k = layer.kernel_size
        w = w.reshape(n_out, -1, k, k)
    p = f"{name}."
    inits = [initializer(p + "x_scale", np.float32(layer.in_scale)), initializer(p + "x_zp", np.int8(layer.in_zp)),
             initializer(p + "w_q", w.astype(np.int8)), initializer(p + "w_scale", layer.w_scale.astype(np.float32)),
             initializer(p + "w_zp", np.zeros(n_out, np.int8)),
             initializer(p + "y_scale", np.float32(layer.out_scale)), initializer(p + "y_zp", np.int8(layer.out_zp))]
    nodes = [node("QuantizeLinear", [x, p + "x_scale", p + "x_zp"], [p + "x_q"]),
             node("DequantizeLinear", [p + "x_q", p + "x_scale", p + "x_zp"], [p + "x_dq"]),
             node("DequantizeLinear", [p + "w_q", p + "w_scale", p + "w_zp"], [p + "w"], axis=0)]
    inputs = [p + "x_dq", p + "w"]
    if layer.bias_q is not None:
        b_scale = (np.float32(layer.in_scale) * layer.w_scale).astype(np.float32)
        inits += [initializer(p + "b_q", layer.bias_q.astype(np.int32)), initializer(p + "b_scale", b_scale),
                  initializer(p + "b_zp", np.zeros(n_out, np.int32))]
        nodes.append(node("DequantizeLinear", [p + "b_q", p + "b_scale", p + "b_zp"], [p + "b"], axis=0))
        inputs.append(p + "b")
    if layer.kind == "conv":
        k, s, pad = layer.kernel_size, layer.stride, layer.padding
        nodes.append(node("Conv", inputs, [p + "y"], kernel_shape=[k, k], strides=[s, s], pads=[pad] * 4))
    else:
        nodes.append(node("Gemm", inputs, [p + "y"], transB=1))
    nodes += [node("QuantizeLinear", [p + "y", p + "y_scale", p + "y_zp"], [p + "y_q"]),
              node("DequantizeLinear", [p + "y_q", p + "y_scale", p + "y_zp"], [p + "out"])]
    return nodes, inits, p + "out"
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_qdq_layer", "locked": true, "schema_version": 3, "solution": false}
_nodes, _inits, _out = qdq_layer("conv1", int8.conv1, INPUT)
_ops = collections.Counter(n.op_type for n in _nodes)
assert _out == "conv1.out" and _ops == {"QuantizeLinear": 2, "DequantizeLinear": 4, "Conv": 1}, _ops
_by_name = {i.name: i for i in _inits}
from onnx import numpy_helper
assert numpy_helper.to_array(_by_name["conv1.w_q"]).shape == (16, 1, 3, 3)
assert numpy_helper.to_array(_by_name["conv1.b_q"]).dtype == np.int32
assert numpy_helper.to_array(_by_name["conv1.x_zp"]).dtype == np.int8
try:
    qdq_layer("fc1", quantize_dynamic(fp32).fc1, "x")
    raise AssertionError("a dynamic layer has no QDQ form: ValueError expected")
except ValueError:
    pass
print("qdq_layer: ok", dict(_ops))

# %% [markdown]
# ## 2. The whole model
#
# Walk the model's top-level layers in order; a static `QuantizedLayer` becomes its QDQ nodes, any
# other layer its float nodes (the given `float_layer`: Conv, Gemm, Relu, MaxPool, Flatten). Because
# float layers pass through unchanged, the same function exports the FP32 model (our latency
# baseline) and a mixed-precision model whose sensitive layers stayed FP32. The between-layer ops
# (ReLU, max-pool, flatten) run in float on dequantized values, exactly as tinyq runs them; ORT is
# free to run them on the int8 codes because they commute with a monotonic quantizer.
#
# The graph has one input `input` of shape (N, 1, 8, 8) with a symbolic batch N, one output of shape
# (N, 10), opset 13 (the first with per-axis scales). `onnx.checker.check_model(..., full_check=True)`
# checks the structure and runs shape inference: it catches an undefined tensor or a wrong attribute,
# but not a scale that makes no sense (section 3).

# %% nbgrader={"grade": false, "grade_id": "export_onnx", "locked": false, "schema_version": 3, "solution": true}
#| export
def export_onnx(model, input_shape=(1, 8, 8)):
    """An ONNX ModelProto of a tinyq Sequential (static QuantizedLayers as QDQ, the rest in float).

    TODO: chain the layers' nodes from INPUT to the last layer's output; collect every initializer;
    return the checked model of the given `make_model(nodes, initializers, output, input_shape,
    n_outputs)` (it runs onnx.checker). n_outputs is the last layer's number of outputs.

    APPROACH: for name, layer in model.named_children(): a QuantizedLayer goes through qdq_layer,
    every other layer through float_layer (which raises ValueError for what it cannot export); each
    returns the name of its output, the next layer's input.

    EXAMPLE: export_onnx(int8) -> a model whose graph has 2 Conv, 2 Gemm, 8 QuantizeLinear,
             16 DequantizeLinear, 3 Relu, 1 MaxPool, 1 Flatten; export_onnx(fp32) has no QDQ node.
    """
    ### BEGIN SOLUTION
    nodes, inits, x, n_out = [], [], INPUT, None
    for name, layer in model.named_children():
        if isinstance(layer, QuantizedLayer):
            more, params, x = qdq_layer(name, layer, x)
            n_out = layer.w_q.shape[0]
        else:
            more, params, x = float_layer(name, layer, x)
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                n_out = layer.weight.data.shape[0]
        nodes += more
        inits += params
    return make_model(nodes, inits, x, input_shape, n_out)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_export_onnx", "locked": true, "schema_version": 3, "solution": false}
onnx_int8 = export_onnx(int8)
onnx_fp32 = export_onnx(fp32)
_ops = collections.Counter(n.op_type for n in onnx_int8.graph.node)
assert _ops["QuantizeLinear"] == 8 and _ops["DequantizeLinear"] == 16 and _ops["Conv"] == 2 and _ops["Gemm"] == 2, _ops
assert not {"QuantizeLinear", "DequantizeLinear"} & {n.op_type for n in onnx_fp32.graph.node}
int8_bytes, fp32_bytes = onnx_int8.SerializeToString(), onnx_fp32.SerializeToString()
print(f"export_onnx: ok; {dict(_ops)}")
print(f"file sizes: INT8 QDQ {len(int8_bytes):,} bytes, FP32 {len(fp32_bytes):,} bytes "
      f"({len(fp32_bytes) / len(int8_bytes):.2f}x smaller)")

# %% [markdown]
# ## 3. Validate before the runtime sees it
#
# `onnx.checker` accepts graphs that are valid ONNX but wrong as quantized models, and a runtime
# then runs them without complaint. Two examples: a `QuantizeLinear` whose zero point is uint8
# instead of int8 is *valid* — it silently produces uint8 codes on another grid; a scale input that
# names no tensor is caught by the checker, but only as "unknown input", far from what was meant.
# Your validator checks every `QuantizeLinear` / `DequantizeLinear` node and says **which node** and
# **what** is wrong:
#
# * it has three inputs, scale and zero point both named (not empty);
# * the scale is an initializer, float32, every value finite and > 0;
# * the zero point is an initializer of the scale's shape, with the dtype of the codes: int8, except
#   a `DequantizeLinear` whose input is an int32 initializer (a bias), whose zero point is int32 and 0;
# * the data input of a `DequantizeLinear` that is an initializer is int8 or int32;
# * a per-axis scale (more than one value) matches the size of the quantized tensor along `axis`
#   (the node's attribute, default 1), where that tensor is an initializer.
#
# It returns how many nodes of each kind it checked.

# %% nbgrader={"grade": false, "grade_id": "validate_qdq", "locked": false, "schema_version": 3, "solution": true}
#| export
def validate_qdq(model):
    """Check every QuantizeLinear/DequantizeLinear node of an ONNX model; return {op_type: count}.

    TODO: the rules above; raise ValueError for the first broken node, with the node's name (its
    first output) and what is wrong in the message (e.g. "DequantizeLinear 'fc1.w': zero point
    'fc1.w_zp' is uint8, expected int8").

    APPROACH: map initializer names to numpy arrays (onnx.numpy_helper.to_array); visit the nodes of
    model.graph; for the two QDQ op types check the inputs in the order above. An axis attribute is
    found in node.attribute (onnx.helper.get_attribute_value).

    EXAMPLE: validate_qdq(export_onnx(int8)) -> {"QuantizeLinear": 8, "DequantizeLinear": 16}
             validate_qdq(export_onnx(fp32)) -> {"QuantizeLinear": 0, "DequantizeLinear": 0}

    HINTS: np.dtype(np.int8) == array.dtype compares dtypes; report dtypes by name (array.dtype.name).
    """
    ### BEGIN SOLUTION
    from onnx import helper, numpy_helper
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    counts = {"QuantizeLinear": 0, "DequantizeLinear": 0}
    for nd in model.graph.node:
        if nd.op_type not in counts:
            continue
        where = f"{nd.op_type} {nd.output[0]!r}"
        if len(nd.input) < 3 or not nd.input[1] or not nd.input[2]:
            raise ValueError(f"{where}: needs 3 inputs (data, scale, zero point), got {list(nd.input)}")
        data, scale_name, zp_name = nd.input[:3]
        if scale_name not in inits:
            raise ValueError(f"{where}: scale {scale_name!r} is not an initializer")
        scale = inits[scale_name]
        if scale.dtype != np.float32:
            raise ValueError(f"{where}: scale {scale_name!r} is {scale.dtype.name}, expected float32")
        if not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
            raise ValueError(f"{where}: scale {scale_name!r} has values that are not finite and > 0")
        if zp_name not in inits:
            raise ValueError(f"{where}: zero point {zp_name!r} is not an initializer")
        zp = inits[zp_name]
        if zp.shape != scale.shape:
            raise ValueError(f"{where}: zero point {zp_name!r} has shape {zp.shape}, the scale {scale.shape}")
        codes = inits.get(data) if nd.op_type == "DequantizeLinear" else None
        if codes is not None and codes.dtype not in (np.int8, np.int32):
            raise ValueError(f"{where}: input {data!r} is {codes.dtype.name}, expected int8 or int32")
        expected = np.int32 if codes is not None and codes.dtype == np.int32 else np.int8
        if zp.dtype != expected:
            raise ValueError(f"{where}: zero point {zp_name!r} is {zp.dtype.name}, expected {np.dtype(expected).name}")
        if expected == np.int32 and np.any(zp != 0):
            raise ValueError(f"{where}: an int32 (bias) zero point must be 0")
        if scale.size > 1 and codes is not None:
            axis = next((helper.get_attribute_value(a) for a in nd.attribute if a.name == "axis"), 1)
            if codes.shape[axis] != scale.size:
                raise ValueError(f"{where}: {scale.size} scales for {codes.shape[axis]} entries on axis {axis}")
        counts[nd.op_type] += 1
    return counts
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_validate_qdq", "locked": true, "schema_version": 3, "solution": false}
assert validate_qdq(onnx_int8) == {"QuantizeLinear": 8, "DequantizeLinear": 16}
assert validate_qdq(onnx_fp32) == {"QuantizeLinear": 0, "DequantizeLinear": 0}


def broken(edit):
    """A copy of the INT8 export with one thing broken by `edit(model)`."""
    bad = _onnx().ModelProto()
    bad.CopyFrom(onnx_int8)
    edit(bad)
    return bad


def uint8_zero_point(m):          # valid ONNX, wrong model: the activations become uint8 codes
    i = next(i for i in m.graph.initializer if i.name == "conv2.x_zp")
    i.CopyFrom(initializer("conv2.x_zp", np.uint8(0)))


def missing_scale(m):             # the scale input of a node names nothing
    nd = next(n for n in m.graph.node if n.output[0] == "fc1.w")
    nd.input[1] = "fc1.w_scale_typo"


for label, edit in [("uint8 zero point", uint8_zero_point), ("missing scale", missing_scale)]:
    try:
        validate_qdq(broken(edit))
        raise AssertionError(f"{label}: validate_qdq must raise ValueError")
    except ValueError as err:
        print(f"{label:17s} -> ValueError: {err}")

# %% [markdown]
# ## 4. Run it in ONNX Runtime
#
# The given `ort_session` validates the model with your `validate_qdq`, then opens an ORT CPU
# session with every graph optimization on (`ORT_ENABLE_ALL`: constant folding, QDQ fusion, layout
# transforms) and one thread by default. One session option deserves a word:
# `session.x64quantprecision = 1`. ORT's x86 int8 kernels multiply uint8 activations by int8
# weights with `vpmaddubsw`, which adds pairs of products into a **saturating int16**: on a CPU
# without VNNI (most AVX2 machines, CI runners included) a pair like $255 \cdot 127 + 255 \cdot 100$
# clips at 32767 and the result is wrong. Module 19 met this instruction. The option makes ORT use
# an exact u8×u8 path on those CPUs and changes nothing where VNNI's `vpdpbusd` (no saturation) is
# present. The cell below measures how often this very model would hit the saturation.

# %%
#| export
def ort_session(model, threads=1, optimized_path=None):
    """An ONNX Runtime CPU session of `model` (validated first), all graph optimizations on.

    optimized_path: where ORT should save the graph it will run (after fusion), or None.
    """
    import onnxruntime as ort
    validate_qdq(model)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3                              # errors only
    options.add_session_config_entry("session.x64quantprecision", "1")   # exact on AVX2 without VNNI
    if optimized_path is not None:
        options.optimized_model_filepath = str(optimized_path)
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def run_session(session, x):
    """The session's (only) output for the float32 input x."""
    return session.run(None, {session.get_inputs()[0].name: np.asarray(x, dtype=np.float32)})[0]


# %%
def largest_pair(layer, x):
    """Largest sum of two products |w| * u8 activation code in one dot product of a static layer on x:
    above 32767, a u8 x s8 pair in vpmaddubsw would saturate (whichever two elements it pairs)."""
    u8 = layer._to_rows(quantize(x, layer.in_scale, layer.in_zp), layer.in_zp).astype(np.int64) + 128
    w = np.abs(layer.w_q.astype(np.int64))
    products = u8[:, None, :] * w[None, :, :]                   # (rows, out, K)
    top2 = -np.partition(-products, 1, axis=2)[:, :, :2]
    return int(top2.sum(axis=2).max()), float(np.mean(top2.sum(axis=2) > 32767))


conv1_pair, conv1_frac = largest_pair(int8.conv1, digits.x_test[:100])
print(f"conv1 on 100 test images: largest pair of products {conv1_pair:,} (int16 max 32,767); "
      f"{conv1_frac:.1%} of its dot products have a pair that could saturate")


# %% [markdown]
# ### Which kernels did ORT choose?
#
# ORT rewrites the graph before it runs it. `optimized_path` asks it to save that graph; reading it
# back shows whether the QDQ pattern became integer kernels: `QLinearConv` (int8 conv, int32
# accumulator, requantized output), `QGemm` (ORT's integer Gemm) or `QLinearMatMul` /
# `MatMulInteger` for a MatMul. A QDQ pair ORT could not fuse stays as `QuantizeLinear` /
# `DequantizeLinear` around a float op: the model still runs, in float, with the rounding of int8.

# %% nbgrader={"grade": false, "grade_id": "optimized_ops", "locked": false, "schema_version": 3, "solution": true}
#| export
def optimized_ops(model):
    """collections.Counter of the op types in the graph ONNX Runtime runs for `model` (after fusion).

    TODO: open an `ort_session` with optimized_path in a temporary directory, load the saved file
    with onnx.load and count node.op_type over its graph.

    APPROACH: tempfile.TemporaryDirectory() as a context manager; the file exists once the session
    is created; load it inside the `with` block (it is deleted after).

    EXAMPLE: optimized_ops(export_onnx(int8)) -> Counter({'QLinearConv': 2, 'QGemm': 2, ...})
             optimized_ops(export_onnx(fp32)) -> no integer kernel at all
    """
    ### BEGIN SOLUTION
    with tempfile.TemporaryDirectory(prefix="tinyq_ort_") as folder:
        path = os.path.join(folder, "optimized.onnx")
        ort_session(model, optimized_path=path)
        graph = _onnx().load(path).graph
        return collections.Counter(nd.op_type for nd in graph.node)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_optimized_ops", "locked": true, "schema_version": 3, "solution": false}
ops_int8, ops_fp32 = optimized_ops(onnx_int8), optimized_ops(onnx_fp32)
fused = {op: n for op, n in ops_int8.items() if op in INTEGER_KERNELS}
assert fused and not {op for op in ops_fp32 if op in INTEGER_KERNELS}, (ops_int8, ops_fp32)
assert not {"Conv", "Gemm"} & set(ops_int8), ops_int8       # every Conv and Gemm was fused
print("ORT runs the INT8 export as:", dict(ops_int8))
print("ORT runs the FP32 export as:", dict(ops_fp32))

# %% [markdown]
# Read the printout: every Conv and Gemm became an integer kernel, but some `QuantizeLinear` /
# `DequantizeLinear` pairs are left between the layers. They are the `DQ → Relu → Q` steps: module
# 17 calibrates a layer's output and the next layer's input with separate observers, so the code
# leaving `conv1` (scale $s_{y}$ of conv1) must be requantized to conv2's input scale, and ORT does
# that in float. A toolchain that quantizes a conv's output directly with the scale calibrated after
# its ReLU (one scale for both) lets the runtime fold the ReLU into the integer kernel's clamp and
# stay in int8 from layer to layer; the layout `Transpose` / `Reorder` nodes around the int8 convs are a
# cost this tiny model pays too. Both show up in the latency below.
#
# ### Does ORT compute what tinyq computes?
#
# Compare ORT's logits with tinyq's integer model on the 500 test images: the fraction of images
# with the same top-1 class, and the largest logit difference **in units of the output scale**
# (one LSB = one step of the last layer's output code, $s_y$). Both compute the same integer
# accumulators; they may differ in how they requantize (tinyq multiplies in float64, ORT in
# float32), which can move a code by one step exactly at a rounding tie. The bar: top-1 equal on
# every image, logits within 1 LSB.

# %% nbgrader={"grade": false, "grade_id": "agreement", "locked": false, "schema_version": 3, "solution": true}
#| export
def agreement(qmodel, session, x):
    """How closely an ORT session reproduces tinyq's quantized model on inputs x.

    TODO: return {"top1": fraction of rows whose argmax agrees (float), "max_lsb": the largest
    |logit difference| divided by the output scale of qmodel's last QuantizedLayer (float), "n":
    number of rows}. A model without a static QuantizedLayer at the end (its output has no scale) is
    a ValueError.

    APPROACH: the last QuantizedLayer of qmodel.modules() gives out_scale (check it is also the last
    layer with weights); run both on x (run_session for ORT).

    EXAMPLE: agreement(int8, ort_session(export_onnx(int8)), digits.x_test)
             -> {"top1": 1.0, "max_lsb": 0.0, "n": 500} on this machine
    """
    ### BEGIN SOLUTION
    layers = [m for m in qmodel.modules() if isinstance(m, (QuantizedLayer, nn.Linear, nn.Conv2d))]
    last = layers[-1] if layers else None
    if not isinstance(last, QuantizedLayer) or last.dynamic:
        raise ValueError("agreement: the model's last layer is not a static QuantizedLayer (no output scale)")
    ref = np.asarray(qmodel(x), dtype=np.float32)
    got = run_session(session, x)
    top1 = float(np.mean(ref.argmax(axis=1) == got.argmax(axis=1)))
    max_lsb = float(np.max(np.abs(got.astype(np.float64) - ref)) / np.float64(last.out_scale))
    return {"top1": top1, "max_lsb": max_lsb, "n": int(len(ref))}
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_agreement", "locked": true, "schema_version": 3, "solution": false}
session_int8, session_fp32 = ort_session(onnx_int8), ort_session(onnx_fp32)
agree = agreement(int8, session_int8, digits.x_test)
assert agree["n"] == 500 and agree["top1"] == 1.0 and agree["max_lsb"] <= 1.0 + 1e-6, agree
fp32_gap = float(np.max(np.abs(run_session(session_fp32, digits.x_test) - fp32(digits.x_test))))
print(f"ORT INT8 vs tinyq INT8: top-1 equal on {agree['top1']:.1%} of {agree['n']} images, "
      f"max difference {agree['max_lsb']:.3f} LSB")
print(f"ORT FP32 vs tinyq FP32: max difference {fp32_gap:.2e} (float summation order)")

# %% [markdown]
# ## 5. Latency: ORT INT8 against ORT FP32, one process
#
# Same runtime, same thread count, same inputs, interleaved by `tinyq.bench.compare` (warm-up, the
# median of several rounds). The ratio is the FP32 time over the INT8 time: above 1 INT8 is faster.
# Whatever it is on your machine is the answer; the table below prints it with the CPU it ran on.

# %% nbgrader={"grade": false, "grade_id": "ort_speed", "locked": false, "schema_version": 3, "solution": true}
#| export
def ort_speed(int8_session, fp32_session, x, repeats=5):
    """A tinyq.bench.Comparison of two ORT sessions on x: candidate = INT8, baseline = FP32.

    TODO: time run_session(int8_session, x) against run_session(fp32_session, x) with
    tinyq.bench.compare (repeats=repeats) and return its result; .speedup is FP32 time / INT8 time.

    APPROACH: two zero-argument callables (lambdas) around run_session; the input is made float32
    once, outside them, so the conversion is not timed.
    """
    ### BEGIN SOLUTION
    x = np.ascontiguousarray(x, dtype=np.float32)
    int8_call = lambda: run_session(int8_session, x)
    fp32_call = lambda: run_session(fp32_session, x)
    return compare(int8_call, fp32_call, repeats=repeats)
    ### END SOLUTION


# %%
#| export
def machine_description():
    """The CPU, the Python platform and the ONNX Runtime version: where a latency was measured."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        import onnxruntime
        runtime = f"onnxruntime {onnxruntime.__version__}"
    except ImportError:
        runtime = "no onnxruntime"
    return f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.machine()}, {runtime}"


# %% nbgrader={"grade": false, "grade_id": "test_ort_speed", "locked": true, "schema_version": 3, "solution": false}
speed = {}
for batch in (1, 500):
    _x = digits.x_test[:batch]
    speed[batch] = ort_speed(session_int8, session_fp32, _x)
    assert speed[batch].candidate_s > 0 and math.isfinite(speed[batch].speedup)
print(f"measured on {machine_description()}, 1 thread per session")
for batch, r in speed.items():
    print(f"batch {batch:3d}: ORT INT8 {r.candidate_s * 1e3:8.3f} ms, ORT FP32 {r.baseline_s * 1e3:8.3f} ms, "
          f"FP32/INT8 = {r.speedup:.2f}x")

# %% [markdown]
# Reading the ratio honestly: this CNN is tiny (the cell below counts its multiply-adds per image),
# so per-call overheads — quantizing the input, the layout reorders ORT
# inserts around its int8 conv, requantizing between layers — weigh as much as the multiply-adds.
# INT8 wins where the matrices are large enough for the int8 dot-product instructions to dominate
# (module 19's uint8×int8 GEMM beat FP32 SGEMM at 1024³) and where memory bandwidth is the limit
# (4× fewer weight bytes). On a model this small, whatever ratio you measured is the truth.

# %%
macs = {name: int(np.prod(int8.get_submodule(name).w_q.shape)) * (64 if name.startswith("conv") else 1)
        for name in quantizable_layers(fp32)}          # both convs produce 8x8 outputs per channel
print("multiply-adds per image:", macs, f"total {sum(macs.values()):,}")

# %% [markdown]
# ## 6. The contrast: dynamic quantization in ONNX
#
# Dynamic quantization (module 17's `quantize_dynamic`) has no activation scales to calibrate: they
# are measured on each batch at run time. ONNX spells it with integer ops instead of QDQ:
#
# ```
# x --DynamicQuantizeLinear--> (x_q uint8, s_x, z_x)
# (x_q, W^T int8 initializer, z_x) --MatMulInteger--> acc int32 --Cast(float)--> * (s_x * s_w) --> + b
# ```
#
# `DynamicQuantizeLinear` takes the range $[\min(x, 0), \max(x, 0)]$ over the whole batch onto uint8
# $[0, 255]$ — the same grid as tinyq's signed asymmetric int8 shifted by 128, so the codes agree.
# `MatMulInteger` takes A (M, K) and B (K, N) with optional zero points and returns the exact int32
# product; the per-channel weight scale is applied after it, in float. The bias stays float32.

# %% nbgrader={"grade": false, "grade_id": "export_dynamic", "locked": false, "schema_version": 3, "solution": true}
#| export
def export_dynamic(model, input_shape=(1, 8, 8)):
    """An ONNX model of a dynamically quantized tinyq model (dynamic linear QuantizedLayers).

    TODO: for each top-level layer: a dynamic "linear" QuantizedLayer becomes the five nodes above
    (DynamicQuantizeLinear, MatMulInteger, Cast to float, Mul by (s_x * s_w), Add the bias when there
    is one), with initializers f"{name}.w_t" (the int8 codes transposed to (K, N)), f"{name}.w_scale"
    (float32 (N,)) and f"{name}.bias"; every other layer goes through float_layer. A static or conv
    QuantizedLayer is a ValueError. Return make_model(...).

    APPROACH: outputs named f"{name}.x_q", ".x_scale", ".x_zp" (DynamicQuantizeLinear has three),
    ".acc", ".acc_f", ".scale" (Mul of s_x by w_scale: shape (N,)), ".y"; the layer's output is
    f"{name}.out". Cast's `to` attribute is onnx.TensorProto.FLOAT.

    EXAMPLE: export_dynamic(quantize_dynamic(zoo.load("digits_mlp"))) -> 3 DynamicQuantizeLinear,
             3 MatMulInteger, 2 Relu, 1 Flatten, ...
    """
    ### BEGIN SOLUTION
    from onnx import TensorProto
    nodes, inits, x, n_out = [], [], INPUT, None
    for name, layer in model.named_children():
        if not isinstance(layer, QuantizedLayer):
            more, params, x = float_layer(name, layer, x)
            nodes += more
            inits += params
            continue
        if not layer.dynamic or layer.kind != "linear":
            raise ValueError(f"layer {name!r}: export_dynamic takes dynamic linear layers only")
        p = f"{name}."
        n_out = layer.w_q.shape[0]
        inits += [initializer(p + "w_t", np.ascontiguousarray(layer.w_q.T).astype(np.int8)),
                  initializer(p + "w_scale", layer.w_scale.astype(np.float32))]
        nodes += [node("DynamicQuantizeLinear", [x], [p + "x_q", p + "x_scale", p + "x_zp"]),
                  node("MatMulInteger", [p + "x_q", p + "w_t", p + "x_zp"], [p + "acc"]),
                  node("Cast", [p + "acc"], [p + "acc_f"], to=TensorProto.FLOAT),
                  node("Mul", [p + "x_scale", p + "w_scale"], [p + "scale"])]
        if layer.bias is None:
            nodes.append(node("Mul", [p + "acc_f", p + "scale"], [p + "out"]))
        else:
            inits.append(initializer(p + "bias", layer.bias.astype(np.float32)))
            nodes += [node("Mul", [p + "acc_f", p + "scale"], [p + "y"]),
                      node("Add", [p + "y", p + "bias"], [p + "out"])]
        x = p + "out"
    return make_model(nodes, inits, x, input_shape, n_out)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_export_dynamic", "locked": true, "schema_version": 3, "solution": false}
mlp = zoo.load("digits_mlp")
mlp_dyn = quantize_dynamic(mlp)
onnx_dyn = export_dynamic(mlp_dyn)
session_dyn = ort_session(onnx_dyn)
ops_dyn = optimized_ops(onnx_dyn)
_y_ort, _y_tq = run_session(session_dyn, digits.x_test), mlp_dyn(digits.x_test)
dyn_top1 = float(np.mean(_y_ort.argmax(1) == _y_tq.argmax(1)))
dyn_gap = float(np.max(np.abs(_y_ort - _y_tq)))
assert dyn_top1 >= 0.99 and dyn_gap < 1e-3 * float(np.abs(_y_tq).max()), (dyn_top1, dyn_gap)
try:
    export_dynamic(int8)
    raise AssertionError("export_dynamic must refuse static layers")
except ValueError:
    pass
print("dynamic export, as written:", dict(collections.Counter(n.op_type for n in onnx_dyn.graph.node)))
print("dynamic export, as ORT runs it:", dict(ops_dyn))
print(f"ORT dynamic vs tinyq dynamic MLP: top-1 equal on {dyn_top1:.1%}, max |difference| {dyn_gap:.2e}; "
      f"test accuracy FP32 {test_accuracy(mlp):.2%}, dynamic INT8 {nn.accuracy(_y_ort, digits.y_test):.2%}")

# %% [markdown]
# Static or dynamic? The static graph knows every scale ahead of time, so ORT can keep activations
# in int8 from layer to layer (`QLinearConv` reads and writes int8); the dynamic graph computes a
# min and a max over every activation tensor at run time and returns to float after every layer.
# Dynamic quantization is what you use when the activation ranges move too much between inputs to
# calibrate (transformer activations, module 22) or when the cost is in the weights (large Linear
# layers at batch 1): it saves 4× of weight bytes with no calibration data at all.

# %% [markdown]
# ## 7. GGUF: llama.cpp's file format
#
# A GGUF file is a header of key-value metadata, a table of tensor descriptions (name, shape, type,
# offset) and the aligned tensor data. For the quantized types the data is module 21's blocks: a row
# of $K$ weights is $K/32$ blocks of an fp16 scale followed by 32 int8 codes (Q8_0, 34 bytes) or 16
# bytes of packed nibbles (Q4_0, 18 bytes). A row can only be cut into blocks when $K$ is a multiple of
# 32; llama.cpp keeps the other tensors in a float type, and so do we: F32.
#
# The `gguf` package writes the container: `GGUFWriter(path, arch)`, then `add_tensor(name, data,
# raw_shape=..., raw_dtype=GGMLQuantizationType.Q8_0)` for bytes you quantized yourself (data is the
# uint8 array of shape (rows, bytes per row)), or `add_tensor(name, float32 array)` for F32, then
# `write_header_to_file()`, `write_kv_data_to_file()`, `write_tensors_to_file()`, `close()`.
# `GGUFReader(path).tensors` reads them back: each has `.name`, `.tensor_type`, `.shape` (GGUF's order:
# the row length first, i.e. reversed) and `.data` (the raw blocks for a quantized type).
#
# Each weight is stored as a 2-D matrix (out, fan-in) — a conv weight as its im2col rows — and read
# back in that shape.

# %% nbgrader={"grade": false, "grade_id": "write_gguf", "locked": false, "schema_version": 3, "solution": true}
#| export
def write_gguf(path, tensors, qtype="Q8_0", arch="tinyq"):
    """Write float tensors to a GGUF file, quantized with tinyq's Q8_0/Q4_0 where the rows allow it.

    tensors: {name: float array}; each is written as a 2-D matrix (shape[0], rest) in dict order.
    qtype: "Q8_0" or "Q4_0". Rows whose length is not a multiple of 32 are written as F32.

    TODO: return {name: "Q8_0" | "Q4_0" | "F32"}, the type each tensor was written with. An unknown
    qtype is a ValueError.

    APPROACH: gguf.GGUFWriter(path, arch); for each tensor: rows = float32 matrix; quantized: bytes =
    quantize_q8_0(rows) or quantize_q4_0(rows), reshaped to (rows, bytes per row), added with
    raw_shape=its shape and raw_dtype=gguf.GGMLQuantizationType[qtype]; else add the float32 matrix.
    Then the three write_* calls and close().

    EXAMPLE: write_gguf("m.gguf", {"fc1": w_64x512, "conv1": w_16x1x3x3}, "Q4_0")
             -> {"fc1": "Q4_0", "conv1": "F32"}
    """
    ### BEGIN SOLUTION
    import gguf
    encoders = {"Q8_0": quantize_q8_0, "Q4_0": quantize_q4_0}
    if qtype not in encoders:
        raise ValueError(f"write_gguf: qtype must be one of {GGUF_TYPES}, got {qtype!r}")
    writer = gguf.GGUFWriter(str(path), arch)
    written = {}
    for name, w in tensors.items():
        w = np.asarray(w, dtype=np.float32)
        rows = w.reshape(w.shape[0], -1)
        if rows.shape[1] % 32 == 0:
            data = encoders[qtype](rows).reshape(rows.shape[0], -1)
            writer.add_tensor(name, data, raw_shape=data.shape, raw_dtype=gguf.GGMLQuantizationType[qtype])
            written[name] = qtype
        else:
            writer.add_tensor(name, np.ascontiguousarray(rows))
            written[name] = "F32"
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return written
    ### END SOLUTION


# %% [markdown]
# Reading back: for each tensor of the file, its values as a float32 matrix of shape (rows, row
# length), dequantized with module 21's `dequantize_q8_0` / `dequantize_q4_0` for the block types.

# %% nbgrader={"grade": false, "grade_id": "read_gguf", "locked": false, "schema_version": 3, "solution": true}
#| export
def read_gguf(path):
    """{name: (type name, float32 matrix)} of every tensor in a GGUF file, in file order.

    TODO: open gguf.GGUFReader(path); for each tensor: its type name (tensor.tensor_type.name,
    e.g. "Q8_0"), and its values: F32 data as is; Q8_0/Q4_0 data dequantized with tinyq's
    dequantize_q8_0 / dequantize_q4_0; reshaped to (rows, row length) -- tensor.shape reversed. Any
    other type is a ValueError naming the tensor.

    APPROACH: shape = tuple(int(s) for s in reversed(tensor.shape)); raw block bytes are
    np.asarray(tensor.data).reshape(-1) as uint8.
    """
    ### BEGIN SOLUTION
    import gguf
    decoders = {"Q8_0": dequantize_q8_0, "Q4_0": dequantize_q4_0}
    out = {}
    for t in gguf.GGUFReader(str(path)).tensors:
        kind = t.tensor_type.name
        shape = tuple(int(s) for s in reversed(t.shape))
        if kind == "F32":
            values = np.asarray(t.data, dtype=np.float32)
        elif kind in decoders:
            values = decoders[kind](np.asarray(t.data, dtype=np.uint8).reshape(-1))
        else:
            raise ValueError(f"read_gguf: tensor {t.name!r} has type {kind}, not F32, Q8_0 or Q4_0")
        out[t.name] = (kind, values.reshape(shape).astype(np.float32))
    return out
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_gguf", "locked": true, "schema_version": 3, "solution": false}
import gguf

weights = {name: fp32.get_submodule(name).weight.data for name in quantizable_layers(fp32)}
gguf_dir = tempfile.mkdtemp(prefix="tinyq_gguf_")
gguf_report = {}
for qtype in GGUF_TYPES:
    path = os.path.join(gguf_dir, f"digits_cnn.{qtype}.gguf")
    types = write_gguf(path, weights, qtype)
    back = read_gguf(path)
    raw = {t.name: np.asarray(t.data).reshape(-1) for t in gguf.GGUFReader(path).tensors}
    for name, w in weights.items():
        rows = w.reshape(w.shape[0], -1)
        kind, values = back[name]
        assert kind == types[name] and values.shape == rows.shape
        if kind == "F32":
            assert np.array_equal(values, rows)
            continue
        theirs = gguf.quants.quantize(rows, gguf.GGMLQuantizationType[qtype]).reshape(-1)
        assert np.array_equal(raw[name], theirs), f"{name}: bytes differ from gguf-py's {qtype}"
        assert np.array_equal(values, gguf.quants.dequantize(theirs, gguf.GGMLQuantizationType[qtype])
                              .reshape(rows.shape))
    gguf_report[qtype] = (path, types, back)
    print(f"{qtype}: {os.path.getsize(path):,} bytes on disk, types {types}; "
          f"quantized tensors byte-identical to gguf.quants.quantize")

# %% [markdown]
# ## 8. The quantization card
#
# A model card for the quantized model: what was quantized and how, on what data, what it cost in
# accuracy, what it saved, how fast it ran and where — every value measured in this notebook, none
# typed in. `quantization_card(facts)` turns a dict of facts into markdown and refuses to write a
# card with a fact missing or a number that is not a number.
#
# The facts (keys): `model`, `method`, `layers` (list of dicts with `name`, `weights`,
# `activations`), `calibration` (text), `calibration_size` (int), `evaluation` (text),
# `accuracy_fp32`, `accuracy_quant` (fractions in [0, 1]), `size_fp32`, `size_quant` (bytes, ints > 0),
# `latency_fp32_s`, `latency_quant_s` (seconds > 0), `runtime` (text), `machine` (text),
# `higher_precision` (list of text; empty when every layer is quantized), `failure_modes` (list of
# text, at least one).
#
# The format (tests read it): a title `# Quantization card: {model}`; then the lines
# `- **Method**: {method}`, `- **Calibration**: {calibration}, {calibration_size} samples`,
# `- **Evaluation**: {evaluation}`; a table `| layer | weights | activations |` with one row per layer;
# `- **Accuracy**: FP32 {a:.2%}, quantized {b:.2%} ({(b - a) * 100:+.2f} pt)`;
# `- **Size**: FP32 {s:,} bytes, quantized {t:,} bytes ({s / t:.2f}x smaller)`;
# `- **Latency**: FP32 {l * 1e3:.3f} ms, quantized {m * 1e3:.3f} ms (FP32/quantized = {l / m:.2f}x) on {runtime}, {machine}`;
# `- **Kept in higher precision**: ` followed by the items joined with "; " (or `none`); and a section
# `## Known failure modes` with one `- ` line per item.

# %% nbgrader={"grade": false, "grade_id": "quantization_card", "locked": false, "schema_version": 3, "solution": true}
#| export
CARD_KEYS = ("model", "method", "layers", "calibration", "calibration_size", "evaluation", "accuracy_fp32",
             "accuracy_quant", "size_fp32", "size_quant", "latency_fp32_s", "latency_quant_s", "runtime",
             "machine", "higher_precision", "failure_modes")


def quantization_card(facts):
    """Markdown quantization card from measured facts (the keys of CARD_KEYS, the format above).

    TODO: check, then format. Raise ValueError when a key of CARD_KEYS is missing (name them all), an
    accuracy is not a finite number in [0, 1], a size is not an int > 0, a latency is not finite and
    > 0, or failure_modes is empty.

    APPROACH: one check at a time, each with its own message; then build the list of lines and
    join with "\\n".
    """
    ### BEGIN SOLUTION
    missing = [k for k in CARD_KEYS if k not in facts]
    if missing:
        raise ValueError(f"quantization_card: missing facts {missing}")
    f = facts
    for key in ("accuracy_fp32", "accuracy_quant"):
        v = f[key]
        if not (isinstance(v, (int, float, np.floating)) and math.isfinite(v) and 0 <= v <= 1):
            raise ValueError(f"quantization_card: {key} must be a fraction in [0, 1], got {v!r}")
    for key in ("size_fp32", "size_quant"):
        v = f[key]
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
            raise ValueError(f"quantization_card: {key} must be a positive int of bytes, got {v!r}")
    for key in ("latency_fp32_s", "latency_quant_s"):
        v = f[key]
        if not (isinstance(v, (int, float, np.floating)) and math.isfinite(v) and v > 0):
            raise ValueError(f"quantization_card: {key} must be seconds > 0, got {v!r}")
    if not f["failure_modes"]:
        raise ValueError("quantization_card: list at least one known failure mode")
    a, b = f["accuracy_fp32"], f["accuracy_quant"]
    s, t = int(f["size_fp32"]), int(f["size_quant"])
    lf, lq = f["latency_fp32_s"], f["latency_quant_s"]
    lines = [f"# Quantization card: {f['model']}", "",
             f"- **Method**: {f['method']}",
             f"- **Calibration**: {f['calibration']}, {f['calibration_size']} samples",
             f"- **Evaluation**: {f['evaluation']}", "",
             "| layer | weights | activations |", "|---|---|---|"]
    lines += [f"| {r['name']} | {r['weights']} | {r['activations']} |" for r in f["layers"]]
    lines += ["",
              f"- **Accuracy**: FP32 {a:.2%}, quantized {b:.2%} ({(b - a) * 100:+.2f} pt)",
              f"- **Size**: FP32 {s:,} bytes, quantized {t:,} bytes ({s / t:.2f}x smaller)",
              f"- **Latency**: FP32 {lf * 1e3:.3f} ms, quantized {lq * 1e3:.3f} ms "
              f"(FP32/quantized = {lf / lq:.2f}x) on {f['runtime']}, {f['machine']}",
              "- **Kept in higher precision**: " + ("; ".join(f["higher_precision"]) or "none"),
              "", "## Known failure modes", ""]
    lines += [f"- {item}" for item in f["failure_modes"]]
    return "\n".join(lines) + "\n"
    ### END SOLUTION


# %% [markdown]
# The facts for the static INT8 CNN, all measured above or here: sizes are the bytes of the
# serialized ONNX files (what ships), latency is ORT at batch 500 from section 5, and the failure
# modes are measured: how accuracy moves when the inputs leave the calibrated range (pixel values
# doubled: the int8 input clips at the top of its calibrated range, the float model does not clip), and
# the ORT option without which an AVX2 CPU computes another number.

# %% nbgrader={"grade": false, "grade_id": "test_quantization_card", "locked": true, "schema_version": 3, "solution": false}
def layer_rows(qmodel):
    rows = []
    for name in quantizable_layers(fp32):
        m = qmodel.get_submodule(name)
        if isinstance(m, QuantizedLayer):
            rows.append({"name": name, "weights": f"int{m.bits} symmetric, per output channel ({m.w_q.shape[0]} scales)",
                         "activations": f"int{m.act_bits} asymmetric per tensor (in s={m.in_scale:.4g} z={m.in_zp}, "
                                        f"out s={m.out_scale:.4g} z={m.out_zp}); bias int32"})
        else:
            rows.append({"name": name, "weights": "float32", "activations": "float32"})
    return rows


_shifted = digits.x_test * 2.0
shift_fp32 = nn.accuracy(fp32(_shifted), digits.y_test)
shift_int8 = nn.accuracy(int8(_shifted), digits.y_test)
sens8 = sensitivity(fp32, calib, lambda m: nn.accuracy(m(digits.x_calib), digits.y_calib))
card_facts = {
    "model": "tinyq zoo digits_cnn (2 conv + 2 linear, 8x8 digits)",
    "method": "static post-training quantization (module 17), exported as ONNX QDQ (opset 13), run by ONNX Runtime",
    "layers": layer_rows(int8),
    "calibration": "min-max observers on the calibration split of tinyq.data.load_digits",
    "calibration_size": int(len(digits.x_calib)),
    "evaluation": f"top-1 accuracy on the {len(digits.y_test)}-image test split (never used for calibration); "
                  f"ORT vs tinyq integer model: top-1 equal on {agree['top1']:.1%}, max {agree['max_lsb']:.2f} LSB",
    "accuracy_fp32": test_accuracy(fp32), "accuracy_quant": nn.accuracy(run_session(session_int8, digits.x_test),
                                                                         digits.y_test),
    "size_fp32": len(fp32_bytes), "size_quant": len(int8_bytes),
    "latency_fp32_s": speed[500].baseline_s, "latency_quant_s": speed[500].candidate_s,
    "runtime": "ONNX Runtime CPU, 1 thread, batch 500, ORT_ENABLE_ALL",
    "machine": machine_description(),
    "higher_precision": ["int32 biases and accumulators", "ReLU/max-pool run on dequantized values"] +
                        [f"no layer kept in FP32 (largest 8-bit sensitivity: {max(sens8, key=sens8.get)}, "
                         f"{max(sens8.values()) * 100:.1f} pt on the calibration split)"],
    "failure_modes": [
        f"inputs outside the calibrated range clip: with pixel values doubled, FP32 {shift_fp32:.2%} vs "
        f"INT8 {shift_int8:.2%}",
        "on x86 CPUs without VNNI ORT's u8s8 kernels saturate in int16 unless session.x64quantprecision=1 "
        f"(conv1 has product pairs up to {conv1_pair:,} > 32,767 in {conv1_frac:.1%} of its dot products)",
        "activations of 4 bits or fewer cannot be written as int8 QDQ (opset 21 int4 types needed)"],
}
card = quantization_card(card_facts)
assert card.startswith("# Quantization card") and "## Known failure modes" in card
try:
    quantization_card({k: v for k, v in card_facts.items() if k != "machine"})
    raise AssertionError("a card without its machine must be refused")
except ValueError:
    pass
print(card)

# %% [markdown]
# ## 9. The trade-off matrix
#
# Every method of the course on **one model**, the digits CNN, scored the same way: accuracy on the
# 500 test images against FP32, bytes from the real arrays each method stores (codes, scales, zero
# points, biases, and every layer left in float), and latency only where a real kernel runs it here:
#
# * ORT (section 5) runs FP32 and the static INT8 and QAT INT8 exports;
# * tinyq's integer path (module 17's numpy int32 layers) runs dynamic INT8 — a real integer
#   computation, but numpy has no int8 kernel, so its time says little about INT8 hardware;
# * QAT INT8 is a short fine-tune (module 18's `prepare_qat` / `train_qat` / `convert_qat`, one pass
#   over 512 training images at W8A8, 128 in a quick run). At 8 bits PTQ leaves QAT nothing to
#   recover (module 18 measures where it pays: W3A8); the row shows that a QAT model exports and runs
#   through the same QDQ path, and that a few steps of fine-tuning can move an image or two;
# * the weight-only 4-bit, FP8, NF4 and GGUF rows are **simulated** here: their weights are
#   dequantized to float32 and the model runs in float. Their accuracy is real, their size is real,
#   a latency would need the kernel (llama.cpp for GGUF, module 21's GEMV for W4) and is shown as
#   "—, simulated".
#
# The weight-only methods apply to each layer's weight as a matrix (out, fan-in); a conv weight is
# its im2col matrix (out, C·kh·kw). Groups run along the fan-in with the largest divisor up to 128
# (conv1 has fan-in 9: one group per row), as in module 21. GGUF Q4_0 quantizes the layers whose
# fan-in is a multiple of 32 (fc1, fc2) and keeps conv1/conv2 in F32, like llama.cpp. W4 RTN, GPTQ
# and AWQ are module 22's functions (`tinyq.llm_ptq`), applied to **every** layer, the convs through
# their im2col matrices; GPTQ's Hessian and AWQ's activation statistics come from each layer's input
# rows in the FP32 model on the 200 calibration images.

# %% nbgrader={"grade": false, "grade_id": "pareto_front", "locked": false, "schema_version": 3, "solution": true}
#| export
def pareto_front(sizes, errors):
    """Indices of the points (size, error) that no other point dominates, by increasing size.

    A point dominates another when it is no larger in both size and error and strictly smaller in
    at least one. Equal points do not dominate each other (both stay). Ties in size: smaller error first.

    TODO: return a list of int indices into the inputs. sizes and errors of different lengths, or
    containing NaN, are a ValueError.

    APPROACH: sort the indices by (size, error); walk them keeping the best error seen so far: a point
    is on the front when its error is below it, or equal to a kept point's with the same size.

    EXAMPLE: pareto_front([4, 1, 2, 3], [0.0, 0.5, 0.2, 0.3]) -> [1, 2, 0]   (3 is dominated by 2)
    """
    ### BEGIN SOLUTION
    sizes = np.asarray(sizes, dtype=np.float64)
    errors = np.asarray(errors, dtype=np.float64)
    if sizes.shape != errors.shape or sizes.ndim != 1:
        raise ValueError(f"pareto_front: sizes {sizes.shape} and errors {errors.shape} must be 1-D of one length")
    if np.isnan(sizes).any() or np.isnan(errors).any():
        raise ValueError("pareto_front: NaN in sizes or errors")
    front, best, last = [], math.inf, None
    for i in sorted(range(len(sizes)), key=lambda i: (sizes[i], errors[i])):
        if errors[i] < best:
            front.append(i)
            best, last = errors[i], (sizes[i], errors[i])
        elif last == (sizes[i], errors[i]):
            front.append(i)
    return front
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "test_pareto_front", "locked": true, "schema_version": 3, "solution": false}
assert pareto_front([4, 1, 2, 3], [0.0, 0.5, 0.2, 0.3]) == [1, 2, 0]
assert pareto_front([1, 1, 2], [0.3, 0.3, 0.1]) == [0, 1, 2]
assert pareto_front([1, 2], [0.1, 0.1]) == [0]
print("pareto_front: ok")

# %% [markdown]
# ### Building the rows
#
# Helpers of the analysis (not exercises): `with_weights` makes a float copy of the CNN whose weight
# matrices are replaced by what a method stores and returns (dequantized) with the bytes it stores;
# `layer_inputs` records the input rows each layer sees on the calibration images (im2col rows for a
# conv), which GPTQ and AWQ need.

# %%
from tinyq import llm_ptq
from tinyq.int4 import dequantize_nf4, quantize_int4_groups, quantize_nf4
from tinyq.low_precision import fp8_dequantize, fp8_quantize
from tinyq.qat import convert_qat, prepare_qat, train_qat


def largest_group(k, limit=128):
    return max(d for d in range(1, min(k, limit) + 1) if k % d == 0)


def with_weights(method):
    """(model, bytes): FP32 digits CNN copy whose layer weights are method(name, w2d) -> (w_hat2d, nbytes)."""
    model = zoo.load("digits_cnn")
    total = sum(p.data.nbytes for name, p in model.named_parameters() if p.data.ndim < 2)   # biases: FP32
    for name in quantizable_layers(model):
        param = model.get_submodule(name).weight
        w2d = param.data.reshape(param.data.shape[0], -1)
        w_hat, nbytes = method(name, w2d)
        param.data = np.asarray(w_hat, dtype=np.float32).reshape(param.data.shape)
        total += int(nbytes)
    return model, total


def layer_inputs(model, x):
    """{layer name: (rows, fan-in) float32 input rows of that layer on x}, im2col rows for a conv."""
    seen = {}
    for name, layer in model.named_children():
        if isinstance(layer, nn.Conv2d):
            k = layer.kernel_size
            seen[name] = nn.im2col(x, k, k, layer.stride, layer.padding)
        elif isinstance(layer, nn.Linear):
            seen[name] = x.reshape(-1, x.shape[-1])
        x = layer(x)
    return seen


def w4_bytes(w_hat, g):
    """Bytes of the W4 format (module 21): packed 4-bit codes plus one float32 scale per group."""
    packed, scale, _ = quantize_int4_groups(w_hat, g)
    return packed.nbytes + scale.nbytes


def rtn_method(name, w):
    g = largest_group(w.shape[1])
    w_hat = llm_ptq.rtn_quantize(w, bits=4, group_size=g)
    return w_hat, w4_bytes(w_hat, g)


def gptq_method(name, w):
    g = largest_group(w.shape[1])
    w_hat = llm_ptq.gptq_quantize(w, calib_inputs[name], bits=4, group_size=g)
    return w_hat, w4_bytes(w_hat, g)


def awq_method(name, w):
    g = largest_group(w.shape[1])
    w_hat, s = llm_ptq.awq_quantize(w, calib_inputs[name], bits=4, group_size=g)
    return w_hat, w4_bytes(w_hat, g) + s.nbytes         # AWQ also stores its input-channel scales


def fp8_method(name, w):
    codes, scale = fp8_quantize(w, "float8_e4m3fn")
    return fp8_dequantize(codes, scale, "float8_e4m3fn"), codes.nbytes + np.float32(scale).nbytes


def nf4_method(name, w):
    packed, absmax = quantize_nf4(w)
    return dequantize_nf4(packed, absmax, w.shape), packed.nbytes + absmax.nbytes


def gguf_q4_method(name, w):
    kind, values = gguf_report["Q4_0"][2][name]           # read back from the Q4_0 file of section 7
    return values, (quantize_q4_0(w).nbytes if kind == "Q4_0" else w.nbytes)


def qat_int8():
    """A short QAT fine-tune at W8A8 (module 18), converted to integer layers."""
    n = 128 if QUICK else 512
    model = prepare_qat(fp32, weight_bits=8, act_bits=8)
    model(digits.x_calib)                                       # observers see calibration data first
    train_qat(model, digits.x_train[:n], digits.y_train[:n], epochs=1, lr=1e-4)
    return convert_qat(model)


_t0 = time.perf_counter()
rows = {}          # label -> dict(model, bytes, latency (s or None), kernel)
rows["FP32"] = dict(model=fp32, bytes=model_nbytes(fp32), kernel="ORT FP32")
rows["dynamic INT8"] = dict(model=quantize_dynamic(fp32), kernel="tinyq int32 (numpy)")
rows["dynamic INT8"]["bytes"] = model_nbytes(rows["dynamic INT8"]["model"])
rows["static INT8"] = dict(model=int8, bytes=model_nbytes(int8), kernel="ORT QLinearConv/QGemm")
_qat = qat_int8()
rows["QAT INT8"] = dict(model=_qat, bytes=model_nbytes(_qat), kernel="ORT QLinearConv/QGemm")
calib_inputs = layer_inputs(fp32, digits.x_calib[:64] if QUICK else digits.x_calib)
for label, method in [("W4 RTN g≤128", rtn_method), ("W4 GPTQ g≤128", gptq_method), ("W4 AWQ g≤128", awq_method)]:
    rows[label] = dict(zip(("model", "bytes"), with_weights(method)), kernel="—, simulated")
rows["FP8 E4M3 (per tensor)"] = dict(zip(("model", "bytes"), with_weights(fp8_method)), kernel="—, simulated")
rows["NF4 (blocks of 64)"] = dict(zip(("model", "bytes"), with_weights(nf4_method)), kernel="—, simulated")
rows["GGUF Q4_0 (fc layers)"] = dict(zip(("model", "bytes"), with_weights(gguf_q4_method)), kernel="—, simulated")
print(f"rows built in {time.perf_counter() - _t0:.1f} s")

# %% [markdown]
# Latency: one interleaved run (`tinyq.bench.time_interleaved`) of every row that has a real kernel,
# a forward pass over the 500 test images each, one thread for ORT.

# %%
session_qat = ort_session(export_onnx(rows["QAT INT8"]["model"]))
_x = np.ascontiguousarray(digits.x_test)
timed = {"FP32": functools.partial(run_session, session_fp32, _x),
         "static INT8": functools.partial(run_session, session_int8, _x),
         "QAT INT8": functools.partial(run_session, session_qat, _x),
         "dynamic INT8": functools.partial(rows["dynamic INT8"]["model"], _x)}
for label, t in zip(timed, time_interleaved(list(timed.values()), repeats=3 if QUICK else 5, warmup=1)):
    rows[label]["latency"] = t
base_acc = test_accuracy(fp32)
table = []
for label, r in rows.items():
    acc = test_accuracy(r["model"])
    table.append((label, acc, (acc - base_acc) * 100, r["bytes"], r.get("latency"), r["kernel"]))
print(f"{'method':24s} {'test acc':>8s} {'Δ pt':>6s} {'bytes':>9s} {'smaller':>8s} {'ms/500 img':>11s}  kernel")
for label, acc, delta, nbytes, lat, kernel in table:
    ms = f"{lat * 1e3:11.2f}" if lat is not None else f"{'—':>11s}"
    print(f"{label:24s} {acc:8.2%} {delta:+6.2f} {nbytes:9,d} {rows['FP32']['bytes'] / nbytes:7.2f}x {ms}  {kernel}")
print(f"\nmeasured on {machine_description()}")

# %% [markdown]
# ### The Pareto plot
#
# Size against accuracy loss: a method is worth considering only if no other method is both smaller
# and at least as accurate. Your `pareto_front` picks them; the line joins them.

# %%
sizes = [t[3] for t in table]
errors = [1 - t[1] for t in table]
front = pareto_front(sizes, errors)
fig, ax = plt.subplots(figsize=(8, 4.4))
for i, (label, acc, delta, nbytes, lat, kernel) in enumerate(table):
    marker = "o" if lat is not None else "x"
    ax.scatter(nbytes / 1024, delta, marker=marker, s=60, color="tab:red" if i in front else "tab:gray")
    ax.annotate(label, (nbytes / 1024, delta), textcoords="offset points", xytext=(5, 4), fontsize=8)
ax.plot([sizes[i] / 1024 for i in front], [table[i][2] for i in front], "--", color="tab:red", lw=1,
        label="Pareto front (your pareto_front)")
ax.set_xscale("log")
ax.set_xlabel("bytes stored (KiB, log scale)")
ax.set_ylabel("test accuracy − FP32 (pt)")
ax.set_title("Digits CNN: accuracy against size (o: runs on a real kernel here, x: simulated)")
ax.legend(loc="lower right")
fig.tight_layout()
print("on the front:", [table[i][0] for i in front])

# %% [markdown]
# Reading the matrix:
#
# * **Accuracy.** The 500-image test split moves in steps of 0.2 pt: differences of one or two
#   images are noise, not a ranking. Compare the 8-bit rows with the 4-bit ones, and GPTQ/AWQ with
#   RTN at the same bytes: that is where the Hessian and the activation statistics are meant to pay.
# * **Size** ("smaller" is FP32's bytes over the row's). 8-bit formats stay under 4× because the
#   scales, the int32 biases and the multipliers count too; 4-bit formats stay under 8× for the same
#   reason, and AWQ also stores its input-channel scales. GGUF Q4_0 here quantizes only fc1 and fc2
#   (conv2, the second largest layer, stays F32), so it saves less. Every byte is counted from the
#   arrays each format really stores.
# * **Latency.** Only ORT and tinyq's numpy path run integer code here; ORT's INT8/FP32 ratio is the
#   one to quote for this CPU (section 5). The weight-only rows are simulated: a number in that column
#   would be invented.

# %% [markdown]
# ## Summary
#
# * A QDQ graph states an integer computation in float ops; ORT fuses `DQ → Conv → Q` into
#   `QLinearConv` (and `QGemm`) and reproduces tinyq's integer model exactly here.
# * Validate what you export: the checker accepts a wrong zero point dtype; your validator names the
#   node and the problem before a runtime silently computes something else.
# * `session.x64quantprecision` keeps ORT's int8 kernels exact on AVX2 CPUs without VNNI.
# * GGUF stores module 21's blocks; writing them with your encoders gives gguf-py's bytes.
# * A quantization card and a trade-off matrix are generated from measurements, never typed in.
