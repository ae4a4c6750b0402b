"""The float32 2x2 NaN-keeping forwards inside three CNN forwards, side by
side with stock: the README's "Keeping NaN, and what it costs", second table.

    KERAS_BACKEND=jax python docs/jax_forward_in_models.py   # R=11 repeats by default

The nets (32x32x3, batch 128, three blocks each ending in a 2x2 max pooling,
widths 32, 64, 128, then a dense layer; `jax.jit` of the inference forward):
* one: one 3x3 convolution (relu) per block, so the poolings weigh more;
* batchnorm: one 3x3 convolution, BatchNormalization and ReLU per block;
* cifar: two 3x3 convolutions (relu) per block, the bench's CIFAR-style net.
Each formulation is swapped into `backends/jax.py` in turn; every one gives
stock's predictions bit for bit (asserted). Ours and stock are timed in turn,
medians; ratios are stock's time over ours.
"""
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
import jax
import jax.numpy as jnp
import keras
import numpy as np
from jax import lax

import keras_jax_pool as kjp
from keras_jax_pool.backends import jax as kj

MINUS_ZERO = np.float32(-0.0)


def tiles_max_only(x, geo):
    v, axes = kj._tiles(x, geo)
    return lax.reduce_max(v, axes)


def reduce_window_and_sign_pool(x, geo):
    window, strides = [1] * x.ndim, [1] * x.ndim
    for axis, g in geo.per_axis:
        window[axis], strides[axis] = g.window, g.stride
    marks = lax.reduce_window(jnp.abs(jnp.sign(x)), np.float32(0), lax.add, window, strides, [(0, 0)] * x.ndim)
    return kj._reduce_window_max(x, geo) + marks * MINUS_ZERO


FORMS = {
    "tiles: max + |sign| sum mark (default)": kj._max_of_tiles,
    "reduce_window + sum-pool of |sign(x)|": reduce_window_and_sign_pool,
    "max of window elements": kj._max_of_window_elements,
    "tiles' max, no mark (drops NaN)": tiles_max_only,
}


def net(block):
    inputs = keras.Input((32, 32, 3))
    x = inputs
    for width in (32, 64, 128):
        if block == "batchnorm":
            x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
            x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
        else:
            for _ in range(2 if block == "cifar" else 1):
                x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D(2)(x)
    return keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(x)))


def forward(model):
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    return jax.jit(lambda x: model.stateless_call(trainable, non_trainable, x, training=False)[0])


R = int(os.environ.get("R", "11"))
batch = np.random.default_rng(0).standard_normal((128, 32, 32, 3)).astype("float32")
chosen = kj._cpu_forward
print(f"{'float32, 2x2 windows, forward ms (stock / ours)':<42}" + "".join(f"{b:>22}" for b in ("one", "batchnorm", "cifar")))
rows = {"stock layer": {}, **{name: {} for name in FORMS}}
for block in ("one", "batchnorm", "cifar"):
    stock = net(block)
    ours = kjp.swap_in(stock)
    fns = {"stock layer": forward(stock)}
    reference = np.asarray(fns["stock layer"](batch))
    for name, form in FORMS.items():
        kj._cpu_forward = lambda geo, dtype, form=form: form
        fns[name] = forward(ours)
        assert np.array_equal(np.asarray(fns[name](batch)), reference), name
    kj._cpu_forward = chosen
    times = {name: [] for name in fns}
    for _ in range(R):
        for name, fn in fns.items():
            fn(batch).block_until_ready()
            start = time.perf_counter()
            fn(batch).block_until_ready()
            times[name].append(time.perf_counter() - start)
    for name, t in times.items():
        rows[name][block] = 1e3 * statistics.median(t)
for name, row in rows.items():
    cells = "".join(f"{row[b]:>14.1f} {rows['stock layer'][b] / row[b]:6.2f}x" for b in ("one", "batchnorm", "cifar"))
    print(f"{name:<42}{cells}")
