"""Adaptive average-case and worst-case sharpness: perturbations measured relative to ``|w|``.

**What it measures.** With ``D = diag(|w|)``:

- average case ``E[L(w + sigma D z)] - L(w)``, ``z ~ N(0, I)``, ``sigma = adaptive_sigma``: the
  loss increase under Gaussian noise whose size on each weight is a fraction ``sigma`` of that
  weight, beside its second-order term ``(sigma^2 / 2) tr(D H D)`` (from
  :mod:`~flatscope.metrics.scaled_trace`, the same estimate, not spent twice) and that term per
  parameter block;
- worst case ``max_{||u||_2 <= rho} L(w + D u) - L(w)``, ``rho = adaptive_rho``, by projected
  gradient ascent in ``u`` (a lower bound of the maximum, no error bar).

Kwon, Kim, Park, Choi (ASAM, ICML 2021) define adaptive sharpness with the normalisation operator
``T_w = |w|``; Andriushchenko, Croce, Müller, Hein, Flammarion (ICML 2023) study both forms
(and find that even adaptive sharpness tracks generalisation only within restricted settings).
Computed by :func:`flatscope.landscape.sharpness.average_sharpness` and
:func:`~flatscope.landscape.sharpness.worst_case_sharpness` with ``adaptive=True``.

**Invariant to** positive diagonal rescalings that keep the function (BatchNorm-fed weights per
layer or channel, ReLU layer pairs ``c`` and ``1 / c`` per layer or unit): with ``w -> T w`` the
perturbation ``sigma D z`` becomes ``T sigma D z``, so for the same draws ``z`` (same seed) every
perturbed loss, and the ascent path in ``u``, is the same. Permutations and sign flips of units
leave the distribution of the average case unchanged (not its draws). **Not invariant to**
reparametrisations that mix coordinates; weights at zero are never perturbed.

Cost: ``2 x 32`` perturbed loss evaluations and 20 gradients over the analysed data, plus the
scaled trace when it has not been computed. Off by default; ``verify --sharpness`` claims
"flatter" on the average case by the one-sided z-test on its Monte Carlo standard error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from flatscope.io.tables import as_number, format_number
from flatscope.landscape.sharpness import average_sharpness, worst_case_sharpness
from flatscope.metrics.base import AnalysisContext, Cell, Metric, VerifySettings
from flatscope.metrics.criteria import Criterion, estimate_of
from flatscope.metrics.scaled_trace import scaled_trace_of
from flatscope.metrics.settings import AnalysisSettings
from flatscope.metrics.sharpness import SHARPNESS_SAMPLES, SHARPNESS_STEPS, compare_sharpness
from flatscope.progress import Progress

__all__ = ["AdaptiveSharpnessMetric"]


def _second_order(sigma: float, scaled: Mapping[str, Any]) -> dict[str, Any]:
    """``(sigma^2 / 2) tr(D H D)`` with its standard error, in total and per block."""
    factor = sigma**2 / 2
    blocks = scaled.get("per_block") or {}
    return {
        "second_order": factor * scaled["value"],
        "second_order_stderr": factor * scaled["stderr"],
        "second_order_per_block": {
            name: [factor * v, factor * s] for name, (v, s) in blocks.items()
        },
        "trace_method": scaled["method"],
        "trace_num_matvecs": scaled["num_matvecs"],
    }


class AdaptiveSharpnessMetric(Metric):
    """``adaptive_sharpness``: ``{"average": {..., "second_order_per_block"}, "worst_case"}``
    (the fields of :class:`~flatscope.landscape.sharpness.AverageSharpness` and
    :class:`~flatscope.landscape.sharpness.WorstCaseSharpness`, ``adaptive`` true)."""

    name = "adaptive_sharpness"
    entries = ("adaptive_sharpness",)
    help = "adaptive (|w|-relative) average-case and worst-case sharpness"
    order = 55

    def budget(self, entry: str, settings: AnalysisSettings) -> int:
        return settings.num_matvecs

    def compute(self, entry: str, context: AnalysisContext) -> dict[str, Any]:
        s = context.settings
        scaled = scaled_trace_of(context)
        common = {"seed": s.seed, "params": s.params, "device": s.device, "dtype": s.torch_dtype}
        batches = context.batches
        with Progress("adaptive sharpness", None, unit="", enabled=context.progress):
            average = average_sharpness(
                context.model,
                context.loss_fn,
                batches,
                s.adaptive_sigma,
                num_samples=SHARPNESS_SAMPLES,
                adaptive=True,
                trace_matvecs=0,
                **common,
            )
            worst = worst_case_sharpness(
                context.model,
                context.loss_fn,
                batches,
                s.adaptive_rho,
                adaptive=True,
                steps=SHARPNESS_STEPS,
                **common,
            )
        second = _second_order(s.adaptive_sigma, scaled)
        return {"average": {**average.to_dict(), **second}, "worst_case": worst.to_dict()}

    def describe(self, entry: str, value: Any) -> str:
        average, worst = value["average"], value["worst_case"]
        mean = format_number(as_number(average["value"]), as_number(average["stderr"]))
        second = format_number(as_number(average["second_order"]))
        return (
            f"avg {mean} (sigma {format_number(average['sigma'])} |w|, 2nd order {second}); "
            f"worst {format_number(as_number(worst['value']))} (rho {format_number(worst['rho'])})"
        )

    def products(self, entry: str, value: Any) -> int | None:
        return value["average"]["trace_num_matvecs"]

    def rows(self, entry: str, value: Any) -> dict[str, Cell]:
        average, worst = value.get("average") or {}, value.get("worst_case") or {}
        rows: dict[str, Cell] = {}
        if average:
            sigma = f"sigma={average.get('sigma')}"
            rows[f"adaptive avg sharpness ({sigma})"] = estimate_of(average)
            rows[f"(sigma^2/2) tr(DHD) ({sigma})"] = (
                as_number(average.get("second_order")),
                as_number(average.get("second_order_stderr")),
            )
        if worst:
            rows[f"adaptive worst-case sharpness (rho={worst.get('rho')})"] = (
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
        criterion = compare_sharpness(
            {"sharpness": metrics.get(self.name)},
            {"sharpness": reference.get(self.name)},
            label,
            settings.confidence,
        )
        detail = criterion.detail.replace("--metrics ...,sharpness", f"--metrics ...,{self.name}")
        detail = detail.replace("--sharpness-sigma", "--adaptive-sigma")
        return [dataclasses.replace(criterion, name=self.name, detail=detail)]


METRIC = AdaptiveSharpnessMetric()
