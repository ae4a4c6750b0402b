"""A `.keras` file whose pooling config was tampered with fails to load with a
`ValueError` that names the field; loading never runs code from the file."""

import json
import re
import zipfile

import keras
import pytest

import keras_jax_pool as kjp
from keras_jax_pool import cli, files
from tests.conftest import run_python

TAMPERINGS = [
    pytest.param({"pool_size": [-3, "x"]}, r"pool_size=\[-3, 'x'\]", id="pool_size"),
    pytest.param({"strides": [0, 1]}, r"strides=\[0, 1\]", id="strides"),
    pytest.param({"padding": "foo"}, r"padding='foo'", id="padding"),
    pytest.param({"data_format": "NHWC"}, r"data_format='NHWC'", id="data_format"),
]


def _save(path, pool_class):
    inputs = keras.Input((8, 8, 2))
    x = pool_class(2, name="pool")(keras.layers.Conv2D(2, 3, padding="same", name="conv")(inputs))
    keras.Model(inputs, x).save(path)
    return path


def _tamper(source, target, layer_name, fields):
    """Copies the archive `source` to `target`, with `fields` of the config of
    layer `layer_name` in config.json replaced."""
    with zipfile.ZipFile(source) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(entries["config.json"])
    (layer,) = [layer for layer in config["config"]["layers"] if layer["config"]["name"] == layer_name]
    layer["config"].update(fields)
    entries["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return target


@pytest.mark.parametrize("fields, received", TAMPERINGS)
def test_a_tampered_file_of_ours_fails_to_load_naming_the_field(tmp_path, fields, received):
    good = _save(tmp_path / "good.keras", kjp.MaxPool2D)
    assert type(files.load_model(good).get_layer("pool")) is kjp.MaxPool2D  # untampered, it loads
    bad = _tamper(good, tmp_path / "bad.keras", "pool", fields)
    with pytest.raises(ValueError, match=f"^Cannot load {re.escape(repr(str(bad)))}: layer 'pool': `{next(iter(fields))}` .*Received: {received}$"):
        files.load_model(bad)


@pytest.mark.parametrize("fields, received", TAMPERINGS)
def test_keras_load_model_of_a_tampered_file_raises_value_error(tmp_path, fields, received):
    bad = _tamper(_save(tmp_path / "good.keras", kjp.MaxPool2D), tmp_path / "bad.keras", "pool", fields)
    with pytest.raises(ValueError, match=f"`{next(iter(fields))}` .*Received: {received}"):
        keras.saving.load_model(bad)


@pytest.mark.parametrize("fields, received", TAMPERINGS)
def test_swap_in_refuses_a_tampered_stock_layer_naming_the_field(tmp_path, capsys, fields, received):
    """Stock Keras checks less when it loads; swap-in checks all four fields."""
    bad = _tamper(_save(tmp_path / "good.keras", keras.layers.MaxPooling2D), tmp_path / "bad.keras", "pool", fields)
    with pytest.raises(SystemExit) as exit:
        cli.main(["swap-in", str(bad), str(tmp_path / "out.keras")])
    assert exit.value.code != 0
    assert str(bad) in str(exit.value.code) and next(iter(fields)) in str(exit.value.code)
    assert not (tmp_path / "out.keras").exists()


def test_loading_never_runs_code_from_the_file_even_when_unsafe_loading_is_allowed(tmp_path):
    """A pickled `Lambda` would run on load; swap-in keeps safe mode on even
    after `keras.config.enable_unsafe_deserialization()`."""
    marker, model_path = tmp_path / "code_ran", tmp_path / "lambda.keras"
    out = run_python(
        "import pathlib, keras\n"
        "from keras_jax_pool import cli\n"
        f"MARKER = {str(marker)!r}\n"
        "touch = eval('lambda x: (__import__(\"pathlib\").Path(' + repr(MARKER) + ').touch(), x)[1]')\n"
        "inputs = keras.Input((4, 4, 1))\n"
        "x = keras.layers.Lambda(touch, name='code')(keras.layers.MaxPooling2D(name='pool')(inputs))\n"
        f"keras.Model(inputs, x).save({str(model_path)!r})\n"
        f"marker = pathlib.Path({str(marker)!r}); assert marker.exists(); marker.unlink()  # it ran when built\n"
        "keras.config.enable_unsafe_deserialization()\n"
        "try:\n"
        f"    cli.main(['swap-in', {str(model_path)!r}, {str(tmp_path / 'out.keras')!r}])\n"
        "except SystemExit as exit:\n"
        "    print('refused:', exit.code)\n"
    )
    assert "refused:" in out and "safe_mode" in out and str(model_path) in out
    assert not marker.exists()
    assert not (tmp_path / "out.keras").exists()


def test_a_config_too_large_to_be_a_model_is_not_unpacked(tmp_path, monkeypatch):
    """A zip bomb declares a huge config.json; it is refused before reading."""
    good = _save(tmp_path / "good.keras", kjp.MaxPool2D)
    monkeypatch.setattr(files, "MAX_CONFIG_BYTES", 100)
    with pytest.raises(ValueError, match=r"Cannot load .*good\.keras'.*config\.json is over 100 bytes unpacked"):
        files.load_model(good)
