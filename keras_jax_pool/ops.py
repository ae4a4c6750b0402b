"""The functional ops: `max_pool` (1, 2 or 3 spatial dimensions, from the
input's rank) and `max_pool2d`, dispatched to the backend in use."""

import keras

from keras_jax_pool import arguments, backends


def max_pool(inputs, pool_size, strides=None, padding="valid", data_format=None):
    """Max pooling over the spatial axes of a 3-D, 4-D or 5-D tensor.

    The number of spatial dimensions is the input's rank minus 2, as in
    `keras.ops.max_pool`. Runs `jax.lax.reduce_window` under JAX (with this
    package's differentiation rule), TensorFlow's MaxPool ops under
    TensorFlow, torch's max pooling under torch and numpy under numpy; usable
    inside `jax.jit` and `tf.function`.

    Args:
        inputs: tensor of shape (batch, *spatial, channels) for
            "channels_last" or (batch, channels, *spatial) for
            "channels_first", with 1, 2 or 3 spatial axes.
        pool_size: int or tuple of one int per spatial axis: the window.
        strides: int, tuple of one int per spatial axis, or `None` (meaning
            `pool_size`).
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
            input of rank other than 3, 4 or 5, or a "valid" window larger
            than the input.

    Example:
    >>> x = np.arange(6.0).reshape(1, 6, 1)
    >>> keras.ops.convert_to_numpy(max_pool(x, 3))[0, :, 0]
    array([2., 5.])
    """
    inputs = _tensor(inputs)
    rank = len(inputs.shape)
    if rank - 2 not in arguments.SPATIAL_DIMS:
        raise ValueError(
            f"max_pool takes a 3-D, 4-D or 5-D input (batch, 1 to 3 spatial "
            f"axes, channels). Received: an input of shape {tuple(inputs.shape)} (rank {rank})."
        )
    return pool(inputs, arguments.standardize(pool_size, strides, padding, data_format, rank - 2))


def max_pool2d(inputs, pool_size, strides=None, padding="valid", data_format=None):
    """`max_pool` for 4-D input alone: max pooling over height and width.

    Takes `max_pool`'s arguments, with `pool_size` and `strides` an int or a
    tuple of 2 ints, (rows, cols), and raises as it does; also a
    `ValueError` for input that is not 4-D.

    Example:
    >>> x = np.arange(16.0).reshape(1, 4, 4, 1)
    >>> keras.ops.convert_to_numpy(max_pool2d(x, 2))[0, ..., 0]
    array([[ 5.,  7.],
           [13., 15.]])
    """
    args = arguments.standardize(pool_size, strides, padding, data_format, spatial_dims=2)
    return pool(_tensor(inputs), args)


def pool(inputs, args: arguments.PoolArgs):
    """Max pooling of a backend tensor with arguments already standardized."""
    arguments.check_dtype(inputs.dtype)
    arguments.output_shape(inputs.shape, args)
    return backends.current().max_pool(inputs, *args)


def _tensor(inputs):
    # A tensor of the backend in use is pooled as it is: Keras's numpy backend
    # would narrow a float64 array to float32 in convert_to_tensor.
    return inputs if keras.ops.is_tensor(inputs) else keras.ops.convert_to_tensor(inputs)
