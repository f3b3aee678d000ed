"""The elementwise-adaptive trace ``tr(D H D) = sum_i w_i^2 H_ii``, ``D = diag(|w|)``.

**What it measures.** The curvature of the loss along each weight measured in units of that
weight's own size: ``w_i^2 H_ii`` is the second derivative of ``L`` along ``w_i -> w_i (1 + t)``.
It is the second-order term of adaptive average-case sharpness,
``E[L(w + sigma |w| * z)] - L(w) = (sigma^2 / 2) tr(D H D) + O(sigma^4)``, ``z ~ N(0, I)``
(Kwon, Kim, Park, Choi, ASAM, ICML 2021; Andriushchenko, Croce, Müller, Hein, Flammarion, ICML
2023), as the raw trace is of Gaussian sharpness.

**Invariant to** every reparametrisation ``w -> T w`` that keeps the function and whose ``T`` is
a positive diagonal matrix, possibly times a signed permutation: the Hessian becomes
``T^-1 H T^-1`` and ``D`` becomes ``T D``, so ``D H D`` is unchanged (for a signed permutation
``P``, it becomes ``P (D H D) P^T``: the same trace and spectrum). This covers

- weights that feed BatchNorm scaled by ``c`` (a whole layer or each output channel by its
  own ``c``; in eval mode the running statistics and ``eps`` scale with them);
- ReLU layer pairs: a unit's incoming weights and bias scaled by ``c > 0``, its outgoing weights
  by ``1 / c`` (Dinh, Pascanu, Bengio, Bengio, ICML 2017), per layer or per unit;
- permutations of hidden units, and sign flips of units of odd activations (tanh).

**Not invariant to** reparametrisations that mix coordinates (``W_1 -> M W_1``,
``W_2 -> W_2 M^-1`` between linear maps, attention's ``W_Q M``, ``W_K M^-T``), nor to anything
that changes the function. A weight at exactly zero contributes nothing, so directions of tiny
weights (often biases) count little; ASAM adds ``0.01`` to ``|w|`` against this, which breaks
the exact invariance, so flatscope does not.

**Estimator.** :func:`flatscope.linalg.trace` on the operator ``D H D``
(:class:`flatscope.operators.scaled.DiagonallyScaled`) with the method, budget and seed of
``hessian_trace``: ``num_matvecs`` further Hessian-vector products (the probes differ from the
raw trace's, so its products cannot be reused), with the estimator's standard error and the
trace of each parameter block's ``D_b H_bb D_b`` (``per_block``). ``verify`` claims "flatter" on
it by the one-sided z-test of :mod:`flatscope.metrics.criteria`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from flatscope.io.tables import as_number, format_number
from flatscope.linalg import trace
from flatscope.metrics.base import AnalysisContext, Cell, Metric, VerifySettings
from flatscope.metrics.criteria import Criterion, estimate_of, missing, z_criterion
from flatscope.metrics.settings import AnalysisSettings
from flatscope.operators.base import LinearOperator
from flatscope.operators.scaled import DiagonallyScaled

__all__ = ["ScaledTraceMetric", "compare_estimates", "scaled_trace"]


def scaled_trace(
    hessian: LinearOperator | torch.Tensor,
    scale: torch.Tensor,
    settings: AnalysisSettings,
) -> dict[str, Any]:
    """``tr(C H C)``, ``C = diag(scale)``, by the settings' trace method, budget and seed, as a
    report entry: the :class:`~flatscope.linalg.trace.TraceEstimate` fields (``per_block``
    holds the traces of the blocks ``C_b H_bb C_b``)."""
    operator = DiagonallyScaled(hessian, scale)
    estimate = trace(operator, settings.trace_method, settings.num_matvecs, settings.seed)
    return estimate.to_dict()


def compare_estimates(
    entry: str,
    metrics: Mapping[str, Any],
    reference: Mapping[str, Any],
    label: str,
    confidence: float,
) -> Criterion:
    """``value < reference value`` of the report entry ``entry`` (``{"value", "stderr"}``, the
    entry of the metric of the same name) by the one-sided z-test; not established when a
    report lacks it."""
    mine, theirs = metrics.get(entry), reference.get(entry)
    if not isinstance(mine, Mapping) or not isinstance(theirs, Mapping):
        having = "neither report has" if mine is None and theirs is None else "a report lacks"
        detail = f"{having} {entry}; analyse both with --metrics ...,{entry}"
        return missing(entry, detail, label)
    return z_criterion(entry, estimate_of(mine), estimate_of(theirs), label, confidence)


class ScaledTraceMetric(Metric):
    """``scaled_trace``: ``{"value", "stderr", "method", "num_matvecs", "per_block"}``.

    Subclasses measure ``tr(C H C)`` for another diagonal ``C`` (:meth:`scale`) under another
    ``title``; each analysis computes each of them once (:meth:`AnalysisContext.once`).
    """

    name = "scaled_trace"
    entries = ("scaled_trace",)
    help = "elementwise-adaptive trace tr(D H D), D = diag(|w|): invariant to rescalings"
    order = 12
    settings = ("trace_method", "num_matvecs")
    default = True
    #: The row name in tables, and the formula in the summary.
    title, formula = "scaled trace", "tr(D H D), D = diag|w|"
    #: Whether ``verify`` claims "flatter" on it even when neither report has it.
    always_claimed = True

    def scale(self, context: AnalysisContext) -> torch.Tensor:
        """The diagonal of ``C``: here ``|w|``."""
        return context.operator.flat_params().abs()

    def budget(self, entry: str, settings: AnalysisSettings) -> int:
        return settings.num_matvecs

    def compute(self, entry: str, context: AnalysisContext) -> dict[str, Any]:
        s = context.settings
        scale = self.scale(context)

        def estimate() -> dict[str, Any]:
            return context.run(entry, s.num_matvecs, lambda op: scaled_trace(op, scale, s))

        return context.once(entry, estimate)

    def describe(self, entry: str, value: Any) -> str:
        number = format_number(as_number(value["value"]), as_number(value["stderr"]))
        return f"{number}  ({self.formula}; {value['method']})"

    def rows(self, entry: str, value: Any) -> dict[str, Cell]:
        return {self.title: estimate_of(value)}

    def block_rows(self, entry: str, value: Any) -> dict[str, Cell]:
        blocks = value.get("per_block") if isinstance(value, Mapping) else None
        if not isinstance(blocks, Mapping):
            return {}
        return {
            f"{self.title}[{name}]": (as_number(v), as_number(e)) for name, (v, e) in blocks.items()
        }

    def flatter_criteria(
        self,
        metrics: Mapping[str, Any],
        reference: Mapping[str, Any],
        label: str,
        settings: VerifySettings,
    ) -> list[Criterion]:
        if not self.always_claimed and self.name not in metrics and self.name not in reference:
            return []
        return [compare_estimates(self.name, metrics, reference, label, settings.confidence)]


METRIC = ScaledTraceMetric()
