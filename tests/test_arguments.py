"""Bad arguments fail when the layer is made, with the same ValueError on
every backend, naming the argument and the value received."""

import keras
import numpy as np
import pytest

import keras_jax_pool as kjp

BAD_ARGUMENTS = [
    ({"pool_size": 0}, "pool_size=0"),
    ({"pool_size": -3}, "pool_size=-3"),
    ({"pool_size": (2, 0)}, "pool_size=(2, 0)"),
    ({"pool_size": (2, 2, 2)}, "pool_size=(2, 2, 2)"),
    ({"pool_size": "x"}, "pool_size='x'"),
    ({"pool_size": 2.0}, "pool_size=2.0"),
    ({"pool_size": True}, "pool_size=True"),
    ({"pool_size": [-3, "x"]}, "pool_size=[-3, 'x']"),
    ({"strides": 0}, "strides=0"),
    ({"strides": (1, -1)}, "strides=(1, -1)"),
    ({"strides": "2"}, "strides='2'"),
    ({"padding": "foo"}, "padding='foo'"),
    ({"padding": None}, "padding=None"),
    ({"padding": 1}, "padding=1"),
    ({"data_format": "NHWC"}, "data_format='NHWC'"),
    ({"data_format": 3}, "data_format=3"),
]


@pytest.mark.parametrize("kwargs, named", BAD_ARGUMENTS, ids=[n for _, n in BAD_ARGUMENTS])
def test_layer_rejects_bad_argument_at_construction(kwargs, named):
    with pytest.raises(ValueError) as error:
        kjp.MaxPool2D(**kwargs)
    assert named in str(error.value)


@pytest.mark.parametrize("kwargs, named", BAD_ARGUMENTS, ids=[n for _, n in BAD_ARGUMENTS])
def test_functional_op_rejects_bad_argument(kwargs, named):
    x = np.zeros((1, 4, 4, 1), "float32")
    with pytest.raises(ValueError) as error:
        kjp.max_pool2d(x, **{"pool_size": 2, **kwargs})
    assert named in str(error.value)


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"pool_size": 3}, ((3, 3), (3, 3))),
        ({"pool_size": (3,)}, ((3, 3), (3, 3))),
        ({"pool_size": [2, 3], "strides": 1}, ((2, 3), (1, 1))),
        ({"pool_size": np.int64(2), "strides": (np.int32(1), 2)}, ((2, 2), (1, 2))),
    ],
)
def test_ints_and_tuples_are_standardized_to_tuples_of_python_ints(kwargs, expected):
    layer = kjp.MaxPool2D(**kwargs)
    assert (layer.pool_size, layer.strides) == expected
    assert all(type(v) is int for v in layer.pool_size + layer.strides)


@pytest.mark.parametrize("padding", ["valid", "same", "VALID", "Same"])
def test_padding_is_case_insensitive_and_kept_as_given(padding):
    layer = kjp.MaxPool2D(padding=padding)
    assert layer.get_config()["padding"] == padding
    x = np.arange(25.0, dtype="float32").reshape(1, 5, 5, 1)
    stock = keras.layers.MaxPooling2D(padding=padding.lower())
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x)), keras.ops.convert_to_numpy(stock(x)))


def test_data_format_defaults_to_keras_config():
    keras.config.set_image_data_format("channels_first")
    assert kjp.MaxPool2D().data_format == "channels_first"
    keras.config.set_image_data_format("channels_last")
    assert kjp.MaxPool2D().data_format == "channels_last"


@pytest.mark.parametrize("shape", [(4, 4, 1), (1, 1, 4, 4, 1), (4, 4)])
def test_wrong_rank_names_expected_and_received_shapes(shape):
    x = np.zeros(shape, "float32")
    with pytest.raises(ValueError, match=r"4-D.*\(batch, height, width, channels\).*" + r"\(" + ", ".join(map(str, shape))):
        kjp.max_pool2d(x, 2)
    with pytest.raises(ValueError, match="ndim=4"):
        kjp.MaxPool2D()(x)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_valid_window_larger_than_input_fails_alike_in_call_and_shape(data_format):
    layer = kjp.MaxPool2D(pool_size=(3, 5), padding="valid", data_format=data_format)
    shape = (2, 4, 4, 3) if data_format == "channels_last" else (2, 3, 4, 4)
    with pytest.raises(ValueError, match="pool_size=5 exceeds a spatial dimension of size 4"):
        layer.compute_output_shape(shape)
    with pytest.raises(ValueError, match="pool_size=5 exceeds a spatial dimension of size 4"):
        layer(np.zeros(shape, "float32"))


def test_same_padding_pools_a_window_larger_than_the_input():
    x = np.random.default_rng(0).normal(size=(2, 3, 2, 4)).astype("float32")
    layer = kjp.MaxPool2D(pool_size=(5, 4), strides=1, padding="same")
    expected = kjp.reference.downsample_images(x, (5, 4), (1, 1), padding="same")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x)), expected)
