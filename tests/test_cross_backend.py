"""A `.keras` file holding `MaxPool2D`, saved under one backend, loads under
this one and gives the same outputs. Run under each backend, this checks
every pair of jax, tensorflow and torch (and numpy as the loading side)."""

import keras
import numpy as np
import pytest

import keras_jax_pool as kjp
from tests.conftest import BACKEND, run_python, to_numpy

SAVING_BACKENDS = [b for b in ("jax", "tensorflow", "torch") if b != BACKEND]

SAVE = """
import keras, numpy as np, keras_jax_pool as kjp
keras.utils.set_random_seed(0)
inputs = keras.Input((9, 8, 2))
same = kjp.MaxPool2D((3, 2), strides=(2, 1), padding="same", name="pool_same")(inputs)
first = kjp.MaxPool2D(2, strides=1, data_format="channels_first", name="pool_channels_first")(inputs)
x = kjp.MaxPool2D(name="pool_valid")(keras.layers.Conv2D(4, 3, padding="same", name="conv")(same))
logits = keras.layers.Dense(3, name="head")(keras.layers.Flatten(name="flatten")(x))
model = keras.Model(inputs, {"same": same, "channels_first": first, "logits": logits})
model.save(MODEL)
outputs = model(np.load(X))
np.savez(Y, **{k: keras.ops.convert_to_numpy(v) for k, v in outputs.items()})
"""


@pytest.fixture(scope="module", params=SAVING_BACKENDS)
def saved(request, tmp_path_factory):
    """(backend, model file, input, that backend's outputs)."""
    folder = tmp_path_factory.mktemp(f"saved_by_{request.param}")
    x = np.random.default_rng(7).integers(-5, 6, size=(3, 9, 8, 2)).astype("float32")  # ties in windows
    np.save(folder / "x.npy", x)
    paths = {"MODEL": folder / "model.keras", "X": folder / "x.npy", "Y": folder / "y.npz"}
    code = "".join(f"{name} = {str(path)!r}\n" for name, path in paths.items()) + SAVE
    run_python(code, backend=request.param)
    return request.param, paths["MODEL"], x, dict(np.load(paths["Y"]))


def test_loads_as_our_layer_with_the_same_config(saved):
    _, path, _, _ = saved
    model = keras.saving.load_model(path)
    expected = {
        "pool_same": kjp.MaxPool2D((3, 2), strides=(2, 1), padding="same", name="pool_same"),
        "pool_channels_first": kjp.MaxPool2D(2, strides=1, data_format="channels_first", name="pool_channels_first"),
        "pool_valid": kjp.MaxPool2D(name="pool_valid"),
    }
    for name, layer in expected.items():
        assert type(model.get_layer(name)) is kjp.MaxPool2D
        assert model.get_layer(name).get_config() == layer.get_config()


def test_gives_the_outputs_of_the_saving_backend(saved):
    backend, path, x, expected = saved
    outputs = {k: to_numpy(v) for k, v in keras.saving.load_model(path)(x).items()}
    assert outputs.keys() == expected.keys()
    # Pooling alone is exact everywhere; convolution differs in the last bits.
    np.testing.assert_array_equal(outputs["same"], expected["same"], err_msg=f"saved by {backend}")
    np.testing.assert_array_equal(outputs["channels_first"], expected["channels_first"], err_msg=f"saved by {backend}")
    np.testing.assert_allclose(outputs["logits"], expected["logits"], rtol=1e-5, atol=1e-5, err_msg=f"saved by {backend}")
