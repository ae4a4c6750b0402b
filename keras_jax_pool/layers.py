"""The public layer: a drop-in for `keras.layers.MaxPooling2D`."""

import keras
from keras.src.utils import naming

from keras_jax_pool import arguments, ops


@keras.saving.register_keras_serializable(package="keras_jax_pool", name="MaxPool2D")
class MaxPool2D(keras.layers.Layer):
    """Max pooling for 2D spatial data, the same on every Keras backend.

    Takes the maximum over a `pool_size` window moved by `strides` along the
    height and width of each channel. It accepts what
    `keras.layers.MaxPooling2D` accepts and gives the same outputs, output
    shapes and `get_config()`, so either can stand in for the other. What it
    adds: all arguments are checked when the layer is made, identically on
    every backend; and under JAX it runs `jax.lax.reduce_window` with its own
    differentiation rule.

    Output size per spatial axis: `floor((size - pool) / stride) + 1` with
    `padding="valid"` (the window must fit in the input) and
    `ceil(size / stride)` with `padding="same"`.

    Args:
        pool_size: int or tuple of 2 ints, the window's (rows, cols).
            Defaults to `(2, 2)`.
        strides: int, tuple of 2 ints, or `None` (meaning `pool_size`).
        padding: "valid" or "same" (any case). "same" pads with -inf, evenly,
            the odd element going to the bottom or right.
        data_format: "channels_last" (`(batch, height, width, channels)`) or
            "channels_first" (`(batch, channels, height, width)`). Defaults to
            `keras.config.image_data_format()`.
        name: the layer's name.
        **kwargs: passed to `keras.layers.Layer` (`dtype`, `trainable`, ...).

    Input shape:
        4-D tensor in `data_format`'s layout.

    Output shape:
        4-D tensor `(batch, pooled_rows, pooled_cols, channels)`, or
        `(batch, channels, pooled_rows, pooled_cols)` for "channels_first".

    Example:
    >>> x = np.arange(9.0).reshape(1, 3, 3, 1)
    >>> layer = keras_jax_pool.MaxPool2D(pool_size=2, strides=1)
    >>> keras.ops.convert_to_numpy(layer(x))[0, ..., 0]
    array([[4., 5.],
           [7., 8.]], dtype=float32)
    """

    def __init__(
        self,
        pool_size=(2, 2),
        strides=None,
        padding="valid",
        data_format=None,
        name=None,
        **kwargs,
    ):
        if name is None and type(self) is MaxPool2D:
            # Named as stock's ("max_pooling2d", "max_pooling2d_1", ...) from
            # stock's counter: configs, summaries and get_layer() stay stock's,
            # and names stay unique in a model mixing both. Subclasses, as
            # under stock, are named after their own class.
            name = naming.auto_name("MaxPooling2D")
        super().__init__(name=name, **kwargs)
        self._args = arguments.standardize(pool_size, strides, padding, data_format)
        self.pool_size = self._args.pool_size
        self.strides = self._args.strides
        self.padding = padding  # as given, like the stock layer's config
        self.data_format = self._args.data_format
        self.input_spec = keras.layers.InputSpec(ndim=4)
        # Stateless, so built now, as stock layers are; but not a subclass
        # that overrides build(), whose build() must still run on first call.
        self._build_at_init()

    def call(self, inputs):
        return ops.pool(inputs, self._args)

    def compute_output_shape(self, input_shape):
        return arguments.output_shape(input_shape, self._args)

    @classmethod
    def from_config(cls, config):
        # Keras re-raises any error from __init__ during loading as TypeError;
        # check the fields here so a bad file gives the ValueError naming one.
        arguments.standardize_config(config)
        return super().from_config(config)

    def get_config(self):
        return {
            **super().get_config(),
            "pool_size": self.pool_size,
            "padding": self.padding,
            "strides": self.strides,
            "data_format": self.data_format,
        }


MaxPooling2D = MaxPool2D
