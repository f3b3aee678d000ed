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

from flatscope.landscape.sharpness import average_sharpness, worst_case_sharpness
from flatscope.metrics.base import AnalysisContext, Cell, VerifySettings
from flatscope.metrics.criteria import Criterion
from flatscope.metrics.scaled_trace import METRIC as SCALED_TRACE
from flatscope.metrics.sharpness import SHARPNESS_SAMPLES, SHARPNESS_STEPS, SharpnessMetric
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
            name: [factor * v, factor * e] for name, (v, e) in blocks.items()
        },
        "trace_method": scaled["method"],
        "trace_num_matvecs": scaled["num_matvecs"],
    }


class AdaptiveSharpnessMetric(SharpnessMetric):
    """``adaptive_sharpness``: ``{"average": {..., "second_order_per_block"}, "worst_case"}``
    (the fields of :class:`~flatscope.landscape.sharpness.AverageSharpness` and
    :class:`~flatscope.landscape.sharpness.WorstCaseSharpness`, ``adaptive`` true); shown as
    :class:`~flatscope.metrics.sharpness.SharpnessMetric` shows its entry, marked adaptive."""

    name = "adaptive_sharpness"
    entries = ("adaptive_sharpness",)
    help = "adaptive (|w|-relative) average-case and worst-case sharpness"
    order = 55
    settings = ("adaptive_sigma", "adaptive_rho", "trace_method", "num_matvecs")

    def compute(self, entry: str, context: AnalysisContext) -> dict[str, Any]:
        s = context.settings
        scaled = SCALED_TRACE.compute(SCALED_TRACE.entries[0], context)
        objective = context.operator.objective
        with Progress("adaptive sharpness", None, unit="", enabled=context.progress):
            average = average_sharpness(
                objective,
                s.adaptive_sigma,
                num_samples=SHARPNESS_SAMPLES,
                adaptive=True,
                trace_matvecs=0,
                seed=s.seed,
            )
            worst = worst_case_sharpness(
                objective, s.adaptive_rho, adaptive=True, steps=SHARPNESS_STEPS, seed=s.seed
            )
        second = _second_order(s.adaptive_sigma, scaled)
        return {"average": {**average.to_dict(), **second}, "worst_case": worst.to_dict()}

    def describe(self, entry: str, value: Any) -> str:
        return "adaptive " + super().describe(entry, value)

    def rows(self, entry: str, value: Any) -> dict[str, Cell]:
        rows = super().rows(entry, value).items()
        return {"adaptive " + name.replace("tr H", "tr(DHD)"): cell for name, cell in rows}

    def flatter_criteria(
        self,
        metrics: Mapping[str, Any],
        reference: Mapping[str, Any],
        label: str,
        settings: VerifySettings,
    ) -> list[Criterion]:
        mine, theirs = ({"sharpness": d.get(self.name)} for d in (metrics, reference))
        return [
            dataclasses.replace(
                criterion,
                name=self.name,
                detail=criterion.detail.replace("sharpness-sigma", "adaptive-sigma").replace(
                    "...,sharpness", f"...,{self.name}"
                ),
            )
            for criterion in super().flatter_criteria(mine, theirs, label, settings)
        ]


METRIC = AdaptiveSharpnessMetric()
