"""The benchmarks (`python -m keras_jax_pool bench`, and `bench --models`)
check exactness before they time, and their tables, JSON and charts agree
with each other. No timing is asserted: the figures come from the bench."""

import contextlib
import io
import json

import keras
import numpy as np
import pytest

from keras_jax_pool import MaxPool2D, bench, bench_models, cli, surgery
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


def test_outputs_and_gradients_are_bit_identical_to_stock(quick_report):
    report, _, _ = quick_report
    for r in report["cases"]:
        assert r["output_equal"] is True
        assert r["gradient_equal"] is (True if TRAINS else None)


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
def test_least_traffic_counts_each_tensor_once(dtype):
    case = bench.Case((2, 4, 6, 3), (2, 2), (2, 2))
    itemsize = np.zeros(1, bench.numpy_dtype(dtype)).nbytes
    x, y = 2 * 4 * 6 * 3 * itemsize, 2 * 2 * 3 * 3 * itemsize
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
        (["--models", "all"], "models", bench_models.DEFAULT_MODELS),
        (["--models", "tiny,cifar"], "models", ("tiny", "cifar")),
        (["--models", "--policy", "all"], "policy", bench_models.POLICIES),
        (["--models", "--policy", "mixed_bfloat16"], "policy", ("mixed_bfloat16",)),
    ],
)
def test_cli_parses_lists_and_all(argv, field, expected):
    assert getattr(parse_bench(*argv), field) == expected


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--shape", "1,2,3"], "--shape takes"),
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
    for r in report["models"]:
        for step in ("fit", "predict"):
            assert r[f"{step}_ratio"] == pytest.approx(r[f"stock_{step}_ms"] / r[f"ours_{step}_ms"])


@only_on("jax", "tensorflow", "torch")
def test_models_bench_finds_equal_predictions(models_run):
    report, _, _, _ = models_run
    for r in report["models"]:
        for when in ("before_fit", "after_fit"):
            assert r[f"equal_{when}"] is True and r[f"max_abs_diff_{when}"] == 0
        assert r["layers_swapped"] >= 1  # the comparison is not of stock with itself


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
def test_build_pair_swaps_every_pool_under_the_policy(policy):
    spec = bench_models.MODELS["tiny"]
    pair = bench_models.build_pair(spec, policy)
    stock_pools = surgery.find_layers(pair["stock"], keras.layers.MaxPooling2D)
    assert [p.name for p in surgery.find_layers(pair["ours"], MaxPool2D)] == [p.name for p in stock_pools] != []
    assert bench_models.swapped_layers(pair["stock"], pair["ours"]) == len(stock_pools)
    assert {layer.dtype_policy.name for m in pair.values() for layer in m.layers} == {policy}
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored


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
