"""The reports a comparison reads: one :class:`Entry` per report, run folder or in-memory
report, its rows, and the provenance notes that say when two of them describe different data.

A run directory (``config.json``, ``metrics.jsonl``, ``final.pt`` as
:func:`flatscope.training.trainer.train` writes it) contributes the report of its final
checkpoint, looked up in :data:`~flatscope.io.run_folder.RUN_REPORTS` order, and its last
``metrics.jsonl`` record. Shared by :mod:`flatscope.app.compare`, :mod:`flatscope.app.groups`
and :mod:`flatscope.app.verify`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flatscope.errors import ReportError
from flatscope.io.report import Report
from flatscope.io.run_folder import REPORT_NAME, RUN_REPORTS, is_run_folder, read_records
from flatscope.io.tables import as_number
from flatscope.metrics import Cell, metric_of, ordered_entries

__all__ = [
    "Entry",
    "block_rows",
    "find_report",
    "load_entries",
    "load_entry",
    "lookup",
    "metric_rows",
    "header_value",
    "provenance_notes",
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


def block_rows(metrics: Mapping[str, Any]) -> dict[str, Cell]:
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
    (("settings", "curvature"), "different curvature matrices"),
)
#: Header fields that reports written before flatscope recorded them hold implicitly.
_IMPLIED = {("settings", "curvature"): "hessian"}


def lookup(document: Mapping[str, Any], keys: Sequence[str]) -> Any:
    """``document[k1][k2]...``, ``None`` where a level is missing."""
    value: Any = document
    for key in keys:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def header_value(document: Mapping[str, Any], keys: Sequence[str]) -> Any:
    """A report header field by :func:`lookup`; a field that older reports lack reads as what
    they measured (``settings.curvature``: ``"hessian"``)."""
    value = lookup(document, keys)
    return _IMPLIED.get(tuple(keys)) if value is None else value


def provenance_notes(documents: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One note per header field on which the labelled reports differ, saying what it means
    (different data, labels, samples, loss ...): their numbers describe different objectives."""
    notes = []
    for keys, meaning in _PROVENANCE:
        values = {label: header_value(document, keys) for label, document in documents.items()}
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
