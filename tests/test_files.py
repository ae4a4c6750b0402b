"""Atomic outputs (bench reports, swapped .keras files) get the mode a plain
write would give them: an existing file's own, else what the umask allows."""

from keras_jax_pool import files


def test_an_atomic_output_has_the_mode_of_a_plain_new_file(tmp_path):
    plain = tmp_path / "plain.json"
    plain.write_text("{}")
    with files.atomic_output(tmp_path / "atomic.json") as tmp:
        tmp.write_text("{}")
    assert (tmp_path / "atomic.json").stat().st_mode == plain.stat().st_mode


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    try:
        with files.atomic_output(tmp_path / "out.json") as tmp:
            tmp.write_text("partial")
            raise RuntimeError("interrupted")
    except RuntimeError:
        pass
    assert list(tmp_path.iterdir()) == []


def test_an_atomic_output_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    out = tmp_path / "private.json"
    out.write_text("{}")
    out.chmod(0o600)
    with files.atomic_output(out) as tmp:
        tmp.write_text("[]")
    assert out.read_text() == "[]"
    assert out.stat().st_mode & 0o777 == 0o600
