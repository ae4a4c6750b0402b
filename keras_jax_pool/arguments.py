"""Standardizes and validates pooling arguments, once, the same on every backend.

Stock Keras checks `pool_size` when a layer is built but leaves `strides=0` and
`padding="foo"` to each backend, which then fails at call time in its own way
(or, on torch, ignores the padding). Everything here raises `ValueError` that
names the argument and the value received, before any tensor is touched.
"""

import numbers
from typing import NamedTuple, Optional, Tuple

import keras

# The layers of the family pool 1, 2 or 3 spatial dimensions.
SPATIAL_DIMS = (1, 2, 3)
PADDINGS = ("valid", "same")
DATA_FORMATS = ("channels_last", "channels_first")
# Real numbers that `max` orders and that have a lowest value to pad with;
# a backend may pool fewer of them (it then raises TypeError too).
DTYPES = (
    "float16", "bfloat16", "float32", "float64",
    "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
)


class PoolArgs(NamedTuple):
    """Pooling arguments in the one form every backend module receives."""

    pool_size: Tuple[int, ...]  # one int per spatial dimension
    strides: Tuple[int, ...]
    padding: str  # "valid" or "same", lower case
    data_format: str  # "channels_last" or "channels_first"


def standardize_window(value, name, spatial_dims=2):
    """Returns `value` (an int, or a sequence of 1 or `spatial_dims` ints) as
    a `spatial_dims`-tuple of positive Python ints."""
    items = (value,) if _is_int(value) else value
    try:
        items = tuple(items)
    except TypeError:
        items = None
    if (
        items is None
        or len(items) not in (1, spatial_dims)
        or not all(_is_int(v) and v > 0 for v in items)
    ):
        raise ValueError(
            f"`{name}` must be a positive integer or a tuple of "
            f"{spatial_dims} positive integer(s), one per spatial dimension "
            f"of a {spatial_dims}D pooling. Received: {name}={value!r}"
        )
    items = tuple(int(v) for v in items)
    return items * spatial_dims if len(items) == 1 else items


def standardize_padding(padding):
    """Returns `padding` in lower case, checked to be "valid" or "same"."""
    if not isinstance(padding, str) or padding.lower() not in PADDINGS:
        raise ValueError(
            f"`padding` must be one of {PADDINGS} (any case). "
            f"Received: padding={padding!r}"
        )
    return padding.lower()


def standardize_data_format(data_format):
    """Returns `data_format`, `None` meaning `keras.config.image_data_format()`."""
    if data_format is None:
        return keras.config.image_data_format()
    if not isinstance(data_format, str) or data_format.lower() not in DATA_FORMATS:
        raise ValueError(
            f"`data_format` must be one of {DATA_FORMATS}. "
            f"Received: data_format={data_format!r}"
        )
    return data_format.lower()


def standardize(pool_size, strides=None, padding="valid", data_format=None, spatial_dims=2):
    """Checks all four pooling arguments of a `spatial_dims`-D pooling and
    returns them as `PoolArgs`."""
    if spatial_dims not in SPATIAL_DIMS:
        raise ValueError(f"Max pooling pools 1, 2 or 3 spatial dimensions. Received: spatial_dims={spatial_dims!r}")
    pool_size = standardize_window(pool_size, "pool_size", spatial_dims)
    strides = pool_size if strides is None else standardize_window(strides, "strides", spatial_dims)
    return PoolArgs(
        pool_size,
        strides,
        standardize_padding(padding),
        standardize_data_format(data_format),
    )


def standardize_config(config, spatial_dims=2):
    """`standardize` of a layer config's pooling fields, with the stock
    layer's defaults for missing ones."""
    return standardize(
        config.get("pool_size", 2),
        config.get("strides"),
        config.get("padding", "valid"),
        config.get("data_format"),
        spatial_dims,
    )


def check_dtype(dtype):
    """Raises `TypeError` unless `dtype` is one of `DTYPES`: booleans,
    complex numbers and float8 types are refused on every backend."""
    try:
        name = keras.backend.standardize_dtype(dtype)
    except ValueError:
        name = str(dtype)
    if name not in DTYPES:
        raise TypeError(
            f"Max pooling takes inputs of a floating-point or integer dtype, "
            f"one of {DTYPES}. Received: inputs.dtype={name}"
        )


def spatial_axes(data_format, spatial_dims=2):
    """The spatial axes of a tensor of this layout with `spatial_dims` of them."""
    first = 1 if data_format == "channels_last" else 2
    return tuple(range(first, first + spatial_dims))


def output_length(length: Optional[int], pool: int, stride: int, padding: str):
    """Length of one pooled spatial axis; `None` stays `None`.

    Raises `ValueError` when a "valid" window does not fit in the input, so
    that shape inference and the computation fail alike on every backend.
    """
    if length is None:
        return None
    if padding == "same":
        # Not -(-length // stride): on sizes traced by torch.jit (ONNX and
        # OpenVINO exports) that floor division exports as a truncating Div.
        return (length + stride - 1) // stride
    if length < pool:
        raise ValueError(
            f'With padding="valid" the window must fit in the input, but '
            f"pool_size={pool} exceeds a spatial dimension of size {length}."
        )
    return (length - pool) // stride + 1


def same_padding(length: int, pool: int, stride: int):
    """(low, high) padding of one axis under "same", as TF and XLA place it:
    the odd element, if any, goes to the high side."""
    total = max((output_length(length, pool, stride, "same") - 1) * stride + pool - length, 0)
    return total // 2, total - total // 2


def output_shape(input_shape, args: PoolArgs):
    """Shape of the pooled tensor; checks the rank and that windows fit."""
    input_shape = tuple(input_shape)
    spatial_dims = len(args.pool_size)
    if len(input_shape) != spatial_dims + 2:
        spatial = ", ".join(_SPATIAL_NAMES[spatial_dims])
        layout = f"(batch, {spatial}, channels)" if args.data_format == "channels_last" else f"(batch, channels, {spatial})"
        raise ValueError(
            f"Expected a {spatial_dims + 2}-D input of shape {layout} for a "
            f"{spatial_dims}D pooling with data_format={args.data_format!r}; "
            f"received an input of shape {input_shape} (rank {len(input_shape)})."
        )
    shape = list(input_shape)
    for axis, pool, stride in zip(spatial_axes(args.data_format, spatial_dims), args.pool_size, args.strides):
        shape[axis] = output_length(shape[axis], pool, stride, args.padding)
    return tuple(shape)


_SPATIAL_NAMES = {1: ("steps",), 2: ("height", "width"), 3: ("depth", "height", "width")}


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
