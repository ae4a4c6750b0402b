"""`swap_in` replaces every stock `MaxPooling2D` of a model, at any depth, by
`MaxPool2D` of the same config and name, and changes nothing else;
`swap_out` undoes it."""

import keras
import numpy as np
import pytest

import keras_jax_pool as kjp
from keras_jax_pool import surgery
from tests.conftest import only_on, run_python, to_numpy

STOCK = keras.layers.MaxPooling2D


def _sequential():
    return keras.Sequential(
        [
            keras.Input((12, 12, 2), name="pixels"),
            keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
            STOCK(pool_size=3, strides=2, padding="same", name="pool_same"),
            keras.layers.BatchNormalization(name="bn"),
            STOCK((2, 1), strides=(1, 2), name="pool_valid"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(3, name="head"),
        ],
        name="seq",
    )


def _nested():
    """Dict inputs and outputs, a nested Sequential and a nested Functional
    model, a pooling layer and a convolution each called twice, a dropout."""
    block = keras.Sequential(
        [
            keras.Input((4, 4, 3)),
            keras.layers.Conv2D(4, 3, padding="same", name="block_conv"),
            keras.layers.BatchNormalization(name="block_bn"),
            STOCK(name="block_pool"),
        ],
        name="block",
    )
    tail_input = keras.Input((2, 2, 4))
    tail_pool = STOCK((2, 3), strides=(1, 2), padding="same", name="tail_pool")
    tail = keras.Model(tail_input, tail_pool(tail_input), name="tail")

    image, extra = keras.Input((16, 16, 3), name="image"), keras.Input((5,), name="extra")
    shared_conv = keras.layers.Conv2D(3, 3, padding="same", name="shared_conv")
    shared_pool = STOCK(name="shared_pool")
    x = shared_pool(shared_conv(image))
    x = shared_pool(shared_conv(keras.layers.ReLU(name="relu")(x)))
    features = tail(block(x))
    x = keras.layers.Concatenate(name="concat")([keras.layers.Flatten(name="flatten")(features), extra])
    logits = keras.layers.Dense(3, name="head")(keras.layers.Dropout(0.5, seed=3, name="dropout")(x))
    return keras.Model({"image": image, "extra": extra}, {"logits": logits, "features": features}, name="nested")


def _inputs(model, rng, batch=3):
    if isinstance(model, keras.Sequential):
        return rng.normal(size=(batch, 12, 12, 2)).astype("float32")
    return {
        "image": rng.normal(size=(batch, 16, 16, 3)).astype("float32"),
        "extra": rng.normal(size=(batch, 5)).astype("float32"),
    }


def _targets(model, rng, batch=3):
    if isinstance(model, keras.Sequential):
        return rng.normal(size=(batch, 3)).astype("float32")
    return {
        "logits": rng.normal(size=(batch, 3)).astype("float32"),
        "features": rng.normal(size=(batch, 2, 1, 4)).astype("float32"),
    }


def _walk(model, path=()):
    """(path, layer) for every layer at any depth, nested models included."""
    for layer in model.layers:
        yield (*path, layer.name), layer
        if isinstance(layer, keras.Model):
            yield from _walk(layer, (*path, layer.name))


def _assert_same_outputs(a, b, x):
    out_a, out_b = a(x, training=False), b(x, training=False)
    keras.tree.assert_same_structure(out_a, out_b)
    for y_a, y_b in zip(keras.tree.flatten(out_a), keras.tree.flatten(out_b)):
        np.testing.assert_array_equal(to_numpy(y_b), to_numpy(y_a))


BUILDERS = pytest.mark.parametrize("build", [_sequential, _nested], ids=["sequential", "nested"])


@BUILDERS
def test_every_stock_pool_at_any_depth_becomes_ours_with_the_same_config(build):
    model = build()
    stock_pools = {layer.name: layer for layer in surgery.find_layers(model, STOCK)}
    assert len(stock_pools) == (2 if build is _sequential else 3)
    swapped = kjp.swap_in(model)
    assert surgery.find_layers(swapped, STOCK) == []
    ours = {layer.name: layer for layer in surgery.find_layers(swapped, kjp.MaxPool2D)}
    assert ours.keys() == stock_pools.keys()
    for name, layer in ours.items():
        assert layer.get_config() == stock_pools[name].get_config()


@BUILDERS
def test_every_other_layer_config_weight_and_flag_is_unchanged(build, rng):
    model = build()
    model.get_layer("head").trainable = False
    for layer in model.layers:  # give BatchNormalization statistics that are not the defaults
        for variable in layer.variables:
            variable.assign(rng.normal(size=variable.shape).astype(variable.dtype))
    swapped = kjp.swap_in(model)
    old_layers, new_layers = dict(_walk(model)), dict(_walk(swapped))
    assert new_layers.keys() == old_layers.keys()
    for path, old in old_layers.items():
        new = new_layers[path]
        assert type(new) is (kjp.MaxPool2D if type(old) is STOCK else type(old)), path
        assert new is not old, path
        assert new.trainable == old.trainable, path
        if not isinstance(old, keras.Model):
            assert new.get_config() == old.get_config(), path
        assert [v.name for v in new.variables] == [v.name for v in old.variables], path
        for v_new, v_old in zip(new.variables, old.variables):  # seed states included
            np.testing.assert_array_equal(to_numpy(v_new), to_numpy(v_old), err_msg=v_old.path)
    assert len(swapped.weights) == len(model.weights)


@BUILDERS
def test_outputs_are_identical(build, rng):
    model = build()
    _assert_same_outputs(model, kjp.swap_in(model), _inputs(model, rng))


def test_input_and_output_structure_and_names_are_unchanged():
    model = _nested()
    swapped = kjp.swap_in(model)
    assert type(swapped) is type(model) and swapped.name == model.name
    for old, new in [(model.input, swapped.input), (model.output, swapped.output)]:
        keras.tree.assert_same_structure(old, new)
        assert [(x.shape, x.dtype) for x in keras.tree.flatten(new)] == [(x.shape, x.dtype) for x in keras.tree.flatten(old)]
    assert [x.name for x in keras.tree.flatten(swapped.input)] == ["extra", "image"]
    assert swapped.output_names == model.output_names
    assert [layer.name for layer in swapped.layers] == [layer.name for layer in model.layers]


def test_a_layer_called_twice_stays_one_shared_layer():
    model = _nested()
    swapped = kjp.swap_in(model)
    for name in ("shared_pool", "shared_conv"):
        assert [layer.name for layer in swapped.layers].count(name) == 1
        assert len(swapped.get_layer(name)._inbound_nodes) == len(model.get_layer(name)._inbound_nodes) == 2
    assert len(swapped.get_layer("shared_conv").weights) == 2


def test_trainable_flags_of_nested_models_and_their_layers_are_kept(rng):
    model = _nested()
    model.get_layer("block").trainable = False  # a frozen nested model
    model.get_layer("block").get_layer("block_conv").trainable = True  # with one layer thawed
    model.get_layer("shared_conv").trainable = False
    model.get_layer("tail").trainable = False  # clone_model alone would lose this one
    swapped = kjp.swap_in(model)
    for (path, old), (_, new) in zip(_walk(model), _walk(swapped), strict=True):
        assert new.trainable == old.trainable, path
    assert [v.path for v in swapped.trainable_variables] == [v.path for v in model.trainable_variables]
    assert [v.name for v in swapped.non_trainable_variables] == [v.name for v in model.non_trainable_variables]


def test_the_original_model_is_not_changed(rng):
    model = _nested()
    config, x = model.get_config(), _inputs(model, rng)
    before = to_numpy(model(x)["logits"])
    kjp.swap_in(model)
    assert model.get_config() == config
    assert len(surgery.find_layers(model, STOCK)) == 3
    np.testing.assert_array_equal(to_numpy(model(x)["logits"]), before)


@BUILDERS
def test_swap_out_undoes_swap_in_exactly(build, rng):
    model = build()
    back = kjp.swap_out(kjp.swap_in(model))
    assert surgery.find_layers(back, kjp.MaxPool2D) == []
    assert back.get_config() == model.get_config()
    for v_back, v_old in zip(back.variables, model.variables, strict=True):
        np.testing.assert_array_equal(to_numpy(v_back), to_numpy(v_old))
    _assert_same_outputs(model, back, _inputs(model, rng))


def test_swap_in_also_keeps_layers_that_are_ours_already():
    model = keras.Sequential([keras.Input((8, 8, 1)), STOCK(name="stock"), kjp.MaxPool2D(name="ours")])
    swapped = kjp.swap_in(model)
    assert [type(layer) for layer in swapped.layers] == [kjp.MaxPool2D, kjp.MaxPool2D]
    assert [type(layer) for layer in kjp.swap_out(swapped).layers] == [STOCK, STOCK]


def test_a_subclass_of_the_stock_layer_is_left_alone():
    """It may behave differently, so it is not ours to replace."""

    class CustomPool(STOCK):
        pass

    model = keras.Sequential([keras.Input((8, 8, 1)), CustomPool(name="custom"), STOCK(name="stock")])
    assert [type(layer) for layer in kjp.swap_in(model).layers] == [CustomPool, kjp.MaxPool2D]


def test_an_unbuilt_sequential_model_is_swapped_too(rng):
    model = keras.Sequential([keras.layers.Conv2D(2, 3), STOCK(name="pool")])
    swapped = kjp.swap_in(model)
    assert not swapped.built and type(swapped.get_layer("pool")) is kjp.MaxPool2D
    x = rng.normal(size=(2, 9, 9, 1)).astype("float32")
    model(x), swapped(x)
    swapped.set_weights(model.get_weights())
    np.testing.assert_array_equal(to_numpy(swapped(x)), to_numpy(model(x)))


@only_on("jax", "tensorflow", "torch")  # Keras has no fit() on the numpy backend
@BUILDERS
def test_a_compiled_model_comes_back_compiled_and_trains_on_alike(build, rng):
    model = build()
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=0.01),
        loss="mse",
        metrics=["mae"] if build is _sequential else {"logits": ["mae"]},
    )
    x, y = _inputs(model, rng, batch=8), _targets(model, rng, batch=8)
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    swapped = kjp.swap_in(model)
    assert swapped.compiled
    assert swapped.get_compile_config() == model.get_compile_config()
    assert type(swapped.optimizer) is type(model.optimizer)
    assert swapped.optimizer.get_config() == model.optimizer.get_config()
    assert int(to_numpy(swapped.optimizer.iterations)) == 2
    for v_new, v_old in zip(swapped.optimizer.variables, model.optimizer.variables, strict=True):
        np.testing.assert_array_equal(to_numpy(v_new), to_numpy(v_old), err_msg=v_old.path)
    # Step count and moments carried over: training on gives the same weights.
    # (Compared through the round trip, stock against stock: Adam magnifies the
    # last-bit differences between any two pooling implementations' gradients.)
    round_trip = kjp.swap_out(swapped)
    histories = [m.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0).history for m in (model, round_trip)]
    assert histories[1] == histories[0]
    for v_new, v_old in zip(round_trip.trainable_variables, model.trainable_variables, strict=True):
        np.testing.assert_array_equal(to_numpy(v_new), to_numpy(v_old), err_msg=v_old.path)


def test_an_uncompiled_model_stays_uncompiled():
    assert not kjp.swap_in(_sequential()).compiled


def test_the_swapped_out_file_loads_where_the_package_is_missing(tmp_path, rng):
    model = _sequential()
    x = _inputs(model, rng)
    np.save(tmp_path / "x.npy", x)
    swapped_in = kjp.swap_in(model)
    swapped_in.save(tmp_path / "ours.keras")
    kjp.swap_out(swapped_in).save(tmp_path / "stock.keras")
    out = run_python(
        "import sys, keras, numpy as np\n"
        "sys.modules['keras_jax_pool'] = None  # as if not installed: importing it fails\n"
        f"m = keras.saving.load_model({str(tmp_path / 'stock.keras')!r})\n"
        f"np.save({str(tmp_path / 'y.npy')!r}, keras.ops.convert_to_numpy(m(np.load({str(tmp_path / 'x.npy')!r}))))\n"
        "try:\n"
        f"    keras.saving.load_model({str(tmp_path / 'ours.keras')!r})\n"
        "except TypeError as error:\n"
        "    print('ours refused:', error)\n"
    )
    # The check above can tell the two apart: ours needs the package.
    assert "ours refused" in out and "Could not locate class 'MaxPool2D'" in out, out
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), to_numpy(model(x)))


def test_a_subclassed_model_gets_an_error_that_says_what_to_do():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.pool = STOCK()

        def call(self, x):
            return self.pool(x)

    with pytest.raises(ValueError, match=r"subclassed model .*class Net.*keras_jax_pool\.MaxPool2D. in its `__init__`"):
        kjp.swap_in(Net())


def test_a_stock_pool_hidden_in_a_custom_layer_gets_an_error_that_says_what_to_do():
    class Block(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.pool = STOCK(name="hidden_pool")

        def call(self, x):
            return self.pool(x)

    inputs = keras.Input((8, 8, 1))
    inner = keras.Model(inputs, Block(name="block")(inputs), name="inner")
    outer = keras.Sequential([keras.Input((8, 8, 1)), inner], name="outer")
    with pytest.raises(ValueError, match=r"'outer/inner/block' \(class Block\) holds .*\['hidden_pool'\]"):
        kjp.swap_in(outer)


def test_a_functional_subclass_that_clone_model_would_turn_into_another_class_is_refused():
    class Wrapped(keras.Model):
        def __init__(self, units=2, **kwargs):
            inputs = keras.Input((4, 4, 1))
            super().__init__(inputs, keras.layers.Flatten()(STOCK()(inputs)), **kwargs)

    with pytest.raises(ValueError, match=r"class Wrapped cannot be rebuilt"):
        kjp.swap_in(Wrapped())


@pytest.mark.parametrize("swap", [kjp.swap_in, kjp.swap_out], ids=["swap_in", "swap_out"])
def test_something_that_is_not_a_model_is_refused_by_name(swap):
    with pytest.raises(ValueError, match=r"Received: model=.* of type MaxPooling2D"):
        swap(STOCK())


def test_dtype_policies_carry_over():
    model = keras.Sequential([keras.Input((8, 8, 2)), STOCK(dtype="mixed_bfloat16", name="pool")])
    pool = kjp.swap_in(model).get_layer("pool")
    assert pool.dtype_policy.name == "mixed_bfloat16" and pool.compute_dtype == "bfloat16"
