"""flatscope.app.compare: shared rows with error bars, run directories, files and figures."""

from __future__ import annotations

import json

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
