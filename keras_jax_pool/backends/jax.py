"""Max pooling for the JAX backend, through `jax.lax.reduce_window`."""

import jax.numpy as jnp
import numpy as np
from jax import lax

from keras_jax_pool.backends.numpy import lowest_value


def _window(values, data_format):
    return (1, *values, 1) if data_format == "channels_last" else (1, 1, *values)


def max_pool2d(inputs, pool_size, strides, padding, data_format):
    x = jnp.asarray(inputs)
    return lax.reduce_window(
        x,
        np.array(lowest_value(x.dtype), x.dtype),
        lax.max,
        window_dimensions=_window(pool_size, data_format),
        window_strides=_window(strides, data_format),
        padding=padding.upper(),
    )
