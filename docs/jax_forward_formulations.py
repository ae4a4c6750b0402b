"""NaN-keeping JAX forwards for float32 2x2 windows, side by side with stock:
inside a whole model and alone. The README's "Keeping NaN, and what it
costs" table.

    KERAS_BACKEND=jax python docs/jax_forward_formulations.py   # R=15 repeats by default

For each formulation (swapped into `backends/jax.py` in turn):
* the forward of the CIFAR-style net (float32, batch 128, `jax.jit`): the
  fusions (YNNPACK ones) and conditionals of its compiled entry, its median
  time, and stock's time over it;
* the op alone, `jax.jit` of the pooling of a (32, 112, 112, 64) input with
  2x2 windows: its median time and stock's over it;
* whether a window holding NaN gives NaN, at each of the window's four
  places, inside the model and alone.
Ours and stock are timed in turn. The formulations written here only keep
NaN too, or show what the NaN mark costs, and lose to the chosen one.
"""
import os, re, statistics, time
os.environ.setdefault("KERAS_BACKEND", "jax")
import jax, jax.numpy as jnp, numpy as np, keras
from jax import lax
import keras_jax_pool as kjp
from keras_jax_pool.backends import jax as kj

MINUS_ZERO = np.float32(-0.0)

def window_sum(z, geo):
    """reduce_window add over the pooling windows ("valid", tiling)."""
    window, strides = [1] * z.ndim, [1] * z.ndim
    for axis, g in geo.per_axis:
        window[axis], strides[axis] = g.window, g.stride
    return lax.reduce_window(z, np.float32(0), lax.add, window, strides, [(0, 0)] * z.ndim)

def tiles_max_only(x, geo):
    v, axes = kj._tiles(x, geo)
    return lax.reduce_max(v, axes)

def reduce_window_and_sign_pool(x, geo):
    return kj._reduce_window_max(x, geo) + window_sum(jnp.abs(jnp.sign(x)), geo) * MINUS_ZERO

def tiles_max_and_sign_pool(x, geo):
    return tiles_max_only(x, geo) + window_sum(jnp.abs(jnp.sign(x)), geo) * MINUS_ZERO

def reduce_window_and_tiles_mark(x, geo):
    v, axes = kj._tiles(x, geo)
    return kj._reduce_window_max(x, geo) + lax.reduce(jnp.abs(jnp.sign(v)), np.float32(0), lax.add, axes) * MINUS_ZERO

def reduce_window_and_isnan_pool(x, geo):
    return kj._reduce_window_max(x, geo) + window_sum(jnp.where(jnp.isnan(x), x, 0), geo)

FORMS = {
    "stock's reduce_window (keep_nan=False)": kj._reduce_window_max,
    "tiles: max + |sign| sum mark (default)": kj._max_of_tiles,
    "max of window elements (until now)": kj._max_of_window_elements,
    "checked reduce_window (sum + cond)": kj._guarded_reduce_window_max,
    "reduce_window + sum-pool of |sign(x)|": reduce_window_and_sign_pool,
    "tiles' max + sum-pool of |sign(x)|": tiles_max_and_sign_pool,
    "reduce_window + tiles' |sign| sum": reduce_window_and_tiles_mark,
    "reduce_window + sum-pool of where(isnan)": reduce_window_and_isnan_pool,
    "tiles' max, no mark": tiles_max_only,
}

def net():
    inp = keras.Input((32, 32, 3)); x = inp
    for w in (32, 64, 128):
        x = keras.layers.Conv2D(w, 3, padding="same", activation="relu")(x)
        x = keras.layers.Conv2D(w, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D(2)(x)
    return keras.Model(inp, keras.layers.Dense(10)(keras.layers.Flatten()(x)))

def identity_then_pool(ours=True):
    """A 1x1 convolution that passes its input on, then the pooling: NaN
    reaches the pooling from inside the model's fusion."""
    inp = keras.Input((16, 16, 32)); conv = keras.layers.Conv2D(32, 1, use_bias=False)
    model = keras.Model(inp, keras.layers.MaxPooling2D(2)(conv(inp)))
    model = kjp.swap_in(model) if ours else model
    conv.kernel.assign(np.eye(32, dtype="float32")[None, None])
    return model

def forward(model):
    weights = [v.value for v in model.trainable_variables]
    return jax.jit(lambda x: model.stateless_call(weights, [], x)[0])

def entry_counts(fn, x):
    entry = fn.lower(x).compile().as_text(); entry = entry[entry.index("ENTRY"):]
    return len(re.findall(r"= \S+ fusion\(", entry)), entry.count("__ynn_fusion"), len(re.findall(r"conditional\(", entry))

def keeps_nan(fn, shape):
    """A NaN at each of a 2x2 window's places gives NaN in that window."""
    for dh, dw in ((0, 0), (0, 1), (1, 0), (1, 1)):
        x = np.random.default_rng(1).standard_normal(shape).astype("float32")
        x[:, 4 + dh, 6 + dw, :] = np.nan
        if not np.isnan(np.asarray(fn(x))[:, 2, 3, :]).all():
            return False
    return True

stock = net(); ours = kjp.swap_in(stock); probe = identity_then_pool()
batch = np.random.default_rng(0).standard_normal((128, 32, 32, 3)).astype("float32")
alone = jnp.asarray(np.random.default_rng(0).standard_normal((32, 112, 112, 64)).astype("float32"))
alone_geo = kj._Geometry.of(alone.shape, (2, 2), (2, 2), "valid", "channels_last")
model_fns = {"stock layer": forward(stock)}
op_fns = {"stock layer": jax.jit(lambda x: keras.ops.max_pool(x, 2, 2))}
counts = {"stock layer": entry_counts(model_fns["stock layer"], batch)}
nan = {"stock layer": (keeps_nan(forward(identity_then_pool(ours=False)), (8, 16, 16, 32)), keeps_nan(op_fns["stock layer"], (8, 16, 16, 32)))}
reference = np.asarray(model_fns["stock layer"](batch))
chosen = kj._cpu_forward
for name, form in FORMS.items():
    kj._cpu_forward = lambda geo, dtype, form=form: form
    model_fns[name] = forward(ours)
    counts[name] = entry_counts(model_fns[name], batch)
    op_fns[name] = jax.jit(lambda x, form=form: form(x, alone_geo))
    op_fns[name](alone)
    nan[name] = (keeps_nan(forward(probe), (8, 16, 16, 32)), keeps_nan(jax.jit(lambda x, form=form: form(x, kj._Geometry.of(x.shape, (2, 2), (2, 2), "valid", "channels_last"))), (8, 16, 16, 32)))
    assert np.array_equal(np.asarray(model_fns[name](batch)), reference), name
kj._cpu_forward = chosen
R = int(os.environ.get("R", "15"))
times = {(kind, n): [] for n in model_fns for kind in ("model", "op")}
for _ in range(R):
    for n in model_fns:
        for kind, f, x in (("model", model_fns[n], batch), ("op", op_fns[n], alone)):
            f(x).block_until_ready(); t = time.perf_counter(); f(x).block_until_ready(); times[kind, n].append(time.perf_counter() - t)
med = {k: 1e3 * statistics.median(v) for k, v in times.items()}
print(f"{'float32, 2x2 windows':<42} {'CIFAR-style net forward, batch 128':>50} {'op alone, 32x112x112x64':>26} {'NaN kept':>17}")
print(f"{'formulation':<42} {'fusions (YNNPACK), conditionals':>32} {'ms':>7} {'vs stock':>9} {'ms':>8} {'vs stock':>9} {'model / alone':>17}")
for n in model_fns:
    f, y, c = counts[n]; m, o = med["model", n], med["op", n]
    kept = "/".join("yes" if k else "no" for k in nan[n])
    print(f"{n:<42} {f'{f} ({y}), {c}':>32} {m:7.1f} {med['model', 'stock layer'] / m:8.2f}x {o:8.2f} {med['op', 'stock layer'] / o:8.2f}x {kept:>17}")
