"""Bad arguments fail when the layer is made, with the same ValueError on
every backend, naming the argument and the value received; for MaxPool1D,
MaxPool2D and MaxPool3D alike, saying how many spatial dimensions each
pools."""

import re

import keras
import numpy as np
import pytest

import keras_jax_pool as kjp

LAYERS = {1: kjp.MaxPool1D, 2: kjp.MaxPool2D, 3: kjp.MaxPool3D}

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


# BAD_ARGUMENTS for each kind: (2, 2, 2) is a good pool_size for a 3D pooling.
FAMILY_BAD_ARGUMENTS = [
    pytest.param(dims, kwargs, named, id=f"{dims}d-{named}")
    for dims in LAYERS
    for kwargs, named in BAD_ARGUMENTS
    if not (dims == 3 and named == "pool_size=(2, 2, 2)")
]


@pytest.mark.parametrize("dims, kwargs, named", FAMILY_BAD_ARGUMENTS)
def test_layer_rejects_bad_argument_at_construction(dims, kwargs, named):
    with pytest.raises(ValueError) as error:
        LAYERS[dims](**kwargs)
    assert named in str(error.value)


@pytest.mark.parametrize("kwargs, named", BAD_ARGUMENTS, ids=[n for _, n in BAD_ARGUMENTS])
def test_functional_op_rejects_bad_argument(kwargs, named):
    x = np.zeros((1, 4, 4, 1), "float32")
    with pytest.raises(ValueError) as error:
        kjp.max_pool2d(x, **{"pool_size": 2, **kwargs})
    assert named in str(error.value)


@pytest.mark.parametrize("dims, kwargs, named", FAMILY_BAD_ARGUMENTS)
def test_n_dimensional_op_rejects_bad_argument(dims, kwargs, named):
    x = np.zeros((1, *(4,) * dims, 1), "float32")
    with pytest.raises(ValueError) as error:
        kjp.max_pool(x, **{"pool_size": 2, **kwargs})
    assert named in str(error.value)


# A window or step of another kind's length: the message says how many the
# layer expects.
WRONG_LENGTHS = [
    (1, "pool_size", (2, 2)),
    (1, "strides", [1, 2]),
    (1, "pool_size", (2, 2, 2)),
    (2, "pool_size", (2, 2, 2)),
    (2, "strides", (1, 1, 1)),
    (3, "pool_size", (2, 2)),
    (3, "strides", (1, 2)),
    (3, "pool_size", (2, 2, 2, 2)),
]


@pytest.mark.parametrize("dims, name, value", WRONG_LENGTHS)
def test_window_of_another_length_says_how_many_are_expected(dims, name, value):
    expected = re.escape(
        f"`{name}` must be a positive integer or a tuple of {dims} positive integer(s), one per "
        f"spatial dimension of a {dims}D pooling. Received: {name}={value!r}"
    )
    with pytest.raises(ValueError, match=expected):
        LAYERS[dims](**{name: value})
    with pytest.raises(ValueError, match=expected):
        kjp.max_pool(np.zeros((1, *(4,) * dims, 1), "float32"), **{"pool_size": 2, name: value})
    # A file holding it fails as the layer would, not with Keras's TypeError.
    with pytest.raises(ValueError, match=expected):
        LAYERS[dims].from_config({"name": "pool", name: value})
    with pytest.raises(ValueError):
        kjp.layers.STOCK[LAYERS[dims]](**{"pool_size": 2, name: value})  # stock refuses it too


@pytest.mark.parametrize(
    "dims, kwargs, expected",
    [
        (2, {"pool_size": 3}, ((3, 3), (3, 3))),
        (2, {"pool_size": (3,)}, ((3, 3), (3, 3))),
        (2, {"pool_size": [2, 3], "strides": 1}, ((2, 3), (1, 1))),
        (2, {"pool_size": np.int64(2), "strides": (np.int32(1), 2)}, ((2, 2), (1, 2))),
        (1, {"pool_size": 3}, ((3,), (3,))),
        (1, {"pool_size": [np.int8(4)], "strides": np.uint8(2)}, ((4,), (2,))),
        (3, {"pool_size": 3}, ((3, 3, 3), (3, 3, 3))),
        (3, {"pool_size": (3,), "strides": [2]}, ((3, 3, 3), (2, 2, 2))),
        (3, {"pool_size": [2, 3, 1], "strides": (np.int64(1), 2, 3)}, ((2, 3, 1), (1, 2, 3))),
    ],
)
def test_ints_and_tuples_are_standardized_to_tuples_of_python_ints(dims, kwargs, expected):
    layer = LAYERS[dims](**kwargs)
    assert (layer.pool_size, layer.strides) == expected
    assert all(type(v) is int for v in layer.pool_size + layer.strides)


@pytest.mark.parametrize("padding", ["valid", "same", "VALID", "Same"])
def test_padding_is_case_insensitive_and_kept_as_given(padding):
    layer = kjp.MaxPool2D(padding=padding)
    assert layer.get_config()["padding"] == padding
    x = np.arange(25.0, dtype="float32").reshape(1, 5, 5, 1)
    stock = keras.layers.MaxPooling2D(padding=padding.lower())
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x)), keras.ops.convert_to_numpy(stock(x)))


@pytest.mark.parametrize("dims", LAYERS)
def test_data_format_defaults_to_keras_config(dims):
    for data_format in ("channels_first", "channels_last"):
        keras.config.set_image_data_format(data_format)
        assert LAYERS[dims]().data_format == data_format
        assert kjp.layers.STOCK[LAYERS[dims]]().data_format == data_format


@pytest.mark.parametrize("shape", [(4, 4, 1), (1, 1, 4, 4, 1), (4, 4)])
def test_wrong_rank_names_expected_and_received_shapes(shape):
    x = np.zeros(shape, "float32")
    with pytest.raises(ValueError, match=r"4-D.*\(batch, height, width, channels\).*" + r"\(" + ", ".join(map(str, shape))):
        kjp.max_pool2d(x, 2)
    with pytest.raises(ValueError, match="ndim=4"):
        kjp.MaxPool2D()(x)


@pytest.mark.parametrize(
    "dims, shape",
    [(1, (4, 1)), (1, (1, 4, 4, 1)), (3, (4, 4, 1)), (3, (1, 4, 4, 1)), (3, (1, 1, 4, 4, 4, 1))],
)
def test_1d_and_3d_wrong_rank_names_expected_and_received_shapes(dims, shape):
    x = np.zeros(shape, "float32")
    layer = LAYERS[dims]()
    with pytest.raises(ValueError, match=f"ndim={dims + 2}"):
        layer(x)
    spatial = {1: "steps", 3: "depth, height, width"}[dims]
    expected = rf"{dims + 2}-D input of shape \(batch, {spatial}, channels\) for a {dims}D pooling.*\({', '.join(map(str, shape))}\)"
    with pytest.raises(ValueError, match=expected):
        layer.compute_output_shape(shape)


@pytest.mark.parametrize("shape", [(4, 4), (1, 1, 4, 4, 4, 1), (4,)])
def test_n_dimensional_op_takes_ranks_3_to_5(shape):
    with pytest.raises(ValueError, match=r"3-D, 4-D or 5-D.*" + re.escape(f"{shape} (rank {len(shape)})")):
        kjp.max_pool(np.zeros(shape, "float32"), 2)


@pytest.mark.parametrize("dims", [1, 3])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_1d_and_3d_valid_window_larger_than_input_fails_alike_in_call_and_shape(dims, data_format):
    layer = LAYERS[dims](pool_size={1: 5, 3: (3, 5, 2)}[dims], padding="valid", data_format=data_format)
    spatial = (4, 4, 4)[-dims:]
    shape = (2, *spatial, 3) if data_format == "channels_last" else (2, 3, *spatial)
    with pytest.raises(ValueError, match="pool_size=5 exceeds a spatial dimension of size 4"):
        layer.compute_output_shape(shape)
    with pytest.raises(ValueError, match="pool_size=5 exceeds a spatial dimension of size 4"):
        layer(np.zeros(shape, "float32"))
    with pytest.raises(ValueError, match="pool_size=5 exceeds a spatial dimension of size 4"):
        kjp.max_pool(np.zeros(shape, "float32"), layer.pool_size, padding="valid", data_format=data_format)


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
