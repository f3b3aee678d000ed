"""What every curvature operator on an objective shares: the objective, its view, the mean.

A curvature operator is a symmetric ``d x d`` matrix ``C = sum_b (n_b / N) C_b`` over the
batches of an :class:`~flatscope.objective.Objective` (the Hessian, the generalized Gauss-Newton
matrix, the Fisher), multiplied matrix-free. :class:`CurvatureOperator` holds the objective and
its view (model, loss, data, sample count, weights, loss and gradient) and turns a per-batch
product ``C_b P`` into the product of the whole data set: the batches are summed with weights
``n_b`` in eval mode, all-reduced under ``torch.distributed`` (each rank sums over its shard)
and divided by ``N``. Subclasses implement :meth:`CurvatureOperator._batch_product`, or
override ``_matmat`` when they traverse the data their own way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from flatscope.distributed import all_reduce_sum
from flatscope.objective import LossFn, Objective, positional
from flatscope.operators.base import LinearOperator

__all__ = ["CurvatureOperator", "as_objective", "outputs_at"]


def as_objective(
    objective: Objective | nn.Module,
    loss_fn: LossFn | None,
    data: Any,
    params: str | Sequence[str] | None,
    device: torch.device | str | None,
    dtype: torch.dtype | None,
    operator: str,
) -> Objective:
    """The objective an operator named ``operator`` is built on: ``objective`` itself, or
    ``Objective(model, loss_fn, data, params, device=..., dtype=...)`` from a model.

    Raises:
        TypeError: an objective together with the arguments it already fixes, a model without
            ``loss_fn`` or ``data``, or something that is neither.
    """
    if isinstance(objective, Objective):
        if any(argument is not None for argument in (loss_fn, data, params, device, dtype)):
            raise TypeError(
                "pass either an Objective or (model, loss_fn, data, params, device, dtype), "
                "not both: the objective already fixes them"
            )
        return objective
    if isinstance(objective, nn.Module):
        if loss_fn is None or data is None:
            raise TypeError(f"{operator}(model, loss_fn, data): loss_fn and data needed")
        return Objective(objective, loss_fn, data, params, device=device, dtype=dtype)
    raise TypeError(f"expected an Objective or an nn.Module, got {type(objective).__name__}")


def outputs_at(objective: Objective, weights: torch.Tensor, inputs: Any) -> torch.Tensor:
    """The model's outputs ``f(x; w)`` on a batch's inputs at flat weights ``w`` (a pure
    function of ``weights``, as :meth:`Objective.batch_loss` is of the loss)."""
    tensors = {**objective.fixed_tensors, **objective.unflatten(weights)}
    return functional_call(objective.model, tensors, positional(inputs))


class CurvatureOperator(LinearOperator):
    """A symmetric curvature matrix of an objective, batch by batch (see the module docs).

    Attributes:
        objective: the :class:`~flatscope.objective.Objective`; :attr:`blocks` maps each of
            its parameter names to its slice of the flat coordinates.
    """

    symmetric = True

    def __init__(self, objective: Objective) -> None:
        self.objective = objective
        self._weights = objective.flat_params()
        d = objective.dim
        super().__init__((d, d), objective.dtype, objective.device, dict(objective.blocks))

    # ----------------------------------------------------------------- the objective's view
    @property
    def model(self) -> nn.Module:
        return self.objective.model

    @property
    def loss_fn(self) -> LossFn:
        return self.objective.loss_fn

    @property
    def data(self) -> Any:
        return self.objective.data

    @property
    def param_names(self) -> list[str]:
        return self.objective.param_names

    @property
    def num_samples(self) -> int:
        return self.objective.num_samples

    def flat_params(self) -> torch.Tensor:
        """The weights at which the curvature is taken, as a flat vector (a copy)."""
        return self._weights.clone()

    def loss(self) -> float:
        """The objective's mean loss over all of the data."""
        return self.objective.loss()

    def gradient(self) -> torch.Tensor:
        """The objective's gradient over all of the data, as a flat vector."""
        return self.objective.gradient()

    # ----------------------------------------------------------------- products
    def _batch_product(self, inputs: Any, targets: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
        """``C_b p`` for each row ``p`` of ``P`` (``(k, d)``), ``C_b`` the curvature of the
        batch's mean loss; called in eval mode."""
        raise NotImplementedError

    def _mean(self, total: torch.Tensor) -> torch.Tensor:
        """``sum_b n_b C_b P`` of this rank, summed over the ranks and divided by ``N``, in
        place (no second copy of ``k`` columns)."""
        return all_reduce_sum(total).div_(self.num_samples)

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        P = V.T.contiguous()  # one probe per row: each column's work reads contiguous memory
        total = torch.zeros_like(P)
        with self.objective.evaluating():
            for inputs, targets, n in self.objective.batches():
                total.add_(self._batch_product(inputs, targets, P), alpha=n)
        del P  # the probes' transposed copy, before the result's
        return self._mean(total).T.contiguous()
