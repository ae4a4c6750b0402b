"""The examples in the public docstrings run and print what they say.

Run on the numpy backend, where a float64 array stays float64 (the examples
show what a user of that backend sees; other backends narrow to float32)."""

import doctest

import keras
import numpy as np
import pytest

import keras_jax_pool
from keras_jax_pool import layers, ops, surgery
from tests.conftest import only_on


@only_on("numpy")
@pytest.mark.parametrize("module", [layers, ops, surgery], ids=lambda m: m.__name__)
def test_docstring_examples(module):
    globs = {"np": np, "keras": keras, "keras_jax_pool": keras_jax_pool, **vars(module)}
    result = doctest.testmod(module, globs=globs, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"no examples found in {module.__name__}"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {module.__name__}"
