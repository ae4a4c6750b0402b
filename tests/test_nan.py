"""NaN and infinities, on every backend and in every compiled form.

A window holding a NaN gives NaN, for every channel count and NaN position;
its gradient goes to its first NaN in row-major window order (a NaN counts as
the maximum, as in `np.argmax`, which is what the numpy reference does).
+inf and -inf behave as `max` does; a window of -inf gives -inf and sends its
gradient to its first element, padding included.

Stock Keras differs: TensorFlow drops NaN (an all-NaN or all -inf window gives
the lowest finite value), and so do JAX and numpy (through XLA:CPU's
reduce_window) where windows tile an input of 4096 values or more; the
gradient of a NaN window goes to the last NaN on torch, elsewhere on JAX, and
to the largest non-NaN element on TensorFlow.
"""

import keras
import numpy as np
import pytest

import keras_jax_pool as kjp
from keras_jax_pool import reference
from tests.conftest import BACKEND, CHEAP_FORMS, ON_ACCELERATOR, GRADIENT_COMPILES, compile_as, only_on, to_numpy
from tests.conftest import FORMS as ALL_FORMS
from tests.test_properties import AUTODIFF, expected_output, gradient, tensor

CHANNELS = [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 32, 33, 64]
NAN = np.nan
INF = np.inf


FORMS = pytest.mark.parametrize("form", ALL_FORMS)
CHEAP = pytest.mark.parametrize("form", CHEAP_FORMS)
GRADIENT_FORMS = pytest.mark.parametrize("form", GRADIENT_COMPILES)


def _nan_in_every_position(channels, data_format, batch=96):
    """Eleven 3x3 windows side by side (pool 3, stride 3): window p < 9 holds
    one NaN at row-major position p (in every channel, and in one channel only
    for odd p), window 9 is all NaN and window 10 holds none. A batch of 96
    makes the input large enough (over 9000 values) for XLA:CPU's
    reduce_window to drop NaN, as it does from a few thousand values on."""
    rng = np.random.default_rng(channels)
    x = rng.integers(-5, 6, size=(batch, 3, 33, channels)).astype("float32")
    for p in range(9):
        where = (slice(None), p // 3, 3 * p + p % 3)
        x[where + ((slice(None),) if p % 2 == 0 else (channels // 2,))] = NAN
    x[:, :, 27:30] = NAN
    return np.moveaxis(x, -1, 1).copy() if data_format == "channels_first" else x


@CHEAP
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("channels", CHANNELS)
def test_window_holding_nan_gives_nan(channels, data_format, form):
    x = _nan_in_every_position(channels, data_format)
    pool = compile_as(form, lambda v: kjp.max_pool2d(v, 3, 3, "valid", data_format))
    expected = expected_output(x, (3, 3), (3, 3), data_format=data_format)
    assert np.isnan(expected).sum() == 96 * (6 * channels + 4)
    np.testing.assert_array_equal(to_numpy(pool(tensor(x))), expected)


@FORMS
@pytest.mark.parametrize("padding, data_format", [("valid", "channels_last"), ("same", "channels_first")])
def test_overlapping_windows_holding_nan_give_nan(padding, data_format, form, rng):
    x = rng.integers(-5, 6, size=(2, 7, 8, 3)).astype("float32")
    x[rng.random(x.shape) < 0.1] = NAN
    pool = compile_as(form, lambda v: kjp.max_pool2d(v, (3, 2), (2, 1), padding, data_format))
    expected = expected_output(x, (3, 2), (2, 1), padding, data_format)
    np.testing.assert_array_equal(to_numpy(pool(tensor(x))), expected)


# Overlapping and gapped windows on inputs large enough (over 4096 values)
# for XLA:CPU to pick its library kernel if it would.
LARGE_GEOMETRIES = [((3, 3), (2, 2), "same"), ((3, 3), (2, 2), "valid"), ((4, 4), (2, 2), "valid"),
                    ((3, 2), (1, 2), "same"), ((2, 2), (3, 3), "valid"), ((2, 2), (2, 2), "same")]


@CHEAP
@pytest.mark.parametrize(
    "dtype, data_format",
    [("float16", "channels_first"), ("bfloat16", "channels_last"), ("float32", "channels_last"), ("float32", "channels_first")],
)
@pytest.mark.parametrize("pool_size, strides, padding", LARGE_GEOMETRIES)
def test_large_inputs_with_nan_give_nan_in_any_geometry(pool_size, strides, padding, dtype, data_format, form, rng):
    x = rng.integers(-5, 6, size=(16, 15, 17, 8)).astype("float32")
    x[rng.random(x.shape) < 0.02] = NAN
    x[3] = NAN  # whole windows of NaN
    if data_format == "channels_first":
        x = np.moveaxis(x, -1, 1).copy()
    x = x.astype(dtype)
    pool = compile_as(form, lambda v: kjp.max_pool2d(v, pool_size, strides, padding, data_format))
    y = to_numpy(pool(tensor(x))).astype("float32")
    expected = expected_output(x, pool_size, strides, padding, data_format).astype("float32")
    assert 0.1 < np.isnan(expected).mean() < 0.9  # windows with and without NaN
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_nan_propagates_in_every_float_dtype(dtype):
    x = _nan_in_every_position(4, "channels_last").astype(dtype)
    y = to_numpy(kjp.max_pool2d(tensor(x), 3, 3))
    np.testing.assert_array_equal(y.astype("float32"), expected_output(x, (3, 3), (3, 3)).astype("float32"))


def test_layer_and_predict_propagate_nan():
    x = _nan_in_every_position(5, "channels_last")
    expected = expected_output(x, (3, 3), (3, 3))
    layer = kjp.MaxPool2D(3)
    model = keras.Sequential([keras.Input(x.shape[1:]), layer])
    np.testing.assert_array_equal(to_numpy(layer(x)), expected)
    np.testing.assert_array_equal(model.predict(x, verbose=0), expected)


def test_stock_keeps_or_drops_nan_as_recorded():
    """Ours gives NaN. Stock drops every NaN on TensorFlow (an all-NaN window
    gives -3.4e38) and, for inputs of more than a few thousand values, on JAX
    and numpy (both pool through XLA:CPU's reduce_window); torch keeps them.
    If this fails, upstream changed: update the README."""
    if ON_ACCELERATOR:
        pytest.skip("records XLA:CPU's kernels; on the H200 stock's reduce_window kept NaN (README \"On a GPU\")")
    x = _nan_in_every_position(8, "channels_last")
    expected = expected_output(x, (3, 3), (3, 3))
    stock = to_numpy(keras.layers.MaxPooling2D(3)(x))
    np.testing.assert_array_equal(to_numpy(kjp.MaxPool2D(3)(x)), expected)
    if BACKEND == "torch":
        np.testing.assert_array_equal(stock, expected)
    else:
        assert not np.isnan(stock).any()
    if BACKEND == "tensorflow":
        assert (stock[:, 0, 9] == np.finfo("float32").min).all()


INFINITY_WINDOWS = {
    "+inf": [[1, INF], [2, 0]],
    "+inf twice": [[INF, 1], [INF, 0]],
    "-inf and finite": [[-INF, -7], [-INF, -INF]],
    "all -inf": [[-INF, -INF], [-INF, -INF]],
    "+inf and -inf": [[-INF, INF], [0, -INF]],
    "NaN beats +inf": [[INF, NAN], [1, INF]],
    "NaN and -inf": [[-INF, -INF], [NAN, -INF]],
}


def _windows(cases, channels=3):
    """The 2x2 windows `cases`, side by side along the width, in `channels`."""
    row = np.concatenate([np.array(w, "float32") for w in cases], axis=1)
    return np.repeat(row[None, :, :, None], channels, axis=3)


@FORMS
def test_infinities_behave_as_max(form):
    x = _windows(INFINITY_WINDOWS.values())
    pool = compile_as(form, lambda v: kjp.max_pool2d(v, 2))
    y = to_numpy(pool(tensor(x)))
    expected = expected_output(x, (2, 2), (2, 2))
    np.testing.assert_array_equal(y, expected)
    np.testing.assert_array_equal(y[0, 0, :, 0], [INF, INF, -7, -INF, INF, NAN, NAN])


def test_stock_window_of_minus_inf_as_recorded():
    """Stock TensorFlow gives the lowest finite value for a window of -inf."""
    x = _windows([INFINITY_WINDOWS["all -inf"]])
    stock = to_numpy(keras.layers.MaxPooling2D(2)(x))
    assert (to_numpy(kjp.MaxPool2D(2)(x)) == -INF).all()
    assert (stock == (np.finfo("float32").min if BACKEND == "tensorflow" else -INF)).all()


# Where each window's gradient goes, as the flat row-major index of its first
# maximum (NaN counting as the maximum).
GRADIENT_WINDOWS = {
    "two NaN": ([[1, NAN], [NAN, 0]], 1),
    "NaN first": ([[NAN, 5], [NAN, 0]], 0),
    "NaN after the max": ([[5, NAN], [0, 0]], 1),
    "NaN last": ([[5, 1], [0, NAN]], 3),
    "all NaN": ([[NAN, NAN], [NAN, NAN]], 0),
    "tie": ([[1, 5], [5, 0]], 1),
    "all -inf": ([[-INF, -INF], [-INF, -INF]], 0),
    "+inf tie": ([[1, INF], [INF, NAN]], 3),
}


def _nan_window_gradient_expectation(channels):
    x = _windows([w for w, _ in GRADIENT_WINDOWS.values()], channels)
    expected = np.zeros((len(GRADIENT_WINDOWS), 4), "float32")
    expected[np.arange(len(GRADIENT_WINDOWS)), [i for _, i in GRADIENT_WINDOWS.values()]] = 1
    # back to the layout of x: window k covers columns 2k, 2k+1
    expected = expected.reshape(-1, 2, 2).transpose(1, 0, 2).reshape(1, 2, -1, 1)
    return x, np.repeat(expected, channels, axis=3)


@only_on(*AUTODIFF)
@GRADIENT_FORMS
@pytest.mark.parametrize("channels", [1, 4, 8, 17])
def test_gradient_of_nan_window_goes_to_its_first_nan(channels, form):
    x, expected = _nan_window_gradient_expectation(channels)
    cotangent = np.ones((1, 1, len(GRADIENT_WINDOWS), channels), "float32")
    got = gradient(lambda v: kjp.max_pool2d(v, 2), tensor(x), cotangent, compile=lambda g: compile_as(form, g))
    np.testing.assert_array_equal(reference.max_pool_gradient(x, cotangent, (2, 2), (2, 2)), expected)
    np.testing.assert_array_equal(got, expected)


def _nans(dtype):
    """NaNs of `dtype` with either sign and the smallest and the largest
    payload, made from their bits: (+small, -small, +large, -large)."""
    bits, width = {"float16": ("uint16", 10), "bfloat16": ("uint16", 7), "float32": ("uint32", 23)}[dtype]
    size = np.dtype(bits).itemsize * 8
    exponent = ((1 << (size - width - 1)) - 1) << width
    sign = 1 << (size - 1)
    small, large = exponent | 1, exponent | ((1 << width) - 1)
    return np.array([small, sign | small, large, sign | large], bits).view(dtype)


@only_on(*AUTODIFF)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
@pytest.mark.parametrize("pool_size, strides, padding", [(2, 2, "valid"), (3, 2, "same")])
def test_gradient_goes_to_the_first_nan_whatever_its_sign_and_payload(dtype, pool_size, strides, padding):
    """NaNs of both signs and of any payload rank alike, above +inf: each
    2x2 tile's gradient goes to its first NaN, however the NaNs after it
    compare as integers or floats."""
    small, minus_small, large, minus_large = _nans(dtype)
    tiles = [
        [1, minus_large, small, 0],
        [small, minus_large, 2, large],
        [3, 2, minus_small, minus_large],
        [-INF, INF, large, minus_small],
        [minus_large, small, INF, -INF],
        [0, -0.0, INF, minus_small],
    ]
    # tile k covers columns 2k and 2k + 1 of a 2-row, 12-column image, 3 channels
    x = np.array(tiles, dtype).reshape(-1, 2, 2).transpose(1, 0, 2).reshape(1, 2, -1, 1)
    x = np.repeat(x, 3, axis=3)
    wide = x.astype("float32")
    assert np.isnan(wide).sum() == 3 * 12
    cotangent = np.ones(expected_output(wide, (pool_size,) * 2, (strides,) * 2, padding).shape, "float32")
    expected = reference.max_pool_gradient(wide, cotangent, (pool_size,) * 2, (strides,) * 2, padding)
    got = gradient(lambda v: kjp.max_pool2d(v, pool_size, strides, padding), tensor(x), cotangent)
    np.testing.assert_array_equal(got.astype("float32"), expected)


@only_on(*AUTODIFF)
def test_stock_gradient_of_nan_window_as_recorded():
    """Stock sends the gradient of [[1, NaN], [NaN, 0]] elsewhere than to the
    first NaN (index 1): to the last NaN (2) on torch, to the 1 (0) on
    TensorFlow, to the 0 (3) on JAX."""
    x = _windows([GRADIENT_WINDOWS["two NaN"][0]], 1)
    cotangent = np.ones((1, 1, 1, 1), "float32")
    stock = gradient(keras.layers.MaxPooling2D(2), tensor(x), cotangent)
    ours = gradient(kjp.MaxPool2D(2), tensor(x), cotangent)
    assert ours.ravel().tolist() == [0, 1, 0, 0]
    assert stock.ravel().tolist() == {"torch": [0, 0, 1, 0], "tensorflow": [1, 0, 0, 0], "jax": [0, 0, 0, 1]}[BACKEND]


@only_on(*AUTODIFF)
@GRADIENT_FORMS
def test_gradient_of_minus_inf_window_goes_to_its_first_element_even_padding(form):
    # pool 3 "same" on 4x4 pads one row and column on top and left: the
    # window at (0, 0) starts in padding, the one at (1, 1) in the input.
    x = np.full((1, 4, 4, 2), -INF, "float32")
    cotangent = np.ones((1, 2, 2, 2), "float32")
    expected = reference.max_pool_gradient(x, cotangent, (3, 3), (3, 3), "same")
    got = gradient(lambda v: kjp.max_pool2d(v, 3, padding="same"), tensor(x), cotangent, compile=lambda g: compile_as(form, g))
    assert expected.sum() == 2  # windows (1, 1) of both channels, at x[2, 2]
    np.testing.assert_array_equal(got, expected)
