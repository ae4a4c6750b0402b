"""`swap_in`/`swap_out` and the `swap-in`/`swap-out` command on models that
pool sequences (Conv1D) and volumes (Conv3D), and on a model mixing all three
kinds: every stock max-pooling layer of each kind, at any depth, becomes ours
of the same kind and config, and back; outputs are bit-identical."""

import keras
import numpy as np
import pytest

import keras_jax_pool as kjp
from keras_jax_pool import files, layers, surgery
from tests.conftest import to_numpy
from tests.test_cli_swap import _swap as _run_command
from tests.test_tampered_files import _tamper

STOCK_1D, STOCK_2D, STOCK_3D = keras.layers.MaxPooling1D, keras.layers.MaxPooling2D, keras.layers.MaxPooling3D


def _blocks(conv, pool, x, widths, prefix):
    """Conv-BatchNorm-ReLU-pool blocks, as in real sequence and volume nets."""
    for i, width in enumerate(widths):
        x = conv(width, 3, padding="same", name=f"{prefix}conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"{prefix}bn{i}")(x)
        x = keras.layers.ReLU(name=f"{prefix}relu{i}")(x)
        x = pool(**(dict(pool_size=3, strides=2, padding="same") if i % 2 else {}), name=f"{prefix}pool{i}")(x)
    return x


def _conv1d_model():
    """Text/audio style: a nested feature extractor (a Functional model
    holding pools), then a pool and a head in the outer model."""
    inner_input = keras.Input((64, 4))
    extractor = keras.Model(inner_input, _blocks(keras.layers.Conv1D, STOCK_1D, inner_input, (8, 8), "inner_"), name="extractor")
    inputs = keras.Input((64, 4), name="signal")
    x = _blocks(keras.layers.Conv1D, STOCK_1D, extractor(inputs), (16,), "outer_")
    x = STOCK_1D(2, 1, data_format="channels_first", name="pool_cf")(x)
    outputs = keras.layers.Dense(3, name="head")(keras.layers.GlobalAveragePooling1D(name="gap")(x))
    return keras.Model(inputs, outputs, name="conv1d")


def _conv3d_model():
    """Video/medical style: a nested Sequential block, then more blocks."""
    block = keras.Sequential(
        [keras.Input((8, 12, 12, 2)), keras.layers.Conv3D(4, 3, padding="same", name="block_conv"),
         keras.layers.BatchNormalization(name="block_bn"), STOCK_3D((1, 2, 2), name="block_pool")],
        name="block",
    )
    inputs = keras.Input((8, 12, 12, 2), name="volume")
    x = _blocks(keras.layers.Conv3D, STOCK_3D, block(inputs), (6, 6), "")
    outputs = keras.layers.Dense(2, name="head")(keras.layers.Flatten(name="flatten")(x))
    return keras.Model(inputs, outputs, name="conv3d")


def _mixed_model():
    """One model pooling a sequence, an image and a volume."""
    seq, img, vol = keras.Input((10, 3), name="seq"), keras.Input((9, 9, 3), name="img"), keras.Input((4, 6, 6, 3), name="vol")
    parts = [
        keras.layers.Flatten()(STOCK_1D(3, 2, "same", name="pool1d")(seq)),
        keras.layers.Flatten()(STOCK_2D(2, name="pool2d")(img)),
        keras.layers.Flatten()(STOCK_3D(2, 1, name="pool3d")(vol)),
    ]
    return keras.Model([seq, img, vol], keras.layers.Dense(2, name="head")(keras.layers.Concatenate()(parts)), name="mixed")


def _random_inputs(model, rng, batch=2):
    xs = [rng.normal(size=(batch, *t.shape[1:])).astype("float32") for t in model.inputs]
    return xs if len(xs) > 1 else xs[0]


def _with_statistics(model, rng):
    """Weights and BatchNormalization statistics that are not the defaults
    (positive, so that no NaN arises, which stock drops under TensorFlow)."""
    for variable in model.variables:
        variable.assign(rng.uniform(0.5, 1.5, size=variable.shape).astype(variable.dtype))
    return model


def _kinds(model):
    return {cls: sorted(layer.name for layer in surgery.find_layers(model, cls)) for cls in (*layers.STOCK, *layers.STOCK.values())}


MODELS = pytest.mark.parametrize(
    "build, counts",
    [(_conv1d_model, {STOCK_1D: 4}), (_conv3d_model, {STOCK_3D: 3}), (_mixed_model, {STOCK_1D: 1, STOCK_2D: 1, STOCK_3D: 1})],
    ids=["conv1d", "conv3d", "mixed"],
)


@MODELS
def test_swap_in_replaces_every_kind_at_any_depth_and_swap_out_undoes_it(build, counts, rng):
    model = _with_statistics(build(), rng)
    before = _kinds(model)
    assert {cls: len(before[cls]) for cls in layers.STOCK.values() if before[cls]} == counts
    swapped = kjp.swap_in(model)
    after = _kinds(swapped)
    for ours, stock in layers.STOCK.items():
        assert after[stock] == [] and after[ours] == before[stock], ours.__name__
        for name in after[ours]:
            old, new = _find(model, name), _find(swapped, name)
            assert new.get_config() == old.get_config()
    x = _random_inputs(model, rng)
    expected = to_numpy(model(x, training=False))
    np.testing.assert_array_equal(to_numpy(swapped(x, training=False)), expected)
    back = kjp.swap_out(swapped)
    assert _kinds(back) == before
    assert back.get_config() == model.get_config()
    np.testing.assert_array_equal(to_numpy(back(x, training=False)), expected)


def _find(model, name):
    (layer,) = [layer for layer in model._flatten_layers(include_self=False) if layer.name == name]
    return layer


def test_the_command_reports_the_count_per_kind(tmp_path, capsys, rng):
    model = _with_statistics(_mixed_model(), rng)
    model.save(tmp_path / "stock.keras")
    status, out, err = _run_command(capsys, "swap-in", "--check", tmp_path / "stock.keras", tmp_path / "ours.keras")
    assert status in (None, 0), err
    for n in (1, 2, 3):
        assert f"replaced 1 keras.layers.MaxPooling{n}D layer(s) with keras_jax_pool.MaxPool{n}D: pool{n}d" in out
    status, out, err = _run_command(capsys, "swap-out", tmp_path / "ours.keras", tmp_path / "back.keras")
    assert status in (None, 0), err
    for n in (1, 2, 3):
        assert f"replaced 1 keras_jax_pool.MaxPool{n}D layer(s) with keras.layers.MaxPooling{n}D: pool{n}d" in out
    back = keras.saving.load_model(tmp_path / "back.keras")
    assert {type(layer) for layer in back.layers} >= {STOCK_1D, STOCK_2D, STOCK_3D}
    x = _random_inputs(model, rng)
    np.testing.assert_array_equal(to_numpy(back(x)), to_numpy(model(x)))


def test_a_hidden_3d_pool_gets_an_error_naming_its_kind():
    class Block(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.pool = STOCK_3D()

        def call(self, x):
            return self.pool(x)

    inputs = keras.Input((4, 4, 4, 1))
    model = keras.Model(inputs, Block(name="custom")(inputs))
    with pytest.raises(ValueError, match=r"holds `keras\.layers\.MaxPooling3D` layer\(s\).*`keras_jax_pool\.MaxPool3D`"):
        kjp.swap_in(model)


@pytest.mark.parametrize("pool_class", [STOCK_1D, kjp.MaxPool1D, STOCK_3D, kjp.MaxPool3D], ids=lambda c: c.__module__[:5] + c.__name__)
def test_a_tampered_1d_or_3d_pool_in_a_file_is_refused_naming_the_field(pool_class, tmp_path):
    dims = int(pool_class.__name__[-2])
    inputs = keras.Input((6,) * dims + (2,))
    good = tmp_path / "good.keras"
    keras.Model(inputs, pool_class(name="pool")(inputs)).save(good)
    assert type(files.load_model(good).get_layer("pool")) is pool_class  # untampered, it loads
    # A window of two spatial dimensions, right for MaxPool2D only.
    bad = _tamper(good, tmp_path / "bad.keras", "pool", {"pool_size": [2, 2]})
    with pytest.raises(ValueError, match=rf"layer 'pool': `pool_size` must be .* tuple of {dims} positive .*Received: pool_size=\[2, 2\]"):
        files.load_model(bad)
