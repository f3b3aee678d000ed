"""The loss and the gradient norm over the analysed data, and the gradient criterion.

Both are exact over all of the analysed data (no estimator noise). ``verify`` asks of a minimum
``||grad L(w)|| <= grad_tol * max(L(w), 1)``: the loss sets the scale (``max(., 1)`` keeps it
from vanishing at an interpolating solution). The default ``grad_tol = 0.1`` tolerates the
data-loss gradient that remains at a minimum of the *regularized* training objective, where
``grad L = -weight_decay * w``, and the residual drift of a stochastic optimizer whose learning
rate did not decay to zero. Judge it on the loss that was trained (the whole training split with
its noisy labels, if any): a subset's gradient carries sampling noise of order
``sqrt(tr Cov[grad l_i] / n)`` even at an exact minimum.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from flatscope.io.tables import as_number, format_number
from flatscope.metrics.base import AnalysisContext, Cell, Metric, VerifySettings
from flatscope.metrics.criteria import FAIL, PASS, Criterion, missing
from flatscope.metrics.settings import AnalysisError

__all__ = ["LossMetric", "check_finite", "check_gradient"]

_TITLES = {"loss": "loss", "gradient_norm": "gradient norm"}


def check_finite(what: str, value: float) -> float:
    """``value``, or an :class:`AnalysisError` saying that the ``what`` is not finite."""
    if not math.isfinite(value):
        raise AnalysisError(
            f"the {what} on the data is {value}: the weights or the data hold extreme values "
            "(a diverged run?) or the loss does not fit the model's outputs"
        )
    return value


def check_gradient(
    metrics: Mapping[str, Any], grad_tol: float = VerifySettings.grad_tol
) -> Criterion:
    """``||g|| <= grad_tol * max(loss, 1)`` from a report's ``gradient_norm`` and ``loss``."""
    norm, loss = as_number(metrics.get("gradient_norm")), as_number(metrics.get("loss"))
    if norm is None or loss is None:
        return missing("gradient", "the report has no finite gradient_norm and loss")
    threshold = grad_tol * max(loss, 1.0)
    status = PASS if norm <= threshold else FAIL
    return Criterion(
        "gradient",
        status,
        f"||g|| = {format_number(norm)}",
        f"<= {format_number(threshold)} = {grad_tol:g} x max(loss {format_number(loss)}, 1)",
        f"||g|| {'<=' if status == PASS else '>'} {format_number(threshold)}",
        numbers={"gradient_norm": norm, "loss": loss, "threshold": threshold},
    )


class LossMetric(Metric):
    """``loss``: the mean loss ``L(w)``; ``gradient_norm``: ``||grad L(w)||_2``."""

    name = "loss"
    entries = ("loss", "gradient_norm")
    help = "the loss and gradient norm (always computed)"
    order = 0
    always = True

    def compute(self, entry: str, context: AnalysisContext) -> float:
        if entry == "loss":
            return check_finite("loss", context.operator.loss())
        return check_finite("gradient norm", float(context.operator.gradient().norm()))

    def describe(self, entry: str, value: Any) -> str:
        return format_number(as_number(value))

    def rows(self, entry: str, value: Any) -> dict[str, Cell]:
        return {_TITLES[entry]: (as_number(value), None)}

    def minimum_criteria(
        self, metrics: Mapping[str, Any], settings: VerifySettings
    ) -> list[Criterion]:
        return [check_gradient(metrics, settings.grad_tol)]


METRIC = LossMetric()
