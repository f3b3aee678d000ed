"""A diagonally scaled operator ``C A C``, ``C = diag(c)``.

With ``c = |w|`` (the weights' magnitudes) the scaled Hessian ``D H D``, ``D = diag(|w|)``, is
the Hessian in log-magnitude coordinates up to its diagonal gradient term: a diagonal
reparametrisation ``w -> T w`` that leaves the loss unchanged (``T`` positive diagonal: the scale
of weights that feed BatchNorm, ReLU layer pairs scaled by ``c`` and ``1 / c``) maps ``H`` to
``T^-1 H T^-1`` and ``D`` to ``T D``, so ``D H D`` does not change; its trace
``sum_i w_i^2 H_ii`` is the second-order term of adaptive sharpness (Kwon et al., ASAM, ICML
2021). With ``c`` constant on each parameter block (``c_i = ||w_b||``) the scaled operator's
block traces are ``||w_b||^2 tr H_bb``.
"""

from __future__ import annotations

import torch

from flatscope.operators.base import LinearOperator, as_operator

__all__ = ["DiagonallyScaled"]


class DiagonallyScaled(LinearOperator):
    """``C A C`` for ``C = diag(scale)``: ``(C A C) V = c * (A (c * V))`` column by column, one
    product of ``A`` per column, so ``tr(C A C) = sum_i c_i^2 A_ii``.

    Args:
        operator: ``A``, a flatscope operator or a dense square tensor.
        scale: ``c``, a vector of length ``d``; it is moved to ``A``'s device and dtype.

    The blocks of ``A`` are kept, so per-block estimates of ``C A C`` are those of
    ``C_b A_bb C_b``.
    """

    def __init__(self, operator: LinearOperator | torch.Tensor, scale: torch.Tensor) -> None:
        operator = as_operator(operator)
        super().__init__(operator.shape, operator.dtype, operator.device, operator.blocks)
        if scale.shape != (operator.shape[0],):
            raise ValueError(
                f"scale must be a vector of length {operator.shape[0]}, got shape "
                f"{tuple(scale.shape)}"
            )
        self.operator = operator
        self.scale = scale.detach().to(operator.device, operator.dtype)

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        return self.scale[:, None] * (self.operator @ (self.scale[:, None] * V))
