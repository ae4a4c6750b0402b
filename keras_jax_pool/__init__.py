"""keras_jax_pool: a drop-in `MaxPool2D` for Keras 3, the same on every backend.

    from keras_jax_pool import MaxPool2D  # instead of keras.layers.MaxPool2D
"""

from keras_jax_pool import config, reference
from keras_jax_pool.layers import MaxPool2D, MaxPooling2D
from keras_jax_pool.ops import max_pool2d
from keras_jax_pool.surgery import swap_in, swap_out

__version__ = "0.1.0"

__all__ = ["config", "MaxPool2D", "MaxPooling2D", "max_pool2d", "reference", "swap_in", "swap_out", "__version__"]
