"""The empirical risk of a model over a whole data set: what flatscope differentiates and draws.

For data split into batches ``B_1, ..., B_m`` with ``n_b`` samples each and ``N = sum n_b``,

    L(w) = sum_b (n_b / N) * loss_fn(model(x_b; w), y_b),

the mean per-sample loss over all ``N`` samples when ``loss_fn`` returns a batch mean. ``w`` is
the flat vector of the selected parameters (see :mod:`flatscope.operators.params`); every other
parameter and buffer stays fixed at its value when the objective was built.

An :class:`Objective` owns everything about ``L`` that is not curvature: the traversal of the
data (batches placed on the device and dtype, the same batches in the same order on every pass),
``eval()`` mode with PyTorch's math attention kernel (fused scaled-dot-product attention kernels
have no second derivatives), the checks that make a pass reproducible (no shuffling loader, no
one-shot iterator, no randomness left in the forward pass), the sample count ``N`` (one pass
over the data, or none when the caller states it), the flat parameter view, and the values
``L(w)`` and ``grad L(w)`` at the weights it was built with or at any other point. Curvature
operators (:class:`~flatscope.operators.hessian.HessianOperator`), landscapes and sharpness
measures (:mod:`flatscope.landscape`) consume it, so they all describe one function.

Under an initialised ``torch.distributed`` process group, ``data`` is this rank's shard (see
:class:`~flatscope.operators.distributed.ShardSampler`); the sample count and every sum over the
data are all-reduced, so each rank holds the values for the whole data set.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

from flatscope.distributed import all_reduce_sum, is_distributed
from flatscope.params import block_slices, flatten, select_parameters, unflatten

__all__ = ["Objective", "LossFn", "Batch", "positional"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Batch = tuple[Any, torch.Tensor, int]


def _as_batches(data: Any) -> Iterable:
    """Normalise ``data`` to a re-iterable of ``(inputs, targets)`` batches."""
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[1], torch.Tensor):
        return [data]
    if isinstance(data, DataLoader):
        batch_sampler = getattr(data.batch_sampler, "sampler", None)
        if isinstance(data.sampler, RandomSampler) or isinstance(batch_sampler, RandomSampler):
            raise ValueError(
                "the DataLoader shuffles (shuffle=True): the objective needs the same batches on "
                "every pass; build the loader with shuffle=False"
            )
        return data
    if not isinstance(data, Iterable):
        raise TypeError(
            "data must be a DataLoader, a re-iterable of (inputs, targets) batches or one "
            f"(inputs, targets) tuple, got {type(data).__name__}"
        )
    if iter(data) is data:
        raise ValueError(
            "data is a one-shot iterator (a generator?): the objective passes over the data "
            "once per evaluation, so pass a list of (inputs, targets) batches or a DataLoader"
        )
    return data


def _tensor_leaves(x: Any) -> list[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, (tuple, list)):
        return [t for item in x for t in _tensor_leaves(item)]
    return []


def _batch_size(targets: torch.Tensor) -> int:
    return int(targets.shape[0]) if targets.ndim > 0 else 1


def positional(inputs: Any) -> tuple[Any, ...]:
    """A batch's inputs as the positional arguments of the model."""
    return tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)


class Objective:
    """The mean loss of ``model`` over all of ``data``, as a function of selected parameters.

    Args:
        model: the network. Its tensors are never written: the selected parameters are copied
            into a flat vector and every other parameter and buffer is copied once (cast to
            ``dtype``), so later changes to the model do not change the objective.
        loss_fn: ``loss_fn(outputs, targets)`` returning the mean loss of a batch (for example
            ``torch.nn.CrossEntropyLoss()``).
        data: a ``DataLoader`` without shuffling, a re-iterable of ``(inputs, targets)``
            batches, or one ``(inputs, targets)`` tuple. ``inputs`` may be a tuple of tensors,
            passed to the model as positional arguments. The data must not change after the
            objective is built.
        params: ``None`` for every trainable parameter, or names / globs (``"layer1.*"``).
        device: where the model runs; defaults to the device of the selected parameters.
        dtype: the floating-point dtype of the computation (``torch.float64`` for exact
            comparisons); defaults to the dtype of the selected parameters.
        num_samples: ``N``, the number of samples in ``data`` (over all ranks); ``None`` counts
            them in one pass over the data. A wrong number scales every value.

    Raises:
        ValueError: empty data, a shuffling loader, a one-shot iterator, batches that change
            between passes, a forward pass that is random in eval mode, a parameter pattern that
            matches nothing, a non-positive ``num_samples``.
        TypeError: data of another kind, a non-floating-point ``dtype``.

    Attributes:
        model, loss_fn, data, device, dtype, num_samples: as given (``data`` normalised, the
            device a ``torch.device``, ``num_samples`` counted if not given).
        param_names: the selected parameters, in ``named_parameters`` order.
        shapes: ``{name: shape}`` of the selected parameters.
        blocks: ``{name: slice}`` locating each parameter in the flat vector.
        dim: the length ``d`` of the flat vector.
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
        num_samples: int | None = None,
    ) -> None:
        if num_samples is not None and (
            isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1
        ):
            raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
        selected = select_parameters(model, params)
        first = next(iter(selected.values()))
        self.device = torch.device(device) if device is not None else first.device
        self.dtype = dtype if dtype is not None else first.dtype
        if not self.dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating-point dtype, got {self.dtype}")
        self.model = model
        self.loss_fn = loss_fn
        self.data = _as_batches(data)
        self.param_names = list(selected)
        self.shapes = {name: p.shape for name, p in selected.items()}
        self.blocks = block_slices(selected)
        self._weights = flatten(p.detach().to(self.device, self.dtype) for p in selected.values())
        self.dim = self._weights.numel()
        ids = {id(p) for p in selected.values()}
        self._fixed = {
            name: t.detach().to(self.device, self.dtype if t.is_floating_point() else t.dtype)
            for name, t in [*model.named_parameters(), *model.named_buffers()]
            if id(t) not in ids
        }
        self.num_samples = self._count() if num_samples is None else num_samples
        self._check_determinism()

    # ----------------------------------------------------------------- the flat view
    def flat_params(self) -> torch.Tensor:
        """The selected parameters at which the objective was built, as a flat vector (a copy)."""
        return self._weights.clone()

    def unflatten(self, weights: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{name: tensor}`` views of a flat vector, shaped like the selected parameters."""
        return unflatten(weights, self.shapes)

    @property
    def fixed_tensors(self) -> Mapping[str, torch.Tensor]:
        """The parameters that are not selected and the buffers (read-only ``{name: tensor}``),
        on the objective's device and dtype: what ``functional_call`` needs besides ``w``."""
        return MappingProxyType(self._fixed)

    def state_version(self) -> tuple[int, ...]:
        """A fingerprint of what the objective evaluates: the version counters of its weights,
        fixed tensors and in-memory data (a list of batches, or a ``DataLoader`` over a
        ``TensorDataset``), and the identity of those data tensors. It changes when one of them
        is written in place or replaced, so a cache of anything computed from them can tell that
        it is stale; data read from elsewhere (files, custom datasets) is not covered."""
        data = self.data
        if isinstance(data, DataLoader):
            dataset = data.dataset
            leaves = list(dataset.tensors) if isinstance(dataset, TensorDataset) else []
        elif isinstance(data, Sequence):
            leaves = [t for batch in data for t in _tensor_leaves(batch)]
        else:
            leaves = []
        tensors = [self._weights, *self._fixed.values()]
        return (
            *(t._version for t in tensors),
            len(leaves),
            *(x for t in leaves for x in (id(t), t._version)),
        )

    # ----------------------------------------------------------------- the data
    def batches(self) -> Iterator[Batch]:
        """``(inputs, targets, n)`` for each batch of this rank's data, placed on the device
        (floating-point tensors cast to the dtype); ``n`` is the batch's number of samples."""
        for batch in self.data:
            if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                raise ValueError(
                    "each batch must be an (inputs, targets) pair, got "
                    f"{type(batch).__name__}"
                    + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
                )
            inputs, targets = batch
            yield self._place(inputs), self._place(targets), _batch_size(targets)

    def _place(self, x: Any) -> Any:
        if isinstance(x, (tuple, list)):
            return type(x)(self._place(t) for t in x)
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"batches must hold tensors, got {type(x).__name__}")
        return x.to(self.device, self.dtype if x.is_floating_point() else x.dtype)

    @contextlib.contextmanager
    def evaluating(self) -> Iterator[None]:
        """Eval mode and the math attention kernel for the duration; training flags restored."""
        modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        try:
            with sdpa_kernel(SDPBackend.MATH):
                yield
        finally:
            for module, training in modes:
                module.training = training

    def _count(self) -> int:
        local = sum(n for _, _, n in self.batches())
        count = torch.tensor([local], dtype=torch.float64, device=self.device)
        num_samples = int(all_reduce_sum(count).item())
        if num_samples == 0:
            raise ValueError("data is empty: the objective needs at least one sample")
        return num_samples

    def _check_determinism(self) -> None:
        """The first batch is the same on two passes, and gives the same loss twice."""
        passes = [next(self.batches(), None), next(self.batches(), None)]
        if passes[0] is None:
            if not is_distributed():
                raise ValueError("data is empty: the objective needs at least one sample")
            return  # an empty shard on this rank: nothing to check here
        (inputs, targets, _), (_, again, _) = passes
        if not torch.equal(targets, again):
            raise ValueError(
                "data gives different batches on each pass (a shuffling sampler?): the objective "
                "needs the same batches on every pass; iterate the data in a fixed order"
            )
        with torch.no_grad(), self.evaluating():
            a = self.batch_loss(self._weights, inputs, targets)
            b = self.batch_loss(self._weights, inputs, targets)
        # equal bit for bit; a NaN loss is not randomness, and is reported by the caller
        if not torch.allclose(a, b, rtol=0, atol=0, equal_nan=True):
            raise ValueError(
                "the model gives different losses on the same batch in eval mode (dropout or "
                "other randomness left active?): make the forward pass deterministic"
            )

    # ----------------------------------------------------------------- values
    def batch_loss(self, weights: torch.Tensor, inputs: Any, targets: torch.Tensor) -> torch.Tensor:
        """``loss_fn(model(inputs; w), targets)`` at the flat weights ``w``: a pure function of
        ``weights`` (through ``torch.func.functional_call``), differentiable by ``torch.autograd``
        and ``torch.func``. Call it inside :meth:`evaluating`."""
        tensors = {**self._fixed, **unflatten(weights, self.shapes)}
        return self.loss_fn(functional_call(self.model, tensors, positional(inputs)), targets)

    def _as_point(self, weights: torch.Tensor) -> torch.Tensor:
        if not isinstance(weights, torch.Tensor) or weights.shape != (self.dim,):
            shape = tuple(weights.shape) if isinstance(weights, torch.Tensor) else type(weights)
            raise ValueError(f"expected flat weights of shape ({self.dim},), got {shape}")
        return weights.detach().to(self.device, self.dtype)

    def loss_at(self, weights: torch.Tensor) -> float:
        """``L(w)`` at flat weights ``w`` (summed in float64)."""
        w = self._as_point(weights)
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        with torch.no_grad(), self.evaluating():
            for inputs, targets, n in self.batches():
                total += self.batch_loss(w, inputs, targets).to(torch.float64) * n
        return float(all_reduce_sum(total) / self.num_samples)

    def loss_and_gradient_at(self, weights: torch.Tensor) -> tuple[float, torch.Tensor]:
        """``L(w)`` and ``grad L(w)`` (a flat vector of the objective's dtype), one pass."""
        w = self._as_point(weights).requires_grad_(True)
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        gradient = torch.zeros_like(w, requires_grad=False)
        with self.evaluating(), torch.enable_grad():
            for inputs, targets, n in self.batches():
                loss = self.batch_loss(w, inputs, targets)
                (g,) = torch.autograd.grad(loss, w)
                gradient += g * n
                total += loss.detach().to(torch.float64) * n
        total, gradient = all_reduce_sum(total), all_reduce_sum(gradient)
        return float(total / self.num_samples), gradient / self.num_samples

    def loss(self) -> float:
        """``L(w)`` at the weights the objective was built with."""
        return self.loss_at(self._weights)

    def gradient(self) -> torch.Tensor:
        """``grad L(w)`` at the weights the objective was built with, as a flat vector."""
        return self.loss_and_gradient_at(self._weights)[1]

    def __repr__(self) -> str:
        return (
            f"Objective(model={type(self.model).__name__}, dim={self.dim}, "
            f"num_samples={self.num_samples}, dtype={self.dtype}, device={self.device})"
        )
