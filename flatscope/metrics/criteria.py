"""Claims decided from report numbers: the criterion record and the two tests metrics use.

A :class:`Criterion` is one checked claim: ``"pass"`` (established), ``"fail"`` (its opposite
is established) or ``"not established"`` (the numbers or their error bars cannot decide, or a
report lacks them). Metrics decide their claims with one of two tests:

- **the one-sided z-test** of ``value < reference`` for estimates with standard errors:
  ``z = (v_R - v) / sqrt(se^2 + se_R^2) > z_c`` passes, ``z < -z_c`` fails, where ``z_c`` is
  the standard normal quantile of the confidence. The estimates are means of many independent
  probe samples, hence about normal (central limit theorem). When both analyses used the same
  seed their probe errors are positively correlated, which only makes the test conservative.
  It covers the estimators' noise only, not the spread between training runs.
- **bound intervals** of extreme eigenvalues: a Ritz value ``theta`` with residual
  ``r = ||H y - theta y||`` (``||y|| = 1``) has an eigenvalue of the symmetric ``H`` within
  ``r`` (Parlett, *The Symmetric Eigenvalue Problem*, Thm. 4.5.1), and a Ritz value never
  exceeds ``lambda_max`` (Cauchy interlacing), so ``lambda_max in [theta, theta + r]`` and
  ``lambda_min in [theta - r, theta]``. These are bounds, not confidence intervals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

from flatscope.io.tables import as_number, format_number

__all__ = [
    "FAIL",
    "NOT_ESTABLISHED",
    "PASS",
    "Criterion",
    "eigenvalue_interval",
    "estimate_of",
    "interval_text",
    "missing",
    "z_critical",
    "z_criterion",
]

PASS, FAIL, NOT_ESTABLISHED = "pass", "fail", "not established"

#: ``(value, standard error)`` of an estimate; either may be ``None`` when unknown.
Estimate = tuple[float | None, float | None]


@dataclass(frozen=True)
class Criterion:
    """One checked claim.

    Attributes:
        name: the claim, e.g. ``"gradient"``, ``"trace"``, ``"top_eigenvalue"``.
        status: :data:`PASS`, :data:`FAIL` or :data:`NOT_ESTABLISHED`.
        measured: the subject's value with its error bar, as text.
        threshold: the threshold or the reference's value, as text.
        detail: why the status follows (the test statistic, or what is missing).
        reference: the reference's label for a comparison, ``None`` for the minimum criteria.
        numbers: the numbers behind the texts (``None`` where unknown), for scripts.
    """

    name: str
    status: str
    measured: str
    threshold: str
    detail: str
    reference: str | None = None
    numbers: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The row title: ``minimum: gradient`` or ``vs REF: trace`` (flatter than REF)."""
        what = self.name.replace("_", " ")
        return f"minimum: {what}" if self.reference is None else f"vs {self.reference}: {what}"


def missing(name: str, detail: str, reference: str | None = None) -> Criterion:
    """A claim that cannot be decided because a number is missing."""
    return Criterion(name, NOT_ESTABLISHED, "n/a", "n/a", detail, reference)


def z_critical(confidence: float) -> float:
    """The one-sided critical value ``z_c = Phi^{-1}(confidence)`` (1.645 at 0.95).

    Raises:
        ValueError: ``confidence`` is not in ``[0.5, 1)``.
    """
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)):
        raise ValueError(
            f"confidence (--confidence) must be a number in [0.5, 1), got {confidence!r}"
        )
    if not 0.5 <= confidence < 1:
        raise ValueError(
            f"confidence (--confidence) must lie in [0.5, 1) (e.g. 0.95), got {confidence}"
        )
    return NormalDist().inv_cdf(confidence)


def _z_status(
    value: float, stderr: float, ref_value: float, ref_stderr: float, z_c: float
) -> tuple[str, float]:
    """The one-sided z-test of ``value < ref_value``: its status and ``z``."""
    difference = ref_value - value
    scale = math.hypot(stderr, ref_stderr)
    if scale == 0:  # exact numbers on both sides
        return (PASS if difference > 0 else FAIL), math.copysign(math.inf, difference)
    z = difference / scale
    return (PASS if z > z_c else FAIL if z < -z_c else NOT_ESTABLISHED), z


def z_criterion(
    name: str,
    estimate: Estimate,
    reference_estimate: Estimate,
    reference: str,
    confidence: float,
    what_to_spend: str = "spend more HVPs (--num-matvecs)",
) -> Criterion:
    """``estimate < reference_estimate`` by the one-sided z-test (module docs)."""
    (value, stderr), (ref_value, ref_stderr) = estimate, reference_estimate
    measured = format_number(value, stderr)
    threshold = f"< {format_number(ref_value, ref_stderr)}"
    if value is None or ref_value is None:
        return Criterion(
            name, NOT_ESTABLISHED, measured, threshold, "a value is missing", reference
        )
    if stderr is None or ref_stderr is None:
        detail = "a standard error is missing, so the difference cannot be tested"
        return Criterion(name, NOT_ESTABLISHED, measured, threshold, detail, reference)
    z_c = z_critical(confidence)
    status, z = _z_status(value, abs(stderr), ref_value, abs(ref_stderr), z_c)
    relation = {PASS: "> ", FAIL: "< -", NOT_ESTABLISHED: "is within ±"}[status]
    detail = f"z = {z:.3g} {relation}{z_c:.3g} (one-sided test, confidence {confidence:g})"
    if status == NOT_ESTABLISHED:
        detail += f"; the error bars overlap: {what_to_spend} to decide"
    numbers = {
        "value": value,
        "stderr": stderr,
        "reference_value": ref_value,
        "reference_stderr": ref_stderr,
        "z": z,
        "z_critical": z_c,
    }
    return Criterion(name, status, measured, threshold, detail, reference, numbers)


def estimate_of(entry: Any) -> Estimate:
    """``(value, stderr)`` of a report entry ``{"value", "stderr"}``; ``None`` where missing."""
    if not isinstance(entry, Mapping):
        return None, None
    return as_number(entry.get("value")), as_number(entry.get("stderr"))


def eigenvalue_interval(entry: Any, which: str) -> tuple[float, float] | None:
    """The bound interval of ``lambda_max`` (``which="largest"``) or ``lambda_min``
    (``"smallest"``) from a report's eigenvalue entry (``{"values", "residuals"}``):
    ``[theta, theta + r]`` or ``[theta - r, theta]`` for the most extreme Ritz value ``theta``
    and its residual norm ``r`` (see the module docs). ``None`` when the entry is missing."""
    if not isinstance(entry, Mapping):
        return None
    values, residuals = entry.get("values"), entry.get("residuals")
    if not isinstance(values, list) or not isinstance(residuals, list) or not values:
        return None
    pairs = [(as_number(v), as_number(r)) for v, r in zip(values, residuals, strict=False)]
    pairs = [(v, r) for v, r in pairs if v is not None and r is not None]
    if not pairs:
        return None
    if which == "largest":
        theta, r = max(pairs)
        return theta, theta + abs(r)
    theta, r = min(pairs)
    return theta - abs(r), theta


def interval_text(interval: tuple[float, float] | None) -> str:
    """``[low, high]`` to 4 significant digits, ``n/a`` for ``None``."""
    return "n/a" if interval is None else f"[{interval[0]:.4g}, {interval[1]:.4g}]"
