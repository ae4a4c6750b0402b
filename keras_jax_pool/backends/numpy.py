"""Max pooling for the numpy backend, in numpy alone.

(Stock Keras pools through JAX here, and returns float32 for float64 input.)
A window holding a NaN gives NaN, as `ndarray.max` does, without the
RuntimeWarning that ml_dtypes' bfloat16 raises for it.
"""

import numpy as np

from keras_jax_pool.arguments import same_padding


def lowest_value(dtype):
    """The identity of `max` for `dtype`: -inf, or the integer minimum."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        return np.iinfo(dtype).min
    return -np.inf


def max_pool(inputs, pool_size, strides, padding, data_format):
    x = np.asarray(inputs)
    if data_format == "channels_first":
        x = np.moveaxis(x, 1, -1)
    spatial = tuple(range(1, len(pool_size) + 1))
    if padding == "same":
        pads = [same_padding(x.shape[a], k, s) for a, k, s in zip(spatial, pool_size, strides)]
        x = np.pad(x, [(0, 0), *pads, (0, 0)], constant_values=lowest_value(x.dtype))
    windows = np.lib.stride_tricks.sliding_window_view(x, pool_size, axis=spatial)
    every_stride = (slice(None), *(slice(None, None, s) for s in strides))
    with np.errstate(invalid="ignore"):
        y = windows[every_stride].max(axis=tuple(range(-len(pool_size), 0)))
    if data_format == "channels_first":
        y = np.moveaxis(y, -1, 1)
    return np.ascontiguousarray(y)
