"""The Hessian diagonal by Hutchinson's estimator (Bekas, Kokiopoulou, Saad 2007).

``hessian_diagonal`` is stored as a summary (dimension, sum, mean, min, max, and per-block mean,
min, max); the full ``values`` and ``stderr`` lists are added only up to
:data:`DIAGONAL_FULL_LIMIT` parameters, to keep reports small. Its sum is another estimate of
``tr H``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from flatscope.io.tables import as_number, format_number
from flatscope.linalg import diagonal
from flatscope.metrics.base import AnalysisContext, Cell, Metric
from flatscope.metrics.settings import AnalysisSettings

__all__ = ["DIAGONAL_FULL_LIMIT", "DiagonalMetric", "diagonal_summary"]

#: ``hessian_diagonal`` keeps every entry only up to this many parameters.
DIAGONAL_FULL_LIMIT = 10_000


def diagonal_summary(
    values: torch.Tensor, stderr: torch.Tensor, blocks: Mapping[str, slice]
) -> dict[str, Any]:
    """The report's summary of an estimated diagonal (module docs)."""

    def stats(x: torch.Tensor) -> dict[str, float]:
        return {"mean": float(x.mean()), "min": float(x.min()), "max": float(x.max())}

    out: dict[str, Any] = {"dimension": values.numel(), "sum": float(values.sum())}
    out.update(stats(values))
    out["per_block"] = {name: stats(values[block]) for name, block in blocks.items()}
    if values.numel() <= DIAGONAL_FULL_LIMIT:
        out["values"], out["stderr"] = values.tolist(), stderr.tolist()
    return out


class DiagonalMetric(Metric):
    """``hessian_diagonal``: the summary of :func:`diagonal_summary` and ``num_matvecs``."""

    name = "diagonal"
    entries = ("hessian_diagonal",)
    help = "Hutchinson estimate of the Hessian diagonal (summary per block)"
    order = 40
    settings = ("num_matvecs",)

    def budget(self, entry: str, settings: AnalysisSettings) -> int:
        return settings.num_matvecs

    def compute(self, entry: str, context: AnalysisContext) -> dict[str, Any]:
        s = context.settings

        def estimate(op: Any) -> dict[str, Any]:
            result = diagonal(op, s.num_matvecs, s.seed)
            summary = diagonal_summary(result.values, result.stderr, context.operator.blocks)
            return {**summary, "num_matvecs": result.num_matvecs}

        return context.run("hessian_diagonal", s.num_matvecs, estimate)

    def describe(self, entry: str, value: Any) -> str:
        low, high = format_number(value["min"]), format_number(value["max"])
        return f"sum {format_number(value['sum'])}, min {low}, max {high}"

    def rows(self, entry: str, value: Any) -> dict[str, Cell]:
        return {"diagonal sum": (as_number(value.get("sum")), None)}


METRIC = DiagonalMetric()
