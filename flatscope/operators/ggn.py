"""The generalized Gauss-Newton matrix of an objective, matrix-free.

For an :class:`~flatscope.objective.Objective` ``L(w) = sum_b (n_b / N) loss_b(f(x_b; w))`` with
outputs ``z_b = f(x_b; w)``, Jacobians ``J_b = dz_b / dw`` and output Hessians
``H_b = d^2 loss_b / dz_b^2``, the generalized Gauss-Newton (GGN) matrix is

    G = sum_b (n_b / N) J_b^T H_b J_b,

the Hessian of ``L`` with the model linearised in ``w`` (Schraudolph 2002). The Hessian itself
is ``H = G + R`` with the residual ``R = sum_b (n_b / N) sum_k (d loss_b / dz_bk) d^2 z_bk / dw^2``,
which vanishes where the model is linear in ``w`` or where the loss's output gradient is zero.
``G`` is positive semi-definite whenever the loss is convex in the outputs (cross-entropy,
squared error), so its spectrum has no negative part. For softmax cross-entropy with mean
reduction ``H_b`` is ``(1 / B) blockdiag(diag p_i - p_i p_i^T)``, so

    G = (1 / N) sum_i J_i^T (diag p_i - p_i p_i^T) J_i,

which is also the Fisher information of the model's predictive distribution, the expectation
of the Monte-Carlo Fisher of :mod:`flatscope.operators.fisher` (Martens 2020, "New insights and
perspectives on the natural gradient method", JMLR 21, Sec. 9). For ``C`` classes its
spectrum shows about ``C`` outliers above a bulk (Papyan, "Measurements of three-level
hierarchical structure in the outliers in the spectrum of deepnet Hessians", ICML 2019; "Traces
of class/cross-class structure pervade deep learning spectra", JMLR 2020); see
``benchmarks/ggn_outliers.py``.

Each product ``G_b v = J_b^T (H_b (J_b v))`` costs, per batch, one forward pass that keeps the
graph of ``z_b`` and, per column, a Jacobian-vector product ``J_b v``, an output-Hessian product
(:mod:`flatscope.operators.output_hessian`: by autograd, or in closed form for cross-entropy)
and one backward pass through the kept graph for ``J_b^T u``. ``J_b v`` comes from

- ``jacobian="forward"`` (the default): ``torch.func.jvp`` of the outputs, a forward pass that
  carries tangents and saves nothing for a backward pass;
- ``jacobian="reverse"``: the double-vjp trick, ``J v = d/du <J^T u, v>``: one differentiable
  backward pass per batch builds ``u -> J^T u`` (linear in ``u``), and one backward pass
  through it per column gives ``J v``.

``"forward"`` falls back to ``"reverse"``, with a warning, on a model with an operation that
has no forward-mode rule; an error that ``"reverse"`` raises too is the model's own.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import jvp

from flatscope.objective import LossFn, Objective
from flatscope.operators.curvature import CurvatureOperator, as_objective, outputs_at
from flatscope.operators.output_hessian import OutputHessian, autograd_output_hessian

__all__ = ["GGNOperator"]

JACOBIAN_MODES = ("forward", "reverse")


class GGNOperator(CurvatureOperator):
    """The generalized Gauss-Newton matrix ``J^T H_out J`` of an objective's mean loss over all
    of its data (see the module docs), symmetric and, for a loss convex in the outputs,
    positive semi-definite.

    Build it from an :class:`~flatscope.objective.Objective` or from the objective's arguments,
    as :class:`~flatscope.operators.hessian.HessianOperator`.

    Args:
        objective: the objective, or the model (with ``loss_fn`` and ``data``).
        loss_fn, data, params, device, dtype: the objective's arguments, when ``objective`` is
            a model.
        output_hessian: products with the loss's Hessian w.r.t. the outputs
            (:mod:`flatscope.operators.output_hessian`); ``None`` differentiates the loss twice.
            The closed forms must match the loss (:func:`cross_entropy_output_hessian` for
            ``cross_entropy``, :func:`causal_lm_output_hessian` for ``causal_lm``).
        jacobian: ``"forward"`` or ``"reverse"``, how ``J v`` is computed (module docs).

    Under ``torch.distributed`` each rank multiplies over its shard and the sums are
    all-reduced, as for the Hessian.
    """

    def __init__(
        self,
        objective: Objective | nn.Module,
        loss_fn: LossFn | None = None,
        data: Any = None,
        params: str | Sequence[str] | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        output_hessian: OutputHessian | None = None,
        jacobian: str = "forward",
    ) -> None:
        if jacobian not in JACOBIAN_MODES:
            raise ValueError(f"jacobian must be one of {JACOBIAN_MODES}, got {jacobian!r}")
        objective = as_objective(objective, loss_fn, data, params, device, dtype, "GGNOperator")
        super().__init__(objective)
        self.output_hessian = output_hessian or autograd_output_hessian(objective.loss_fn)
        self.jacobian_mode = jacobian

    def _batch_product(self, inputs: Any, targets: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
        w = self._weights.detach().requires_grad_(True)
        with torch.enable_grad():
            z = outputs_at(self.objective, w, inputs)
        hessian = self.output_hessian(z.detach(), targets)
        reverse = None
        out = torch.empty_like(P)
        for j, p in enumerate(P):
            if self.jacobian_mode == "forward":
                try:
                    jp = self._forward_product(inputs, p)
                except (RuntimeError, NotImplementedError) as err:
                    line = str(err).strip().splitlines()[0] if str(err).strip() else type(err)
                    warnings.warn(
                        f"forward-mode Jacobian products failed on this model ({line}); "
                        "computing them by the double-vjp trick instead",
                        RuntimeWarning,
                        stacklevel=5,
                    )
                    self.jacobian_mode = "reverse"
            if self.jacobian_mode == "reverse":
                reverse = reverse or _reverse_products(w, z)
                jp = reverse(p)
            u = hessian(jp[None])[0]
            (out[j],) = torch.autograd.grad(z, w, u, retain_graph=True, materialize_grads=True)
        return out

    def _forward_product(self, inputs: Any, p: torch.Tensor) -> torch.Tensor:
        """``J p`` by forward mode: the outputs' tangent along ``p``."""
        return jvp(lambda v: outputs_at(self.objective, v, inputs), (self._weights,), (p,))[1]


def _reverse_products(w: torch.Tensor, z: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """``p -> J p`` by the double-vjp trick: ``u -> J^T u`` is linear in ``u``, so its vjp
    with ``p`` is ``J p``; one differentiable backward pass builds it for every column."""
    dummy = torch.zeros_like(z, requires_grad=True)
    with torch.enable_grad():
        (transposed,) = torch.autograd.grad(z, w, dummy, create_graph=True, materialize_grads=True)

    def product(p: torch.Tensor) -> torch.Tensor:
        (jp,) = torch.autograd.grad(transposed, dummy, p, retain_graph=True)
        return jp

    return product
