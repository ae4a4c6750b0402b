"""Shared fixtures. Each backend's suite runs in its own process:
`KERAS_BACKEND=<name> pytest tests` (the Makefile runs all four)."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_jax_pool import bench

BACKEND = keras.backend.backend()


# JAX computing on a GPU (the suite runs there too, docs/run_on_accelerator.sh):
# stock's kernels differ from XLA:CPU's in what the README's "On a GPU" says.
ON_ACCELERATOR = bench.device() != "cpu"


def pytest_report_header(config):
    return f"keras {keras.__version__}, KERAS_BACKEND={BACKEND}"


def pytest_collection_finish(session):
    # A run that selects no test must fail, never pass quietly (pytest's exit 5).
    if not session.items and not session.config.option.collectonly:
        pytest.exit("no tests were collected: check the test selection", returncode=1)


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def only_on(*backends):
    """Marks a test that exercises one backend's own machinery."""
    return pytest.mark.skipif(
        BACKEND not in backends, reason=f"exercises {'/'.join(backends)} only"
    )


@pytest.fixture
def rng():
    return np.random.default_rng(20261125)


@pytest.fixture(autouse=True)
def restore_keras_globals():
    """Tests may change the dtype policy or image data format; undo it."""
    policy, data_format = keras.config.dtype_policy(), keras.config.image_data_format()
    yield
    keras.config.set_dtype_policy(policy)
    keras.config.set_image_data_format(data_format)


def tensor(x, dtype=None):
    """`x` as a tensor of the backend in use, of `dtype` (default: x's)."""
    return keras.ops.convert_to_tensor(x, dtype=dtype or x.dtype)


def gradient(fn, x, cotangent, compile=lambda g: g):
    """The gradient of `sum(fn(x) * cotangent)` with respect to `x`, by the
    backend's own autodiff (jax.grad, tf.GradientTape, torch autograd), the
    gradient function wrapped by `compile` (`jax.jit`, `tf.function`) first."""
    if BACKEND == "jax":
        import jax

        grad = jax.grad(lambda v: (fn(v) * cotangent.astype(v.dtype)).sum())
        return np.asarray(compile(grad)(x))
    if BACKEND == "tensorflow":
        import tensorflow as tf

        def grad(v):
            with tf.GradientTape() as tape:
                tape.watch(v)
                y = fn(v)
                total = tf.reduce_sum(y * tf.cast(cotangent, y.dtype))
            return tape.gradient(total, v)

        return to_numpy(compile(grad)(x))
    if BACKEND == "torch":
        import torch

        v = x.detach().requires_grad_()
        (fn(v) * torch.as_tensor(cotangent, dtype=v.dtype)).sum().backward()
        return to_numpy(v.grad)
    raise NotImplementedError(f"{BACKEND} has no autodiff")


# The forms a function runs in on each backend: eagerly, and compiled the ways
# Keras compiles (torch: a model with `jit_compile=True`, which is torch.compile).
FORMS = {
    "tensorflow": ["eager", "tf.function", "xla"],
    "jax": ["eager", "jax.jit"],
    "torch": ["eager", "autograd", "torch.compile"],
    "numpy": ["eager"],
}[BACKEND]
# torch.compile takes ~10-25 s per program on this project's 2-core CI machine:
# tests that sweep many shapes leave it to the few that name it.
CHEAP_FORMS = [form for form in FORMS if form != "torch.compile"]
# The forms `gradient(..., compile=...)` takes; torch's compiled gradients are
# those of `model.fit` with `jit_compile=True` (tests/test_models.py).
GRADIENT_COMPILES = [form for form in FORMS if form not in ("autograd", "torch.compile")]


class _Function(keras.layers.Layer):
    """`fn` as a layer, for `model.predict`; inputs keep their dtype."""

    def __init__(self, fn, **kwargs):
        super().__init__(**kwargs)
        self.fn = fn

    def call(self, x):
        return self.fn(x)


def compile_as(form, fn):
    """`fn` (a function of one tensor) in the named form of `FORMS`."""
    if form == "eager":
        return fn
    if form in ("tf.function", "xla"):
        import tensorflow as tf

        return tf.function(fn, jit_compile=form == "xla")
    if form == "jax.jit":
        import jax

        return jax.jit(fn)
    if form == "autograd":  # the input requires grad
        return lambda x: fn(x.detach().requires_grad_()).detach()
    if form == "torch.compile":
        return lambda x: _predict_compiled(fn, x)
    raise ValueError(f"unknown form {form!r}")


def _predict_compiled(fn, x):
    from torch._dynamo.utils import counters

    graphs = counters["stats"]["unique_graphs"]
    dtype = keras.backend.standardize_dtype(x.dtype)
    model = keras.Sequential([keras.Input(tuple(x.shape[1:]), dtype=dtype), _Function(fn, autocast=False)])
    model.compile(jit_compile=True)
    y = model.predict(x, batch_size=max(len(x), 1), verbose=0)
    # Dynamo falls back to eager quietly (after 8 recompiles of one function).
    assert counters["stats"]["unique_graphs"] > graphs, "torch.compile compiled nothing"
    return y


def run_python(code, backend=BACKEND, timeout=300, env=None):
    """Runs `code` in a fresh interpreter under `backend`, with `env` added
    to the environment; returns its stdout."""
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"subprocess failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout
