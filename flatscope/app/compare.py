"""Reports side by side: a table of every shared metric with its error bar, and figures.

:func:`compare` reads analysis reports (``report.json`` files, directories holding one, or
training run directories) and lines up every number they share; each metric of the registry
(:mod:`flatscope.metrics`) names its rows:

=====================  ====================================================================
row                    value ± error
=====================  ====================================================================
loss, gradient norm    exact over the analysed data (no error bar)
trace                  ``tr H`` ± its standard error
top/bottom eigenvalue  Ritz value ± its residual norm, a bound on the distance to an
                       eigenvalue of the symmetric Hessian (:mod:`flatscope.metrics.criteria`)
sharpness              average-case (Gaussian) sharpness ± its Monte Carlo standard error and
                       its second-order prediction ``(sigma^2 / 2) tr H`` ± error; worst-case
                       sharpness (a lower bound from projected ascent, no error bar)
diagonal sum           the Hutchinson diagonal's sum (another estimate of ``tr H``)
final accuracy         a run directory's last ``metrics.jsonl`` record (train/val/test)
trace[block]           per-parameter-tensor traces (markdown only: they can be many)
=====================  ====================================================================

scaled trace, normalized trace, scaled top eigenvalue and adaptive sharpness are the
scale-invariant measures of :mod:`flatscope.metrics.scaled_trace` and its siblings. Every ± is
the estimator's error for one checkpoint: it says nothing about the spread between training
runs. For that compare groups of runs, one per seed (``groups=``, ``flatscope compare --group``;
:mod:`flatscope.app.groups`), which gives per-seed values, ratios of means with intervals over
seeds and Welch's test (:mod:`flatscope.app.seed_statistics`).

``matched_loss`` adds the rows of each run at a common training loss (``"auto"`` or a level):
each run's checkpoint, or the interpolation between two checkpoints, where the exact loss of
its checkpoint analyses first reaches the level (:mod:`flatscope.app.matched_loss`; a run needs
``flatscope train --checkpoint-every N`` and ``flatscope trajectory RUN --every 1``).

A run directory (``config.json``, ``metrics.jsonl``, ``final.pt`` as
:func:`flatscope.training.trainer.train` writes it) contributes the report of its final
checkpoint, looked up in :data:`RUN_REPORTS` order: ``RUN_DIR/analysis/report.json`` (what
``flatscope analyze RUN_DIR/final.pt --out RUN_DIR/analysis`` writes), the final report of
``flatscope trajectory RUN_DIR``, or, for ``DEMO/runs/NAME`` of ``flatscope demo``,
``DEMO/analysis/NAME/report.json``. 1-D loss-landscape slices saved next to a report (``*.npz``
in its directory or its ``landscape/`` subdirectory, as :meth:`LandscapeResult.save_npz`
writes them) are overlaid in a figure.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flatscope.app.matched_loss import (
    MatchedPoint,
    common_level,
    loss_path,
    match_level,
    matched_rows,
)
from flatscope.errors import FlatscopeError, ReportError, preview
from flatscope.io.atomic import atomic_write
from flatscope.io.output import make_output_dir
from flatscope.io.report import Report, to_jsonable
from flatscope.io.run_folder import REPORT_NAME, RUN_REPORTS, is_run_folder, read_records
from flatscope.io.tables import as_number, format_number, format_table
from flatscope.metrics import Cell, metric_of, ordered_entries

if TYPE_CHECKING:
    from flatscope.app.groups import GroupComparison

__all__ = [
    "Comparison",
    "Entry",
    "MatchedLoss",
    "compare",
    "find_report",
    "landscape_slices",
    "load_entry",
    "load_entries",
    "lookup",
    "match_runs",
    "provenance_notes",
    "metric_rows",
    "write_comparison",
]

_RUN_FIELDS = ("train_loss", "train_acc", "val_acc", "test_acc")


# ---------------------------------------------------------------------------- the rows


def metric_rows(metrics: Mapping[str, Any]) -> dict[str, Cell]:
    """Every number of a report's metrics as ``{row name: (value, error)}``, in the order of
    the registry (:mod:`flatscope.metrics`): each metric names its rows."""
    return {
        name: cell
        for entry, value in ordered_entries(metrics)
        for name, cell in metric_of(entry).rows(entry, value).items()
    }


def _block_rows(metrics: Mapping[str, Any]) -> dict[str, Cell]:
    return {
        name: cell
        for entry, value in ordered_entries(metrics)
        for name, cell in metric_of(entry).block_rows(entry, value).items()
    }


# ------------------------------------------------------------------------- the inputs


@dataclass
class Entry:
    """One compared report.

    Attributes:
        label: its column title.
        document: the report's JSON document.
        path: the report file (``None`` for an in-memory report).
        run_dir: the training run it belongs to, when given as a run directory.
        run_record: that run's last ``metrics.jsonl`` record, else ``None``.
    """

    label: str
    document: dict[str, Any]
    path: Path | None = None
    run_dir: Path | None = None
    run_record: dict[str, Any] | None = None

    @property
    def metrics(self) -> dict[str, Any]:
        return self.document["metrics"]

    def rows(self) -> dict[str, Cell]:
        """The report's rows and, for a run, its final train/val/test numbers."""
        rows = metric_rows(self.metrics)
        record = self.run_record or {}
        for name in _RUN_FIELDS:
            if as_number(record.get(name)) is not None:
                rows[f"final {name.replace('_', ' ')} (run)"] = (float(record[name]), None)
        return rows


def find_report(path: str | os.PathLike) -> tuple[Path, Path | None]:
    """The report file that ``path`` names and the run directory it belongs to (or ``None``).

    ``path`` is a report file, a directory holding ``report.json``, or a run directory (see
    :data:`RUN_REPORTS`).

    Raises:
        ReportError: nothing there, or a run directory without a report of its final checkpoint.
    """
    path = Path(path)
    if path.is_file():
        return path, None
    if not path.is_dir():
        raise ReportError(f"{path} does not exist; pass a report.json or a run directory")
    if (path / REPORT_NAME).is_file():
        return path / REPORT_NAME, None
    if is_run_folder(path):
        for pattern in RUN_REPORTS:
            candidate = path / pattern.format(name=path.resolve().name)
            if candidate.is_file():
                return candidate, path
        raise ReportError(
            f"run directory {path} has no report of its final checkpoint (looked for "
            f"{', '.join(RUN_REPORTS)}); run: flatscope analyze {path / 'final.pt'} "
            f"--out {path / 'analysis'}"
        )
    raise ReportError(f"{path} holds neither {REPORT_NAME} nor a training run")


def _last_record(run_dir: Path) -> dict[str, Any] | None:
    records = read_records(run_dir)
    return records[max(records)] if records else None


def load_entry(path: str | os.PathLike, label: str | None = None) -> Entry:
    """Read the report that ``path`` names (see :func:`find_report`) into an :class:`Entry`.

    The label defaults to the run directory's name, else the report's directory name (for
    ``report.json``) or file stem.
    """
    report_path, run_dir = find_report(path)
    document = Report.load(report_path).to_dict()
    if label is None:
        if run_dir is not None:
            label = run_dir.resolve().name
        elif report_path.name == REPORT_NAME:
            label = report_path.resolve().parent.name
        else:
            label = report_path.stem
    record = None if run_dir is None else _last_record(run_dir)
    return Entry(label, document, report_path, run_dir, record)


def _unique(labels: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if labels.count(label) == 1 else f"{label} ({seen[label]})")
    return out


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


# ------------------------------------------------------------------------ comparison


@dataclass
class Comparison:
    """Reports side by side.

    Attributes:
        entries: the compared reports, in order.
        rows: ``(row name, one cell per entry)`` for every row all entries share.
        block_rows: the same for the per-block traces.
        notes: rows left out because some report lacks them, and inputs that differ.
        matched: the runs at a common training loss, when asked for.
    """

    entries: list[Entry]
    rows: list[tuple[str, list[Cell]]]
    block_rows: list[tuple[str, list[Cell]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    matched: MatchedLoss | None = None

    @property
    def labels(self) -> list[str]:
        return [entry.label for entry in self.entries]

    def table(self, markdown: bool = False, blocks: bool = False) -> str:
        """The shared rows (and, with ``blocks``, the per-block traces) as a table."""
        rows = self.rows + (self.block_rows if blocks else [])
        body = [[name, *(format_number(*cell) for cell in cells)] for name, cells in rows]
        return format_table(["metric", *self.labels], body, markdown)

    def markdown(self) -> str:
        """A markdown document: the sources, the table with per-block traces, the notes."""
        lines = ["# flatscope comparison", ""]
        lines += [
            f"- **{entry.label}**: `{entry.path}` (checkpoint "
            f"`{entry.document.get('checkpoint', {}).get('path')}`)"
            for entry in self.entries
        ]
        lines += ["", self.table(markdown=True, blocks=True), "", ERROR_NOTE]
        lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """Labels, sources and every shared row as plain JSON values."""

        def cells(rows: list[tuple[str, list[Cell]]]) -> dict[str, Any]:
            return {
                name: {label: list(cell) for label, cell in zip(self.labels, row, strict=True)}
                for name, row in rows
            }

        return to_jsonable(
            {
                "labels": self.labels,
                "sources": {e.label: None if e.path is None else str(e.path) for e in self.entries},
                "rows": cells(self.rows),
                "per_block_trace": cells(self.block_rows),
                "matched_loss": None if self.matched is None else self.matched.to_dict(),
                "notes": self.notes,
            }
        )


ERROR_NOTE = (
    "± is a standard error for estimates (trace, scaled traces, sharpness) and a residual-norm "
    "bound for eigenvalues; loss, gradient norm and accuracies are exact. Each ± covers one "
    "checkpoint's estimator noise only, not the spread between training runs: compare groups "
    "of seeds (--group) for that."
)


def _shared(
    per_entry: list[dict[str, Cell]], labels: list[str], notes: list[str]
) -> list[tuple[str, list[Cell]]]:
    order = list(dict.fromkeys(name for rows in per_entry for name in rows))
    shared, partial = [], []
    for name in order:
        cells = [rows.get(name) for rows in per_entry]
        if all(cell is not None and cell[0] is not None for cell in cells):
            shared.append((name, cells))
        else:
            having = [label for label, cell in zip(labels, cells, strict=True) if cell]
            partial.append(f"{name} (only {', '.join(having)})")
    if partial:
        notes.append(f"not in every report: {preview(partial, limit=8, separator='; ')}")
    return shared


#: Header fields whose differences a comparison notes: ``(keys, what a difference means)``.
_PROVENANCE = (
    (("data", "spec"), "different data"),
    (("data", "split"), "different splits"),
    (("data", "num_samples"), "different numbers of samples"),
    (("data", "label_noise"), "different label noise"),
    (("data", "labels_sha256"), "different labels"),
    (("data", "indices_sha256"), "different samples"),
    (("loss",), "different losses"),
    (("settings", "params"), "different parameters"),
)


def lookup(document: Mapping[str, Any], keys: Sequence[str]) -> Any:
    """``document[k1][k2]...``, ``None`` where a level is missing."""
    value: Any = document
    for key in keys:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def provenance_notes(documents: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One note per header field on which the labelled reports differ, saying what it means
    (different data, labels, samples, loss ...): their numbers describe different objectives."""
    notes = []
    for keys, meaning in _PROVENANCE:
        values = {label: lookup(document, keys) for label, document in documents.items()}
        if len({repr(value) for value in values.values()}) > 1:
            if keys[-1].endswith("sha256"):  # a prefix tells them apart
                values = {k: v[:12] if isinstance(v, str) else v for k, v in values.items()}
            listed = ", ".join(f"{label}: {value!r}" for label, value in values.items())
            notes.append(f"{'.'.join(keys)} differs ({listed}): {meaning}")
    return notes


def load_entries(
    inputs: Sequence[str | os.PathLike | Report | Mapping[str, Any]],
    labels: Sequence[str] | None = None,
) -> list[Entry]:
    """An :class:`Entry` per input (paths as :func:`load_entry` reads them, or in-memory
    reports), with labels made unique.

    Raises:
        ReportError: an input is not a readable report. ValueError: ``labels`` of another
            length. TypeError: an input is neither a path nor a report.
    """
    if labels is not None and len(labels) != len(inputs):
        raise ValueError(f"got {len(labels)} labels for {len(inputs)} inputs")
    entries = []
    for index, item in enumerate(inputs):
        label = None if labels is None else labels[index]
        if isinstance(item, (str, os.PathLike)):
            entries.append(load_entry(item, label))
        elif isinstance(item, Report):
            entries.append(Entry(label or f"report {index + 1}", item.to_dict(), item.path))
        elif isinstance(item, Mapping) and isinstance(item.get("metrics"), Mapping):
            entries.append(Entry(label or f"report {index + 1}", dict(item)))
        else:
            raise TypeError(f"input {index + 1} is not a report or a path: {item!r:.80}")
    for entry, label in zip(entries, _unique([e.label for e in entries]), strict=True):
        entry.label = label
    return entries


def compare(
    inputs: Sequence[str | os.PathLike | Report | Mapping[str, Any]] = (),
    labels: Sequence[str] | None = None,
    *,
    groups: Mapping[str, Any] | None = None,
    matched_loss: float | str | None = None,
    confidence: float = 0.95,
    force: bool = False,
) -> Comparison | GroupComparison:
    """Line up the shared metrics of several reports (module docs), or compare groups of runs.

    Args:
        inputs: report files, directories holding ``report.json``, run directories, or
            in-memory reports (:class:`~flatscope.io.report.Report` or their ``to_dict()``).
        labels: column titles (default: see :func:`load_entry`; ``report i`` in memory).
        groups: instead of ``inputs``, ``{name: runs}`` with runs a path, a glob or a list of
            them (or of in-memory reports), one run per seed: returns the optimizer-level
            :class:`~flatscope.app.groups.GroupComparison` of every pair of groups.
        matched_loss: also compare the runs at a common training loss: ``"auto"`` or a
            level (:func:`match_runs`).
        confidence: with ``groups``, the level of the intervals and tests over seeds.
        force: with ``groups``, give verdicts even across groups analysed on different data.

    Raises:
        ReportError: an input is not a readable report (one line naming it).
        FlatscopeError: fewer than two inputs or groups, a run without the reports that
            matched loss needs. ValueError: ``labels`` of another length.
    """
    if groups is not None:
        from flatscope.app.groups import compare_groups

        if inputs:
            raise FlatscopeError("give reports to compare or groups of runs, not both")
        return compare_groups(groups, matched_loss, confidence=confidence, force=force)
    if len(inputs) < 2:
        raise FlatscopeError(f"compare needs at least two reports, got {len(inputs)}")
    entries = load_entries(inputs, labels)
    labels_now = [entry.label for entry in entries]
    notes = provenance_notes({entry.label: entry.document for entry in entries})
    matched = None if matched_loss is None else match_runs(entries, matched_loss)
    per_entry = [
        {**entry.rows(), **({} if matched is None else matched.rows(entry.label))}
        for entry in entries
    ]
    rows = _shared(per_entry, labels_now, notes)
    block_rows = _shared([_block_rows(entry.metrics) for entry in entries], labels_now, [])
    if matched is not None:
        notes += matched.notes()
    return Comparison(entries, rows, block_rows, notes, matched)


def landscape_slices(entry: Entry) -> list[Any]:
    """The 1-D landscape slices saved next to an entry's report (module docs), labelled."""
    from flatscope.landscape.surface import LandscapeResult

    if entry.path is None:
        return []
    folder = entry.path.parent
    found = []
    for path in sorted([*folder.glob("*.npz"), *folder.glob("landscape/*.npz")]):
        try:
            result = LandscapeResult.load_npz(path)
        except FlatscopeError:
            continue
        if result.dims == 1:
            found.append(result)
    return found


def write_comparison(
    comparison: Comparison | GroupComparison, out: str | os.PathLike
) -> list[Path]:
    """Write ``comparison.md``, ``comparison.json`` and the figures (of every compared run)
    into ``out``.

    Raises:
        OutputError: ``out`` cannot be written.
    """
    from flatscope.plotting.comparison_figures import render_comparison

    out = Path(out)
    make_output_dir(out)
    files = {
        out / "comparison.md": comparison.markdown(),
        out / "comparison.json": json.dumps(comparison.to_dict(), indent=2) + "\n",
    }
    for path, text in files.items():
        atomic_write(path, lambda file, text=text: file.write(text.encode("utf-8")))
    metrics = {entry.label: entry.metrics for entry in comparison.entries}
    slices = {entry.label: landscape_slices(entry) for entry in comparison.entries}
    return [*files, *render_comparison(metrics, out, slices)]
