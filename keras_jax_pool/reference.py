"""Max pooling from first principles, in plain numpy: the oracle for tests.

This is the loop the package began from: walk the window over every output
position and reduce what lies under it. It is slow and obviously right, which
is what an oracle should be. The backends are checked against it, and against
stock Keras, never against each other.

`downsample_images` is the post's loop for images; `downsample` is the same
loop over any number of spatial axes, the oracle of `MaxPool1D` and
`MaxPool3D` (and, again, of `MaxPool2D`).
"""

import itertools

import numpy as np


def _padded(input_batch, pool_size, strides, padding, fill):
    """`input_batch` (channels last) with "same" padding applied, and the
    output size of each spatial axis."""
    if padding == "valid":
        return input_batch, [
            (n - k) // s + 1 for n, k, s in zip(input_batch.shape[1:-1], pool_size, strides)
        ]
    pads, out = [(0, 0)], []
    for n, k, s in zip(input_batch.shape[1:-1], pool_size, strides):
        out.append(-(-n // s))  # ceil(n / s): every input position is covered
        total = max((out[-1] - 1) * s + k - n, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(input_batch, pads + [(0, 0)], constant_values=fill), out


def _fill_value(dtype):
    if np.issubdtype(dtype, np.integer):
        return np.iinfo(dtype).min
    return -np.inf


def _to_nhwc(x, data_format):
    """Channels last, whatever the number of spatial axes."""
    return np.moveaxis(x, 1, -1) if data_format == "channels_first" else x


def _from_nhwc(x, data_format):
    return np.moveaxis(x, -1, 1) if data_format == "channels_first" else x


def _window(x, position, pool_size, strides):
    """The index of the window at output `position` of channels-last `x`."""
    return (slice(None), *(slice(p * s, p * s + k) for p, k, s in zip(position, pool_size, strides)), slice(None))


def downsample_images(
    input_batch,
    pool_size,
    strides,
    pool_fn=np.max,
    padding="valid",
    data_format="channels_last",
):
    """Pools a batch of images window by window.

    Args:
        input_batch: array of shape (batch, height, width, channels), or
            (batch, channels, height, width) with `data_format="channels_first"`.
        pool_size: (rows, cols) of the window.
        strides: (rows, cols) steps between windows.
        pool_fn: reduction applied over each window's two spatial axes.
        padding: "valid" (windows lie inside the input) or "same" (the input
            is padded with the reduction's identity so that every position is
            covered and the output has ceil(size / stride) rows and columns).
        data_format: "channels_last" or "channels_first".

    Returns:
        The pooled batch, in the layout of the input.
    """
    x = _to_nhwc(np.asarray(input_batch), data_format)
    x, (rows, cols) = _padded(x, pool_size, strides, padding, _fill_value(x.dtype))
    (pm, pn), (sm, sn) = pool_size, strides
    out = np.zeros((x.shape[0], rows, cols, x.shape[3]), dtype=x.dtype)
    for i in range(rows):
        for j in range(cols):
            window = x[:, i * sm : i * sm + pm, j * sn : j * sn + pn, :]
            out[:, i, j, :] = pool_fn(window, axis=(1, 2))
    return _from_nhwc(out, data_format)


def downsample(
    input_batch,
    pool_size,
    strides,
    pool_fn=np.max,
    padding="valid",
    data_format="channels_last",
):
    """`downsample_images` for any number of spatial axes: pools a batch of
    sequences (1), images (2) or volumes (3) window by window.

    Args:
        input_batch: array of shape (batch, *spatial, channels), or
            (batch, channels, *spatial) with `data_format="channels_first"`.
        pool_size: the window, one int per spatial axis.
        strides: steps between windows, one int per spatial axis.
        pool_fn: reduction applied over each window's spatial axes.
        padding: "valid" or "same", as in `downsample_images`.
        data_format: "channels_last" or "channels_first".

    Returns:
        The pooled batch, in the layout of the input.
    """
    x = _to_nhwc(np.asarray(input_batch), data_format)
    x, out_sizes = _padded(x, pool_size, strides, padding, _fill_value(x.dtype))
    out = np.zeros((x.shape[0], *out_sizes, x.shape[-1]), dtype=x.dtype)
    spatial = tuple(range(1, len(pool_size) + 1))
    for position in itertools.product(*map(range, out_sizes)):
        out[(slice(None), *position)] = pool_fn(x[_window(x, position, pool_size, strides)], axis=spatial)
    return _from_nhwc(out, data_format)


def max_pool_gradient(
    input_batch,
    output_cotangent,
    pool_size,
    strides,
    padding="valid",
    data_format="channels_last",
):
    """The gradient of `sum(max_pool(x) * output_cotangent)` with respect to
    x, for any number of spatial axes.

    Each window sends its cotangent to its first maximal element in row-major
    window order (what XLA, TensorFlow and torch all do); where windows
    overlap, contributions add. A pad position that wins a window (a window of
    -inf) takes the cotangent with it.
    """
    x = _to_nhwc(np.asarray(input_batch), data_format)
    g = _to_nhwc(np.asarray(output_cotangent), data_format)
    padded, out_sizes = _padded(x, pool_size, strides, padding, _fill_value(x.dtype))
    grad = np.zeros(padded.shape, dtype=np.float64)
    batch, channels = np.indices((x.shape[0], x.shape[-1]))
    for position in itertools.product(*map(range, out_sizes)):
        window = padded[_window(padded, position, pool_size, strides)]
        flat = window.reshape(window.shape[0], int(np.prod(pool_size)), window.shape[-1])
        first = np.argmax(flat, axis=1)  # the first maximum; NaN counts as maximal
        offsets = np.unravel_index(first, pool_size)
        where = tuple(p * s + o for p, s, o in zip(position, strides, offsets))
        np.add.at(grad, (batch, *where, channels), g[(slice(None), *position)])
    low = [(p - n) // 2 for p, n in zip(padded.shape[1:-1], x.shape[1:-1])]
    grad = grad[(slice(None), *(slice(a, a + n) for a, n in zip(low, x.shape[1:-1])), slice(None))]
    return _from_nhwc(grad.astype(np.result_type(g.dtype, x.dtype)), data_format)
