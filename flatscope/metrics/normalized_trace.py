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

import torch

from flatscope.metrics.base import AnalysisContext
from flatscope.metrics.scaled_trace import ScaledTraceMetric

__all__ = ["NormalizedTraceMetric", "block_norm_scale"]


def block_norm_scale(weights: torch.Tensor, blocks: Mapping[str, slice]) -> torch.Tensor:
    """The vector ``s`` with ``s_i = ||w_b||`` for every coordinate ``i`` of block ``b``."""
    scale = torch.empty_like(weights)
    for block in blocks.values():
        scale[block] = weights[block].norm()
    return scale


class NormalizedTraceMetric(ScaledTraceMetric):
    """``normalized_trace``: ``{"value", "stderr", "method", "num_matvecs", "per_block"}``."""

    name = "normalized_trace"
    entries = ("normalized_trace",)
    help = "per-layer normalised trace sum_b ||w_b||^2 tr H_bb: invariant to layer rescalings"
    order = 14
    default = False
    title, formula = "normalized trace", "sum_b ||w_b||^2 tr H_bb"
    always_claimed = False

    def scale(self, context: AnalysisContext) -> torch.Tensor:
        """``||w_b||`` on every coordinate of block ``b``."""
        return block_norm_scale(context.operator.flat_params(), context.operator.blocks)


METRIC = NormalizedTraceMetric()
