"""Writing outputs safely: atomically, and never over an input."""

import contextlib
import os
import tempfile
from pathlib import Path


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
