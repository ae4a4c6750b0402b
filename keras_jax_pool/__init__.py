"""keras_jax_pool: drop-in max-pooling layers for Keras 3, the same on every
backend, with a fast exact gradient under JAX.

    from keras_jax_pool import MaxPool2D  # instead of keras.layers.MaxPool2D

`MaxPool1D`, `MaxPool2D` and `MaxPool3D` (aliases `MaxPooling1D`, ...) stand
in for Keras's layers of the same names; `max_pool` is the functional op.
"""

from keras_jax_pool import config, reference
from keras_jax_pool.layers import MaxPool1D, MaxPool2D, MaxPool3D, MaxPooling1D, MaxPooling2D, MaxPooling3D
from keras_jax_pool.ops import max_pool, max_pool2d
from keras_jax_pool.surgery import swap_in, swap_out

__version__ = "0.1.0"

__all__ = [
    "config",
    "MaxPool1D",
    "MaxPool2D",
    "MaxPool3D",
    "MaxPooling1D",
    "MaxPooling2D",
    "MaxPooling3D",
    "max_pool",
    "max_pool2d",
    "reference",
    "swap_in",
    "swap_out",
    "__version__",
]
