"""The Langevin step shared by :class:`~flatscope.optim.SGLD` and :class:`~flatscope.optim.FSGLD`.

Update without momentum (Welling & Teh, ICML 2011), with ``beta = 1 / beta_inv``::

    theta <- theta - lr * (g + weight_decay * theta) + sqrt(2 * lr / beta) * xi,   xi ~ N(0, I)

Update with momentum ``mu`` (torch.optim.SGD's convention, no dampening)::

    m     <- mu * m + (g + weight_decay * theta) + sqrt(2 * (1 - mu) / (lr * beta)) * xi
    theta <- theta - lr * m

At ``mu = 0`` this is exactly the update above; :class:`~flatscope.optim.FSGLD`'s docstring
derives why the momentum noise scale keeps the stationary temperature ``1 / beta``.

Random numbers come from one ``torch.Generator`` on the parameters' device, seeded from ``seed``
and saved in ``state_dict()`` (key ``"rng"``), so a resumed run continues the same stream bit
for bit. Under ``torch.distributed``, give every rank the same seed: the ranks then draw
identical noise and, with all-reduced gradients, their parameters stay identical.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from flatscope.optim._flat import FlatBuffers, reused_buffers, single_device

SeedLike = int | torch.Generator


def make_generator(seed: SeedLike, device: torch.device) -> torch.Generator:
    """A generator on ``device``: a new one seeded with ``seed``, or ``seed`` if a generator."""
    if isinstance(seed, torch.Generator):
        if not _same_device(seed.device, device):
            raise ValueError(
                f"the generator lives on {seed.device} but the parameters on {device}; "
                f"create it with torch.Generator(device={str(device)!r})"
            )
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int or a torch.Generator, not {type(seed).__name__}")
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


def _same_device(a: torch.device, b: torch.device) -> bool:
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


def generator_state(generator: torch.Generator) -> dict[str, Any]:
    """The generator's state, tagged with its device type."""
    return {"device_type": generator.device.type, "state": generator.get_state()}


def check_generator_state(generator: torch.Generator, saved: dict[str, Any]) -> None:
    """Refuse a :func:`generator_state` saved on another device type than ``generator``'s."""
    if saved["device_type"] != generator.device.type:
        raise ValueError(
            f"the optimizer's random state was saved on {saved['device_type']} and cannot "
            f"continue the same stream on {generator.device.type}; resume on the same device type"
        )


def load_generator_state(generator: torch.Generator, saved: dict[str, Any]) -> None:
    """Put a :func:`generator_state` back into ``generator``."""
    check_generator_state(generator, saved)
    generator.set_state(saved["state"])


def _check_hyperparameters(group: dict[str, Any]) -> None:
    if not group["lr"] > 0:
        raise ValueError(f"lr must be positive, got {group['lr']}")
    if not group["beta_inv"] >= 0:
        raise ValueError(f"beta_inv (the temperature 1/beta) must be >= 0, got {group['beta_inv']}")
    if not 0 <= group["momentum"] < 1:
        raise ValueError(f"momentum must lie in [0, 1), got {group['momentum']}")
    if not group["weight_decay"] >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {group['weight_decay']}")


class LangevinOptimizer(Optimizer):
    """Base class: generator handling, hyperparameter checks and the Langevin update."""

    def __init__(
        self, params: Iterable[Tensor] | Iterable[dict], defaults: dict[str, Any], seed: SeedLike
    ) -> None:
        super().__init__(params, defaults)
        self._generator = make_generator(seed, single_device(self._all_params()))
        self._buffers: dict[str, FlatBuffers] = {}

    @property
    def generator(self) -> torch.Generator:
        """The generator every random draw of this optimizer comes from."""
        return self._generator

    def _all_params(self) -> list[Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def _work_buffers(self, key: str) -> FlatBuffers:
        """Flat buffers laid out like all parameters, kept between steps under ``key``."""
        return reused_buffers(self._buffers, key, self._all_params())

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        try:
            self._check_group(group)
            if hasattr(self, "_generator"):  # a group added after construction
                device = single_device(group["params"])
                if not _same_device(device, self._generator.device):
                    raise ValueError(
                        f"the new parameter group lives on {device} but the optimizer's "
                        f"generator on {self._generator.device}; keep all parameters on one device"
                    )
        except (ValueError, TypeError):
            self.param_groups.pop()
            raise

    def _check_group(self, group: dict[str, Any]) -> None:
        _check_hyperparameters(group)

    def _langevin_step(self) -> None:
        """Apply the Langevin update to every parameter that has a gradient."""
        if not any(group["beta_inv"] > 0 for group in self.param_groups):
            for group in self.param_groups:
                self._update_group(group, None)
            return
        noise = self._work_buffers("noise").standard_normal(self._generator)
        for group, group_noise in self._per_group(noise):
            self._update_group(group, group_noise)

    def _per_group(self, tensors: list[Tensor]) -> Iterator[tuple[dict[str, Any], list[Tensor]]]:
        """Pair each parameter group with its slice of ``tensors`` (laid out like _all_params)."""
        start = 0
        for group in self.param_groups:
            stop = start + len(group["params"])
            yield group, tensors[start:stop]
            start = stop

    def _update_group(self, group: dict[str, Any], noise: list[Tensor] | None) -> None:
        lr, beta_inv = group["lr"], group["beta_inv"]
        momentum, weight_decay = group["momentum"], group["weight_decay"]
        indices = [i for i, p in enumerate(group["params"]) if p.grad is not None]
        if not indices:
            return
        params = [group["params"][i] for i in indices]
        grads = [p.grad for p in params]
        if any(g.is_sparse for g in grads):
            raise ValueError(f"{type(self).__name__} does not support sparse gradients")
        if weight_decay != 0:
            grads = torch._foreach_add(grads, params, alpha=weight_decay)
        xi = None if noise is None or beta_inv == 0 else [noise[i] for i in indices]
        if momentum == 0:
            torch._foreach_add_(params, grads, alpha=-lr)
            if xi is not None:
                torch._foreach_add_(params, xi, alpha=math.sqrt(2.0 * lr * beta_inv))
            return
        buffers = self._momentum_buffers(params, grads, momentum)
        if xi is not None:
            torch._foreach_add_(
                buffers, xi, alpha=math.sqrt(2.0 * (1.0 - momentum) * beta_inv / lr)
            )
        torch._foreach_add_(params, buffers, alpha=-lr)

    def _momentum_buffers(
        self, params: list[Tensor], grads: list[Tensor], momentum: float
    ) -> list[Tensor]:
        """``m <- momentum * m + g``; a missing buffer starts as a copy of ``g`` (as in SGD)."""
        existing = [self.state[p].get("momentum_buffer") for p in params]
        old = [i for i, buffer in enumerate(existing) if buffer is not None]
        if old:
            old_buffers = [existing[i] for i in old]
            torch._foreach_mul_(old_buffers, momentum)
            torch._foreach_add_(old_buffers, [grads[i] for i in old])
        for i, buffer in enumerate(existing):
            if buffer is None:
                existing[i] = self.state[params[i]]["momentum_buffer"] = grads[i].detach().clone()
        return existing

    def _rng_state(self) -> dict[str, Any]:
        return {"generator": generator_state(self._generator)}

    def _load_rng_state(self, rng: dict[str, Any]) -> None:
        load_generator_state(self._generator, rng["generator"])

    def __getstate__(self) -> dict[str, Any]:  # copy.deepcopy and pickle
        return {
            **super().__getstate__(),
            "rng": self._rng_state(),
            "generator_device": self._generator.device,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        # also called by Optimizer.load_state_dict, with the state and groups only
        state = dict(state)
        rng, device = state.pop("rng", None), state.pop("generator_device", None)
        super().__setstate__(state)
        if rng is not None:
            self._buffers = {}
            self._generator = torch.Generator(device=device)
            self._load_rng_state(rng)

    def state_dict(self) -> dict[str, Any]:
        """The usual optimizer state plus ``"rng"``: the random generator's state."""
        state = super().state_dict()
        state["rng"] = self._rng_state()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a :meth:`state_dict`; the random stream continues where the saved one stopped."""
        if "rng" not in state_dict:
            raise ValueError(
                f"this state_dict has no 'rng' entry, so it was not saved by "
                f"{type(self).__name__}.state_dict(); load one saved by the same optimizer class"
            )
        state_dict = dict(state_dict)
        rng = state_dict.pop("rng")
        check_generator_state(self._generator, rng["generator"])
        super().load_state_dict(state_dict)
        self._load_rng_state(rng)
