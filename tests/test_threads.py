"""One layer, called from 8 threads at once, gives every thread its own right
answer on every backend: eagerly, in compiled form, under differentiation,
and on the very first call in a fresh process."""

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import keras_jax_pool as kjp
from keras_jax_pool import reference
from tests.conftest import CHEAP_FORMS, compile_as, only_on, run_python, to_numpy
from tests.test_properties import AUTODIFF, expected_output, gradient, tensor

THREADS = 8
ROUNDS = 6
POOL = dict(pool_size=(3, 2), strides=(2, 1), padding="same")


def _inputs(rng):
    """One input per thread, each of its own shape, some holding NaN."""
    inputs = []
    for i in range(THREADS):
        x = rng.integers(-4, 5, size=(1 + i % 3, 5 + i, 9 - i % 4, 2 + i % 2)).astype("float32")
        if i % 2:
            x[rng.random(x.shape) < 0.1] = np.nan
        inputs.append(x)
    return inputs


def _at_once(task):
    """`task(i)` for every thread i, all threads released together, ROUNDS
    times each; returns each thread's results."""
    start = threading.Barrier(THREADS)

    def run(i):
        start.wait()
        return [task(i) for _ in range(ROUNDS)]

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(run, range(THREADS)))


def _expected(x):
    return expected_output(x, POOL["pool_size"], POOL["strides"], POOL["padding"])


def test_one_layer_from_8_threads_at_once(rng):
    inputs = _inputs(rng)
    layer = kjp.MaxPool2D(**POOL)
    results = _at_once(lambda i: to_numpy(layer(inputs[i])))
    for x, outputs in zip(inputs, results):
        for y in outputs:
            np.testing.assert_array_equal(y, _expected(x))


@pytest.mark.parametrize("form", CHEAP_FORMS)
def test_one_compiled_op_from_8_threads_at_once(form, rng):
    inputs = [tensor(x) for x in _inputs(rng)]
    pool = compile_as(form, kjp.MaxPool2D(**POOL))
    results = _at_once(lambda i: to_numpy(pool(inputs[i])))
    for x, outputs in zip(inputs, results):
        for y in outputs:
            np.testing.assert_array_equal(y, _expected(to_numpy(x)))


@only_on(*AUTODIFF)
def test_gradients_from_8_threads_at_once(rng):
    # -inf for NaN: the gradient of NaN windows is tested in test_nan.py.
    inputs = [np.nan_to_num(x, nan=-np.inf) for x in _inputs(rng)]
    layer = kjp.MaxPool2D(**POOL)
    cotangents = [(np.arange(_expected(x).size) % 3 + 1).reshape(_expected(x).shape).astype("float32") for x in inputs]
    results = _at_once(lambda i: gradient(layer, tensor(inputs[i]), cotangents[i]))
    for x, cotangent, grads in zip(inputs, cotangents, results):
        expected = reference.max_pool_gradient(x, cotangent, POOL["pool_size"], POOL["strides"], POOL["padding"])
        for g in grads:
            np.testing.assert_array_equal(g, expected)


def test_first_calls_from_8_threads_in_a_fresh_process():
    # The backend module is imported, and its caches filled, by whichever
    # thread comes first.
    out = run_python(
        """
import threading
from concurrent.futures import ThreadPoolExecutor
import numpy as np
import keras_jax_pool as kjp
from keras_jax_pool import reference
layer = kjp.MaxPool2D(2, 1, "same", "channels_first")
xs = [np.random.default_rng(i).normal(size=(2, 3, 4 + i, 5)).astype("float32") for i in range(8)]
start = threading.Barrier(8)
def first_call(i):
    start.wait()
    return np.asarray(layer(xs[i]))
with ThreadPoolExecutor(8) as pool:
    ys = list(pool.map(first_call, range(8)))
for x, y in zip(xs, ys):
    expected = reference.downsample_images(x, (2, 2), (1, 1), padding="same", data_format="channels_first")
    np.testing.assert_array_equal(y, expected)
print("ok")
"""
    )
    assert out.strip().endswith("ok")
