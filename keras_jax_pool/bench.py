"""`python -m keras_jax_pool bench`: our layers against stock
`keras.layers.MaxPooling1D`, `MaxPooling2D` and `MaxPooling3D`, side by side
in one process, on the backend in use. A case is a channels_last input shape,
a window and strides; its number of spatial axes, its kind (1D, 2D or 3D),
picks the pair of layers compared (`Case.layers`). `of_kinds` picks the cases
of some kinds, to run them alone.

For each case, in each dtype asked for (float32 and bfloat16 by default; the
layers are made in that dtype, as under a dtype policy, else Keras would cast
the input to float32), it checks that outputs and gradients are bit-identical
(save where the package's gradient differs from stock's on purpose:
`GRADIENT_DIFFERS_FROM_STOCK`), then times the forward pass and forward+backward (the gradient of
`sum(pool(x) * c)`), compiled as each backend compiles training steps (jax.jit,
tf.function; torch and numpy run eagerly). Throughput is the least memory
traffic of the computation (forward: read x, write y; backward: read x, y and
the cotangent, write dx) over its time, set against a copy bandwidth measured
in the same run: the distance to the memory limit.

The machines this runs on are noisy, so each measurement alternates ours and
stock, repeat after repeat, and reports medians. A "floor" is timed alongside:
`x * 2` compiled the same way, the least any gradient of x can cost here, as
it reads x and writes a fresh array of x's size (on CPU, a fresh output's pages
are zeroed by the kernel on first touch, which a numpy copy into a reused
buffer never shows). Stock / floor is the largest speedup this machine allows.
"""

import dataclasses
import json
import os
import statistics
import sys
import time

import keras
import ml_dtypes
import numpy as np

from keras_jax_pool import files
from keras_jax_pool.layers import STOCK, MaxPool1D, MaxPool2D, MaxPool3D

# Our layer for each number of spatial axes; layers.STOCK gives stock's.
OURS = {layer.spatial_dims: layer for layer in (MaxPool1D, MaxPool2D, MaxPool3D)}


def _dims(values):
    return "x".join(map(str, values))


@dataclasses.dataclass(frozen=True)
class Case:
    """One pooling to time: a channels_last input of `shape` (batch, one to
    three spatial axes, channels) and a window and strides of one int per
    spatial axis. The number of spatial axes is the layer kind: 1D, 2D or 3D."""

    shape: tuple
    pool_size: tuple
    strides: tuple
    padding: str = "valid"

    def __post_init__(self):
        if not (len(self.shape) - 2 == len(self.pool_size) == len(self.strides) and len(self.pool_size) in OURS):
            raise ValueError(
                f"A case takes (batch, 1 to 3 spatial axes, channels) and one window size and stride per "
                f"spatial axis. Received: shape={self.shape}, pool_size={self.pool_size}, strides={self.strides}"
            )

    @property
    def kind(self):
        return f"{len(self.pool_size)}D"

    @property
    def label(self):
        return f"{self.kind} {_dims(self.shape)} pool {_dims(self.pool_size)} stride {_dims(self.strides)} {self.padding}"

    def layers(self, dtype=None):
        """{"ours": keras_jax_pool's layer, "stock": the Keras layer it stands
        in for}, both of this case's kind and arguments."""
        ours = OURS[len(self.pool_size)]
        return {
            name: layer(self.pool_size, self.strides, self.padding, "channels_last", dtype=dtype)
            for name, layer in (("ours", ours), ("stock", STOCK[ours]))
        }


DEFAULT_CASES = (
    Case((32, 112, 112, 64), (2, 2), (2, 2), "valid"),
    Case((32, 112, 112, 64), (3, 3), (2, 2), "same"),
    Case((8, 56, 56, 256), (2, 2), (2, 2), "valid"),
    Case((32, 28, 28, 3), (4, 4), (2, 2), "valid"),  # the original post's case
    Case((32, 8192, 64), (2,), (2,), "valid"),
    Case((32, 8192, 64), (3,), (2,), "same"),
    Case((4, 32, 64, 64, 32), (2, 2, 2), (2, 2, 2), "valid"),
    Case((4, 32, 64, 64, 32), (3, 3, 3), (2, 2, 2), "same"),
)
KINDS = ("1D", "2D", "3D")

# Where our gradient differs from stock's on purpose: (backend, case kind) ->
# why. The table marks such rows "fwd*" (outputs equal), not "NO".
GRADIENT_DIFFERS_FROM_STOCK = {
    ("tensorflow", "3D"): (
        "stock's MaxPool3D gradient gives every tied maximum of a window the whole cotangent, ours the "
        "first maximum alone (as TF's 2D MaxPool, JAX and torch do); stock also adds overlapping windows "
        "in another order"
    ),
}
DTYPES = ("float32", "bfloat16", "float16")
DEFAULT_DTYPES = ("float32", "bfloat16")

QUICK_CASES = (
    Case((4, 16, 16, 8), (2, 2), (2, 2), "valid"),
    Case((2, 15, 13, 4), (3, 3), (2, 2), "same"),
    Case((4, 64, 8), (2,), (2,), "valid"),
    Case((2, 31, 4), (3,), (2,), "same"),
    Case((2, 4, 8, 8, 4), (2, 2, 2), (2, 2, 2), "valid"),
    Case((1, 5, 7, 6, 3), (3, 3, 3), (2, 2, 2), "same"),
)


def of_kinds(kinds, cases=DEFAULT_CASES):
    """The cases among `cases` whose kind ("1D", "2D", "3D", any case) is
    one of `kinds`, in their order: `of_kinds(["1d", "3d"])` are the 1D and
    3D rows alone."""
    kinds = {k.upper() for k in kinds}
    unknown = kinds - set(KINDS)
    if unknown:
        raise ValueError(f"Unknown case kinds {sorted(unknown)}; choose from {', '.join(KINDS)}.")
    return tuple(case for case in cases if case.kind in kinds)


# One harness per backend: given a layer, the input and a cotangent, return
# (forward, forward_backward) callables that run to completion, plus the
# compiled program's peak memory in bytes where the backend can tell.
def _jax_harness(layer, x, c):
    import jax
    import jax.numpy as jnp

    x, c = jnp.asarray(x), jnp.asarray(c)
    forward = jax.jit(lambda v: layer(v))
    # The cotangent is an argument, as in training, where it is computed at
    # run time: a constant would let XLA fold each slice of it the rule
    # takes into a constant of its own, which training never reads.
    grad = jax.jit(jax.grad(lambda v, c: jnp.sum(layer(v) * c)))
    memory = grad.lower(x, c).compile().memory_analysis()
    peak = None
    if memory is not None:
        peak = memory.temp_size_in_bytes + memory.argument_size_in_bytes + memory.output_size_in_bytes
    return (
        _calls(forward, (x,), calls_per_sample()),
        _calls(grad, (x, c), calls_per_sample()),
        lambda: (np.asarray(forward(x)), np.asarray(grad(x, c))),
        peak,
    )


# On an accelerator a call of a compiled function returns before the device
# is done, and one pooling takes tens of microseconds, about what a call's
# dispatch costs: each timed sample there runs this many calls back to back,
# as a training loop does, and waits for the last.
ACCELERATOR_CALLS = 20


def calls_per_sample():
    """Calls per timed sample: 1 on the CPU, `ACCELERATOR_CALLS` on an
    accelerator."""
    return 1 if device() == "cpu" else ACCELERATOR_CALLS


def _calls(fn, args, calls):
    """A callable running `fn(*args)` `calls` times and waiting for the
    last; `interleaved_median_ms` divides its time by `calls`."""

    def run():
        for _ in range(calls - 1):
            fn(*args)
        return fn(*args).block_until_ready()

    run.calls = calls
    return run


def _tensorflow_harness(layer, x, c):
    import tensorflow as tf

    x, c = tf.constant(x), tf.constant(c)
    forward = tf.function(lambda v: layer(v))

    @tf.function
    def grad(v):
        with tf.GradientTape() as tape:
            tape.watch(v)
            loss = tf.reduce_sum(layer(v) * c)
        return tape.gradient(loss, v)

    return (
        lambda: forward(x).numpy(),
        lambda: grad(x).numpy(),
        lambda: (forward(x).numpy(), grad(x).numpy()),
        None,
    )


def _torch_harness(layer, x, c):
    import torch

    # torch.from_numpy knows no bfloat16: go through float32, which holds every value.
    dtype = getattr(torch, x.dtype.name)
    x, c = (torch.from_numpy(a.astype(np.float32)).to(dtype) for a in (x, c))

    def grad():
        v = x.detach().requires_grad_(True)
        (gx,) = torch.autograd.grad((layer(v) * c).sum(), v)
        return gx

    return (
        lambda: layer(x).detach(),
        grad,
        lambda: (keras.ops.convert_to_numpy(layer(x).detach()), keras.ops.convert_to_numpy(grad())),
        None,
    )


def _numpy_harness(layer, x, c):
    return (lambda: layer(x), None, lambda: (np.asarray(layer(x)), None), None)


HARNESSES = {
    "jax": _jax_harness,
    "tensorflow": _tensorflow_harness,
    "torch": _torch_harness,
    "numpy": _numpy_harness,
}


def median_ms(fn, repeats):
    return interleaved_median_ms({"fn": fn}, repeats)["fn"]


def interleaved_median_ms(fns, repeats):
    """Median milliseconds of each callable, timed in turn within every
    repeat, so that the machine's slow spells fall on all of them alike.

    Each timed call follows an untimed call of the same callable, as steps
    follow each other in a training loop: a runtime frees a call's buffers in
    the background, and freeing stock JAX's ~700 MB of gradient temporaries
    slowed whatever other program ran next by 2x.
    """
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            fn()
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) / getattr(fn, "calls", 1))
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def device():
    """What the backend computes on: the accelerator's name under JAX when it
    has one (e.g. "NVIDIA H200"), else "cpu"."""
    if keras.backend.backend() == "jax":
        import jax

        if jax.default_backend() != "cpu":
            return jax.devices()[0].device_kind
    return "cpu"


def copy_bandwidth_gbps(nbytes=256 * 2**20, repeats=5):
    """Bytes read plus bytes written per second by a plain copy: numpy's on
    the host, a compiled `x * 2` on an accelerator."""
    if device() != "cpu":
        import jax
        import jax.numpy as jnp

        src = jnp.ones(nbytes // 4, dtype=jnp.float32)
        ms = median_ms(_calls(jax.jit(lambda v: v * 2), (src,), calls_per_sample()), repeats)
        return 2 * nbytes / (ms * 1e-3) / 1e9
    src = np.ones(nbytes // 4, dtype=np.float32)
    dst = np.empty_like(src)
    ms = median_ms(lambda: np.copyto(dst, src), repeats)
    return 2 * nbytes / (ms * 1e-3) / 1e9


def least_traffic_bytes(case, itemsize):
    """Bytes a forward pass and a backward pass must at least move."""
    x = int(np.prod(case.shape)) * itemsize
    y = int(np.prod(keras_output_shape(case))) * itemsize
    return {"forward": x + y, "forward_backward": (x + y) + (x + 2 * y + x)}


def keras_output_shape(case):
    return case.layers()["ours"].compute_output_shape(case.shape)


def numpy_dtype(name):
    """The numpy dtype called `name`, bfloat16 included (from ml_dtypes)."""
    return np.dtype(getattr(ml_dtypes, name, name))


def run_case(case, repeats, dtype, progress):
    backend = keras.backend.backend()
    rng = np.random.default_rng(0)
    x = np.maximum(rng.standard_normal(case.shape), 0).astype(numpy_dtype(dtype))  # after ReLU: many ties
    c = rng.standard_normal(keras_output_shape(case)).astype(numpy_dtype(dtype))
    layers = case.layers(dtype)
    harnesses = {name: HARNESSES[backend](layer, x, c) for name, layer in layers.items()}
    (y_ours, g_ours), (y_stock, g_stock) = (h[2]() for h in harnesses.values())
    result = {
        "case": case.label,
        "kind": case.kind,
        "layer": type(layers["stock"]).__name__,
        "dtype": dtype,
        "shape": list(case.shape),
        "pool_size": list(case.pool_size),
        "strides": list(case.strides),
        "padding": case.padding,
        "output_dtype": str(y_ours.dtype),
        "output_equal": y_ours.dtype == y_stock.dtype and bool(np.array_equal(y_ours, y_stock)),
        "gradient_equal": None if g_ours is None else bool(np.array_equal(g_ours, g_stock)),
    }
    label = f"{case.label} {dtype}"
    progress(f"{label}: forward, ours and stock in turn")
    timed = interleaved_median_ms({name: h[0] for name, h in harnesses.items()}, repeats)
    for name, (_, forward_backward, _, peak) in harnesses.items():
        result[f"{name}_forward_ms"] = timed[name]
        result[f"{name}_peak_mb"] = None if peak is None else peak / 2**20
    if harnesses["ours"][1] is not None:
        progress(f"{label}: forward+backward, ours, stock and the floor in turn")
        fns = {name: h[1] for name, h in harnesses.items()}
        # The floor is the forward of `x * 2` in the same harness, compiled alike.
        floor = HARNESSES[backend](lambda v: v * 2, x, x)[0]
        timed = interleaved_median_ms({**fns, "floor": floor}, repeats)
        for name in fns:
            result[f"{name}_forward_backward_ms"] = timed[name]
        result["floor_ms"] = timed["floor"]
    traffic = least_traffic_bytes(case, numpy_dtype(dtype).itemsize)
    result["forward_ratio"] = result["stock_forward_ms"] / result["ours_forward_ms"]
    result["ours_forward_gbps"] = traffic["forward"] / result["ours_forward_ms"] / 1e6
    if "ours_forward_backward_ms" in result:
        result["speedup"] = result["stock_forward_backward_ms"] / result["ours_forward_backward_ms"]
        result["ours_forward_backward_gbps"] = traffic["forward_backward"] / result["ours_forward_backward_ms"] / 1e6
        result["ceiling"] = result["stock_forward_backward_ms"] / result["floor_ms"]
    return result


def _fmt(value, spec, suffix=""):
    return "-" if value is None else format(value, spec) + suffix


def format_table(report):
    lines = [
        f"backend {report['backend']} on {report.get('device', 'cpu')}, keras {report['keras']}, {', '.join(report['dtypes'])}; "
        f"copy bandwidth {report['copy_gbps']:.1f} GB/s (read + write); median of {report['repeats']}, ours and stock in turn",
        "",
        f"{'case':<46} {'dtype':<9} {'fwd ms':>15} {'fwd':>6} {'fwd+bwd ms':>17} {'speedup':>8} {'floor':>6} {'ceiling':>8}"
        f" {'GB/s':>6} {'of copy':>8} {'peak MB':>15} {'exact':>6}",
        f"{'':<46} {'':<9} {'ours / stock':>15} {'ratio':>6} {'ours / stock':>17} {'':>8} {'ms':>6} {'':>8}"
        f" {'ours':>6} {'':>8} {'ours / stock':>15}",
    ]
    for r in report["cases"]:
        gbps = r.get("ours_forward_backward_gbps")
        lines.append(
            f"{r['case']:<46} {r['dtype']:<9} "
            f"{_fmt(r['ours_forward_ms'], '.2f'):>7} / {_fmt(r['stock_forward_ms'], '.2f'):<5} "
            f"{_fmt(r['forward_ratio'], '.2f'):>6} "
            f"{_fmt(r.get('ours_forward_backward_ms'), '.1f'):>8} / {_fmt(r.get('stock_forward_backward_ms'), '.1f'):<6} "
            f"{_fmt(r.get('speedup'), '.1f', 'x'):>8} "
            f"{_fmt(r.get('floor_ms'), '.1f'):>6} "
            f"{_fmt(r.get('ceiling'), '.1f', 'x'):>8} "
            f"{_fmt(gbps, '.1f'):>6} "
            f"{_fmt(None if gbps is None else 100 * gbps / report['copy_gbps'], '.0f', '%'):>8} "
            f"{_fmt(r['ours_peak_mb'], '.1f'):>7} / {_fmt(r['stock_peak_mb'], '.1f'):<7} "
            f"{exactness(r, report['backend']):>6}"
        )
    lines += [
        "",
        "fwd ratio and speedup: stock time / our time (above 1: we are faster).",
        "floor: x * 2 compiled alike (reads x, writes a fresh array of its size), the least a gradient costs here;",
        "ceiling: stock fwd+bwd / floor, the largest speedup this machine allows.",
        "exact: outputs and gradients bit-identical to stock's.",
    ]
    note = busy_note(report["cases"], lambda r: f"{r['case']} {r['dtype']}")
    if note:
        lines.append(note)
    for (backend, kind), why in GRADIENT_DIFFERS_FROM_STOCK.items():
        if any(exactness(r, report["backend"]) == "fwd*" and r["kind"] == kind for r in report["cases"]):
            lines.append(f"fwd*: outputs bit-identical, gradients not: on {backend}, {kind}, {why}.")
    return "\n".join(lines)


def exactness(row, backend):
    """The table's "exact" cell: "yes", "NO", or "fwd*" where only the
    gradient differs from stock's, as GRADIENT_DIFFERS_FROM_STOCK says it
    does on this backend for this kind of case."""
    if not row["output_equal"]:
        return "NO"
    if row["gradient_equal"] is not False:
        return "yes"
    return "fwd*" if (backend, row["kind"]) in GRADIENT_DIFFERS_FROM_STOCK else "NO"


def plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = report["cases"]
    # The gradient where the backend has one (numpy has none), else the forward.
    metric, ratio = ("forward_backward", "speedup") if all("speedup" in r for r in cases) else ("forward", "forward_ratio")
    labels = [r["case"].replace(" pool", "\npool").replace(" stride", "\nstride") + f"\n{r['dtype']}" for r in cases]
    # The layers' names, "MaxPooling2D" or "MaxPooling1D/2D/3D" for several kinds.
    kinds = "/".join(sorted({r["layer"].removeprefix("MaxPooling") for r in cases}))
    positions = np.arange(len(cases))
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(cases)), 5))
    for offset, name, color in ((-0.2, "stock", "#999999"), (0.2, "ours", "#1f77b4")):
        label = f"stock keras.layers.MaxPooling{kinds}" if name == "stock" else f"keras_jax_pool.MaxPool{kinds}"
        ax.bar(positions + offset, [r[f"{name}_{metric}_ms"] for r in cases], 0.4, label=label, color=color)
    for i, r in enumerate(cases):
        ax.annotate(f"{r[ratio]:.1f}x", (i + 0.2, r[f"ours_{metric}_ms"]), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(positions, labels, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel(f"{metric.replace('_', ' + ')}, ms (log scale)")
    ax.set_title(f"Max pooling, {report['backend']} backend: stock time / ours above our bars")
    ax.legend()
    save_figure(fig, path)


def save_figure(fig, path):
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with files.atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def write_json(report, path):
    with files.atomic_output(path) as tmp:
        tmp.write_text(json.dumps(report, indent=2))


def load_average():
    """The 1-minute load average (runnable processes), None where the system
    has none: each row records it before and after, as other work on the
    machine slows what it times."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def busy_note(rows, label):
    """A line naming the rows timed while the load average was above 1.25
    per CPU (the bench's own threads count for up to one per CPU), or None."""
    limit = 1.25 * (os.cpu_count() or 1)
    busy = [label(r) for r in rows if max(filter(None, r.get("load_average") or []), default=0) > limit]
    if not busy:
        return None
    which = "every row" if len(busy) == len(rows) else ", ".join(busy)
    return f"busy machine: the load average was above {limit:g} while timing {which}; those times are less reliable."


def progress(message):
    """A line on stderr, so that a long run shows what it is doing."""
    print(f"  ... {message}", file=sys.stderr, flush=True)


def run(cases=DEFAULT_CASES, repeats=9, dtypes=DEFAULT_DTYPES, json_path=None, plot_path=None, stream=None):
    """Each case in each dtype (a row each, the dtypes of a case together)."""
    report = {
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "device": device(),
        "dtypes": list(dtypes),
        "repeats": repeats,
        "copy_gbps": copy_bandwidth_gbps(),
        "cases": [],
    }
    rows = [(case, dtype) for case in cases for dtype in dtypes]
    for i, (case, dtype) in enumerate(rows, 1):
        progress(f"[{i}/{len(rows)}] {case.label} {dtype}")
        before = load_average()
        report["cases"].append(run_case(case, repeats, dtype, progress))
        report["cases"][-1]["load_average"] = [before, load_average()]
    print(format_table(report), file=stream or sys.stdout)
    if json_path:
        write_json(report, json_path)
    if plot_path:
        plot(report, plot_path)
    return report
