"""Flatness-aware stochastic gradient Langevin dynamics (fSGLD).

Bruno, Hwang, An, Sabanis, Lim, "Flatness-Aware Stochastic Gradient Langevin Dynamics",
arXiv:2510.02174 (2025).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from flatscope.optim._langevin import LangevinOptimizer, SeedLike


def _check_eta(eta: float) -> None:
    if not 0 < eta < 1:
        raise ValueError(
            f"eta must lie in (0, 1) for the beta-sigma coupling, got {eta}; "
            "pass sigma explicitly to set the perturbation scale yourself"
        )


def coupled_sigma(beta_inv: float, eta: float = 0.1) -> float:
    """The perturbation scale fSGLD couples to the temperature: ``sigma = beta^(-(1 + eta) / 4)``.

    With ``beta_inv = 1 / beta`` this is ``beta_inv ** ((1 + eta) / 4)``, ``eta`` in (0, 1)
    (Bruno et al., arXiv:2510.02174, 2025; ``eta = 0.1`` is their usual choice). Under this
    coupling the invariant law of fSGLD is close to ``exp(-beta * (U + sigma^2 / 2 * tr H))``.
    """
    if not beta_inv >= 0:
        raise ValueError(f"beta_inv (the temperature 1/beta) must be >= 0, got {beta_inv}")
    _check_eta(eta)
    return float(beta_inv) ** ((1.0 + eta) / 4.0)


class FSGLD(LangevinOptimizer):
    r"""Flatness-aware SGLD: the gradient is taken at randomly perturbed weights.

    Bruno, Hwang, An, Sabanis, Lim, "Flatness-Aware Stochastic Gradient Langevin Dynamics",
    arXiv:2510.02174 (2025). One step, with ``beta = 1 / beta_inv``::

        eps   ~ N(0, sigma^2 I)                          (one draw over every parameter)
        g     = grad U(theta + eps; batch)               (``closure()`` at perturbed weights)
        theta <- theta - lr * (g + weight_decay * theta) + sqrt(2 * lr / beta) * xi,  xi ~ N(0, I)

    The weights are perturbed in place, ``closure()`` runs, and the saved original weights are
    copied back bit for bit before the update. Because ``E U(theta + eps) = U(theta) +
    (sigma^2 / 2) tr H(theta) + O(sigma^4)``, the chain samples approximately from
    ``exp(-beta * (U + (sigma^2 / 2) tr H))``: it prefers flat minima. Weight decay acts on the
    unperturbed weights (its smoothed gradient is the same). ``sigma=None`` couples the
    perturbation to the temperature, ``sigma = beta^(-(1 + eta)/4)`` (:func:`coupled_sigma`);
    an explicit ``sigma`` overrides the coupling. ``sigma = 0`` gives :class:`SGLD` exactly, and
    ``sigma = 0, beta_inv = 0`` gives :class:`torch.optim.SGD` exactly.

    With ``momentum > 0`` (torch.optim.SGD's convention, no dampening) the Langevin noise goes
    into the momentum buffer::

        m     <- momentum * m + (g + weight_decay * theta) + c * xi,
        theta <- theta - lr * m,        c = sqrt(2 * (1 - momentum) / (lr * beta)).

    Why ``c`` keeps the temperature ``1 / beta``: in the velocity ``v = -lr * m`` the update
    reads ``v <- momentum * v - lr * g - sqrt(2 * (1 - momentum) * lr / beta) * xi``,
    ``theta <- theta + v``: SGHMC (Chen, Fox & Guestrin, ICML 2014, eq. 15) with friction
    ``alpha = 1 - momentum`` and injected noise variance ``2 * alpha * lr / beta``. With a
    time step ``h``, ``v = h p``, ``lr = h^2`` and ``1 - momentum = gamma h`` it discretizes
    the underdamped Langevin diffusion ``dtheta = p dt``,
    ``dp = -grad U dt - gamma p dt + sqrt(2 gamma / beta) dW``, whose invariant law
    ``exp(-beta (U(theta) + |p|^2 / 2))`` has the theta-marginal ``exp(-beta U)``, as SGLD's.
    At ``momentum = 0`` the update is the plain one above.

    Note on discretization: the perturbation adds gradient noise ``lr * H eps`` per step. On a
    quadratic ``U = a x^2 / 2`` without momentum the chain's exact stationary variance is
    ``(2 lr / beta + lr^2 a^2 sigma^2) / (lr a (2 - lr a))``, the target ``1 / (beta a)`` times
    ``1 + lr a / 2 + lr a^2 sigma^2 beta / 2 + O(lr^2)``. The last term is O(lr) but grows as
    ``beta^((1 - eta) / 2)`` under the coupling: at ``beta_inv = 1e-8``, ``lr = 0.1``, ``a = 1``
    the perturbation noise exceeds the Langevin noise about 200-fold in variance.

    With ``antithetic=True`` steps come in pairs: the first step of a pair draws ``eps``, the
    second uses ``-eps`` (regenerated from the saved generator state, so no copy is kept). Each
    step's perturbation is still ``N(0, sigma^2 I)``; over a pair the first-order term
    ``H eps`` of the perturbed gradients cancels (up to the O(lr) move of theta in between),
    leaving ``grad U + (sigma^2 / 2) grad tr H + O(sigma^4)`` with less variance, at no extra
    cost per step.

    Args:
        params: parameters or parameter groups (a group may set ``lr``, ``beta_inv``,
            ``sigma``, ``eta``, ``momentum``, ``weight_decay``). All on one device.
        lr: learning rate, > 0.
        beta_inv: temperature ``1 / beta`` >= 0 (the paper uses 1e-9 to 1e-7).
        sigma: perturbation standard deviation; ``None`` couples it to ``beta_inv``.
        eta: coupling exponent in (0, 1).
        momentum: heavy-ball momentum in [0, 1).
        weight_decay: L2 coefficient.
        antithetic: alternate ``+eps`` and ``-eps`` on successive steps.
        seed: an int seeding a new ``torch.Generator`` on the parameters' device, or such a
            generator. Every rank of a distributed run must pass the same seed, so that all
            ranks draw the same perturbation and noise and their weights stay identical.

    Random stream, per step: if any group has ``sigma > 0``, one ``torch.randn(d)`` for
    ``eps`` over all parameters (groups in order, one draw per dtype; skipped on the second
    step of an antithetic pair); then, if any group has ``beta_inv > 0``, one for ``xi``.
    ``state_dict()`` carries the generator state (and a pending antithetic draw), so
    ``load_state_dict`` resumes the stream bit for bit.

    ``step(closure)``: ``closure`` must zero the gradients, compute the loss at the current
    weights (which are perturbed while it runs), call ``backward()`` and return the loss.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float,
        beta_inv: float = 1e-8,
        sigma: float | None = None,
        eta: float = 0.1,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        antithetic: bool = False,
        seed: SeedLike = 0,
    ) -> None:
        defaults = {
            "lr": lr,
            "beta_inv": beta_inv,
            "sigma": sigma,
            "eta": eta,
            "momentum": momentum,
            "weight_decay": weight_decay,
        }
        self.antithetic = bool(antithetic)
        self._antithetic_pending: Tensor | None = None
        super().__init__(params, defaults, seed)

    def _check_group(self, group: dict[str, Any]) -> None:
        super()._check_group(group)
        if group["sigma"] is not None and not group["sigma"] >= 0:
            raise ValueError(f"sigma must be >= 0 or None (coupled), got {group['sigma']}")
        _check_eta(group["eta"])

    @staticmethod
    def group_sigma(group: dict[str, Any]) -> float:
        """The perturbation scale of a parameter group: its ``sigma``, or the coupled one."""
        if group["sigma"] is not None:
            return float(group["sigma"])
        return coupled_sigma(group["beta_inv"], group["eta"])

    def _perturbation_directions(self) -> tuple[list[Tensor], float]:
        """Standard normal directions for ``eps`` and their sign (-1 closes an antithetic pair)."""
        buffers = self._work_buffers("noise")
        if self.antithetic and self._antithetic_pending is not None:
            replay = torch.Generator(device=self._generator.device)
            replay.set_state(self._antithetic_pending)
            self._antithetic_pending = None
            return buffers.standard_normal(replay), -1.0
        if self.antithetic:
            self._antithetic_pending = self._generator.get_state()
        return buffers.standard_normal(self._generator), 1.0

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor:
        """Perturb, evaluate ``closure()`` at the perturbed weights, restore, Langevin step."""
        if closure is None:
            raise ValueError(
                "FSGLD.step needs a closure that zeroes the gradients, computes the loss, calls "
                "backward() and returns the loss: optimizer.step(closure)"
            )
        sigmas = [self.group_sigma(group) for group in self.param_groups]
        if not any(sigma > 0 for sigma in sigmas):
            with torch.enable_grad():
                loss = closure()
        else:
            saved = self._work_buffers("saved")
            saved.save()
            directions, sign = self._perturbation_directions()
            for (group, group_directions), sigma in zip(
                self._per_group(directions), sigmas, strict=True
            ):
                if sigma > 0:
                    torch._foreach_add_(group["params"], group_directions, alpha=sign * sigma)
            try:
                with torch.enable_grad():
                    loss = closure()
            finally:
                saved.restore()
        self._langevin_step()
        return loss

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "antithetic": self.antithetic}

    def _rng_state(self) -> dict[str, Any]:
        return {**super()._rng_state(), "antithetic_pending": self._antithetic_pending}

    def _load_rng_state(self, rng: dict[str, Any]) -> None:
        super()._load_rng_state(rng)
        self._antithetic_pending = rng.get("antithetic_pending")
