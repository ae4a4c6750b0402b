"""Max pooling for the torch backend, through `torch.nn.functional.max_pool2d`.

Torch pools channels-first only, and pads symmetrically only; "same" padding
is placed as in TF and XLA (odd element on the high side) with -inf, so that
pad positions never win a window.
"""

import keras
import torch
import torch.nn.functional as F

from keras_jax_pool.arguments import same_padding


def lowest_value(dtype):
    """The identity of `max` for `dtype`: -inf, or the integer minimum."""
    if dtype.is_floating_point:
        return float("-inf")
    return torch.iinfo(dtype).min


def max_pool2d(inputs, pool_size, strides, padding, data_format):
    x = keras.ops.convert_to_tensor(inputs)
    if data_format == "channels_last":
        x = x.permute(0, 3, 1, 2)
    if padding == "same":
        (top, bottom), (left, right) = (
            same_padding(n, k, s) for n, k, s in zip(x.shape[2:], pool_size, strides)
        )
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom), value=lowest_value(x.dtype))
    y = F.max_pool2d(x, kernel_size=pool_size, stride=strides)
    if data_format == "channels_last":
        y = y.permute(0, 2, 3, 1)
    return y
