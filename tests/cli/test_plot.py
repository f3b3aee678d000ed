"""``flatscope plot``: figures re-rendered from a report alone; bad reports are one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flatscope.app.analyze import analyze
from flatscope.cli import main
from flatscope.data import load_data
from flatscope.models import build_model

REPO = Path(__file__).resolve().parents[2]
FIGURES = sorted(
    f"{stem}.{ext}"
    for stem in ("spectral_density", "eigenvalues", "trace_per_block")
    for ext in ("png", "pdf")
)


@pytest.fixture(scope="module")
def report_path(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("plot") / "analysis"
    analyze(
        build_model("mlp:hidden=4,depth=1", seed=0),
        "cross_entropy",
        load_data("digits", "train", subset=32),
        "trace,eigenvalues,density",
        out=out,
        figures=False,
        progress=False,
        num_matvecs=6,
        top_k=2,
        density_steps=4,
    )
    return out / "report.json"


def test_plot_in_a_subprocess_renders_every_figure(report_path, tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    out = tmp_path / "figures"
    result = subprocess.run(
        [sys.executable, "-m", "flatscope", "plot", str(report_path), "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert sorted(Path(line).name for line in result.stdout.splitlines()) == FIGURES
    assert sorted(p.name for p in out.iterdir()) == FIGURES


def test_plot_defaults_to_the_report_directory(report_path, capsys):
    assert main(["plot", str(report_path)]) == 0
    assert capsys.readouterr().err == ""
    assert sorted(p.name for p in report_path.parent.iterdir()) == sorted([*FIGURES, "report.json"])


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d, r: d / "missing.json", "report not found"),
        (lambda d, r: d, "is a directory, not a report file"),
        (lambda d, r: write(d / "bad.json", "{not json"), "is not valid JSON"),
        (
            lambda d, r: write(d / "other.json", '{"schema": "other/1"}'),
            "is not a flatscope report",
        ),
        (
            lambda d, r: write(
                d / "future.json", r.read_text().replace("flatscope.report/1", "flatscope.report/2")
            ),
            "uses report schema version 2",
        ),
        (
            lambda d, r: write(
                d / "empty.json",
                json.dumps({**json.loads(r.read_text()), "metrics": {"loss": 1.0}}),
            ),
            "holds no metric with a figure",
        ),
    ],
)
def test_bad_reports_are_one_line_errors_and_write_nothing(
    report_path, tmp_path, capsys, make, message
):
    source = make(tmp_path, report_path)
    out = tmp_path / "figures"
    assert main(["plot", str(source), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("flatscope: error: ") and captured.err.count("\n") == 1
    assert message in captured.err
    assert not out.exists()


def test_an_unwritable_output_is_a_one_line_error(report_path, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert main(["plot", str(report_path), "--out", str(tmp_path / "file" / "figures")]) == 2
    assert "cannot create" in capsys.readouterr().err
