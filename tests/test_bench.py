"""The benchmark (`python -m keras_jax_pool bench`) checks exactness before it
times, and its table, JSON and chart agree with each other."""

import io
import json

import pytest

from keras_jax_pool import bench, cli
from tests.conftest import BACKEND


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    stream = io.StringIO()
    report = bench.run(
        bench.QUICK_CASES, repeats=1, json_path=out / "r.json", plot_path=out / "r.png", stream=stream
    )
    return report, stream.getvalue(), out


def test_outputs_and_gradients_are_bit_identical_to_stock(quick_report):
    report, _, _ = quick_report
    assert [r["case"] for r in report["cases"]] == [c.label for c in bench.QUICK_CASES]
    for r in report["cases"]:
        assert r["output_equal"] is True
        assert r["gradient_equal"] is (None if BACKEND == "numpy" else True)


def test_ratios_follow_from_the_timings(quick_report):
    report, table, _ = quick_report
    for r in report["cases"]:
        assert r["forward_ratio"] == pytest.approx(r["stock_forward_ms"] / r["ours_forward_ms"])
        if BACKEND != "numpy":
            assert r["speedup"] == pytest.approx(r["stock_forward_backward_ms"] / r["ours_forward_backward_ms"])
            assert r["ceiling"] == pytest.approx(r["stock_forward_backward_ms"] / r["floor_ms"])
            assert f"{r['floor_ms']:.1f}" in table
        assert r["case"] in table
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


def test_least_traffic_counts_each_tensor_once():
    case = bench.Case((2, 4, 6, 3), (2, 2), (2, 2))
    x, y = 2 * 4 * 6 * 3 * 4, 2 * 2 * 3 * 3 * 4
    assert bench.least_traffic_bytes(case, 4) == {"forward": x + y, "forward_backward": 3 * x + 3 * y}


@pytest.mark.parametrize("argv, message", [(["--shape", "1,2,3"], "--shape takes"), (["--shape", "1,x,3,4"], "comma-separated")])
def test_cli_rejects_bad_shape(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", *argv])
    assert exit_info.value.code != 0
    captured = capsys.readouterr()
    assert message in str(exit_info.value.code) + captured.err
