import json

from flatscope.app import demo
from flatscope.app.demo import (
    DemoPlan,
    OptimizerSummary,
    compare,
    demo_config,
    format_table,
    verdict,
)
from flatscope.app.seed_statistics import seed_test
from flatscope.cli import main
from flatscope.io import Report

TINY = DemoPlan(
    seeds=1,
    epochs=1,
    track_every=1,
    flatness_subset=32,
    flatness_matvecs=6,
    analysis_subset=48,
    trace_matvecs=6,
    density_steps=4,
    density_probes=1,
)


def test_demo_command_trains_analyses_and_reports(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "QUICK", TINY)
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out.splitlines()  # the table, the verdict, where files are
    assert printed[0].split()[:3] == ["optimizer", "clean", "test"]
    assert [line.split()[0] for line in printed[1:5]] == ["SGD", "SAM", "fSGLD", "SGLD"]
    assert printed[6].startswith("fSGLD vs SGD at the last weights: raw Hessian trace ")
    assert "fSGLD vs SAM" in printed[6] and "(no test with fewer than 3 seeds)" in printed[6]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["plan"] == vars(TINY)
    for entry in summary["summaries"]:
        name = entry["optimizer"]
        accuracies, traces, scaled = [], [], []
        for seed in range(TINY.seeds):
            lines = (out / "runs" / f"{name}-seed{seed}" / "metrics.jsonl").read_text()
            records = [json.loads(line) for line in lines.splitlines()]
            assert "hessian_trace" in records[-1]
            accuracies.append(records[-1]["test_acc"])
            report = Report.load(out / "analysis" / f"{name}-seed{seed}" / "report.json")
            assert report.to_dict()["data"]["num_samples"] == TINY.analysis_subset
            traces.append(report.metrics["hessian_trace"]["value"])
            scaled.append(report.metrics["scaled_trace"]["value"])
        assert entry["test_acc"]["values"] == accuracies
        assert entry["trace"]["values"] == traces
        assert entry["scaled_trace"]["values"] == scaled
    for figure in ("spectral_density", "flatness", "training"):
        assert (out / f"{figure}.png").stat().st_size > 1000
    markdown = (out / "report.md").read_text()
    assert printed[6] in markdown and "benchmarks/tune_demo.py" in markdown
    assert "| fSGLD | " in markdown


def test_demo_runs_use_the_tuned_protocol():
    config = demo_config("fsgld", seed=4, epochs=7)
    assert (config.data, config.model, config.label_noise) == (
        demo.DATA,
        demo.MODEL,
        "symmetric:0.4",
    )
    assert config.epochs == 7 and config.seed == 4
    assert {key: config.to_dict()[key] for key in demo.TUNED["fsgld"]} == demo.TUNED["fsgld"]
    assert demo_config("sam", 0, tuned=False, lr=0.3).lr == 0.3


def summary(name, accuracies, traces, scaled=None):
    n = len(traces)
    scaled = [t / 10 for t in traces] if scaled is None else scaled
    return OptimizerSummary(
        name, accuracies, [1.0] * n, traces, [0.5] * n, scaled, [3.0] * n, [0.1] * n
    )


def test_table_and_verdict_state_means_spreads_and_seed_tests():
    rows = {
        "sgd": summary("sgd", [0.80, 0.84], [100.0, 120.0]),
        "fsgld": summary("fsgld", [0.85, 0.85], [40.0, 60.0]),
    }
    table = format_table(rows.values(), seeds=2).splitlines()
    assert table[0].split()[:8] == ["optimizer", "clean", "test", "acc", "%", "train", "loss",
                                    "Hessian"]  # fmt: skip
    assert table[1].split() == ["SGD", "82.0", "±", "2.8", "1.000", "±", "0.000", "110", "±", "14",
                                "0.50", "11.0", "±", "1.4", "3", "±", "0", "0.100"]  # fmt: skip
    text = compare(rows)
    assert text.startswith("fSGLD vs SGD at the last weights: raw Hessian trace lower (50 ± 14")
    assert "on every seed" in text and "ratio 0.455 (no test with fewer than 3 seeds)" in text
    one_seed = {name: summary(name, [0.8], [t]) for name, t in (("sgd", 100.0), ("fsgld", 50.0))}
    assert "(50.00 vs 100.0; one seed; ratio 0.5 (no test" in compare(one_seed)
    assert "equal or better clean test accuracy" in text
    # three seeds: the ratio of means with Fieller's interval and Welch's p-value
    rows = {
        "sgd": summary("sgd", [0.80, 0.84, 0.82], [100.0, 120.0, 110.0], [10.0, 11.0, 12.0]),
        "fsgld": summary("fsgld", [0.70, 0.72, 0.71], [105.0, 140.0, 125.0], [10.5, 12.0, 10.0]),
        "sam": summary("sam", [0.8, 0.8, 0.8], [50.0, 60.0, 55.0]),
    }
    test = seed_test("scaled trace", [10.5, 12.0, 10.0], [10.0, 11.0, 12.0])
    low, high = test.interval
    text = verdict(rows)
    assert "higher (123 ± 18 vs 110 ± 10; the seed ranges overlap" in text
    assert f"ratio {test.ratio:.3g} [{low:.3g}, {high:.3g}], p = {test.p_two_sided:.2g}, " in text
    assert "not established" in text and "lower clean test accuracy" in text
    assert "fSGLD vs SAM at the last weights" in text and "matched loss" in text
