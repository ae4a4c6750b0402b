"""Keras's own tests of `keras.layers.MaxPooling1D`, `MaxPooling2D` and
`MaxPooling3D`, run against `keras_jax_pool.MaxPool1D`, `MaxPool2D` and
`MaxPool3D`: a suite nobody here wrote.

The test module ships in the keras wheel. It is imported from there, never
copied; its `layers` namespace is swapped for one whose `MaxPooling1D`,
`MaxPooling2D` and `MaxPooling3D` are ours, and each of its cases runs as one
pytest test.
"""

import importlib
import types
import unittest

import pytest

import keras_jax_pool as kjp
from keras_jax_pool import ops

keras_tests = importlib.import_module("keras.src.layers.pooling.max_pooling_test")
CLASSES = (keras_tests.MaxPoolingBasicTest, keras_tests.MaxPoolingCorrectnessTest)
KINDS = ("1d", "2d", "3d")
CASES = [
    pytest.param(cls, name, id=f"{cls.__name__}.{name}")
    for cls in CLASSES
    for name in unittest.TestLoader().getTestCaseNames(cls)
    if name.startswith(tuple(f"test_max_pooling{kind}" for kind in KINDS))
]
OURS = types.SimpleNamespace(MaxPooling1D=kjp.MaxPool1D, MaxPooling2D=kjp.MaxPool2D, MaxPooling3D=kjp.MaxPool3D)


def test_every_keras_test_class_has_cases_of_every_kind():
    # An empty parametrization would be one quiet skip, not a failure.
    found = {(param.values[0], kind) for param in CASES for kind in KINDS if f"pooling{kind}" in param.values[1]}
    missing = {(cls.__name__, kind) for cls in CLASSES for kind in KINDS} - {(cls.__name__, kind) for cls, kind in found}
    assert not missing, f"no cases found for {sorted(missing)}"


@pytest.mark.parametrize("cls, name", CASES)
def test_keras_own_test_passes_on_ours(cls, name, monkeypatch):
    pooled = []

    def counting_pool(inputs, args, _pool=ops.pool):
        pooled.append(args)
        return _pool(inputs, args)

    monkeypatch.setattr(ops, "pool", counting_pool)
    monkeypatch.setattr(keras_tests, "layers", OURS)
    cls(name).debug()  # setUp, the test, tearDown; raises what the test raises
    # Fails if the test pooled through anything but our layer, of its kind.
    assert pooled, f"{cls.__name__}.{name} never called keras_jax_pool's pooling"
    dims = KINDS.index(name.removeprefix("test_max_pooling")[:2]) + 1
    assert {len(args.pool_size) for args in pooled} == {dims}
