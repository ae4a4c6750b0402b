"""Max pooling for the TensorFlow backend, through TensorFlow's MaxPool op:
1D pooling is 2D pooling with a window of height 1, as in
`tf.nn.max_pool1d`, and 3D pooling two 2D poolings, over height and width,
then over depth. Not TF's MaxPool3D op: its gradient, run eagerly, gives
each of a window's tied maxima the whole cotangent (in a tf.function on
this project's CPU, the first maximum alone: TF's kernels differ); it has no kernel for float16,
float64 or integers; LiteRT has no builtin for it (a .tflite of it needs the
Flex delegate); and a custom gradient around it puts an IdentityN op in the
graph, which OpenVINO's converter turns into an extra output of the model
(overriding the op's gradient instead fails `tf.saved_model.save`, which
traces gradient functions without their op). Only `config.set_keep_nan(False)`,
which asks for stock's program, pools volumes with MaxPool3D, and only where
no gradient tape records (`_stock_max_pool_3d`).
With the two 2D poolings, the forward in a tf.function on CPU takes 1.0 to
1.6x as long as with MaxPool3D (float32 volumes of 2 to 17 million values,
2x2x2 and 3x3x3 windows, the finiteness sum below included); forward and
gradient take no longer than MaxPool3D with a custom gradient, which
recomputed the two poolings.

TensorFlow's MaxPool kernels (CPU, XLA's, and LiteRT's in exported models)
drop NaN: a window holding a NaN gives the maximum of its other elements, an
all-NaN window the lowest finite value (-3.4e38 in float32), and so does a
window of -inf. Its gradient kernel also never sends a window's cotangent to
a "same" pad position, which the numpy reference (and JAX and torch) do for a
window of -inf whose first element is padding. So input that is not all
finite takes a second path that fixes those windows, for the value and the
gradient. Finite input pays for one extra read of the input: a sum, which is
finite only if the input is; `config.set_keep_nan(False)` skips the sum and
the fix, leaving stock's program.
"""

import functools

import numpy as np
import tensorflow as tf

from keras_jax_pool import config

# The dtypes TensorFlow's MaxPool3D op has CPU kernels for.
MAX_POOL_3D_DTYPES = (tf.float32, tf.bfloat16)

# The dtypes TensorFlow's MaxPool kernel is registered for.
POOLABLE_DTYPES = (
    tf.float16,
    tf.bfloat16,
    tf.float32,
    tf.float64,
    tf.uint8,
    tf.uint16,
    tf.int8,
    tf.int16,
    tf.int32,
    tf.int64,
)


@functools.cache
def _nchw_is_native():
    # TF's CPU MaxPool kernel accepts only NHWC; its GPU kernel takes NCHW.
    return bool(tf.config.list_logical_devices("GPU"))


def max_pool(inputs, pool_size, strides, padding, data_format):
    x = tf.convert_to_tensor(inputs)
    if x.dtype not in POOLABLE_DTYPES:
        raise TypeError(
            "The tensorflow backend cannot max-pool this dtype (tf.nn.max_pool2d "
            f"supports {', '.join(d.name for d in POOLABLE_DTYPES)}). "
            f"Received: inputs.dtype={x.dtype.name}"
        )
    dims = len(pool_size)
    if dims == 1:
        axis = 1 if data_format == "channels_last" else 2
        y = max_pool(tf.expand_dims(x, axis), (1, *pool_size), (1, *strides), padding, data_format)
        return tf.squeeze(y, axis)
    # TF's CPU kernels take channels last only.
    transpose = data_format == "channels_first" and not (dims == 2 and _nchw_is_native())
    if transpose:
        x = tf.transpose(x, (0, *range(2, dims + 2), 1))
    channels_last = data_format == "channels_last" or transpose
    guard = x.dtype.is_floating and config.keep_nan()
    eager = tf.executing_eagerly()
    if guard and not eager and _tape_is_recording():
        y = _guarded(x, pool_size, strides, padding, channels_last)
    elif dims == 3 and not config.keep_nan() and x.dtype in MAX_POOL_3D_DTYPES and not _tape_is_recording():
        y = _stock_max_pool_3d(x, pool_size, strides, padding)
    else:
        y = _max_pool(x, pool_size, strides, padding, channels_last)
        if guard:
            not_finite = lambda: _max_pool_not_finite(x, y, pool_size, strides, padding, channels_last)
            if eager:
                y = y if np.isfinite(_sum(x, eager).numpy()).all() else not_finite()
            else:
                y = tf.cond(_all_finite(x), lambda: y, not_finite)
    if transpose:
        y = tf.transpose(y, (0, dims + 1, *range(1, dims + 1)))
    return y


def _stock_max_pool_3d(x, pool_size, strides, padding):
    """Stock's program for volumes (NDHWC), TF's MaxPool3D op, which
    `config.set_keep_nan(False)` asks for where no gradient tape records
    (a predict step, an export): the values are the two 2D poolings' (a max
    is a max, and with the switch NaN may be dropped as stock drops it),
    and no gradient is taken through it. Its gradient, run eagerly, gives
    each of a window's tied maxima the whole cotangent, so where a tape
    records the two 2D poolings stay. A LiteRT file of it needs the Flex delegate, as
    stock's does. Measured, the Conv3D net's `predict` under TensorFlow
    (`bench --models conv3d`, median of 101 in turn, float32 and
    `mixed_bfloat16`, two runs): 0.87 to 0.93x of stock's speed by default
    (the NaN check and the two 2D poolings), 0.99 to 1.03x with the switch
    and this op (README "Whole models")."""
    window, steps = (1, *pool_size, 1), (1, *strides, 1)
    return tf.raw_ops.MaxPool3D(input=x, ksize=window, strides=steps, padding=padding.upper(), data_format="NDHWC")


def _tape_is_recording():
    """Whether a `tf.GradientTape` records what is traced now (Keras's train
    step does; its predict step and `model.export` do not). A private
    TensorFlow function: without it, False."""
    try:
        from tensorflow.python.eager import record
    except ImportError:
        return False
    return bool(getattr(record, "could_possibly_record", lambda: False)())


def _all_finite(x):
    """In a graph: a boolean scalar, whether every element of x is finite."""
    return tf.reduce_all(tf.math.is_finite(_sum(x, eager=False)))


def _guarded(x, pool_size, strides, padding, channels_last):
    """MaxPool of x, or `_max_pool_not_finite` where x is not all finite,
    with a gradient of our own: MaxPool's where x is finite, else the
    first-NaN routing (`_taking_first_gradient`). A `tf.cond`'s own gradient returns a gradient for x from the
    finite branch too, a tensor of zeros the size of x, which an AddN adds to
    MaxPool's: forward+backward took 0.56 to 0.87x of stock's speed with it,
    0.72 to 1.02x with this (README "What the TensorFlow fix costs").

    Used only where a gradient tape records: `tf.custom_gradient` leaves an
    IdentityN in the graph, which OpenVINO's converter turns into extra
    outputs of an exported model. (The pooling stays outside the branches:
    inside one, oneDNN no longer pairs MaxPool with its gradient, whose
    fallback kernel took 3 to 5 times as long.)"""

    finite = _all_finite(x)

    @tf.custom_gradient
    def guarded(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = _max_pool(x, pool_size, strides, padding, channels_last)
        value = tf.cond(finite, lambda: y, lambda: _max_pool_not_finite(x, y, pool_size, strides, padding, channels_last))

        def grad(dy):
            dx = tape.gradient(y, x, output_gradients=dy)
            taking_first = lambda: _taking_first_gradient(x, dy, pool_size, strides, padding, channels_last)
            return tf.cond(finite, lambda: dx, taking_first)

        return value, grad

    return guarded(x)


def _max_pool(x, pool_size, strides, padding, channels_last):
    # The raw ops: tf.nn.max_pool2d's argument handling costs ~15 us per
    # eager call, as much as pooling a small tensor.
    window = (1, *pool_size, 1) if channels_last else (1, 1, *pool_size)
    steps = (1, *strides, 1) if channels_last else (1, 1, *strides)
    if len(pool_size) == 2:
        layout = "NHWC" if channels_last else "NCHW"
        return tf.raw_ops.MaxPool(input=x, ksize=window, strides=steps, padding=padding.upper(), data_format=layout)
    return _max_pool_3d_as_2d(x, pool_size, strides, padding)


def _max_pool_3d_as_2d(x, pool_size, strides, padding):
    """3D max pooling (NDHWC) as two 2D poolings, each a MaxPool op: over
    height and width of every depth slice, then over depth. Max is
    associative, so the values are MaxPool3D's; and the gradient goes to the
    first maximum in (depth, height, width) order, as 2D MaxPool's goes to
    the first in (height, width) order: the first depth holding the maximum,
    and in it the first position."""
    shape = tf.shape(x)
    planes = tf.reshape(x, tf.concat([[-1], shape[2:]], 0))
    planes = _max_pool(planes, pool_size[1:], strides[1:], padding, True)
    pooled = tf.shape(planes)
    rows = tf.reshape(planes, tf.stack([shape[0], shape[1], pooled[1] * pooled[2], pooled[3]]))
    rows = _max_pool(rows, (pool_size[0], 1), (strides[0], 1), padding, True)
    return tf.reshape(rows, tf.concat([tf.shape(rows)[:2], pooled[1:]], 0))


def _sum(x, eager):
    """A sum of `x` that is finite only if all of `x` is: one read of `x`, the
    cheapest test there is. A sum may also overflow; that only sends finite
    input down the slower path, which is right for it too."""
    # A float16 sum of more than a few thousand values overflows: sum rows.
    rank = len(x.shape)
    axes = (rank - 1,) if x.dtype == tf.float16 else tuple(range(rank))
    return tf.raw_ops.Sum(input=x, axis=_constant(axes) if eager else axes)


@functools.cache
def _constant(value):
    # Converting the axes anew costs ~15 us per eager call.
    return tf.constant(value)


def _max_pool_not_finite(x, y, pool_size, strides, padding, channels_last):
    """Max pooling for input holding NaN or infinities, where TF's kernels
    (and LiteRT's) drop NaN and give the lowest finite value for a window of
    -inf; `y` is their pooling of `x`.

    The value comes from a second pooling of a code that tells each window's
    kind, from ops that LiteRT has as builtins, so that an exported model
    needs no Flex ops. The gradient is that of `_max_pool_taking_first`.
    """

    @tf.custom_gradient
    def pool(x):
        # LiteRT's converter turns a constant -inf into the lowest finite
        # value: compare with that, and make -inf as y * 2 (y is -inf or the
        # lowest finite value in a window of -inf). tf2onnx turns a float
        # tf.where into cond * a + (1 - cond) * b, which NaN or inf in either
        # branch poisons, unless a branch is a constant NaN or the condition
        # a NaN test (v != v): so each tf.where here has one of those.
        nan = tf.constant(float("nan"), x.dtype)
        one = tf.ones_like(x)
        kind = tf.where(x != x, 2 * one, tf.where(x >= x.dtype.min, one, tf.zeros_like(x)))
        kind = _max_pool(kind, pool_size, strides, padding, channels_last)  # 2: NaN, 0: all -inf
        value = tf.where(kind == 1, y, nan)
        all_minus_inf = tf.where(kind == 0, nan, kind)
        value = tf.where(all_minus_inf != all_minus_inf, y * 2, value)

        def grad(dy):
            return _taking_first_gradient(x, dy, pool_size, strides, padding, channels_last)

        return value, grad

    return pool(x)


def _taking_first_gradient(x, dy, pool_size, strides, padding, channels_last):
    """The gradient of `_max_pool_taking_first` at x for the cotangent dy."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        taken = _max_pool_taking_first(x, pool_size, strides, padding, channels_last)
    return tape.gradient(taken, x, output_gradients=dy)


def _max_pool_taking_first(x, pool_size, strides, padding, channels_last):
    """Max pooling that gathers from `x` a NaN window's first NaN in row-major
    window order and a window of -inf's first element, so that its gradient
    flows to that element alone; other windows keep TF's MaxPool value and
    gradient (the first maximum). "same" padding is explicit -inf, so that a
    window of -inf whose first element is padding sends its gradient there,
    as the reference does.
    """
    dims = len(pool_size)
    spatial = tuple(range(1, dims + 1)) if channels_last else tuple(range(2, dims + 2))
    if padding == "same":
        x = tf.pad(x, _same_paddings(x, pool_size, strides, spatial), constant_values=tf.constant(-float("inf"), x.dtype))
    y = _max_pool(x, pool_size, strides, "valid", channels_last)

    shape = tf.shape(x, out_type=tf.int64)
    sizes = [shape[a] for a in spatial]
    area = tf.reduce_prod(sizes)
    position = tf.reshape(tf.range(area), sizes)
    position = position[..., None] if channels_last else position[None]
    code = tf.where(x == -float("inf"), area - position, area + 1)
    code = tf.where(tf.math.is_nan(x), 2 * area + 1 - position, code)
    code = _max_pool(tf.cast(code, tf.float64), pool_size, strides, "valid", channels_last)
    code = tf.cast(code, tf.int64)
    fixed = code != area + 1
    taken = tf.where(code > area + 1, 2 * area + 1 - code, area - code)
    taken = tf.where(fixed, taken, 0)

    # The flat index into x of the element taken, in the window's batch and
    # channel.
    batch = tf.reshape(tf.range(shape[0]), [-1] + [1] * (dims + 1))
    if channels_last:
        channel = tf.reshape(tf.range(shape[-1]), [1] * (dims + 1) + [-1])
        flat_index = (batch * area + taken) * shape[-1] + channel
    else:
        channel = tf.reshape(tf.range(shape[1]), [1, -1] + [1] * dims)
        flat_index = (batch * shape[1] + channel) * area + taken
    return tf.where(fixed, tf.gather(tf.reshape(x, [-1]), flat_index), y)


def _same_paddings(x, pool_size, strides, spatial):
    """`tf.pad` paddings for "same", placed as TF and XLA place them (the odd
    element on the high side); computed on tensors, as sizes may be dynamic."""
    paddings = [[0, 0] for _ in range(len(x.shape))]
    for axis, pool, stride in zip(spatial, pool_size, strides):
        length = tf.shape(x)[axis]
        total = tf.maximum(((length + stride - 1) // stride - 1) * stride + pool - length, 0)
        paddings[axis] = [total // 2, total - total // 2]
    return paddings
