"""Library int8 GEMMs to measure the course's kernels against (hand-written support, not an exercise).

ONNX Runtime's `MatMulInteger` and PyTorch's dynamic int8 `Linear` (fbgemm) are what learners use
after this course; module 19's notebook and benchmarks/cpu_kernels.py time them beside the learner's
kernels. Neither package is a dependency of tinyq: each function returns None where its library is
missing, and callers report that instead of failing.
"""
from __future__ import annotations

import numpy as np


def _cpu_session(model, threads):
    """An ONNX Runtime CPU session of `model` on `threads` threads that do not spin between calls."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")   # no spinning threads
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def ort_matmul_integer(w_s8, threads):
    """ONNX Runtime MatMulInteger: uint8 A (M, K) times the constant int8 W.T (K, N) -> int32, as a
    function of A; None where onnx or onnxruntime is missing."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    n_out, k_in = w_s8.shape
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["A", "B"], ["Y"])], "matmul_integer",
        [helper.make_tensor_value_info("A", TensorProto.UINT8, [None, k_in])],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, [None, n_out])],
        [numpy_helper.from_array(np.ascontiguousarray(w_s8.T), "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    session = _cpu_session(model, threads)
    return lambda a_u8: session.run(None, {"A": a_u8})[0]


def torch_dynamic_linear(w_f32, threads):
    """PyTorch's dynamic int8 Linear (fbgemm on x86): float32 x -> float32 y, int8 weights; None where
    torch is missing."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    if "fbgemm" in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = "fbgemm"
    layer = torch.nn.Linear(w_f32.shape[1], w_f32.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(w_f32))
    qlayer = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(layer), {torch.nn.Linear}, dtype=torch.qint8)

    def run(x_f32):
        with torch.no_grad():
            return qlayer(torch.from_numpy(x_f32))
    return run


def ort_matmul_nbits(packed, scales, k_in, group_size, threads, *, int8_activations=False):
    """ONNX Runtime's MatMulNBits (com.microsoft), the 4-bit GEMM/GEMV it runs for LLM weights: x
    float32 (M, K) times the constant W.T, W given as module 21 packs it (signed codes, ONNX nibble
    order, one float32 scale per group along K), as a function of x; None where onnx or onnxruntime
    is missing. `int8_activations` asks ORT to quantize x to int8 blocks (accuracy_level 4), its
    W4A8 path; otherwise it computes in float32.

    MatMulNBits stores unsigned codes with a default zero point of 8: code + 8 is the signed code
    with its sign bit flipped, so each byte is `packed ^ 0x88`."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    n_out = packed.shape[0]
    blocks = k_in // group_size
    weights = (np.ascontiguousarray(packed) ^ np.uint8(0x88)).reshape(n_out, blocks, group_size // 2)
    node = helper.make_node("MatMulNBits", ["A", "B", "scales"], ["Y"], domain="com.microsoft",
                            K=k_in, N=n_out, bits=4, block_size=group_size,
                            accuracy_level=4 if int8_activations else 0)
    graph = helper.make_graph(
        [node], "matmul_nbits",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, [None, k_in])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, n_out])],
        [numpy_helper.from_array(weights, "B"),
         numpy_helper.from_array(np.ascontiguousarray(scales, dtype=np.float32).reshape(-1), "scales")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    session = _cpu_session(model, threads)
    return lambda x: session.run(None, {"A": np.asarray(x, dtype=np.float32).reshape(-1, k_in)})[0]
