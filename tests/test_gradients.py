"""Gradients are bit-identical to stock `keras.layers.MaxPooling2D`'s on every
backend with autodiff: each window's cotangent goes to its first maximum in
row-major window order, overlapping windows add. Under JAX the op has its own
rule, which also serves forward mode and higher derivatives."""

import itertools

import keras
import ml_dtypes
import numpy as np
import pytest

import keras_jax_pool as kjp
from keras_jax_pool import reference
from tests.conftest import BACKEND, GRADIENT_COMPILES, ON_ACCELERATOR, compile_as, gradient, only_on, tensor

pytestmark = pytest.mark.skipif(BACKEND == "numpy", reason="the numpy backend has no autodiff")

CONFIGS = [
    pytest.param(p, s, pad, fmt, id=f"pool{p}-stride{s}-{pad}-{fmt[9:]}")
    for (p, s), pad, fmt in itertools.product(
        [((2, 2), (2, 2)), ((3, 3), (2, 2)), ((3, 2), (1, 2)), ((2, 3), (3, 1)), ((4, 4), (1, 1)), ((1, 1), (1, 1))],
        ["valid", "same"],
        ["channels_last", "channels_first"],
    )
]
HALF = ["bfloat16", "float16"]  # stock pools both on every backend, torch's CPU included
# Windows of 128 elements and more: an int8 index of window positions overflows.
# Compiled: our JAX rule unrolls over the window, ~30 s eagerly on CPU.
LARGE_WINDOWS = [
    pytest.param((8, 16), (3, 4), "valid", "channels_last", id="8x16"),
    pytest.param((11, 12), (4, 4), "same", "channels_first", id="11x12"),
    pytest.param((12, 12), (5, 3), "same", "channels_last", id="12x12"),
]
FASTEST = GRADIENT_COMPILES[-1]


def _relu_input(rng, data_format, batch=2, dtype="float32", size=(9, 8)):
    shape = (batch, *size, 3) if data_format == "channels_last" else (batch, 3, *size)
    return np.maximum(rng.normal(size=shape), 0).astype(dtype)  # windows full of zeros: ties


def _cotangent(layer, x, rng):
    c = rng.normal(size=layer.compute_output_shape(x.shape)).astype("float32")
    c[rng.random(c.shape) < 0.05] = -0.0  # stock adds from +0: 0 + -0 = +0
    return c


def _integer_cotangent(layer, x, rng):
    """Small integers: every sum of them is exact, in any order and dtype."""
    return rng.integers(-3, 4, size=layer.compute_output_shape(x.shape)).astype("float32")


def _bits(a):
    a = np.asarray(a)
    return a.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize])


def _assert_equals_stock(ours, stock, x, c, form):
    """Bit-identical gradients. Two exceptions, with overlapping windows,
    where the same elements receive the same terms summed in another order,
    so equal to within that order's rounding, at most
    (terms - 1) * eps * sum(|terms|) per element: on torch with "same"
    padding, which stock makes by replicating edge elements (whose gradients
    its pad's backward adds back onto the edge); and on a GPU."""
    g_ours, g_stock = (gradient(layer, tensor(x), c, compile=lambda g: compile_as(form, g)) for layer in (ours, stock))
    assert g_ours.dtype == g_stock.dtype
    overlapping = any(k > s for k, s in zip(ours.pool_size, ours.strides))
    # XLA:GPU's select_and_scatter adds overlapping windows in an order that
    # changes from run to run (ours adds them in XLA:CPU's order, always).
    if overlapping and (ON_ACCELERATOR or (BACKEND == "torch" and ours.padding == "same")):
        assert np.array_equal(g_ours != 0, g_stock != 0)
        terms = np.prod([-(-k // s) for k, s in zip(ours.pool_size, ours.strides)])
        magnitude = reference.max_pool_gradient(
            x, np.abs(c), ours.pool_size, ours.strides, ours.padding, ours.data_format
        ).astype("float64")
        bound = (terms - 1) * float(ml_dtypes.finfo(x.dtype).eps) * magnitude
        assert (np.abs(g_ours.astype("float64") - g_stock.astype("float64")) <= bound).all()
    else:
        np.testing.assert_array_equal(_bits(g_ours), _bits(g_stock))


# Every configuration in float32, with batches of 2 and 1; each half-precision
# type on half of them (both paddings, both layouts, every window), batch 2;
# each case eagerly or compiled (jax.jit, tf.function, XLA), in turn.
GRID = [
    pytest.param(*config.values, dtype, batch, form, id=f"{config.id}-{dtype}-{form}")
    for i, config in enumerate(CONFIGS)
    for j, (dtype, batch) in enumerate(
        [("float32", 1 + i % 2)] + ([(d, 2) for d in HALF] if (i // 4 + i) % 2 == 0 else [])
    )
    for form in [GRADIENT_COMPILES[(i + j) % len(GRADIENT_COMPILES)]]
]


@pytest.mark.parametrize("pool_size, strides, padding, data_format, dtype, batch, form", GRID)
def test_gradient_bit_identical_to_stock(pool_size, strides, padding, data_format, dtype, batch, form, rng):
    ours = kjp.MaxPool2D(pool_size, strides, padding, data_format, dtype=dtype)
    stock = keras.layers.MaxPooling2D(pool_size, strides, padding, data_format, dtype=dtype)
    x = _relu_input(rng, data_format, batch, dtype)
    _assert_equals_stock(ours, stock, x, _cotangent(ours, x, rng), form)


@pytest.mark.parametrize("form", GRADIENT_COMPILES)
@pytest.mark.parametrize("pool_size, strides, padding, data_format", CONFIGS[::3])
def test_gradient_equals_reference(pool_size, strides, padding, data_format, form, rng):
    x = _relu_input(rng, data_format)
    layer = kjp.MaxPool2D(pool_size, strides, padding, data_format)
    c = _integer_cotangent(layer, x, rng)
    expected = reference.max_pool_gradient(x, c, pool_size, strides, padding, data_format)
    np.testing.assert_array_equal(gradient(layer, tensor(x), c, compile=lambda g: compile_as(form, g)), expected)


@pytest.mark.parametrize("pool_size, strides, padding, data_format", LARGE_WINDOWS)
def test_gradient_of_large_windows_equals_stock_and_reference(pool_size, strides, padding, data_format, rng):
    ours = kjp.MaxPool2D(pool_size, strides, padding, data_format)
    stock = keras.layers.MaxPooling2D(pool_size, strides, padding, data_format)
    x = _relu_input(rng, data_format, size=(20, 21))
    c = _integer_cotangent(ours, x, rng)
    expected = reference.max_pool_gradient(x, c, pool_size, strides, padding, data_format)
    np.testing.assert_array_equal(gradient(ours, tensor(x), c, compile=lambda g: compile_as(FASTEST, g)), expected)
    _assert_equals_stock(ours, stock, x, c, FASTEST)


# "same" windows that reach into padding, over values all below 0: a pad
# element must never win. With a 5x5 window on 2 rows, the first two window
# rows of every output lie in padding only.
NEGATIVE_CASES = [
    pytest.param((5, 5), (1, 1), (2, 3), "channels_last", id="window-rows-only-in-padding"),
    pytest.param((4, 3), (3, 2), (7, 8), "channels_first", id="odd-padding"),
    pytest.param((3, 3), (2, 2), (6, 5), "channels_last", id="3x3-stride2"),
]


@pytest.mark.parametrize("pool_size, strides, size, data_format", NEGATIVE_CASES)
def test_gradient_of_negative_values_never_goes_to_padding(pool_size, strides, size, data_format, rng):
    ours = kjp.MaxPool2D(pool_size, strides, "same", data_format)
    stock = keras.layers.MaxPooling2D(pool_size, strides, "same", data_format)
    x = -1 - _relu_input(rng, data_format, size=size)  # ties at -1
    c = _integer_cotangent(ours, x, rng)
    expected = reference.max_pool_gradient(x, c, pool_size, strides, "same", data_format)
    reached = reference.max_pool_gradient(x, np.abs(c), pool_size, strides, "same", data_format)
    assert reached.sum() == np.abs(c).sum()  # no window's cotangent was dropped in padding
    np.testing.assert_array_equal(gradient(ours, tensor(x), c), expected)
    _assert_equals_stock(ours, stock, x, c, "eager")


@only_on("jax")
class TestJaxRule:
    """Our custom_jvp rule: linear in the tangent, so every JAX transformation works."""

    def _op(self, padding="same"):
        return lambda v: kjp.max_pool2d(v, (3, 2), (2, 1), padding)

    def _x(self, rng):
        return np.round(rng.normal(size=(1, 5, 6, 2)) * 2) / 2  # float64 in, few values: ties

    def test_the_compiled_gradient_has_no_select_and_scatter(self):
        import jax
        import jax.numpy as jnp

        x = jnp.ones((2, 8, 8, 3))
        ours = jax.jit(jax.grad(lambda v: kjp.max_pool2d(v, 2).sum())).lower(x).as_text()
        stock = jax.jit(jax.grad(lambda v: keras.ops.max_pool(v, (2, 2), (2, 2)).sum())).lower(x).as_text()
        assert "select_and_scatter" in stock
        assert "select_and_scatter" not in ours

    @pytest.mark.parametrize(
        "pool_size, strides, joined, size",
        [
            ((3, 3), (2, 2), True, 9),  # overlapping, strided along two axes: split
            ((1, 3, 3), (1, 2, 2), True, 9),
            ((3,), (2,), False, 9),  # one strided axis: the planes' pads add up
            ((3, 3), (2, 1), False, 9),
            ((2, 2), (2, 2), False, 9),  # apart: grouped by shift
            ((2, 2, 2), (2, 2, 2), False, 9),
            ((3, 3, 3), (2, 2, 2), True, 9),  # overlapping along three axes: by shift, split along one
            ((3, 3, 3), (2, 2, 2), True, 16),  # the phase rows hold the input exactly: split along all three
            ((4, 4, 4), (2, 2, 2), True, 8),  # "same" pads both ends: the rows do not, split along one
        ],
    )
    def test_the_backward_joins_split_phase_planes_by_concatenation(self, pool_size, strides, joined, size, rng):
        """Where the phase planes are split (`_splits_phases`, and
        `_split_axes` for volumes), the compiled backward joins their
        cotangents with a concatenation (a pad per plane
        was 1.2 to 3x slower: README "Performance"), writes out no padded
        cotangent for images, and still gives stock's bits, -0 cotangents
        included (each split plane of an image has its own +0 term; over
        volumes `_plus_zero` adds it after the last term), all of them -0
        too."""
        import jax
        import jax.numpy as jnp

        x = rng.normal(size=(2,) + (size,) * len(pool_size) + (4,)).astype("float32")
        c = rng.normal(size=(2,) + tuple(-(-size // s) for s in strides) + (4,)).astype("float32")  # "same"
        c[rng.random(c.shape) < 0.3] = -0.0
        grad = lambda pool: jax.jit(jax.grad(lambda v: jnp.sum(pool(v, pool_size, strides, "same") * c)))
        compiled = grad(kjp.max_pool).lower(x).compile()
        assert ("concatenate(" in compiled.as_text()) == joined
        if joined and len(pool_size) < 3:
            # The planes' +0 terms differ, so that XLA does not take them for
            # one array and write it out: the temporaries are the window
            # index (1 byte per output) and a few scalars. (Volumes pad the
            # index and the cotangent for their shifts, which XLA may write
            # out: `_phase_broadcast_tangent`.)
            assert compiled.memory_analysis().temp_size_in_bytes < c.nbytes
        ours, stock = np.asarray(grad(kjp.max_pool)(x)), np.asarray(grad(keras.ops.max_pool)(x))
        np.testing.assert_array_equal(ours.view(np.uint32), stock.view(np.uint32))
        # Every cotangent -0: an element that is the maximum of several
        # windows sums only -0 terms, +0 in stock, which starts from +0.
        c[...] = -0.0
        ours, stock = np.asarray(grad(kjp.max_pool)(x)), np.asarray(grad(keras.ops.max_pool)(x))
        np.testing.assert_array_equal(ours.view(np.uint32), stock.view(np.uint32))

    def test_forward_mode_equals_reverse_mode(self, rng):
        import jax

        x = self._x(rng).astype("float32")
        jf, jr = jax.jacfwd(self._op())(x), jax.jacrev(self._op())(x)
        np.testing.assert_array_equal(np.asarray(jf), np.asarray(jr))

    def test_jvp_is_linear_in_the_tangent(self, rng):
        import jax

        x = self._x(rng).astype("float32")
        t = rng.normal(size=x.shape).astype("float32")
        _, d1 = jax.jvp(self._op(), (x,), (t,))
        _, d2 = jax.jvp(self._op(), (x,), (2 * t,))
        _, d0 = jax.jvp(self._op(), (x,), (0 * t,))
        np.testing.assert_array_equal(2 * np.asarray(d1), np.asarray(d2))
        assert not np.any(np.asarray(d0))

    def test_hessian_and_hessian_vector_product(self, rng):
        import jax
        import jax.numpy as jnp

        x = self._x(rng).astype("float32")
        loss = lambda v: jnp.sum(self._op()(v) ** 3)  # noqa: E731
        h = np.asarray(jax.hessian(loss)(x)).reshape(x.size, x.size)
        v = rng.normal(size=x.shape).astype("float32")
        hvp = jax.jvp(jax.grad(loss), (x,), (v,))[1]
        np.testing.assert_allclose(np.asarray(hvp).ravel(), h @ v.ravel(), rtol=1e-5, atol=1e-5)
        # The Hessian of sum(y^3) is diagonal, 6 * y at each picked element.
        y = reference.downsample_images(x, (3, 2), (2, 1), padding="same")
        picked = reference.max_pool_gradient(x, np.ones_like(y), (3, 2), (2, 1), padding="same")
        expected = reference.max_pool_gradient(x, 6 * y, (3, 2), (2, 1), padding="same")
        np.testing.assert_allclose(np.diag(h).reshape(x.shape), np.where(picked > 0, expected, 0), rtol=1e-6)
        assert not np.any(h - np.diag(np.diag(h)))

    def test_vmap_of_grad_equals_per_example_grad(self, rng):
        import jax

        x = _relu_input(rng, "channels_last", batch=3)
        grad = jax.grad(lambda v: self._op("valid")(v[None]).sum())
        batched = np.asarray(jax.vmap(grad)(x))
        for i in range(len(x)):
            np.testing.assert_array_equal(batched[i], np.asarray(grad(x[i])))

    def test_vmap_of_bfloat16_volume_grad_equals_per_example_grad_and_stock(self, rng):
        """Overlapping 3x3x3 windows in bfloat16 round their partial sums in
        the backward (`_rounded`, a primitive of ours): batched too."""
        import jax
        import jax.numpy as jnp

        x = jnp.asarray(rng.normal(size=(3, 1, 8, 8, 8, 2)), jnp.bfloat16)
        c = jnp.asarray(rng.normal(size=(1, 4, 4, 4, 2)), jnp.bfloat16)
        grad = lambda pool: jax.grad(lambda v: jnp.sum(pool(v, 3, 2, "same") * c))  # noqa: E731
        batched = np.asarray(jax.vmap(grad(kjp.max_pool))(x)).view(np.uint16)
        for i in range(len(x)):
            np.testing.assert_array_equal(batched[i], np.asarray(grad(keras.ops.max_pool)(x[i])).view(np.uint16))

    def test_bfloat16_rounding_is_reduce_precisions_and_its_own_transpose(self, rng):
        """`_bfloat16_rounding` gives `reduce_precision`'s bits (rounding to
        nearest, ties to even; overflow to infinity) on every float32 but a
        NaN with payload bits in its low half, which never reaches it; as a
        primitive, JAX differentiates, transposes and batches it as the
        same rounding."""
        import jax
        import jax.numpy as jnp
        from jax import lax

        from keras_jax_pool.backends import jax as rule

        edges = [0x3F808000, 0x3F818000, 0x3F807FFF, 0x3F808001, 0x7F7FFFFF, 0x7F7F8000, 0x7F7F7FFF, 0x00008000]
        edges += [0x00018000, 0x00000001, 0x7F800000, 0x7FC00000, 0x7F810000, 0x80000000, 0xFFC00000, 0xFF7F8000]
        bits = np.concatenate([rng.integers(0, 2**32, size=2**18, dtype=np.uint32), np.array(edges, np.uint32)])
        bits[(bits & 0x7FFFFFFF) > 0x7F800000] &= 0xFFFF0000  # NaN: the payload's low half zero
        bits = np.concatenate([bits, bits | 0x80000000])
        v = jnp.asarray(bits.view(np.float32))
        expected = np.asarray(lax.reduce_precision(v, exponent_bits=8, mantissa_bits=7)).view(np.uint32)
        for rounded in (jax.jit(rule._bfloat16_rounding)(v), rule._round_to_bfloat16.bind(v)):
            np.testing.assert_array_equal(np.asarray(rounded).view(np.uint32), expected)
        finite = np.isfinite(bits.view(np.float32))
        as_bfloat16 = bits.view(np.float32)[finite].astype(ml_dtypes.bfloat16).astype(np.float32)
        np.testing.assert_array_equal(expected[finite], as_bfloat16.view(np.uint32))

        bind = rule._round_to_bfloat16.bind
        transposed = jax.linear_transpose(bind, v)(v)[0]
        tangent = jax.jvp(bind, (jnp.ones_like(v),), (v,))[1]
        batched = jax.vmap(bind)(v.reshape(16, -1)).reshape(-1)
        for result in (transposed, tangent, batched):
            np.testing.assert_array_equal(np.asarray(result).view(np.uint32), expected)
