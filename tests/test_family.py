"""The family: `MaxPool1D` and `MaxPool3D` keep, on every backend, what the
README promises for `MaxPool2D` (which the other modules test), and the
N-dimensional `max_pool` op agrees with `keras.ops.max_pool` for 1, 2 and 3
spatial axes.

Outputs, output shapes and configs equal those of stock
`keras.layers.MaxPooling1D` / `MaxPooling3D` and of the numpy reference
(`reference.downsample`); gradients are bit-identical to stock's and equal to
`reference.max_pool_gradient`; NaN, dtypes, properties, threads, saving
(across backends too) and serving from TensorFlow are checked as for 2D.

One difference is on purpose: under TensorFlow, stock MaxPooling3D's gradient
(TF's MaxPool3DGrad) gives every tied maximum of a window the window's whole
cotangent, where ours sends it to the first maximum in row-major window order
(as JAX, torch, TF's 2D MaxPool and the reference do). There, 3D gradients
are compared with stock's on input without ties, and with the reference on
any input; `test_stock_tensorflow_3d_gradient_of_ties_as_recorded` records
stock's behaviour.

Where ours does not keep a promise yet, the case is a strict xfail naming
the backend module that needs the fix (TF_3D_SUM_ORDER, the tape outside a
tf.function).
"""

import itertools

import keras
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import keras_jax_pool as kjp
from keras_jax_pool import layers, reference
from tests.conftest import (
    BACKEND,
    CHEAP_FORMS,
    GRADIENT_COMPILES,
    compile_as,
    gradient,
    only_on,
    run_python,
    tensor,
    to_numpy,
)
from tests.test_dtypes import CANNOT_POOL, FLOATS, INTS, POOLABLE, REFUSED_EVERYWHERE, _values
from tests.test_gradients import _assert_equals_stock, _cotangent, _integer_cotangent
from tests.test_properties import AUTODIFF, FLOAT_DTYPES, GRADIENT_PROFILE, INT_DTYPES, PROFILE, X64
from tests.test_threads import THREADS, _at_once

OURS = {1: kjp.MaxPool1D, 2: kjp.MaxPool2D, 3: kjp.MaxPool3D}
STOCK = {dims: layers.STOCK[ours] for dims, ours in OURS.items()}
KINDS = pytest.mark.parametrize("dims", [1, 3], ids=["1d", "3d"])
ALL_KINDS = pytest.mark.parametrize("dims", [1, 2, 3], ids=["1d", "2d", "3d"])
DATA_FORMATS = ["channels_last", "channels_first"]
# TF's MaxPool3DGrad gives every tied maximum of a window its cotangent.
STOCK_3D_GRADIENT_SPLITS_TIES = BACKEND == "tensorflow"


def _layout(shape, data_format):
    """A channels-last shape (batch, *spatial, channels) in `data_format`."""
    return tuple(shape) if data_format == "channels_last" else (shape[0], shape[-1], *shape[1:-1])


def _ties(rng, shape, data_format, dtype="float32"):
    """Few distinct values, so that windows hold ties."""
    return rng.integers(-4, 5, size=_layout(shape, data_format)).astype(dtype)


def _relu(rng, shape, data_format, dtype="float32"):
    """Windows full of zeros: ties."""
    return np.maximum(rng.normal(size=_layout(shape, data_format)), 0).astype(dtype)


def _without_ties(rng, shape, data_format):
    """Distinct float32 values: no window holds a tie."""
    shape = _layout(shape, data_format)
    return (rng.permutation(int(np.prod(shape))).reshape(shape) - 50.0).astype("float32")


def _expected(x, pool_size, strides, padding="valid", data_format="channels_last"):
    """The numpy reference's output."""
    with np.errstate(invalid="ignore"):  # bfloat16 NaN with infinities
        return reference.downsample(x, pool_size, strides, padding=padding, data_format=data_format)


def _small_cotangent(shape):
    """Small integers: every sum of them is exact, in any order and dtype."""
    return (np.arange(int(np.prod(shape))) % 3 + 1).reshape(shape).astype("float32")


def _jax_jit(fn):
    return compile_as("jax.jit", fn)


def _window(value, dims):
    return (value,) * dims if isinstance(value, int) else tuple(value)


# --- Outputs, shapes and configs equal stock's and the reference's -----------

# (pool_size, strides) per kind: ints, tuples, windows wider and narrower than
# the strides, gapped windows; every "valid" window fits every shape below.
WINDOWS = {
    1: [(1, None), (2, None), (3, 1), (3, 2), ((4,), (3,)), (2, 3), (5, 2)],
    2: [((2, 2), None), ((3, 2), (2, 1)), ((1, 3), (3, 2)), (3, 1)],
    3: [
        ((2, 2, 2), None),
        (1, None),
        ((2, 3, 1), (1, 2, 3)),
        ((3, 1, 2), 1),
        ((1, 2, 3), (2, 1, 2)),
        (3, 2),
        ((4, 2, 3), (3, 3, 1)),
    ],
}
# Channels last; odd sizes, a batch of one and of zero.
SHAPES = {
    1: [(1, 11, 3), (2, 7, 2), (0, 6, 4)],
    2: [(1, 7, 9, 3), (0, 6, 5, 4)],
    3: [(1, 5, 7, 6, 2), (2, 4, 5, 7, 3), (0, 6, 4, 5, 2)],
}


def _configs(windows):
    """(pool_size, strides, padding, data_format): each window with both
    paddings, the layouts taking turns so that each window has both."""
    return [
        (p, s, pad, DATA_FORMATS[(i // 4 + i) % 2])
        for i, ((p, s), pad) in enumerate(itertools.product(windows, ["valid", "same"]))
    ]


def _grid(kinds, every=1):
    return [
        pytest.param(dims, p, s, pad, fmt, id=f"{dims}d-pool{p}-stride{s}-{pad}-{fmt[9:]}")
        for dims in kinds
        for p, s, pad, fmt in _configs(WINDOWS[dims])
    ][::every]


@pytest.mark.parametrize("dims, pool_size, strides, padding, data_format", _grid([1, 3]))
def test_output_equals_stock_and_reference(dims, pool_size, strides, padding, data_format, rng):
    ours = OURS[dims](pool_size, strides, padding, data_format)
    stock = STOCK[dims](pool_size, strides, padding, data_format)
    for shape in SHAPES[dims]:
        x = _ties(rng, shape, data_format)
        y = to_numpy(ours(x))
        np.testing.assert_array_equal(y, _expected(x, ours.pool_size, ours.strides, padding, data_format))
        np.testing.assert_array_equal(y, to_numpy(stock(x)))
        assert ours.compute_output_shape(x.shape) == stock.compute_output_shape(x.shape) == y.shape


@pytest.mark.parametrize("dims, pool_size, strides, padding, data_format", _grid([1, 2, 3], every=3))
def test_max_pool_op_equals_stock_op_and_reference(dims, pool_size, strides, padding, data_format, rng):
    pool_size, strides = _window(pool_size, dims), _window(strides or pool_size, dims)
    for shape in SHAPES[dims]:
        x = _ties(rng, shape, data_format)
        y = to_numpy(kjp.max_pool(x, pool_size, strides, padding, data_format))
        np.testing.assert_array_equal(y, _expected(x, pool_size, strides, padding, data_format))
        # Stock's op, given its strides: without them it fails on jax and numpy.
        np.testing.assert_array_equal(y, to_numpy(keras.ops.max_pool(x, pool_size, strides, padding, data_format)))


@KINDS
@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_symbolic_shapes_with_unknown_dims_match_stock(dims, padding, data_format):
    spatial = {1: (None,), 3: (None, 9, None)}[dims]
    shape = (*spatial, 3) if data_format == "channels_last" else (3, *spatial)
    pool_size, strides = {1: (3, 2), 3: ((3, 2, 2), (2, 3, 1))}[dims]
    inputs = keras.Input(shape=shape)
    ours = OURS[dims](pool_size, strides, padding, data_format)(inputs)
    stock = STOCK[dims](pool_size, strides, padding, data_format)(inputs)
    assert ours.shape == stock.shape
    assert None in ours.shape[1:]
    static = (2, *(7 if n is None else n for n in shape))
    layer = OURS[dims](pool_size, strides, padding, data_format)
    assert layer.compute_output_shape(static) == STOCK[dims](pool_size, strides, padding, data_format).compute_output_shape(static)


@pytest.mark.parametrize("dims, pool_size, strides, padding, data_format", _grid([1, 3], every=5))
def test_config_equals_stock_and_converts_both_ways(dims, pool_size, strides, padding, data_format):
    kwargs = dict(pool_size=pool_size, strides=strides, padding=padding, data_format=data_format, name="pool")
    ours, stock = OURS[dims](**kwargs), STOCK[dims](**kwargs)
    assert ours.get_config() == stock.get_config()
    from_stock = OURS[dims].from_config(stock.get_config())
    from_ours = STOCK[dims].from_config(ours.get_config())
    assert type(from_stock) is OURS[dims] and type(from_ours) is STOCK[dims]
    assert from_stock.get_config() == from_ours.get_config() == stock.get_config()


@KINDS
def test_defaults_are_stock_defaults(dims):
    ours, stock = OURS[dims](name="pool"), STOCK[dims](name="pool")
    assert ours.pool_size == ours.strides == (2,) * dims
    assert ours.get_config() == stock.get_config()
    # An older or hand-written file may hold no pooling fields at all.
    config = {"name": "pool"}
    assert OURS[dims].from_config(config).get_config() == STOCK[dims].from_config(config).get_config()
    layer = OURS[dims](name="p", dtype="bfloat16", trainable=False)
    assert layer.get_config() == STOCK[dims](name="p", dtype="bfloat16", trainable=False).get_config()


@KINDS
def test_named_and_aliased_as_stock(dims):
    assert getattr(kjp, f"MaxPooling{dims}D") is OURS[dims]
    assert issubclass(OURS[dims], keras.layers.Layer)
    # Named from stock's counter: unique in a model mixing both.
    names = [layer.name for layer in (OURS[dims](), STOCK[dims](), OURS[dims]())]
    assert len(set(names)) == 3
    assert all(name.startswith(f"max_pooling{dims}d") for name in names)


@KINDS
@pytest.mark.parametrize("policy", ["float32", "mixed_float16", "mixed_bfloat16", "bfloat16"])
def test_dtype_policy_gives_stock_output_dtype(dims, policy, rng):
    x = rng.normal(size=(2, *(6,) * dims, 3)).astype("float32")
    ours = OURS[dims](dtype=policy)(x)
    assert keras.backend.standardize_dtype(ours.dtype) == keras.DTypePolicy(policy).compute_dtype
    if (BACKEND, dims, policy) == ("tensorflow", 3, "mixed_float16"):
        with pytest.raises(Exception) as error:  # TF's MaxPool3D has no float16 CPU kernel
            STOCK[dims](dtype=policy)(x)
        assert type(error.value).__name__ == "NotFoundError"
        return
    stock = STOCK[dims](dtype=policy)(x)
    assert ours.dtype == stock.dtype
    np.testing.assert_array_equal(to_numpy(ours), to_numpy(stock))


# --- Gradients ----------------------------------------------------------------

GRADIENT_WINDOWS = {
    1: [((2,), (2,)), ((3,), (2,)), ((4,), (1,)), ((2,), (3,))],
    # 3x3x3 stride 2: overlapping along every axis, the backward's shared padding.
    3: [((2, 2, 2), (2, 2, 2)), ((3, 2, 2), (2, 1, 2)), ((2, 3, 1), (1, 2, 3)), ((1, 1, 1), (1, 1, 1)), ((3, 3, 3), (2, 2, 2))],
}
GRADIENT_SHAPES = {1: (2, 13, 3), 3: (2, 5, 6, 7, 2)}


def _half_dtypes(dims):
    # Stock TF's MaxPool3D has no float16 kernel, and bfloat16 has too few
    # bits for input without ties.
    return [] if dims == 3 and STOCK_3D_GRADIENT_SPLITS_TIES else ["bfloat16", "float16"]


# Every configuration in float32; each half-precision type on a quarter of
# them (overlapping windows among them); each case eagerly or compiled, in turn.
GRADIENT_GRID = [
    pytest.param(dims, p, s, pad, fmt, dtype, form, id=f"{dims}d-pool{p}-stride{s}-{pad}-{fmt[9:]}-{dtype}-{form}")
    for dims in (1, 3)
    for i, (p, s, pad, fmt) in enumerate(_configs(GRADIENT_WINDOWS[dims]))
    for j, dtype in enumerate(["float32"] + (_half_dtypes(dims) if i % 4 == 3 else []))
    # Layouts, paddings and forms all meet.
    for form in [GRADIENT_COMPILES[(i // 2 + i % 2 + j) % len(GRADIENT_COMPILES)]]
]


@only_on(*AUTODIFF)
@pytest.mark.parametrize("dims, pool_size, strides, padding, data_format, dtype, form", GRADIENT_GRID)
def test_gradient_bit_identical_to_stock(dims, pool_size, strides, padding, data_format, dtype, form, rng):
    ours = OURS[dims](pool_size, strides, padding, data_format, dtype=dtype)
    stock = STOCK[dims](pool_size, strides, padding, data_format, dtype=dtype)
    if dims == 3 and STOCK_3D_GRADIENT_SPLITS_TIES:
        x = _without_ties(rng, GRADIENT_SHAPES[dims], data_format)
    else:
        x = _relu(rng, GRADIENT_SHAPES[dims], data_format, dtype)
    c = _cotangent(ours, x, rng)
    if dims == 3 and BACKEND == "tensorflow" and _overlapping_axes(ours) >= 2:
        _assert_equals_stock_to_rounding(ours, stock, x, c, form)  # see TF_3D_SUM_ORDER
    else:
        _assert_equals_stock(ours, stock, x, c, form)


@only_on(*AUTODIFF)
@pytest.mark.parametrize("dtype", _half_dtypes(3))
@pytest.mark.parametrize("padding, data_format", [("same", "channels_last"), ("valid", "channels_first")])
def test_half_gradient_of_windows_overlapping_on_every_axis_bit_identical_to_stock(padding, data_format, dtype, rng):
    """3x3x3 stride 2: up to 8 windows add into one element, rounded after
    each add as stock's are (under JAX, through the shared padding of the
    backward)."""
    ours = OURS[3](3, 2, padding, data_format, dtype=dtype)
    stock = STOCK[3](3, 2, padding, data_format, dtype=dtype)
    x = _relu(rng, GRADIENT_SHAPES[3], data_format, dtype)
    _assert_equals_stock(ours, stock, x, _cotangent(ours, x, rng), GRADIENT_COMPILES[-1])


def _overlapping_axes(layer):
    return sum(k > s for k, s in zip(layer.pool_size, layer.strides))


def _assert_equals_stock_to_rounding(ours, stock, x, c, form):
    """The same elements receive the same terms, summed in another order:
    equal to within (terms - 1) * eps * sum(|terms|) per element."""
    g_ours, g_stock = (gradient(layer, tensor(x), c, compile=lambda g: compile_as(form, g)) for layer in (ours, stock))
    assert g_ours.dtype == g_stock.dtype
    assert np.array_equal(g_ours != 0, g_stock != 0)
    terms = np.prod([-(-k // s) for k, s in zip(ours.pool_size, ours.strides)])
    magnitude = reference.max_pool_gradient(x, np.abs(c), ours.pool_size, ours.strides, ours.padding, ours.data_format)
    bound = (terms - 1) * float(np.finfo(x.dtype).eps) * magnitude.astype("float64")
    assert (np.abs(g_ours.astype("float64") - g_stock.astype("float64")) <= bound).all()


TF_3D_SUM_ORDER = (
    "backends/tensorflow.py: the 3D gradient, taken through two 2D poolings (depth after height "
    "and width), adds the cotangents of windows overlapping along two or more axes in another order "
    "than stock's MaxPool3DGrad: float sums differ from stock's in the last bits, even without ties"
)


@only_on("tensorflow")
@pytest.mark.xfail(strict=True, reason=TF_3D_SUM_ORDER)
def test_tensorflow_3d_gradient_of_windows_overlapping_on_two_axes_bit_identical_to_stock(rng):
    ours, stock = kjp.MaxPool3D(2, 1), keras.layers.MaxPooling3D(2, 1)
    x = _without_ties(rng, GRADIENT_SHAPES[3], "channels_last")
    _assert_equals_stock(ours, stock, x, _cotangent(ours, x, rng), "eager")


@only_on(*AUTODIFF)
@pytest.mark.parametrize("form", GRADIENT_COMPILES)
@pytest.mark.parametrize(
    "dims, pool_size, strides, padding, data_format",
    [
        pytest.param(dims, p, s, pad, fmt, id=f"{dims}d-pool{p}-stride{s}-{pad}-{fmt[9:]}")
        for dims in (1, 3)
        # Overlapping windows, and gapped ones.
        for (p, s), pad, fmt in zip(GRADIENT_WINDOWS[dims][1::2], ["same", "valid"], DATA_FORMATS[::-1])
    ],
)
def test_gradient_equals_reference(dims, pool_size, strides, padding, data_format, form, rng):
    x = _relu(rng, GRADIENT_SHAPES[dims], data_format)
    layer = OURS[dims](pool_size, strides, padding, data_format)
    c = _integer_cotangent(layer, x, rng)
    expected = reference.max_pool_gradient(x, c, pool_size, strides, padding, data_format)
    np.testing.assert_array_equal(gradient(layer, tensor(x), c, compile=lambda g: compile_as(form, g)), expected)


@only_on(*AUTODIFF)
@KINDS
def test_gradient_of_negative_values_never_goes_to_padding(dims, rng):
    # A window longer than the input along every axis, stride 1: leading
    # window positions of every output lie in padding only.
    pool_size, shape = {1: ((5,), (2, 2, 3)), 3: ((3, 3, 2), (2, 1, 2, 1, 2))}[dims]
    ours = OURS[dims](pool_size, 1, "same")
    stock = STOCK[dims](pool_size, 1, "same")
    x = -60 - _without_ties(rng, shape, "channels_last")  # all below -9, no ties
    c = _integer_cotangent(ours, x, rng)
    expected = reference.max_pool_gradient(x, c, ours.pool_size, ours.strides, "same")
    reached = reference.max_pool_gradient(x, np.abs(c), ours.pool_size, ours.strides, "same")
    assert reached.sum() == np.abs(c).sum()  # no window's cotangent was dropped in padding
    form = GRADIENT_COMPILES[dims % len(GRADIENT_COMPILES)]
    np.testing.assert_array_equal(gradient(ours, tensor(x), c, compile=lambda g: compile_as(form, g)), expected)
    _assert_equals_stock(ours, stock, x, c, form)


@only_on("tensorflow")
def test_stock_tensorflow_3d_gradient_of_ties_as_recorded():
    """Stock TF's MaxPool3DGrad, run eagerly, gives each tied maximum of a
    window the whole cotangent (a window of eight equal values passes on 8x
    its cotangent), and in a tf.function the first maximum alone; ours,
    like TF's 2D MaxPool, sends it to the first. If this fails, upstream
    changed: update the README's row."""
    x = np.concatenate([np.full((1, 2, 2, 2, 1), 3.0), np.arange(8.0).reshape(1, 2, 2, 2, 1)], axis=3).astype("float32")
    c = np.array([2.0, 5.0], "float32").reshape(1, 1, 1, 2, 1)
    stock = gradient(keras.layers.MaxPooling3D(2), tensor(x), c)
    ours = gradient(kjp.MaxPool3D(2), tensor(x), c)
    expected = reference.max_pool_gradient(x, c, (2, 2, 2), (2, 2, 2))
    np.testing.assert_array_equal(ours, expected)
    assert ours.sum() == c.sum()
    assert stock[..., :2, :].sum() == 8 * 2.0  # every tie took the cotangent
    assert (stock[..., :2, :] == 2.0).all()
    np.testing.assert_array_equal(stock[..., 2:, :], expected[..., 2:, :])  # no ties: the same
    # In a tf.function on this CPU, stock's gradient goes to the first maximum.
    import tensorflow as tf

    traced = gradient(keras.layers.MaxPooling3D(2), tensor(x), c, compile=tf.function)
    np.testing.assert_array_equal(traced, expected)


@only_on("tensorflow")
@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("dtype, pooled_by", [("float32", "MaxPool3D"), ("bfloat16", "MaxPool3D"), ("float16", "MaxPool")])
def test_without_keep_nan_tensorflow_volumes_pool_with_stocks_op_where_no_tape_records(
    dtype, pooled_by, padding, data_format, rng
):
    """`config.set_keep_nan(False)` asks for stock's program: where no tape
    records (a predict step, an export), volumes pool with TF's MaxPool3D
    op, as stock's layer does, and give stock's outputs, windows holding
    NaN included; float16, which MaxPool3D has no kernel for, keeps the two
    2D poolings. By default the two 2D poolings and the NaN check stay."""
    import tensorflow as tf

    from keras_jax_pool import config

    pool_size, strides = (3, 2, 2), (2, 1, 2)
    x = _ties(rng, (2, 5, 7, 6, 3), data_format)
    x[0, 1, 2] = np.nan
    v = tf.cast(tf.constant(x), dtype)
    expected = _expected(x, pool_size, strides, padding, data_format)
    pool = lambda v: kjp.max_pool(v, pool_size, strides, padding, data_format)  # noqa: E731
    with config.keeping_nan(False):
        ours = tf.function(pool)
        ops = {op.type for op in ours.get_concrete_function(v).graph.get_operations()}
        assert pooled_by in ops and ({"MaxPool", "MaxPool3D"} - {pooled_by}) & ops == set(), ops
        for y in (ours(v), pool(v)):  # compiled and eager
            y = to_numpy(tf.cast(y, tf.float32))
            finite = ~np.isnan(expected)
            np.testing.assert_array_equal(y[finite], expected[finite])
            if dtype != "float16":  # stock has no float16 MaxPool3D kernel
                stock = keras.ops.max_pool(v, pool_size, strides, padding, data_format)
                np.testing.assert_array_equal(y, to_numpy(tf.cast(stock, tf.float32)))
    default = tf.function(pool)
    assert "MaxPool3D" not in {op.type for op in default.get_concrete_function(v).graph.get_operations()}
    np.testing.assert_array_equal(to_numpy(tf.cast(default(v), tf.float32)), expected)


@only_on("tensorflow")
def test_without_keep_nan_tensorflow_volume_gradients_still_go_to_the_first_maximum(rng):
    """Where a tape records, `set_keep_nan(False)` keeps the two 2D
    poolings, eagerly and traced (as Keras's train step is): a window's
    cotangent goes to its first maximum, where stock's eager MaxPool3DGrad
    gives it to every tie."""
    import tensorflow as tf

    from keras_jax_pool import config

    x = _ties(rng, (2, 4, 6, 4, 3), "channels_last")
    c = _small_cotangent((2, 2, 3, 2, 3))
    expected = reference.max_pool_gradient(x, c, (2, 2, 2), (2, 2, 2))
    with config.keeping_nan(False):
        np.testing.assert_array_equal(gradient(kjp.MaxPool3D(2), tensor(x), c), expected)
        assert not np.array_equal(gradient(keras.layers.MaxPooling3D(2), tensor(x), c), expected)  # stock splits ties

        @tf.function
        def step(v):
            with tf.GradientTape() as tape:
                tape.watch(v)
                y = kjp.max_pool(v, 2)
            return tape.gradient(y, v, output_gradients=tf.constant(c))

        ops = {op.type for op in step.get_concrete_function(tensor(x)).graph.get_operations()}
        assert "MaxPoolGrad" in ops and "MaxPool3DGrad" not in ops, ops
        np.testing.assert_array_equal(step(tensor(x)).numpy(), expected)


@only_on("tensorflow")
@pytest.mark.parametrize("dims, jit_compile", [(1, False), (3, True)], ids=["1d-graph", "3d-xla"])
def test_inside_tf_function_with_unknown_sizes(dims, jit_compile, rng):
    import tensorflow as tf

    pool_size, strides = {1: (3, 2), 3: ((3, 2, 2), (2, 1, 2))}[dims]
    pool_size, strides = _window(pool_size, dims), _window(strides, dims)
    x = _ties(rng, (2, *(5, 7, 6)[:dims], 3), "channels_last")
    x[0, 0] = np.nan
    op = lambda v: kjp.max_pool(v, pool_size, strides, "same")  # noqa: E731
    # Unknown batch and spatial sizes: the op must not need static shapes.
    signature = [tf.TensorSpec((None,) * (dims + 1) + (3,), tf.float32)]
    compiled = lambda f: tf.function(f, input_signature=signature, jit_compile=jit_compile)  # noqa: E731
    expected = _expected(x, pool_size, strides, "same")
    np.testing.assert_array_equal(compiled(op)(x).numpy(), expected)
    c = _small_cotangent(expected.shape)
    np.testing.assert_array_equal(
        gradient(op, tf.constant(x), c, compile=compiled), reference.max_pool_gradient(x, c, pool_size, strides, "same")
    )


@only_on("tensorflow")
@pytest.mark.parametrize("with_nan", [False, True], ids=["finite", "nan"])
@ALL_KINDS
def test_gradient_of_a_tf_function_holding_the_op_with_the_tape_outside(dims, with_nan, rng):
    """Traced while the tape records, the op takes its own gradient
    (`_guarded` in backends/tensorflow.py), not the finiteness tf.cond's,
    which cond_v2 cannot give across the function's boundary."""
    x = rng.normal(size=(2, *(5, 7, 6)[:dims], 3)).astype("float32")
    if with_nan:
        x[0, 1] = np.nan
    _check_gradient_from_outside_a_tf_function(x, traced_before=False)


def _check_gradient_from_outside_a_tf_function(x, traced_before):
    """The gradient of a tf.function pooling x (2, stride 1, "same"), taken
    with the tape outside it, equals the reference's; `traced_before`: the
    function is called once with no tape first."""
    import tensorflow as tf

    dims = x.ndim - 2
    op = tf.function(lambda v: kjp.max_pool(v, 2, 1, "same"))
    v = tf.constant(x)
    if traced_before:
        op(v)
    with tf.GradientTape() as tape:
        tape.watch(v)
        y = op(v)
    c = _small_cotangent(y.shape)
    expected = reference.max_pool_gradient(x, c, (2,) * dims, (1,) * dims, "same")
    np.testing.assert_array_equal(tape.gradient(y, v, output_gradients=tf.constant(c)).numpy(), expected)


@only_on("tensorflow")
@ALL_KINDS
def test_tensorflow_training_gradient_adds_no_tensor_of_zeros(dims, rng):
    """Traced under a tape, as Keras's train step is, the gradient is
    MaxPool's (or the NaN routing), chosen by a conditional over the
    gradients: the finiteness tf.cond's own gradient also returned a
    tensor of zeros the size of x, which an AddN added to MaxPool's
    (0.56 to 0.87x of stock's forward+backward speed; README "What the
    TensorFlow fix costs")."""
    import tensorflow as tf

    x = tf.constant(rng.normal(size=(2, *(6, 8, 4)[:dims], 3)).astype("float32"))

    @tf.function
    def step(v):
        with tf.GradientTape() as tape:
            tape.watch(v)
            y = kjp.max_pool(v, 2)
        return tape.gradient(y, v)

    ops = [op.type for op in step.get_concrete_function(x).graph.get_operations()]
    assert "MaxPoolGrad" in ops and "AddN" not in ops, ops


@only_on("tensorflow")
@pytest.mark.xfail(
    strict=True,
    reason="backends/tensorflow.py: a tf.function holding the op, traced first with no tape recording, "
    "then differentiated with the tape outside it, fails in cond_v2's gradient (AssertionError: "
    "t.graph == cond_graph); with config.set_keep_nan(False), which drops the finiteness tf.cond, "
    "it works, as stock does",
)
def test_gradient_of_a_tf_function_traced_before_the_tape(rng):
    _check_gradient_from_outside_a_tf_function(rng.normal(size=(2, 5, 7, 3)).astype("float32"), traced_before=True)


# --- NaN ----------------------------------------------------------------------

NAN_WINDOW = {1: (3,), 3: (2, 2, 2)}


def _nan_in_every_position(dims, channels, data_format, batch=96):
    """Windows (pool = stride = NAN_WINDOW) side by side along the last
    spatial axis: window p < n (n elements a window) holds one NaN at
    row-major position p (in every channel, and in one channel only for odd
    p), window n is all NaN and window n + 1 holds none. A batch of 96 makes
    the input large enough (over 4096 values) for XLA:CPU's reduce_window to
    drop NaN, as it does from a few thousand values on."""
    window = NAN_WINDOW[dims]
    n = int(np.prod(window))
    rng = np.random.default_rng(channels)
    x = rng.integers(-5, 6, size=(batch, *window[:-1], window[-1] * (n + 2), channels)).astype("float32")
    for p in range(n):
        at = list(np.unravel_index(p, window))
        at[-1] += window[-1] * p
        x[(slice(None), *at, slice(None) if p % 2 == 0 else channels // 2)] = np.nan
    x[(slice(None),) * dims + (slice(window[-1] * n, window[-1] * (n + 1)),)] = np.nan
    return np.moveaxis(x, -1, 1).copy() if data_format == "channels_first" else x


@pytest.mark.parametrize("form", CHEAP_FORMS)
@pytest.mark.parametrize("channels, data_format", [(1, "channels_last"), (5, "channels_first"), (16, "channels_last"), (17, "channels_first")])
@KINDS
def test_window_holding_nan_gives_nan(dims, channels, data_format, form):
    x = _nan_in_every_position(dims, channels, data_format)
    window = NAN_WINDOW[dims]
    pool = compile_as(form, lambda v: kjp.max_pool(v, window, window, "valid", data_format))
    expected = _expected(x, window, window, data_format=data_format)
    n = int(np.prod(window))
    # NaN windows: (n + 1) // 2 in every channel, n // 2 in one channel, and the all-NaN one.
    assert np.isnan(expected).sum() == 96 * ((n + 1) // 2 * channels + n // 2 + channels)
    np.testing.assert_array_equal(to_numpy(pool(tensor(x))), expected)


@pytest.mark.parametrize("form", CHEAP_FORMS)
@pytest.mark.parametrize("padding, data_format", [("valid", "channels_last"), ("same", "channels_first")])
@KINDS
def test_overlapping_windows_holding_nan_give_nan(dims, padding, data_format, form, rng):
    pool_size, strides = {1: ((3,), (2,)), 3: ((3, 2, 2), (2, 1, 2))}[dims]
    x = rng.integers(-5, 6, size=_layout((2, *(7, 8, 6)[:dims], 3), data_format)).astype("float32")
    x[rng.random(x.shape) < 0.1] = np.nan
    layer = OURS[dims](pool_size, strides, padding, data_format)
    pool = compile_as(form, layer)
    expected = _expected(x, pool_size, strides, padding, data_format)
    assert 0 < np.isnan(expected).mean() < 1  # other windows unaffected
    np.testing.assert_array_equal(to_numpy(pool(tensor(x))), expected)


@only_on(*AUTODIFF)
@pytest.mark.parametrize("form", GRADIENT_COMPILES)
@pytest.mark.parametrize("channels", [3])
@KINDS
def test_gradient_of_nan_window_goes_to_its_first_nan(dims, channels, form):
    x = _nan_in_every_position(dims, channels, "channels_last", batch=2)
    window = NAN_WINDOW[dims]
    n = int(np.prod(window))
    cotangent = np.ones(_expected(x, window, window).shape, "float32")
    got = gradient(lambda v: kjp.max_pool(v, window), tensor(x), cotangent, compile=lambda g: compile_as(form, g))
    expected = reference.max_pool_gradient(x, cotangent, window, window)
    # Window p < n sends its cotangent to its NaN at position p (where the
    # channel holds it), the all-NaN window to its first element.
    for p in range(n):
        at = list(np.unravel_index(p, window))
        at[-1] += window[-1] * p
        assert (expected[(slice(None), *at, slice(None) if p % 2 == 0 else channels // 2)] == 1).all()
    assert (expected[(slice(None), *[0] * (dims - 1), window[-1] * n)] == 1).all()
    np.testing.assert_array_equal(got, expected)


@only_on(*AUTODIFF)
@KINDS
def test_stock_gradient_of_nan_window_as_recorded(dims):
    """Stock sends the gradient of a window [1, NaN, NaN, 0, ...] elsewhere
    than to its first NaN: to the last NaN on torch, to the 1 on TensorFlow
    (in 3D too), to the 0 after the NaN on JAX."""
    window = {1: (4,), 3: (2, 2, 2)}[dims]
    x = np.zeros((1, *window, 1), "float32")
    flat = x.reshape(-1)
    flat[:3] = [1, np.nan, np.nan]
    cotangent = np.ones((1,) * (dims + 2), "float32")
    # Compiled on JAX only (faster there, the same semantics); TF's XLA differs.
    compile = _jax_jit if BACKEND == "jax" else lambda g: g
    stock = gradient(STOCK[dims](window), tensor(x), cotangent, compile=compile).ravel()
    ours = gradient(OURS[dims](window), tensor(x), cotangent, compile=compile).ravel()
    assert ours.tolist() == reference.max_pool_gradient(x, cotangent, window, window).ravel().tolist()
    assert np.flatnonzero(ours).tolist() == [1]
    expected = {"torch": [2], "tensorflow": [0], "jax": [3]}[BACKEND]
    assert np.flatnonzero(stock).tolist() == expected


# --- Dtypes -------------------------------------------------------------------

# More spatial positions than 255, the largest an 8-bit type counts to.
DTYPE_SHAPES = {1: (2, 260, 3), 2: (2, 17, 16, 3), 3: (2, 7, 6, 7, 3)}


def _dtype_cases(kinds):
    for dims, dtype, data_format in itertools.product(kinds, POOLABLE, DATA_FORMATS):
        yield pytest.param(dims, dtype, data_format, id=f"{dims}d-{dtype}-{data_format[9:]}")


@pytest.mark.parametrize("dims, dtype, data_format", _dtype_cases([1, 2, 3]))
def test_output_dtype_and_values_equal_input_dtype_and_reference(dims, dtype, data_format, rng):
    x = _values(dtype, rng, _layout(DTYPE_SHAPES[dims], data_format))
    padding = "same" if data_format == "channels_last" else "valid"
    pool_size, strides = (3,) * dims, (2,) * dims
    expected = _expected(x, pool_size, strides, padding, data_format)
    y = kjp.max_pool(tensor(x), pool_size, strides, padding, data_format)
    assert keras.backend.standardize_dtype(y.dtype) == dtype
    np.testing.assert_array_equal(to_numpy(y), expected)
    policy = dtype if dtype in FLOATS else "float32"  # integers are never cast
    y = OURS[dims](pool_size, strides, padding, data_format, dtype=policy)(tensor(x))
    assert keras.backend.standardize_dtype(y.dtype) == dtype
    np.testing.assert_array_equal(to_numpy(y), expected)


# Each poolable dtype compiled once, the cheap compiled forms in turn.
COMPILED = [form for form in CHEAP_FORMS if form != "eager"]
COMPILED_DTYPES = [
    pytest.param(dims, dtype, form, id=f"{dims}d-{dtype}-{form}")
    for dims in (1, 3)
    for i, dtype in enumerate(POOLABLE)
    for form in ([COMPILED[(i + dims) % len(COMPILED)]] if COMPILED else [])
    if form != "autograd" or dtype in FLOATS
]


@pytest.mark.skipif(not COMPILED_DTYPES, reason="the numpy backend does not compile")
@pytest.mark.parametrize("dims, dtype, form", COMPILED_DTYPES or [(None, None, None)])
def test_compiled_output_keeps_the_input_dtype(dims, dtype, form, rng):
    x = _values(dtype, rng, _layout((2, *(6, 5, 7)[:dims], 3), "channels_first"))
    pool_size, strides = (3, 2, 2)[:dims], (2, 1, 2)[:dims]
    pool = compile_as(form, lambda v: kjp.max_pool(v, pool_size, strides, "same", "channels_first"))
    y = pool(tensor(x))
    assert keras.backend.standardize_dtype(y.dtype) == dtype
    np.testing.assert_array_equal(to_numpy(y), _expected(x, pool_size, strides, "same", "channels_first"))


# Where stock cannot pool a dtype ours pools: the error it raises.
STOCK_CANNOT_POOL = {
    # TF's MaxPool3D kernels: bfloat16 and float32 only (float16 registers no CPU kernel).
    ("tensorflow", 3): {"float16": "NotFoundError", **{d: "InvalidArgumentError" for d in ["float64", *INTS]}},
    # torch's max_pool1d: floating types only.
    ("torch", 1): {d: "NotImplementedError" for d in INTS},
}


@KINDS
@pytest.mark.parametrize("dtype", POOLABLE)
def test_stock_pools_dtypes_as_recorded(dims, dtype, rng):
    """Ours pools every dtype the backend has a kernel for; stock TensorFlow
    pools bfloat16 and float32 alone in 3D, stock torch floats alone in 1D,
    and stock's op on the numpy backend (through JAX) narrows 64-bit types to
    32 bits. If this fails, upstream changed: update the README."""
    x = _values(dtype, rng, (2, *(5, 4, 6)[:dims], 3))
    ours = kjp.max_pool(tensor(x), 2, 2)
    error = STOCK_CANNOT_POOL.get((BACKEND, dims), {}).get(dtype)
    if error:
        with pytest.raises(Exception) as raised:
            keras.ops.max_pool(tensor(x), 2, 2)
        assert type(raised.value).__name__ == error
        return
    stock = keras.ops.max_pool(tensor(x), 2, 2)
    if BACKEND == "numpy" and dtype in NARROWED_ON_NUMPY:  # its values wrap around
        assert keras.backend.standardize_dtype(stock.dtype) == NARROWED_ON_NUMPY[dtype]
        return
    assert keras.backend.standardize_dtype(stock.dtype) == dtype
    np.testing.assert_array_equal(to_numpy(stock), to_numpy(ours))


NARROWED_ON_NUMPY = {"float64": "float32", "int64": "int32", "uint64": "uint32"}


@only_on(*AUTODIFF)
@pytest.mark.parametrize("dtype", [d for d in FLOATS if X64 or d != "float64"])
@KINDS
def test_gradient_in_every_float_dtype_equals_reference(dims, dtype, rng):
    x = _values(dtype, rng, (2, *(7, 5, 6)[:dims], 3))
    pool_size, strides = (3, 3, 2)[:dims], (2, 1, 1)[:dims]
    cotangent = _small_cotangent(_expected(x, pool_size, strides, "same").shape)
    form = GRADIENT_COMPILES[(FLOATS.index(dtype) + dims) % len(GRADIENT_COMPILES)]
    op = lambda v: kjp.max_pool(v, pool_size, strides, "same")  # noqa: E731
    got = gradient(op, tensor(x), cotangent, compile=lambda g: compile_as(form, g))
    assert keras.backend.standardize_dtype(got.dtype) == dtype
    expected = reference.max_pool_gradient(x, cotangent, pool_size, strides, "same")
    np.testing.assert_array_equal(got.astype("float64"), expected.astype("float64"))


@KINDS
@pytest.mark.parametrize("dtype", CANNOT_POOL + REFUSED_EVERYWHERE)
def test_dtype_the_backend_cannot_pool_is_a_type_error_naming_it(dims, dtype):
    shape = (1, *(4,) * dims, 1)
    if BACKEND == "torch":
        import torch

        x = torch.zeros(shape, dtype=getattr(torch, dtype))
    else:
        x = keras.ops.convert_to_tensor(np.zeros(shape), dtype=dtype)
    for pool in (OURS[dims](2), lambda v: kjp.max_pool(v, 2)):
        with pytest.raises(TypeError, match=f"inputs.dtype={dtype}"):
            pool(x)


# --- Properties ---------------------------------------------------------------

# A quarter of test_properties.py's examples (3D compiles are dearer).
FAMILY_PROFILE = settings(PROFILE, max_examples=max(PROFILE.max_examples // 4, 1))
FAMILY_GRADIENT_PROFILE = settings(GRADIENT_PROFILE, max_examples=max(GRADIENT_PROFILE.max_examples // 4, 1))


@st.composite
def family_cases(draw, dtypes, specials=()):
    """(x, pool_size, strides, padding, data_format) of a 1D or 3D pooling:
    x a numpy array of few values (windows hold ties), with some `specials`
    if its dtype is a float."""
    dims = draw(st.sampled_from([1, 3]))
    longest = {1: 12, 3: 5}[dims]
    padding = draw(st.sampled_from(["valid", "same"]))
    data_format = draw(st.sampled_from(DATA_FORMATS))
    pool_size = tuple(draw(st.integers(1, 4)) for _ in range(dims))
    strides = tuple(draw(st.integers(1, 4)) for _ in range(dims))
    sizes = tuple(draw(st.integers(k if padding == "valid" else 1, max(k, longest))) for k in pool_size)
    shape = (draw(st.integers(0, 2)), *sizes, draw(st.integers(1, 3)))
    dtype = draw(st.sampled_from(dtypes))
    specials = specials if dtype in FLOATS else ()
    size = int(np.prod(shape))
    values = draw(st.lists(st.sampled_from([*range(-3, 4), *specials]), min_size=size, max_size=size))
    x = np.array(values, dtype="float64").reshape(shape)
    if data_format == "channels_first":
        x = np.moveaxis(x, -1, 1)
    return np.ascontiguousarray(x).astype(dtype), pool_size, strides, padding, data_format


@FAMILY_PROFILE
@given(family_cases(FLOAT_DTYPES + INT_DTYPES, specials=(np.nan, np.inf, -np.inf)))
@example((np.zeros((0, 3, 1), "float32"), (2,), (1,), "same", "channels_last"))
@example((np.arange(24.0, dtype="float32").reshape(1, 2, 3, 4, 1) % 5, (2, 3, 4), (1, 1, 1), "valid", "channels_last"))
def test_output_equals_reference(case):
    x, pool_size, strides, padding, data_format = case
    y = kjp.max_pool(tensor(x), pool_size, strides, padding, data_format)
    assert keras.backend.standardize_dtype(y.dtype) == str(x.dtype)
    expected = _expected(x, pool_size, strides, padding, data_format)
    np.testing.assert_array_equal(to_numpy(y).astype("float64"), expected.astype("float64"))


@only_on(*AUTODIFF)
@FAMILY_GRADIENT_PROFILE
@given(family_cases(FLOAT_DTYPES, specials=(np.nan, np.inf, -np.inf)))
def test_gradient_with_nan_and_infinities_equals_reference(case):
    x, pool_size, strides, padding, data_format = case
    op = lambda v: kjp.max_pool(v, pool_size, strides, padding, data_format)  # noqa: E731
    cotangent = _small_cotangent(_expected(x, pool_size, strides, padding, data_format).shape)
    got = gradient(op, tensor(x), cotangent)
    expected = reference.max_pool_gradient(x, cotangent, pool_size, strides, padding, data_format)
    np.testing.assert_array_equal(got.astype("float64"), expected.astype("float64"))


# --- Threads ------------------------------------------------------------------


def _thread_inputs(dims, rng):
    """One input per thread, each of its own shape, some holding NaN."""
    inputs = []
    for i in range(THREADS):
        spatial = (5 + i, 4 + i % 3, 6 - i % 2)[:dims] if dims == 3 else (9 + 3 * i,)
        x = rng.integers(-4, 5, size=(1 + i % 3, *spatial, 2 + i % 2)).astype("float32")
        if i % 2:
            x[rng.random(x.shape) < 0.1] = np.nan
        inputs.append(x)
    return inputs


@pytest.mark.parametrize("form", sorted({"eager", CHEAP_FORMS[-1]}))
@KINDS
def test_one_layer_from_8_threads_at_once(dims, form, rng):
    pool_size, strides = {1: (3, 2), 3: ((3, 2, 2), (2, 1, 2))}[dims]
    layer = OURS[dims](pool_size, strides, "same")
    inputs = _thread_inputs(dims, rng)
    pool = compile_as(form, layer)
    results = _at_once(lambda i: to_numpy(pool(tensor(inputs[i]))))
    for x, outputs in zip(inputs, results):
        for y in outputs:
            np.testing.assert_array_equal(y, _expected(x, layer.pool_size, layer.strides, "same"))


# --- Saving -------------------------------------------------------------------

# A model pooling one input in 3D and, reshaped, in 1D, in both layouts; run
# in this process and in fresh ones. `as_list`: outputs in a list, in the
# order of their sorted names (a served model's outputs are a list).
MODEL = """
import keras, numpy as np, keras_jax_pool as kjp
LAYERS = {
    "pool1d_channels_first": kjp.MaxPool1D,
    "pool1d_same": kjp.MaxPool1D,
    "pool3d_channels_first": kjp.MaxPool3D,
    "pool3d_same": kjp.MaxPool3D,
}
def family_model(as_list=False):
    inputs = keras.Input((6, 5, 7, 2))
    steps = keras.layers.Reshape((6 * 5 * 7, 2), name="steps")(inputs)
    outputs = {
        "pool3d_same": kjp.MaxPool3D((3, 2, 2), strides=(2, 1, 2), padding="same", name="pool3d_same")(inputs),
        "pool3d_channels_first": kjp.MaxPool3D(2, strides=1, data_format="channels_first", name="pool3d_channels_first")(inputs),
        "pool1d_same": kjp.MaxPool1D(3, strides=2, padding="same", name="pool1d_same")(steps),
        "pool1d_channels_first": kjp.MaxPool1D(data_format="channels_first", name="pool1d_channels_first")(steps),
    }
    return keras.Model(inputs, [outputs[k] for k in sorted(outputs)] if as_list else outputs)
"""
# Loads MODEL_PATH with no custom_objects (importing keras_jax_pool registers
# the layers) and saves its outputs for X_PATH to Y_PATH.
LOAD = """
model = keras.saving.load_model(MODEL_PATH)
for name, cls in LAYERS.items():
    assert type(model.get_layer(name)) is cls, (name, type(model.get_layer(name)))
outputs = model(np.load(X_PATH))
np.savez(Y_PATH, **{k: keras.ops.convert_to_numpy(v) for k, v in outputs.items()})
"""
_namespace = {}
exec(MODEL, _namespace)
family_model, LAYERS = _namespace["family_model"], _namespace["LAYERS"]


def _family_input():
    return np.random.default_rng(7).integers(-5, 6, size=(3, 6, 5, 7, 2)).astype("float32")  # ties


def _assert_family_outputs(outputs, x):
    """Outputs equal the reference's, layer by layer."""
    steps = x.reshape(len(x), -1, 2)
    expected = {
        "pool3d_same": _expected(x, (3, 2, 2), (2, 1, 2), "same"),
        "pool3d_channels_first": _expected(x, (2, 2, 2), (1, 1, 1), data_format="channels_first"),
        "pool1d_same": _expected(steps, (3,), (2,), "same"),
        "pool1d_channels_first": _expected(steps, (2,), (2,), data_format="channels_first"),
    }
    assert outputs.keys() == expected.keys()
    for name, y in outputs.items():
        np.testing.assert_array_equal(y, expected[name], err_msg=name)


def _paths(folder, **names):
    return "".join(f"{name} = {str(folder / file)!r}\n" for name, file in names.items())


@KINDS
def test_registered_names(dims):
    name = f"keras_jax_pool>MaxPool{dims}D"
    assert keras.saving.get_registered_name(OURS[dims]) == name
    assert keras.saving.get_registered_object(name) is OURS[dims]


def test_keras_file_loads_in_this_process_with_the_same_configs(tmp_path):
    model, x = family_model(), _family_input()
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    for name, cls in LAYERS.items():
        assert type(loaded.get_layer(name)) is cls
        assert loaded.get_layer(name).get_config() == model.get_layer(name).get_config()
    _assert_family_outputs({k: to_numpy(v) for k, v in loaded(x).items()}, x)


# Each backend's run loads its partner's file, and its partner, in a fresh
# process, loads its file after `import keras_jax_pool` with no
# custom_objects: together the runs cover jax-tensorflow, tensorflow-torch,
# torch-jax and numpy-tensorflow, both ways. (One subprocess a backend: the
# fresh process is the partner's.)
PARTNER = {"jax": "tensorflow", "tensorflow": "torch", "torch": "jax", "numpy": "tensorflow"}[BACKEND]


def test_keras_files_load_in_a_fresh_process_and_across_backends(tmp_path):
    """A file saved here loads under the partner backend, and the partner's
    file loads here, each giving the outputs of the saving side."""
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    mine.mkdir(), theirs.mkdir()
    x = _family_input()
    np.save(tmp_path / "x.npy", x)
    model = family_model()
    model.save(mine / "model.keras")
    saved_here = {k: to_numpy(v) for k, v in model(x).items()}
    run_python(
        MODEL
        + _paths(tmp_path, MODEL_PATH="mine/model.keras", X_PATH="x.npy", Y_PATH="mine/y.npz")
        + LOAD
        + "partner = family_model()\n"
        + f"partner.save({str(theirs / 'model.keras')!r})\n"
        + f"np.savez({str(theirs / 'y.npz')!r}, **{{k: keras.ops.convert_to_numpy(v) for k, v in partner(np.load(X_PATH)).items()}})\n",
        backend=PARTNER,
    )
    loaded_there = dict(np.load(mine / "y.npz"))
    assert loaded_there.keys() == saved_here.keys()
    for name in saved_here:
        np.testing.assert_array_equal(loaded_there[name], saved_here[name], err_msg=f"{name}, loaded by {PARTNER}")
    loaded = keras.saving.load_model(theirs / "model.keras")
    for name, cls in LAYERS.items():
        assert type(loaded.get_layer(name)) is cls
        assert loaded.get_layer(name).get_config() == model.get_layer(name).get_config()
    outputs = {k: to_numpy(v) for k, v in loaded(x).items()}
    saved_there = dict(np.load(theirs / "y.npz"))
    for name in saved_there:
        np.testing.assert_array_equal(outputs[name], saved_there[name], err_msg=f"{name}, saved by {PARTNER}")
    _assert_family_outputs(outputs, x)


# --- Serving ------------------------------------------------------------------


@pytest.mark.skipif(BACKEND not in ("jax", "tensorflow"), reason="stock serves tf_saved_model from jax and tensorflow only")
def test_tf_saved_model_serves_1d_and_3d_in_a_tensorflow_only_process(tmp_path):
    from tests.test_export import SERVE, _skip_unless_installed

    _skip_unless_installed("tf_saved_model")
    model, x = family_model(as_list=True), _family_input()
    outputs = dict(zip(sorted(LAYERS), (to_numpy(y) for y in model(x))))
    _assert_family_outputs(outputs, x)
    model.export(str(tmp_path / "served"), format="tf_saved_model", verbose=False)
    np.save(tmp_path / "x.npy", x)
    run_python(
        "import sys\n"
        "sys.modules['keras'] = sys.modules['keras_jax_pool'] = None  # serving needs TensorFlow alone\n"
        "import numpy as np\n"
        + _paths(tmp_path, path="served", X_PATH="x.npy", Y_PATH="y.npz")
        + SERVE["tf_saved_model"]
        + "np.savez(Y_PATH, *run(np.load(X_PATH)))\n",
        backend="tensorflow",
    )
    served = np.load(tmp_path / "y.npz")
    assert len(served.files) == len(outputs)
    for i, name in enumerate(sorted(outputs)):
        np.testing.assert_array_equal(served[f"arr_{i}"], outputs[name], err_msg=name)
