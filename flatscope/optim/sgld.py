"""Stochastic gradient Langevin dynamics (Welling & Teh, ICML 2011)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor

from flatscope.optim._langevin import LangevinOptimizer, SeedLike


class SGLD(LangevinOptimizer):
    r"""Stochastic gradient Langevin dynamics.

    Welling & Teh, "Bayesian Learning via Stochastic Gradient Langevin Dynamics", ICML 2011.
    With ``beta = 1 / beta_inv`` and ``g`` the minibatch gradient of the loss ``U``::

        theta <- theta - lr * (g + weight_decay * theta) + sqrt(2 * lr / beta) * xi,  xi ~ N(0, I)

    which samples approximately from ``exp(-beta * (U + weight_decay * |theta|^2 / 2))``.
    With ``momentum > 0`` the noise goes into the momentum buffer with standard deviation
    ``sqrt(2 * (1 - momentum) / (lr * beta))`` (SGHMC; :class:`FSGLD`'s docstring derives why
    this keeps the temperature ``1 / beta``). With ``beta_inv = 0`` the update is exactly
    :class:`torch.optim.SGD`'s (no dampening, no Nesterov).

    Args:
        params: parameters or parameter groups (each group may set its own ``lr``,
            ``beta_inv``, ``momentum``, ``weight_decay``). All on one device.
        lr: learning rate (step size), > 0.
        beta_inv: temperature ``1 / beta`` >= 0.
        momentum: heavy-ball momentum in [0, 1).
        weight_decay: L2 coefficient added to the gradient.
        seed: an int seeding a new ``torch.Generator`` on the parameters' device, or such a
            generator. Every rank of a distributed run must pass the same seed.

    Random stream: each step draws one ``torch.randn(d)`` over all parameters (groups in order,
    one draw per dtype) if any group has ``beta_inv > 0``, none otherwise. ``state_dict()``
    carries the generator state, so ``load_state_dict`` resumes the stream bit for bit.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float,
        beta_inv: float = 1e-8,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        seed: SeedLike = 0,
    ) -> None:
        defaults = {
            "lr": lr,
            "beta_inv": beta_inv,
            "momentum": momentum,
            "weight_decay": weight_decay,
        }
        super().__init__(params, defaults, seed)

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """One Langevin step; ``closure`` (optional) recomputes the loss and gradients first."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._langevin_step()
        return loss
