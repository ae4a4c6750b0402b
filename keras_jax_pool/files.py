"""Reading and writing model files safely: loading in safe mode, with errors
that name the file; writing atomically."""

import contextlib
import json
import os
import secrets
import shutil
import zipfile
from pathlib import Path

import keras

from keras_jax_pool import arguments

MAX_CONFIG_BYTES = 1 << 28  # the config.json of the largest Keras models is a few MB


@contextlib.contextmanager
def atomic_output(path, suffix=None):
    """Yields a temporary path beside `path`; moves it onto `path` only when
    the block succeeds, so a reader never sees a half-written file.

    The file gets the mode a plain `open(path, "w")` would give it: an
    existing file's own, else what the user's umask allows (the temporary
    file is made as open() makes one, not private as `mkstemp` would).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_file_beside(path, suffix or path.suffix)
    try:
        yield tmp
        if path.exists():
            shutil.copymode(path, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _new_file_beside(path, suffix):
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}{suffix}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def save_model(model, path):
    """`model.save(path)`, atomically."""
    with atomic_output(path) as tmp:
        model.save(tmp)


def load_model(path):
    """`keras.saving.load_model(path, safe_mode=True)` of a `.keras` file.

    Safe mode stays on, even after `keras.config.enable_unsafe_deserialization()`,
    so loading never runs code stored in the file (a pickled `Lambda` is
    refused). The arguments of every pooling layer in the
    file, stock or ours, are checked first, as our layers
    checks them (and `MaxPool1D`, `MaxPool3D` theirs). Every failure is a `FileNotFoundError` or a `ValueError`
    whose message names the file and says what is wrong with it.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{str(path)!r} is a directory, not a .keras file.")
    if not path.is_file():
        raise FileNotFoundError(f"No such file: {str(path)!r}")
    if path.suffix != ".keras":
        raise ValueError(f"{str(path)!r} is not a .keras archive: its name does not end in .keras.")
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{str(path)!r} is not a .keras archive: it is not a readable zip "
            f"file (truncated, corrupt, or another format)."
        )
    try:
        with zipfile.ZipFile(path) as archive:
            if "config.json" not in archive.namelist():
                raise ValueError("it holds no config.json")
            if archive.getinfo("config.json").file_size > MAX_CONFIG_BYTES:  # a zip bomb, not a model
                raise ValueError(f"its config.json is over {MAX_CONFIG_BYTES} bytes unpacked")
            _check_config(json.loads(archive.read("config.json")))
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as error:  # whatever fails while reading the file, say which file
        # Keras re-raises a layer's ValueError as a TypeError that quotes the
        # whole config; the first error raised says best what is wrong.
        cause = error
        while (cause.__cause__ or (None if cause.__suppress_context__ else cause.__context__)) is not None:
            cause = cause.__cause__ or cause.__context__
        reason = str(cause) if isinstance(cause, ValueError) else f"{type(cause).__name__}: {cause}"
        raise ValueError(f"Cannot load {str(path)!r}: {reason}") from error


# The pooling layers whose fields are checked, each with its number of
# spatial dimensions: stock's by class name, ours by registered name.
_POOLING_DIMS = {
    **{f"MaxPooling{n}D": n for n in arguments.SPATIAL_DIMS},
    **{f"keras_jax_pool>MaxPool{n}D": n for n in arguments.SPATIAL_DIMS},
}


def _check_config(config, layer=None):
    """Checks a model's config.json before Keras builds anything from it.

    Refuses Python code stored in it (a pickled lambda), whatever
    `keras.config.enable_unsafe_deserialization()` was called with: Keras'
    global switch overrides `load_model(safe_mode=True)`. And checks every
    pooling layer, stock or ours, of every kind, as our layers do: stock
    Keras would load some bad arguments and fail later, differently on each
    backend. Raises `ValueError` naming the layer and the field.
    """
    if isinstance(config, list):
        for item in config:
            _check_config(item, layer)
        return
    if not isinstance(config, dict):
        return
    fields = config.get("config")
    if isinstance(fields, dict) and isinstance(fields.get("name"), str):
        layer = fields["name"]
    if config.get("class_name") == "__lambda__":
        raise ValueError(
            f"layer {layer!r} holds Python code (a lambda), which loading would "
            f"run; this loader keeps Keras' safe_mode on and refuses it."
        )
    is_stock = str(config.get("module", "")).split(".")[0] == "keras"
    spatial_dims = _POOLING_DIMS.get(config.get("class_name") if is_stock else config.get("registered_name"))
    if spatial_dims and isinstance(fields, dict):
        try:
            arguments.standardize_config(fields, spatial_dims)
        except ValueError as error:
            raise ValueError(f"layer {layer!r}: {error}") from None
    for value in config.values():
        _check_config(value, layer)
