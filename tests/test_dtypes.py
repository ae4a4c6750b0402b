"""Dtypes: the output has the input's dtype, on every backend, for every
dtype the backend can pool; any other dtype raises a TypeError that names it.

Poolable: float16, bfloat16, float32, float64, int8, int16, int32, int64,
uint8 everywhere (64-bit types on JAX only with x64 enabled); uint16 also on
TensorFlow, JAX and numpy; uint32 and uint64 on JAX and numpy. Refused
everywhere: bool, complex and float8 types.

Stock Keras differs on the numpy backend, which pools through JAX there and
returns float32 for float64 and int32 for int64. Dtype policies (mixed
precision included) cast the layer's floating inputs as stock does.
"""

import keras
import numpy as np
import pytest

import keras_jax_pool as kjp
from keras_jax_pool import reference
from tests.conftest import BACKEND, CHEAP_FORMS, GRADIENT_COMPILES, compile_as, only_on, run_python, to_numpy
from tests.test_properties import AUTODIFF, X64, expected_output, gradient, tensor

FLOATS = ["float16", "bfloat16", "float32", "float64"]
INTS = ["uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64"]
CANNOT_POOL = {
    "tensorflow": ["uint32", "uint64"],  # tf.nn.max_pool2d has no kernel
    "torch": ["uint16", "uint32", "uint64"],  # torch's max_pool2d neither
}.get(BACKEND, [])
NEEDS_X64 = ["float64", "int64", "uint64"]
POOLABLE = [d for d in FLOATS + INTS if d not in CANNOT_POOL and (X64 or d not in NEEDS_X64)]


def _values(dtype, rng, shape=(2, 7, 6, 3)):
    """Values across the dtype's range, its extremes included, with ties."""
    if dtype in INTS:
        info = np.iinfo(dtype)
        pool = [info.min, info.min + 1, -1, 0, 1, 7, info.max - 1, info.max]
        pool = [v for v in pool if info.min <= v <= info.max]
    else:
        big = 6e4 if dtype == "float16" else 3e38
        pool = [-big, -2.5, -1.0, -0.0, 0.0, 0.5, 3.0, big]
    return rng.choice(np.array(pool, dtype="float64" if dtype in FLOATS else dtype), size=shape).astype(dtype)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("dtype", POOLABLE)
def test_output_dtype_and_values_equal_input_dtype_and_reference(dtype, padding, data_format, rng):
    x = _values(dtype, rng)
    y = kjp.max_pool2d(tensor(x), (3, 2), (2, 1), padding, data_format)
    assert keras.backend.standardize_dtype(y.dtype) == dtype
    np.testing.assert_array_equal(to_numpy(y), expected_output(x, (3, 2), (2, 1), padding, data_format))


# Compiled: every poolable dtype in each cheap compiled form (torch's autograd:
# floats only); torch.compile (~15 s a program) for float16.
COMPILED = [(d, f) for d in POOLABLE for f in CHEAP_FORMS if f != "eager" and (f != "autograd" or d in FLOATS)]
COMPILED += [("float16", "torch.compile")] if BACKEND == "torch" else []


@pytest.mark.skipif(not COMPILED, reason="the numpy backend does not compile")
@pytest.mark.parametrize("dtype, form", COMPILED or [(None, None)])
def test_compiled_output_keeps_the_input_dtype(dtype, form, rng):
    x = _values(dtype, rng)
    pool = compile_as(form, lambda v: kjp.max_pool2d(v, (3, 2), (2, 1), "same", "channels_first"))
    y = pool(tensor(x))
    assert keras.backend.standardize_dtype(y.dtype) == dtype
    np.testing.assert_array_equal(to_numpy(y), expected_output(x, (3, 2), (2, 1), "same", "channels_first"))


@pytest.mark.parametrize("dtype", POOLABLE)
def test_layer_keeps_input_dtype_under_a_policy_of_that_dtype(dtype, rng):
    x = _values(dtype, rng)
    policy = dtype if dtype in FLOATS else "float32"  # integers are never cast
    y = kjp.MaxPool2D(3, padding="same", dtype=policy)(tensor(x))
    assert keras.backend.standardize_dtype(y.dtype) == dtype
    np.testing.assert_array_equal(to_numpy(y), expected_output(x, (3, 3), None, "same"))


@only_on(*AUTODIFF)
@pytest.mark.parametrize("form", GRADIENT_COMPILES)
@pytest.mark.parametrize("dtype", [d for d in FLOATS if X64 or d != "float64"])
def test_gradient_in_every_float_dtype_equals_reference(dtype, form, rng):
    x = _values(dtype, rng)
    shape = expected_output(x, (3, 3), (2, 1), "same").shape
    cotangent = (np.arange(np.prod(shape)) % 3 + 1).reshape(shape).astype("float32")
    got = gradient(lambda v: kjp.max_pool2d(v, 3, (2, 1), "same"), tensor(x), cotangent, compile=lambda g: compile_as(form, g))
    assert keras.backend.standardize_dtype(got.dtype) == dtype
    expected = reference.max_pool_gradient(x, cotangent, (3, 3), (2, 1), "same")
    np.testing.assert_array_equal(got.astype("float64"), expected.astype("float64"))


REFUSED_EVERYWHERE = ["bool", "complex64"]


@pytest.mark.parametrize("dtype", REFUSED_EVERYWHERE)
def test_bool_and_complex_are_refused_with_a_type_error_naming_the_dtype(dtype):
    x = keras.ops.convert_to_tensor(np.zeros((1, 4, 4, 1)), dtype=dtype)
    for pool in (kjp.MaxPool2D(2), lambda v: kjp.max_pool2d(v, 2)):
        with pytest.raises(TypeError, match=f"inputs.dtype={dtype}"):
            pool(x)


def test_stock_pools_bool_only_on_jax_and_numpy():
    """Stock pools booleans on JAX and numpy and fails on TensorFlow and torch
    with backend-specific errors; ours refuses them on every backend."""
    x = np.zeros((1, 4, 4, 1), bool)
    with pytest.raises(TypeError, match="inputs.dtype=bool"):
        kjp.MaxPool2D(2)(x)
    stock_error = {"tensorflow": "InvalidArgumentError", "torch": "NotImplementedError"}.get(BACKEND)
    if stock_error is None:
        assert to_numpy(keras.layers.MaxPooling2D(2)(x)).dtype == bool
    else:
        with pytest.raises(Exception) as error:
            keras.layers.MaxPooling2D(2)(x)
        assert type(error.value).__name__ == stock_error


@pytest.mark.skipif(not CANNOT_POOL, reason=f"{BACKEND} pools every integer dtype")
@pytest.mark.parametrize("dtype", CANNOT_POOL)
def test_integer_dtype_the_backend_cannot_pool_is_a_type_error(dtype):
    if BACKEND == "torch":
        import torch

        x = torch.zeros((1, 4, 4, 1), dtype=getattr(torch, dtype))
    else:
        x = keras.ops.convert_to_tensor(np.zeros((1, 4, 4, 1)), dtype=dtype)
    with pytest.raises(TypeError, match=f"cannot max-pool.*inputs.dtype={dtype}"):
        kjp.max_pool2d(x, 2)


def test_functional_op_keeps_float64_and_int64_of_numpy_input(rng):
    """A numpy array keeps its dtype (where the backend has it). Stock's
    `keras.ops.max_pool` returns float32 and int32 on the numpy backend, and
    float32 for both on TensorFlow."""
    for dtype in ("float64", "int64"):
        x = rng.integers(-100, 100, size=(2, 6, 4, 3)).astype(dtype)
        y = kjp.max_pool2d(x, 2, 2)
        stock = keras.ops.max_pool(x, 2, 2)  # strides given: stock fails without them on jax/numpy
        assert keras.backend.standardize_dtype(y.dtype) == (dtype if X64 else dtype.replace("64", "32"))
        np.testing.assert_array_equal(to_numpy(y), expected_output(x, (2, 2), None).astype(to_numpy(y).dtype))
        stock_dtype = {"torch": dtype, "tensorflow": "float32"}.get(BACKEND, dtype.replace("64", "32"))
        assert keras.backend.standardize_dtype(stock.dtype) == stock_dtype


@pytest.mark.parametrize(
    "policy", ["float32", "float64", "float16", "bfloat16", "mixed_float16", "mixed_bfloat16"]
)
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "int32", "uint8"])
def test_dtype_policy_casts_as_stock(policy, dtype, rng):
    if "64" in policy + dtype and not X64:
        pytest.skip("64-bit types need jax x64")
    x = rng.integers(0, 100, size=(2, 6, 4, 3)).astype(dtype)  # exact in every policy
    ours, stock = kjp.MaxPool2D(2, dtype=policy)(x), keras.layers.MaxPooling2D(2, dtype=policy)(x)
    ours_dtype = keras.backend.standardize_dtype(ours.dtype)
    expected_dtype = dtype if dtype not in FLOATS else keras.DTypePolicy(policy).compute_dtype
    assert ours_dtype == expected_dtype
    if BACKEND == "numpy" and expected_dtype == "float64":
        assert keras.backend.standardize_dtype(stock.dtype) == "float32"  # stock pools through JAX
    else:
        assert ours_dtype == keras.backend.standardize_dtype(stock.dtype)
        np.testing.assert_array_equal(to_numpy(ours), to_numpy(stock))


@only_on("jax")
def test_jax_with_x64_pools_64_bit_types():
    out = run_python(
        """
import jax
jax.config.update("jax_enable_x64", True)
import numpy as np, jax.numpy as jnp
import keras_jax_pool as kjp
from keras_jax_pool import reference
for dtype in ("float64", "int64", "uint64"):
    x = (np.arange(2 * 5 * 5 * 3) % 11 * 1000003).reshape(2, 5, 5, 3).astype(dtype)
    y = kjp.max_pool2d(jnp.asarray(x), 2, 1, "same")
    assert str(y.dtype) == dtype, (dtype, y.dtype)
    np.testing.assert_array_equal(np.asarray(y), reference.downsample_images(x, (2, 2), (1, 1), padding="same"))
x = np.arange(2 * 5 * 5 * 3, dtype="float64").reshape(2, 5, 5, 3) % 4
g = jax.grad(lambda v: kjp.max_pool2d(v, 2, 1, "same").sum())(jnp.asarray(x))
assert g.dtype == jnp.float64
ref = reference.max_pool_gradient(x, np.ones((2, 5, 5, 3)), (2, 2), (1, 1), "same")
np.testing.assert_array_equal(np.asarray(g), ref)
print("ok")
"""
    )
    assert out.strip().endswith("ok")
