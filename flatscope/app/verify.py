"""Decide, from report numbers alone, whether weights sit at a minimum and at lower curvature
than references: for one checkpoint against others (:func:`verify`) or for groups of runs,
one per seed, at the optimizer level (:func:`verify_groups`).

:func:`verify` checks claims about the subject of an analysis report and returns a
:class:`Verification`: one :class:`~flatscope.metrics.criteria.Criterion` per claim, each
``"pass"`` (established), ``"fail"`` (its opposite is established) or ``"not established"`` (the
numbers or their error bars cannot decide, or the report lacks them). The claims hold only when
every criterion passes; anything else is never reported as a success.

The claims come from the metrics of the registry (:mod:`flatscope.metrics`), each documented in
its module: it is a minimum (**gradient**, :mod:`flatscope.metrics.loss`; **negative
curvature**, :mod:`flatscope.metrics.eigenvalues`), and it is flatter than each reference
(**trace**, :mod:`flatscope.metrics.trace`; **scaled trace** ``tr(D H D)``, invariant to
function-preserving rescalings, :mod:`flatscope.metrics.scaled_trace`; **top eigenvalue**,
:mod:`flatscope.metrics.eigenvalues`; **sharpness** and **adaptive sharpness** when asked,
:mod:`flatscope.metrics.sharpness`, :mod:`flatscope.metrics.adaptive_sharpness`; the
normalized trace and the scaled top eigenvalue when a report has them). The tests behind them
are in :mod:`flatscope.metrics.criteria`.

**Scope.** A verdict on one checkpoint against another covers the estimators' noise only: a
second training run of the same optimizer with another seed lands elsewhere, and two runs of
the same optimizer can differ far beyond their error bars. The verdict says so. For a claim
about optimizers, :func:`verify_groups` takes groups of runs (at least three seeds per side) and
decides each "flatter" claim by Welch's one-sided test over seeds
(:mod:`flatscope.app.seed_statistics`), each minimum claim by requiring it of every run, and
refuses groups analysed on different data (:mod:`flatscope.app.groups`) unless forced.

**What is tested.** ``only="flatter"`` tests just the comparisons with the references (a
Langevin sampler such as fSGLD samples around a region, so the minimum criteria fail by
design), ``only="minimum"`` just the minimum criteria. A reference of another model or data
(its report's model spec, data spec, analysed parameters or number of parameters differ from
the subject's) is refused with :class:`IncomparableReports` unless ``force``: its numbers
describe another objective, and a "lower than" would be meaningless. Other differences (split,
samples, labels, loss) are noted in the verdict.

**Words.** When a minimum criterion fails the weights are not at a minimum (a stochastic
optimizer such as fSGLD samples around a region rather than converging to a point); the verdict
then speaks of lower curvature, not of a flatter minimum.

Measured on two 40 x 40 matrices of equal trace (400 pairs of estimates each, binomial error
about 1.1%), the trace z-test at 95% claimed "lower" 5.0% of the time with Hutchinson (20
products), 5.8% and 4.3% with Hutch++ (30 and 60), 7.0% with NA-Hutch++ (30) and 13% with
XTrace (30), whose error estimate runs low (Epperly, Tropp, Webber, SIMAX 2024): verify notes it
when a trace comes from XTrace.

With several criteria and references the overall claim is their conjunction, decided as an
intersection-union test: it is rejected at level ``1 - confidence`` when each part is, so no
multiple-comparison correction is needed (Berger, Technometrics 1982).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from flatscope.app.entries import header_value, lookup, provenance_notes
from flatscope.app.groups import load_groups, pair_refusal
from flatscope.app.matched_loss import seed_rows
from flatscope.app.seed_statistics import seed_test
from flatscope.errors import FlatscopeError
from flatscope.io.report import Report
from flatscope.io.tables import as_number, format_number, format_table
from flatscope.metrics import REGISTRY, VerifySettings
from flatscope.metrics.criteria import FAIL, NOT_ESTABLISHED, PASS, Criterion, z_critical

__all__ = [
    "IDENTITY",
    "ONLY",
    "IncomparableReports",
    "Verification",
    "check_only",
    "reference_differences",
    "verify",
    "verify_groups",
]

#: What ``only`` may restrict a verdict to: the minimum criteria or the comparisons.
ONLY = ("minimum", "flatter")
#: Header fields on which a reference must agree with the subject (unless forced): which
#: network (model spec, analysed parameters and their number) on which data.
IDENTITY = (
    ("model",),
    ("data", "spec"),
    ("settings", "params"),
    ("num_params",),
    ("settings", "curvature"),
)

#: What a verdict on single checkpoints covers.
CHECKPOINT_SCOPE = (
    "single checkpoints: each 'vs' test covers the estimators' noise only, not the spread "
    "between training runs (seeds); for an optimizer-level claim verify groups of at least 3 "
    "runs per side (--group, --reference-group)"
)
#: What a verdict on groups of runs covers.
GROUP_SCOPE = (
    "groups of runs: each 'vs' test is Welch's one-sided test over seeds, whose spread "
    "includes the estimators' noise; each minimum claim must hold for every run"
)


class IncomparableReports(FlatscopeError):
    """A reference made from another model or data than the subject (module docs)."""


@dataclass
class Verification:
    """The verdict of :func:`verify`: every criterion and whether all of them hold."""

    subject: str
    references: list[str]
    criteria: list[Criterion]
    settings: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    scope: str = CHECKPOINT_SCOPE

    @property
    def holds(self) -> bool:
        """Whether every criterion passed."""
        return bool(self.criteria) and all(c.status == PASS for c in self.criteria)

    @property
    def exit_code(self) -> int:
        """0 when every claim holds, 1 otherwise (a failure or anything not established)."""
        return 0 if self.holds else 1

    def to_dict(self) -> dict[str, Any]:
        """The verdict as plain JSON values."""
        return {
            "subject": self.subject,
            "references": list(self.references),
            "holds": self.holds,
            "exit_code": self.exit_code,
            "settings": dict(self.settings),
            "criteria": [{**asdict(c), "label": c.label} for c in self.criteria],
            "notes": list(self.notes),
            "scope": self.scope,
            "conclusion": self.conclusion(),
        }

    def conclusion(self) -> str:
        """What the criteria establish, in words that say only what was measured."""
        parts = []
        minimum = [c for c in self.criteria if c.reference is None]
        if minimum:
            failed = [c.name.replace("_", " ") for c in minimum if c.status == FAIL]
            if failed:
                parts.append(f"not a minimum ({', '.join(failed)} failed)")
            elif all(c.status == PASS for c in minimum):
                parts.append("a minimum")
            else:
                parts.append("a minimum is not established")
        for reference in self.references:
            mine = [c for c in self.criteria if c.reference == reference]
            for status, words in ((PASS, "lower than"), (FAIL, "not lower than")):
                names = [c.name.replace("_", " ") for c in mine if c.status == status]
                if names:
                    parts.append(f"{words} {reference} on {', '.join(names)}")
            open_ = [c.name.replace("_", " ") for c in mine if c.status == NOT_ESTABLISHED]
            if open_:
                parts.append(f"vs {reference} not established on {', '.join(open_)}")
        return "; ".join(parts)

    def table(self) -> str:
        """A text table: criterion, measured value, threshold or reference, verdict."""
        header = ("criterion", "measured", "threshold / reference", "verdict")
        rows = [(c.label, c.measured, c.threshold, c.status) for c in self.criteria]
        lines = [f"verify {self.subject}", format_table(header, rows, markdown=False)]
        lines += [f"  {c.label}: {c.detail}" for c in self.criteria]
        lines += [f"note: {note}" for note in self.notes]
        lines.append(f"scope: {self.scope}")
        if self.holds:
            lines.append(f"verdict: every claim holds: {self.conclusion()}")
        else:
            counts = {s: sum(c.status == s for c in self.criteria) for s in (FAIL, NOT_ESTABLISHED)}
            lines.append(
                f"verdict: the claims do not hold ({counts[FAIL]} failed, "
                f"{counts[NOT_ESTABLISHED]} not established): {self.conclusion()}"
            )
        return "\n".join(lines)


# ------------------------------------------------------------------------------ verify


def _document(report: Report | Mapping[str, Any], what: str) -> Mapping[str, Any]:
    if isinstance(report, Report):
        return report.to_dict()
    if isinstance(report, Mapping) and isinstance(report.get("metrics"), Mapping):
        return report
    raise TypeError(f"{what} must be a Report or a report dict with 'metrics', got {report!r:.80}")


def _label(document: Mapping[str, Any], fallback: str) -> str:
    checkpoint = document.get("checkpoint")
    path = checkpoint.get("path") if isinstance(checkpoint, Mapping) else None
    return str(path) if path else fallback


def _comparability_notes(
    subject: Mapping[str, Any], reference: Mapping[str, Any], label: str
) -> list[str]:
    notes = []
    methods = {lookup(d, ("metrics", "hessian_trace", "method")) for d in (subject, reference)}
    if "xtrace" in methods:
        notes.append(
            f"a trace against {label} comes from xtrace, whose error estimate runs low (Epperly, "
            "Tropp, Webber 2024): the z-test then claims too often (13% false claims at a "
            "nominal 5% on a 40 x 40 test matrix); prefer --trace-method hutchpp"
        )
    differences = provenance_notes({"subject": subject, label: reference})
    notes += [f"{note}: the numbers describe different objectives" for note in differences]
    return notes


def reference_differences(subject: Mapping[str, Any], reference: Mapping[str, Any]) -> list[str]:
    """``"<field> (subject value vs reference value)"`` for each :data:`IDENTITY` field on
    which the two report documents differ; a field that either report lacks is not compared
    (reports written before flatscope recorded it), except the curvature, which such reports
    hold implicitly (the Hessian, :func:`~flatscope.app.entries.header_value`)."""
    out = []
    for keys in IDENTITY:
        mine, theirs = header_value(subject, keys), header_value(reference, keys)
        if mine is not None and theirs is not None and mine != theirs:
            out.append(f"{'.'.join(keys)} ({mine!r} vs {theirs!r})")
    return out


def check_only(only: str | None, references: int) -> None:
    """Refuse an ``only`` that is not one of :data:`ONLY` or that leaves nothing to test.

    Raises:
        FlatscopeError: the reason, in one line.
    """
    if only is not None and only not in ONLY:
        raise FlatscopeError(f"unknown --only {only!r}; choose one of {', '.join(ONLY)}")
    if only == "flatter" and not references:
        raise FlatscopeError("--only flatter needs a reference to be flatter than")
    if only == "minimum" and references:
        raise FlatscopeError("--only minimum tests the subject alone; drop the references")


def verify(
    subject: Report | Mapping[str, Any],
    references: Mapping[str, Report | Mapping[str, Any]]
    | Sequence[Report | Mapping[str, Any]] = (),
    *,
    grad_tol: float = VerifySettings.grad_tol,
    neg_tol: float = VerifySettings.neg_tol,
    confidence: float = VerifySettings.confidence,
    sharpness: bool = False,
    subject_label: str | None = None,
    only: str | None = None,
    force: bool = False,
) -> Verification:
    """Check that ``subject`` is a minimum and flatter than each reference (module docs).

    Args:
        subject: the report (a :class:`~flatscope.io.report.Report` or its ``to_dict()``).
        references: reports to be flatter than, by label (a mapping) or in order (labelled by
            their checkpoint paths).
        grad_tol, neg_tol: tolerances of the two minimum criteria.
        confidence: level of the one-sided z-tests, in ``[0.5, 1)``.
        sharpness: also require lower average-case sharpness than each reference.
        subject_label: how the verdict names the subject (default: its checkpoint path).
        only: ``"flatter"`` tests only the comparisons, ``"minimum"`` only the minimum
            criteria; ``None`` both.
        force: compare with references of another model or data too (noted in the verdict).

    Raises:
        IncomparableReports: a reference of another model or data, without ``force``.
        FlatscopeError: ``only`` unknown or leaving nothing to test. TypeError: a report is not
            a report. ValueError: a tolerance or the confidence is out of range.
    """
    settings = VerifySettings(grad_tol, neg_tol, confidence, sharpness)
    document = _document(subject, "subject")
    if isinstance(references, Mapping):
        labelled = [(str(k), _document(v, f"reference {k!r}")) for k, v in references.items()]
    else:
        documents = [_document(r, f"reference {i + 1}") for i, r in enumerate(references)]
        labelled = [(_label(d, f"reference {i + 1}"), d) for i, d in enumerate(documents)]
    check_only(only, len(labelled))
    notes: list[str] = []
    for label, reference in labelled:
        differences = reference_differences(document, reference)
        if differences and not force:
            raise IncomparableReports(
                f"reference {label} is not of the subject's model, data and curvature: "
                f"{'; '.join(differences)} differ; pass --force (force=True) to compare anyway"
            )
        notes += [f"forced against {label} despite different {d}" for d in differences]
    metrics = document["metrics"]
    criteria = []
    if only != "flatter":
        criteria += [c for m in REGISTRY.values() for c in m.minimum_criteria(metrics, settings)]
    else:
        notes.append("the minimum criteria were not tested (only the comparisons)")
    for label, reference in labelled:
        theirs = reference["metrics"]
        for metric in REGISTRY.values():
            criteria += metric.flatter_criteria(metrics, theirs, label, settings)
        notes += _comparability_notes(document, reference, label)
    return Verification(
        subject=subject_label or _label(document, "the subject"),
        references=[label for label, _ in labelled],
        criteria=criteria,
        settings={
            **asdict(settings),
            "z_critical": z_critical(confidence),
            "only": only,
            "force": force,
        },
        notes=notes,
    )


# ------------------------------------------------------------------------ groups


def _group_minimum(name: str, per_run: dict[str, Criterion]) -> Criterion:
    """A minimum claim for a group: it must hold for every run."""
    statuses = [c.status for c in per_run.values()]
    status = PASS if all(s == PASS for s in statuses) else FAIL if FAIL in statuses else None
    passed = sum(s == PASS for s in statuses)
    detail = "; ".join(f"{run}: {c.status} ({c.measured})" for run, c in per_run.items())
    return Criterion(
        name,
        status or NOT_ESTABLISHED,
        f"{passed} of {len(statuses)} runs pass",
        "every run",
        detail,
        numbers={run: c.status for run, c in per_run.items()},
    )


def _seed_criterion(
    measure: str,
    values: list[float],
    reference_values: list[float],
    reference: str,
    confidence: float,
    refusal: str | None,
) -> Criterion:
    """``mean < reference mean`` over seeds by Welch's one-sided test at ``1 - confidence``;
    the ratio's two-sided ``2 confidence - 1`` Fieller interval lies below 1 exactly when it
    passes."""
    test = seed_test(measure, values, reference_values, 2 * confidence - 1, refusal)
    measured = f"{format_number(test.mean, as_number(test.sd))} ({test.seeds[0]} seeds)"
    threshold = (
        f"< {format_number(test.reference_mean, as_number(test.reference_sd))} "
        f"({test.seeds[1]} seeds)"
    )
    if test.refused is not None:
        return Criterion(
            measure,
            NOT_ESTABLISHED,
            measured,
            threshold,
            f"refused: {test.refused}",
            reference,
            test.to_dict(),
        )
    alpha = 1 - confidence
    status = PASS if test.p_lower < alpha else FAIL if test.p_lower > confidence else None
    low, high = test.interval or (None, None)
    detail = (
        f"ratio of means {format_number(test.ratio)}, {2 * confidence - 1:.0%} Fieller interval "
        f"[{format_number(low)}, {format_number(high)}]; Welch t = {test.t:.3g}, df "
        f"{test.df:.3g}, one-sided p = {test.p_lower:.2g} (decides at {alpha:g})"
    )
    return Criterion(
        measure, status or NOT_ESTABLISHED, measured, threshold, detail, reference, test.to_dict()
    )


def _claimed_rows(
    runs: list[Mapping[str, Any]],
    references: list[Mapping[str, Any]],
    label: str,
    settings: VerifySettings,
) -> list[str]:
    """The headline rows of the metrics that make "flatter" claims on these reports."""
    first, reference = runs[0], references[0]
    rows: list[str] = []
    for metric in REGISTRY.values():
        if not metric.flatter_criteria(first, reference, label, settings):
            continue
        for entry in metric.entries:
            for document in (first, reference):
                if entry in document:
                    rows += metric.seed_rows(entry, document[entry])
    return list(dict.fromkeys(rows))


def _row_values(runs: dict[str, Mapping[str, Any]], row: str) -> tuple[list[float], list[str]]:
    """The headline row's value in every run (by the runs' metrics), and the runs lacking it."""
    values, lacking = [], []
    for label, metrics in runs.items():
        cell = seed_rows(metrics).get(row)
        if cell is None:
            lacking.append(label)
        else:
            values.append(cell[0])
    return values, lacking


def verify_groups(
    group: Any,
    reference_groups: Mapping[str, Any],
    *,
    name: str = "subject",
    grad_tol: float = VerifySettings.grad_tol,
    neg_tol: float = VerifySettings.neg_tol,
    confidence: float = VerifySettings.confidence,
    sharpness: bool = False,
    force: bool = False,
    only: str | None = None,
) -> Verification:
    """Check at the optimizer level that the runs of ``group`` sit at minima and at lower
    curvature than the runs of each reference group (module docs, "Scope").

    Each minimum claim must hold for every run of ``group``. Each "flatter" claim of the
    single-checkpoint verdict (trace, scaled trace, top eigenvalue, ...) becomes a claim on the
    groups' means over seeds, decided by Welch's one-sided test at ``1 - confidence``
    (:mod:`flatscope.app.seed_statistics`); it is refused (not established) with fewer than 3
    runs on a side, or across groups analysed on different data unless ``force``.

    Args:
        group: the runs: a path, a glob, or a list of paths, globs or in-memory reports.
        reference_groups: ``{name: runs}`` to be flatter than.
        name: how the verdict names ``group``.
        grad_tol, neg_tol, confidence, sharpness: as for :func:`verify`.
        force: decide even across groups analysed on different data.
        only: ``"flatter"`` tests only the comparisons over seeds, ``"minimum"`` only the
            minimum claims; ``None`` both.

    Raises:
        FlatscopeError: no reference group, an empty group, a glob that matches nothing,
            an ``only`` unknown or leaving nothing to test.
    """
    settings = VerifySettings(grad_tol, neg_tol, confidence, sharpness)
    check_only(only, len(reference_groups))
    if not reference_groups and only != "minimum":
        raise FlatscopeError("verify of a group needs at least one reference group")
    if name in reference_groups:
        raise FlatscopeError(f"group name {name!r} is used twice")
    loaded = load_groups({name: group, **reference_groups})
    subject_runs = {entry.label: entry.metrics for entry in loaded[name]}
    by_claim: dict[str, dict[str, Criterion]] = {}
    for label, metrics in subject_runs.items():
        for metric in REGISTRY.values():
            for criterion in metric.minimum_criteria(metrics, settings):
                by_claim.setdefault(criterion.name, {})[label] = criterion
    criteria = [_group_minimum(claim, per_run) for claim, per_run in by_claim.items()]
    notes: list[str] = []
    if only == "flatter":
        criteria = []
        notes.append("the minimum claims were not tested (only the comparisons)")
    for reference in reference_groups:
        runs = loaded[name] + loaded[reference]
        refusal, forced = pair_refusal({e.label: e.document for e in runs}, force)
        notes += forced
        reference_runs = {entry.label: entry.metrics for entry in loaded[reference]}
        rows = _claimed_rows(
            list(subject_runs.values()), list(reference_runs.values()), reference, settings
        )
        for row in rows:
            values, lacking = _row_values(subject_runs, row)
            reference_values, lacking_too = _row_values(reference_runs, row)
            if lacking or lacking_too:
                detail = f"runs without it: {', '.join(lacking + lacking_too)}"
                criteria.append(Criterion(row, NOT_ESTABLISHED, "n/a", "n/a", detail, reference))
                continue
            criteria.append(
                _seed_criterion(row, values, reference_values, reference, confidence, refusal)
            )
    return Verification(
        subject=name,
        references=list(reference_groups),
        criteria=criteria,
        settings={
            **asdict(settings),
            "z_critical": z_critical(confidence),
            "force": force,
            "only": only,
        },
        notes=list(dict.fromkeys(notes)),
        scope=GROUP_SCOPE,
    )
