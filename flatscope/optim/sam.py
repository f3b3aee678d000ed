"""Sharpness-aware minimization (Foret et al., ICLR 2021) and its adaptive variant ASAM."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from flatscope.optim._flat import FlatBuffers, reused_buffers

ASAM_ETA = 0.01
"""The offset in ASAM's normalization operator ``T_w = |w| + ASAM_ETA`` (Kwon et al., 2021)."""


class SAM(Optimizer):
    r"""Sharpness-aware minimization around any base optimizer.

    Foret, Kleiner, Mobahi, Neyshabur, "Sharpness-Aware Minimization for Efficiently Improving
    Generalization", ICLR 2021. One step costs two forward-backward passes::

        g   = grad L(w)                                  (first ``closure()``)
        e   = rho * g / ||g||                            (||.|| over all parameters)
        g_s = grad L(w + e)                              (second ``closure()``)
        w   <- base_optimizer update of w with gradient g_s

    With ``adaptive=True`` (ASAM; Kwon, Kim, Park, Choi, ICML 2021) the ascent is measured in
    the rescaled coordinates ``T_w = |w| + 0.01`` (elementwise)::

        e = rho * T_w^2 g / ||T_w g||

    and ``rho`` is typically larger (Kwon et al. use 0.5 to 2). The weights are saved before the
    ascent and copied back bit for bit before the base step; ``p.grad`` then holds ``g_s``.
    Weight decay, momentum and the like belong to the base optimizer and act on ``g_s`` at
    ``w``. Parameter groups are shared with the base optimizer, so schedulers and per-group
    ``rho`` work; ``state_dict()`` is the base optimizer's (momentum buffers included). SAM
    draws no random numbers, so a resumed run is deterministic without a generator.

    Args:
        params: parameters or parameter groups (a group may set ``rho``, ``adaptive`` and any
            option of the base optimizer).
        base_optimizer_cls: a :class:`torch.optim.Optimizer` subclass taking the step at ``w``.
        rho: radius of the ascent step, >= 0.
        adaptive: ASAM instead of SAM.
        **base_kwargs: passed to ``base_optimizer_cls`` (e.g. ``lr``, ``momentum``).

    ``step(closure)``: ``closure`` must zero the gradients, compute the loss at the current
    weights, call ``backward()`` and return the loss; it is called twice. The returned loss is
    the first one, at ``w``.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        base_optimizer_cls: type[Optimizer] = torch.optim.SGD,
        rho: float = 0.05,
        adaptive: bool = False,
        **base_kwargs: Any,
    ) -> None:
        if not (isinstance(base_optimizer_cls, type) and issubclass(base_optimizer_cls, Optimizer)):
            raise TypeError(
                "base_optimizer_cls must be a torch.optim.Optimizer subclass such as "
                f"torch.optim.SGD, got {base_optimizer_cls!r}"
            )
        super().__init__(params, {"rho": rho, "adaptive": adaptive})
        self.base_optimizer = base_optimizer_cls(self.param_groups, **base_kwargs)
        self._share_base_state()
        self._buffers: dict[str, FlatBuffers] = {}
        self.defaults.update(self.base_optimizer.defaults)

    def _share_base_state(self) -> None:
        """Make SAM's groups and state the base optimizer's own objects."""
        self.param_groups = self.base_optimizer.param_groups
        self.state = self.base_optimizer.state

    def __getstate__(self) -> dict[str, Any]:  # copy.deepcopy and pickle
        return {**super().__getstate__(), "base_optimizer": self.base_optimizer}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._share_base_state()
        self._buffers = {}

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if not hasattr(self, "base_optimizer"):  # during __init__
            super().add_param_group(param_group)
            _check_rho(param_group["rho"])
            return
        param_group.setdefault("rho", self.defaults["rho"])
        param_group.setdefault("adaptive", self.defaults["adaptive"])
        _check_rho(param_group["rho"])
        self.base_optimizer.add_param_group(param_group)

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor:
        """Gradient at w, ascend to w + e, gradient there, restore w, base optimizer step."""
        if closure is None:
            raise ValueError(
                "SAM.step needs a closure that zeroes the gradients, computes the loss, calls "
                "backward() and returns the loss; it is called twice per step"
            )
        with torch.enable_grad():
            loss = closure()
        params, ascent = self._ascent_step()
        if params:
            saved = reused_buffers(self._buffers, "saved", params)
            saved.save()
            torch._foreach_add_(params, ascent)
            try:
                with torch.enable_grad():
                    closure()
            finally:
                saved.restore()
        self.base_optimizer.step()
        return loss

    def _ascent_step(self) -> tuple[list[Tensor], list[Tensor]]:
        """The parameters with gradients and SAM's (or ASAM's) ascent step ``e`` for each."""
        groups = []
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            if group["adaptive"]:
                scale = torch._foreach_abs(params)
                torch._foreach_add_(scale, ASAM_ETA)
                scaled_grads = torch._foreach_mul(grads, scale)
            else:
                scale, scaled_grads = None, grads
            groups.append((group["rho"], params, scale, scaled_grads))
        if not groups:
            return [], []
        norms = torch._foreach_norm([g for *_, scaled in groups for g in scaled])
        total = torch.linalg.vector_norm(torch.stack(norms))
        inverse_norm = total.clamp_min(torch.finfo(total.dtype).tiny).reciprocal()
        all_params, all_steps = [], []
        for rho, params, scale, scaled_grads in groups:
            steps = torch._foreach_mul(scaled_grads, scale) if scale is not None else scaled_grads
            steps = torch._foreach_mul(steps, inverse_norm * rho)
            all_params += params
            all_steps += steps
        return all_params, all_steps

    def state_dict(self) -> dict[str, Any]:
        """The base optimizer's state dict (its groups carry ``rho`` and ``adaptive``)."""
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a :meth:`state_dict` into the base optimizer and share its new groups."""
        self.base_optimizer.load_state_dict(state_dict)
        self._share_base_state()


def _check_rho(rho: float) -> None:
    if not rho >= 0:
        raise ValueError(f"rho (the SAM radius) must be >= 0, got {rho}")
