"""The forward of a CIFAR-style net (float32, batch 128, jax.jit), stock
against ours with each JAX forward formulation swapped into
`backends/jax.py` in turn: HLO fusion counts of the compiled program and
median times, in turn. The README's "Keeping NaN, and what it costs" table.

    KERAS_BACKEND=jax python docs/jax_forward_formulations.py   # R=15 repeats by default

The last two formulations are written here only: they keep NaN too, with
the ops XLA:CPU's YNNPACK fusion accepts (sign, multiply, a sum-pool) or with
`isnan`, and lose to the others or to stock.
"""
import os, sys, re, time, statistics
os.environ.setdefault("KERAS_BACKEND", "jax")
import jax, jax.numpy as jnp, numpy as np, keras
from jax import lax
import keras_jax_pool as kjp
from keras_jax_pool.backends import jax as kj

def sign_sum(x, geo):
    """reduce_window, minus a sum-pool that is NaN where a window holds NaN."""
    y = kj._reduce_window_max(x, geo)
    z = jnp.sign(x) * jnp.zeros((), x.dtype)
    window, strides, pads = [1]*4, [1]*4, [(0,0)]*4
    for axis, g in geo.per_axis:
        window[axis], strides[axis] = g.window, g.stride
    m = lax.reduce_window(z.astype(jnp.float32), jnp.float32(0), lax.add, window, strides, pads)
    return y - m.astype(x.dtype)

def isnan_sum(x, geo):
    """reduce_window, plus a sum-pool of the NaN elements alone."""
    y = kj._reduce_window_max(x, geo)
    window, strides = [1]*4, [1]*4
    for axis, g in geo.per_axis:
        window[axis], strides[axis] = g.window, g.stride
    m = lax.reduce_window(jnp.where(jnp.isnan(x), x, 0).astype(jnp.float32), jnp.float32(0), lax.add, window, strides, [(0,0)]*4)
    return y + m.astype(x.dtype)

FORMS = {"stock's reduce_window (keep_nan=False)": kj._reduce_window_max, "max of window elements (default)": kj._max_of_window_elements,
         "checked reduce_window (sum + cond)": kj._guarded_reduce_window_max, "reduce_window + sum-pool of sign(x)*0": sign_sum,
         "reduce_window + sum-pool of where(isnan)": isnan_sum}

def net():
    inp = keras.Input((32, 32, 3)); x = inp
    for w in (32, 64, 128):
        x = keras.layers.Conv2D(w, 3, padding="same", activation="relu")(x)
        x = keras.layers.Conv2D(w, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D(2)(x)
    return keras.Model(inp, keras.layers.Dense(10)(keras.layers.Flatten()(x)))

stock = net(); ours = kjp.swap_in(stock)
x = np.random.default_rng(0).standard_normal((128, 32, 32, 3)).astype("float32")
def compiled(model):
    tv = [v.value for v in model.trainable_variables]; ntv = [v.value for v in model.non_trainable_variables]
    f = jax.jit(lambda tv, ntv, x: model.stateless_call(tv, ntv, x)[0])
    entry = f.lower(tv, ntv, x).compile().as_text(); entry = entry[entry.index("ENTRY"):]
    counts = (len(re.findall(r"= \S+ fusion\(", entry)), entry.count("__ynn_fusion"), len(re.findall(r"conditional\(", entry)))
    return (lambda: f(tv, ntv, x).block_until_ready()), counts
fns, counts = {}, {}
fns["stock layer"], counts["stock layer"] = compiled(stock)
ref = np.asarray(fns["stock layer"]())
for name, form in FORMS.items():
    kj._cpu_forward = lambda geo, dtype, form=form: form
    fns[name], counts[name] = compiled(ours)
    assert np.array_equal(np.asarray(fns[name]()), ref), name
R = int(os.environ.get("R", "15"))
times = {n: [] for n in fns}
for _ in range(R):
    for n, f in fns.items():
        f(); t = time.perf_counter(); f(); times[n].append(time.perf_counter() - t)
base = statistics.median(times["stock layer"])
print(f"{'forward of the CIFAR-style net, float32, batch 128':<42} {'fusions (YNNPACK), conditionals':>32} {'ms':>8} {'speed vs stock':>15}")
for n in fns:
    m = statistics.median(times[n]); f, y, c = counts[n]
    print(f"{n:<42} {f'{f} ({y}), {c}':>32} {1e3*m:8.1f} {base/m:14.2f}x")
