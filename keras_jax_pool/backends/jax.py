"""Max pooling for the JAX backend: `jax.lax.reduce_window` forward, with its
own differentiation rule.

Why a rule of our own. JAX differentiates `reduce_window(max)` into XLA's
`select_and_scatter`, which XLA:CPU runs as a scalar loop: for a
(32, 112, 112, 64) batch the gradient takes ~80x the forward. Here the forward
stays `reduce_window`, and a `jax.custom_jvp` rule gives a tangent map that is
linear in the tangent and built only from plain slices, selects and adds, so

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

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

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
    """Static description of one pooling; hashable, for `nondiff_argnums`."""

    shape: tuple
    axes: tuple  # the two spatial axes
    rows: _AxisGeometry
    cols: _AxisGeometry
    padding: str

    @classmethod
    def of(cls, shape, pool_size, strides, padding, data_format):
        axes = spatial_axes(data_format)
        rows, cols = (
            _AxisGeometry.of(shape[a], k, s, padding) for a, k, s in zip(axes, pool_size, strides)
        )
        return cls(tuple(shape), axes, rows, cols, padding)

    @property
    def per_axis(self):
        return tuple(zip(self.axes, (self.rows, self.cols)))

    @property
    def out_shape(self):
        shape = list(self.shape)
        for axis, g in self.per_axis:
            shape[axis] = g.outputs
        return tuple(shape)

    @property
    def offsets(self):
        """Window offsets (i, j) in row-major order."""
        return [(i, j) for i in range(self.rows.window) for j in range(self.cols.window)]

    @property
    def overlapping(self):
        return any(g.window > g.stride for _, g in self.per_axis)

    @property
    def index_dtype(self):
        return jnp.int8 if len(self.offsets) < 127 else jnp.int32


def _reduce_window_max(x, geo):
    window, strides, pads = [1] * x.ndim, [1] * x.ndim, [(0, 0)] * x.ndim
    for axis, g in geo.per_axis:
        window[axis], strides[axis] = g.window, g.stride
        if geo.padding == "same":
            pads[axis] = (g.low, same_padding(g.length, g.window, g.stride)[1])
    init = np.array(lowest_value(x.dtype), x.dtype)
    y = lax.reduce_window(x, init, lax.max, window, strides, pads)
    if not jnp.issubdtype(x.dtype, jnp.inexact) or x.size == 0:
        return y

    def mark_nan_windows(y):
        has_nan = lax.reduce_window(jnp.isnan(x), False, lax.bitwise_or, window, strides, pads)
        return jnp.where(has_nan, jnp.array(np.nan, y.dtype), y)

    def guard(y):
        # Finite input (the usual case) pays one extra read of x, a sum that
        # is finite only if x is; the rest takes a second pass that marks the
        # windows holding NaN. Every NaN check must read all of x: on large
        # inputs this doubles the forward's time (see the README). Summing
        # all but the last axis first is ~1.5x faster on XLA:CPU than one
        # reduction to a scalar.
        partial_sums = jnp.sum(x, axis=tuple(range(x.ndim - 1)), dtype=jnp.float32)
        finite = jnp.all(jnp.isfinite(partial_sums))
        return lax.cond(finite, lambda y: y, mark_nan_windows, y)

    if _xla_cpu_keeps_nan(geo):
        return lax.platform_dependent(y, cpu=lambda y: y, default=guard)
    return guard(y)


# The jaxlib minor versions whose XLA:CPU kernel choice `_xla_cpu_keeps_nan`
# describes; tests/test_nan.py checks it on the pinned one. Elsewhere every
# window is guarded.
_KERNEL_CHOICE_CHECKED = ((0, 10),)


def _xla_cpu_keeps_nan(geo):
    """Whether XLA:CPU's reduce_window keeps NaN for this pooling, so that the
    forward needs no guard.

    HLO's `max` propagates NaN, and XLA's own loops honour that. But from
    about 4096 values on, XLA:CPU hands a floating-point reduce_window whose
    windows tile the input (stride equal to the window on every pooled axis)
    to its YNNPACK kernel, whose max drops NaN (so does `jnp.max` over as many
    values). Overlapping windows (3x3 stride 2, the post's 4x4 stride 2) stay
    in XLA's loops: no guard there, and the forward is stock's own program.
    Only on jaxlib versions where this was checked; elsewhere, guard.
    """
    if tuple(jax.__version_info__[:2]) not in _KERNEL_CHOICE_CHECKED:
        return False
    return any(g.window > 1 and g.window != g.stride for _, g in geo.per_axis)


def _window_element_of_input(x, geo, offset):
    """x at window offset (i, j) of every output window, shaped like the output.

    A strided slice of x, padded with -inf only where the window reaches into
    "same" padding. Slicing x itself rather than a padded copy of it keeps
    everything in one fused loop: XLA:CPU does not fuse a pad that has several
    users, and would write and read a padded copy of x.
    """
    starts, limits, steps = [0] * x.ndim, list(x.shape), [1] * x.ndim
    pads = [(0, 0, 0)] * x.ndim
    for (axis, g), i in zip(geo.per_axis, offset):
        # outputs whose element at this offset lies inside the input
        first = max(0, -((i - g.low) // g.stride))
        last = min(g.outputs - 1, (g.length - 1 - i + g.low) // g.stride)
        if last < first:  # only padding at this offset
            return jnp.full(geo.out_shape, -jnp.inf, x.dtype)
        starts[axis] = first * g.stride + i - g.low
        limits[axis] = starts[axis] + (last - first) * g.stride + 1
        steps[axis] = g.stride
        pads[axis] = (first, g.outputs - 1 - last, 0)
    element = lax.slice(x, starts, limits, steps)
    if any(p != (0, 0, 0) for p in pads):
        element = lax.pad(element, jnp.array(-jnp.inf, x.dtype), pads)
    return element


def _first_max_index(x, geo):
    """Per output, the row-major window offset of its first maximum (NaN
    counting as the largest value).

    A scan over the window: a candidate takes the pick when it is larger than
    the pick so far, or is NaN where the pick is not. It runs on negated
    values so that each padded element has a single user (the negation),
    which lets XLA:CPU fuse the pads; negation flips the comparison.
    """
    offsets = geo.offsets
    if len(offsets) == 1:
        # Always 0, but not a constant XLA could fold: that would drop the
        # leading "+0" term of _select_tangent (see there).
        e = _window_element_of_input(x, geo, offsets[0])
        return jnp.where((e >= e) | (e != e), 0, 1).astype(geo.index_dtype)
    best = index = None
    for k, offset in enumerate(offsets):
        e = -_window_element_of_input(x, geo, offset)
        if best is None:
            best, index = e, jnp.zeros(geo.out_shape, geo.index_dtype)
            continue
        take = (e < best) | (jnp.isnan(e) & ~jnp.isnan(best))
        best = jnp.where(take, e, best)
        index = jnp.where(take, jnp.array(k, geo.index_dtype), index)
    return index


def _stored_first_max_index(x, geo):
    """`_first_max_index`, computed in a loop of its own and stored (1 byte
    per output) when windows overlap.

    Left to itself, XLA fuses the scan into the backward loop and re-runs it
    for every gradient element: with overlapping windows an input lies in up
    to ceil(k / s)^2 windows of k * k elements each (3x3 stride 2: ~3x
    slower). XLA:CPU expands `optimization_barrier` away before fusing, but it
    never fuses across a conditional, so the scan runs inside a `lax.cond`
    whose two branches are the same function: the predicate cannot change the
    result. For non-overlapping windows the fused single pass is faster.
    """
    if not geo.overlapping or x.size == 0:
        return _first_max_index(x, geo)
    scan = functools.partial(_first_max_index, geo=geo)
    # Any runtime scalar will do; slicing one element first (rather than
    # reshaping x) keeps a sharded x from being gathered to read it.
    corner = lax.slice(x, (0,) * x.ndim, (1,) * x.ndim).reshape(())
    return lax.cond(jnp.isnan(corner), scan, scan, x)


def _phase_view(v, geo):
    """`v` (padded with zeros, or cropped) with each spatial axis split into
    (phases, stride); returns it and the positions of the phase axes."""
    config = [(0, 0, 0)] * v.ndim
    for axis, g in geo.per_axis:
        config[axis] = (g.low, g.high, 0)
    if any(c != (0, 0, 0) for c in config):
        v = lax.pad(v, jnp.zeros((), v.dtype), config)
    shape, positions = [], {}
    for d in range(v.ndim):
        g = dict(geo.per_axis).get(d)
        if g is None:
            shape.append(v.shape[d])
        else:
            positions[d] = len(shape)
            shape += [g.phases, g.stride]
    return v.reshape(shape), positions


def _window_element_of_phases(view, positions, geo, offset):
    """The phase view's window element at offset (i, j), shaped like the output."""
    starts, limits = [0] * view.ndim, list(view.shape)
    for (axis, g), i in zip(geo.per_axis, offset):
        p = positions[axis]
        starts[p], limits[p] = i // g.stride, i // g.stride + g.outputs
        starts[p + 1], limits[p + 1] = i % g.stride, i % g.stride + 1
    return lax.slice(view, starts, limits).reshape(geo.out_shape)


def _select_tangent(t, index, geo):
    """dy = t at each window's picked offset: sum_k where(index == k, t_k, 0).

    Linear in t. JAX's transpose accumulates the terms in reverse order,
    k = K-1 first, which is select_and_scatter's order (windows in row-major
    output order), so overlapping windows' sums round identically to stock's.
    select_and_scatter also starts every gradient element at +0 and adds, so
    an element receiving only -0.0 ends at +0.0; one more term, never selected
    (index is never K, which XLA cannot know) and last here so the transpose
    adds it first, supplies that +0.
    """
    view, positions = _phase_view(t, geo)
    zero = jnp.zeros((), t.dtype)
    dy = None
    for k, offset in enumerate(geo.offsets + [(0, 0)]):
        term = jnp.where(index == k, _window_element_of_phases(view, positions, geo, offset), zero)
        dy = term if dy is None else dy + term
    return dy


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _max_pool_differentiable(x, geo):
    return _reduce_window_max(x, geo)


@_max_pool_differentiable.defjvp
def _max_pool_jvp(geo, primals, tangents):
    (x,), (t,) = primals, tangents
    # The primal through the rule itself, so that higher derivatives use the
    # rule again rather than JAX's own (differently tie-breaking) one.
    return _max_pool_differentiable(x, geo), _select_tangent(t, _stored_first_max_index(x, geo), geo)


def max_pool2d(inputs, pool_size, strides, padding, data_format):
    x = jnp.asarray(inputs)
    geo = _Geometry.of(x.shape, pool_size, strides, padding, data_format)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        return _reduce_window_max(x, geo)  # integers have no derivative
    return _max_pool_differentiable(x, geo)
