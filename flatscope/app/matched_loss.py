"""Runs compared at equal training loss rather than at their last epoch.

A run that fits its (noisy) training labels further sits lower on the loss and, usually, in a
sharper region; comparing final checkpoints mixes "which optimizer" with "how far trained".
Here each run is looked at where its training loss first reaches a common level.

**Which loss.** The ``loss`` of each checkpoint's analysis report: the mean loss over the
analysed training samples with the labels the run trained on, in eval mode, exact (no sampling
noise), on the same samples as the Hessian. Not the ``train_loss`` of ``metrics.jsonl``: that
is a running mean over an epoch of minibatches while the weights move, in train mode (BatchNorm
batch statistics) and, for fSGLD, at the randomly perturbed weights, where it is higher by about
``(sigma^2 / 2) tr H`` — so it would match an fSGLD run at a lower true loss than the others.

**Where.** The checkpoints of a run and their reports, as ``flatscope trajectory RUN`` writes
them (``RUN/trajectory/reports/<checkpoint>/report.json``). A run needs intermediate
checkpoints (``flatscope train --checkpoint-every N``) and their analyses with the same settings
(``flatscope trajectory RUN --every 1``); the closer the checkpoints, the less the interpolation
below has to bridge.

**The level.** Given, or ``"auto"``: the lowest loss every run reaches, i.e. the largest of the
runs' lowest checkpoint losses (the best-fitted run's point is then checkpoint-exact for the run
that fits least). Each run's point is where its checkpoint losses first fall to the level: at a
checkpoint whose loss equals it, else **interpolated linearly in the loss** between the two
checkpoints around the crossing — every number ``m`` as ``(1 - t) m_i + t m_{i+1}``,
``t = (L_i - level) / (L_i - L_{i+1})`` — and stated as such. An interpolated error bar is
``(1 - t) e_i + t e_{i+1}``, an upper bound whatever the correlation of the two estimates. A run
whose first analysed checkpoint is already below the level, or that never reaches it, has no
point.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flatscope.app.entries import Entry
from flatscope.errors import FlatscopeError, ReportError
from flatscope.io.report import Report
from flatscope.io.run_folder import REPORT_NAME, run_checkpoints
from flatscope.io.tables import as_number, format_number
from flatscope.metrics import Cell, metric_of, ordered_entries

__all__ = [
    "LossPoint",
    "MatchedLoss",
    "MatchedPoint",
    "common_level",
    "loss_path",
    "match_level",
    "match_runs",
    "matched_rows",
    "seed_rows",
    "trajectory_report",
]

#: Where ``flatscope trajectory RUN`` keeps a checkpoint's report, below the run folder.
TRAJECTORY_REPORTS = Path("trajectory") / "reports"


def seed_rows(metrics: Mapping[str, Any]) -> dict[str, Cell]:
    """The headline rows of a report's metrics (:meth:`flatscope.metrics.Metric.seed_rows`)."""
    return {
        name: cell
        for entry, value in ordered_entries(metrics)
        for name, cell in metric_of(entry).seed_rows(entry, value).items()
        if cell[0] is not None
    }


@dataclass(frozen=True)
class LossPoint:
    """One analysed checkpoint of a run: its epoch, exact loss and headline rows."""

    epoch: int
    loss: float
    rows: dict[str, Cell]
    report: Path


@dataclass(frozen=True)
class MatchedPoint:
    """A run at the loss ``level``: at checkpoint ``before`` (``weight`` 0) or interpolated
    between ``before`` and ``after`` with weight ``weight`` on ``after``."""

    level: float
    before: LossPoint
    after: LossPoint
    weight: float
    rows: dict[str, Cell]

    @property
    def epoch(self) -> float:
        """The (interpolated) epoch of the point."""
        return (1 - self.weight) * self.before.epoch + self.weight * self.after.epoch

    @property
    def interpolated(self) -> bool:
        return self.before is not self.after

    def describe(self) -> str:
        """``checkpoint at epoch 15`` or ``interpolated between epochs 12 and 15 ...``."""
        if not self.interpolated:
            return f"checkpoint at epoch {self.before.epoch} (loss {format_number(self.level)})"
        return (
            f"interpolated between epochs {self.before.epoch} (loss "
            f"{format_number(self.before.loss)}) and {self.after.epoch} (loss "
            f"{format_number(self.after.loss)}), weight {self.weight:.2f} on the later"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "epoch": self.epoch,
            "interpolated": self.interpolated,
            "epochs": [self.before.epoch, self.after.epoch],
            "losses": [self.before.loss, self.after.loss],
            "weight": self.weight,
            "reports": [str(self.before.report), str(self.after.report)],
            "rows": {name: list(cell) for name, cell in self.rows.items()},
            "description": self.describe(),
        }


def trajectory_report(run_dir: str | os.PathLike, checkpoint: Path) -> Path:
    """Where ``flatscope trajectory`` keeps the report of one checkpoint of the run."""
    return Path(run_dir) / TRAJECTORY_REPORTS / checkpoint.stem / REPORT_NAME


def loss_path(run_dir: str | os.PathLike) -> list[LossPoint]:
    """The analysed checkpoints of a run in epoch order (module docs).

    Raises:
        FlatscopeError: no checkpoints, fewer than two analysed ones, or analyses made with
            different data, loss or settings (their losses would not be comparable).
    """
    run_dir = Path(run_dir)
    points, headers = [], []
    for checkpoint in run_checkpoints(run_dir):
        path = trajectory_report(run_dir, checkpoint.path)
        if not path.is_file():
            continue
        document = Report.load(path).to_dict()
        loss = as_number(document["metrics"].get("loss"))
        if loss is None:
            raise ReportError(f"{path} has no finite loss")
        headers.append({key: document.get(key) for key in ("data", "loss", "settings")})
        points.append(LossPoint(checkpoint.epoch, loss, seed_rows(document["metrics"]), path))
    if len(points) < 2:
        raise FlatscopeError(
            f"{run_dir}: matched-loss comparison needs the reports of at least two of its "
            f"checkpoints in {run_dir / TRAJECTORY_REPORTS}, found {len(points)}; train with "
            f"--checkpoint-every N and run: flatscope trajectory {run_dir} --every 1"
        )
    if any(header != headers[0] for header in headers):
        raise FlatscopeError(
            f"{run_dir}: its checkpoint reports were made with different data, loss or "
            f"settings, so their losses are not comparable; rerun flatscope trajectory {run_dir}"
        )
    return points


def common_level(paths: Mapping[str, Sequence[LossPoint]]) -> float:
    """The lowest loss every run reaches: the largest of the runs' lowest checkpoint losses."""
    return max(min(point.loss for point in path) for path in paths.values())


def _interpolate(before: Cell, after: Cell, weight: float) -> Cell:
    value = (1 - weight) * before[0] + weight * after[0]
    if before[1] is None or after[1] is None:
        return value, None
    return value, (1 - weight) * abs(before[1]) + weight * abs(after[1])


def match_level(path: Sequence[LossPoint], level: float) -> MatchedPoint | str:
    """The run at the loss ``level`` (module docs), or why it has no such point."""
    first = path[0]
    if first.loss < level:
        return (
            f"its first analysed checkpoint (epoch {first.epoch}) is already below the level "
            f"(loss {format_number(first.loss)})"
        )
    for before, after in zip(path, path[1:], strict=False):
        if before.loss == level:
            return MatchedPoint(level, before, before, 0.0, dict(before.rows))
        if after.loss <= level:
            weight = (before.loss - level) / (before.loss - after.loss)
            if after.loss == level:
                return MatchedPoint(level, after, after, 0.0, dict(after.rows))
            shared = [name for name in before.rows if name in after.rows]
            rows = {n: _interpolate(before.rows[n], after.rows[n], weight) for n in shared}
            return MatchedPoint(level, before, after, weight, rows)
    if path[-1].loss == level:
        return MatchedPoint(level, path[-1], path[-1], 0.0, dict(path[-1].rows))
    lowest = min(point.loss for point in path)
    return f"it never reaches the level (lowest loss {format_number(lowest)})"


def matched_rows(point: MatchedPoint) -> dict[str, Cell]:
    """The point's rows renamed ``"<row> at loss <level>"`` (the loss row itself dropped)."""
    suffix = f" at loss {point.level:.4g}"
    return {name + suffix: cell for name, cell in point.rows.items() if name != "loss"}


# ------------------------------------------------------------------- matched loss


@dataclass
class MatchedLoss:
    """Runs at a common training loss (:mod:`flatscope.app.matched_loss`).

    Attributes:
        level: the loss level.
        chosen: how the level was chosen (given, or the lowest loss every run reaches).
        points: each run's point at the level, or why it has none, by label.
    """

    level: float
    chosen: str
    points: dict[str, MatchedPoint | str]

    def rows(self, label: str) -> dict[str, Cell]:
        """The run's rows at the level (none when it has no point)."""
        point = self.points.get(label)
        return matched_rows(point) if isinstance(point, MatchedPoint) else {}

    def notes(self) -> list[str]:
        """The level, which loss it is, and where each run meets it."""
        lines = [
            f"matched loss {self.level:.4g} ({self.chosen}): the exact mean loss of each "
            "checkpoint's analysis (analysed samples, the labels trained on, eval mode), not "
            "metrics.jsonl's running train_loss (fSGLD's is taken at perturbed weights)"
        ]
        for label, point in self.points.items():
            where = point.describe() if isinstance(point, MatchedPoint) else f"no point: {point}"
            lines.append(f"at loss {self.level:.4g}, {label}: {where}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "chosen": self.chosen,
            "points": {
                label: p.to_dict() if isinstance(p, MatchedPoint) else {"missing": p}
                for label, p in self.points.items()
            },
        }


def match_runs(entries: Sequence[Entry], level: float | str = "auto") -> MatchedLoss:
    """Each run of ``entries`` at a common loss ``level`` (a number, or ``"auto"``: the lowest
    loss every run reaches); see :mod:`flatscope.app.matched_loss`.

    Raises:
        FlatscopeError: an entry is not a run folder, a run lacks checkpoint analyses, or a bad
            level.
    """
    paths = {}
    for entry in entries:
        if entry.run_dir is None:
            raise FlatscopeError(
                f"{entry.label}: matched-loss comparison needs run directories (with "
                "checkpoints and their trajectory reports), not reports"
            )
        paths[entry.label] = loss_path(entry.run_dir)
    if level == "auto":
        value, chosen = common_level(paths), "auto: the lowest loss every run reaches"
    else:
        value = as_number(level) if not isinstance(level, str) else _parse_level(level)
        if value is None:
            raise FlatscopeError(f"--matched-loss must be auto or a finite number, got {level!r}")
        chosen = "given"
    points = {label: match_level(path, value) for label, path in paths.items()}
    return MatchedLoss(value, chosen, points)


def _parse_level(text: str) -> float | None:
    try:
        return as_number(float(text))
    except ValueError:
        return None
