"""The public layers: drop-ins for `keras.layers.MaxPooling1D`, `MaxPooling2D`
and `MaxPooling3D`, all three thin classes over one N-dimensional base."""

import keras
from keras.src.utils import naming

from keras_jax_pool import arguments, ops


class _MaxPool(keras.layers.Layer):
    """Max pooling over `spatial_dims` spatial axes: what the layers share.

    A public subclass sets `spatial_dims` and `_STOCK_NAME` (the stock class
    it stands in for) and gives its constructor stock's defaults.
    """

    spatial_dims = None

    def __init__(self, pool_size, strides=None, padding="valid", data_format=None, name=None, **kwargs):
        if name is None and "_STOCK_NAME" in type(self).__dict__:
            # Named as stock's ("max_pooling2d", "max_pooling2d_1", ...) from
            # stock's counter: configs, summaries and get_layer() stay stock's,
            # and names stay unique in a model mixing both. Subclasses, as
            # under stock, are named after their own class.
            name = naming.auto_name(self._STOCK_NAME)
        super().__init__(name=name, **kwargs)
        self._args = arguments.standardize(pool_size, strides, padding, data_format, self.spatial_dims)
        self.pool_size = self._args.pool_size
        self.strides = self._args.strides
        self.padding = padding  # as given, like the stock layer's config
        self.data_format = self._args.data_format
        self.input_spec = keras.layers.InputSpec(ndim=self.spatial_dims + 2)
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
        arguments.standardize_config(config, cls.spatial_dims)
        return super().from_config(config)

    def get_config(self):
        return {
            **super().get_config(),
            "pool_size": self.pool_size,
            "padding": self.padding,
            "strides": self.strides,
            "data_format": self.data_format,
        }


_ARGS_DOC = """
    Output size per spatial axis: `floor((size - pool) / stride) + 1` with
    `padding="valid"` (the window must fit in the input) and
    `ceil(size / stride)` with `padding="same"`, which pads with -inf, evenly,
    the odd element going to the end of the axis.

    All arguments are checked when the layer is made, identically on every
    backend; a window holding NaN gives NaN and the input's dtype is kept on
    every backend. Under JAX the layer has its own differentiation rule.
"""


@keras.saving.register_keras_serializable(package="keras_jax_pool", name="MaxPool1D")
class MaxPool1D(_MaxPool):
    """Max pooling for 1D temporal data, a drop-in for `keras.layers.MaxPooling1D`.

    Takes the maximum over a `pool_size` window moved by `strides` along the
    steps of each channel, with the stock layer's arguments, outputs, output
    shapes and `get_config()`.
    {args}
    Args:
        pool_size: int or tuple of 1 int, the window's length. Defaults to 2.
        strides: int, tuple of 1 int, or `None` (meaning `pool_size`).
        padding: "valid" or "same" (any case).
        data_format: "channels_last" (`(batch, steps, features)`) or
            "channels_first" (`(batch, features, steps)`). Defaults to
            `keras.config.image_data_format()`.
        name: the layer's name.
        **kwargs: passed to `keras.layers.Layer` (`dtype`, `trainable`, ...).

    Example:
    >>> x = np.arange(5.0).reshape(1, 5, 1)
    >>> keras.ops.convert_to_numpy(keras_jax_pool.MaxPool1D(2, 1)(x))[0, :, 0]
    array([1., 2., 3., 4.], dtype=float32)
    """

    spatial_dims = 1
    _STOCK_NAME = "MaxPooling1D"

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, name=None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, name, **kwargs)


@keras.saving.register_keras_serializable(package="keras_jax_pool", name="MaxPool2D")
class MaxPool2D(_MaxPool):
    """Max pooling for 2D spatial data, a drop-in for `keras.layers.MaxPooling2D`.

    Takes the maximum over a `pool_size` window moved by `strides` along the
    height and width of each channel, with the stock layer's arguments,
    outputs, output shapes and `get_config()`.
    {args}
    Args:
        pool_size: int or tuple of 2 ints, the window's (rows, cols).
            Defaults to `(2, 2)`.
        strides: int, tuple of 2 ints, or `None` (meaning `pool_size`).
        padding: "valid" or "same" (any case).
        data_format: "channels_last" (`(batch, height, width, channels)`) or
            "channels_first" (`(batch, channels, height, width)`). Defaults to
            `keras.config.image_data_format()`.
        name: the layer's name.
        **kwargs: passed to `keras.layers.Layer` (`dtype`, `trainable`, ...).

    Example:
    >>> x = np.arange(9.0).reshape(1, 3, 3, 1)
    >>> layer = keras_jax_pool.MaxPool2D(pool_size=2, strides=1)
    >>> keras.ops.convert_to_numpy(layer(x))[0, ..., 0]
    array([[4., 5.],
           [7., 8.]], dtype=float32)
    """

    spatial_dims = 2
    _STOCK_NAME = "MaxPooling2D"

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, name=None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, name, **kwargs)


@keras.saving.register_keras_serializable(package="keras_jax_pool", name="MaxPool3D")
class MaxPool3D(_MaxPool):
    """Max pooling for 3D data (volumes, video), a drop-in for
    `keras.layers.MaxPooling3D`.

    Takes the maximum over a `pool_size` window moved by `strides` along the
    depth, height and width of each channel, with the stock layer's
    arguments, outputs, output shapes and `get_config()`.
    {args}
    Args:
        pool_size: int or tuple of 3 ints, the window's (depth, rows, cols).
            Defaults to `(2, 2, 2)`.
        strides: int, tuple of 3 ints, or `None` (meaning `pool_size`).
        padding: "valid" or "same" (any case).
        data_format: "channels_last" (`(batch, depth, height, width,
            channels)`) or "channels_first" (`(batch, channels, depth, height,
            width)`). Defaults to `keras.config.image_data_format()`.
        name: the layer's name.
        **kwargs: passed to `keras.layers.Layer` (`dtype`, `trainable`, ...).

    Example:
    >>> x = np.arange(8.0).reshape(1, 2, 2, 2, 1)
    >>> keras.ops.convert_to_numpy(keras_jax_pool.MaxPool3D()(x)).ravel()
    array([7.], dtype=float32)
    """

    spatial_dims = 3
    _STOCK_NAME = "MaxPooling3D"

    def __init__(self, pool_size=(2, 2, 2), strides=None, padding="valid", data_format=None, name=None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, name, **kwargs)


for _layer in (MaxPool1D, MaxPool2D, MaxPool3D):
    _layer.__doc__ = _layer.__doc__.replace("{args}", _ARGS_DOC)

MaxPooling1D, MaxPooling2D, MaxPooling3D = MaxPool1D, MaxPool2D, MaxPool3D
# The stock layer each of ours stands in for.
STOCK = {MaxPool1D: keras.layers.MaxPooling1D, MaxPool2D: keras.layers.MaxPooling2D, MaxPool3D: keras.layers.MaxPooling3D}
