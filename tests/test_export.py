"""Serving: every `model.export` format that serves stock `MaxPooling1D`,
`MaxPooling2D` or `MaxPooling3D` from a backend serves `MaxPool1D`,
`MaxPool2D` or `MaxPool3D` too, and the artifact, run in its own runtime in
a process where neither Keras nor this package is importable, gives the Keras
model's outputs: TensorFlow for tf_saved_model, onnxruntime for onnx, the
LiteRT interpreter for litert (TensorFlow not importable either: LiteRT's
built-in ops alone, no Flex delegate, as on a phone), OpenVINO's runtime for
openvino, torch for torch (`torch.export.load`). Ours also keeps NaN: a window holding NaN gives NaN in the artifact.

What stock cannot serve is asserted as a failure, with its error, so that an
upstream fix is noticed. Where ours does not yet serve what it should, the
case is a strict xfail naming the backend module that needs the fix.

2D has a test for finite input and one for NaN; 1D and 3D (`dims`) check
both from one export, to keep the module's time down.
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


# The kinds of pooling, by their number of spatial dimensions, and the stock
# layer each of ours stands in for.
DIMS = (1, 2, 3)
STOCK = {1: keras.layers.MaxPooling1D, 2: keras.layers.MaxPooling2D, 3: keras.layers.MaxPooling3D}
OURS = {1: kjp.MaxPool1D, 2: kjp.MaxPool2D, 3: kjp.MaxPool3D}
CONV = {1: keras.layers.Conv1D, 2: keras.layers.Conv2D, 3: keras.layers.Conv3D}


# Measured with the pinned stack (Keras 3.15.1): where stock cannot serve a
# format from a backend, the error it fails with (module, class, message
# pattern) and why. Keyed (backend, format) for every kind, or (backend,
# format, dims) for one kind.
STOCK_CANNOT = {
    ("jax", "onnx", 2): (
        "builtins", "AssertionError",  # raised when the runtime's process fails
        "Unsupported pooling size",
        "jax2onnx lowers reduce_window max to one MaxPool over all 4 axes, which onnxruntime refuses",
    ),
    ("jax", "onnx", 3): (
        "builtins", "NotImplementedError",
        "Unsupported conv layouts",
        "jax2onnx cannot lower the Conv3D of the model (its 5-d conv_general_dilated layouts)",
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
    ("tensorflow", "litert", 3): (
        "builtins", "AssertionError",
        "FlexMaxPool3D",
        "LiteRT has no builtin MaxPool3D: the converter keeps TF's op as a Flex op, which LiteRT's "
        "built-in ops cannot run",
    ),
    ("torch", "onnx", 1): (
        "torch.onnx.errors", "SymbolicValueError",
        "because it is not constant",
        "Keras's torch max_pool passes the symmetric \"same\" padding, computed from the traced length, "
        "to max_pool1d, which the torch.jit ONNX exporter rejects as not constant",
    ),
    ("torch", "onnx", 3): (
        "torch.onnx.errors", "SymbolicValueError",
        "onnx memory_format support is not implemented",
        "the torch.jit ONNX exporter fails on Keras's torch Conv3D (the .contiguous() after its "
        "transpose to channels first); the dynamo exporter serves stock's and ours "
        "(test_ours_served_keeps_nan_through_torch_dynamo_onnx)",
    ),
    ("torch", "openvino", 1): (
        "openvino.frontend", "OpConversionFailure",
        "aten::max_pool1d",
        "OpenVINO's PyTorch frontend has no conversion for aten::max_pool1d",
    ),
    ("torch", "tf_saved_model"): (
        "torch._dynamo.exc", "UserError",
        "dynamic_shapes",
        "torch.export rejects the dynamic_shapes Keras passes, even for a stock Dense model",
    ),
}
# Where ours serves what stock cannot: (backend, format), or with dims.
OURS_BEYOND_STOCK = {
    ("jax", "onnx", 2),
    ("tensorflow", "litert", 3),  # two 2D MaxPool ops: LiteRT builtins
    ("torch", "onnx", 1),  # max_pool1d without padding arguments: F.pad pads first
    ("torch", "openvino", 1),  # likewise
}
# Where no exporter can be installed with the pinned stack: skipped.
NOT_INSTALLABLE = {
    ("torch", "litert"): "litert-torch cannot be installed with the pins: 0.8-0.9.3 need torch<2.13, "
    "0.10.0 needs typing-extensions<4.13 (through xdsl), and 4.16.0 is pinned",
}

# Where ours does not serve yet what it must, and which module needs the fix:
# (backend, format, check) for every kind, or (backend, format, check, dims).
# Strict: a fix makes the test fail until its entry is removed.
OURS_PENDING = {}


def _recorded(table, *key, dims):
    """`table`'s entry for `key` and this kind, or for `key` and every kind."""
    return table.get((*key, dims)) or table.get(key)


def _stock_cannot(fmt, dims):
    return _recorded(STOCK_CANNOT, BACKEND, fmt, dims=dims)


def _pending_reason(fmt, check, dims):
    reason = _recorded(OURS_PENDING, BACKEND, fmt, check, dims=dims)
    if check == "nan":  # what cannot serve at all cannot keep NaN
        reason = reason or _recorded(OURS_PENDING, BACKEND, fmt, "finite", dims=dims)
    return reason


def _case(*values, reason, id=None):
    marks = [pytest.mark.xfail(strict=True, reason=f"waits on {reason}")] if reason else []
    return pytest.param(*values, marks=marks, id=id)


def _pending(check):
    """The formats, each marked strict xfail where ours (2D) waits on a fix."""
    return [_case(fmt, reason=_pending_reason(fmt, check, 2)) for fmt in FORMATS]


def _pending_1d_3d():
    """(format, dims) for 1D and 3D, strict xfail where either check waits."""
    return [
        _case(fmt, dims, reason=_pending_reason(fmt, "nan", dims), id=f"{fmt}-{dims}d")
        for fmt in FORMATS
        for dims in (1, 3)
    ]


# Each kind takes the first `dims` of the spatial sizes, windows and steps:
# (9,) sequences, (9, 8) images, (9, 8, 5) volumes, two channels.
SPATIAL = (9, 8, 5)
POOLS = {
    # Overlapping windows on every axis, "same" padding on every axis.
    "same": dict(pool_size=(3, 2, 2), strides=(2, 1, 1), padding="same"),
    "valid": dict(pool_size=(3, 3, 3), strides=(2, 2, 2), padding="valid"),
}
# Where the NaN checks put NaN (spatial position, channel), cut alike: first,
# inside and last in a window; in "same" padding's border rows.
NAN_AT = (((0, 0, 0), 0), ((4, 3, 2), 1), ((8, 7, 4), 0), ((2, 5, 1), 1))


def _pools(dims):
    return {
        name: dict(pool_size=pool["pool_size"][:dims], strides=pool["strides"][:dims], padding=pool["padding"])
        for name, pool in POOLS.items()
    }


def _model(pool, dims):
    """Two poolings of the input (checked exactly, NaN included) and logits
    through a convolution, pooling and Dense (checked to float32 rounding)."""
    inputs = keras.Input((*SPATIAL[:dims], 2))
    pools = _pools(dims)
    same = pool(name="pool_same", **pools["same"])(inputs)
    valid = pool(name="pool_valid", **pools["valid"])(inputs)
    x = CONV[dims](4, 3, padding="same", name="conv")(same)
    x = pool(name="pool_after_conv")(x)
    logits = keras.layers.Dense(3, name="head")(keras.layers.Flatten(name="flatten")(x))
    return keras.Model(inputs, [same, valid, logits])


def _inputs(rng, fmt, dims=2):
    """Integers (many ties), in a batch of 2 where the artifact's batch size
    stays dynamic: all but torch.export's, which Keras fixes at 1."""
    return rng.integers(-5, 6, size=(1 if fmt == "torch" else 2, *SPATIAL[:dims], 2)).astype("float32")


def _with_nan(x):
    x = x.copy()
    dims = x.ndim - 2
    for position, channel in NAN_AT:
        x[(0, *position[:dims], channel)] = np.nan
    return x


def _export(pool, fmt, tmp_path, x, dims=2, **export_kwargs):
    _skip_unless_installed(fmt)
    model = _model(pool, dims)
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


def _serve(fmt, path, xs, tmp_path):
    """The artifact's outputs for each input of `xs`, from `fmt`'s runtime in
    one fresh process where neither Keras nor this package can be imported."""
    np.savez(tmp_path / "x.npz", *xs)
    run_python(
        "import sys\n"
        "sys.modules['keras'] = sys.modules['keras_jax_pool'] = None  # serving needs the runtime alone\n"
        "import numpy as np\n"
        f"path = {str(path)!r}\n"
        f"{SERVE[fmt]}"
        f"xs = np.load({str(tmp_path / 'x.npz')!r})\n"
        "outputs = {f'{i}_{j}': y for i in range(len(xs.files)) for j, y in enumerate(run(xs[f'arr_{i}']))}\n"
        f"np.savez({str(tmp_path / 'y.npz')!r}, **outputs)\n",
        backend="tensorflow",
    )
    served = np.load(tmp_path / "y.npz")
    return [[served[f"{i}_{j}"] for j in range(len(served.files) // len(xs))] for i in range(len(xs))]


def _compare(served, model, x):
    """The artifact's outputs `served` for finite `x` against the model's."""
    *served_pooled, served_logits = served
    *pooled, logits = (to_numpy(y) for y in model(x))
    assert len(served_pooled) == len(pooled)
    for served_y, expected in zip(served_pooled, pooled):
        np.testing.assert_array_equal(served_y, expected)  # a maximum is exact
    # Convolutions and matrix products may sum in another order.
    np.testing.assert_allclose(served_logits, logits, rtol=1e-5, atol=1e-5)


def _assert_keeps_nan(served, model, x):
    """The artifact's pooled outputs `served` for `x` (holding NaN) against
    the reference's, and the model's alike."""
    dims = x.ndim - 2
    for (name, pool), served_pooled, pooled in zip(_pools(dims).items(), served, model(x)):
        expected = reference.downsample(x, pool["pool_size"], pool["strides"], padding=pool["padding"])
        assert np.isnan(expected).any(), name
        np.testing.assert_array_equal(to_numpy(pooled), expected, err_msg=f"the Keras model, {name}")
        np.testing.assert_array_equal(served_pooled, expected, err_msg=f"the artifact, {name}")


def _export_and_compare(pool, fmt, tmp_path, x):
    dims = x.ndim - 2
    model, path = _export(pool, fmt, tmp_path, x, dims)
    [served] = _serve(fmt, path, [x], tmp_path)
    _compare(served, model, x)


@pytest.mark.parametrize("dims", [pytest.param(dims, id=f"{dims}d") for dims in DIMS])
@pytest.mark.parametrize("fmt", FORMATS)
def test_stock_serves_or_fails_as_recorded(fmt, dims, tmp_path, rng):
    x = _inputs(rng, fmt, dims)
    if _stock_cannot(fmt, dims) is None:
        _export_and_compare(STOCK[dims], fmt, tmp_path, x)
        return
    module, error, message, _ = _stock_cannot(fmt, dims)
    with pytest.raises(getattr(importlib.import_module(module), error), match=message):
        _export_and_compare(STOCK[dims], fmt, tmp_path, x)


def _skip_where_stock_cannot(fmt, dims=2):
    cannot = _stock_cannot(fmt, dims)
    if cannot and not {(BACKEND, fmt), (BACKEND, fmt, dims)} & OURS_BEYOND_STOCK:
        pytest.skip(f"stock cannot serve {fmt} from {BACKEND} either ({dims}D): {cannot[3]}")


@pytest.mark.parametrize("fmt", _pending("finite"))
def test_ours_serves_wherever_stock_does(fmt, tmp_path, rng):
    _skip_where_stock_cannot(fmt)
    _export_and_compare(kjp.MaxPool2D, fmt, tmp_path, _inputs(rng, fmt))


@pytest.mark.parametrize("fmt", _pending("nan"))
def test_ours_served_keeps_nan(fmt, tmp_path, rng):
    _skip_where_stock_cannot(fmt)
    _assert_served_keeps_nan(fmt, tmp_path, rng)


@pytest.mark.parametrize("fmt, dims", _pending_1d_3d())
def test_ours_1d_3d_serve_and_keep_nan(fmt, dims, tmp_path, rng):
    """MaxPool1D and MaxPool3D: finite input and input holding NaN, both run
    from one export in one serving process."""
    _skip_where_stock_cannot(fmt, dims)
    finite = _inputs(rng, fmt, dims)
    with_nan = _with_nan(finite)
    model, path = _export(OURS[dims], fmt, tmp_path, finite, dims)
    served_finite, served_with_nan = _serve(fmt, path, [finite, with_nan], tmp_path)
    _compare(served_finite, model, finite)
    _assert_keeps_nan(served_with_nan, model, with_nan)


@pytest.mark.skipif(BACKEND != "jax", reason="exercises the JAX backend's export path")
def test_ours_3d_pooling_alone_serves_from_jax_to_onnx(tmp_path, rng):
    """jax2onnx cannot lower the 3D model's Conv3D (stock's and ours); the
    pooling layers alone export, and onnxruntime runs them, NaN kept."""
    _skip_unless_installed("onnx")
    inputs = keras.Input((*SPATIAL, 2))
    pools = _pools(3)
    model = keras.Model(inputs, [kjp.MaxPool3D(**pools[name])(inputs) for name in ("same", "valid")])
    finite = _inputs(rng, "onnx", 3)
    with_nan = _with_nan(finite)
    model(finite)
    path = tmp_path / FILE_NAMES["onnx"]
    model.export(str(path), format="onnx", verbose=False)
    served_finite, served_with_nan = _serve("onnx", path, [finite, with_nan], tmp_path)
    for served, expected in zip(served_finite, model(finite)):
        np.testing.assert_array_equal(served, to_numpy(expected))
    _assert_keeps_nan(served_with_nan, model, with_nan)


@pytest.mark.skipif(BACKEND != "torch", reason="exercises torch's dynamo ONNX exporter")
@pytest.mark.parametrize("dims", [pytest.param(dims, id=f"{dims}d") for dims in (2, 3)])
def test_ours_served_keeps_nan_through_torch_dynamo_onnx(dims, tmp_path, rng, monkeypatch):
    """With a static input signature, Keras exports onnx from torch through
    torch.export (the dynamo exporter) instead of torch.jit: for 3D, the only
    way it serves a Conv3D model (see STOCK_CANNOT). Finite input and input
    holding NaN, from one export."""
    import torch

    exported = []  # the `dynamo` flag of each torch.onnx.export that returned
    export = torch.onnx.export

    def recorded(*args, **kwargs):
        result = export(*args, **kwargs)
        exported.append(kwargs.get("dynamo"))
        return result

    monkeypatch.setattr(torch.onnx, "export", recorded)
    finite = _inputs(rng, "onnx", dims)
    with_nan = _with_nan(finite)
    signature = [keras.InputSpec(shape=finite.shape, dtype="float32")]
    model, path = _export(OURS[dims], "onnx", tmp_path, finite, dims, input_signature=signature)
    assert exported == [True], "Keras fell back to the torch.jit exporter"
    served_finite, served_with_nan = _serve("onnx", path, [finite, with_nan], tmp_path)
    _compare(served_finite, model, finite)
    _assert_keeps_nan(served_with_nan, model, with_nan)


def _assert_served_keeps_nan(fmt, tmp_path, rng):
    x = _with_nan(_inputs(rng, fmt))
    model, path = _export(kjp.MaxPool2D, fmt, tmp_path, x)
    [served] = _serve(fmt, path, [x], tmp_path)
    _assert_keeps_nan(served, model, x)
