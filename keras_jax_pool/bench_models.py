"""`python -m keras_jax_pool bench --models`: whole models, stock against
`keras_jax_pool.swap_in` of the same model, on the backend in use.

Users see the step, not the op: a pooling layer that is faster alone can
still make a model slower, for instance by breaking the fusions XLA builds
around it. So this times the steps a user runs, as Keras runs them:
`train_on_batch` (the compiled train step that `fit` calls for each batch)
and `predict_on_batch` (the compiled predict step), with the same weights
(swap_in copies them) and the same batch for both models. Before timing it
checks that both models predict the same on that batch, and that swap_in
replaced every stock MaxPooling1D/2D/3D (a row where it did not is flagged:
it would time stock against stock there). Under JAX it also
counts the fusions and conditionals XLA:CPU compiles the forward pass into.

As in the op bench, ours and stock are timed in turn, repeat after repeat,
each timed call after an untimed one (the first of which compiles), and
medians are reported.
"""

import dataclasses
import functools
import importlib
import re
import sys
import time
from typing import Callable

import keras
import numpy as np

from keras_jax_pool import bench
from keras_jax_pool.layers import STOCK
from keras_jax_pool.surgery import swap_in


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """How to build one model of the bench: `build(input_shape, classes)`
    returns a model ending in a softmax over `classes`, built under the
    global dtype policy; a batch holds `batch` samples of `input_shape`."""

    build: Callable
    input_shape: tuple  # one sample, channels_last
    batch: int
    classes: int = 10


def conv_pool_net(input_shape, classes, widths=(32, 64, 128), convs=2, conv=keras.layers.Conv2D, pool=keras.layers.MaxPooling2D):
    """Blocks of `convs` 3-wide convolutions (relu, "same") then a stock
    max pooling, one block per width; then a dense softmax. Conv1D/Conv3D
    with their pooling layers give the 1D and 3D variants."""
    layers = [keras.Input(input_shape)]
    for width in widths:
        layers += [conv(width, 3, padding="same", activation="relu") for _ in range(convs)] + [pool()]
    return keras.Sequential(layers + [keras.layers.Flatten(), keras.layers.Dense(classes, activation="softmax")])


def application(name):
    """A `keras.applications` model with random weights and its classifier top."""

    def build(input_shape, classes):
        return getattr(keras.applications, name)(weights=None, input_shape=input_shape, classes=classes)

    return build


# The models `--models` picks from. conv1d and conv3d are sized so that
# each step takes well under a second on a 2-core CPU (3D convolutions are
# slow there: one convolution per block, narrow).
MODELS = {
    "cifar": ModelSpec(conv_pool_net, (32, 32, 3), 128),
    "conv1d": ModelSpec(
        functools.partial(conv_pool_net, conv=keras.layers.Conv1D, pool=keras.layers.MaxPooling1D), (1024, 16), 32
    ),
    "conv3d": ModelSpec(
        functools.partial(
            conv_pool_net, widths=(8, 16, 32), convs=1, conv=keras.layers.Conv3D, pool=keras.layers.MaxPooling3D
        ),
        (16, 32, 32, 3),
        8,
    ),
    "vgg16": ModelSpec(application("VGG16"), (64, 64, 3), 32),
    "resnet50": ModelSpec(application("ResNet50"), (64, 64, 3), 32),
    "tiny": ModelSpec(functools.partial(conv_pool_net, widths=(4, 8), convs=1), (8, 8, 3), 4),  # a smoke run
}
DEFAULT_MODELS = ("cifar", "conv1d", "conv3d", "vgg16", "resnet50")  # `all`; tiny is only for smoke runs
POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")
DEFAULT_POLICIES = ("float32", "mixed_bfloat16")


def hlo_counts(model, x):
    """Fusions (of which YNNPACK's), and conditionals, in the entry
    computation of the optimized HLO of `model`'s forward pass under
    jax.jit, as the predict step runs it."""
    import jax

    def forward(trainable, non_trainable, x):
        return model.stateless_call(trainable, non_trainable, x, training=False)[0]

    variables = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables])
    text = jax.jit(forward).lower(*variables, x).compile().as_text()
    entry = text[text.index("\nENTRY") :]
    entry = entry[: entry.index("\n}")]
    return {
        "fusions": len(re.findall(r" fusion\(", entry)),
        "ynn_fusions": entry.count('"kind":"__ynn_fusion"'),
        "conditionals": len(re.findall(r" conditional\(", entry)),
    }


def build_pair(spec, policy):
    """The stock model built under `policy`, and `swap_in` of it (same weights)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        stock = spec.build(spec.input_shape, spec.classes)
        ours = swap_in(stock)
    finally:
        keras.config.set_dtype_policy(previous)
    for model in (stock, ours):
        model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="sparse_categorical_crossentropy")
    return {"ours": ours, "stock": stock}


def swapped_layers(stock, ours):
    """How many layers of `ours` differ in class from `stock`'s (clone_model
    keeps the order of layers)."""
    pairs = zip(stock._flatten_layers(include_self=False), ours._flatten_layers(include_self=False))
    return sum(type(a) is not type(b) for a, b in pairs)


def stock_pools(model):
    """How many stock max-pooling layers (1D, 2D or 3D) `model` holds: what
    swap_in should replace."""
    return sum(type(layer) in STOCK.values() for layer in model._flatten_layers(include_self=False))


def run_model(name, policy, repeats, log):
    spec = MODELS[name]
    label = f"{name} {policy}"
    log(f"{label}: building stock and swap_in")
    # The same weights in every run, so that runs compare. With other
    # weights the predictions after the fit steps may differ in the last
    # bits under JAX: XLA fuses a neighbouring layer's reduction in another
    # order around our backward (README "Whole models").
    keras.utils.set_random_seed(0)
    models = build_pair(spec, policy)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((spec.batch, *spec.input_shape)).astype("float32")
    y = rng.integers(0, spec.classes, spec.batch)

    log(f"{label}: predict, compiling and checking that ours and stock agree")
    result = {
        "model": name,
        "policy": policy,
        "batch": spec.batch,
        "input_shape": list(spec.input_shape),
        "layers_swapped": swapped_layers(models["stock"], models["ours"]),
        "stock_pools": stock_pools(models["stock"]),
        **compare_predictions(models, x, "before_fit"),
        "hlo": None,
    }
    if result["layers_swapped"] != result["stock_pools"]:
        log(f"WARNING: {_unswapped(result)}")
    if keras.backend.backend() == "jax":
        log(f"{label}: counting fusions in the compiled forward")
        result["hlo"] = {kind: hlo_counts(model, x) for kind, model in models.items()}

    # predict first: it was compiled above, and training changes the weights.
    steps = {
        "predict": {kind: (lambda m=m: m.predict_on_batch(x)) for kind, m in models.items()},
        "fit": {kind: (lambda m=m: m.train_on_batch(x, y)) for kind, m in models.items()},
    }
    for step, fns in steps.items():
        if step == "fit":
            log(f"{label}: fit, compiling the train steps")
            for fn in fns.values():
                fn()
        log(f"{label}: {step}, ours and stock in turn, {repeats} repeats")
        start = time.perf_counter()
        timed = bench.interleaved_median_ms(fns, repeats)
        log(f"{label}: {step} timed in {time.perf_counter() - start:.0f} s")
        result[f"ours_{step}_ms"], result[f"stock_{step}_ms"] = timed["ours"], timed["stock"]
        result[f"{step}_ratio"] = timed["stock"] / timed["ours"]
    # Both took the same train steps: equal gradients keep their weights equal.
    result.update(compare_predictions(models, x, "after_fit"))
    return result


def compare_predictions(models, x, when):
    ours, stock = (np.asarray(m.predict_on_batch(x), dtype=np.float32) for m in (models["ours"], models["stock"]))
    return {f"equal_{when}": bool(np.array_equal(ours, stock)), f"max_abs_diff_{when}": float(np.max(np.abs(ours - stock)))}


def _yes(flag):
    return "yes" if flag else "no"


def _swapped_cell(row):
    return f"{row['layers_swapped']}/{row['stock_pools']}"


def _unswapped(row):
    return (
        f"{row['model']} {row['policy']}: swap_in replaced {row['layers_swapped']} layer(s) of a model with "
        f"{row['stock_pools']} stock max-pooling layer(s); that row does not time ours against stock alone"
    )


def _hlo_cell(hlo):
    if hlo is None:
        return "-"
    return " / ".join(f"{h['fusions']}({h['ynn_fusions']}) {h['conditionals']}" for h in (hlo["ours"], hlo["stock"]))


def format_table(report):
    lines = [
        f"whole models, backend {report['backend']} {report['backend_version']}, keras {report['keras']}; median of {report['repeats']}, ours and stock in turn",
        "",
        f"{'model':<9} {'policy':<15} {'batch':>5} {'swapped':>7} {'fit ms':>19} {'fit':>6} {'predict ms':>19} {'predict':>7}"
        f" {'equal':>7} {'max diff':>9} {'HLO fusions(ynn) conds':>23}",
        f"{'':<9} {'':<15} {'':>5} {'/ pools':>7} {'ours / stock':>19} {'ratio':>6} {'ours / stock':>19} {'ratio':>7}"
        f" {'bef/aft':>7} {'':>9} {'ours / stock':>23}",
    ]
    for r in report["models"]:
        lines.append(
            f"{r['model']:<9} {r['policy']:<15} {r['batch']:>5} {_swapped_cell(r):>7} "
            f"{r['ours_fit_ms']:>9.1f} / {r['stock_fit_ms']:<7.1f} {r['fit_ratio']:>6.2f} "
            f"{r['ours_predict_ms']:>9.1f} / {r['stock_predict_ms']:<7.1f} {r['predict_ratio']:>7.2f} "
            f"{_yes(r['equal_before_fit']) + '/' + _yes(r['equal_after_fit']):>7} "
            f"{max(r['max_abs_diff_before_fit'], r['max_abs_diff_after_fit']):>9.2g} {_hlo_cell(r['hlo']):>23}"
        )
    lines += [
        "",
        "swapped / pools: layers swap_in replaced / stock max-pooling layers in the model.",
        "fit: model.train_on_batch (the train step fit runs per batch); predict: model.predict_on_batch.",
        "ratio: stock time / our time (above 1: we are faster).",
        "equal: the same predictions on the batch, bit for bit, before and after the fit steps; max diff: the largest difference.",
    ]
    note = bench.busy_note(report["models"], lambda r: f"{r['model']} {r['policy']}")
    if note:
        lines.append(note)
    for r in report["models"]:
        if r["layers_swapped"] != r["stock_pools"]:
            lines.append(f"WARNING: {_unswapped(r)}.")
    if any(r["hlo"] for r in report["models"]):
        lines.append("HLO: fusions (of which YNNPACK) and conditionals in the entry of the compiled forward (jax.jit).")
    lines.append(f"The whole run took {report['seconds']:.0f} s.")
    return "\n".join(lines)


def plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["models"]
    positions = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(rows)), 4.5))
    for offset, step, color in ((-0.2, "fit", "#1f77b4"), (0.2, "predict", "#ff7f0e")):
        ratios = [r[f"{step}_ratio"] for r in rows]
        ax.bar(positions + offset, ratios, 0.4, label=step, color=color)
        for i, ratio in enumerate(ratios):
            ax.annotate(f"{ratio:.2f}", (i + offset, ratio), ha="center", va="bottom", fontsize=8)
    ax.axhline(1, color="black", linewidth=0.8)
    ax.set_xticks(positions, [f"{r['model']}\n{r['policy']}" for r in rows], fontsize=8)
    ax.set_ylabel("stock time / ours (above 1: ours faster)")
    ax.set_title(f"Whole models with keras_jax_pool.swap_in, {report['backend']} backend")
    ax.legend()
    bench.save_figure(fig, path)


def run(models=DEFAULT_MODELS, policies=DEFAULT_POLICIES, repeats=3, json_path=None, plot_path=None, stream=None):
    """Each model under each dtype policy (a row each); returns the report,
    or None on a backend that cannot train (numpy)."""
    backend = keras.backend.backend()
    if backend == "numpy":
        print("bench --models: the numpy backend has no training step; run it under jax, tensorflow or torch.", file=sys.stderr)
        return None
    version = importlib.import_module(backend).__version__
    report = {"backend": backend, "backend_version": version, "keras": keras.__version__, "repeats": repeats, "models": []}
    rows = [(name, policy) for name in models for policy in policies]
    start = time.perf_counter()
    for i, (name, policy) in enumerate(rows, 1):
        before = bench.load_average()
        report["models"].append(run_model(name, policy, repeats, lambda m, i=i: bench.progress(f"[{i}/{len(rows)}] {m}")))
        report["models"][-1]["load_average"] = [before, bench.load_average()]
    report["seconds"] = time.perf_counter() - start
    print(format_table(report), file=stream or sys.stdout)
    if json_path:
        bench.write_json(report, json_path)
    if plot_path:
        plot(report, plot_path)
    return report
