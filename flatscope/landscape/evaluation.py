"""The mean loss (and accuracy) of a model at many points of its flat parameter space.

A point is a flat vector ``w`` of the selected parameters (``flatscope.operators.params``
order). Its loss is the mean per-sample loss over all of the data,

    L(w) = sum_b (n_b / N) * loss_fn(model(x_b; w), y_b),

the same quantity :class:`~flatscope.operators.hessian.HessianOperator` differentiates, so
landscape slices, sharpness values and Hessian numbers describe one function. Points are
evaluated with ``torch.func.functional_call``: the model's own tensors are never written.
Several points share one pass over a batch through ``torch.func.vmap`` over the weight vectors
(``points_per_pass`` of them at a time); ``points_per_pass=1`` is the exact one-point-at-a-time
loop. With ``bn_recompute=True`` the BatchNorm running statistics are re-estimated over the data
at every point (on a private copy of the model), one point at a time.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from flatscope.operators.hessian import HessianOperator, LossFn
from flatscope.operators.params import unflatten

__all__ = ["LossEvaluator"]

# Messages of errors raised when a forward pass cannot be vmapped over weight vectors.
_VMAP_UNSUPPORTED = ("vmap", "batching rule", "batched tensor")


def _positional(inputs: Any) -> tuple[Any, ...]:
    return tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)


def _is_classification(outputs: torch.Tensor, targets: torch.Tensor) -> bool:
    """Logits ``(B, C)`` against class indices ``(B,)``: accuracy is defined."""
    integer_targets = not targets.is_floating_point() and targets.dtype != torch.bool
    return (
        integer_targets
        and targets.ndim == 1
        and outputs.ndim == 2
        and outputs.shape[0] == targets.shape[0]
    )


class LossEvaluator:
    """Mean loss and accuracy of ``model`` over all of ``data`` at given flat weight vectors.

    Args:
        model, loss_fn, data, params, device, dtype: as for
            :class:`~flatscope.operators.hessian.HessianOperator` (which this class builds, and
            exposes as :attr:`operator`, for the data handling and for Hessian products).
        points_per_pass: how many points one vectorised forward pass carries; ``1`` is the exact
            loop; ``None`` picks a value from the problem size and falls back to the loop if the
            model's forward pass cannot be vmapped.
        bn_recompute: re-estimate BatchNorm running statistics over ``data`` at every point
            (cumulative average over the batches, on a private copy of the model) before
            evaluating in eval mode; forces ``points_per_pass=1``.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        data: Any,
        params: str | Sequence[str] | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        points_per_pass: int | None = None,
        bn_recompute: bool = False,
    ) -> None:
        if points_per_pass is not None and (
            not isinstance(points_per_pass, int) or points_per_pass < 1
        ):
            raise ValueError(f"points_per_pass must be a positive integer, got {points_per_pass!r}")
        self.operator = HessianOperator(model, loss_fn, data, params, device=device, dtype=dtype)
        self.origin = self.operator.flat_params()
        self.dim = self.origin.numel()
        self.bn_recompute = bn_recompute
        self._bn_model = self._batchnorm_copy(model) if bn_recompute else None
        self._auto = points_per_pass is None and not bn_recompute
        if bn_recompute:
            self.points_per_pass = 1
        else:
            self.points_per_pass = points_per_pass or self._default_points_per_pass()

    @property
    def dtype(self) -> torch.dtype:
        return self.operator.dtype

    @property
    def device(self) -> torch.device:
        return self.operator.device

    @property
    def num_samples(self) -> int:
        return self.operator.num_samples

    # ----------------------------------------------------------------- setup
    def _default_points_per_pass(self) -> int:
        """Keep one pass's extra activations and weights near 2**22 entries per point count."""
        inputs, _, _ = next(self.operator._batches())
        input_size = sum(t.numel() for t in _positional(inputs))
        return max(1, min(32, (1 << 22) // max(self.dim, input_size)))

    def _batchnorm_copy(self, model: nn.Module) -> nn.Module:
        clone = copy.deepcopy(model).to(device=self.device, dtype=self.dtype)
        norms = [m for m in clone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            raise ValueError(
                "bn_recompute=True but the model has no BatchNorm layer; drop the option"
            )
        for module in norms:
            module.momentum = None  # cumulative average over the batches of one pass
        return clone

    # ----------------------------------------------------------------- forward passes
    def _point(self, weights: torch.Tensor, inputs: Any, targets: torch.Tensor) -> tuple:
        """Loss and outputs of one batch at one point."""
        op = self.operator
        if self._bn_model is None:
            model, tensors = op.model, {**op._fixed, **unflatten(weights, op._shapes)}
        else:  # the copy holds the recomputed statistics and the other tensors, already cast
            model, tensors = self._bn_model, unflatten(weights, op._shapes)
        outputs = functional_call(model, tensors, _positional(inputs))
        return op.loss_fn(outputs, targets), outputs

    def _batch(self, W: torch.Tensor, inputs: Any, targets: torch.Tensor) -> tuple:
        """Losses ``(k,)`` and outputs ``(k, ...)`` of one batch at the ``k`` rows of ``W``."""
        if self.points_per_pass > 1:
            try:
                return vmap(self._point, in_dims=(0, None, None))(W, inputs, targets)
            except (RuntimeError, NotImplementedError) as err:
                if not self._auto or not any(k in str(err).lower() for k in _VMAP_UNSUPPORTED):
                    raise
                self.points_per_pass = 1  # this model's forward pass has no vmap rule
        pairs = [self._point(w, inputs, targets) for w in W]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])

    def _recompute_batchnorm(self, weights: torch.Tensor) -> None:
        """Refill the copy's BatchNorm statistics at ``weights``: train-mode passes over data."""
        clone = self._bn_model
        clone.eval()
        for module in clone.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.reset_running_stats()
                module.train()
        tensors = unflatten(weights, self.operator._shapes)
        for inputs, _, _ in self.operator._batches():
            functional_call(clone, tensors, _positional(inputs))
        clone.eval()

    # ----------------------------------------------------------------- public
    def chunks(self, num_points: int) -> Iterator[slice]:
        """Slices of ``range(num_points)`` of at most :attr:`points_per_pass` points each."""
        start = 0
        while start < num_points:
            stop = min(num_points, start + self.points_per_pass)
            yield slice(start, stop)
            start = stop

    def evaluate(self, W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Mean loss and accuracy over all data at each row of ``W`` (shape ``(k, d)``).

        Returns float64 tensors of shape ``(k,)``; the accuracy is ``None`` unless the model
        outputs logits ``(B, C)`` and the targets are class indices ``(B,)``.
        """
        if W.ndim != 2 or W.shape[1] != self.dim:
            raise ValueError(f"expected points of shape (k, {self.dim}), got {tuple(W.shape)}")
        W = W.to(self.device, self.dtype)
        losses, accuracies = [], []
        for rows in self.chunks(W.shape[0]):
            loss, accuracy = self._evaluate_chunk(W[rows])
            losses.append(loss)
            accuracies.append(accuracy)
        accuracy = None if accuracies[0] is None else torch.cat(accuracies)
        return torch.cat(losses), accuracy

    def _evaluate_chunk(self, W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        with torch.no_grad(), self.operator._eval_mode():
            if self.bn_recompute:
                parts = []
                for w in W:
                    self._recompute_batchnorm(w)
                    parts.append(self._totals(w[None]))
                total, correct = (torch.cat([p[i] for p in parts]) for i in (0, 1))
                classify = parts[0][2]
            else:
                total, correct, classify = self._totals(W)
        accuracy = correct / self.num_samples if classify else None
        return total / self.num_samples, accuracy

    def _totals(self, W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """Sample-weighted loss sums and correct counts over all batches at the rows of ``W``."""
        total = torch.zeros(W.shape[0], dtype=torch.float64, device=self.device)
        correct = torch.zeros_like(total)
        classify = None
        for inputs, targets, n in self.operator._batches():
            losses, outputs = self._batch(W, inputs, targets)
            total += losses.to(torch.float64) * n
            if classify is None:
                classify = _is_classification(outputs[0], targets)
            if classify:
                correct += (outputs.argmax(dim=-1) == targets).sum(dim=-1).to(torch.float64)
        return total, correct, bool(classify)

    def loss_and_gradient(self, weights: torch.Tensor) -> tuple[float, torch.Tensor]:
        """Mean loss over all data at ``weights`` and its gradient (a flat vector)."""
        op = self.operator
        weights = weights.to(self.device, self.dtype)
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        gradient = torch.zeros_like(weights)
        with op._eval_mode():
            for inputs, targets, n in op._batches():
                g, loss = grad_and_value(op._batch_loss)(weights, inputs, targets)
                gradient += g * n
                total += loss.detach().to(torch.float64) * n
        return float(total / self.num_samples), gradient / self.num_samples
