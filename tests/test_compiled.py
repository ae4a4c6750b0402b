"""The functional op and the layer work inside `jax.jit` and `tf.function`
(graph and XLA) and agree with the numpy reference there."""

import numpy as np
import pytest

import keras_jax_pool as kjp
from keras_jax_pool import reference
from tests.conftest import only_on

CASES = [((2, 2), None, "valid"), ((3, 3), (2, 2), "same"), ((2, 3), (1, 2), "same")]


def _expected(x, pool_size, strides, padding):
    return reference.downsample_images(x, pool_size, strides or pool_size, padding=padding)


@only_on("jax")
@pytest.mark.parametrize("pool_size, strides, padding", CASES)
def test_inside_jax_jit(pool_size, strides, padding, rng):
    import jax

    x = rng.normal(size=(2, 9, 8, 3)).astype("float32")
    op = jax.jit(lambda v: kjp.max_pool2d(v, pool_size, strides, padding))
    layer = kjp.MaxPool2D(pool_size, strides, padding)
    np.testing.assert_array_equal(np.asarray(op(x)), _expected(x, pool_size, strides, padding))
    np.testing.assert_array_equal(np.asarray(jax.jit(layer)(x)), _expected(x, pool_size, strides, padding))


@only_on("tensorflow")
@pytest.mark.parametrize("pool_size, strides, padding", CASES)
@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_inside_tf_function(pool_size, strides, padding, jit_compile, rng):
    import tensorflow as tf

    x = rng.normal(size=(2, 9, 8, 3)).astype("float32")
    # Unknown batch and spatial sizes: the op must not need static shapes.
    op = tf.function(
        lambda v: kjp.max_pool2d(v, pool_size, strides, padding),
        input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)],
        jit_compile=jit_compile,
    )
    np.testing.assert_array_equal(op(x).numpy(), _expected(x, pool_size, strides, padding))
