"""The extreme eigenvalues of the Hessian, with residual bounds, and the criteria they decide.

``top_eigenvalues`` (the ``top_k`` largest) and, when ``bottom_k > 0``, ``bottom_eigenvalues``
(the most negative) come from thick-restart Lanczos (:func:`flatscope.linalg.eigenvalues`). Each
Ritz value ``theta`` comes with its residual norm ``||H y - theta y||``, which bounds the
distance from ``theta`` to the nearest eigenvalue (Parlett, *The Symmetric Eigenvalue Problem*,
Thm. 4.5.1): it is the value's error bar.

``verify`` decides two claims with them (the intervals of :mod:`flatscope.metrics.criteria`):

- **negative curvature** (a minimum): ``lambda_min >= -neg_tol * lambda_max``. Network Hessians
  at the end of training keep a few small negative eigenvalues (Sagun et al. 2017; Ghorbani,
  Krishnan, Xiao, ICML 2019), so the default ``neg_tol = 0.05`` asks for them to be at most 5%
  of ``lambda_max`` in size. It passes when it holds at the worst ends of both intervals, fails
  when it fails at the best ends, and is not established in between. It needs the Hessian's
  eigenvalues: those of ``--curvature ggn`` or ``fisher`` (recorded in each entry as
  ``curvature``) are non-negative by construction and establish nothing about a minimum.
- **top eigenvalue** (flatter): ``lambda_max < lambda_max(R)`` when the subject's interval lies
  below the reference's, fails when it lies at or above it, not established when they overlap.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flatscope.io.tables import as_number, format_number
from flatscope.linalg import eigenvalues
from flatscope.metrics.base import AnalysisContext, Cell, Metric, VerifySettings
from flatscope.metrics.criteria import (
    FAIL,
    NOT_ESTABLISHED,
    PASS,
    Criterion,
    eigenvalue_interval,
    interval_text,
    missing,
)
from flatscope.metrics.settings import AnalysisSettings

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["EigenvalueMetric", "check_negative_curvature", "compare_top_eigenvalue"]

_WHICH = {"top_eigenvalues": "largest", "bottom_eigenvalues": "smallest"}
_TITLES = {"top_eigenvalues": "top eigenvalue", "bottom_eigenvalues": "bottom eigenvalue"}


def check_negative_curvature(
    metrics: Mapping[str, Any], neg_tol: float = VerifySettings.neg_tol
) -> Criterion:
    """``lambda_min >= -neg_tol * lambda_max`` over the eigenvalues' bound intervals."""
    entries = [metrics.get(name) for name in ("bottom_eigenvalues", "top_eigenvalues")]
    kinds = {e.get("curvature", "hessian") for e in entries if isinstance(e, Mapping)}
    if kinds - {"hessian"}:
        return missing(
            "negative_curvature",
            f"the eigenvalues are of the {'/'.join(sorted(kinds))} (--curvature), positive "
            "semi-definite by construction; analyse with --curvature hessian to establish it",
        )
    low = eigenvalue_interval(metrics.get("bottom_eigenvalues"), "smallest")
    high = eigenvalue_interval(metrics.get("top_eigenvalues"), "largest")
    if low is None or high is None:
        lacking = " and ".join(
            name for name, found in (("bottom", low), ("top", high)) if found is None
        )
        return missing(
            "negative_curvature",
            f"the report has no {lacking} eigenvalues; analyse the checkpoint with "
            "--bottom-k 1 (verify a checkpoint rather than a report) to establish it",
        )
    # lambda_min + neg_tol * lambda_max grows with both, so its extremes sit at the corners.
    worst, best = low[0] + neg_tol * high[0], low[1] + neg_tol * high[1]
    status = PASS if worst >= 0 else FAIL if best < 0 else NOT_ESTABLISHED
    threshold = (-neg_tol * high[1], -neg_tol * high[0])
    details = {
        PASS: "holds at the worst ends of both eigenvalue intervals",
        FAIL: "fails even at the best ends of both eigenvalue intervals",
        NOT_ESTABLISHED: "the eigenvalue intervals straddle the threshold; tighten --eig-tol",
    }
    return Criterion(
        "negative_curvature",
        status,
        f"lambda_min in {interval_text(low)}",
        f">= -{neg_tol:g} x lambda_max, in {interval_text(threshold)}",
        details[status],
        numbers={"lambda_min": list(low), "lambda_max": list(high), "threshold": list(threshold)},
    )


def compare_top_eigenvalue(
    metrics: Mapping[str, Any], reference: Mapping[str, Any], label: str
) -> Criterion:
    """``lambda_max < lambda_max(R)`` by disjoint bound intervals (see the module docs)."""
    mine = eigenvalue_interval(metrics.get("top_eigenvalues"), "largest")
    theirs = eigenvalue_interval(reference.get("top_eigenvalues"), "largest")
    measured, threshold = interval_text(mine), f"< {interval_text(theirs)}"
    if mine is None or theirs is None:
        detail = "a report has no top_eigenvalues"
        return Criterion("top_eigenvalue", NOT_ESTABLISHED, measured, threshold, detail, label)
    if mine[1] < theirs[0]:
        status, detail = PASS, "the interval lies below the reference's"
    elif mine[0] >= theirs[1]:
        status, detail = FAIL, "the interval lies at or above the reference's"
    else:
        status, detail = NOT_ESTABLISHED, "the intervals overlap; tighten --eig-tol to decide"
    numbers = {"interval": list(mine), "reference_interval": list(theirs)}
    return Criterion("top_eigenvalue", status, measured, threshold, detail, label, numbers)


class EigenvalueMetric(Metric):
    """``top_eigenvalues`` / ``bottom_eigenvalues``: ``{"values", "residuals", "num_matvecs",
    "converged", "tol", "block_size", ...}``."""

    name = "eigenvalues"
    entries = ("top_eigenvalues", "bottom_eigenvalues")
    help = "largest (and with --bottom-k most negative) eigenvalues with residual bounds"
    order = 20
    settings = ("top_k", "bottom_k", "eig_tol", "eig_max_matvecs")
    default = True

    def wanted(self, entry: str, settings: AnalysisSettings) -> bool:
        return entry == "top_eigenvalues" or settings.bottom_k > 0

    def budget(self, entry: str, settings: AnalysisSettings) -> int:
        return settings.eig_max_matvecs

    def compute(self, entry: str, context: AnalysisContext) -> dict[str, Any]:
        s = context.settings
        which = _WHICH[entry]
        k = min(s.top_k if which == "largest" else s.bottom_k, context.operator.shape[0])

        def solve(op: Any) -> dict[str, Any]:
            result = eigenvalues(op, k, which, s.eig_tol, s.eig_max_matvecs, s.seed)
            return {**result.to_dict(), "tol": s.eig_tol, "curvature": s.curvature}

        return context.run(f"{which} eigenvalues", s.eig_max_matvecs, solve)

    def describe(self, entry: str, value: Any) -> str:
        values = ", ".join(format_number(as_number(v)) for v in value["values"])
        note = "" if value["converged"] else ", not converged"
        residual = format_number(as_number(max(value["residuals"], default=None)))
        return f"{values}  (residuals <= {residual}{note})"

    def rows(self, entry: str, value: Any) -> dict[str, Cell]:
        if not isinstance(value, Mapping):
            return {}
        values, residuals = value.get("values") or [], value.get("residuals") or []
        return {
            f"{_TITLES[entry]} {rank}": (as_number(v), as_number(r))
            for rank, (v, r) in enumerate(zip(values, residuals, strict=False), 1)
        }

    def seed_rows(self, entry: str, value: Any) -> dict[str, Cell]:
        """The top eigenvalue only: the most negative one is no flatness measure."""
        return super().seed_rows(entry, value) if entry == "top_eigenvalues" else {}

    def minimum_criteria(
        self, metrics: Mapping[str, Any], settings: VerifySettings
    ) -> list[Criterion]:
        return [check_negative_curvature(metrics, settings.neg_tol)]

    def flatter_criteria(
        self,
        metrics: Mapping[str, Any],
        reference: Mapping[str, Any],
        label: str,
        settings: VerifySettings,
    ) -> list[Criterion]:
        return [compare_top_eigenvalue(metrics, reference, label)]

    def figures(self, metrics: Mapping[str, Any]) -> dict[str, Figure]:
        from flatscope.plotting.report_figures import eigenvalue_figure

        figure = eigenvalue_figure(metrics)
        return {} if figure is None else {"eigenvalues": figure}


METRIC = EigenvalueMetric()
