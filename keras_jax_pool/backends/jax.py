"""Max pooling for the JAX backend: a forward chosen per geometry and dtype
(`_forward`), with its own differentiation rule.

The forward. On XLA:CPU the elementwise max of the window's elements,
taken in float32 for 16-bit floats, except for 16-bit windows that tile the
input, where stock's `jax.lax.reduce_window` keeps NaN, and float32 windows
that tile an image, reduced over a reshaped view with a NaN mark
(`_cpu_forward`); the elements' max on a GPU;
`reduce_window` with a NaN check on other platforms and on jaxlib versions
whose XLA:CPU was not checked; stock's program alone under
`config.set_keep_nan(False)`. Exported with a symbolic batch size (Keras's
`onnx` and `tf_saved_model` formats), slices, concatenations, `max` and an
explicit NaN mark that any runtime runs (`_portable_max`).

Why a rule of our own. JAX differentiates `reduce_window(max)` into XLA's
`select_and_scatter`, which XLA:CPU runs as a scalar loop: for a
(32, 112, 112, 64) batch with 2x2 windows the gradient takes 50 to 175x
the forward. Here a `jax.custom_jvp` rule gives a tangent map that is linear
in the tangent and built only from plain slices, selects and adds, so

* XLA fuses the backward pass into one or two loops over memory;
* reverse mode (`jax.grad`), forward mode (`jax.jvp`, `jax.jacfwd`),
  Hessian-vector products and `jax.hessian` all work, as JAX transposes and
  differentiates the rule like any other JAX code.

Semantics. Each window sends its cotangent to one element: its first maximum
in row-major window order, a NaN counting as larger than any number (so a
window holding NaN gives NaN forward and routes its cotangent to its first
NaN, on every backend of this package). Overlapping windows add up, in the
order `select_and_scatter` adds them, so float32, bfloat16 and float16 sums
round exactly as stock's do. "same" padding is made of -inf elements that take
part in the scan like real ones, as in stock: they never beat a real value,
but one that comes first in a window of -inf keeps that window's cotangent.
Without NaN, gradients are bit-identical to stock `keras.ops.max_pool`.

The "phase" view. Along a spatial axis with stride s, window k and output
length n, pad or crop the axis to length m * s, m = n + (k - 1) // s, and
split it into (m, s), a free reshape. The window element at offset i of every
output is then the plain slice [i // s : i // s + n] of the m-axis at phase
i % s. JAX transposes slice into pad and reshape into reshape, never into a
strided scatter or interior padding, which XLA fuses.
"""

import dataclasses
import functools
import itertools

import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.interpreters import ad, batching, mlir

from keras_jax_pool import config
from keras_jax_pool.arguments import output_length, same_padding, spatial_axes
from keras_jax_pool.backends.numpy import lowest_value


@dataclasses.dataclass(frozen=True)
class _AxisGeometry:
    """One spatial axis: input `length`, `window`, `stride`, `outputs`, the
    low padding (`low`) and the length `phases * stride` of the phase view."""

    length: int
    window: int
    stride: int
    outputs: int
    low: int
    phases: int

    @classmethod
    def of(cls, length, window, stride, padding):
        outputs = output_length(length, window, stride, padding)
        low = same_padding(length, window, stride)[0] if padding == "same" else 0
        return cls(length, window, stride, outputs, low, outputs + (window - 1) // stride)

    @property
    def high(self):
        """Padding at the end of the phase view; negative crops."""
        return self.phases * self.stride - self.length - self.low


@dataclasses.dataclass(frozen=True)
class _Geometry:
    """Static description of one pooling over any number of spatial axes;
    hashable, for `nondiff_argnums`."""

    shape: tuple
    axes: tuple  # the spatial axes
    spatial: tuple  # an _AxisGeometry per spatial axis
    padding: str

    @classmethod
    def of(cls, shape, pool_size, strides, padding, data_format):
        axes = spatial_axes(data_format, len(pool_size))
        spatial = tuple(
            _AxisGeometry.of(shape[a], k, s, padding) for a, k, s in zip(axes, pool_size, strides)
        )
        return cls(tuple(shape), axes, spatial, padding)

    @property
    def per_axis(self):
        return tuple(zip(self.axes, self.spatial))

    @property
    def out_shape(self):
        shape = list(self.shape)
        for axis, g in self.per_axis:
            shape[axis] = g.outputs
        return tuple(shape)

    @property
    def offsets(self):
        """Window offsets, one int per spatial axis, in row-major order."""
        return list(itertools.product(*(range(g.window) for g in self.spatial)))

    @property
    def overlapping(self):
        return any(g.window > g.stride for g in self.spatial)

    @property
    def index_dtype(self):
        return jnp.int8 if len(self.offsets) < 127 else jnp.int32


def _reduce_window_max(x, geo):
    """Stock's forward: one `reduce_window`."""
    window, strides, pads = [1] * x.ndim, [1] * x.ndim, [(0, 0)] * x.ndim
    for axis, g in geo.per_axis:
        window[axis], strides[axis] = g.window, g.stride
        if geo.padding == "same":
            pads[axis] = (g.low, same_padding(g.length, g.window, g.stride)[1])
    init = np.array(lowest_value(x.dtype), x.dtype)
    return lax.reduce_window(x, init, lax.max, window, strides, pads)


def _max_of_window_elements(x, geo, split_reads=True, replicate=False):
    """The elementwise `max` of the window's elements, each a strided slice of
    x (`_window_elements`): one fused loop. HLO's elementwise `max`
    propagates NaN."""
    y = None
    for element in _window_elements(x, geo, split_reads, replicate):
        y = element if y is None else lax.max(y, element)
    return y


def _max_of_tiles(x, geo):
    """For windows that tile x: the max over the window axes of `_tiles`.
    That max may drop NaN (XLA:CPU's YNNPACK kernel does, in float32), so a
    second reduction marks the windows holding NaN: the sum of |sign(x)|,
    finite except there, times -0 is -0 or NaN, and adding -0 changes no
    value, -0 and +0 included.

    Every operation here (pad, reshape, reduce, sign, abs, multiply, add) is
    one that XLA:CPU hands to YNNPACK, so it joins the YNNPACK fusion that
    XLA builds around a model's 2D convolutions, as stock's `reduce_window`
    does: the CIFAR-style net's float32 `predict` keeps stock's fusions and
    ran at 1.04 to 1.5x stock's speed over three runs, where the elements'
    max split the fusion and ran at 0.69x. On its own, over an input that no
    such fusion produces, it reads x twice: 0.55 to 0.57x stock's speed on
    32x112x112x64 (README "Keeping NaN, and what it costs").
    """
    tiles, window_axes = _tiles(x, geo)
    y = lax.reduce_max(tiles, window_axes)
    elements = lax.reduce(jnp.abs(jnp.sign(tiles)), np.array(0, x.dtype), lax.add, window_axes)
    return y + elements * np.array(-0.0, x.dtype)


def _tiles(x, geo):
    """For windows that tile x: x padded with the lowest value ("same") or
    cropped ("valid") to whole windows and reshaped so that each pooled axis
    becomes (outputs, window); and the window axes of that view."""
    pads, shape, window_axes = [(0, 0, 0)] * x.ndim, [], []
    pooled = dict(geo.per_axis)
    for axis, length in enumerate(x.shape):
        g = pooled.get(axis)
        if g is None:
            shape.append(length)
            continue
        pads[axis] = (g.low, g.high, 0)  # windows tile: the phase view is whole windows
        shape += [g.outputs, g.window]
        window_axes.append(len(shape) - 1)
    if any(p != (0, 0, 0) for p in pads):
        x = lax.pad(x, np.array(lowest_value(x.dtype), x.dtype), pads)
    return x.reshape(shape), window_axes


def _max_of_widened_elements(x, geo):
    """`_max_of_window_elements`, for bfloat16 and float16 taken in float32:
    each element is widened exactly from its bits (`_bitcast_reads`), and the
    max narrowed back exactly, as it is one of them. XLA:CPU runs a 16-bit
    float `max` by converting both sides to float32 and the result back
    (3x3 stride 2 "same" on 32x112x112x64 bfloat16: 72 against 3.5 ms).

    Where "same" pads the start of an axis, the elements are gathered with
    a real element of the same window in place of each pad
    (`_window_element_of_input`'s `replicate`): a max is the same with an
    element repeated and without a -inf. Padded at both ends, the pads are
    branches that LLVM leaves inside the loop over channels, which it then
    emits as scalar code. Measured, sliced against gathered, side by side,
    median of 7, ms, float32 / bfloat16 / float16: 3x3 stride 2 "same" on
    32x113x113x64 19.8 / 17.5 / 4.8 against 8.4 / 3.3 / 4.4; on
    16x147x147x64 18.2 / 28.2 / 3.5 against 5.4 / 4.1 / 4.0; 3x3x3 stride 2
    "same" on 4x33x65x65x32 27.2 / 24.1 / 8.2 against 7.2 / 3.6 / 6.4;
    3x3x3 stride 1 "same" on 4x32x64x64x32 64.3 / 53.7 / 56.6 against
    52.7 / 43.5 / 47.9; sequences alike. Where only the end is padded (even
    sizes, stride 2) gathering gained nothing (3x3 stride 2 on
    32x112x112x64: 6.1 / 4.9 / 5.9 sliced, 6.6 / 4.9 / 5.6 gathered)."""
    replicate = any(g.low > 0 for g in geo.spatial)
    if x.dtype not in _HALF_INFINITY_BITS:
        return _max_of_window_elements(x, geo, replicate=replicate)
    y = None
    for bits in _bitcast_reads(x, geo, replicate):
        element = _widened(bits, x.dtype)
        y = element if y is None else lax.max(y, element)
    return _narrowed(y, x.dtype)


def _widened(bits, dtype):
    """float32 stand-ins for the 16-bit floats of `dtype` with these int16
    bits, ordered as they are, NaN where they are NaN. bfloat16 is float32's
    upper half: its own value, by XLA's conversion (a shift, which XLA:CPU
    emits in a form that LLVM vectorizes; the same shift written out in
    integer operations kept loops with "same" padding at both ends of two
    axes scalar: 3x3 stride 1 "same" on 32x56x56x64, 31 against 4.1 ms). A
    float16 magnitude's bits are moved into float32's (shifted, the
    exponent biased by 224), in integer operations, which maps +inf to +inf
    and NaN to NaN, but 0 to 2**97: stand-ins, for `max`, undone by
    `_narrowed`."""
    if dtype == jnp.bfloat16:
        return lax.bitcast_convert_type(bits, jnp.bfloat16).astype(jnp.float32)
    wide = bits.astype(jnp.int32)
    magnitude = ((wide & 0x7FFF) << 13) + _FLOAT16_BIAS
    return lax.bitcast_convert_type(magnitude | (wide & -0x8000) << 16, jnp.float32)


def _narrowed(y, dtype):
    """The `dtype` values of `_widened`'s stand-ins (exact)."""
    wide = lax.bitcast_convert_type(y, jnp.int32)
    if dtype == jnp.bfloat16:
        bits = wide >> 16
    else:
        bits = (((wide & 0x7FFFFFFF) - _FLOAT16_BIAS) >> 13) | ((wide >> 16) & -0x8000)
    return lax.bitcast_convert_type(bits.astype(jnp.int16), dtype)


_FLOAT16_BIAS = 224 << 23  # float16's exponent 31 (inf, NaN) to float32's 255


# XLA:CPU fuses an elementwise producer, such as a bitcast of x, into a loop
# only if the loop reads it at no more than 15 places (its limit on code
# duplication); past that it writes the producer out: a copy of x. A loop
# that reads x itself at more than 15 places is slower too (3x3x3 stride 2
# "same" on 4x32x64x64x32 float32: the max 8.2 against 4.0 ms, the window
# scan 11.7 against 8.0 ms through two bitcasts; windows of up to 15
# elements run alike either way). So a window of more elements reads x
# through several bitcasts, at most this many elements from each.
_READS_PER_BITCAST = 15
# Bitcasts to read through, per item size: a signed and an unsigned integer.
_BITCAST_TYPES = {2: (jnp.int16, jnp.uint16), 4: (jnp.int32, jnp.uint32), 8: (jnp.int64, jnp.uint64)}


def _bitcast_reads(x, geo, replicate=False):
    """The window elements of a float x as the bits of the signed integer of
    its size, shaped like the output, in row-major window order; -inf's bits
    where a window reaches into "same" padding (with `replicate`, the
    window's nearest real element: `_window_element_of_input`).

    Read through a bitcast to the signed and one to the unsigned integer in
    turn, `_READS_PER_BITCAST` elements each, so that up to 30 elements
    (3x3x3 windows) stay in one fused loop: through a single bitcast, 3x3x3
    stride 2 "same" on 4x32x64x64x32 bfloat16 took 33 ms for its window scan
    and 30 ms for its max, 5.5 ms through two. 16-bit floats are always
    read so, whatever the window's size: XLA:CPU would slice a 16-bit float
    input as a float32 copy of all of it.
    """
    types = _BITCAST_TYPES[x.dtype.itemsize]
    views = [(lax.bitcast_convert_type(x, t), int(np.array(-np.inf, x.dtype).view(t))) for t in types]
    for n, offset in enumerate(geo.offsets):
        view, fill = views[n // _READS_PER_BITCAST % len(views)]
        element = _window_element_of_input(view, geo, offset, fill, replicate=replicate)
        yield lax.bitcast_convert_type(element, types[0])


def _window_elements(x, geo, split_reads=True, replicate=False):
    """The window elements of a float x, in x's dtype, shaped like the
    output, in row-major window order (-inf in "same" padding, or with
    `replicate` the window's nearest real element): strided
    slices of x, read through bitcasts (`_bitcast_reads`) where the window
    has more than `_READS_PER_BITCAST` elements, if `split_reads` (XLA:CPU's
    limit; a GPU's programs, measured there, read x itself)."""
    if not split_reads or len(geo.offsets) <= _READS_PER_BITCAST:
        return (_window_element_of_input(x, geo, offset, replicate=replicate) for offset in geo.offsets)
    return (lax.bitcast_convert_type(bits, x.dtype) for bits in _bitcast_reads(x, geo, replicate))


def _portable_max(x, geo, keep_nan):
    """The elementwise max of the window's elements (slices, pads and `max`,
    which every exporter has), NaN where a window holds one if `keep_nan`:
    made explicit by `isnan`, as a runtime's `max` may drop NaN (TensorFlow's
    XLA, run by a saved model, does)."""
    y = has_nan = None
    for offset in geo.offsets:
        element = _window_element_of_input(x, geo, offset, lowest_value(x.dtype), portable=True)
        y = element if y is None else lax.max(y, element)
        if keep_nan:
            nan = jnp.isnan(element)
            has_nan = nan if has_nan is None else has_nan | nan
    return y if has_nan is None else jnp.where(has_nan, jnp.array(np.nan, x.dtype), y)


def _guarded_reduce_window_max(x, geo):
    """`reduce_window`, checked: correct whatever the compiler does with NaN.

    Finite input (the usual case) pays one extra read of x, a sum that is
    finite only if x is; the rest takes a second pass that marks the windows
    holding NaN. Summing all but the last axis first is ~1.5x faster on
    XLA:CPU than one reduction to a scalar.
    """
    y = _reduce_window_max(x, geo)

    def mark_nan_windows(y):
        # An integer max: exact on every kernel, and what exporters support.
        has_nan = _reduce_window_max(jnp.isnan(x).astype(jnp.uint8), geo)
        return jnp.where(has_nan > 0, jnp.array(np.nan, y.dtype), y)

    partial_sums = jnp.sum(x, axis=tuple(range(x.ndim - 1)), dtype=jnp.float32)
    finite = jnp.all(jnp.isfinite(partial_sums))
    return lax.cond(finite, lambda y: y, mark_nan_windows, y)


def _forward(x, geo):
    """The forward pass: the max of every window, NaN if it holds one.

    On XLA:CPU the elements' max, or stock's `reduce_window` where it keeps
    NaN and XLA fuses it with the layers around it, chosen per geometry and
    dtype (`_cpu_forward`); on a GPU the elements' max; on other
    platforms, and on jaxlib versions whose XLA:CPU was not checked,
    `reduce_window` with a NaN check.
    `config.set_keep_nan(False)` makes it stock's program everywhere.

    A shape with a symbolic dimension (a batch of any size) means the
    function is being exported (`jax.export`, and through it Keras's
    `tf_saved_model` and `onnx` formats) to run in another runtime, whose max
    may drop NaN and whose pooling may not take every window:
    `_portable_max` then, which needs neither.
    """
    inexact = jnp.issubdtype(x.dtype, jnp.inexact)
    if not all(isinstance(n, int) for n in x.shape):
        return _portable_max(x, geo, keep_nan=inexact and config.keep_nan())
    if not inexact or x.size == 0 or not config.keep_nan():
        return _reduce_window_max(x, geo)
    checked = tuple(jax.__version_info__[:2]) in _KERNEL_CHOICE_CHECKED
    cpu = _cpu_forward(geo, x.dtype) if checked else _guarded_reduce_window_max
    # On a GPU the elements' max keeps NaN by HLO's definition of `max` and
    # took what stock's reduce_window takes on an H200; the checked form took
    # 1.1 to 1.9x that (README "On a GPU").
    return _per_platform(
        x,
        cpu=functools.partial(cpu, geo=geo),
        gpu=functools.partial(_max_of_window_elements, geo=geo, split_reads=False),
        other=functools.partial(_guarded_reduce_window_max, geo=geo),
    )


def _per_platform(x, cpu, gpu, other):
    """`cpu(x)`, `gpu(x)` (CUDA or ROCm) or `other(x)`, for the platform the
    program is compiled for (`lax.platform_dependent`)."""
    return lax.platform_dependent(x, cpu=cpu, cuda=gpu, rocm=gpu, default=other)


# The jaxlib minor versions whose XLA:CPU kernel choice `_cpu_forward`
# describes; tests/test_forward.py checks it on the pinned one. Elsewhere
# every window is checked.
_KERNEL_CHOICE_CHECKED = ((0, 10),)


def _tiles_input(geo):
    """Whether the windows tile the input: stride equal to the window on every
    pooled axis (the geometry XLA:CPU hands to its YNNPACK kernel)."""
    return all(g.window == g.stride for _, g in geo.per_axis) and any(g.window > 1 for _, g in geo.per_axis)


def _cpu_forward(geo, dtype):
    """The fastest NaN-keeping forward on XLA:CPU (jaxlib 0.10) for this
    geometry and dtype: `_reduce_window_max`, `_max_of_tiles` or
    `_max_of_widened_elements`.

    From 4096 values on, XLA:CPU runs a float `reduce_window` whose windows
    tile the input in its YNNPACK kernel, whose max drops NaN in float32 and
    keeps it in bfloat16 and float16 (tests/test_forward.py checks both); it
    runs every other geometry in its own loops, which keep NaN as HLO's `max`
    must, but are slower than the elements' max: 2.2 to 5.4x in float32
    (3x3 and 3x3x3 windows), up to 30x in bfloat16 and float16 (README
    "Performance"). So the elements' max everywhere, but
    * for 16-bit windows that tile the input: there reduce_window keeps NaN,
      and it is stock's program, which XLA:CPU fuses into a model's
      neighbouring layers;
    * for float32 windows that tile an image (two spatial axes):
      `_max_of_tiles`, which joins the YNNPACK fusion of the 2D
      convolutions around it, as stock's reduce_window does. XLA:CPU runs
      1D and 3D convolutions in its own loops, so sequences and volumes
      gain nothing from it (a Conv1D net's `predict` went from 1.08 to
      0.88x of stock's speed) and keep the elements' max;
    * for float32 windows overlapping over 1 or 2 axes with a short
      unpooled innermost axis (under 16, such as 3 channels): XLA's loops
      are faster there (4x4 stride 2 on 32x28x28x3: 0.17 against 0.30 ms).
    """
    dtype = jnp.dtype(dtype)
    half = dtype in _HALF_INFINITY_BITS
    if _tiles_input(geo) and half:
        return _reduce_window_max
    if _tiles_input(geo) and dtype == jnp.float32 and len(geo.axes) == 2:
        return _max_of_tiles
    innermost_run = geo.shape[-1] if all(axis != len(geo.shape) - 1 for axis in geo.axes) else 1
    overlapping_axes = sum(g.window > g.stride for g in geo.spatial)
    if not half and overlapping_axes in (1, 2) and innermost_run < 16:
        return _reduce_window_max
    return _max_of_widened_elements


def _window_element_of_input(x, geo, offset, fill=-np.inf, portable=False, replicate=False):
    """x at window offset (one int per spatial axis) of every output window,
    shaped like the output.

    A strided slice of x, padded with `fill` (-inf) only where the window
    reaches into "same" padding. Slicing x itself rather than a padded copy of it keeps
    everything in one fused loop: XLA:CPU does not fuse a pad that has several
    users, and would write and read a padded copy of x. `portable` pads by
    concatenation, which exporters (jax2onnx) take with a symbolic batch size.
    `replicate` gathers instead, with the window's nearest real element in
    place of each pad (the rows clipped to the input): right for a max, not
    for the window scan, where a pad may be a window's first maximum.
    """
    if replicate:
        element = x
        for (axis, g), i in zip(geo.per_axis, offset):
            rows = np.clip(np.arange(g.outputs) * g.stride + i - g.low, 0, g.length - 1)
            element = jnp.take(element, rows, axis=axis, mode="clip", indices_are_sorted=True)
        return element
    starts, limits, steps = [0] * x.ndim, list(x.shape), [1] * x.ndim
    pads = [(0, 0, 0)] * x.ndim
    for (axis, g), i in zip(geo.per_axis, offset):
        # outputs whose element at this offset lies inside the input
        first = max(0, -((i - g.low) // g.stride))
        last = min(g.outputs - 1, (g.length - 1 - i + g.low) // g.stride)
        if last < first:  # only padding at this offset
            if portable:
                corner = lax.slice(x, [0] * x.ndim, [1 if a in geo.axes else n for a, n in enumerate(x.shape)])
                grow = [(0, geo.out_shape[a] - 1 if a in geo.axes else 0, 0) for a in range(x.ndim)]
                return _pad_by_concatenation(jnp.full_like(corner, fill), grow, fill)
            return jnp.full(geo.out_shape, fill, x.dtype)
        starts[axis] = first * g.stride + i - g.low
        limits[axis] = starts[axis] + (last - first) * g.stride + 1
        steps[axis] = g.stride
        pads[axis] = (first, g.outputs - 1 - last, 0)
    element = lax.slice(x, starts, limits, steps)
    if any(p != (0, 0, 0) for p in pads):
        if portable:
            return _pad_by_concatenation(element, pads, fill)
        element = lax.pad(element, jnp.array(fill, x.dtype), pads)
    return element


def _pad_by_concatenation(element, pads, fill):
    """`lax.pad(element, fill, pads)` (no interior padding) as concatenations
    of blocks of `fill`, each made from a slice of `element`, so that no
    shape constant holds a symbolic dimension. On an axis where `element` is
    a single slice, the fill comes from it too (the whole-padding case)."""
    for axis, (low, high, _) in enumerate(pads):
        if not (low or high):
            continue
        block = jnp.full_like(lax.slice_in_dim(element, 0, 1, axis=axis), fill)
        element = jnp.concatenate([block] * low + [element] + [block] * high, axis)
    return element


def _first_max_index(x, geo, split_reads=True):
    """Per output, the row-major window offset of its first maximum (NaN
    counting as the largest value).

    A scan over the window: a candidate takes the pick when it is larger than
    the pick so far. Each window element is mapped to a value with a single
    user (which lets XLA:CPU fuse the pads of "same" padding) that orders as
    the elements do: float32 and float64 are negated (the comparison flips,
    and a NaN candidate wins over a pick that is not NaN); bfloat16 and
    float16 become int16 keys (`_ordered_key`), compared as integers, which
    XLA:CPU does without converting every element to float32 and back.
    """
    offsets = geo.offsets
    if len(offsets) == 1:
        # Always 0, but not a constant XLA could fold: that would drop the
        # leading "+0" term of _select_tangent (see there).
        e = _window_element_of_input(x, geo, offsets[0])
        return jnp.where((e >= e) | (e != e), 0, 1).astype(geo.index_dtype)
    if x.dtype in _HALF_INFINITY_BITS:
        elements = _bitcast_reads(x, geo)
        key, larger = functools.partial(_ordered_key, infinity=_HALF_INFINITY_BITS[x.dtype]), lax.gt
    else:
        elements = _window_elements(x, geo, split_reads)
        key, larger = lax.neg, lambda a, b: (a < b) | (jnp.isnan(a) & ~jnp.isnan(b))
    best = index = None
    for k, element in enumerate(elements):
        e = key(element)
        if best is None:
            best, index = e, jnp.zeros(geo.out_shape, geo.index_dtype)
            continue
        take = larger(e, best)
        best = jnp.where(take, e, best)
        index = jnp.where(take, jnp.array(k, geo.index_dtype), index)
    return index


# The bits of +inf in the 16-bit float types; any magnitude above is NaN.
_HALF_INFINITY_BITS = {jnp.dtype(jnp.bfloat16): 0x7F80, jnp.dtype(jnp.float16): 0x7C00}


def _ordered_key(bits, infinity):
    """Integer keys of 16-bit floats given as their int16 bits, ordered as
    the floats are, with -0 equal to +0 and every NaN equal to the others and
    above +inf: int16 magnitudes, negated below zero, computed in int16.

    A flip of the sign bit comes first, the bits' single user, so that
    XLA:CPU fuses the pads of "same" padding into the scan (computed from
    the bits themselves, the pads have several users, and the scan wrote a
    padded copy of each window element: 10 against 3.4 ms). The keys then
    take 16-bit lanes: the window scan of 3x3x3 stride 2 "same" on
    4x32x64x64x32, median of 21 in turn, 2.8 against 3.4 ms with keys
    widened to int32 (bfloat16), 2.5 against 3.6 ms (float16); 3x3 stride 2
    "same" on 32x113x113x64, 4.5 against 5.0 and 3.4 against 4.3 ms;
    windows of up to 4 elements alike."""
    flipped = bits ^ jnp.int16(-0x8000)  # a float's sign bit now set where it is positive
    magnitude = flipped & 0x7FFF
    key = jnp.where(flipped >= 0, -magnitude, magnitude)
    return jnp.where(magnitude > infinity, jnp.int16(0x7FFF), key)


def _stored_first_max_index(x, geo):
    """`_first_max_index`, computed in a loop of its own and stored (1 byte
    per output), unless the windows are float32 (or float64), do not
    overlap and hold fewer than 4 elements.

    Left to itself, XLA fuses the scan into the backward loop and re-runs it
    for every gradient element: a K-element scan K times per window, and
    with overlapping windows an input lies in up to ceil(k / s)^d windows
    (3x3 stride 2: ~3x slower). XLA:CPU expands `optimization_barrier` away
    before fusing, but it never fuses across a conditional, so the scan runs
    inside a `lax.cond` whose two branches are the same function: the
    predicate cannot change the result. Stored, it costs one more read of x
    and a loop; 16-bit keys cost too much to recompute for each window
    element (2x2 stride 2 in bfloat16: 4.7x the floor fused, about 1.2x
    stored), and so do float32 windows of 4 elements and more (2x2x2 stride
    2 on 4x32x64x64x32: 1.48x the floor fused, 1.07x stored; 2x2 stride 2
    on 32x112x112x64: 1.20x and 0.97x). Pool 2 on a sequence stays fused
    (1.17x and 1.20x).
    """
    fused = not geo.overlapping and x.dtype not in _HALF_INFINITY_BITS and len(geo.offsets) < 4
    if fused or x.size == 0:
        return _first_max_index(x, geo)
    scan = functools.partial(_first_max_index, geo=geo)

    def stored(x):
        # Any runtime scalar will do, but not one XLA can fold: a constant
        # predicate inlines the branch, and the scan fuses into the backward
        # again. x's first element is often padding (ResNet50's
        # ZeroPadding2D: a constant 0), so the middle one. Slicing one
        # element (rather than reshaping x) keeps a sharded x from being
        # gathered to read it.
        middle = tuple(n // 2 for n in x.shape)
        element = lax.slice(x, middle, tuple(i + 1 for i in middle)).reshape(())
        return lax.cond(jnp.isnan(element), scan, scan, x)

    # On a GPU (an H200) the scan stored behind a conditional or an
    # optimization barrier took what the fused one takes: fused there, with
    # no conditional (README "On a GPU").
    return _per_platform(x, cpu=stored, gpu=functools.partial(scan, split_reads=False), other=stored)


def _phase_view(v, geo, rows=None):
    """`v` (padded with zeros, or cropped) with each spatial axis split into
    (phases, stride), or (rows[i], stride) for the i-th spatial axis;
    returns it and the positions of the phase axes."""
    rows = rows or [g.phases for g in geo.spatial]
    config = [(0, 0, 0)] * v.ndim
    for (axis, g), n in zip(geo.per_axis, rows):
        config[axis] = (g.low, n * g.stride - g.length - g.low, 0)
    if any(c != (0, 0, 0) for c in config):
        v = lax.pad(v, jnp.zeros((), v.dtype), config)
    shape, positions = [], {}
    for d in range(v.ndim):
        if d not in geo.axes:
            shape.append(v.shape[d])
        else:
            s = geo.axes.index(d)
            positions[d] = len(shape)
            shape += [rows[s], geo.spatial[s].stride]
    return v.reshape(shape), positions


def _window_element_of_phases(view, positions, geo, offset):
    """The window element at `offset`, shaped like the output, from the
    phase view or from one phase plane of it (phase axes of length 1)."""
    starts, limits = [0] * view.ndim, list(view.shape)
    for (axis, g), i in zip(geo.per_axis, offset):
        p = positions[axis]
        phase = i % g.stride if view.shape[p + 1] == g.stride else 0
        starts[p], limits[p] = i // g.stride, i // g.stride + g.outputs
        starts[p + 1], limits[p + 1] = phase, phase + 1
    return lax.slice(view, starts, limits).reshape(geo.out_shape)


def _splits_phases(geo):
    """Whether `_phase_planes` splits the phase view: strides above 1 along
    two spatial axes or more.

    Taken by slices, each plane's transpose is a pad of it to the whole
    view, and XLA:CPU fuses the sum of those pads into a branch per plane on
    every element; `lax.split`'s transpose is a concatenation instead, but
    then the planes' cotangents are never added, so each plane needs a +0
    term of its own (`_select_tangent`). Measured, forward+backward, 3x3
    stride 2 on 32x112x112x64, sliced against split, median of 11 in turn
    (the floor, `x * 2`, in brackets): "valid", float32, 90 against 45 ms
    (36); "same", float32 57 against 49 ms (39), bfloat16 29 against 25 ms
    (19), float16 29 against 22 ms (18) (README "Split phase planes").
    Along one axis the split's +0 terms cost more than the pads (3 stride 2
    "same" on 32x8192x64: 17 against 37 ms in bfloat16, 25 against 46 ms in
    float32).
    """
    return sum(g.stride > 1 for g in geo.spatial) >= 2


def _phase_planes(view, positions, geo):
    """The phase view at each phase (one int per spatial axis), as a dict of
    planes with phase axes of length 1: split or sliced (`_splits_phases`)."""
    if not _splits_phases(geo):
        planes = {}
        for phase in itertools.product(*(range(g.stride) for g in geo.spatial)):
            starts, limits = [0] * view.ndim, list(view.shape)
            for (axis, _), q in zip(geo.per_axis, phase):
                starts[positions[axis] + 1], limits[positions[axis] + 1] = q, q + 1
            planes[phase] = lax.slice(view, starts, limits)
        return planes
    return _split_planes(view, positions, geo.per_axis)


def _split_planes(view, positions, per_axis):
    """The phase view split by `lax.split` along the phase axes of
    `per_axis` ((axis, _AxisGeometry) pairs), as a dict from the phases
    along those axes to planes with phase axes of length 1 there."""
    planes = {(): view}
    for axis, g in per_axis:
        planes = {
            phase + (q,): part
            for phase, plane in planes.items()
            for q, part in enumerate(lax.split(plane, [1] * g.stride, axis=positions[axis] + 1))
        }
    return planes


def _select_tangent(t, index, geo):
    """dy = t at each window's picked offset: sum_k where(index == k, t_k, 0).

    Linear in t. Window offsets are grouped by the phase plane they read
    (offset i % stride per axis): an input element receives cotangents only
    from the offsets of its plane, so the transpose computes each element
    from those alone. JAX's transpose accumulates a plane's terms in reverse
    order, k = K-1 first, which is select_and_scatter's order (windows in
    row-major output order), so overlapping windows' sums round identically
    to stock's. select_and_scatter also starts every gradient element at +0
    and adds, so an element receiving only -0.0 ends at +0.0; one more term,
    never selected (its index is negative, which no window offset is, though
    XLA cannot know it) and last in its plane so the transpose adds it
    first, supplies that +0: in the first plane, whose pad adds +0 to every
    element, or in every plane where the planes are split
    (`_splits_phases`). Where `_broadcasts_phases`, the terms are grouped by
    shift instead (`_phase_broadcast_tangent`), in the same order.

    bfloat16 and float16 are computed in float32: XLA:CPU would otherwise
    round after every select, pad and add of the transpose. Selects and pads
    are exact in float32; where a plane takes several terms, stock rounds
    after each add, so each term reads its own rounded copy of the plane,
    which the transpose turns into a rounding of the sum so far before the
    next add: the same roundings, in the same order, as stock's.
    """
    narrow = t.dtype in _HALF_INFINITY_BITS
    # Widened before the phase view: its transpose (a crop) then runs in
    # float32 too, and the gradient is rounded to t's dtype once, last.
    wide = t.astype(jnp.float32) if narrow else t
    if _broadcasts_phases(geo):
        return _phase_broadcast_tangent(wide, index, geo, t.dtype)
    view, positions = _phase_view(wide, geo)
    planes = {}
    for k, offset in enumerate(geo.offsets):
        phase = tuple(i % g.stride for (_, g), i in zip(geo.per_axis, offset))
        planes.setdefault(phase, []).append((k, offset))
    # Never selected: the +0, last in its plane (in every plane where the
    # planes' cotangents are concatenated rather than added), each with an
    # index of its own, never a window offset: the same term in every plane
    # would be one array to XLA, written out for its several users. Modulo
    # 128, so that the index fits the int8 window index (`index_dtype`).
    for n, phase in enumerate(list(planes) if _splits_phases(geo) else [(0,) * len(geo.per_axis)]):
        planes.setdefault(phase, []).append((-1 - n % 128, phase))
    zero = jnp.zeros((), view.dtype)
    dy = None
    phase_planes = _phase_planes(view, positions, geo)
    for phase, terms in planes.items():
        plane = phase_planes[phase]
        for p, (k, offset) in enumerate(terms):
            term = jnp.where(index == k, _window_element_of_phases(plane, positions, geo, offset), zero)
            dy = term if dy is None else dy + term
            # The transpose's sum of the terms after this one is inexact only
            # if it adds two real cotangents (not the never-selected term).
            if narrow and sum(k >= 0 for k, _ in terms[p + 1 :]) >= 2:
                plane = _rounded(plane, t.dtype)
    return dy.astype(t.dtype)


def _broadcasts_phases(geo):
    """Whether `_select_tangent` takes `_phase_broadcast_tangent`: windows
    that do not overlap, or overlap along three axes or more.

    Per phase plane, XLA:CPU fuses each term's pad (its shift, and its
    plane's place in the phase view) into the backward loop as a branch on
    the element's position, which it if-converts into masked loads of every
    term. Measured, fwd+bwd, float32, median of 9 to 13 in turn: 2x2x2
    stride 2 on 4x32x64x64x32 31 against 36 ms and 29 against 34 ms (floor
    31 and 32); 3x3x3 stride 2 "same" 47 against 75 ms before the shifts
    were shared (the backward alone 28 against 42 ms); 2x2 stride 2 on
    32x112x112x64 45 against 48 ms. Over one or two overlapping axes the
    planes are faster: each element computes the terms of every shift there
    (3x3 stride 2 "same" on 32x112x112x64, the backward alone: 58 against
    45 ms in float32, 42 against 36 ms in bfloat16). Since the planes are
    split there (`_splits_phases`), the shifts lose by more, also split
    along one axis as volumes are (`_split_axes`): backward alone, median of
    9 in turn, split planes 33.4 ms in float32 and 27.2 in bfloat16; shifts
    51.1 and 46.5; shifts split along height 44.3 and 41.3, along width 44.1
    and 42.2; floor 32.3 and 23.9.
    """
    overlapping = sum(g.window > g.stride for g in geo.spatial)
    return overlapping == 0 or overlapping >= 3


def _phase_broadcast_tangent(t, index, geo, dtype):
    """`_select_tangent` without a pad in the backward loop: one term per
    shift j (window w's element at offset i lies in phase row w + i //
    stride of its axis), each comparing the index of window a - j, for
    every phase row a, with the offset that phase reads at shift j, a small
    constant broadcast over the phase axes. The index is padded once, and
    through the transpose the cotangent too, by the largest shift (phases -
    outputs) at both ends of each spatial axis, with -1, which no offset
    matches; a shift whose offset lies outside the window at some phase
    compares with -2 there.

    Along the axes of `_split_axes`, the phase view is split into planes
    first (`lax.split`, whose transpose is a concatenation), and each plane
    takes only the shifts that reach it there. Split along two axes, the
    view has `_exact_rows`, so that the gradient needs no crop.

    JAX's transpose adds a plane's terms last first: the largest shift, the
    first window in row-major order, first, as select_and_scatter does.
    Stock starts every element from +0 (so that an element that only -0
    cotangents select ends at +0): where windows overlap, `_plus_zero` adds
    it to the gradient after the last term; where they do not, a
    never-selected term per plane, last, so that the transpose adds it
    first, since without it XLA:CPU emitted the loop as scalar code (2x2x2
    stride 2 on 4x32x64x64x32 float32: 32.1 against 26.8 ms). Each compares
    with a constant of its own, -3 and below, as the split planes' +0 terms
    do (`_select_tangent`). Over overlapping windows the terms never
    selected cost a comparison, a select and two loads per element, and
    their reads of the cotangent made XLA:CPU write out a float32 copy of
    it (more than 15 reads: `_READS_PER_BITCAST`).

    The index and, through the transpose, the cotangent are padded over a
    merged view (`_merged_pad`), over which XLA:CPU vectorizes the pad of a
    16-bit cotangent.
    """
    narrow = dtype in _HALF_INFINITY_BITS
    split = _split_axes(geo)
    rows = [_exact_rows(g) if len(split) > 1 else g.phases for g in geo.spatial]
    most = [g.phases - g.outputs for g in geo.spatial]
    if any(most):
        t = _plus_zero.bind(t, _runtime_zero(index, t.dtype))
    view, positions = _phase_view(t, geo, rows)
    pads = [(0, 0, 0)] * index.ndim
    for (axis, _), h in zip(geo.per_axis, most):
        pads[axis] = (h, h, 0)
    index = _merged_pad(index, -1, pads)
    # The phase axes of the view, and the shape that broadcasts over them.
    phase_axes = tuple(positions[axis] + 1 for axis in geo.axes)
    # The index of the window each phase row reads at a shift, per row.
    row_shape = list(view.shape)
    for a in phase_axes:
        row_shape[a] = 1
    zero = jnp.zeros((), view.dtype)
    dy = None
    planes = _split_planes(view, positions, [geo.per_axis[s] for s in split])
    for n_plane, (phase, plane) in enumerate(planes.items()):
        phase_shape, terms = _shift_terms(geo, phase_axes, view.ndim, dict(zip(split, phase)))
        if not any(most):
            terms.append(((0,) * len(most), np.full(phase_shape, -3 - n_plane % 125), np.zeros(phase_shape, bool)))
        for n, (shift, offsets, inside) in enumerate(terms):
            starts, limits = [0] * index.ndim, list(index.shape)
            for (axis, _), h, j, r in zip(geo.per_axis, most, shift, rows):
                starts[axis], limits[axis] = h - j, h - j + r
            window_index = lax.slice(index, starts, limits).reshape(row_shape)
            picked = jnp.where(window_index == jnp.asarray(offsets, index.dtype), plane, zero)
            term = jnp.sum(picked, axis=phase_axes)
            term_pads = [(0, 0, 0)] * term.ndim
            for (axis, _), h, j in zip(geo.per_axis, most, shift):
                term_pads[axis] = (h - j, j, 0)
            term = lax.pad(term, zero, term_pads)
            dy = term if dy is None else dy + term
            # Rounded before the transpose adds this term where some phase
            # receives a real cotangent here and two or more after it.
            later = sum(np.broadcast_to(real, phase_shape).astype(int) for _, _, real in terms[n + 1 :])
            if narrow and np.any(inside & (later >= 2)):
                plane = _rounded(plane, dtype)
    starts, limits = [0] * dy.ndim, list(dy.shape)
    for (axis, g), h in zip(geo.per_axis, most):
        starts[axis], limits[axis] = h, h + g.outputs
    return _merged_slice(dy, starts, limits).astype(dtype)


def _merged_pad(v, fill, pads):
    """`lax.pad(v, fill, pads)` (no interior padding), taken over a view of
    v whose last padded axis is merged with the unpadded axes after it (its
    pads scaled to match). XLA:CPU emits the pad of a 16-bit cotangent,
    widened to float32 in the same loop, as vector code over that view, and
    as scalar code over the axes as they are (channels_last: the channels
    after the spatial axes); the int8 index and a float32 cotangent are
    scalar either way (their LLVM IR, 3x3x3 stride 2 "same" on
    4x32x64x64x32). The time of these passes depends most on whether their
    temporaries' pages are fresh: profiled, median of 20 steps, bfloat16,
    the padded cotangent took 0.3 to 2.0 ms merged (three processes) and
    0.5 to 2.5 ms as it was, the padded index 0.2 to 0.7 and 0.3 to 0.9 ms."""
    merged, inner = _merged_view(v.shape, [(low, high) for low, high, _ in pads])
    if merged is None:
        return v
    shape, last = merged
    padded = lax.pad(v.reshape(shape), jnp.array(fill, v.dtype), _scaled_pads(pads, last, inner))
    return padded.reshape(padded.shape[:last] + (padded.shape[last] // inner,) + v.shape[last + 1 :])


def _merged_slice(v, starts, limits):
    """`lax.slice(v, starts, limits)` (unit strides) as `_merged_pad` with
    negative padding: its transpose is that pad of the cotangent."""
    return _merged_pad(v, 0, [(-a, b - n, 0) for a, b, n in zip(starts, limits, v.shape)])


def _merged_view(shape, ends):
    """For `ends` (low, high) per axis: the shape with the last axis that has
    any merged with the axes after it, and that axis; and the size of those
    axes after it. (None, 1) where no axis has any."""
    moved = [a for a, e in enumerate(ends) if e != (0, 0)]
    if not moved:
        return None, 1
    last = moved[-1]
    inner = int(np.prod(shape[last + 1 :], dtype=np.int64))
    return (tuple(shape[:last]) + (shape[last] * inner,), last), inner


def _scaled_pads(pads, last, inner):
    """`pads` over the merged view of `_merged_view`."""
    low, high, _ = pads[last]
    return list(pads[:last]) + [(low * inner, high * inner, 0)]


def _shift_terms(geo, phase_axes, ndim, fixed):
    """The static plan of one plane's terms in `_phase_broadcast_tangent`:
    the shape that broadcasts over the plane's phase axes, and per shift
    that reaches the plane, (shift, the window offset each phase compares
    with, or -2 where the offset lies outside the window; where it lies
    inside). `fixed` maps split axes (positions in `geo.spatial`) to the
    plane's phase there."""
    phase_shape = [1] * ndim
    for s, (a, g) in enumerate(zip(phase_axes, geo.spatial)):
        phase_shape[a] = 1 if s in fixed else g.stride
    weights = np.cumprod([1] + [g.window for g in geo.spatial[:0:-1]])[::-1]  # row-major
    terms = []
    for shift in itertools.product(*(range(g.phases - g.outputs + 1) for g in geo.spatial)):
        offsets, inside = np.zeros(phase_shape, np.int64), np.ones(phase_shape, bool)
        for s, (a, g, j, w) in enumerate(zip(phase_axes, geo.spatial, shift, weights)):
            q = fixed[s] if s in fixed else np.arange(g.stride)
            i = np.reshape(j * g.stride + q, [phase_shape[a] if d == a else 1 for d in range(ndim)])
            offsets, inside = offsets + w * i, inside & (i < g.window)
        if inside.any():  # else no window reaches this plane at this shift
            terms.append((shift, np.where(inside, offsets, -2), inside))
    return phase_shape, terms


def _exact_rows(g):
    """The phase rows that hold the input exactly, where they do: no low
    padding and a length that the stride divides. The rows after them hold
    only high "same" padding, which never takes a cotangent (a pad is
    picked only as a window's first element), so the backward can leave
    them out, and with them the crop of its gradient."""
    if g.low == 0 and g.length % g.stride == 0 and g.length // g.stride >= g.outputs:
        return g.length // g.stride
    return None


def _split_axes(geo):
    """The spatial axes (positions in `geo.spatial`) along which
    `_phase_broadcast_tangent` splits the phase view into planes, where
    windows overlap along three axes or more: every strided one where every
    axis's phase rows hold the input exactly (`_exact_rows`), else the
    first.

    Every gradient element evaluates every term of its plane. Unsplit, a
    3x3x3 stride 2 window's 8 shifts (and their roundings in 16-bit floats)
    reach every element; split along one axis, the planes of phase 1 there
    take 4 of them and 2 of the 6 roundings; along two, 5.5 shifts and 2.5
    roundings per element on average; along all three, 3.4 shifts and 1.5
    roundings. Split along two axes or more with the gradient cropped after
    the concatenation, XLA:CPU emits the loop as scalar code (no vector
    instructions in its LLVM IR); without the crop it vectorizes. Measured,
    the backward alone given the window index, 3x3x3 stride 2 "same" on
    4x32x64x64x32, median of 15 in turn, ms, in bfloat16 / float32 /
    float16 (floor 12.8 / 30.7 / 38.3, XLA's float16 `x * 2` being slow):
    unsplit 28.9 / 31.6 / 28.2 (an earlier run); split along depth, cropped
    19.4 / 28.6 / 22.6, exact rows 22.8 / 32.2 / 25.1; exact rows and split
    along depth and width 17.4 / 29.6 / 21.2, depth and height 18.0 / 30.4
    / 21.8, height and width 18.3 / 30.9 / 21.6. Split along two axes and
    cropped, 134.6 ms; along all three, 88.2 cropped and 79.9 exact
    (bfloat16), with `reduce_precision`'s roundings, whose NaN check kept
    half of the loop scalar. With `_round_to_bfloat16` and the never
    selected terms of that time (one per plane), the three-axis split ran no
    faster than the two-axis one (22.4 against 22.3 ms in bfloat16). Since
    `_plus_zero` took their place (and the pads were merged), it is faster:
    forward+backward, median of 31 to 41 in turn, 0.93 to 0.97 of the
    two-axis split's time in bfloat16 over three runs, 0.95 in float32,
    0.87 in float16.
    """
    overlapping = sum(g.window > g.stride for g in geo.spatial)
    strided = [s for s, g in enumerate(geo.spatial) if g.stride > 1]
    if overlapping < 3:
        return ()
    if len(strided) > 1 and all(_exact_rows(g) for g in geo.spatial):
        return tuple(strided)
    return tuple(strided[:1])


def _rounded(v, dtype):
    """float32 `v` rounded to `dtype` (bfloat16 or float16), kept in float32:
    linear for JAX, which transposes it into the same rounding. For bfloat16
    (float32's exponent) `_round_to_bfloat16`, in integer operations, where
    XLA:CPU converts to bfloat16 and back in a slow software routine on CPUs
    without bfloat16 instructions; for float16 a conversion there and back
    (reduce_precision would flush its subnormals to zero)."""
    if dtype == jnp.bfloat16:
        return _round_to_bfloat16.bind(v)
    return v.astype(dtype).astype(jnp.float32)


def _bfloat16_rounding(v):
    """float32 `v` rounded to the nearest bfloat16, ties to even, kept in
    float32: the bits plus 0x7FFF plus the last bit kept, with the low 16
    bits cleared. `lax.reduce_precision(v, 8, 7)` gives the same bits but
    for a NaN whose payload lies in the low 16 bits (which the sum may turn
    into infinity); it checks for that in 3 more vector operations per
    element. No such NaN reaches these sums: a bfloat16 widened has its low
    16 bits zero, and the NaN that float32 arithmetic makes from numbers
    (inf - inf) is the default NaN, whose low bits are zero too."""
    bits = lax.bitcast_convert_type(v, jnp.uint32)
    bits = bits + (jnp.uint32(0x7FFF) + ((bits >> 16) & jnp.uint32(1)))
    return lax.bitcast_convert_type(bits & jnp.uint32(0xFFFF0000), jnp.float32)


# `_bfloat16_rounding` as a primitive that JAX treats as linear, as it does
# `reduce_precision`: its derivative and its transpose are itself, so that
# the backward's partial sums are rounded where stock rounds them; the
# integer operations inside it have no transpose. Backward alone, bfloat16
# 3x3x3 stride 2 "same" on 4x32x64x64x32 (median of 21 in turn): 27.7
# against 29.6 ms with `reduce_precision` (floor 15.9).
_round_to_bfloat16 = jax.extend.core.Primitive("keras_jax_pool_round_to_bfloat16")
_round_to_bfloat16.def_impl(_bfloat16_rounding)
_round_to_bfloat16.def_abstract_eval(lambda v: v)
mlir.register_lowering(_round_to_bfloat16, mlir.lower_fun(_bfloat16_rounding, multiple_results=False))
ad.deflinear2(_round_to_bfloat16, lambda cotangent, _: [_round_to_bfloat16.bind(cotangent)])
batching.defvectorized(_round_to_bfloat16)


def _runtime_zero(index, dtype):
    """+0 in `dtype`, computed at run time from the window index (whether
    its first element is negative, which no window offset is), so that XLA
    cannot fold the addition of it (`_plus_zero`)."""
    first = lax.slice(index, (0,) * index.ndim, (1,) * index.ndim).reshape(())
    return (first < 0).astype(dtype)


def _add_zero(v, zero):
    return v + zero


# `v + zero`, zero a +0 scalar XLA cannot see (`_runtime_zero`), as a
# primitive that JAX treats as linear in v: its transpose is itself, so that
# the gradient gets the +0 that select_and_scatter starts every element from
# (-0 + +0 is +0; every other value is left as it is) in one addition per
# element, after its last (`_phase_broadcast_tangent`). XLA folds `v + 0.0`.
_plus_zero = jax.extend.core.Primitive("keras_jax_pool_plus_zero")
_plus_zero.def_impl(_add_zero)
_plus_zero.def_abstract_eval(lambda v, zero: v)
mlir.register_lowering(_plus_zero, mlir.lower_fun(_add_zero, multiple_results=False))


def _plus_zero_jvp(primals, tangents):
    v, zero = primals
    return _plus_zero.bind(v, zero), _plus_zero.bind(ad.instantiate_zeros(tangents[0]), zero)


def _plus_zero_transpose(cotangent, v, zero):
    if type(cotangent) is ad.Zero:
        return [cotangent, None]
    return [_plus_zero.bind(cotangent, zero), None]


def _plus_zero_batched(args, dims):
    v, zero = args
    if dims[1] is not None:  # zero batched (JAX marks an unbatched argument None)
        zero = jnp.max(zero)  # still +0, still not foldable
    return _plus_zero.bind(v, zero), dims[0]


ad.primitive_jvps[_plus_zero] = _plus_zero_jvp
ad.primitive_transposes[_plus_zero] = _plus_zero_transpose
batching.primitive_batchers[_plus_zero] = _plus_zero_batched


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _max_pool_differentiable(x, geo):
    return _forward(x, geo)


@_max_pool_differentiable.defjvp
def _max_pool_jvp(geo, primals, tangents):
    (x,), (t,) = primals, tangents
    # The primal through the rule itself, so that higher derivatives use the
    # rule again rather than JAX's own (differently tie-breaking) one.
    return _max_pool_differentiable(x, geo), _select_tangent(t, _stored_first_max_index(x, geo), geo)


def max_pool(inputs, pool_size, strides, padding, data_format):
    x = jnp.asarray(inputs)
    geo = _Geometry.of(x.shape, pool_size, strides, padding, data_format)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        return _forward(x, geo)  # integers have no derivative
    return _max_pool_differentiable(x, geo)
