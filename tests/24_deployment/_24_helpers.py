"""Helpers of module 24's tests (public)."""
import functools

import numpy as np

from tinyq import zoo
from tinyq.data import load_digits
from tito.grading import kit


def oracle():
    """The instructor's oracle module, or None in the student flavour."""
    return kit.load_oracle("_24_hidden_oracle")


def reference(name):
    """Function `name` of the oracle where it exists, else the learner's own (tinyq.deployment)."""
    orc = oracle()
    if orc is not None:
        return getattr(orc, name)
    import tinyq.deployment as dep
    return getattr(dep, name)


def digits():
    return load_digits()


@functools.lru_cache(maxsize=None)
def fp32(name="digits_cnn"):
    return zoo.load(name)


@functools.lru_cache(maxsize=None)
def int8(layers=None):
    """Module 17's static INT8 digits CNN (layers: the names to quantize, default all)."""
    from tinyq.ptq import quantize_model
    return quantize_model(fp32(), list(digits().batches("calib", 50)),
                          layers=None if layers is None else list(layers))


@functools.lru_cache(maxsize=None)
def dynamic_mlp():
    from tinyq.ptq import quantize_dynamic
    return quantize_dynamic(fp32("digits_mlp"))


def session(model, onnx_model=None):
    """An ORT session (tinyq.deployment.ort_session) of `onnx_model`, or of the reference export of `model`."""
    import tinyq.deployment as dep
    return dep.ort_session(onnx_model if onnx_model is not None else reference("export_onnx")(model))


def ort_logits(onnx_model, x):
    import tinyq.deployment as dep
    return dep.run_session(session(None, onnx_model), x)


def out_scale(qmodel):
    return float(qmodel.fc2.out_scale)


def op_counts(onnx_model):
    from collections import Counter
    return Counter(n.op_type for n in onnx_model.graph.node)


def initializers(onnx_model):
    from onnx import numpy_helper
    return {i.name: numpy_helper.to_array(i) for i in onnx_model.graph.initializer}


def copy_model(onnx_model):
    import onnx
    m = onnx.ModelProto()
    m.CopyFrom(onnx_model)
    return m


def set_initializer(onnx_model, name, array):
    """Replace initializer `name` of onnx_model (in place) by `array`."""
    from onnx import numpy_helper
    for i in onnx_model.graph.initializer:
        if i.name == name:
            i.CopyFrom(numpy_helper.from_array(np.asarray(array), name))
            return onnx_model
    raise KeyError(name)


class FakeSession:
    """Stands for an ORT session: returns fixed logits (for agreement) or sleeps (for ort_speed)."""

    def __init__(self, logits=None, sleep_s=0.0):
        self.logits, self.sleep_s = logits, sleep_s

    def get_inputs(self):
        class Input:
            name = "input"
        return [Input()]

    def run(self, outputs, feeds):
        if self.sleep_s:
            import time
            time.sleep(self.sleep_s)
        x = feeds["input"]
        return [self.logits[:len(x)] if self.logits is not None else np.zeros((len(x), 10), np.float32)]


def card_facts():
    """A complete set of facts for quantization_card (made-up values: the tests check formatting)."""
    return {
        "model": "digits_cnn", "method": "static PTQ, ONNX QDQ",
        "layers": [{"name": "conv1", "weights": "int8 per channel", "activations": "int8 per tensor"},
                   {"name": "fc2", "weights": "float32", "activations": "float32"}],
        "calibration": "min-max on calib", "calibration_size": 200, "evaluation": "top-1 on 500 test images",
        "accuracy_fp32": 0.986, "accuracy_quant": 0.982, "size_fp32": 154073, "size_quant": 43649,
        "latency_fp32_s": 0.003353, "latency_quant_s": 0.006819, "runtime": "ORT 1 thread",
        "machine": "AMD EPYC", "higher_precision": ["fc2 in FP32", "int32 bias"],
        "failure_modes": ["inputs beyond the calibrated range clip", "AVX2 saturation"],
    }
