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
checkpoint (:mod:`flatscope.app.entries`): ``RUN_DIR/analysis/report.json`` (what ``flatscope
analyze RUN_DIR/final.pt --out RUN_DIR/analysis`` writes), the final report of ``flatscope
trajectory RUN_DIR``, or, for ``DEMO/runs/NAME`` of ``flatscope demo``,
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

from flatscope.app.entries import (
    Entry,
    block_rows,
    find_report,
    load_entries,
    load_entry,
    metric_rows,
    provenance_notes,
)
from flatscope.app.groups import GroupComparison, compare_groups
from flatscope.app.matched_loss import MatchedLoss, match_runs
from flatscope.errors import FlatscopeError, preview
from flatscope.io.atomic import atomic_write
from flatscope.io.output import make_output_dir
from flatscope.io.report import Report, to_jsonable
from flatscope.io.tables import format_number, format_table
from flatscope.metrics import Cell

__all__ = [
    "Comparison",
    "Entry",
    "GroupComparison",
    "MatchedLoss",
    "compare",
    "find_report",
    "landscape_slices",
    "load_entry",
    "metric_rows",
    "write_comparison",
]

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
    blocks = _shared([block_rows(entry.metrics) for entry in entries], labels_now, [])
    if matched is not None:
        notes += matched.notes()
    return Comparison(entries, rows, blocks, notes, matched)


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
    metrics = {entry.label: entry.metrics for entry in comparison.entries}
    slices = {entry.label: landscape_slices(entry) for entry in comparison.entries}
    figures = render_comparison(metrics, out, slices)  # drawn before any text file is written
    for path, text in files.items():
        atomic_write(path, lambda file, text=text: file.write(text.encode("utf-8")))
    return [*files, *figures]
