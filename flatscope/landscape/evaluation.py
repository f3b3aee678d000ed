"""The mean loss (and accuracy) of a model at many points of its flat parameter space.

A point is a flat vector ``w`` of the selected parameters (in the order of
:mod:`flatscope.params`). Its loss is the mean per-sample loss over all of the data,

    L(w) = sum_b (n_b / N) * loss_fn(model(x_b; w), y_b),

the :class:`~flatscope.objective.Objective` that the Hessian operator differentiates, so
landscape slices, sharpness values and Hessian numbers describe one function. Points are
evaluated with ``torch.func.functional_call``: the model's own tensors are never written.
A point may also move floating-point buffers (BatchNorm running statistics along an
interpolation between two checkpoints): :meth:`LossEvaluator.evaluate` takes their values per
point besides the weights. Several points can share one pass over a batch through
``torch.func.vmap`` over the weight vectors (``points_per_pass`` of them at a time; the default
on accelerators);
``points_per_pass=1`` is the exact one-point-at-a-time loop (the default on the CPU). With
``bn_recompute=True`` the BatchNorm running statistics are re-estimated over the data at every
point (on a private copy of the model), one point at a time.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping

import torch
from torch import nn
from torch.func import functional_call, vmap

from flatscope.distributed import all_reduce_sum, is_distributed
from flatscope.objective import LossFn, Objective, positional

__all__ = ["LossEvaluator"]


def _has_tied_tensors(model: nn.Module) -> bool:
    """Whether one parameter or buffer is registered under several names."""
    return any(
        len(list(named(remove_duplicate=False))) != len(list(named()))
        for named in (model.named_parameters, model.named_buffers)
    )


def _is_classification(outputs: torch.Tensor, targets: torch.Tensor) -> bool:
    """Logits ``(B, C)`` against class indices ``(B,)``: accuracy is defined."""
    integer_targets = not targets.is_floating_point() and targets.dtype != torch.bool
    return (
        integer_targets
        and targets.ndim == 1
        and outputs.ndim == 2
        and outputs.shape[0] == targets.shape[0]
    )


class _DataPass(nn.Module):
    """One pass of the wrapped model over all batches, reduced to two numbers.

    ``forward()`` returns the sample-weighted loss sum ``sum_b n_b loss_b`` and the number of
    correct class predictions (zero unless :func:`_is_classification`), both float64. Calling it
    through ``functional_call`` swaps the weights in once for the whole pass instead of once
    per batch; only scalars outlive each batch.
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, batches: Callable[[], Iterator]) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn
        self.batches = batches
        self.classify: bool | None = None

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        losses, sizes, hits = [], [], []
        for inputs, targets, n in self.batches():
            outputs = self.model(*positional(inputs))
            losses.append(self.loss_fn(outputs, targets))
            sizes.append(n)
            if self.classify is None:
                self.classify = _is_classification(outputs, targets)
            if self.classify:
                hits.append((outputs.argmax(dim=-1) == targets).sum())
        losses = torch.stack(losses).to(torch.float64)
        total = (losses * torch.tensor(sizes, dtype=torch.float64, device=losses.device)).sum()
        correct = torch.stack(hits).sum().to(torch.float64) if hits else torch.zeros_like(total)
        return total, correct


class LossEvaluator:
    """Mean loss and accuracy of an objective's model over all of its data at given points.

    Args:
        objective: the :class:`~flatscope.objective.Objective` (model, loss, data, parameter
            selection, device, dtype); its data traversal, eval mode and sample count are used.
        points_per_pass: how many points one vectorised forward pass carries; ``1`` is the exact
            loop; ``None`` picks 1 on the CPU and a value from the problem size elsewhere, and
            falls back to the loop if the model's forward pass cannot be vmapped.
        bn_recompute: re-estimate BatchNorm running statistics over the data at every point
            (cumulative average over the batches, on a private copy of the model) before
            evaluating in eval mode; forces ``points_per_pass=1``.
    """

    def __init__(
        self,
        objective: Objective,
        *,
        points_per_pass: int | None = None,
        bn_recompute: bool = False,
    ) -> None:
        if not isinstance(objective, Objective):
            raise TypeError(f"expected a flatscope Objective, got {type(objective).__name__}")
        if points_per_pass is not None and (
            not isinstance(points_per_pass, int) or points_per_pass < 1
        ):
            raise ValueError(f"points_per_pass must be a positive integer, got {points_per_pass!r}")
        if bn_recompute and is_distributed():
            raise ValueError(
                "bn_recompute needs every sample on one process: BatchNorm statistics of one "
                "rank's shard are not those of the whole dataset; run it without torchrun"
            )
        self.objective = objective
        self.origin = objective.flat_params()
        self.dim = objective.dim
        self.bn_recompute = bn_recompute
        model = objective.model
        # functional_call's re-tying of shared tensors costs as much as a small forward pass
        self._tie_weights = _has_tied_tensors(model)
        self._auto = points_per_pass is None and not bn_recompute
        if bn_recompute:  # the copy holds the other tensors (cast) and the statistics it refills
            self._pass = _DataPass(self._batchnorm_copy(model), objective.loss_fn, self._batches)
            self._fixed = {}
            self.points_per_pass = 1
        else:
            self._pass = _DataPass(model, objective.loss_fn, self._batches)
            self._fixed = {f"model.{name}": t for name, t in objective.fixed_tensors.items()}
            self.points_per_pass = points_per_pass or self._default_points_per_pass()

    @property
    def dtype(self) -> torch.dtype:
        return self.objective.dtype

    @property
    def device(self) -> torch.device:
        return self.objective.device

    @property
    def num_samples(self) -> int:
        return self.objective.num_samples

    def _batches(self) -> Iterator:
        return self.objective.batches()

    # ----------------------------------------------------------------- setup
    def _default_points_per_pass(self) -> int:
        """One point at a time on the CPU, where vmap's grouped convolutions and split
        normalization layers cost more than separate passes (benchmarks/landscape.py); on an
        accelerator, keep one pass's extra activations and weights near 2**22 entries."""
        if self.device.type == "cpu":
            return 1
        inputs, _, _ = next(self._batches())
        input_size = sum(t.numel() for t in positional(inputs))
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
        return clone.eval()  # only BatchNorm layers switch to training mode, to collect stats

    # ----------------------------------------------------------------- data passes
    def _totals(self, tensors: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """:class:`_DataPass` at one point, given as ``{name: tensor}`` (selected parameters and
        any buffers that move with the point)."""
        named = {**self._fixed, **{f"model.{name}": t for name, t in tensors.items()}}
        return functional_call(self._pass, named, (), tie_weights=self._tie_weights)

    def _rows(
        self, W: torch.Tensor, buffers: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Every moving tensor of the points, ``{name: (k, *shape)}``."""
        rows = {
            name: W[:, cols].reshape(W.shape[0], *self.objective.shapes[name])
            for name, cols in self.objective.blocks.items()
        }
        return {**rows, **buffers}

    def _vectorised_totals(
        self, rows: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """:meth:`_totals` at every point in one vmapped pass; ``None`` where the forward pass
        cannot be vmapped and the choice of ``points_per_pass`` was automatic (the loop then
        takes over). Tensors equal at every point (a random direction is zero on biases and
        normalization parameters, for example) are not batched."""
        k = next(iter(rows.values())).shape[0]
        moving = {n: r for n, r in rows.items() if not torch.equal(r, r[:1].expand_as(r))}
        shared = {n: r[0] for n, r in rows.items() if n not in moving}
        if not moving:  # every row is the same point
            total, correct = self._totals(shared)
            return total.expand(k), correct.expand(k)
        try:
            return vmap(lambda tensors: self._totals({**shared, **tensors}))(moving)
        except (RuntimeError, NotImplementedError) as err:
            if not self._auto:
                raise
            try:  # the loop on the first point: if it fails too, the model is at fault
                self._totals({name: r[0] for name, r in rows.items()})
            except (RuntimeError, NotImplementedError):
                raise err from None
            self.points_per_pass = 1
            return None

    def _recompute_batchnorm(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Refill the copy's BatchNorm statistics at a point: one train-mode pass over data."""
        clone = self._pass.model
        for module in clone.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.reset_running_stats()
                module.train()
        try:
            self._totals(tensors)
        finally:
            clone.eval()

    # ----------------------------------------------------------------- public
    @property
    def points_per_call(self) -> int:
        """How many points a caller should hand to :meth:`evaluate` at once: at least
        :attr:`points_per_pass`, and as many as fit in about 2**24 weight entries."""
        return max(self.points_per_pass, (1 << 24) // self.dim)

    def chunks(self, num_points: int) -> Iterator[slice]:
        """Slices of ``range(num_points)`` of at most :attr:`points_per_call` points each."""
        for start in range(0, num_points, self.points_per_call):
            yield slice(start, min(num_points, start + self.points_per_call))

    def evaluate(
        self, W: torch.Tensor, buffers: Mapping[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Mean loss and accuracy over all data at each row of ``W`` (shape ``(k, d)``).

        ``buffers`` optionally gives, per point, the values of buffers that move with it
        (``{name: (k, *shape)}``, for example BatchNorm running statistics interpolated between
        two checkpoints); other buffers keep the objective's values. With ``bn_recompute`` the
        BatchNorm statistics are recomputed at every point instead.

        Returns float64 tensors of shape ``(k,)``; the accuracy is ``None`` unless the model
        outputs logits ``(B, C)`` and the targets are class indices ``(B,)``.
        """
        if W.ndim != 2 or W.shape[1] != self.dim:
            raise ValueError(f"expected points of shape (k, {self.dim}), got {tuple(W.shape)}")
        W = W.to(self.device, self.dtype)
        moving = {} if buffers is None or self.bn_recompute else dict(buffers)
        for name, values in moving.items():
            if name not in self.objective.fixed_tensors or values.shape[0] != W.shape[0]:
                raise ValueError(f"buffers[{name!r}] is not a buffer of the model given per point")
            moving[name] = values.to(self.device, self.objective.fixed_tensors[name].dtype)
        totals, corrects = [], []
        every = self._rows(W, moving)
        with torch.no_grad(), self.objective.evaluating():
            start = 0
            while start < W.shape[0]:  # points_per_pass may drop to 1 on the way
                stop = min(W.shape[0], start + self.points_per_pass)
                rows = {name: r[start:stop] for name, r in every.items()}
                total, correct = self._chunk_totals(rows)
                totals.append(total)
                corrects.append(correct)
                start = stop
        # under torch.distributed each rank summed its shard: add the ranks' sums
        totals, corrects = all_reduce_sum(torch.cat(totals)), all_reduce_sum(torch.cat(corrects))
        accuracy = corrects / self.num_samples if self._pass.classify else None
        return totals / self.num_samples, accuracy

    def _chunk_totals(self, rows: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss sums and correct counts ``(k,)`` at the points: vectorised, or a loop."""
        k = next(iter(rows.values())).shape[0]
        if k > 1 and self.points_per_pass > 1:
            sums = self._vectorised_totals(rows)
            if sums is not None:
                return sums
        per_point = []
        for i in range(k):
            tensors = {name: r[i] for name, r in rows.items()}
            if self.bn_recompute:
                self._recompute_batchnorm(tensors)
            per_point.append(self._totals(tensors))
        return tuple(torch.stack([p[i] for p in per_point]) for i in (0, 1))
