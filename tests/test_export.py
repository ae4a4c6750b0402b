"""Serving: every `model.export` format that serves stock `MaxPooling2D` from
a backend serves `MaxPool2D` too, and the artifact, run in its own runtime in
a process where neither Keras nor this package is importable, gives the Keras
model's outputs: TensorFlow for tf_saved_model, onnxruntime for onnx, the
LiteRT interpreter for litert (TensorFlow not importable either: LiteRT's
built-in ops alone, no Flex delegate, as on a phone), OpenVINO's runtime for
openvino, torch for torch (`torch.export.load`). Ours also keeps NaN: a window holding NaN gives NaN in the artifact.

What stock cannot serve is asserted as a failure, with its error, so that an
upstream fix is noticed. Where ours does not yet serve what it should, the
case is a strict xfail naming the backend module that needs the fix.
"""

import importlib
import importlib.util

import keras
import numpy as np
import pytest

import keras_jax_pool as kjp
from keras_jax_pool import reference
from tests.conftest import BACKEND, run_python, to_numpy

pytestmark = pytest.mark.skipif(BACKEND == "numpy", reason="the numpy backend has no model.export")

FORMATS = ("tf_saved_model", "onnx", "litert", "openvino", "torch")
FILE_NAMES = {
    "tf_saved_model": "served",
    "onnx": "model.onnx",
    "litert": "model.tflite",
    "openvino": "model.xml",
    "torch": "model.pt2",
}

# How each runtime loads the artifact at `path` and runs `x`; it must return
# the model's outputs in order.
SERVE = {
    "tf_saved_model": (
        "import tensorflow as tf\n"
        "served = tf.saved_model.load(path)\n"
        "run = lambda x: [y.numpy() for y in served.serve(tf.constant(x))]\n"
    ),
    "onnx": (
        "import onnxruntime\n"
        "session = onnxruntime.InferenceSession(path)\n"
        "run = lambda x: session.run(None, {session.get_inputs()[0].name: x})\n"
    ),
    "litert": (
        "sys.modules['tensorflow'] = None  # so no Flex delegate can be found\n"
        "from ai_edge_litert.interpreter import Interpreter\n"
        "runner = Interpreter(model_path=path).get_signature_runner()\n"
        "[name] = runner.get_input_details()\n"
        "def run(x):\n"
        "    outputs = runner(**{name: x})\n"
        "    return [outputs[k] for k in sorted(outputs, key=lambda k: int(k.rpartition('_')[2]))]\n"
    ),
    # OpenVINO's CPU plugin may compute in bfloat16 by default; f32 is what
    # the Keras model computes.
    "openvino": (
        "import openvino\n"
        "compiled = openvino.Core().compile_model(path, 'CPU', {'INFERENCE_PRECISION_HINT': 'f32'})\n"
        "run = lambda x: [compiled(x)[output] for output in compiled.outputs]\n"
    ),
    "torch": (
        "import torch\n"
        "program = torch.export.load(path).module()\n"
        "run = lambda x: [y.numpy() for y in program(torch.from_numpy(x))]\n"
    ),
}
RUNTIME_MODULES = {
    "tf_saved_model": "tensorflow",
    "onnx": "onnxruntime",
    "litert": "ai_edge_litert",
    "openvino": "openvino",
    "torch": "torch",
}
EXPORTER_MODULES = {("tensorflow", "onnx"): "tf2onnx", ("jax", "onnx"): "jax2onnx"}


# Measured with the pinned stack (Keras 3.15.1): where stock cannot serve a
# format from a backend, the error it fails with (module, class, message
# pattern) and why.
STOCK_CANNOT = {
    ("jax", "onnx"): (
        "builtins", "AssertionError",  # raised when the runtime's process fails
        "Unsupported pooling size",
        "jax2onnx lowers reduce_window max to one MaxPool over all 4 axes, which onnxruntime refuses",
    ),
    ("jax", "litert"): (
        "builtins", "ValueError",
        "LiteRT export requires TensorFlow or PyTorch backend",
        "Keras exports LiteRT from tensorflow and torch only",
    ),
    ("jax", "openvino"): (
        "openvino.frontend", "OpConversionFailure",
        "XlaCallModule",
        "jax2tf serializes the model as an XlaCallModule op, which OpenVINO cannot convert",
    ),
    **{
        (backend, "torch"): (
            "builtins", "ValueError",
            "Torch export requires PyTorch backend",
            "Keras exports torch.export programs from torch only",
        )
        for backend in ("jax", "tensorflow")
    },
    ("torch", "tf_saved_model"): (
        "torch._dynamo.exc", "UserError",
        "dynamic_shapes",
        "torch.export rejects the dynamic_shapes Keras passes, even for a stock Dense model",
    ),
}
# Where ours serves what stock cannot.
OURS_BEYOND_STOCK = {("jax", "onnx")}
# Where no exporter can be installed with the pinned stack: skipped.
NOT_INSTALLABLE = {
    ("torch", "litert"): "litert-torch cannot be installed with the pins: 0.8-0.9.3 need torch<2.13, "
    "0.10.0 needs typing-extensions<4.13 (through xdsl), and 4.16.0 is pinned",
}

# Where ours does not serve yet what it must, and which module needs the fix.
# Strict: a fix makes the test fail until its entry is removed.
OURS_PENDING = {
    ("jax", "onnx", "finite"): "backends/jax.py: lax.platform_dependent has no jax2onnx lowering "
    "(No plugins registered for primitive 'platform_index'), and a 4-axis reduce_window max "
    "becomes a MaxPool onnxruntime refuses",
    ("jax", "tf_saved_model", "nan"): "backends/jax.py: the artifact runs TensorFlow's XLA, whose "
    "max drops NaN (lax.max(1, nan) is 1 there, and reduce_window max alike), and the "
    "platform_dependent branch without the NaN guard is baked in",
}


def _pending(check):
    """The formats, each marked strict xfail where ours waits on a fix."""
    cases = []
    for fmt in FORMATS:
        reason = OURS_PENDING.get((BACKEND, fmt, check))
        if check == "nan":  # what cannot serve at all cannot keep NaN
            reason = reason or OURS_PENDING.get((BACKEND, fmt, "finite"))
        marks = [pytest.mark.xfail(strict=True, reason=f"waits on {reason}")] if reason else []
        cases.append(pytest.param(fmt, marks=marks))
    return cases


POOLS = {
    # Overlapping windows both ways, "same" padding on both axes.
    "same": dict(pool_size=(3, 2), strides=(2, 1), padding="same"),
    "valid": dict(pool_size=(3, 3), strides=(2, 2), padding="valid"),
}


def _model(pool):
    """Two poolings of the input (checked exactly, NaN included) and logits
    through Conv2D, pooling and Dense (checked to float32 rounding)."""
    inputs = keras.Input((9, 8, 2))
    same = pool(name="pool_same", **POOLS["same"])(inputs)
    valid = pool(name="pool_valid", **POOLS["valid"])(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(same)
    x = pool(name="pool_after_conv")(x)
    logits = keras.layers.Dense(3, name="head")(keras.layers.Flatten(name="flatten")(x))
    return keras.Model(inputs, [same, valid, logits])


def _inputs(rng, fmt):
    """Integers (many ties), in a batch of 2 where the artifact's batch size
    stays dynamic: all but torch.export's, which Keras fixes at 1."""
    return rng.integers(-5, 6, size=(1 if fmt == "torch" else 2, 9, 8, 2)).astype("float32")


def _export(pool, fmt, tmp_path, x, **export_kwargs):
    _skip_unless_installed(fmt)
    model = _model(pool)
    model(x)  # built and called once, as model.export requires
    path = tmp_path / FILE_NAMES[fmt]
    model.export(str(path), format=fmt, verbose=False, **export_kwargs)
    return model, path


def _skip_unless_installed(fmt):
    if (BACKEND, fmt) in NOT_INSTALLABLE:
        pytest.skip(NOT_INSTALLABLE[BACKEND, fmt])
    for module in (RUNTIME_MODULES[fmt], EXPORTER_MODULES.get((BACKEND, fmt))):
        if module and importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (no wheel for this platform?): `pip install -e '.[export]'`")


def _serve(fmt, path, x, tmp_path):
    """The artifact's outputs for `x`, from `fmt`'s runtime in a fresh process
    where neither Keras nor this package can be imported."""
    np.save(tmp_path / "x.npy", x)
    run_python(
        "import sys\n"
        "sys.modules['keras'] = sys.modules['keras_jax_pool'] = None  # serving needs the runtime alone\n"
        "import numpy as np\n"
        f"path = {str(path)!r}\n"
        f"{SERVE[fmt]}"
        f"outputs = run(np.load({str(tmp_path / 'x.npy')!r}))\n"
        f"np.savez({str(tmp_path / 'y.npz')!r}, *outputs)\n",
        backend="tensorflow",
    )
    served = np.load(tmp_path / "y.npz")
    return [served[f"arr_{i}"] for i in range(len(served.files))]


def _export_and_compare(pool, fmt, tmp_path, x):
    model, path = _export(pool, fmt, tmp_path, x)
    *served_pooled, served_logits = _serve(fmt, path, x, tmp_path)
    *pooled, logits = (to_numpy(y) for y in model(x))
    assert len(served_pooled) == len(pooled)
    for served, expected in zip(served_pooled, pooled):
        np.testing.assert_array_equal(served, expected)  # a maximum is exact
    # Convolutions and matrix products may sum in another order.
    np.testing.assert_allclose(served_logits, logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fmt", FORMATS)
def test_stock_serves_or_fails_as_recorded(fmt, tmp_path, rng):
    if (BACKEND, fmt) not in STOCK_CANNOT:
        _export_and_compare(keras.layers.MaxPooling2D, fmt, tmp_path, _inputs(rng, fmt))
        return
    module, error, message, _ = STOCK_CANNOT[BACKEND, fmt]
    with pytest.raises(getattr(importlib.import_module(module), error), match=message):
        _export_and_compare(keras.layers.MaxPooling2D, fmt, tmp_path, _inputs(rng, fmt))


def _skip_where_stock_cannot(fmt):
    if (BACKEND, fmt) in STOCK_CANNOT and (BACKEND, fmt) not in OURS_BEYOND_STOCK:
        pytest.skip(f"stock cannot serve {fmt} from {BACKEND} either: {STOCK_CANNOT[BACKEND, fmt][3]}")


@pytest.mark.parametrize("fmt", _pending("finite"))
def test_ours_serves_wherever_stock_does(fmt, tmp_path, rng):
    _skip_where_stock_cannot(fmt)
    _export_and_compare(kjp.MaxPool2D, fmt, tmp_path, _inputs(rng, fmt))


@pytest.mark.parametrize("fmt", _pending("nan"))
def test_ours_served_keeps_nan(fmt, tmp_path, rng):
    _skip_where_stock_cannot(fmt)
    _assert_served_keeps_nan(fmt, tmp_path, rng)


@pytest.mark.skipif(BACKEND != "torch", reason="exercises torch's dynamo ONNX exporter")
def test_ours_served_keeps_nan_through_torch_dynamo_onnx(tmp_path, rng, monkeypatch):
    """With a static input signature, Keras exports onnx from torch through
    torch.export (the dynamo exporter) instead of torch.jit."""
    import torch

    exported = []  # the `dynamo` flag of each torch.onnx.export that returned
    export = torch.onnx.export

    def recorded(*args, **kwargs):
        result = export(*args, **kwargs)
        exported.append(kwargs.get("dynamo"))
        return result

    monkeypatch.setattr(torch.onnx, "export", recorded)
    shape = _inputs(rng, "onnx").shape
    _assert_served_keeps_nan("onnx", tmp_path, rng, input_signature=[keras.InputSpec(shape=shape, dtype="float32")])
    assert exported == [True], "Keras fell back to the torch.jit exporter"


def _assert_served_keeps_nan(fmt, tmp_path, rng, **export_kwargs):
    x = _inputs(rng, fmt)
    # NaN first, inside and last in a window; in "same" padding's border rows.
    x[0, 0, 0, 0] = x[0, 4, 3, 1] = x[0, 8, 7, 0] = x[0, 2, 5, 1] = np.nan
    model, path = _export(kjp.MaxPool2D, fmt, tmp_path, x, **export_kwargs)
    served = _serve(fmt, path, x, tmp_path)
    for (name, pool), served_pooled, pooled in zip(POOLS.items(), served, model(x)):
        expected = reference.downsample_images(x, pool["pool_size"], pool["strides"], padding=pool["padding"])
        assert np.isnan(expected).any(), name
        np.testing.assert_array_equal(to_numpy(pooled), expected, err_msg=f"the Keras model, {name}")
        np.testing.assert_array_equal(served_pooled, expected, err_msg=f"the artifact, {name}")
