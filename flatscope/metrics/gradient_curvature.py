"""The curvature of the loss along its gradient, ``g^T H g / ||g||^2``.

The Rayleigh quotient of the Hessian at the normalised gradient ``u = g / ||g||`` lies in
``[lambda_min, lambda_max]``; near ``lambda_max`` the gradient points into the sharpest
directions, as it does once training sits in the top Hessian subspace (Gur-Ari, Roberts, Dyer,
"Gradient Descent Happens in a Tiny Subspace", 2018) or at the edge of stability (Cohen, Kaur,
Li, Kolter, Talwalkar, ICLR 2021). Its inverse is the Cauchy step: the step size ``eta`` that
minimises the quadratic model ``L - eta ||g||^2 + (eta^2 / 2) g^T H g`` along ``-g`` when the
curvature is positive. One Hessian-vector product, exact over the analysed data.
"""

from __future__ import annotations

from typing import Any

from flatscope.io.tables import as_number, format_number
from flatscope.metrics.base import AnalysisContext, Cell, Metric
from flatscope.metrics.settings import AnalysisSettings

__all__ = ["GradientCurvatureMetric"]


class GradientCurvatureMetric(Metric):
    """``gradient_curvature``: ``{"value", "cauchy_step", "num_matvecs"}``; ``value`` is
    ``None`` at a zero gradient and ``cauchy_step`` is ``None`` unless the value is positive."""

    name = "gradient_curvature"
    entries = ("gradient_curvature",)
    help = "curvature along the gradient, g^T H g / ||g||^2 (one product)"
    order = 25

    def budget(self, entry: str, settings: AnalysisSettings) -> int:
        return 1

    def compute(self, entry: str, context: AnalysisContext) -> dict[str, Any]:
        gradient = context.operator.gradient()
        norm = float(gradient.norm())
        if norm == 0:
            return {"value": None, "cauchy_step": None, "num_matvecs": 0}
        direction = gradient / norm
        curvature = context.run(entry, 1, lambda op: float(direction @ (op @ direction)))
        step = 1 / curvature if curvature > 0 else None
        return {"value": curvature, "cauchy_step": step, "num_matvecs": 1}

    def describe(self, entry: str, value: Any) -> str:
        step = format_number(as_number(value["cauchy_step"]))
        return f"{format_number(as_number(value['value']))}  (Cauchy step {step})"

    def rows(self, entry: str, value: Any) -> dict[str, Cell]:
        return {"gradient curvature": (as_number(value.get("value")), None)}


METRIC = GradientCurvatureMetric()
