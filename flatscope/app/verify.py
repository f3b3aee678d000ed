"""Decide, from report numbers alone, whether weights sit at a flat minimum.

:func:`verify` checks claims about the subject of an analysis report and returns a
:class:`Verification`: one :class:`~flatscope.metrics.criteria.Criterion` per claim, each
``"pass"`` (established), ``"fail"`` (its opposite is established) or ``"not established"`` (the
numbers or their error bars cannot decide, or the report lacks them). The claims hold only when
every criterion passes; anything else is never reported as a success.

The claims come from the metrics of the registry (:mod:`flatscope.metrics`), each documented in
its module: it is a minimum (**gradient**, :mod:`flatscope.metrics.loss`; **negative
curvature**, :mod:`flatscope.metrics.eigenvalues`), and it is flatter than each reference
(**trace**, :mod:`flatscope.metrics.trace`; **top eigenvalue**,
:mod:`flatscope.metrics.eigenvalues`; **sharpness** when asked,
:mod:`flatscope.metrics.sharpness`). The tests behind them are in
:mod:`flatscope.metrics.criteria`.

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

from flatscope.io.report import Report
from flatscope.io.tables import format_table
from flatscope.metrics import REGISTRY, VerifySettings
from flatscope.metrics.criteria import FAIL, NOT_ESTABLISHED, PASS, Criterion, z_critical

__all__ = ["Verification", "verify"]

#: Header fields that should agree for numbers of two reports to be comparable.
_COMPARABLE = (("data", "spec"), ("data", "num_samples"), ("loss",), ("settings", "params"))


@dataclass
class Verification:
    """The verdict of :func:`verify`: every criterion and whether all of them hold."""

    subject: str
    references: list[str]
    criteria: list[Criterion]
    settings: dict[str, Any]
    notes: list[str] = field(default_factory=list)

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
        }

    def table(self) -> str:
        """A text table: criterion, measured value, threshold or reference, verdict."""
        header = ("criterion", "measured", "threshold / reference", "verdict")
        rows = [(c.label, c.measured, c.threshold, c.status) for c in self.criteria]
        lines = [f"verify {self.subject}", format_table(header, rows, markdown=False)]
        lines += [f"  {c.label}: {c.detail}" for c in self.criteria]
        lines += [f"note: {note}" for note in self.notes]
        if self.holds:
            lines.append("verdict: every claim holds")
        else:
            counts = {s: sum(c.status == s for c in self.criteria) for s in (FAIL, NOT_ESTABLISHED)}
            lines.append(
                f"verdict: the claims do not hold ({counts[FAIL]} failed, "
                f"{counts[NOT_ESTABLISHED]} not established)"
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


def _lookup(document: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    value: Any = document
    for key in keys:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def _comparability_notes(
    subject: Mapping[str, Any], reference: Mapping[str, Any], label: str
) -> list[str]:
    notes = []
    methods = {_lookup(d, ("metrics", "hessian_trace", "method")) for d in (subject, reference)}
    if "xtrace" in methods:
        notes.append(
            f"a trace against {label} comes from xtrace, whose error estimate runs low (Epperly, "
            "Tropp, Webber 2024): the z-test then claims too often (13% false claims at a "
            "nominal 5% on a 40 x 40 test matrix); prefer --trace-method hutchpp"
        )
    for keys in _COMPARABLE:
        mine, theirs = _lookup(subject, keys), _lookup(reference, keys)
        if mine != theirs:
            notes.append(
                f"{'.'.join(keys)} differs from {label}'s ({mine!r} vs {theirs!r}): the numbers "
                "describe Hessians of different losses"
            )
    return notes


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

    Raises:
        TypeError: a report is not a report. ValueError: a tolerance or the confidence is out of
            range.
    """
    settings = VerifySettings(grad_tol, neg_tol, confidence, sharpness)
    document = _document(subject, "subject")
    if isinstance(references, Mapping):
        labelled = [(str(k), _document(v, f"reference {k!r}")) for k, v in references.items()]
    else:
        documents = [_document(r, f"reference {i + 1}") for i, r in enumerate(references)]
        labelled = [(_label(d, f"reference {i + 1}"), d) for i, d in enumerate(documents)]
    metrics = document["metrics"]
    criteria = [c for m in REGISTRY.values() for c in m.minimum_criteria(metrics, settings)]
    notes: list[str] = []
    for label, reference in labelled:
        theirs = reference["metrics"]
        for metric in REGISTRY.values():
            criteria += metric.flatter_criteria(metrics, theirs, label, settings)
        notes += _comparability_notes(document, reference, label)
    return Verification(
        subject=subject_label or _label(document, "the subject"),
        references=[label for label, _ in labelled],
        criteria=criteria,
        settings={**asdict(settings), "z_critical": z_critical(confidence)},
        notes=notes,
    )
