"""Max pooling for the TensorFlow backend, through `tf.nn.max_pool2d`."""

import functools

import tensorflow as tf


@functools.cache
def _nchw_is_native():
    # TF's CPU MaxPool kernel accepts only NHWC; its GPU kernel takes NCHW.
    return bool(tf.config.list_logical_devices("GPU"))


def max_pool2d(inputs, pool_size, strides, padding, data_format):
    x = tf.convert_to_tensor(inputs)
    transpose = data_format == "channels_first" and not _nchw_is_native()
    if transpose:
        x = tf.transpose(x, (0, 2, 3, 1))
    nchw = data_format == "channels_first" and not transpose
    y = tf.nn.max_pool2d(
        x,
        ksize=pool_size,
        strides=strides,
        padding=padding.upper(),
        data_format="NCHW" if nchw else "NHWC",
    )
    if transpose:
        y = tf.transpose(y, (0, 3, 1, 2))
    return y
