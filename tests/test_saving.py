"""`.keras` files holding the layer save, and load in a fresh process after
`import keras_jax_pool`, with no `custom_objects`."""

import keras
import numpy as np

import keras_jax_pool as kjp
from tests.conftest import run_python, to_numpy


def _model():
    inputs = keras.Input((9, 8, 2))
    x = keras.layers.Conv2D(3, 3, padding="same", name="conv")(inputs)
    x = kjp.MaxPool2D((3, 2), strides=(2, 1), padding="same", name="pool")(x)
    outputs = keras.layers.Flatten()(x)
    return keras.Model(inputs, outputs)


def test_registered_name():
    assert keras.saving.get_registered_name(kjp.MaxPool2D) == "keras_jax_pool>MaxPool2D"
    assert keras.saving.get_registered_object("keras_jax_pool>MaxPool2D") is kjp.MaxPool2D


def test_keras_file_loads_in_fresh_process_without_custom_objects(tmp_path, rng):
    model = _model()
    x = rng.normal(size=(4, 9, 8, 2)).astype("float32")
    path, inputs_path = tmp_path / "model.keras", tmp_path / "x.npy"
    model.save(path)
    np.save(inputs_path, x)
    out = run_python(
        "import numpy as np, keras, keras_jax_pool\n"
        f"m = keras.saving.load_model({str(path)!r})\n"
        "assert type(m.get_layer('pool')) is keras_jax_pool.MaxPool2D, type(m.get_layer('pool'))\n"
        f"np.save({str(tmp_path / 'y.npy')!r}, keras.ops.convert_to_numpy(m(np.load({str(inputs_path)!r}))))\n"
        "print('loaded')"
    )
    assert "loaded" in out
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), to_numpy(model(x)))


def test_load_in_same_process_keeps_config(tmp_path):
    model = _model()
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert loaded.get_layer("pool").get_config() == model.get_layer("pool").get_config()


def test_reimporting_and_reloading_the_package_never_raises(tmp_path):
    # In a fresh process: a reload makes new classes, which would leak into
    # the other tests of this one.
    out = run_python(
        "import importlib, keras, keras_jax_pool\n"
        "import keras_jax_pool as again\n"
        "for name in ('keras_jax_pool.layers', 'keras_jax_pool'):\n"
        "    importlib.reload(importlib.import_module(name))\n"
        "registered = keras.saving.get_registered_object('keras_jax_pool>MaxPool2D')\n"
        "assert registered is keras_jax_pool.MaxPool2D, registered\n"
        "inputs = keras.Input((4, 4, 1))\n"
        "model = keras.Model(inputs, keras_jax_pool.MaxPool2D(name='pool')(inputs))\n"
        f"model.save({str(tmp_path / 'm.keras')!r})\n"
        f"loaded = keras.saving.load_model({str(tmp_path / 'm.keras')!r})\n"
        "assert type(loaded.get_layer('pool')) is registered\n"
        "print('reloaded twice')"
    )
    assert "reloaded twice" in out
