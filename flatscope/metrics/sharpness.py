"""Average-case and worst-case sharpness beside the trace's second-order prediction.

``sharpness`` holds ``{"average": ..., "worst_case": ...}`` from
:func:`flatscope.landscape.sharpness.average_sharpness` (Gaussian perturbations of standard
deviation ``sharpness_sigma``, with its second-order prediction ``(sigma^2 / 2) tr H``;
Andriushchenko et al., ICML 2023) and
:func:`~flatscope.landscape.sharpness.worst_case_sharpness` (projected ascent in the l2 ball of
radius ``sharpness_rho``, a lower bound; Keskar et al., ICLR 2017). ``verify --sharpness``
claims "flatter" on average-case sharpness by the one-sided z-test on its Monte Carlo standard
error; both reports must use the same ``sigma``. The prediction's ``H`` is the Hessian whatever
``--curvature`` the rest of the analysis measures: the relation is a Taylor expansion of the loss.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from flatscope.io.tables import as_number, format_number
from flatscope.landscape.sharpness import average_sharpness, worst_case_sharpness
from flatscope.metrics.base import AnalysisContext, Cell, Metric, VerifySettings
from flatscope.metrics.criteria import Criterion, estimate_of, missing, z_criterion
from flatscope.metrics.settings import AnalysisSettings
from flatscope.metrics.trace import hessian_trace_entry
from flatscope.operators.hessian import HessianOperator
from flatscope.progress import Progress

__all__ = ["SHARPNESS_SAMPLES", "SHARPNESS_STEPS", "SharpnessMetric", "compare_sharpness"]

#: Perturbations of average-case sharpness and ascent steps of worst-case sharpness.
SHARPNESS_SAMPLES = 32
SHARPNESS_STEPS = 20


def _average(metrics: Mapping[str, Any]) -> Mapping[str, Any] | None:
    entry = metrics.get("sharpness")
    average = entry.get("average") if isinstance(entry, Mapping) else None
    return average if isinstance(average, Mapping) else None


def compare_sharpness(
    metrics: Mapping[str, Any], reference: Mapping[str, Any], label: str, confidence: float
) -> Criterion:
    """Average-case sharpness lower than the reference's, by the one-sided z-test; both
    reports must have measured it with the same ``sigma`` (and ``adaptive`` flag)."""
    mine, theirs = _average(metrics), _average(reference)
    if mine is None or theirs is None:
        detail = "a report has no sharpness; analyse with --metrics ...,sharpness"
        return missing("sharpness", detail, label)
    settings = [(entry.get("sigma"), entry.get("adaptive")) for entry in (mine, theirs)]
    if settings[0] != settings[1]:
        return missing(
            "sharpness",
            f"the reports used different perturbations (sigma, adaptive) {settings[0]} and "
            f"{settings[1]}; analyse both with the same --sharpness-sigma",
            label,
        )
    criterion = z_criterion("sharpness", estimate_of(mine), estimate_of(theirs), label, confidence)
    sigma = f"sigma {format_number(as_number(settings[0][0]))}: "
    return Criterion(
        criterion.name,
        criterion.status,
        sigma + criterion.measured,
        criterion.threshold,
        criterion.detail,
        label,
        {**criterion.numbers, "sigma": settings[0][0]},
    )


class SharpnessMetric(Metric):
    """``sharpness``: ``{"average": AverageSharpness.to_dict(), "worst_case": ...}``."""

    name = "sharpness"
    entries = ("sharpness",)
    help = "average-case (Gaussian) and worst-case sharpness"
    order = 50
    settings = ("sharpness_sigma", "sharpness_rho", "trace_method", "num_matvecs")

    def budget(self, entry: str, settings: AnalysisSettings) -> int:
        return settings.num_matvecs

    def compute(self, entry: str, context: AnalysisContext) -> dict[str, Any]:
        s = context.settings
        # the analysis's objective: no second counting pass. The prediction (sigma^2 / 2) tr H
        # is a Hessian's whatever the analysis's curvature (--curvature): on the Hessian it is
        # the analysis's own hessian_trace (one estimate for both entries), on another
        # curvature a Hessian trace of the same objective
        objective = context.operator.objective
        on_hessian = isinstance(context.operator, HessianOperator)
        with Progress("sharpness", None, unit="", enabled=context.progress):
            average = average_sharpness(
                objective,
                s.sharpness_sigma,
                num_samples=SHARPNESS_SAMPLES,
                trace_method=s.trace_method,
                trace_matvecs=0 if on_hessian else s.num_matvecs,
                seed=s.seed,
            )
            worst = worst_case_sharpness(
                objective, s.sharpness_rho, steps=SHARPNESS_STEPS, seed=s.seed
            )
        if on_hessian:
            before = context.products
            estimate = hessian_trace_entry(context)
            half = s.sharpness_sigma**2 / 2
            average = dataclasses.replace(
                average,
                second_order=half * estimate["value"],
                second_order_stderr=half * estimate["stderr"],
                trace_method=estimate["method"],
                trace_num_matvecs=context.products - before,
            )
        return {"average": average.to_dict(), "worst_case": worst.to_dict()}

    def describe(self, entry: str, value: Any) -> str:
        average, worst = value["average"], value["worst_case"]

        def number(entry: Mapping[str, Any], key: str) -> str:
            return format_number(as_number(entry[key]))

        mean = format_number(as_number(average["value"]), as_number(average["stderr"]))
        return (
            f"avg {mean} (sigma {number(average, 'sigma')}, 2nd order "
            f"{number(average, 'second_order')}); worst {number(worst, 'value')} "
            f"(rho {number(worst, 'rho')})"
        )

    def products(self, entry: str, value: Any) -> int | None:
        return value["average"]["trace_num_matvecs"]

    def rows(self, entry: str, value: Any) -> dict[str, Cell]:
        if not isinstance(value, Mapping):
            return {}
        rows: dict[str, Cell] = {}
        average, worst = value.get("average") or {}, value.get("worst_case") or {}
        if average:
            sigma = f"sigma={average.get('sigma')}"
            rows[f"avg sharpness ({sigma})"] = estimate_of(average)
            rows[f"(sigma^2/2) tr H ({sigma})"] = (
                as_number(average.get("second_order")),
                as_number(average.get("second_order_stderr")),
            )
        if worst:
            rows[f"worst-case sharpness (rho={worst.get('rho')})"] = (
                as_number(worst.get("value")),
                None,
            )
        return rows

    def flatter_criteria(
        self,
        metrics: Mapping[str, Any],
        reference: Mapping[str, Any],
        label: str,
        settings: VerifySettings,
    ) -> list[Criterion]:
        if not settings.sharpness:
            return []
        return [compare_sharpness(metrics, reference, label, settings.confidence)]


METRIC = SharpnessMetric()
