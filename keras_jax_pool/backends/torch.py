"""Max pooling for the torch backend, through `torch.nn.functional`'s
`max_pool1d`, `max_pool2d` and `max_pool3d` (1D pooling of integers, which
`max_pool1d` lacks, is 2D pooling with a window of height 1).

Torch pools channels-first only, and pads symmetrically only; "same" padding
is placed as in TF and XLA (odd element on the high side) with -inf, so that
pad positions never win a window.

Torch's forward propagates NaN, but its gradient sends a window holding
several NaN to the last of them; when a gradient is being recorded for input
holding NaN, each window holding a NaN is routed to its first NaN instead, in
row-major window order, as everywhere else. Under torch.compile and
torch.export, which cannot branch on data, every window is routed so.

Exported through torch.jit or to ONNX, the artifact runs in a runtime whose
MaxPool drops NaN (onnxruntime, OpenVINO): there windows holding a NaN are
marked by a second pooling, of the NaN mask.
"""

import keras
import torch
import torch.nn.functional as F

from keras_jax_pool.arguments import same_padding


# The dtypes torch's CPU max_pool2d kernel is implemented for.
POOLABLE_DTYPES = (
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
)


def lowest_value(dtype):
    """The identity of `max` for `dtype`: -inf, or the integer minimum."""
    if dtype.is_floating_point:
        return float("-inf")
    return torch.iinfo(dtype).min


def max_pool(inputs, pool_size, strides, padding, data_format):
    x = keras.ops.convert_to_tensor(inputs)
    if x.dtype not in POOLABLE_DTYPES:
        names = ", ".join(str(d).removeprefix("torch.") for d in POOLABLE_DTYPES)
        raise TypeError(
            f"The torch backend cannot max-pool this dtype (torch.nn.functional."
            f"max_pool2d supports {names}). Received: inputs.dtype="
            f"{str(x.dtype).removeprefix('torch.')}"
        )
    if len(pool_size) == 1 and not x.dtype.is_floating_point:
        # As a 2D pooling with a window of height 1: torch's max_pool1d pools
        # floats only (and is faster for them than max_pool2d).
        axis = 1 if data_format == "channels_last" else 2
        return max_pool(x.unsqueeze(axis), (1, *pool_size), (1, *strides), padding, data_format).squeeze(axis)
    dims = len(pool_size)
    if data_format == "channels_last":
        # Contiguous, as stock's: a permuted view reaches torch's
        # channels-last kernel, which counts positions in the input's dtype
        # (an int8 image of over 127 positions fails).
        x = x.permute(0, dims + 1, *range(1, dims + 1)).contiguous()
    if padding == "same":
        pads = [same_padding(n, k, s) for n, k, s in zip(x.shape[2:], pool_size, strides)]
        if any(low or high for low, high in pads):
            # F.pad takes the last axis first.
            x = F.pad(x, [p for pair in reversed(pads) for p in pair], value=lowest_value(x.dtype))
    y = _POOL[dims](x, kernel_size=pool_size, stride=strides)
    # Traced for another runtime, whose MaxPool may drop NaN: by torch.jit
    # (Keras's openvino format, and onnx where the batch size is dynamic) or
    # by the dynamo ONNX exporter (onnx with static shapes); no gradient is
    # taken there. is_in_onnx_export() costs ~2 us, so it is asked last.
    if torch.jit.is_tracing() or (torch.compiler.is_compiling() and torch.onnx.is_in_onnx_export()):
        if x.dtype.is_floating_point:
            y = _with_nan_windows(x, y, pool_size, strides)
    elif x.requires_grad and torch.is_grad_enabled() and (
        # Compiled (torch.compile) or exported (torch.export), a branch on
        # data cannot be traced: route every window, NaN or not.
        torch.compiler.is_compiling()
        # A sum is NaN if x holds a NaN (or both infinities, which the
        # fix-up handles as well): one read of x, ~8x cheaper than
        # isnan(x).any().
        or torch.isnan(x.detach().sum())
    ):
        y = _routed_to_first_nan(x, y, pool_size, strides)
    if data_format == "channels_last":
        y = y.permute(0, *range(2, dims + 2), 1)
    return y


# Torch's pooling of 1, 2 and 3 spatial axes (channels first, no padding).
_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}


def _routed_to_first_nan(x, y, pool_size, strides):
    """`y`, with each window holding a NaN taken from its first NaN, so that
    the gradient flows there; other windows keep torch's first maximum."""
    pool = lambda t: _POOL[len(pool_size)](t, pool_size, strides, return_indices=True)[1]
    # Torch's window index ties go to the first; in a mask of NaN, the first 1.
    index = torch.where(torch.isnan(y), pool(torch.isnan(x).to(x.dtype)), pool(x.detach()))
    return x.flatten(2).gather(2, index.flatten(2)).view_as(y)


def _with_nan_windows(x, y, pool_size, strides):
    """`y`, NaN in each window of `x` holding a NaN. Torch's own pooling keeps
    NaN, so this second pooling is paid only when exporting."""
    has_nan = _POOL[len(pool_size)](torch.isnan(x).to(x.dtype), pool_size, strides)
    return torch.where(has_nan > 0, torch.full_like(y, float("nan")), y)
