"""Property-based tests: over random shapes, windows, strides, paddings,
layouts and dtypes, the op's output equals the numpy reference, and its
gradient (jax.grad, tf.GradientTape, torch autograd) equals the reference
gradient: each window's cotangent goes to its first maximum in row-major
window order, a NaN counting as the maximum; overlapping windows add.

Reproducible: examples are derandomized and no example database is kept.
`KERAS_JAX_POOL_HYPOTHESIS=thorough` runs ten times as many examples.
"""

import os

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import keras_jax_pool as kjp
from keras_jax_pool import reference
from tests.conftest import BACKEND, gradient, only_on, tensor, to_numpy

_COMMON = dict(
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("keras_jax_pool-ci", max_examples=60, **_COMMON)
settings.register_profile("keras_jax_pool-thorough", max_examples=600, **_COMMON)
PROFILE = settings.get_profile(
    "keras_jax_pool-" + os.environ.get("KERAS_JAX_POOL_HYPOTHESIS", "ci")
)
# JAX compiles the gradient anew for every shape (~0.4 s each on CPU).
GRADIENT_PROFILE = settings(PROFILE, max_examples=PROFILE.max_examples // (4 if BACKEND == "jax" else 1))

AUTODIFF = ("jax", "tensorflow", "torch")  # numpy has no autodiff


def _has_64_bit_types():
    if BACKEND != "jax":
        return True
    import jax

    return jax.config.jax_enable_x64  # 64-bit arrays exist only with x64 on


X64 = _has_64_bit_types()
FLOAT_DTYPES = ["float16", "bfloat16", "float32"] + (["float64"] if X64 else [])
INT_DTYPES = ["uint8", "int8", "int32"] + (["int64"] if X64 else [])


@st.composite
def pooling_cases(draw, dtypes, specials=()):
    """(x, pool_size, strides, padding, data_format): x a numpy array whose
    values are few (so windows hold ties), with some of `specials` mixed in."""
    padding = draw(st.sampled_from(["valid", "same"]))
    data_format = draw(st.sampled_from(["channels_last", "channels_first"]))
    pool_size = tuple(draw(st.integers(1, 4)) for _ in range(2))
    strides = draw(st.one_of(st.none(), st.tuples(st.integers(1, 4), st.integers(1, 4))))
    low = pool_size if padding == "valid" else (1, 1)
    rows, cols = (draw(st.integers(lo, 9)) for lo in low)
    batch, channels = draw(st.integers(0, 3)), draw(st.integers(1, 4))
    dtype = draw(st.sampled_from(dtypes))
    shape = (batch, rows, cols, channels)
    size = int(np.prod(shape))
    values = draw(st.lists(st.sampled_from([*range(-3, 4), *specials]), min_size=size, max_size=size))
    x = np.array(values, dtype="float64").reshape(shape)
    if data_format == "channels_first":
        x = np.moveaxis(x, -1, 1)
    return np.ascontiguousarray(x).astype(dtype), pool_size, strides, padding, data_format


def expected_output(x, pool_size, strides, padding="valid", data_format="channels_last"):
    """The numpy reference's output; `strides=None` means `pool_size`. The
    post's `downsample_images` for images, `downsample` for other ranks."""
    pool = reference.downsample_images if np.ndim(x) == 4 else reference.downsample
    with np.errstate(invalid="ignore"):  # bfloat16 NaN with infinities
        return pool(x, pool_size, strides or pool_size, padding=padding, data_format=data_format)


def _cotangent(x, pool_size, strides, padding, data_format):
    # Small integers: sums of them are exact in every float dtype.
    shape = expected_output(x, pool_size, strides, padding, data_format).shape
    return (np.arange(int(np.prod(shape))) % 3 + 1).reshape(shape).astype("float32")


def _check_output(case):
    x, pool_size, strides, padding, data_format = case
    y = kjp.max_pool2d(tensor(x), pool_size, strides, padding, data_format)
    assert keras.backend.standardize_dtype(y.dtype) == str(x.dtype)
    expected = expected_output(x, pool_size, strides, padding, data_format)
    assert expected.dtype == x.dtype
    np.testing.assert_array_equal(to_numpy(y).astype("float64"), expected.astype("float64"))


def _check_gradient(case):
    x, pool_size, strides, padding, data_format = case
    cotangent = _cotangent(*case)
    got = gradient(lambda v: kjp.max_pool2d(v, pool_size, strides, padding, data_format), tensor(x), cotangent)
    expected = reference.max_pool_gradient(x, cotangent, pool_size, strides or pool_size, padding, data_format)
    np.testing.assert_array_equal(got.astype("float64"), expected.astype("float64"))


ONE_BY_ONE = (np.full((1, 1, 1, 1), 2.0, "float32"), (1, 1), None, "valid", "channels_last")
WINDOW_IS_INPUT = (np.arange(30.0, dtype="float32").reshape(1, 5, 3, 2) % 4, (5, 3), None, "valid", "channels_last")
ZERO_BATCH = (np.zeros((0, 2, 7, 5), "float32"), (3, 2), (2, 1), "same", "channels_first")
ODD_SAME = (np.arange(63.0, dtype="float32").reshape(1, 7, 9, 1) % 5, (4, 3), (3, 2), "same", "channels_last")


@PROFILE
@given(pooling_cases(FLOAT_DTYPES + INT_DTYPES))
@example(ONE_BY_ONE)
@example(WINDOW_IS_INPUT)
@example(ZERO_BATCH)
@example(ODD_SAME)
def test_output_equals_reference(case):
    _check_output(case)


@PROFILE
@given(pooling_cases(FLOAT_DTYPES, specials=(np.nan, np.inf, -np.inf)))
def test_output_with_nan_and_infinities_equals_reference(case):
    _check_output(case)


@only_on(*AUTODIFF)
@GRADIENT_PROFILE
@given(pooling_cases(FLOAT_DTYPES, specials=(np.inf, -np.inf)))
@example(ONE_BY_ONE)
@example(WINDOW_IS_INPUT)
@example(ZERO_BATCH)
@example(ODD_SAME)
def test_gradient_equals_reference(case):
    _check_gradient(case)


@only_on(*AUTODIFF)
@GRADIENT_PROFILE
@given(pooling_cases(FLOAT_DTYPES, specials=(np.nan, np.nan, np.inf, -np.inf)))
def test_gradient_with_nan_equals_reference(case):
    _check_gradient(case)


@only_on(*AUTODIFF)
@GRADIENT_PROFILE
@given(pooling_cases(["float32"], specials=(np.nan, -np.inf)))
def test_gradient_through_the_layer_equals_reference(case):
    x, pool_size, strides, padding, data_format = case
    layer = kjp.MaxPool2D(pool_size, strides, padding, data_format)
    cotangent = _cotangent(*case)
    expected = reference.max_pool_gradient(x, cotangent, layer.pool_size, layer.strides, padding, data_format)
    np.testing.assert_array_equal(gradient(layer, tensor(x), cotangent), expected)


@pytest.mark.parametrize("case", [ONE_BY_ONE, WINDOW_IS_INPUT, ZERO_BATCH, ODD_SAME], ids=["1x1", "window-is-input", "zero-batch", "odd-same"])
def test_edge_shapes_equal_stock(case):
    x, pool_size, strides, padding, data_format = case
    ours = kjp.MaxPool2D(pool_size, strides, padding, data_format)(x)
    stock = keras.layers.MaxPooling2D(pool_size, strides, padding, data_format)(x)
    np.testing.assert_array_equal(to_numpy(ours), to_numpy(stock))
    np.testing.assert_array_equal(to_numpy(ours), expected_output(*case))


@pytest.mark.parametrize(
    "pool_size, strides, padding, data_format",
    [((2, 2), (2, 2), "valid", "channels_last"), ((3, 2), (1, 2), "same", "channels_first"),
     ((3, 3), (2, 2), "same", "channels_last"), ((2, 3), (3, 1), "valid", "channels_first")],
)
def test_reference_gradient_is_the_derivative_of_the_reference(pool_size, strides, padding, data_format, rng):
    """The oracle checked on its own, on every backend: with distinct values
    1 apart, moving one element by 1/2 changes no window's argmax, so the
    difference quotient of sum(pooled * c) is the exact derivative."""
    shape = (2, 5, 6, 2) if data_format == "channels_last" else (2, 2, 5, 6)
    x = rng.permutation(int(np.prod(shape))).reshape(shape).astype("float64") - 30
    c = _cotangent(x, pool_size, strides, padding, data_format).astype("float64")
    loss = lambda v: (expected_output(v, pool_size, strides, padding, data_format) * c).sum()  # noqa: E731
    step = np.zeros(x.size)
    derivative = np.empty(x.size)
    for i in range(x.size):
        step[i] = 0.5
        derivative[i] = (loss(x + step.reshape(shape)) - loss(x)) / 0.5
        step[i] = 0
    got = reference.max_pool_gradient(x, c, pool_size, strides, padding, data_format)
    np.testing.assert_array_equal(got, derivative.reshape(shape))
