"""On the device JAX runs on (made for a GPU): what its XLA does with NaN and
tied maxima in stock's `reduce_window` and in stock's gradient, and every
JAX forward and forward+backward formulation of `backends/jax.py` timed side
by side with stock's and with the floor (`x * 2`), ours and stock in turn.
The README's "On a GPU" section and the per-platform choice in
`backends/jax.py` come from its output.

    KERAS_BACKEND=jax python docs/accelerator_formulations.py --json FILE.json

Semantics are checked on small inputs against the numpy reference
(`reference.downsample`, `reference.max_pool_gradient`); timings use the
bench's cases (`bench.DEFAULT_CASES`), a ReLU'd normal input (many ties) and
a normal cotangent, each sample `bench.ACCELERATOR_CALLS` calls back to back.
"""

import argparse
import contextlib
import json
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from keras_jax_pool import bench, reference
from keras_jax_pool.backends import jax as kj

DTYPES = ("float32", "bfloat16", "float16")


@contextlib.contextmanager
def patched(**attributes):
    """`backends/jax.py`'s functions replaced while a program is traced."""
    saved = {name: getattr(kj, name) for name in attributes}
    for name, value in attributes.items():
        setattr(kj, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(kj, name, value)


def compiled(fn, args, **attributes):
    """`jax.jit(fn)`, traced (and cached) for `args` with `attributes`
    patched in, and a callable timing it on them; it keeps jit's fast
    dispatch, where a `Compiled` object's call takes longer than a pooling
    on a GPU."""
    jitted = jax.jit(fn)
    with patched(**attributes):
        jitted(*args).block_until_ready()
    return jitted, args


def geometry(case, shape=None):
    return kj._Geometry.of(shape or case.shape, case.pool_size, case.strides, case.padding, "channels_last")


FORWARDS = {
    "as shipped": lambda x, geo: kj._forward(x, geo),
    "stock reduce_window": lambda x, geo: kj._reduce_window_max(x, geo),
    "checked reduce_window (sum + cond)": lambda x, geo: kj._guarded_reduce_window_max(x, geo),
    # The GPU's own: x's slices read directly.
    "max of window elements": lambda x, geo: kj._max_of_window_elements(x, geo, split_reads=False),
    # XLA:CPU's: windows of over 15 elements read x through two bitcasts.
    "max of window elements, reads split": lambda x, geo: kj._max_of_window_elements(x, geo),
}
def _stored_behind_barrier(x, geo):
    return lax.optimization_barrier(kj._first_max_index(x, geo, split_reads=False))


def _stored_behind_cond(x, geo):
    scan = lambda v: kj._first_max_index(v, geo, split_reads=False)
    corner = lax.slice(x, (0,) * x.ndim, (1,) * x.ndim).reshape(())
    return lax.cond(jnp.isnan(corner), scan, scan, x)


# Our rule's variants: the window scan as shipped for the platform, fused
# into the backward loop, or stored (1 byte per output) by a loop of its own
# behind an optimization barrier or a conditional (XLA:CPU's way).
RULES = {
    "ours as shipped": {},
    "ours, scan fused": {"_stored_first_max_index": lambda x, geo: kj._first_max_index(x, geo, split_reads=False)},
    "ours, scan stored (barrier)": {"_stored_first_max_index": _stored_behind_barrier},
    "ours, scan stored (cond)": {"_stored_first_max_index": _stored_behind_cond},
}


def small_shape(case):
    return (2,) + tuple(min(n, 13) for n in case.shape[1:-1]) + (3,)


def semantics(case, dtype):
    """Per formulation: NaN kept in every window holding one; stock's
    gradient against the reference (first maximum takes the cotangent, the
    first NaN in a window holding NaN), and deterministic."""
    rng = np.random.default_rng(1)
    shape = small_shape(case)
    geo = geometry(case, shape)
    dt = bench.numpy_dtype(dtype)
    # Few distinct values: many ties. Then NaN in about 3% of the elements.
    x = rng.integers(-2, 3, shape).astype(dt)
    nan_x = np.where(rng.random(shape) < 0.03, np.nan, x).astype(dt)
    c = rng.integers(1, 4, geo.out_shape).astype(dt)
    args = dict(pool_size=case.pool_size, strides=case.strides, padding=case.padding, data_format="channels_last")
    want = reference.downsample(nan_x.astype(np.float32), **args)
    out = {}
    for name, fn in FORWARDS.items():
        y = np.asarray(jax.jit(lambda v, fn=fn: fn(v, geo))(jnp.asarray(nan_x))).astype(np.float32)
        out[f"{name}: NaN kept"] = bool(np.array_equal(np.isnan(y), np.isnan(want)))
        out[f"{name}: equal to reference"] = bool(np.array_equal(y, want, equal_nan=True))

    def stock_grad(v):
        return jax.grad(lambda u: jnp.sum(kj._reduce_window_max(u, geo).astype(jnp.float32) * c.astype(np.float32)))(v)

    def ours_grad(v):
        return jax.grad(lambda u: jnp.sum(kj._max_pool_differentiable(u, geo).astype(jnp.float32) * c.astype(np.float32)))(v)

    for label, inp in (("finite", x), ("NaN", nan_x)):
        want = reference.max_pool_gradient(inp.astype(np.float32), c.astype(np.float32), **args)
        for name, fn in (("stock", stock_grad), ("ours", ours_grad)):
            g = np.asarray(jax.jit(fn)(jnp.asarray(inp))).astype(np.float32)
            out[f"{name} gradient, {label} input: equal to reference"] = bool(np.array_equal(g, want))
    big = np.maximum(rng.standard_normal(case.shape), 0).astype(dt)
    cot = rng.standard_normal(geo_big_out(case)).astype(dt)
    f = jax.jit(jax.grad(lambda u: jnp.sum(kj._reduce_window_max(u, geometry(case)) * cot)))
    g1, g2 = np.asarray(f(jnp.asarray(big))), np.asarray(f(jnp.asarray(big)))
    out["stock gradient, bench input: deterministic"] = bool(np.array_equal(g1, g2))
    h = jax.jit(jax.grad(lambda u: jnp.sum(kj._max_pool_differentiable(u, geometry(case)) * cot)))
    out["stock gradient, bench input: equal to ours"] = bool(np.array_equal(g1, np.asarray(h(jnp.asarray(big)))))
    return out


def geo_big_out(case):
    return geometry(case).out_shape


def timings(case, dtype, repeats):
    rng = np.random.default_rng(0)
    dt = bench.numpy_dtype(dtype)
    x = jnp.asarray(np.maximum(rng.standard_normal(case.shape), 0).astype(dt))
    geo = geometry(case)
    c = jnp.asarray(rng.standard_normal(geo.out_shape).astype(dt))
    forward = {f"fwd {name}": compiled(lambda v, fn=fn: fn(v, geo), (x,)) for name, fn in FORWARDS.items()}
    # The cotangent is an argument, as in training (and in the bench).
    backward = {"fwd+bwd stock": compiled(jax.grad(lambda v, c: jnp.sum(kj._reduce_window_max(v, geo) * c)), (x, c))}
    for name, attributes in RULES.items():
        loss = lambda v, c: jnp.sum(kj._max_pool_differentiable(v, geo) * c)  # noqa: E731
        backward[f"fwd+bwd {name}"] = compiled(jax.grad(loss), (x, c), **attributes)
    floor = {"floor x * 2": compiled(lambda v: v * 2, (x,))}
    row = {"case": case.label, "kind": case.kind, "dtype": dtype}
    for group in (forward, {**backward, **floor}):
        fns = {name: bench._calls(f, args, bench.calls_per_sample()) for name, (f, args) in group.items()}
        row.update({f"{name} ms": ms for name, ms in bench.interleaved_median_ms(fns, repeats).items()})
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--dtypes", default=",".join(DTYPES))
    parser.add_argument("--quick", action="store_true", help="the bench's small cases, for a smoke run")
    args = parser.parse_args()
    report = {
        "device": bench.device(),
        "jax": jax.__version__,
        "platform": jax.default_backend(),
        "calls per sample": bench.ACCELERATOR_CALLS,
        "repeats": args.repeats,
        "rows": [],
    }
    start = time.time()
    for case in bench.QUICK_CASES if args.quick else bench.DEFAULT_CASES:
        for dtype in args.dtypes.split(","):
            row = timings(case, dtype, args.repeats)
            row["semantics"] = semantics(case, dtype)
            report["rows"].append(row)
            times = {k: v for k, v in row.items() if k.endswith(" ms")}
            print(f"{case.label} {dtype}: " + ", ".join(f"{k} {v:.3f}" for k, v in times.items()), flush=True)
            bad = [k for k, v in row["semantics"].items() if not v]
            print(f"    semantics false: {bad}", flush=True)
            if args.json:
                with open(args.json, "w") as f:  # after every row: a cut-off run keeps what it measured
                    json.dump(report, f, indent=1)
    print(f"took {time.time() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
