"""`keras-jax-pool swap-in IN.keras OUT.keras` and `swap-out`: the file
holds the swapped model, the count is printed, the input is never
overwritten, the output is written atomically, bad inputs get clear errors."""

import configparser
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_jax_pool as kjp
from keras_jax_pool import cli, surgery
from tests.conftest import to_numpy

STOCK = keras.layers.MaxPooling2D
ROOT = Path(__file__).resolve().parent.parent


def _stock_model():
    inputs = keras.Input((10, 10, 2), name="pixels")
    x = keras.layers.Conv2D(3, 3, padding="same", name="conv")(inputs)
    x = STOCK(3, strides=2, padding="same", name="pool_a")(x)
    x = STOCK(name="pool_b")(x)
    outputs = keras.layers.Dense(2, name="head")(keras.layers.Flatten(name="flatten")(x))
    model = keras.Model(inputs, outputs, name="small")
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    return model


@pytest.fixture
def stock_file(tmp_path):
    path = tmp_path / "stock.keras"
    _stock_model().save(path)
    return path


def _swap(capsys, *argv):
    """Runs the command line in this process; returns (exit status, stdout, stderr)."""
    try:
        status = cli.main([str(a) for a in argv])
    except SystemExit as exit:
        status = exit.code
    out, err = capsys.readouterr()
    if isinstance(status, str):  # sys.exit(message) prints it, with status 1, only on leaving Python
        status, err = 1, err + status
    return status, out, err


def _assert_same_model_but_pools(old, new, new_pool_class, rng):
    assert [type(layer) for layer in new.layers] == [
        new_pool_class if type(layer) in (STOCK, kjp.MaxPool2D) else type(layer) for layer in old.layers
    ]
    for old_layer, new_layer in zip(old.layers, new.layers):
        assert new_layer.get_config() == old_layer.get_config()
    for v_new, v_old in zip(new.variables, old.variables, strict=True):
        np.testing.assert_array_equal(to_numpy(v_new), to_numpy(v_old))
    x = rng.normal(size=(3, 10, 10, 2)).astype("float32")
    np.testing.assert_array_equal(to_numpy(new(x)), to_numpy(old(x)))


def test_swap_in_writes_our_layers_and_prints_the_count(stock_file, tmp_path, capsys, rng):
    status, out, err = _swap(capsys, "swap-in", stock_file, tmp_path / "ours.keras")
    assert status in (None, 0), err
    assert "replaced 2 keras.layers.MaxPooling2D layer(s) with keras_jax_pool.MaxPool2D: pool_a, pool_b" in out
    old, new = keras.saving.load_model(stock_file), keras.saving.load_model(tmp_path / "ours.keras")
    _assert_same_model_but_pools(old, new, kjp.MaxPool2D, rng)
    assert new.compiled and new.get_compile_config() == old.get_compile_config()


def test_swap_out_writes_stock_layers_and_prints_the_count(stock_file, tmp_path, capsys, rng):
    assert _swap(capsys, "swap-in", stock_file, tmp_path / "ours.keras")[0] in (None, 0)
    status, out, err = _swap(capsys, "swap-out", tmp_path / "ours.keras", tmp_path / "back.keras")
    assert status in (None, 0), err
    assert "replaced 2 keras_jax_pool.MaxPool2D layer(s) with keras.layers.MaxPooling2D" in out
    old, back = keras.saving.load_model(stock_file), keras.saving.load_model(tmp_path / "back.keras")
    _assert_same_model_but_pools(old, back, STOCK, rng)
    assert back.get_config() == old.get_config()


def test_a_model_without_pooling_layers_reports_zero(tmp_path, capsys):
    inputs = keras.Input((3,))
    keras.Model(inputs, keras.layers.Dense(1)(inputs)).save(tmp_path / "dense.keras")
    status, out, _ = _swap(capsys, "swap-in", tmp_path / "dense.keras", tmp_path / "out.keras")
    assert status in (None, 0) and "replaced 0 keras.layers.MaxPooling2D layer(s)" in out
    assert (tmp_path / "out.keras").exists()


def test_check_confirms_equal_outputs(stock_file, tmp_path, capsys):
    status, out, err = _swap(capsys, "swap-in", "--check", stock_file, tmp_path / "ours.keras")
    assert status in (None, 0), err
    assert "check: outputs of the old and the new model are equal on random input" in out


def test_a_failed_check_writes_nothing(stock_file, tmp_path, capsys, monkeypatch):
    swap = surgery._swap

    def swap_and_spoil(model, replacements):
        new_model = swap(model, replacements)
        kernel = new_model.get_layer("conv").kernel
        kernel.assign(to_numpy(kernel) + 1.0)
        return new_model

    monkeypatch.setattr(surgery, "_swap", swap_and_spoil)
    status, out, err = _swap(capsys, "swap-in", "--check", stock_file, tmp_path / "ours.keras")
    assert status != 0
    assert "Check failed" in err and "was not written" in err
    assert not (tmp_path / "ours.keras").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stock.keras"]


@pytest.mark.parametrize("spelling", ["same", "dotdot", "symlink"])
def test_refuses_to_overwrite_its_input(stock_file, tmp_path, capsys, spelling):
    output = {
        "same": stock_file,
        "dotdot": tmp_path / "sub" / ".." / "stock.keras",
        "symlink": tmp_path / "link.keras",
    }[spelling]
    (tmp_path / "sub").mkdir()
    if spelling == "symlink":
        output.symlink_to(stock_file)
    before = stock_file.read_bytes()
    status, _, err = _swap(capsys, "swap-in", stock_file, output)
    assert status != 0 and "Refusing to overwrite the input" in err and str(stock_file) in err
    assert stock_file.read_bytes() == before


def test_a_failed_write_leaves_an_existing_output_intact(stock_file, tmp_path, capsys, monkeypatch):
    output = tmp_path / "ours.keras"
    output.write_bytes(b"previous contents")

    def half_save(model, path, *args, **kwargs):
        Path(path).write_bytes(b"half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(keras.Model, "save", half_save)
    status, _, err = _swap(capsys, "swap-in", stock_file, output)
    assert status != 0 and "disk full" in err
    assert output.read_bytes() == b"previous contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ours.keras", "stock.keras"]  # no temporary left


def _zip(path, entries):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


def _bad_inputs(tmp_path, stock_file):
    data = stock_file.read_bytes()
    with zipfile.ZipFile(stock_file) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    return {
        "missing": (tmp_path / "nowhere.keras", "No such file"),
        "directory": (tmp_path, "is a directory"),
        "text": (_write(tmp_path / "notes.keras", b"just text"), "not a readable zip file"),
        "h5 name": (_write(tmp_path / "model.h5", data), "its name does not end in .keras"),
        "truncated": (_write(tmp_path / "truncated.keras", data[: len(data) // 2]), "not a readable zip file"),
        "zip without config": (_zip(tmp_path / "empty.keras", {"hello.txt": "hi"}), "holds no config.json"),
        "config not json": (_zip(tmp_path / "badjson.keras", {**entries, "config.json": "{not json"}), "Cannot load"),
        "weights missing": (
            _zip(tmp_path / "noweights.keras", {k: v for k, v in entries.items() if not k.startswith("model.weights")}),
            "Cannot load",
        ),
    }


def _write(path, data):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "case",
    ["missing", "directory", "text", "h5 name", "truncated", "zip without config", "config not json", "weights missing"],
)
def test_a_bad_input_gets_a_clear_error_naming_the_file(stock_file, tmp_path, capsys, case):
    path, reason = _bad_inputs(tmp_path, stock_file)[case]
    output = tmp_path / "out.keras"
    status, out, err = _swap(capsys, "swap-in", path, output)
    assert status != 0
    assert err.startswith("keras-jax-pool swap-in: error: ")
    assert reason in err and repr(str(path)) in err
    assert "Traceback" not in err
    assert not output.exists()


def test_the_output_must_be_a_keras_file(stock_file, tmp_path, capsys):
    status, _, err = _swap(capsys, "swap-in", stock_file, tmp_path / "out.h5")
    assert status != 0 and f"Received: output={str(tmp_path / 'out.h5')!r}" in err


def test_python_dash_m_runs_it_and_reports_failure_by_exit_status(stock_file, tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "keras_jax_pool", "swap-in", "--check", str(stock_file), str(tmp_path / "o.keras")]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert "replaced 2 keras.layers.MaxPooling2D layer(s)" in done.stdout and "check: outputs" in done.stdout
    assert [type(layer) for layer in surgery.find_layers(keras.saving.load_model(tmp_path / "o.keras"), kjp.MaxPool2D)]
    command[-2:] = [str(tmp_path / "o.keras"), str(tmp_path / "o.keras")]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 1 and "Refusing to overwrite the input" in done.stderr


def test_the_console_script_is_the_same_command_line():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    scripts = dict(
        line.split(" = ") for line in config["options.entry_points"]["console_scripts"].strip().splitlines()
    )
    module, function = scripts["keras-jax-pool"].split(":")
    assert (module, function) == ("keras_jax_pool.cli", "main")
    commands = cli.build_parser()._subparsers._group_actions[0].choices
    assert {"swap-in", "swap-out"} <= set(commands)
