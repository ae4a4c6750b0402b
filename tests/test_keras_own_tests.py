"""Keras's own tests of `keras.layers.MaxPooling2D`, run against
`keras_jax_pool.MaxPool2D`: a suite nobody here wrote.

The test module ships in the keras wheel. It is imported from there, never
copied; its `layers` namespace is swapped for one whose `MaxPooling2D` is
ours, and each of its 2-D cases runs as one pytest test. Its 1-D and 3-D
cases test other layers and are not collected.
"""

import importlib
import types
import unittest

import pytest

import keras_jax_pool as kjp
from keras_jax_pool import ops

keras_tests = importlib.import_module("keras.src.layers.pooling.max_pooling_test")
CLASSES = (keras_tests.MaxPoolingBasicTest, keras_tests.MaxPoolingCorrectnessTest)
CASES = [
    pytest.param(cls, name, id=f"{cls.__name__}.{name}")
    for cls in CLASSES
    for name in unittest.TestLoader().getTestCaseNames(cls)
    if name.startswith("test_max_pooling2d")
]


def test_every_keras_test_class_has_2d_cases():
    # An empty parametrization would be one quiet skip, not a failure.
    found = {param.values[0] for param in CASES}
    assert found == set(CLASSES), f"no MaxPooling2D cases found in {set(CLASSES) - found}"


@pytest.mark.parametrize("cls, name", CASES)
def test_keras_own_test_passes_on_ours(cls, name, monkeypatch):
    pooled = []

    def counting_pool(inputs, args, _pool=ops.pool):
        pooled.append(args)
        return _pool(inputs, args)

    monkeypatch.setattr(ops, "pool", counting_pool)
    monkeypatch.setattr(keras_tests, "layers", types.SimpleNamespace(MaxPooling2D=kjp.MaxPool2D))
    cls(name).debug()  # setUp, the test, tearDown; raises what the test raises
    # Fails if the test pooled through anything but our layer.
    assert pooled, f"{cls.__name__}.{name} never called keras_jax_pool's pooling"
