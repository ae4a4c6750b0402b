"""One module per Keras backend, all with the same function

    max_pool(inputs, pool_size, strides, padding, data_format) -> tensor

whose arguments were already standardized by `keras_jax_pool.arguments`
(tuples of 1 to 3 positive ints, one per spatial axis, "valid"/"same", "channels_last"/"channels_first").
A backend's module is imported only when that backend is in use, so JAX,
TensorFlow and torch stay optional.
"""

import functools
import importlib

import keras

SUPPORTED = ("jax", "tensorflow", "torch", "numpy")


@functools.cache
def module_for(backend_name):
    """The pooling module of the named Keras backend."""
    if backend_name not in SUPPORTED:
        raise ValueError(
            f"keras_jax_pool supports the Keras backends {SUPPORTED}. "
            f"Received: KERAS_BACKEND={backend_name!r}"
        )
    return importlib.import_module(f"{__name__}.{backend_name}")


def current():
    """The pooling module of the Keras backend in use."""
    return module_for(keras.backend.backend())
