"""The functional op: `max_pool2d`, dispatched to the backend in use."""

import keras

from keras_jax_pool import arguments, backends


def max_pool2d(inputs, pool_size, strides=None, padding="valid", data_format=None):
    """Max pooling over the two spatial axes of a 4-D tensor.

    Runs `jax.lax.reduce_window` under JAX, `tf.nn.max_pool2d` under
    TensorFlow, `torch.nn.functional.max_pool2d` under torch and numpy under
    numpy; usable inside `jax.jit` and `tf.function`.

    Args:
        inputs: 4-D tensor, (batch, height, width, channels) for
            "channels_last" or (batch, channels, height, width) for
            "channels_first".
        pool_size: int or tuple of 2 ints, the window's (rows, cols).
        strides: int, tuple of 2 ints, or `None` (meaning `pool_size`).
        padding: "valid" or "same", in any case.
        data_format: "channels_last", "channels_first", or `None` for
            `keras.config.image_data_format()`.

    Returns:
        The pooled tensor, of the input's dtype and layout.

    Raises:
        TypeError: for an input dtype the backend cannot pool (booleans,
            complex numbers, float8; and uint32/uint64 on TensorFlow,
            uint16/uint32/uint64 tensors on torch).
        ValueError: for a bad argument (named, with the value received), an
            input that is not 4-D, or a "valid" window larger than the input.

    Example:
    >>> x = np.arange(16.0).reshape(1, 4, 4, 1)
    >>> keras.ops.convert_to_numpy(max_pool2d(x, 2))[0, ..., 0]
    array([[ 5.,  7.],
           [13., 15.]])
    """
    args = arguments.standardize(pool_size, strides, padding, data_format)
    # A tensor of the backend in use is pooled as it is: Keras's numpy backend
    # would narrow a float64 array to float32 in convert_to_tensor.
    if not keras.ops.is_tensor(inputs):
        inputs = keras.ops.convert_to_tensor(inputs)
    return pool(inputs, args)


def pool(inputs, args: arguments.PoolArgs):
    """`max_pool2d` for a backend tensor and arguments already standardized."""
    arguments.check_dtype(inputs.dtype)
    arguments.output_shape(inputs.shape, args)
    return backends.current().max_pool2d(inputs, *args)
