"""The main job (`python -m keras_jax_pool demo`) trains both models alike and
reloads the saved one to equal predictions."""

import re

import pytest

from tests.conftest import BACKEND, only_on, run_python


@only_on("jax", "tensorflow", "torch")
def test_demo_trains_both_layers_to_the_same_accuracy_and_reloads(tmp_path):
    output = tmp_path / "out" / "digits.keras"
    out = run_python(f"from keras_jax_pool.cli import main; main(['demo', '--epochs', '2', '--output', {str(output)!r}])")
    accuracies = re.findall(r"^(stock MaxPooling2D|keras_jax_pool.MaxPool2D)\s+([\d.]+)", out, re.M)
    assert len(accuracies) == 2, out
    assert accuracies[0][1] == accuracies[1][1]
    assert float(accuracies[1][1]) > 0.5  # two epochs on digits learn a lot
    assert "reloaded model gives equal predictions" in out
    assert output.exists() and not list(output.parent.glob(".*"))  # no temporary left behind


@only_on("numpy")
def test_demo_explains_that_numpy_cannot_train():
    with pytest.raises(AssertionError, match="numpy backend cannot train"):
        run_python("from keras_jax_pool.cli import main; main(['demo'])", backend=BACKEND)
