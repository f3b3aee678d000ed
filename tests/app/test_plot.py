"""render_report: every figure the registry's metrics draw, from a report's numbers alone."""

from __future__ import annotations

import pytest

from flatscope.app.plot import render_report
from flatscope.errors import OutputError, ReportError
from flatscope.io import Report
from tests.plotting.test_report_figures import known_spectrum_metrics


@pytest.fixture(scope="module")
def metrics() -> dict:
    return known_spectrum_metrics()


def report_document(metrics: dict) -> dict:
    header = {
        "checkpoint": {"path": None, "sha256": None},
        "model": "diag",
        "data": {"spec": "none", "num_samples": 1},
        "loss": "none",
        "settings": {"seed": 0},
    }
    report = Report.new(header)
    for name, value in metrics.items():
        report.set_metric(name, value, 0.0)
    return report.to_dict()


def test_render_writes_png_and_pdf_of_each_figure_reproducibly_and_nothing_else(metrics, tmp_path):
    document = report_document(metrics)
    paths = render_report(document, tmp_path / "a")
    names = sorted(path.name for path in paths)
    assert names == sorted(
        f"{stem}.{ext}"
        for stem in ("spectral_density", "eigenvalues", "trace_per_block")
        for ext in ("png", "pdf")
    )
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == names  # no temporary files
    for path in paths:
        assert path.read_bytes().startswith(b"\x89PNG" if path.suffix == ".png" else b"%PDF")
    again = render_report(document, tmp_path / "b")
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in paths]


def test_a_report_file_renders_next_to_itself_and_missing_metrics_are_skipped(metrics, tmp_path):
    only_trace = {"loss": 0.5, "hessian_trace": metrics["hessian_trace"]}
    report = Report(report_document(only_trace), tmp_path / "report.json")
    report.save()
    paths = render_report(tmp_path / "report.json")
    assert sorted(p.name for p in paths) == ["trace_per_block.pdf", "trace_per_block.png"]
    assert all(p.parent == tmp_path for p in paths)


def test_nothing_to_draw_writes_nothing(tmp_path):
    assert render_report(report_document({"loss": 0.5}), tmp_path / "empty") == []
    assert not (tmp_path / "empty").exists()


def test_malformed_numbers_are_a_report_error(metrics, tmp_path):
    broken = dict(metrics)
    broken["top_eigenvalues"] = {"values": [1.0, 2.0]}
    with pytest.raises(ReportError, match="eigenvalues figures are malformed"):
        render_report(report_document(broken), tmp_path)


def test_an_unwritable_directory_is_an_output_error(metrics, tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="cannot create"):
        render_report(report_document(metrics), tmp_path / "file" / "figures")
