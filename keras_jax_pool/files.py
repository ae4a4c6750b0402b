"""Reading and writing model files safely: loading in safe mode, with errors
that name the file; writing atomically."""

import contextlib
import os
import tempfile
import zipfile
from pathlib import Path

import keras


@contextlib.contextmanager
def atomic_output(path, suffix=None):
    """Yields a temporary path beside `path`; moves it onto `path` only when
    the block succeeds, so a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix or path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_model(model, path):
    """`model.save(path)`, atomically."""
    with atomic_output(path) as tmp:
        model.save(tmp)


def load_model(path):
    """`keras.saving.load_model(path, safe_mode=True)` of a `.keras` file.

    Safe mode stays on, so loading never runs code stored in the file (a
    pickled `Lambda` is refused). Every failure is a `FileNotFoundError` or a
    `ValueError` whose message names the file and says what is wrong with it.
    """
    path = Path(path)
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
        return keras.saving.load_model(path, safe_mode=True)
    except (ValueError, TypeError, KeyError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"Cannot load {str(path)!r}: {error}") from error
