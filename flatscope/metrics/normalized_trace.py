"""The per-layer normalised trace ``sum_b ||w_b||^2 tr H_bb`` over parameter tensors ``b``.

**What it measures.** Each parameter tensor's Hessian trace in units of that tensor's squared
norm: ``||w_b||^2 tr H_bb`` is ``d_b`` times the mean curvature along the block's coordinates
for a step of the block's own size. It is the trace of ``S H S`` with ``S`` constant on each
block (``S_ii = ||w_b||`` for ``i`` in ``b``), and ``per_block`` holds the terms.

**Invariant to** rescaling a whole parameter tensor by one factor ``c > 0`` when the function is
kept: ``H_bb -> H_bb / c^2``, ``||w_b||^2 -> c^2 ||w_b||^2`` (a BatchNorm-fed convolution scaled
as a whole; a ReLU layer pair scaled ``c`` and ``1 / c``, the first layer's bias with its
weights), and to permutations and sign flips within a tensor.

**Not invariant to** rescalings that differ within a tensor: BatchNorm-fed channels or ReLU
units scaled each by its own factor change it (the elementwise-adaptive
:mod:`~flatscope.metrics.scaled_trace` is invariant to those), nor to rescalings that move
weight between the tensors of one layer (a layer's weight and bias scaled differently is not
function-preserving anyway).

**Estimator.** :func:`flatscope.linalg.trace` of ``S H S`` with the method, budget and seed of
``hessian_trace`` (``num_matvecs`` further products) and the estimator's standard error. Off by
default: ``scaled_trace`` is invariant to more; ask with ``--metrics ...,normalized_trace``.
``verify`` claims "flatter" on it when a report has it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from flatscope.io.tables import as_number, format_number
from flatscope.metrics.base import AnalysisContext, Cell, Metric, VerifySettings
from flatscope.metrics.criteria import Criterion, estimate_of
from flatscope.metrics.scaled_trace import block_rows_of, compare_estimates, scaled_trace
from flatscope.metrics.settings import AnalysisSettings

__all__ = ["NormalizedTraceMetric", "block_norm_scale"]


def block_norm_scale(weights: torch.Tensor, blocks: Mapping[str, slice]) -> torch.Tensor:
    """The vector ``s`` with ``s_i = ||w_b||`` for every coordinate ``i`` of block ``b``."""
    scale = torch.empty_like(weights)
    for block in blocks.values():
        scale[block] = weights[block].norm()
    return scale


class NormalizedTraceMetric(Metric):
    """``normalized_trace``: ``{"value", "stderr", "method", "num_matvecs", "per_block"}``."""

    name = "normalized_trace"
    entries = ("normalized_trace",)
    help = "per-layer normalised trace sum_b ||w_b||^2 tr H_bb: invariant to layer rescalings"
    order = 14

    def budget(self, entry: str, settings: AnalysisSettings) -> int:
        return settings.num_matvecs

    def compute(self, entry: str, context: AnalysisContext) -> dict[str, Any]:
        s = context.settings
        scale = block_norm_scale(context.operator.flat_params(), context.operator.blocks)
        return context.run(entry, s.num_matvecs, lambda op: scaled_trace(op, scale, s))

    def describe(self, entry: str, value: Any) -> str:
        number = format_number(as_number(value["value"]), as_number(value["stderr"]))
        return f"{number}  (sum_b ||w_b||^2 tr H_bb; {value['method']})"

    def rows(self, entry: str, value: Any) -> dict[str, Cell]:
        return {"normalized trace": estimate_of(value)}

    def block_rows(self, entry: str, value: Any) -> dict[str, Cell]:
        return block_rows_of(value, "normalized trace")

    def flatter_criteria(
        self,
        metrics: Mapping[str, Any],
        reference: Mapping[str, Any],
        label: str,
        settings: VerifySettings,
    ) -> list[Criterion]:
        if self.name not in metrics and self.name not in reference:
            return []
        return [compare_estimates(self.name, metrics, reference, label, settings.confidence)]


METRIC = NormalizedTraceMetric()
