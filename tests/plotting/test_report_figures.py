"""Report figures: drawn from the stored numbers only, written atomically as PNG and PDF."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.container import ErrorbarContainer

from flatscope.errors import OutputError, ReportError
from flatscope.io import Report
from flatscope.linalg import eigenvalues, spectral_density, trace
from flatscope.linalg.density import SpectralDensity
from flatscope.operators import DenseOperator
from flatscope.plotting.report_figures import (
    DENSITY_FLOOR,
    density_figure,
    eigenvalue_figure,
    render_report,
    trace_figure,
)

SPECTRUM = torch.tensor([-1.0, 0.0, 0.0, 0.1, 0.2, 0.3, 5.0, 9.0], dtype=torch.float64)


@pytest.fixture(scope="module")
def metrics() -> dict:
    """Report metrics of a diagonal matrix with a known spectrum and two parameter blocks."""
    op = DenseOperator(
        torch.diag(SPECTRUM), blocks={"a.weight": slice(0, 5), "a.bias": slice(5, 8)}
    )
    return {
        "loss": 0.5,
        "hessian_trace": trace(op, "hutchinson", 12, seed=0, probe="gaussian").to_dict(),
        "top_eigenvalues": eigenvalues(op, 2, "largest", seed=0).to_dict(),
        "bottom_eigenvalues": eigenvalues(op, 1, "smallest", seed=0).to_dict(),
        "spectral_density": spectral_density(op, 8, 2, seed=0).to_dict(),
    }


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


def error_bars(ax) -> ErrorbarContainer:
    return next(c for c in ax.containers if isinstance(c, ErrorbarContainer))


def test_the_density_is_drawn_on_a_log_scale_with_the_extremes_marked(metrics):
    ax = density_figure(metrics).axes[0]
    assert ax.get_yscale() == "log"
    curve, *markers = ax.get_lines()
    density = SpectralDensity.from_dict(metrics["spectral_density"])
    grid = density.grid()
    expected = density.evaluate(grid).numpy()
    floor = DENSITY_FLOOR * expected.max()
    np.testing.assert_allclose(curve.get_xdata(), grid.numpy())
    np.testing.assert_allclose(curve.get_ydata(), np.where(expected >= floor, expected, np.nan))
    assert ax.get_ylim()[0] == pytest.approx(floor)
    assert f"σ = {density.default_width():.3g}" in ax.get_title()
    marked = sorted(line.get_xdata()[0] for line in markers)
    wanted = metrics["bottom_eigenvalues"]["values"] + metrics["top_eigenvalues"]["values"]
    assert marked == pytest.approx(sorted(wanted))


def test_eigenvalues_carry_their_residuals_as_error_bars(metrics):
    figure = eigenvalue_figure(metrics)
    for ax, name in zip(figure.axes, ["top_eigenvalues", "bottom_eigenvalues"], strict=True):
        container = error_bars(ax)
        values = container.lines[0].get_ydata()
        segments = container.lines[2][0].get_segments()
        np.testing.assert_allclose(values, metrics[name]["values"])
        half_widths = [(top[1] - bottom[1]) / 2 for bottom, top in segments]
        np.testing.assert_allclose(half_widths, metrics[name]["residuals"], atol=1e-12)


def test_per_block_traces_are_bars_with_standard_errors(metrics):
    ax = trace_figure(metrics).axes[0]
    per_block = metrics["hessian_trace"]["per_block"]
    assert [label.get_text() for label in ax.get_yticklabels()] == list(per_block)
    widths = [patch.get_width() for patch in ax.patches]
    np.testing.assert_allclose(widths, [value for value, _ in per_block.values()])
    segments = error_bars(ax).lines[2][0].get_segments()
    np.testing.assert_allclose(
        [(right[0] - left[0]) / 2 for left, right in segments],
        [stderr for _, stderr in per_block.values()],
    )


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
    with pytest.raises(ReportError, match="figure 'eigenvalues' are malformed"):
        render_report(report_document(broken), tmp_path)


def test_an_unwritable_directory_is_an_output_error(metrics, tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="cannot create"):
        render_report(report_document(metrics), tmp_path / "file" / "figures")
