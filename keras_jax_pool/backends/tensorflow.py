"""Max pooling for the TensorFlow backend, through `tf.nn.max_pool2d`.

TensorFlow's CPU MaxPool kernel mishandles NaN: it keeps a NaN only when the
NaN comes first in its window (and an all-NaN window gives the lowest float,
-3.4e38), and the outcome varies with the channel count. Its gradient kernel
also never sends a window's cotangent to a "same" pad position, which the
numpy reference (and XLA, JAX and torch) do for a window of -inf whose first
element is padding. So input that is not all finite takes a second path that
pads explicitly with -inf and routes every window holding a NaN to its first
NaN, in row-major window order, for both the value and the gradient. Finite
input pays only for one `reduce_all(is_finite(x))` and a `tf.cond`.
"""

import functools

import numpy as np
import tensorflow as tf

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


def max_pool2d(inputs, pool_size, strides, padding, data_format):
    x = tf.convert_to_tensor(inputs)
    if x.dtype not in POOLABLE_DTYPES:
        raise TypeError(
            "The tensorflow backend cannot max-pool this dtype (tf.nn.max_pool2d "
            f"supports {', '.join(d.name for d in POOLABLE_DTYPES)}). "
            f"Received: inputs.dtype={x.dtype.name}"
        )
    transpose = data_format == "channels_first" and not _nchw_is_native()
    if transpose:
        x = tf.transpose(x, (0, 2, 3, 1))
    layout = "NCHW" if data_format == "channels_first" and not transpose else "NHWC"
    y = tf.nn.max_pool2d(x, pool_size, strides, padding.upper(), data_format=layout)
    if x.dtype.is_floating:
        total = _sum(x)
        not_finite = lambda: _max_pool_not_finite(x, pool_size, strides, padding, layout)
        if tf.executing_eagerly():
            y = y if np.isfinite(total.numpy()).all() else not_finite()
        else:
            y = tf.cond(tf.reduce_all(tf.math.is_finite(total)), lambda: y, not_finite)
    if transpose:
        y = tf.transpose(y, (0, 3, 1, 2))
    return y


def _sum(x):
    """A sum of `x` that is finite only if all of `x` is: one read of `x`, the
    cheapest test there is. A sum may also overflow; that only sends finite
    input down the slower path, which is right for it too."""
    if x.dtype == tf.float16:
        # A float16 sum of more than a few thousand values overflows.
        return tf.reduce_sum(x, axis=-1)
    return tf.reduce_sum(x)


def _max_pool_not_finite(x, pool_size, strides, padding, layout):
    """Max pooling that propagates NaN, for input holding NaN or infinities.

    Every window holding a NaN gives the value of its first NaN in row-major
    window order, gathered so that the gradient flows to that element alone;
    other windows give `tf.nn.max_pool2d`'s maximum and gradient (the first
    maximum). "same" padding is explicit -inf, so that a window of -inf whose
    first element is padding sends its gradient there, as the reference does.
    """
    spatial = (1, 2) if layout == "NHWC" else (2, 3)
    if padding == "same":
        x = tf.pad(x, _same_paddings(x, pool_size, strides, spatial), constant_values=tf.constant(-float("inf"), x.dtype))
    y = tf.nn.max_pool2d(x, pool_size, strides, "VALID", data_format=layout)

    # Pool a code that is larger for earlier positions and zero off NaN: its
    # window maximum identifies the window's first NaN. Row-major order within
    # a window is the order of the flat spatial index row * width + col.
    shape = tf.shape(x, out_type=tf.int64)
    height, width = shape[spatial[0]], shape[spatial[1]]
    area = height * width
    position = tf.reshape(tf.range(area), [height, width])
    position = position[:, :, None] if layout == "NHWC" else position[None]
    code = tf.where(tf.math.is_nan(x), tf.cast(area - position, tf.float64), tf.constant(0.0, tf.float64))
    code = tf.nn.max_pool2d(code, pool_size, strides, "VALID", data_format=layout)
    window_has_nan = code > 0
    first_nan = tf.where(window_has_nan, area - tf.cast(code, tf.int64), 0)

    # Flat index into x of each window's first NaN, for the batch and channel
    # of that window.
    out_shape = tf.shape(y, out_type=tf.int64)
    batch = tf.reshape(tf.range(out_shape[0]), [-1, 1, 1, 1])
    if layout == "NHWC":
        channel = tf.reshape(tf.range(shape[3]), [1, 1, 1, -1])
        flat_index = (batch * area + first_nan) * shape[3] + channel
    else:
        channel = tf.reshape(tf.range(shape[1]), [1, -1, 1, 1])
        flat_index = (batch * shape[1] + channel) * area + first_nan
    nan_values = tf.gather(tf.reshape(x, [-1]), flat_index)
    return tf.where(window_has_nan, nan_values, y)


def _same_paddings(x, pool_size, strides, spatial):
    """`tf.pad` paddings for "same", placed as TF and XLA place them (the odd
    element on the high side); computed on tensors, as sizes may be dynamic."""
    paddings = [[0, 0] for _ in range(4)]
    for axis, pool, stride in zip(spatial, pool_size, strides):
        length = tf.shape(x)[axis]
        total = tf.maximum(((length + stride - 1) // stride - 1) * stride + pool - length, 0)
        paddings[axis] = [total // 2, total - total // 2]
    return paddings
