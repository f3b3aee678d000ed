"""Groups of training runs (one per seed) and what makes two groups comparable.

A group is named and holds runs: run folders, directories holding ``report.json``, report files
or shell-style globs of them (``"runs/fsgld-seed*"``), each read as
:func:`flatscope.app.entries.load_entry` reads one input. ``compare --group`` and ``verify
--group`` answer at the optimizer level from the groups' per-seed numbers
(:mod:`flatscope.app.seed_statistics`).

Two groups are comparable when their runs were analysed on the same kind of data: the same data
spec, split and number of analysed samples, the same label-noise kind and rate, loss and
parameter selection. The noisy labels themselves (and the analysed subset) may differ from seed
to seed — ``flatscope train`` seeds label noise with the run's seed — and that variation is part
of what the seed-level test averages over. An optimizer-level verdict across groups that differ
in any of these is refused unless forced.
"""

from __future__ import annotations

import glob
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flatscope.app.entries import Entry, header_value, load_entries
from flatscope.app.matched_loss import MatchedLoss, match_runs, seed_rows
from flatscope.app.seed_statistics import SeedTest, seed_test
from flatscope.data.label_noise import LabelNoise
from flatscope.errors import FlatscopeError
from flatscope.io.report import Report, to_jsonable
from flatscope.io.tables import as_number, format_number, format_table
from flatscope.metrics import Cell

__all__ = [
    "GroupComparison",
    "GroupInput",
    "PairComparison",
    "compare_groups",
    "data_identity",
    "expand_members",
    "identity_differences",
    "load_groups",
    "pair_refusal",
    "parse_group",
]

#: One member of a group: a path or glob, or an in-memory report.
GroupInput = str | os.PathLike | Report | Mapping[str, Any]


def parse_group(tokens: Sequence[str]) -> tuple[str, list[str]]:
    """A group from the command line: ``["NAME=RUN_OR_GLOB"]`` or ``["NAME", RUN_OR_GLOB, ...]``
    (``NAME=A B`` also works), as ``(name, members)``.

    Raises:
        FlatscopeError: no name or no member.
    """
    first, *rest = tokens
    name, _, member = first.partition("=")
    members = ([member] if member else []) + list(rest)
    if not name or not members:
        raise FlatscopeError(
            f"--group {' '.join(tokens)!r}: give NAME=RUN_OR_GLOB or NAME RUN [RUN ...], "
            "e.g. --group fsgld='runs/fsgld-seed*'"
        )
    return name, members


def expand_members(name: str, members: GroupInput | Sequence[GroupInput]) -> list[GroupInput]:
    """The group's members with globs expanded (sorted), in the order given.

    Raises:
        FlatscopeError: a glob that matches nothing, a path that does not exist, an empty group.
    """
    if isinstance(members, (str, os.PathLike, Report, Mapping)):
        members = [members]
    found: list[GroupInput] = []
    for member in members:
        if isinstance(member, (Report, Mapping)):
            found.append(member)
            continue
        text = os.fspath(member)
        if glob.has_magic(text):
            matches = sorted(glob.glob(text))
            if not matches:
                raise FlatscopeError(f"group {name!r}: {text!r} matches nothing")
            found += [Path(match) for match in matches]
        elif not Path(text).exists():
            raise FlatscopeError(f"group {name!r}: {text} does not exist")
        else:
            found.append(Path(text))
    if not found:
        raise FlatscopeError(f"group {name!r} has no runs")
    return found


def _noise_kind(spec: Any) -> Any:
    """A label-noise spec without its seed: ``("symmetric", 0.4)``; the spec itself when it
    cannot be parsed."""
    if not isinstance(spec, str):
        return spec
    try:
        noise = LabelNoise.parse(spec)
    except FlatscopeError:
        return spec
    return noise.kind, noise.rate


def data_identity(document: Mapping[str, Any]) -> dict[str, Any]:
    """What must agree between runs of two groups for their numbers to describe the same kind
    of objective (module docs), from a report's header."""
    data = document.get("data") if isinstance(document.get("data"), Mapping) else {}
    settings = document.get("settings") if isinstance(document.get("settings"), Mapping) else {}
    return {
        "data.spec": data.get("spec"),
        "data.split": data.get("split"),
        "data.num_samples": data.get("num_samples"),
        "data.label_noise (kind, rate)": _noise_kind(data.get("label_noise")),
        "loss": document.get("loss"),
        "settings.params": settings.get("params"),
        "settings.curvature": header_value(document, ("settings", "curvature")),
    }


def identity_differences(documents: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """``"<field> differs (run: value, ...)"`` for every identity field on which the labelled
    report documents disagree."""
    identities = {label: data_identity(document) for label, document in documents.items()}
    first = next(iter(identities.values()))
    out = []
    for key in first:
        values = {label: identity[key] for label, identity in identities.items()}
        if len({repr(value) for value in values.values()}) > 1:
            listed = ", ".join(f"{label}: {value!r}" for label, value in values.items())
            out.append(f"{key} differs ({listed})")
    return out


# ------------------------------------------------------------------ group comparison


def _interval_text(interval: tuple[float, float] | None) -> str:
    if interval is None:
        return "n/a"
    return "[" + ", ".join("inf" if abs(x) == math.inf else f"{x:.3g}" for x in interval) + "]"


def _p_text(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.2g}"


@dataclass
class PairComparison:
    """Every shared measure of two groups, tested over seeds: ``name / reference``.

    Attributes:
        name, reference: the groups.
        tests: one :class:`~flatscope.app.seed_statistics.SeedTest` per measure.
        level: the two-sided level of the intervals and of the tests (``1 - level``).
    """

    name: str
    reference: str
    tests: list[SeedTest]
    level: float

    def verdict(self, test: SeedTest) -> str:
        """``lower``, ``higher`` (Welch's two-sided test at ``1 - level``), ``not established``
        or ``refused``."""
        if test.refused is not None:
            return "refused"
        if test.p_two_sided < 1 - self.level:
            return "lower" if test.mean < test.reference_mean else "higher"
        return "not established"

    def title(self) -> str:
        return (
            f"{self.name} vs {self.reference}: ratio of means over seeds ({self.name} / "
            f"{self.reference}), {self.level:.0%} Fieller interval, Welch's two-sided test"
        )

    def table(self, markdown: bool = False) -> str:
        header = [
            "measure",
            f"{self.name} mean ± sd",
            f"{self.reference} mean ± sd",
            "seeds",
            "ratio",
            f"{self.level:.0%} interval",
            "p",
            "verdict",
        ]
        rows = [
            [
                test.measure,
                format_number(test.mean, as_number(test.sd)),
                format_number(test.reference_mean, as_number(test.reference_sd)),
                f"{test.seeds[0]}, {test.seeds[1]}",
                format_number(test.ratio),
                _interval_text(test.interval),
                _p_text(test.p_two_sided),
                self.verdict(test),
            ]
            for test in self.tests
        ]
        return format_table(header, rows, markdown)

    def refusals(self) -> list[str]:
        """The distinct reasons for refused verdicts."""
        return list(dict.fromkeys(t.refused for t in self.tests if t.refused is not None))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "reference": self.reference,
            "level": self.level,
            "tests": [{**test.to_dict(), "verdict": self.verdict(test)} for test in self.tests],
        }


@dataclass
class GroupComparison:
    """Groups of runs compared at the optimizer level (module docs).

    Attributes:
        groups: the runs of each group, by group name.
        rows: every run's headline rows (final checkpoint; at the matched loss when asked),
            by run label.
        pairs: every pair of groups, in the order given.
        matched: the runs at a common training loss, when asked for.
        notes: measures some runs lack, differences of data, where runs meet the loss level.
    """

    groups: dict[str, list[Entry]]
    rows: dict[str, dict[str, Cell]]
    pairs: list[PairComparison]
    matched: MatchedLoss | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def entries(self) -> list[Entry]:
        """Every run, group by group."""
        return [entry for entries in self.groups.values() for entry in entries]

    def seed_table(self, markdown: bool = False) -> str:
        """Per-seed values: one row per measure, one column per run."""
        labels = [entry.label for entry in self.entries]
        measures = list(dict.fromkeys(m for label in labels for m in self.rows[label]))
        body = [
            [m, *(format_number(*self.rows[label].get(m, (None, None))) for label in labels)]
            for m in measures
        ]
        return format_table(["measure", *labels], body, markdown)

    def table(self, markdown: bool = False) -> str:
        """The per-seed values, then one table per pair of groups."""
        members = "; ".join(
            f"{name}: {', '.join(e.label for e in entries)}"
            for name, entries in self.groups.items()
        )
        parts = [f"per-seed values ({members})", self.seed_table(markdown)]
        for pair in self.pairs:
            parts += ["", pair.title(), pair.table(markdown)]
        return "\n".join(parts)

    def markdown(self) -> str:
        lines = ["# flatscope comparison of groups of runs", "", self.table(markdown=True), ""]
        lines.append(SEED_NOTE)
        lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(
            {
                "groups": {
                    name: {e.label: None if e.path is None else str(e.path) for e in entries}
                    for name, entries in self.groups.items()
                },
                "rows": {
                    label: {name: list(cell) for name, cell in rows.items()}
                    for label, rows in self.rows.items()
                },
                "pairs": [pair.to_dict() for pair in self.pairs],
                "matched_loss": None if self.matched is None else self.matched.to_dict(),
                "notes": self.notes,
            }
        )


SEED_NOTE = (
    "mean ± sd is over the runs (seeds) of a group; the interval and p-value come from the "
    "spread between seeds, which includes each estimate's own noise; 'not established' means "
    "the seeds cannot tell the groups apart at this level."
)


def load_groups(groups: Mapping[str, Any]) -> dict[str, list[Entry]]:
    """The entries of every group (module docs); run labels made unique across groups.

    Raises:
        FlatscopeError: fewer than two groups, an empty group, a glob matching nothing.
    """
    if len(groups) < 2:
        raise FlatscopeError(f"comparing groups needs at least two groups, got {len(groups)}")
    loaded = {name: load_entries(expand_members(name, members)) for name, members in groups.items()}
    labels = [entry.label for entries in loaded.values() for entry in entries]
    if len(set(labels)) < len(labels):
        for name, entries in loaded.items():
            for entry in entries:
                entry.label = f"{name}/{entry.label}"
    return loaded


def pair_refusal(
    documents: Mapping[str, Mapping[str, Any]], force: bool
) -> tuple[str | None, list[str]]:
    """Why two groups' runs cannot get an optimizer-level verdict (``None`` when they can, or
    when ``force``), and the notes on how their data differ."""
    differences = identity_differences(documents)
    if not differences:
        return None, []
    if force:
        return None, [f"forced despite different data: {d}" for d in differences]
    reason = (
        "the runs were analysed on different data, losses or curvatures ("
        + "; ".join(differences)
        + "); pass --force (force=True) to compare anyway"
    )
    return reason, []


def compare_groups(
    groups: Mapping[str, Any],
    matched_loss: float | str | None = None,
    *,
    confidence: float = 0.95,
    force: bool = False,
) -> GroupComparison:
    """Compare groups of runs (one run per seed) at the optimizer level: every headline
    measure of every pair of groups, as the ratio of means with Fieller's interval and
    Welch's test over seeds (:mod:`flatscope.app.seed_statistics`); with ``matched_loss`` also
    at a common training loss (:func:`flatscope.app.matched_loss.match_runs`).

    Args:
        groups: ``{name: runs}``: a path, a glob, or a list of paths, globs or in-memory
            reports per group.
        matched_loss: ``"auto"`` or a loss level, or ``None``.
        confidence: the two-sided level of the intervals; the tests are at ``1 - confidence``.
        force: give verdicts across groups analysed on different data.

    Raises:
        FlatscopeError: see :func:`load_groups` and :func:`~flatscope.app.matched_loss.match_runs`.
    """
    if not 0.5 <= confidence < 1:
        raise FlatscopeError(f"confidence must lie in [0.5, 1), got {confidence}")
    loaded = load_groups(groups)
    entries = [entry for group in loaded.values() for entry in group]
    matched = None if matched_loss is None else match_runs(entries, matched_loss)
    rows = {
        entry.label: {
            **seed_rows(entry.metrics),
            **({} if matched is None else matched.rows(entry.label)),
        }
        for entry in entries
    }
    notes: list[str] = []
    pairs = []
    names = list(loaded)
    for i, name in enumerate(names):
        for reference in names[i + 1 :]:
            runs = loaded[name] + loaded[reference]
            refusal, forced = pair_refusal({e.label: e.document for e in runs}, force)
            notes += forced
            measures = list(dict.fromkeys(m for e in runs for m in rows[e.label]))
            tests = []
            for measure in measures:
                lacking = [e.label for e in runs if measure not in rows[e.label]]
                if lacking:
                    notes.append(f"{measure}: not compared, {', '.join(lacking)} lack it")
                    continue
                values = [rows[e.label][measure][0] for e in loaded[name]]
                reference_values = [rows[e.label][measure][0] for e in loaded[reference]]
                tests.append(seed_test(measure, values, reference_values, confidence, refusal))
            pair = PairComparison(name, reference, tests, confidence)
            notes += [f"{name} vs {reference}: refused: {r}" for r in pair.refusals()]
            pairs.append(pair)
    if matched is not None:
        notes += matched.notes()
    return GroupComparison(loaded, rows, pairs, matched, list(dict.fromkeys(notes)))
