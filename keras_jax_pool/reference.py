"""Max pooling from first principles, in plain numpy: the oracle for tests.

This is the loop the package began from: walk the window over every output
position and reduce what lies under it. It is slow and obviously right, which
is what an oracle should be. The backends are checked against it, and against
stock Keras, never against each other.
"""

import numpy as np


def _padded(input_batch, pool_size, strides, padding, fill):
    """`input_batch` (NHWC) with "same" padding applied, and the output size."""
    if padding == "valid":
        return input_batch, [
            (n - k) // s + 1 for n, k, s in zip(input_batch.shape[1:3], pool_size, strides)
        ]
    pads, out = [(0, 0)], []
    for n, k, s in zip(input_batch.shape[1:3], pool_size, strides):
        out.append(-(-n // s))  # ceil(n / s): every input position is covered
        total = max((out[-1] - 1) * s + k - n, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(input_batch, pads + [(0, 0)], constant_values=fill), out


def _fill_value(dtype):
    if np.issubdtype(dtype, np.integer):
        return np.iinfo(dtype).min
    return -np.inf


def _to_nhwc(x, data_format):
    return np.moveaxis(x, 1, -1) if data_format == "channels_first" else x


def _from_nhwc(x, data_format):
    return np.moveaxis(x, -1, 1) if data_format == "channels_first" else x


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


def max_pool_gradient(
    input_batch,
    output_cotangent,
    pool_size,
    strides,
    padding="valid",
    data_format="channels_last",
):
    """The gradient of `sum(max_pool(x) * output_cotangent)` with respect to x.

    Each window sends its cotangent to its first maximal element in row-major
    window order (what XLA, TensorFlow and torch all do); where windows
    overlap, contributions add. A pad position that wins a window (a window of
    -inf) takes the cotangent with it.
    """
    x = _to_nhwc(np.asarray(input_batch), data_format)
    g = _to_nhwc(np.asarray(output_cotangent), data_format)
    padded, (rows, cols) = _padded(x, pool_size, strides, padding, _fill_value(x.dtype))
    (pm, pn), (sm, sn) = pool_size, strides
    grad = np.zeros(padded.shape, dtype=np.float64)
    for i in range(rows):
        for j in range(cols):
            window = padded[:, i * sm : i * sm + pm, j * sn : j * sn + pn, :]
            flat = window.reshape(window.shape[0], pm * pn, window.shape[3])
            first = np.argmax(flat, axis=1)  # the first maximum; NaN counts as maximal
            rows_in, cols_in = np.unravel_index(first, (pm, pn))
            n, c = np.indices(first.shape)
            np.add.at(grad, (n, i * sm + rows_in, j * sn + cols_in, c), g[:, i, j, :])
    top, left = ((p - n) // 2 for p, n in zip(padded.shape[1:3], x.shape[1:3]))
    grad = grad[:, top : top + x.shape[1], left : left + x.shape[2], :]
    return _from_nhwc(grad.astype(np.result_type(g.dtype, x.dtype)), data_format)
