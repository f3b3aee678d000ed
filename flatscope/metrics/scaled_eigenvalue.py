"""The largest eigenvalue of the elementwise-scaled Hessian ``D H D``, ``D = diag(|w|)``.

**What it measures.** The sharpest curvature when every weight moves in proportion to its own
size: ``max_u u^T D H D u / u^T u``, i.e. the largest second derivative of ``L(w + D u)`` over
unit ``u`` — the worst case of the quadratic model of adaptive sharpness (Kwon et al., ASAM,
ICML 2021), as ``tr(D H D)`` (:mod:`~flatscope.metrics.scaled_trace`) is its average case.

**Invariant to** the same reparametrisations as ``tr(D H D)``: positive diagonal rescalings that
keep the function (BatchNorm-fed weights per layer or channel, ReLU layer pairs ``c`` and
``1 / c`` per layer or unit) and signed permutations of units, because ``D H D`` itself is
unchanged (or permuted) by them. **Not invariant to** reparametrisations that mix coordinates.

**Estimator.** Thick-restart Lanczos (:func:`flatscope.linalg.eigenvalues`) on
:class:`~flatscope.operators.scaled.DiagonallyScaled` with the settings' ``eig_tol``,
``eig_max_matvecs`` and seed; the residual norm bounds the distance to an eigenvalue (Parlett,
Thm. 4.5.1), the value's error bar. Off by default (up to ``eig_max_matvecs`` products); ``verify``
compares the bound intervals, as for the raw top eigenvalue, when a report has it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from flatscope.io.tables import as_number, format_number
from flatscope.linalg import eigenvalues
from flatscope.metrics.base import AnalysisContext, Cell, Metric, VerifySettings
from flatscope.metrics.criteria import Criterion, eigenvalue_interval, missing
from flatscope.metrics.eigenvalues import compare_top_eigenvalue
from flatscope.metrics.settings import AnalysisSettings
from flatscope.operators.scaled import DiagonallyScaled

__all__ = ["ScaledEigenvalueMetric"]


class ScaledEigenvalueMetric(Metric):
    """``scaled_top_eigenvalue``: ``{"values", "residuals", "num_matvecs", "converged", "tol"}``
    of the largest eigenvalue of ``D H D``."""

    name = "scaled_eigenvalue"
    entries = ("scaled_top_eigenvalue",)
    help = "largest eigenvalue of D H D, D = diag(|w|), with its residual bound"
    order = 22
    settings = ("eig_tol", "eig_max_matvecs")

    def budget(self, entry: str, settings: AnalysisSettings) -> int:
        return settings.eig_max_matvecs

    def compute(self, entry: str, context: AnalysisContext) -> dict[str, Any]:
        s = context.settings
        magnitudes = context.operator.flat_params().abs()

        def solve(op: Any) -> dict[str, Any]:
            scaled = DiagonallyScaled(op, magnitudes)
            result = eigenvalues(scaled, 1, "largest", s.eig_tol, s.eig_max_matvecs, s.seed)
            return {**result.to_dict(), "tol": s.eig_tol}

        return context.run(entry, s.eig_max_matvecs, solve)

    def describe(self, entry: str, value: Any) -> str:
        theta, residual = as_number(value["values"][0]), as_number(value["residuals"][0])
        note = "" if value["converged"] else ", not converged"
        return f"{format_number(theta)}  (residual {format_number(residual)}{note})"

    def rows(self, entry: str, value: Any) -> dict[str, Cell]:
        interval = eigenvalue_interval(value, "largest")
        if interval is None:
            return {}
        return {"scaled top eigenvalue": (interval[0], interval[1] - interval[0])}

    def flatter_criteria(
        self,
        metrics: Mapping[str, Any],
        reference: Mapping[str, Any],
        label: str,
        settings: VerifySettings,
    ) -> list[Criterion]:
        entry = self.entries[0]
        if entry not in metrics and entry not in reference:
            return []
        if entry not in metrics or entry not in reference:
            detail = f"a report lacks {entry}; analyse both with --metrics ...,{self.name}"
            return [missing(entry, detail, label)]
        criterion = compare_top_eigenvalue(
            {"top_eigenvalues": metrics.get(entry)},
            {"top_eigenvalues": reference.get(entry)},
            label,
        )
        return [dataclasses.replace(criterion, name=entry)]


METRIC = ScaledEigenvalueMetric()
