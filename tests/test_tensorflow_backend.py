"""The TensorFlow backend's own machinery: a model exported to LiteRT
(`model.export(format="litert")`) runs on LiteRT's built-in ops alone, with
no Flex delegate, and gives the Keras model's outputs, NaN and -inf windows
included.

LiteRT's default interpreter runs its pooling and arithmetic through the
XNNPACK delegate; its reference kernels alone (no delegate) clamp every
result of pooling or arithmetic to the finite range, so there +inf and -inf
come out as the largest and lowest finite values, for stock's file as for
ours. These tests use the default interpreter, as an app does.
"""

import importlib.util

import keras
import numpy as np
import pytest

import keras_jax_pool as kjp
from keras_jax_pool import reference
from tests.conftest import only_on, to_numpy

pytestmark = [
    only_on("tensorflow"),
    pytest.mark.skipif(
        importlib.util.find_spec("ai_edge_litert") is None,
        reason="ai-edge-litert is not installed (no wheel for this platform?): `pip install -e '.[export]'`",
    ),
]

GEOMETRIES = [((2, 2), (2, 2), "valid"), ((3, 3), (2, 2), "same"), ((3, 2), (1, 2), "same")]


def _export(layer, tmp_path, x):
    model = keras.Sequential([keras.Input(x.shape[1:]), layer])
    model(x)  # built and called once, as model.export requires
    path = str(tmp_path / "model.tflite")
    model.export(path, format="litert", verbose=False)
    return model, path


def _run_litert(path, x):
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=path).get_signature_runner()
    [name] = runner.get_input_details()
    [y] = runner(**{name: x}).values()
    return y


def _not_finite_input(rng):
    """Windows holding NaN, windows of -inf, +inf, and finite windows."""
    x = rng.integers(-5, 6, size=(2, 9, 8, 3)).astype("float32")
    x[rng.random(x.shape) < 0.05] = np.nan
    x[0, 2:6, 2:6] = -np.inf
    x[1, 0:2, 4:8, 1] = np.inf
    return x


@pytest.mark.parametrize("layer", [keras.layers.MaxPooling2D, kjp.MaxPool2D], ids=["stock", "ours"])
def test_litert_file_has_no_flex_ops(layer, tmp_path, rng):
    x = rng.normal(size=(2, 9, 8, 3)).astype("float32")
    _, path = _export(layer(3, 2, "same"), tmp_path, x)
    with open(path, "rb") as f:
        # Flex ops are custom ops whose code names the TF op: "FlexMaxPool".
        assert b"Flex" not in f.read()


@pytest.mark.parametrize("pool_size, strides, padding", GEOMETRIES)
def test_litert_gives_the_models_outputs_with_nan_and_infinities(pool_size, strides, padding, tmp_path, rng):
    x = _not_finite_input(rng)
    model, path = _export(kjp.MaxPool2D(pool_size, strides, padding), tmp_path, x)
    expected = reference.downsample_images(x, pool_size, strides, padding=padding)
    assert np.isnan(expected).any() and np.isneginf(expected).any() and np.isposinf(expected).any()
    np.testing.assert_array_equal(to_numpy(model(x)), expected)
    np.testing.assert_array_equal(_run_litert(path, x), expected)


def test_litert_gives_the_models_outputs_on_finite_input(tmp_path, rng):
    x = rng.normal(size=(2, 9, 8, 3)).astype("float32")
    model, path = _export(kjp.MaxPool2D(3, 2, "same"), tmp_path, x)
    np.testing.assert_array_equal(_run_litert(path, x), to_numpy(model(x)))
