"""Outputs, shapes and configs equal those of `keras.layers.MaxPooling2D` and
of the numpy reference, exactly, over a grid of configurations."""

import itertools

import keras
import numpy as np
import pytest

import keras_jax_pool as kjp
from keras_jax_pool import arguments, reference
from tests.conftest import BACKEND, only_on, to_numpy

POOL_SIZES = [1, 2, 3, 4, (2, 3), (4, 1), (1, 3), (3, 4)]
STRIDES = [None, 1, 2, 3, (1, 2), (3, 1), (2, 3)]
# Odd sizes, and a batch of one and of zero; every valid window fits.
SHAPES = [(1, 7, 9, 3), (2, 5, 11, 2), (0, 6, 5, 4)]

GRID = [
    pytest.param(p, s, pad, fmt, id=f"pool{p}-stride{s}-{pad}-{fmt[9:]}")
    for p, s, pad, fmt in itertools.product(
        POOL_SIZES, STRIDES, ["valid", "same"], ["channels_last", "channels_first"]
    )
]


def _input(shape, data_format, rng):
    if data_format == "channels_first":
        shape = (shape[0], shape[3], shape[1], shape[2])
    # Few distinct values, so that windows hold ties.
    return rng.integers(-4, 5, size=shape).astype("float32")


@pytest.mark.parametrize("pool_size, strides, padding, data_format", GRID)
def test_output_equals_stock_and_reference(pool_size, strides, padding, data_format, rng):
    ours = kjp.MaxPool2D(pool_size, strides, padding, data_format)
    stock = keras.layers.MaxPooling2D(pool_size, strides, padding, data_format)
    for shape in SHAPES:
        x = _input(shape, data_format, rng)
        expected = reference.downsample_images(
            x, ours.pool_size, ours.strides, padding=padding, data_format=data_format
        )
        y = to_numpy(ours(x))
        np.testing.assert_array_equal(y, expected)
        np.testing.assert_array_equal(y, to_numpy(stock(x)))
        assert ours.compute_output_shape(x.shape) == y.shape


@pytest.mark.parametrize("pool_size, strides, padding, data_format", GRID[::5])
def test_functional_op_equals_stock_op_and_reference(pool_size, strides, padding, data_format, rng):
    args = arguments.standardize(pool_size, strides, padding, data_format)
    for shape in SHAPES:
        x = _input(shape, data_format, rng)
        y = to_numpy(kjp.max_pool2d(x, pool_size, strides, padding, data_format))
        expected = reference.downsample_images(x, args.pool_size, args.strides, padding=padding, data_format=data_format)
        np.testing.assert_array_equal(y, expected)
        # Stock's op, given its strides: without them it fails on jax and numpy.
        np.testing.assert_array_equal(y, to_numpy(keras.ops.max_pool(x, *args)))


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_symbolic_shapes_with_unknown_dims_match_stock(padding, data_format):
    spatial = (None, 13) if data_format == "channels_last" else (3, None)
    inputs = keras.Input(shape=(*spatial, 3) if data_format == "channels_last" else (3, 13, None))
    ours = kjp.MaxPool2D((3, 2), (2, 3), padding, data_format)(inputs)
    stock = keras.layers.MaxPooling2D((3, 2), (2, 3), padding, data_format)(inputs)
    assert ours.shape == stock.shape
    assert None in ours.shape


@pytest.mark.parametrize("pool_size, strides, padding, data_format", GRID[::7])
def test_config_equals_stock(pool_size, strides, padding, data_format):
    kwargs = dict(pool_size=pool_size, strides=strides, padding=padding, data_format=data_format, name="pool")
    ours, stock = kjp.MaxPool2D(**kwargs), keras.layers.MaxPooling2D(**kwargs)
    assert ours.get_config() == stock.get_config()
    from_stock = kjp.MaxPool2D.from_config(stock.get_config())
    from_ours = keras.layers.MaxPooling2D.from_config(ours.get_config())
    assert from_stock.get_config() == from_ours.get_config() == stock.get_config()


def test_config_keeps_layer_kwargs():
    ours = kjp.MaxPool2D(name="p", dtype="bfloat16", trainable=False)
    stock = keras.layers.MaxPooling2D(name="p", dtype="bfloat16", trainable=False)
    assert ours.get_config() == stock.get_config()


def test_alias_is_the_same_class():
    assert kjp.MaxPooling2D is kjp.MaxPool2D
    assert issubclass(kjp.MaxPool2D, keras.layers.Layer)


@pytest.mark.parametrize("policy", ["float32", "mixed_float16", "mixed_bfloat16", "bfloat16", "float16"])
def test_dtype_policy_gives_stock_output_dtype(policy, rng):
    x = rng.normal(size=(2, 6, 6, 3)).astype("float32")
    ours = kjp.MaxPool2D(dtype=policy)
    stock = keras.layers.MaxPooling2D(dtype=policy)
    y_ours, y_stock = ours(x), stock(x)
    assert keras.backend.standardize_dtype(y_ours.dtype) == keras.backend.standardize_dtype(y_stock.dtype)
    np.testing.assert_array_equal(to_numpy(y_ours), to_numpy(y_stock))


def test_global_mixed_precision_policy_gives_stock_output_dtype(rng):
    keras.config.set_dtype_policy("mixed_float16")
    x = rng.normal(size=(2, 6, 6, 3)).astype("float32")
    y_ours, y_stock = kjp.MaxPool2D()(x), keras.layers.MaxPooling2D()(x)
    assert keras.backend.standardize_dtype(y_ours.dtype) == "float16"
    assert keras.backend.standardize_dtype(y_ours.dtype) == keras.backend.standardize_dtype(y_stock.dtype)


# The README's table "Behaviour that differs from stock, on purpose", row by
# row: what stock does (so that the table fails here when upstream changes),
# and what ours does. The NaN and dtype rows are recorded in test_nan.py and
# test_dtypes.py.
DEFERRED_TO_CALL = {
    "strides=0": ({"strides": 0}, {"jax": "TypeError", "numpy": "TypeError", "tensorflow": "InvalidArgumentError", "torch": "ValueError"}),
    "padding=foo": ({"padding": "foo"}, {"jax": "ValueError", "numpy": "ValueError", "tensorflow": "InvalidArgumentError", "torch": None}),
}


@pytest.mark.parametrize("name", DEFERRED_TO_CALL)
def test_stock_defers_bad_strides_and_padding_to_call_as_recorded(name):
    kwargs, stock_error = DEFERRED_TO_CALL[name]
    with pytest.raises(ValueError, match=name.replace("foo", "'foo'")):
        kjp.MaxPool2D(2, **kwargs)
    stock = keras.layers.MaxPooling2D(2, **kwargs)  # accepted
    x = np.arange(32.0, dtype="float32").reshape(2, 4, 4, 1)
    if stock_error[BACKEND] is None:  # torch ignores the padding: it pools "valid"
        np.testing.assert_array_equal(to_numpy(stock(x)), reference.downsample_images(x, (2, 2), (2, 2)))
        return
    with pytest.raises(Exception) as error:
        stock(x)
    assert type(error.value).__name__ == stock_error[BACKEND]


def test_stock_rejects_a_pool_size_of_one_element_as_recorded(rng):
    with pytest.raises(ValueError, match=r"pool_size.*\(3,\)"):
        keras.layers.MaxPooling2D((3,))
    x = rng.normal(size=(2, 7, 6, 3)).astype("float32")
    np.testing.assert_array_equal(to_numpy(kjp.MaxPool2D((3,))(x)), to_numpy(keras.layers.MaxPooling2D((3, 3))(x)))


# A "valid" 5x5 window on a 4x4 input, in stock's call: an empty output where
# XLA pools (jax, numpy), else the backend's error.
TOO_LARGE_WINDOW_IN_STOCK = {"jax": (2, 0, 0, 1), "numpy": (2, 0, 0, 1), "tensorflow": "AbortedError", "torch": "RuntimeError"}


def test_stock_valid_window_larger_than_the_input_as_recorded():
    x = np.zeros((2, 4, 4, 1), "float32")
    stock, ours = keras.layers.MaxPooling2D(5), kjp.MaxPool2D(5)
    for layer in (stock, ours):
        with pytest.raises(ValueError):
            layer.compute_output_shape(x.shape)
    with pytest.raises(ValueError, match="pool_size=5 exceeds a spatial dimension of size 4"):
        ours(x)
    expected = TOO_LARGE_WINDOW_IN_STOCK[BACKEND]
    if isinstance(expected, tuple):
        assert tuple(stock(x).shape) == expected
    else:
        with pytest.raises(Exception) as error:
            stock(x)
        assert type(error.value).__name__ == expected


@only_on("numpy")
def test_stock_pools_through_jax_on_the_numpy_backend_as_recorded(monkeypatch, rng):
    import jax

    def unavailable(*args, **kwargs):
        raise RuntimeError("jax.lax.reduce_window was called")

    monkeypatch.setattr(jax.lax, "reduce_window", unavailable)
    x = rng.normal(size=(2, 6, 6, 3)).astype("float32")
    with pytest.raises(RuntimeError, match="reduce_window was called"):
        keras.layers.MaxPooling2D(2)(x)
    np.testing.assert_array_equal(to_numpy(kjp.MaxPool2D(2)(x)), reference.downsample_images(x, (2, 2), (2, 2)))


@pytest.mark.parametrize("pool_size, strides, padding, data_format", GRID[::9])
def test_output_shape_equals_stock_and_output(pool_size, strides, padding, data_format, rng):
    ours = kjp.MaxPool2D(pool_size, strides, padding, data_format)
    stock = keras.layers.MaxPooling2D(pool_size, strides, padding, data_format)
    x = _input(SHAPES[1], data_format, rng)
    shape = ours.compute_output_shape(x.shape)
    assert shape == stock.compute_output_shape(x.shape) == to_numpy(ours(x)).shape


def test_config_without_pooling_fields_gets_stock_defaults():
    config = {"name": "pool"}  # as an older or hand-written file may hold
    ours, stock = kjp.MaxPool2D.from_config(config), keras.layers.MaxPooling2D.from_config(config)
    assert ours.get_config() == stock.get_config()
