"""The benchmarks (`python -m keras_jax_pool bench`, and `bench --models`)
check exactness before they time, and their tables, JSON and charts agree
with each other. No timing is asserted: the figures come from the bench."""

import contextlib
import dataclasses
import io
import json

import keras
import numpy as np
import pytest

from keras_jax_pool import MaxPool1D, MaxPool2D, MaxPool3D, bench, bench_models, cli, surgery
from keras_jax_pool.layers import STOCK
from tests.conftest import BACKEND, only_on

TRAINS = BACKEND != "numpy"


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    stream = io.StringIO()
    report = bench.run(
        bench.QUICK_CASES, repeats=1, json_path=out / "r.json", plot_path=out / "r.png", stream=stream
    )
    return report, stream.getvalue(), out


def test_each_case_runs_in_each_default_dtype(quick_report):
    report, _, _ = quick_report
    expected = [(c.label, d) for c in bench.QUICK_CASES for d in bench.DEFAULT_DTYPES]
    assert [(r["case"], r["dtype"]) for r in report["cases"]] == expected
    assert all(r["output_dtype"] == r["dtype"] for r in report["cases"])


def test_quick_cases_cover_each_kind_and_padding():
    assert {(c.kind, c.padding) for c in bench.QUICK_CASES} == {(k, p) for k in bench.KINDS for p in ("valid", "same")}


def test_outputs_and_gradients_are_bit_identical_to_stock(quick_report):
    report, table, _ = quick_report
    for r in report["cases"]:
        assert r["output_equal"] is True
        if (BACKEND, r["kind"]) in bench.GRADIENT_DIFFERS_FROM_STOCK:
            # TensorFlow's MaxPool3D gradient sums overlapping windows in another order.
            continue
        assert r["gradient_equal"] is (True if TRAINS else None)
        assert bench.exactness(r, BACKEND) == "yes"
    marks = [line.split()[-1] for line in table.splitlines() if line.split()[:1] in (["1D"], ["2D"], ["3D"])]
    assert len(marks) == len(report["cases"]) and set(marks) <= {"yes", "fwd*"}


def test_each_row_compares_the_stock_layer_of_its_kind(quick_report):
    report, _, _ = quick_report
    assert [(r["kind"], r["layer"]) for r in report["cases"]] == [
        (c.kind, f"MaxPooling{c.kind}") for c in bench.QUICK_CASES for _ in bench.DEFAULT_DTYPES
    ]


@pytest.mark.parametrize("case", bench.DEFAULT_CASES + bench.QUICK_CASES, ids=lambda c: c.label)
def test_case_layers_are_ours_and_stock_of_its_kind(case):
    layers = case.layers("bfloat16")
    ours = {"1D": MaxPool1D, "2D": MaxPool2D, "3D": MaxPool3D}[case.kind]
    assert (type(layers["ours"]), type(layers["stock"])) == (ours, STOCK[ours])
    assert case.kind == f"{len(case.shape) - 2}D" and case.label.startswith(case.kind + " ")
    for layer in layers.values():
        assert (layer.pool_size, layer.strides, layer.padding) == (case.pool_size, case.strides, case.padding)
        assert layer.data_format == "channels_last" and layer.dtype_policy.name == "bfloat16"
    assert layers["ours"].get_config() == layers["stock"].get_config() | {"name": layers["ours"].name}


def test_default_cases_hold_the_1d_and_3d_cases_of_the_issue():
    cases = {(c.shape, c.pool_size, c.strides, c.padding) for c in bench.DEFAULT_CASES}
    assert {
        ((32, 8192, 64), (2,), (2,), "valid"),
        ((32, 8192, 64), (3,), (2,), "same"),
        ((4, 32, 64, 64, 32), (2, 2, 2), (2, 2, 2), "valid"),
        ((4, 32, 64, 64, 32), (3, 3, 3), (2, 2, 2), "same"),
    } <= cases
    assert [c.kind for c in bench.DEFAULT_CASES] == ["2D"] * 4 + ["1D"] * 2 + ["3D"] * 2


def test_case_labels_name_the_kind():
    assert bench.Case((32, 8192, 64), (3,), (2,), "same").label == "1D 32x8192x64 pool 3 stride 2 same"
    assert bench.Case((8, 56, 56, 256), (2, 2), (2, 2)).label == "2D 8x56x56x256 pool 2x2 stride 2x2 valid"
    assert (
        bench.Case((4, 32, 64, 64, 32), (3, 3, 3), (2, 2, 2), "same").label
        == "3D 4x32x64x64x32 pool 3x3x3 stride 2x2x2 same"
    )


@pytest.mark.parametrize(
    "shape, pool_size, strides",
    [((2, 8, 3), (2, 2), (2, 2)), ((2, 8, 8, 3), (2,), (2,)), ((2, 8, 8, 3), (2, 2), (2,)), ((2, 3), (), ()),
     ((2, 4, 4, 4, 4, 3), (2, 2, 2, 2), (2, 2, 2, 2))],
)
def test_case_rejects_a_window_of_another_rank(shape, pool_size, strides):
    with pytest.raises(ValueError, match="one window size and stride per spatial axis"):
        bench.Case(shape, pool_size, strides)


def test_of_kinds_picks_cases_in_order():
    assert bench.of_kinds(["1d", "3D"]) == bench.DEFAULT_CASES[4:]
    assert bench.of_kinds(["2D"]) == bench.DEFAULT_CASES[:4]
    assert bench.of_kinds(["3D"], bench.QUICK_CASES) == bench.QUICK_CASES[4:]
    assert bench.of_kinds(bench.KINDS) == bench.DEFAULT_CASES
    with pytest.raises(ValueError, match="Unknown case kinds \\['4D'\\]"):
        bench.of_kinds(["1D", "4d"])


@pytest.mark.parametrize(
    "backend, kind, output_equal, gradient_equal, expected",
    [
        ("jax", "3D", True, True, "yes"),
        ("numpy", "1D", True, None, "yes"),
        ("tensorflow", "3D", True, False, "fwd*"),
        ("tensorflow", "2D", True, False, "NO"),
        ("jax", "3D", True, False, "NO"),
        ("tensorflow", "3D", False, False, "NO"),
        ("torch", "1D", False, True, "NO"),
    ],
)
def test_exactness_excuses_only_the_known_gradient_differences(backend, kind, output_equal, gradient_equal, expected):
    row = {"kind": kind, "output_equal": output_equal, "gradient_equal": gradient_equal}
    assert bench.exactness(row, backend) == expected


def test_table_explains_a_known_gradient_difference():
    row = {"case": "3D 2x4x4x4x1 pool 2x2x2 stride 2x2x2 valid", "kind": "3D", "layer": "MaxPooling3D", "dtype": "float32"}
    row |= {"output_equal": True, "gradient_equal": False, "ours_forward_ms": 1.0, "stock_forward_ms": 1.0}
    row |= {"forward_ratio": 1.0, "ours_peak_mb": None, "stock_peak_mb": None}
    report = {"backend": "tensorflow", "keras": "3", "dtypes": ["float32"], "copy_gbps": 1.0, "repeats": 1, "cases": [row]}
    table = bench.format_table(report)
    assert table.splitlines()[4].split()[-1] == "fwd*"
    assert "fwd*: outputs bit-identical, gradients not: on tensorflow, 3D, stock's MaxPool3D gradient" in table
    report["backend"] = "jax"
    table = bench.format_table(report)
    assert table.splitlines()[4].split()[-1] == "NO" and "fwd*" not in table
    assert "busy machine" not in table
    report["cases"].append(row | {"dtype": "bfloat16"})
    row["load_average"] = [1.0, 1e6]
    assert f"while timing {row['case']} float32;" in bench.format_table(report)


def test_ratios_follow_from_the_timings(quick_report):
    report, table, _ = quick_report
    for r in report["cases"]:
        assert r["forward_ratio"] == pytest.approx(r["stock_forward_ms"] / r["ours_forward_ms"])
        if TRAINS:
            assert r["speedup"] == pytest.approx(r["stock_forward_backward_ms"] / r["ours_forward_backward_ms"])
            assert r["ceiling"] == pytest.approx(r["stock_forward_backward_ms"] / r["floor_ms"])
            assert f"{r['floor_ms']:.1f}" in table
    rows = [line.split() for line in table.splitlines()]
    for r in report["cases"]:
        assert r["case"].split() + [r["dtype"]] in [row[: len(r["case"].split()) + 1] for row in rows]
    assert f"backend {BACKEND}" in table
    assert "median of 1, ours and stock in turn" in table


def test_each_row_records_the_load_average_around_it(quick_report):
    report, _, _ = quick_report
    for r in report["cases"]:
        assert len(r["load_average"]) == 2 and all(v is None or v >= 0 for v in r["load_average"])


def test_busy_note_names_rows_timed_above_the_cpu_count(monkeypatch):
    monkeypatch.setattr(bench.os, "cpu_count", lambda: 2)
    rows = [{"n": "a", "load_average": [1.0, 2.5]}, {"n": "b", "load_average": [2.6, 1.0]}, {"n": "c", "load_average": [None, None]}]
    assert bench.busy_note(rows, lambda r: r["n"]).startswith("busy machine: the load average was above 2.5 while timing b;")
    assert bench.busy_note(rows[::2] + [{"n": "d"}], lambda r: r["n"]) is None
    assert "while timing every row;" in bench.busy_note(rows[1:2] * 2, lambda r: r["n"])


def test_interleaved_timing_runs_each_callable_in_turn():
    calls = []
    medians = bench.interleaved_median_ms({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 3)
    assert calls == ["a", "a", "b", "b"] * 3  # in turn, each timed call after an untimed one
    assert sorted(medians) == ["a", "b"] and all(m >= 0 for m in medians.values())


def test_json_and_plot_are_written(quick_report):
    report, _, out = quick_report
    assert json.loads((out / "r.json").read_text()) == json.loads(json.dumps(report))
    assert (out / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.iterdir()) == ["r.json", "r.png"]  # no temporaries left


@pytest.mark.parametrize("dtype", bench.DTYPES)
@pytest.mark.parametrize(
    "case, outputs",
    [
        (bench.Case((2, 4, 6, 3), (2, 2), (2, 2)), 2 * 2 * 3 * 3),
        (bench.Case((2, 9, 3), (3,), (2,), "same"), 2 * 5 * 3),
        (bench.Case((2, 4, 6, 5, 3), (2, 2, 2), (2, 2, 2)), 2 * 2 * 3 * 2 * 3),
    ],
)
def test_least_traffic_counts_each_tensor_once(case, outputs, dtype):
    itemsize = np.zeros(1, bench.numpy_dtype(dtype)).nbytes
    x, y = int(np.prod(case.shape)) * itemsize, outputs * itemsize
    assert bench.least_traffic_bytes(case, itemsize) == {"forward": x + y, "forward_backward": 3 * x + 3 * y}


def parse_bench(*argv):
    return cli.build_parser().parse_args(["bench", *argv])


@pytest.mark.parametrize(
    "argv, field, expected",
    [
        (["--dtype", "all"], "dtype", bench.DTYPES),
        (["--dtype", "float16,float32"], "dtype", ("float16", "float32")),
        (["--dtype", "bfloat16, bfloat16"], "dtype", ("bfloat16",)),
        (["--models"], "models", bench_models.DEFAULT_MODELS),
        (["--models", "conv1d,conv3d"], "models", ("conv1d", "conv3d")),
        (["--models", "all"], "models", bench_models.DEFAULT_MODELS),
        (["--models", "tiny,cifar"], "models", ("tiny", "cifar")),
        (["--models", "--policy", "all"], "policy", bench_models.POLICIES),
        (["--models", "--policy", "mixed_bfloat16"], "policy", ("mixed_bfloat16",)),
    ],
)
def test_cli_parses_lists_and_all(argv, field, expected):
    assert getattr(parse_bench(*argv), field) == expected


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--shape", "32,8192,64", "--pool", "3", "--stride", "2", "--padding", "same"], [bench.Case((32, 8192, 64), (3,), (2,), "same")]),
        (["--shape", "4,32,64,64,32"], [bench.Case((4, 32, 64, 64, 32), (2, 2, 2), (2, 2, 2))]),
        (["--shape", "8,56,56,256", "--pool", "3,2"], [bench.Case((8, 56, 56, 256), (3, 2), (3, 2))]),
        (["--kind", "1d,3D"], [c for c in bench.DEFAULT_CASES if c.kind in ("1D", "3D")]),
        (["--quick", "--kind", "2D"], [c for c in bench.QUICK_CASES if c.kind == "2D"]),
        (["--kind", "all"], list(bench.DEFAULT_CASES)),
    ],
)
def test_cli_builds_the_cases_asked_for(argv, expected, monkeypatch):
    seen = []
    monkeypatch.setattr(bench, "run", lambda cases, **options: seen.extend(cases))
    cli.main(["bench", *argv])
    assert seen == expected and len({c.kind for c in seen}) == len({c.kind for c in expected}) > 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--shape", "1,2"], "--shape takes batch, 1 to 3 spatial sizes and channels"),
        (["--shape", "1,2,3,4,5,6"], "received 1,2,3,4,5,6"),
        (["--shape", "4,16,16,8", "--pool", "2,2,2"], "--pool takes 1 or 2 integers"),
        (["--shape", "4,16,16,16,8", "--stride", "1,2"], "--stride takes 1 or 3 integers"),
        (["--shape", "4,16,8", "--kind", "2D"], "--kind picks among the default cases"),
        (["--pool", "3"], "--pool applies with --shape only"),
        (["--kind", "4D"], "argument --kind: unknown kind '4D'"),
        (["--models", "tiny", "--kind", "1D"], "--kind applies to the op bench only"),
        (["--shape", "1,x,3,4"], "comma-separated"),
        (["--dtype", "float8"], "argument --dtype: unknown dtype 'float8'"),
        (["--dtype", "float32,,bfloat16"], "argument --dtype: unknown dtype ''"),
        (["--models", "vgg16,alexnet"], "argument --models: unknown model 'alexnet'"),
        (["--models", "--policy", "mixed_half"], "argument --policy: unknown policy 'mixed_half'"),
        (["--repeats", "0"], "argument --repeats"),
        (["--models", "--dtype", "bfloat16"], "--dtype applies to the op bench only"),
        (["--models", "tiny", "--shape", "1,8,8,3"], "--shape applies to the op bench only"),
        (["--policy", "float32"], "--policy applies to --models only"),
    ],
)
def test_cli_rejects_bad_arguments_naming_them(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", *argv])
    assert exit_info.value.code != 0
    assert message in str(exit_info.value.code) + capsys.readouterr().err


POLICIES = ("float32", "mixed_bfloat16")


@pytest.fixture(scope="module")
def models_run(tmp_path_factory):
    """`bench --models tiny` through the command line, both default policies."""
    out = tmp_path_factory.mktemp("models")
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        cli.main(["bench", "--models", "tiny", "--repeats", "1", "--json", str(out / "m.json"), "--plot", str(out / "m.png")])
    report = json.loads((out / "m.json").read_text()) if (out / "m.json").exists() else None
    return report, stdout.getvalue(), stderr.getvalue(), out


@only_on("numpy")
def test_models_bench_says_why_it_skips_numpy(models_run):
    report, table, log, out = models_run
    assert report is None and table == "" and list(out.iterdir()) == []
    assert "numpy backend has no training step" in log


@only_on("jax", "tensorflow", "torch")
def test_models_bench_reports_each_model_and_policy(models_run):
    report, _, _, _ = models_run
    assert (report["backend"], report["repeats"], report["keras"]) == (BACKEND, 1, keras.__version__)
    assert [(r["model"], r["policy"]) for r in report["models"]] == [("tiny", p) for p in POLICIES]
    assert all(len(r["load_average"]) == 2 for r in report["models"])
    for r in report["models"]:
        for step in ("fit", "predict"):
            assert r[f"{step}_ratio"] == pytest.approx(r[f"stock_{step}_ms"] / r[f"ours_{step}_ms"])


@only_on("jax", "tensorflow", "torch")
def test_models_bench_finds_equal_predictions(models_run):
    report, _, _, _ = models_run
    for r in report["models"]:
        for when in ("before_fit", "after_fit"):
            differs = f"{r['model']} {r['policy']}: predictions {when.replace('_', ' ')} differ by up to {r[f'max_abs_diff_{when}']}"
            assert r[f"equal_{when}"] is True and r[f"max_abs_diff_{when}"] == 0, differs
        assert r["layers_swapped"] == r["stock_pools"] == 2  # the comparison is not of stock with itself


@only_on("jax", "tensorflow", "torch")
def test_models_bench_table_and_plot(models_run):
    report, table, log, out = models_run
    for r in report["models"]:
        assert any(line.split()[:2] == [r["model"], r["policy"]] and f"{r['fit_ratio']:.2f}" in line for line in table.splitlines())
    assert "[2/2] tiny mixed_bfloat16: fit" in log  # progress says which model, policy and step
    assert (out / "m.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.iterdir()) == ["m.json", "m.png"]


@only_on("jax")
def test_models_bench_counts_hlo_of_both_models(models_run):
    report, _, _, _ = models_run
    for r in report["models"]:
        assert set(r["hlo"]) == {"ours", "stock"}
        for counts in r["hlo"].values():
            assert counts["fusions"] >= counts["ynn_fusions"] >= 0 and counts["conditionals"] >= 0


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("name, ours", [("tiny", MaxPool2D), ("conv1d", MaxPool1D), ("conv3d", MaxPool3D)])
def test_build_pair_swaps_every_pool_under_the_policy(name, ours, policy):
    spec = bench_models.MODELS[name]
    pair = bench_models.build_pair(spec, policy)
    stock_pools = surgery.find_layers(pair["stock"], STOCK[ours])
    assert [p.name for p in surgery.find_layers(pair["ours"], ours)] == [p.name for p in stock_pools] != []
    assert bench_models.swapped_layers(pair["stock"], pair["ours"]) == len(stock_pools)
    assert bench_models.stock_pools(pair["stock"]) == len(stock_pools) and bench_models.stock_pools(pair["ours"]) == 0
    assert pair["stock"].input_shape == (None, *spec.input_shape)
    assert {layer.dtype_policy.name for m in pair.values() for layer in m.layers} == {policy}
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored


def test_models_default_to_all_but_the_smoke_run():
    assert bench_models.DEFAULT_MODELS == ("cifar", "conv1d", "conv3d", "vgg16", "resnet50")
    assert set(bench_models.MODELS) == {*bench_models.DEFAULT_MODELS, "tiny"}


@only_on("jax", "tensorflow", "torch")
@pytest.mark.parametrize("name, input_shape", [("conv1d", (16, 2)), ("conv3d", (8, 8, 8, 1))])
def test_models_bench_runs_the_1d_and_3d_models(name, input_shape, monkeypatch):
    """The conv1d and conv3d models, on small inputs: every pooling layer
    swapped, the same predictions before and after a fit step."""
    spec = dataclasses.replace(bench_models.MODELS[name], input_shape=input_shape, batch=2)
    monkeypatch.setitem(bench_models.MODELS, name, spec)
    log = []
    r = bench_models.run_model(name, "float32", 1, log.append)
    assert (r["model"], r["input_shape"], r["batch"]) == (name, list(input_shape), 2)
    assert r["layers_swapped"] == r["stock_pools"] == 3
    assert r["equal_before_fit"] is r["equal_after_fit"] is True
    assert r["fit_ratio"] == pytest.approx(r["stock_fit_ms"] / r["ours_fit_ms"])
    assert not [m for m in log if "WARNING" in m]


def test_models_table_warns_of_a_model_not_swapped():
    row = {"model": "conv3d", "policy": "float32", "batch": 8, "layers_swapped": 1, "stock_pools": 3, "hlo": None}
    row |= {"ours_fit_ms": 1.0, "stock_fit_ms": 1.0, "fit_ratio": 1.0, "ours_predict_ms": 1.0, "stock_predict_ms": 1.0}
    row |= {"predict_ratio": 1.0, "equal_before_fit": True, "equal_after_fit": True}
    row |= {"max_abs_diff_before_fit": 0.0, "max_abs_diff_after_fit": 0.0}
    report = {"backend": "jax", "backend_version": "0", "keras": "3", "repeats": 1, "seconds": 1.0, "models": [row]}
    table = bench_models.format_table(report)
    assert table.splitlines()[4].split()[:4] == ["conv3d", "float32", "8", "1/3"]
    assert "WARNING: conv3d float32: swap_in replaced 1 layer(s) of a model with 3 stock max-pooling layer(s)" in table
    row["layers_swapped"] = 3
    assert "WARNING" not in bench_models.format_table(report)
    assert "busy machine" not in bench_models.format_table(report)
    report["models"].append(row | {"policy": "mixed_bfloat16"})
    row["load_average"] = [1e6, 0.0]
    assert "while timing conv3d float32;" in bench_models.format_table(report)


@only_on("jax")
def test_hlo_counts_see_a_conditional():
    import jax

    class Branch(keras.layers.Layer):
        def call(self, x):
            return jax.lax.cond(x[0, 0] > 0, lambda v: v * 2, lambda v: -v, x)

    def model(*layers):
        return keras.Sequential([keras.Input((3,)), *layers, keras.layers.Dense(2)])

    x = np.ones((2, 3), "float32")
    assert bench_models.hlo_counts(model(Branch()), x)["conditionals"] == 1
    assert bench_models.hlo_counts(model(), x)["conditionals"] == 0
