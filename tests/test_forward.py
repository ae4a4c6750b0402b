"""The forward pass and the `keras_jax_pool.config.keep_nan` switch.

Under JAX the forward is chosen per geometry and dtype (backends/jax.py,
`_cpu_forward`): stock's `reduce_window` where XLA:CPU keeps NaN, the max of
the window's elements elsewhere, and a checked `reduce_window` on platforms
and jaxlib versions that were not checked. These tests hold each choice to
the numpy reference, check on the pinned jaxlib what the choice relies on
(which programs keep NaN), and check that `set_keep_nan(False)` gives stock's
program and outputs, on every backend.
"""

import re

import keras
import numpy as np
import pytest

import keras_jax_pool as kjp
from keras_jax_pool import config
from tests.conftest import BACKEND, CHEAP_FORMS, compile_as, only_on, tensor, to_numpy
from tests.test_properties import expected_output

NAN = np.nan
HALF_AND_SINGLE = ["float16", "bfloat16", "float32"]

# Windows that tile, overlap, or leave gaps, over inputs large enough (over
# 4096 values) for XLA:CPU to pick its library kernel if it would.
GEOMETRIES = [
    ((2, 2), (2, 2), "valid"),
    ((2, 2), (2, 2), "same"),
    ((3, 3), (3, 3), "valid"),
    ((3, 3), (2, 2), "same"),
    ((3, 3), (1, 1), "same"),
    ((4, 4), (2, 2), "valid"),
    ((3, 2), (1, 2), "same"),
    ((2, 2), (3, 3), "valid"),
    ((1, 3), (1, 3), "valid"),
    # Sequences and volumes: the same choice, made for any number of axes.
    ((2,), (2,), "valid"),
    ((3,), (2,), "same"),
    ((3,), (4,), "valid"),
    ((2, 2, 2), (2, 2, 2), "valid"),
    ((3, 3, 3), (2, 2, 2), "same"),
    ((1, 2, 2), (1, 2, 2), "valid"),
]
# Inputs of over 4096 values, per number of spatial axes.
SHAPES = {1: (16, 257, 24), 2: (16, 15, 17, 24), 3: (4, 9, 10, 11, 8)}


def _input_with_nan(rng, dtype, data_format="channels_last", dims=2):
    x = rng.integers(-5, 6, size=SHAPES[dims]).astype("float32")
    x[rng.random(x.shape) < 0.02] = NAN
    x[3] = NAN  # whole windows of NaN
    x = x.astype(dtype)
    return np.moveaxis(x, -1, 1).copy() if data_format == "channels_first" else x


def _expected(x, pool_size, strides, padding, data_format="channels_last"):
    return expected_output(x, pool_size, strides, padding, data_format).astype("float32")


@pytest.fixture
def nan_dropped_by_stock():
    """Sets keep_nan to False for one test."""
    with config.keeping_nan(False):
        yield


@only_on("jax")
class TestJaxFormulations:
    """Each JAX forward formulation, and the choice between them."""

    def _geometry(self, x, pool_size, strides, padding, data_format="channels_last"):
        from keras_jax_pool.backends import jax as jax_backend

        return jax_backend._Geometry.of(x.shape, pool_size, strides, padding, data_format)

    @pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
    @pytest.mark.parametrize("dtype", HALF_AND_SINGLE)
    @pytest.mark.parametrize("pool_size, strides, padding", GEOMETRIES)
    def test_nan_keeping_formulations_equal_the_reference(self, pool_size, strides, padding, dtype, data_format, rng):
        import jax

        from keras_jax_pool.backends import jax as jax_backend

        x = _input_with_nan(rng, dtype, data_format, len(pool_size))
        geo = self._geometry(x, pool_size, strides, padding, data_format)
        expected = _expected(x, pool_size, strides, padding, data_format)
        formulations = (
            jax_backend._max_of_window_elements,
            jax_backend._max_of_widened_elements,
            jax_backend._guarded_reduce_window_max,
        )
        if jax_backend._tiles_input(geo):
            formulations += (jax_backend._max_of_tiles,)
        for formulation in formulations:
            y = jax.jit(lambda v, f=formulation: f(v, geo))(x)
            np.testing.assert_array_equal(np.asarray(y, "float32"), expected, err_msg=formulation.__name__)

    @pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
    def test_float32_stand_ins_of_16_bit_floats(self, dtype):
        """Over all 65536 bit patterns: `_widened` orders the stand-ins as
        the values (-0 and +0 may differ, as either is the max of both),
        NaN exactly where the value is NaN, and `_narrowed` gives back the
        same bits, NaN payloads included."""
        import jax
        import jax.numpy as jnp

        from keras_jax_pool.backends import jax as jax_backend
        from keras_jax_pool.bench import numpy_dtype

        bits = np.arange(-(2**15), 2**15, dtype=np.int16)
        values = bits.view(numpy_dtype(dtype)).astype("float32")
        wide = np.asarray(jax.jit(lambda b: jax_backend._widened(b, jnp.dtype(dtype)))(bits))
        back = np.asarray(jax.jit(lambda w: jax_backend._narrowed(w, jnp.dtype(dtype)))(wide))
        np.testing.assert_array_equal(back.view(np.int16), bits)
        np.testing.assert_array_equal(np.isnan(wide), np.isnan(values))
        numbers = ~np.isnan(values)
        order = np.argsort(values[numbers], kind="stable")
        assert np.all(np.diff(wide[numbers][order]) >= 0)
        distinct = np.diff(values[numbers][order]) > 0
        assert np.all(np.diff(wide[numbers][order])[distinct] > 0)

    @pytest.mark.parametrize("dtype", HALF_AND_SINGLE)
    def test_windows_of_27_elements_read_no_array_at_more_than_15_places(self, dtype, rng):
        """3x3x3 windows read x through two bitcasts (`_bitcast_reads`): the
        forward and the window scan each compile to a single fused loop, with
        no copy of x written out first, that slices no array at more than 15
        places (XLA:CPU's limit; float32 read at 27 places ran 2x slower)."""
        import collections

        import jax

        from keras_jax_pool.backends import jax as jax_backend

        # Even sizes: every one of the 27 slices survives XLA's simplifier.
        x = rng.standard_normal((2, 16, 18, 20, 8)).astype(dtype)
        geo = self._geometry(x, (3, 3, 3), (2, 2, 2), "same")
        for formulation in (jax_backend._max_of_widened_elements, jax_backend._first_max_index):
            program = jax.jit(lambda v, f=formulation: f(v, geo)).lower(x).compile().as_text()
            entry = program[program.index("ENTRY") :]
            assert len(re.findall(r"= \S+ fusion\(", entry)) == 1, formulation.__name__
            sliced = collections.Counter(re.findall(r"= \S+ slice\((%[\w.-]+)\)", program))
            assert sum(sliced.values()) == 27, formulation.__name__
            assert max(sliced.values()) <= jax_backend._READS_PER_BITCAST == 15, (formulation.__name__, sliced)

    @pytest.mark.parametrize("dtype", HALF_AND_SINGLE)
    @pytest.mark.parametrize("pool_size", [(3, 3, 3), (3, 3)])
    def test_windows_padded_at_the_start_are_gathered_in_one_loop(self, dtype, pool_size, rng):
        """Where "same" pads the start of an axis (odd sizes, stride 2), the
        forward gathers each window element with the nearest real element in
        place of a pad (`_window_element_of_input`'s `replicate`), in one
        fused loop, no array read at more than 15 places, with stock's
        values: NaN, -inf and -0 included."""
        import collections

        import jax
        import jax.numpy as jnp

        from keras_jax_pool.backends import jax as jax_backend

        x = rng.standard_normal((2, 15, 17, 19, 4)[: len(pool_size) + 1] + (4,)).astype(dtype)
        x[x < -1.2] = -0.0
        x.reshape(-1)[::37] = np.nan
        x[:, :3] = -np.inf  # windows of -inf, and of -inf with pads
        strides = (2,) * len(pool_size)
        geo = self._geometry(x, pool_size, strides, "same")
        assert all(g.low > 0 for g in geo.spatial)
        program = jax.jit(lambda v: jax_backend._max_of_widened_elements(v, geo)).lower(x).compile().as_text()
        entry = program[program.index("ENTRY") :]
        assert len(re.findall(r"= \S+ fusion\(", entry)) == 1
        assert "pad(" not in program
        gathered = collections.Counter(re.findall(r"= \S+ gather\((%[\w.-]+),", program))
        assert 0 < max(gathered.values()) <= jax_backend._READS_PER_BITCAST, gathered
        ours = jax.jit(lambda v: jax_backend._forward(v, geo))(x)
        stock = jax.jit(lambda v: keras.ops.max_pool(v, pool_size, strides, "same"))(x)
        view = np.uint32 if dtype == "float32" else np.uint16
        np.testing.assert_array_equal(np.asarray(ours).view(view), np.asarray(stock).view(view))

    @pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
    @pytest.mark.parametrize("dtype", HALF_AND_SINGLE)
    @pytest.mark.parametrize("pool_size, strides, padding", GEOMETRIES)
    def test_cpu_choice_keeps_nan_as_recorded(self, pool_size, strides, padding, dtype, data_format, rng):
        """Where `_cpu_forward` keeps stock's reduce_window, the pinned
        jaxlib's reduce_window must keep NaN; where windows tile a float32
        input it must drop NaN (the reason for not using it there). If this
        fails, XLA changed its kernel choice: update `_cpu_forward` and
        `_KERNEL_CHOICE_CHECKED`."""
        import jax

        from keras_jax_pool.backends import jax as jax_backend

        x = _input_with_nan(rng, dtype, data_format, len(pool_size))
        geo = self._geometry(x, pool_size, strides, padding, data_format)
        plain = np.asarray(jax.jit(lambda v: jax_backend._reduce_window_max(v, geo))(x), "float32")
        kept = np.array_equal(plain, _expected(x, pool_size, strides, padding, data_format), equal_nan=True)
        if jax_backend._cpu_forward(geo, x.dtype) is jax_backend._reduce_window_max:
            assert kept
        if jax_backend._tiles_input(geo) and dtype == "float32":
            assert not kept

    @pytest.mark.parametrize("dtype", HALF_AND_SINGLE)
    @pytest.mark.parametrize("pool_size, strides, padding", GEOMETRIES)
    def test_chosen_program_is_stock_program_where_it_keeps_nan(self, pool_size, strides, padding, dtype, rng):
        """Where the choice is reduce_window, the compiled forward is stock's
        program exactly: no NaN check is paid for."""
        import jax

        from keras_jax_pool.backends import jax as jax_backend

        x = _input_with_nan(rng, dtype, dims=len(pool_size))
        geo = self._geometry(x, pool_size, strides, padding)
        ours = _optimized_hlo(jax.jit(lambda v: kjp.max_pool(v, pool_size, strides, padding)), x)
        stock = _optimized_hlo(jax.jit(lambda v: keras.ops.max_pool(v, pool_size, strides, padding)), x)
        if jax_backend._cpu_forward(geo, x.dtype) is jax_backend._reduce_window_max:
            assert ours == stock
        elif len(pool_size) < 3:
            # The elements' max is another program; over three axes XLA may
            # turn it back into a reduce_window (which keeps NaN there:
            # test_cpu_choice_keeps_nan_as_recorded).
            assert ours != stock

    def test_unchecked_jaxlib_versions_check_every_window(self, monkeypatch, rng):
        import jax

        from keras_jax_pool.backends import jax as jax_backend

        monkeypatch.setattr(jax_backend, "_KERNEL_CHOICE_CHECKED", ())
        x = _input_with_nan(rng, "float32")
        program = _optimized_hlo(jax.jit(lambda v: kjp.max_pool2d(v, 3, 2, "same")), x)
        assert "conditional(" in program  # the guard, whatever the geometry
        np.testing.assert_array_equal(to_numpy(jax.jit(lambda v: kjp.max_pool2d(v, 2))(x)), _expected(x, (2, 2), (2, 2), "valid"))

    @pytest.mark.parametrize("platform", ["cuda", "cpu"])
    @pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
    @pytest.mark.parametrize("pool_size, strides, padding", [GEOMETRIES[i] for i in (0, 3, 9, 12, 13)])
    def test_per_platform_choice(self, pool_size, strides, padding, dtype, platform, monkeypatch, rng):
        """What each platform's branch compiles to, compiled here (on the CPU)
        by making `platform_dependent` take that branch: for CUDA the forward
        is the elements' max of x's own slices and neither pass has a
        conditional (README "On a GPU"); for the CPU the window scan is stored behind one unless the
        windows are float32, apart, and of fewer than 4 elements. Both give the reference's outputs,
        and stock's gradients (on a sample without NaN)."""
        import jax
        import jax.numpy as jnp
        from jax import lax

        def take_branch(*args, default, **branches):
            return branches.get(platform, default)(*args)

        monkeypatch.setattr(lax, "platform_dependent", take_branch)
        x = _input_with_nan(rng, dtype, dims=len(pool_size))
        x[1] = np.nan_to_num(x[1])  # a sample without NaN, for the gradient
        y = np.asarray(kjp.max_pool(x, pool_size, strides, padding), "float32")
        c = np.where(np.isnan(y), 0, rng.normal(size=y.shape)).astype(dtype)
        pool = jax.jit(lambda v: kjp.max_pool(v, pool_size, strides, padding))
        grad = jax.jit(jax.grad(lambda v: jnp.sum(kjp.max_pool(v, pool_size, strides, padding) * c)))
        forward, backward = _optimized_hlo(pool, x), _optimized_hlo(grad, x)
        if platform == "cuda":
            assert "conditional(" not in forward and "reduce-window(" not in forward
            assert "conditional(" not in backward
        else:
            overlapping = any(k > s for k, s in zip(pool_size, strides))
            stored = overlapping or dtype != "float32" or np.prod(pool_size) >= 4
            assert ("conditional(" in backward) == stored
        assert "select-and-scatter" not in backward
        if dtype == "float32" and np.prod(pool_size) > 15:
            # Split reads of x (`_bitcast_reads`) are for XLA:CPU's limit;
            # the GPU's programs, measured there, read x itself.
            fused = pool.lower(x).compile().as_text()
            assert ("bitcast-convert(" in fused) == (platform == "cpu")
        np.testing.assert_array_equal(np.asarray(pool(x), "float32"), _expected(x, pool_size, strides, padding))
        stock = jax.jit(jax.grad(lambda v: jnp.sum(keras.ops.max_pool(v, pool_size, strides, padding) * c)))
        np.testing.assert_array_equal(np.asarray(grad(x), "float32")[1], np.asarray(stock(x), "float32")[1])

    @pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
    def test_the_window_scan_stays_stored_behind_zero_padding(self, dtype, rng):
        """The conditional that stores the window scan survives an input
        whose first element is a constant (ZeroPadding2D before the pooling,
        as in ResNet50): a predicate XLA can fold would inline the branch, and
        the scan would fuse into the backward loop again."""
        import jax
        import jax.numpy as jnp

        x = rng.normal(size=(2, 12, 12, 16)).astype(dtype)
        padded = lambda v: kjp.max_pool2d(jnp.pad(jax.nn.relu(v), ((0, 0), (1, 1), (1, 1), (0, 0))), 3, 2)
        backward = _optimized_hlo(jax.jit(jax.grad(lambda v: jnp.sum(padded(v)))), x)
        assert "conditional(" in backward

    @pytest.mark.parametrize("dtype", ["float32", "bfloat16", "int32"])
    @pytest.mark.parametrize(
        "pool_size, strides, padding",
        [GEOMETRIES[i] for i in (0, 3, 4, 7)] + [((3,), (2,), "same"), ((3, 3, 3), (2, 2, 2), "same"), ((3,), (1,), "same")],
    )
    def test_exported_with_any_batch_size_the_forward_is_portable(self, pool_size, strides, padding, dtype, rng):
        """Exported with a symbolic batch size (`jax.export`, as Keras's
        onnx and tf_saved_model formats do), the forward is slices, pads by
        concatenation and `max`, with NaN marked by `isnan`: no reduce_window
        (which onnxruntime refuses) and no platform branch (which jax2onnx
        cannot lower), whatever the runtime's max does with NaN."""
        import jax
        from jax import export

        dims = len(pool_size)
        x = _input_with_nan(rng, "float32", dims=dims)[:, : 9 if dims == 1 else 5]  # short axes: windows all padding
        x = np.nan_to_num(x).astype(dtype) if dtype == "int32" else x.astype(dtype)
        (batch,) = export.symbolic_shape("batch")
        pool = jax.jit(lambda v: kjp.max_pool(v, pool_size, strides, padding))
        exported = export.export(pool)(jax.ShapeDtypeStruct((batch, *x.shape[1:]), x.dtype))
        program = exported.mlir_module()
        assert "reduce_window" not in program and "stablehlo.case" not in program and "stablehlo.pad" not in program
        # NaN marked by isnan (x != x), for runtimes whose max drops it; XLA:CPU's keeps it.
        assert (re.search(r"compare\s+NE", program) is not None) == (dtype != "int32")
        exported = export.deserialize(exported.serialize())
        y = np.asarray(exported.call(x)).astype("float32")
        np.testing.assert_array_equal(y, _expected(x, pool_size, strides, padding))
        if dtype != "int32":
            assert np.isnan(y).any()

    @pytest.mark.parametrize("pool_size, strides, padding", [GEOMETRIES[0], GEOMETRIES[3]])
    @pytest.mark.parametrize("dtype", HALF_AND_SINGLE)
    def test_nan_reaches_the_output_inside_a_compiled_model(self, dtype, pool_size, strides, padding, rng):
        """Inside `predict`, where XLA:CPU fuses convolutions and pooling
        together, a window of the convolution's output holding NaN still
        gives NaN."""
        inputs = keras.Input((32, 32, 3), dtype=dtype)
        conv = keras.layers.Conv2D(32, 3, padding="same", activation="relu", dtype=dtype)(inputs)
        pooled = kjp.MaxPool2D(pool_size, strides, padding, dtype=dtype)(conv)
        model = keras.Model(inputs, [conv, pooled])
        x = rng.normal(size=(8, 32, 32, 3)).astype(dtype)
        x[0, 5, 5, 0] = x[1, 20, 9, 2] = NAN
        conv_out, pooled_out = model.predict(x, verbose=0)
        assert np.isnan(pooled_out).any()
        np.testing.assert_array_equal(pooled_out.astype("float32"), _expected(conv_out, pool_size, strides, padding))

    @pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
    @pytest.mark.parametrize("pool_size, strides, padding", [g for g in GEOMETRIES if g[0] == g[1] and len(g[0]) == 2])
    def test_tiles_give_stock_bits_for_signed_zeros_and_infinities(self, pool_size, strides, padding, data_format, rng):
        """The tiles' NaN mark adds -0 to every window's max: no value
        changes, -0 and +0 included, as stock's reduce_window gives them."""
        import jax

        from keras_jax_pool.backends import jax as jax_backend

        x = rng.choice(np.array([-0.0, 0.0, -np.inf, np.inf, -2.0, -1.0], "float32"), size=SHAPES[2])
        x = np.moveaxis(x, -1, 1).copy() if data_format == "channels_first" else x
        geo = self._geometry(x, pool_size, strides, padding, data_format)
        tiles = np.asarray(jax.jit(lambda v: jax_backend._max_of_tiles(v, geo))(x))
        stock = np.asarray(jax.jit(lambda v: jax_backend._reduce_window_max(v, geo))(x))
        assert np.signbit(stock[stock == 0]).any() and (~np.signbit(stock[stock == 0])).any()
        np.testing.assert_array_equal(tiles.view("int32"), stock.view("int32"))

    @pytest.mark.parametrize("padding", ["valid", "same"])
    def test_tiled_images_pool_inside_the_fusion_of_their_convolutions(self, padding, monkeypatch, rng):
        """float32 windows that tile an image compile, inside a model, into
        the YNNPACK fusion XLA:CPU builds around its 2D convolutions: the
        compiled forward has stock's fusions, where the elements' max split
        it (README "Keeping NaN, and what it costs"). In such a fusion a
        window holding NaN still gives NaN, and every other output is
        stock's, bit for bit."""
        import jax

        from keras_jax_pool.backends import jax as jax_backend

        def fusions(model, x):
            weights = [v.value for v in model.trainable_variables]
            forward = jax.jit(lambda v: model.stateless_call(weights, [], v)[0])
            return len(re.findall(r"= \S+ fusion\(", _optimized_hlo(forward, x)))

        def net(pool):
            inputs = keras.Input((32, 32, 8))
            h = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(inputs)
            h = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(pool(2, padding=padding)(h))
            return keras.Model(inputs, pool(2, padding=padding)(h))

        keras.utils.set_random_seed(0)
        stock = net(keras.layers.MaxPooling2D)
        ours = kjp.swap_in(stock)
        x = rng.normal(size=(64, 32, 32, 8)).astype("float32")
        x[rng.random(x.shape) < 0.2] = 0.0
        assert fusions(ours, x) == fusions(stock, x)
        np.testing.assert_array_equal(np.asarray(ours(x)).view("int32"), np.asarray(stock(x)).view("int32"))
        # NaN through a convolution that passes its input on (1x1, identity):
        # the pooling's input is computed inside the fusion.
        inputs = keras.Input((32, 32, 8))
        identity = keras.layers.Conv2D(8, 1, use_bias=False)
        model = keras.Model(inputs, kjp.MaxPool2D(2, padding=padding)(identity(inputs)))
        identity.kernel.assign(np.eye(8, dtype="float32")[None, None])
        x[0, 5, 6, :] = NAN
        pooled = np.asarray(jax.jit(lambda v: model(v))(x))
        nan = np.zeros(pooled.shape, bool)
        nan[0, 2, 3] = True
        np.testing.assert_array_equal(np.isnan(pooled), nan)
        # The elements' max, in the same model, splits the fusion.
        monkeypatch.setattr(jax_backend, "_cpu_forward", lambda geo, dtype: jax_backend._max_of_widened_elements)
        assert fusions(kjp.swap_in(stock), x) > fusions(stock, x)


def _optimized_hlo(jitted, x):
    """The compiled program's computations (the fused ones and the entry),
    without names and metadata."""
    text = jitted.lower(x).compile().as_text()
    text = text[re.search(r"^(%|ENTRY)", text, re.MULTILINE).start() :]
    text = re.sub(r", metadata=\{[^}]*\}", "", text)
    return re.sub(r"%[\w.\-]+", "%", text)


@pytest.mark.parametrize("form", CHEAP_FORMS)
@pytest.mark.parametrize("dtype", HALF_AND_SINGLE)
@pytest.mark.parametrize("pool_size, strides, padding", [GEOMETRIES[0], GEOMETRIES[3]])
def test_without_keep_nan_the_forward_is_stock(pool_size, strides, padding, dtype, form, nan_dropped_by_stock, rng):
    """`set_keep_nan(False)` gives stock's outputs, NaN windows included,
    where stock drops NaN for speed (jax and tensorflow); torch and numpy
    keep NaN at no cost and are unchanged."""
    x = _input_with_nan(rng, dtype)
    ours = compile_as(form, lambda v: kjp.max_pool2d(v, pool_size, strides, padding))
    stock = compile_as(form, lambda v: keras.ops.max_pool(v, pool_size, strides, padding))
    y = to_numpy(ours(tensor(x))).astype("float32")
    if BACKEND in ("torch", "numpy"):
        np.testing.assert_array_equal(y, _expected(x, pool_size, strides, padding))
    else:
        np.testing.assert_array_equal(y, to_numpy(stock(tensor(x))).astype("float32"))


@pytest.mark.parametrize("dtype", HALF_AND_SINGLE)
def test_without_keep_nan_gradients_are_unchanged(dtype, nan_dropped_by_stock, rng):
    if BACKEND == "numpy":
        pytest.skip("the numpy backend has no autodiff")
    from tests.conftest import gradient

    x = rng.integers(-3, 4, size=(2, 9, 8, 3)).astype(dtype)
    c = np.arange(2 * 5 * 4 * 3).reshape(2, 5, 4, 3) % 5 + 1
    op = lambda v: kjp.max_pool2d(v, 3, 2, "same")
    with config.keeping_nan(True):
        kept = gradient(op, tensor(x), c)
    np.testing.assert_array_equal(gradient(op, tensor(x), c), kept)


def test_keep_nan_is_true_by_default_and_takes_only_a_bool():
    assert config.keep_nan() is True
    with pytest.raises(TypeError, match=r"keep_nan=1"):
        config.set_keep_nan(1)
    with config.keeping_nan(False):
        assert config.keep_nan() is False
    assert config.keep_nan() is True
