"""flatscope.app.compare: shared rows with error bars, run directories, files and figures."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from flatscope.app.compare import compare, find_report, metric_rows, write_comparison
from flatscope.errors import FlatscopeError, ReportError
from flatscope.io import Report
from flatscope.landscape.surface import LandscapeResult
from flatscope.linalg import spectral_density
from tests._reports import HEADER


def density(scale: float) -> dict:
    A = torch.diag(scale * torch.linspace(0.0, 1.0, 12, dtype=torch.float64))
    return spectral_density(A, num_steps=6, num_probes=2, seed=0).to_dict()


def make_metrics(scale: float, bottom: bool = False) -> dict:
    metrics = {
        "loss": 0.5 * scale,
        "gradient_norm": 0.01 * scale,
        "hessian_trace": {
            "value": 10.0 * scale,
            "stderr": 0.5,
            "method": "hutchpp",
            "num_matvecs": 30,
            "per_block": {"w": [6.0 * scale, 0.4], "b": [4.0 * scale, 0.3]},
        },
        "top_eigenvalues": {
            "values": [3.0 * scale, 2.0 * scale],
            "residuals": [0.01, 0.02],
            "num_matvecs": 20,
            "converged": True,
        },
        "spectral_density": density(scale),
    }
    if bottom:
        metrics["bottom_eigenvalues"] = {
            "values": [-0.1],
            "residuals": [0.001],
            "num_matvecs": 20,
            "converged": True,
        }
    return metrics


def write_report(folder, metrics: dict) -> Report:
    folder.mkdir(parents=True, exist_ok=True)
    report = Report.new(HEADER, folder / "report.json")
    for name, value in metrics.items():
        report.set_metric(name, value, 0.0)
    return report


def make_run(folder, scale: float, with_report: bool = True) -> None:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"config": {"epochs": 2}}))
    records = [
        {"epoch": e, "train_loss": 1.0 / e, "train_acc": 0.5, "test_acc": 0.6 + e / 10}
        for e in (1, 2)
    ]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if with_report:
        write_report(folder / "analysis", make_metrics(scale))


def test_metric_rows_carry_value_and_error():
    rows = metric_rows(make_metrics(2.0, bottom=True))
    assert rows["trace"] == (20.0, 0.5)
    assert rows["top eigenvalue 1"] == (6.0, 0.01)
    assert rows["top eigenvalue 2"] == (4.0, 0.02)
    assert rows["bottom eigenvalue 1"] == (-0.1, 0.001)
    assert rows["loss"] == (1.0, None)


def test_compare_lines_up_shared_rows_and_notes_the_rest(tmp_path):
    write_report(tmp_path / "sgd", make_metrics(2.0, bottom=True))
    write_report(tmp_path / "fsgld", make_metrics(1.0))
    comparison = compare([tmp_path / "sgd", tmp_path / "fsgld" / "report.json"])
    assert comparison.labels == ["sgd", "fsgld"]
    rows = dict(comparison.rows)
    assert rows["trace"] == [(20.0, 0.5), (10.0, 0.5)]
    assert rows["top eigenvalue 1"] == [(6.0, 0.01), (3.0, 0.01)]
    assert "bottom eigenvalue 1" not in rows
    assert any("bottom eigenvalue 1 (only sgd)" in note for note in comparison.notes)
    assert dict(comparison.block_rows)["trace[w]"] == [(12.0, 0.4), (6.0, 0.4)]
    table = comparison.table()
    assert "20 ± 0.5" in table and "10 ± 0.5" in table
    assert "trace[w]" not in table and "trace[w]" in comparison.table(blocks=True)


def test_write_comparison_writes_tables_and_figures(tmp_path):
    write_report(tmp_path / "a", make_metrics(2.0))
    write_report(tmp_path / "b", make_metrics(1.0))
    slice_1d = LandscapeResult((np.linspace(-1, 1, 5),), np.linspace(0, 1, 5) ** 2, None, {})
    slice_1d.save_npz(tmp_path / "a" / "slice.npz")
    out = tmp_path / "out"
    written = write_comparison(compare([tmp_path / "a", tmp_path / "b"]), out)
    names = {path.name for path in written}
    for stem in (
        "density_overlay",
        "eigenvalue_comparison",
        "trace_comparison",
        "landscape_overlay",
    ):
        assert {f"{stem}.png", f"{stem}.pdf"} <= names
        assert (out / f"{stem}.png").stat().st_size > 0
    markdown = (out / "comparison.md").read_text()
    assert "| metric | a | b |" in markdown and "| trace[b] | 8 ± 0.3 | 4 ± 0.3 |" in markdown
    document = json.loads((out / "comparison.json").read_text())
    assert document["rows"]["trace"] == {"a": [20.0, 0.5], "b": [10.0, 0.5]}


def test_run_directories_contribute_their_final_report_and_accuracy(tmp_path):
    make_run(tmp_path / "sgd", 2.0)
    make_run(tmp_path / "fsgld", 1.0)
    comparison = compare([tmp_path / "sgd", tmp_path / "fsgld"])
    assert comparison.labels == ["sgd", "fsgld"]
    rows = dict(comparison.rows)
    assert rows["final test acc (run)"] == [(pytest.approx(0.8), None)] * 2
    assert rows["trace"] == [(20.0, 0.5), (10.0, 0.5)]


def test_demo_runs_find_their_analysis(tmp_path):
    make_run(tmp_path / "runs" / "sgd-seed0", 1.0, with_report=False)
    write_report(tmp_path / "analysis" / "sgd-seed0", make_metrics(1.0))
    report, run_dir = find_report(tmp_path / "runs" / "sgd-seed0")
    assert report == tmp_path / "runs" / "sgd-seed0" / "../../analysis/sgd-seed0/report.json"
    assert report.resolve() == (tmp_path / "analysis" / "sgd-seed0" / "report.json").resolve()
    assert run_dir == tmp_path / "runs" / "sgd-seed0"


def test_missing_reports_are_one_line_errors(tmp_path):
    make_run(tmp_path / "bare", 1.0, with_report=False)
    with pytest.raises(ReportError, match="flatscope analyze .*final.pt --out"):
        find_report(tmp_path / "bare")
    with pytest.raises(ReportError, match="does not exist"):
        find_report(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="neither report.json nor a training run"):
        find_report(tmp_path / "empty")
    write_report(tmp_path / "one", make_metrics(1.0))
    with pytest.raises(FlatscopeError, match="at least two"):
        compare([tmp_path / "one"])


def test_same_labels_are_numbered(tmp_path):
    write_report(tmp_path / "x" / "analysis", make_metrics(1.0))
    write_report(tmp_path / "y" / "analysis", make_metrics(2.0))
    comparison = compare([tmp_path / "x" / "analysis", tmp_path / "y" / "analysis"])
    assert comparison.labels == ["analysis (1)", "analysis (2)"]


# ------------------------------------------------------------------- matched loss


def make_trajectory(folder, losses: dict[int, float], scale: float) -> None:
    """A run folder whose checkpoints (empty files) have trajectory reports with these exact
    losses; the traces are ``scale * epoch`` and the scaled traces ``scale * epoch / 10``."""
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"config": {"epochs": max(losses)}}))
    for epoch, loss in losses.items():
        final = epoch == max(losses)
        stem = "final" if final else f"epoch_{epoch:04d}"
        (folder / ("final.pt" if final else f"checkpoints/{stem}.pt")).write_bytes(b"")
        metrics = {
            "loss": loss,
            "hessian_trace": {"value": scale * epoch, "stderr": 0.1 * epoch},
            "scaled_trace": {"value": scale * epoch / 10, "stderr": 0.01},
        }
        write_report(folder / "trajectory" / "reports" / stem, metrics)
    write_report(folder / "analysis", {"loss": losses[max(losses)], **metrics})


def test_runs_meet_at_the_lowest_loss_they_all_reach(tmp_path):
    make_trajectory(tmp_path / "sgd", {3: 2.0, 6: 1.5, 9: 1.2}, scale=10.0)
    make_trajectory(tmp_path / "fsgld", {3: 1.8, 6: 1.4, 9: 1.3}, scale=2.0)
    comparison = compare([tmp_path / "sgd", tmp_path / "fsgld"], matched_loss="auto")
    matched = comparison.matched
    assert matched.level == pytest.approx(1.3)  # fSGLD's lowest; SGD passes it
    sgd, fsgld = matched.points["sgd"], matched.points["fsgld"]
    weight = (1.5 - 1.3) / (1.5 - 1.2)  # on epoch 9, linear in the loss
    assert sgd.interpolated and sgd.weight == pytest.approx(weight)
    assert sgd.epoch == pytest.approx(6 + 3 * weight)
    rows = dict(comparison.rows)
    value, error = rows["trace at loss 1.3"][0]
    assert value == pytest.approx((1 - weight) * 60 + weight * 90)
    assert error == pytest.approx((1 - weight) * 0.6 + weight * 0.9)  # an upper bound
    assert not fsgld.interpolated and fsgld.before.epoch == 9
    assert rows["trace at loss 1.3"][1] == (18.0, pytest.approx(0.9))
    assert rows["scaled trace at loss 1.3"][1] == (pytest.approx(1.8), 0.01)
    assert "loss at loss 1.3" not in rows
    notes = "\n".join(comparison.notes)
    assert "interpolated between epochs 6 (loss 1.5) and 9 (loss 1.2)" in notes
    assert "fsgld: checkpoint at epoch 9" in notes and "not metrics.jsonl's running" in notes


def test_a_given_loss_level_and_runs_that_cannot_meet_it(tmp_path):
    make_trajectory(tmp_path / "a", {3: 2.0, 6: 1.5, 9: 1.2}, scale=1.0)
    make_trajectory(tmp_path / "b", {3: 1.8, 6: 1.4, 9: 1.3}, scale=1.0)
    exact = compare([tmp_path / "a", tmp_path / "b"], matched_loss=1.5).matched
    assert not exact.points["a"].interpolated and exact.points["a"].before.epoch == 6
    assert exact.points["b"].weight == pytest.approx(0.75)  # between 1.8 and 1.4
    high = compare([tmp_path / "a", tmp_path / "b"], matched_loss=1.9).matched
    assert "already below the level" in high.points["b"]
    low = compare([tmp_path / "a", tmp_path / "b"], matched_loss="1.25").matched
    assert "never reaches the level" in low.points["b"]
    with pytest.raises(FlatscopeError, match="auto or a finite number"):
        compare([tmp_path / "a", tmp_path / "b"], matched_loss="lowest")
    make_run(tmp_path / "bare", 1.0)
    with pytest.raises(FlatscopeError, match="holds no checkpoints .* --checkpoint-every N"):
        compare([tmp_path / "a", tmp_path / "bare"], matched_loss="auto")
    (tmp_path / "bare" / "final.pt").write_bytes(b"")
    with pytest.raises(FlatscopeError, match="flatscope trajectory .* --every 1"):
        compare([tmp_path / "a", tmp_path / "bare"], matched_loss="auto")


# ------------------------------------------------------------------------ groups


def group_report(trace: float, scaled: float, **data) -> dict:
    header = {**HEADER, "data": {**HEADER["data"], **data}}
    metrics = {
        "loss": 1.0,
        "hessian_trace": {"value": trace, "stderr": 0.01},
        "scaled_trace": {"value": scaled, "stderr": 0.01},
    }
    return {**header, "metrics": metrics}


def test_groups_give_per_seed_values_ratios_intervals_and_seed_counts():
    sharp = [group_report(t, s) for t, s in ((700, 20), (760, 23), (810, 21))]
    flat = [group_report(t, s) for t, s in ((100, 9), (110, 10), (95, 8))]
    result = compare(groups={"fsgld": flat, "sgd": sharp})
    (pair,) = result.pairs
    tests = {test.measure: test for test in pair.tests}
    assert set(tests) == {"loss", "trace", "scaled trace"}
    trace = tests["trace"]
    assert trace.seeds == (3, 3) and trace.ratio == pytest.approx(305 / 2270)
    assert trace.interval[0] < trace.ratio < trace.interval[1] < 1
    assert pair.verdict(trace) == "lower" and pair.verdict(tests["loss"]) == "not established"
    table = result.table()
    assert "per-seed values (fsgld: fsgld/report 1, fsgld/report 2" in table
    assert "fsgld vs sgd: ratio of means over seeds" in table and "3, 3" in table
    document = result.to_dict()
    assert document["pairs"][0]["tests"][1]["seeds"] == [3, 3]
    assert "| trace | 101.7 ± 7.6 | 756.7 ± 55 | 3, 3 |" in result.markdown()


def test_groups_on_different_data_or_with_too_few_seeds_get_no_verdict():
    clean = [group_report(100 + k, 9) for k in range(3)]
    noisy = [
        group_report(700 + k, 20, label_noise=f"symmetric:rate=0.4,seed={k}") for k in range(3)
    ]
    refused = compare(groups={"a": clean, "b": noisy})
    assert {pair.verdict(test) for pair in refused.pairs for test in pair.tests} == {"refused"}
    assert any("label_noise (kind, rate) differs" in note for note in refused.notes)
    forced = compare(groups={"a": clean, "b": noisy}, force=True)
    assert forced.pairs[0].verdict(forced.pairs[0].tests[1]) == "lower"
    other_seeds = [
        group_report(700 + k, 20, label_noise=f"symmetric:rate=0.2,seed={k}") for k in range(3)
    ]
    same_kind = compare(groups={"a": other_seeds, "b": noisy})
    assert "refused" in {p.verdict(t) for p in same_kind.pairs for t in p.tests}
    noisy_too = [
        group_report(100 + k, 9, label_noise=f"symmetric:rate=0.4,seed={k + 3}") for k in range(3)
    ]
    seeds_differ = compare(groups={"a": noisy_too, "b": noisy})  # noise seeds may differ
    assert seeds_differ.pairs[0].verdict(seeds_differ.pairs[0].tests[1]) == "lower"
    few = compare(groups={"a": clean[:2], "b": noisy}, force=True)
    assert "at least 3 seeds per side" in few.pairs[0].tests[0].refused
    with pytest.raises(FlatscopeError, match="matches nothing"):
        compare(groups={"a": "no-such-run-*", "b": noisy})


def langevin_traces(runs: int, seed: int) -> tuple[list[float], list[float]]:
    """Cheap synthetic training runs: SGLD on ``sum_i a_i w_i^2 / 2 + w_i^4 / 4`` in 8
    dimensions from random starts; each run's exact final trace ``sum_i (a_i + 3 w_i^2)`` and
    scaled trace ``sum_i w_i^2 (a_i + 3 w_i^2)``."""
    generator = torch.Generator().manual_seed(seed)
    a = torch.linspace(0.5, 4.0, 8, dtype=torch.float64)
    w = torch.randn(runs, 8, generator=generator, dtype=torch.float64)
    lr, temperature = 0.02, 0.05
    for _ in range(200):
        noise = torch.randn(runs, 8, generator=generator, dtype=torch.float64)
        w = w - lr * (a * w + w**3) + math.sqrt(2 * lr * temperature) * noise
    curvature = a + 3 * w**2
    return curvature.sum(1).tolist(), (w**2 * curvature).sum(1).tolist()


def test_same_optimizer_groups_are_declared_different_at_most_at_the_nominal_rate():
    """Two groups of 3 runs of the same optimizer (other seeds), 400 times: each measure is
    declared different (Welch, 5%) in at most 5% of trials plus three binomial standard errors
    (1.1% for 400 trials); a true 30% shift is found most of the time."""
    trials, n = 400, 3
    traces, scaled = langevin_traces(trials * 2 * n, seed=0)
    declared = {"trace": 0, "scaled trace": 0}
    for k in range(trials):
        reports = [group_report(traces[i], scaled[i]) for i in range(2 * n * k, 2 * n * (k + 1))]
        (pair,) = compare(groups={"a": reports[:n], "b": reports[n:]}).pairs
        for test in pair.tests:
            if test.measure in declared:
                declared[test.measure] += pair.verdict(test) != "not established"
    bound = 0.05 + 3 * math.sqrt(0.05 * 0.95 / trials)
    for measure, count in declared.items():
        assert count / trials <= bound, (measure, count / trials)
    found = 0
    for k in range(50):
        reports = [group_report(traces[i], scaled[i]) for i in range(2 * n * k, 2 * n * (k + 1))]
        shifted = [
            group_report(1.3 * r["metrics"]["hessian_trace"]["value"], 1) for r in reports[n:]
        ]
        (pair,) = compare(groups={"a": reports[:n], "b": shifted}).pairs
        found += pair.verdict(pair.tests[1]) == "lower"
    assert found >= 40
