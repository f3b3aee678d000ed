"""Flatness over training: one analysis report per checkpoint of a run, against epoch.

:func:`trajectory` walks the checkpoints of a run directory written by
:func:`flatscope.training.trainer.train` (``checkpoints/epoch_NNNN.pt`` and ``final.pt``),
keeps every ``every``-th one (always the last), and asks ``report_for(checkpoint, report_dir)``
for each one's report, stored as ``OUT/reports/<checkpoint stem>/report.json``. The command line
passes a ``report_for`` that runs :func:`flatscope.app.analyze.analyze` with ``resume=True`` there,
so a report made from the same checkpoint (SHA-256), data, loss and settings is reused as it is
and a partial one is completed; a point whose report file was left untouched counts as reused.

Each point joins the report's numbers (loss and gradient norm on the analysed data, Hessian
trace ± standard error, top eigenvalue ± residual bound) with the run's ``metrics.jsonl`` record
of the same epoch (train loss and accuracy on the labels trained on, val/test accuracy on clean
labels). The result is written as ``trajectory.json``, ``trajectory.md`` and the figure
``trajectory.png``/``.pdf`` (:func:`flatscope.plotting.comparison_figures.trajectory_figure`):
the evolution of sharpness over training (Jastrzebski et al., "The Break-Even Point on
Optimization Trajectories of Deep Neural Networks", ICLR 2020, follow the top eigenvalue the
same way).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from flatscope.errors import FlatscopeError
from flatscope.io.atomic import atomic_write
from flatscope.io.output import make_output_dir
from flatscope.io.report import Report, to_jsonable
from flatscope.io.run_folder import (
    REPORT_NAME,
    RunCheckpoint,
    read_records,
    run_checkpoints,
)
from flatscope.io.tables import as_number, format_number, format_table
from flatscope.metrics.criteria import eigenvalue_interval

__all__ = [
    "RunCheckpoint",
    "Trajectory",
    "TrajectoryPoint",
    "select_checkpoints",
    "trajectory",
]

REPORTS_DIR = "reports"

ReportFor = Callable[[Path, Path], Report | Mapping[str, Any]]


def select_checkpoints(checkpoints: list[RunCheckpoint], every: int) -> list[RunCheckpoint]:
    """Every ``every``-th checkpoint from the first, and always the last one."""
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise FlatscopeError(f"--every must be an integer >= 1, got {every!r}")
    chosen = checkpoints[::every]
    if checkpoints and chosen[-1] is not checkpoints[-1]:
        chosen.append(checkpoints[-1])
    return chosen


@dataclass(frozen=True)
class TrajectoryPoint:
    """The numbers of one checkpoint (``None`` where its report or record lacks them)."""

    epoch: int
    checkpoint: str
    report: str
    reused: bool
    loss: float | None
    gradient_norm: float | None
    trace: float | None
    trace_stderr: float | None
    top_eigenvalue: float | None
    top_residual: float | None
    train_loss: float | None
    train_acc: float | None
    val_acc: float | None
    test_acc: float | None


_COLUMNS = (
    ("epoch", "epoch"),
    ("loss", "loss"),
    ("trace", "trace"),
    ("top eigenvalue", "top_eigenvalue"),
    ("train loss", "train_loss"),
    ("train acc", "train_acc"),
    ("test acc", "test_acc"),
    ("report", "reused"),
)


def _point_cells(point: TrajectoryPoint) -> list[str]:
    return [
        str(point.epoch),
        format_number(point.loss),
        format_number(point.trace, point.trace_stderr),
        format_number(point.top_eigenvalue, point.top_residual),
        format_number(point.train_loss),
        format_number(point.train_acc),
        format_number(point.test_acc),
        "reused" if point.reused else "computed",
    ]


@dataclass
class Trajectory:
    """The analysed checkpoints of a run, in epoch order, and where they were written."""

    run_dir: Path
    out: Path
    points: list[TrajectoryPoint]

    @property
    def computed(self) -> list[str]:
        """Checkpoints whose report was computed (or completed) in this call."""
        return [p.checkpoint for p in self.points if not p.reused]

    @property
    def reused(self) -> list[str]:
        """Checkpoints whose stored report was reused unchanged."""
        return [p.checkpoint for p in self.points if p.reused]

    def table(self, markdown: bool = False) -> str:
        """One row per checkpoint: epoch, loss, trace, top eigenvalue, accuracies."""
        rows = [_point_cells(point) for point in self.points]
        return format_table([title for title, _ in _COLUMNS], rows, markdown)

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(
            {
                "run_dir": str(self.run_dir),
                "points": [asdict(point) for point in self.points],
            }
        )


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    return status.st_mtime_ns, status.st_size


def _top(metrics: Mapping[str, Any]) -> tuple[float | None, float | None]:
    interval = eigenvalue_interval(metrics.get("top_eigenvalues"), "largest")
    if interval is None:
        return None, None
    return interval[0], interval[1] - interval[0]


def _point(
    checkpoint: RunCheckpoint,
    report_path: Path,
    reused: bool,
    metrics: Mapping[str, Any],
    record: Mapping[str, Any],
) -> TrajectoryPoint:
    trace = metrics.get("hessian_trace") or {}
    top, residual = _top(metrics)
    return TrajectoryPoint(
        epoch=checkpoint.epoch,
        checkpoint=str(checkpoint.path),
        report=str(report_path),
        reused=reused,
        loss=as_number(metrics.get("loss")),
        gradient_norm=as_number(metrics.get("gradient_norm")),
        trace=as_number(trace.get("value")),
        trace_stderr=as_number(trace.get("stderr")),
        top_eigenvalue=top,
        top_residual=residual,
        train_loss=as_number(record.get("train_loss")),
        train_acc=as_number(record.get("train_acc")),
        val_acc=as_number(record.get("val_acc")),
        test_acc=as_number(record.get("test_acc")),
    )


def trajectory(
    run_dir: str | os.PathLike,
    report_for: ReportFor,
    *,
    every: int = 1,
    out: str | os.PathLike | None = None,
    figures: bool = True,
) -> Trajectory:
    """Analyse every ``every``-th checkpoint of a run and write the trajectory (module docs).

    Args:
        run_dir: the run directory.
        report_for: ``report_for(checkpoint_path, report_dir)`` makes or reuses the report of a
            checkpoint in ``report_dir/report.json`` and returns it (a
            :class:`~flatscope.io.report.Report` or its ``to_dict()``); it should reuse a valid
            report there, e.g. with ``flatscope.app.analyze(..., out=report_dir, resume=True)``.
        every: analyse checkpoints ``0, every, 2 every, ...`` of the epoch-ordered list (and the
            last).
        out: the output directory (default ``RUN_DIR/trajectory``).
        figures: also draw ``trajectory.png`` and ``trajectory.pdf``.

    Raises:
        FlatscopeError: no run or no checkpoints there, a corrupt ``config.json``, a bad
            ``every``. OutputError: ``out`` cannot be written (each report is written when it
            is finished, the trajectory files at the end).
    """
    run_dir = Path(run_dir)
    chosen = select_checkpoints(run_checkpoints(run_dir), every)
    out = run_dir / "trajectory" if out is None else Path(out)
    records = read_records(run_dir)
    points = []
    for checkpoint in chosen:
        report_dir = out / REPORTS_DIR / checkpoint.path.stem
        report_path = report_dir / REPORT_NAME
        before = _stamp(report_path)
        report = report_for(checkpoint.path, report_dir)
        document = report.to_dict() if isinstance(report, Report) else report
        reused = before is not None and before == _stamp(report_path)
        record = records.get(checkpoint.epoch, {})
        points.append(_point(checkpoint, report_path, reused, document["metrics"], record))
    result = Trajectory(run_dir, out, points)
    make_output_dir(out)
    text = json.dumps(result.to_dict(), indent=2) + "\n"
    atomic_write(out / "trajectory.json", lambda file: file.write(text.encode("utf-8")))
    markdown = f"# Trajectory of {run_dir}\n\n{result.table(markdown=True)}\n"
    atomic_write(out / "trajectory.md", lambda file: file.write(markdown.encode("utf-8")))
    if figures:
        from flatscope.plotting.comparison_figures import trajectory_figure
        from flatscope.plotting.report_figures import save_figure

        save_figure(trajectory_figure(points), out / "trajectory")
    return result
