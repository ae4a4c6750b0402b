"""Serving: `model.export(path, format="tf_saved_model")` of a model holding
`MaxPool2D` works from the JAX and the TensorFlow backend, and the export,
loaded with `tf.saved_model.load` where neither Keras nor this package is
importable, gives the model's outputs."""

import keras
import numpy as np
import pytest

import keras_jax_pool as kjp
from tests.conftest import BACKEND, run_python, to_numpy

# Checked by hand with Keras 3.15.1: from torch, export fails even for a model of
# one stock Dense layer (torch.export rejects Keras' dynamic_shapes); numpy has
# no export at all.
CANNOT_EXPORT = {
    "torch": "Keras 3.15.1 cannot export tf_saved_model from torch 2.13, even a stock Dense model",
    "numpy": "the numpy backend has no model.export",
}
pytestmark = pytest.mark.skipif(BACKEND in CANNOT_EXPORT, reason=CANNOT_EXPORT.get(BACKEND, ""))


def _model():
    inputs = keras.Input((9, 8, 2))
    pooled = kjp.MaxPool2D((3, 2), strides=(2, 1), padding="same", name="pool_same")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(pooled)
    x = kjp.MaxPool2D(name="pool_valid")(x)
    logits = keras.layers.Dense(3, name="head")(keras.layers.Flatten(name="flatten")(x))
    return keras.Model(inputs, [pooled, logits])


def test_the_exported_saved_model_serves_the_same_outputs(tmp_path, rng):
    model = _model()
    model.export(tmp_path / "served", format="tf_saved_model", verbose=False)
    inputs = {n: rng.integers(-5, 6, size=(n, 9, 8, 2)).astype("float32") for n in (1, 4)}  # any batch size
    np.savez(tmp_path / "x.npz", **{str(n): x for n, x in inputs.items()})
    run_python(
        "import sys\n"
        "sys.modules['keras'] = sys.modules['keras_jax_pool'] = None  # serving needs TensorFlow alone\n"
        "import numpy as np, tensorflow as tf\n"
        f"served = tf.saved_model.load({str(tmp_path / 'served')!r})\n"
        f"inputs = np.load({str(tmp_path / 'x.npz')!r})\n"
        "outputs = {}\n"
        "for n in inputs:\n"
        "    pooled, logits = served.serve(tf.constant(inputs[n]))\n"
        "    outputs[n + '_pooled'], outputs[n + '_logits'] = pooled.numpy(), logits.numpy()\n"
        f"np.savez({str(tmp_path / 'y.npz')!r}, **outputs)\n",
        backend="tensorflow",
    )
    served = np.load(tmp_path / "y.npz")
    for n, x in inputs.items():
        pooled, logits = (to_numpy(y) for y in model(x))
        np.testing.assert_array_equal(served[f"{n}_pooled"], pooled)
        np.testing.assert_allclose(served[f"{n}_logits"], logits, rtol=1e-5, atol=1e-6)
