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
from typing import Any

from flatscope.errors import FlatscopeError, ReportError, preview
from flatscope.io.atomic import atomic_write
from flatscope.io.output import make_output_dir
from flatscope.io.report import Report, to_jsonable
from flatscope.io.run_folder import REPORT_NAME, RUN_REPORTS, is_run_folder, read_records
from flatscope.io.tables import as_number, format_number, format_table
from flatscope.metrics import Cell, metric_of, ordered_entries

__all__ = [
    "Comparison",
    "Entry",
    "compare",
    "find_report",
    "landscape_slices",
    "load_entry",
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


# ------------------------------------------------------------------------ comparison


@dataclass
class Comparison:
    """Reports side by side.

    Attributes:
        entries: the compared reports, in order.
        rows: ``(row name, one cell per entry)`` for every row all entries share.
        block_rows: the same for the per-block traces.
        notes: rows left out because some report lacks them, and inputs that differ.
    """

    entries: list[Entry]
    rows: list[tuple[str, list[Cell]]]
    block_rows: list[tuple[str, list[Cell]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

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
                "notes": self.notes,
            }
        )


ERROR_NOTE = (
    "± is a standard error for estimates (trace, sharpness) and a residual-norm bound for "
    "eigenvalues; loss, gradient norm and accuracies are exact."
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


def _input_notes(entries: list[Entry]) -> list[str]:
    notes = []
    for keys in (("data", "spec"), ("data", "num_samples"), ("loss",), ("settings", "params")):
        values = []
        for entry in entries:
            value: Any = entry.document
            for key in keys:
                value = value.get(key) if isinstance(value, Mapping) else None
            values.append(value)
        if any(value != values[0] for value in values):
            listed = ", ".join(f"{e.label}: {v!r}" for e, v in zip(entries, values, strict=True))
            notes.append(f"{'.'.join(keys)} differs ({listed})")
    return notes


def compare(
    inputs: Sequence[str | os.PathLike | Report | Mapping[str, Any]],
    labels: Sequence[str] | None = None,
) -> Comparison:
    """Line up the shared metrics of several reports (module docs).

    Args:
        inputs: report files, directories holding ``report.json``, run directories, or
            in-memory reports (:class:`~flatscope.io.report.Report` or their ``to_dict()``).
        labels: column titles (default: see :func:`load_entry`; ``report i`` in memory).

    Raises:
        ReportError: an input is not a readable report (one line naming it).
        FlatscopeError: fewer than two inputs. ValueError: ``labels`` of another length.
    """
    if len(inputs) < 2:
        raise FlatscopeError(f"compare needs at least two reports, got {len(inputs)}")
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
    labels_now = [entry.label for entry in entries]
    notes = _input_notes(entries)
    rows = _shared([entry.rows() for entry in entries], labels_now, notes)
    block_rows = _shared([_block_rows(entry.metrics) for entry in entries], labels_now, [])
    return Comparison(entries, rows, block_rows, notes)


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


def write_comparison(comparison: Comparison, out: str | os.PathLike) -> list[Path]:
    """Write ``comparison.md``, ``comparison.json`` and the figures into ``out``.

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
    metrics = {entry.label: entry.metrics for entry in comparison.entries}
    slices = {entry.label: landscape_slices(entry) for entry in comparison.entries}
    figures = render_comparison(metrics, out, slices)  # drawn before any text file is written
    for path, text in files.items():
        atomic_write(path, lambda file, text=text: file.write(text.encode("utf-8")))
    return [*files, *figures]
