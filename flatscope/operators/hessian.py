"""The Hessian of a model's mean training loss over a whole dataset, as a matrix-free operator.

For data split into batches ``B_1, ..., B_m`` with ``n_b`` samples each and ``N = sum n_b``,
the operator is the Hessian of

    L(w) = sum_b (n_b / N) * loss_fn(model(x_b; w), y_b),

the mean of the per-sample loss over all ``N`` samples when ``loss_fn`` returns a batch mean.
Products ``H V`` are computed batch by batch (Pearlmutter 1994) in one of two ways:

- forward-over-reverse, ``H v = d/dt grad L(w + t v) |_{t=0}``: ``torch.func.jvp`` of
  ``torch.func.grad`` over ``torch.func.functional_call``, vectorised over the columns of ``V``
  with ``torch.func.vmap`` (activation memory grows with the number of columns per pass);
- reverse-over-reverse ("double backward"), ``H v = grad <grad L, v>``: one forward and one
  differentiable backward pass per data batch, whose graph is then shared by every column.

``hvp="auto"`` takes double backward on the CPU, where it measured 1.3-1.9x cheaper per probe
than forward-over-reverse on a small CNN (``benchmarks/hvp.py``), and forward-over-reverse on
accelerators, where the vmapped columns run in parallel. Forward-over-reverse falls back to
double backward when an operation has no forward-mode rule.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, grad, jvp, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.data import DataLoader, RandomSampler

from flatscope.operators.base import LinearOperator
from flatscope.operators.distributed import all_reduce_sum
from flatscope.operators.params import block_slices, flatten, select_parameters, unflatten

__all__ = ["HessianOperator"]

Batch = tuple[Any, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_HVP_MODES = ("auto", "forward", "double_backward")
# Messages of errors raised when an op has no (working) forward-mode or vmap rule; the last
# one is raised by mse_loss's backward under forward AD in PyTorch 2.x.
_FORWARD_AD_MISSING = (
    "forward",
    "jvp",
    "vmap",
    "not implemented",
    "batching rule",
    "zerotensors are immutable",
)


def _one_shot_error() -> ValueError:
    return ValueError(
        "data is a one-shot iterator (a generator?): the Hessian operator passes over the data "
        "once per product, so pass a list of (inputs, targets) batches or a DataLoader"
    )


def _as_batches(data: Any) -> Iterable[Batch]:
    """Normalise ``data`` to a re-iterable of ``(inputs, targets)`` batches."""
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[1], torch.Tensor):
        return [data]
    if isinstance(data, DataLoader):
        if (
            isinstance(data.sampler, RandomSampler)
            or data.batch_sampler is not None
            and (isinstance(getattr(data.batch_sampler, "sampler", None), RandomSampler))
        ):
            raise ValueError(
                "the DataLoader shuffles (shuffle=True): the Hessian needs the same batches on "
                "every product; build the loader with shuffle=False"
            )
        return data
    if not isinstance(data, Iterable):
        raise TypeError(
            "data must be a DataLoader, a re-iterable of (inputs, targets) batches or one "
            f"(inputs, targets) tuple, got {type(data).__name__}"
        )
    if iter(data) is data:
        raise _one_shot_error()
    return data


def _batch_size(targets: torch.Tensor) -> int:
    return int(targets.shape[0]) if targets.ndim > 0 else 1


class HessianOperator(LinearOperator):
    """Hessian of the mean loss of ``model`` over all of ``data`` w.r.t. selected parameters.

    Args:
        model: the network. Its weights are never modified; products run in ``eval()`` mode
            (BatchNorm running statistics, no dropout) and the training flags are restored.
        loss_fn: ``loss_fn(outputs, targets)`` returning the mean loss of a batch (for example
            ``torch.nn.CrossEntropyLoss()``).
        data: a ``DataLoader`` without shuffling, a re-iterable of ``(inputs, targets)``
            batches, or one ``(inputs, targets)`` tuple. ``inputs`` may be a tuple of tensors,
            passed to the model as positional arguments.
        params: ``None`` for every trainable parameter, or names / globs (``"layer1.*"``).
        device: where products run; defaults to the device of the model's parameters.
        dtype: the dtype of the computation (``torch.float64`` for exact comparisons);
            defaults to the dtype of the selected parameters.
        probe_batch_size: how many probe vectors one vectorised pass carries; ``None`` picks
            a value from the problem size.
        hvp: ``"forward"`` (forward-over-reverse, falling back to double backward when an
            operation lacks a forward-mode rule), ``"double_backward"``, or ``"auto"`` (double
            backward on the CPU, forward-over-reverse elsewhere; see the module docstring).

    The flat coordinate vector lists the selected parameters in ``named_parameters`` order;
    :attr:`blocks` maps each parameter name to its slice.

    Under an initialised ``torch.distributed`` process group, ``data`` is this rank's shard
    (see :class:`flatscope.operators.distributed.ShardSampler`); products, :meth:`loss` and
    :meth:`gradient` are all-reduced so that every rank holds the result for the whole dataset.
    Pass the unwrapped module, not a ``DistributedDataParallel`` wrapper.
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
        probe_batch_size: int | None = None,
        hvp: str = "auto",
    ) -> None:
        if hvp not in _HVP_MODES:
            raise ValueError(f"hvp must be one of {_HVP_MODES}, got {hvp!r}")
        if probe_batch_size is not None and probe_batch_size < 1:
            raise ValueError(f"probe_batch_size must be a positive integer, got {probe_batch_size}")
        selected = select_parameters(model, params)
        first = next(iter(selected.values()))
        device = torch.device(device) if device is not None else first.device
        dtype = dtype if dtype is not None else first.dtype
        if not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating-point dtype, got {dtype}")

        self.model = model
        self.loss_fn = loss_fn
        self.data = _as_batches(data)
        self.param_names = list(selected)
        self.hvp_mode = (
            hvp if hvp != "auto" else ("double_backward" if device.type == "cpu" else "forward")
        )
        self.probe_batch_size = probe_batch_size
        self._shapes = {name: p.detach().to(device, dtype) for name, p in selected.items()}
        self._weights = flatten(self._shapes.values()).clone()
        ids = {id(p) for p in selected.values()}
        self._fixed = {
            name: t.detach().to(device, dtype if t.is_floating_point() else t.dtype)
            for name, t in [*model.named_parameters(), *model.named_buffers()]
            if id(t) not in ids
        }
        d = self._weights.numel()
        super().__init__((d, d), dtype, device, block_slices(self._shapes))
        self.num_samples = self._check_data()

    # ----------------------------------------------------------------- data and the loss
    def _batches(self) -> Iterator[tuple[Any, torch.Tensor, int]]:
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

    def _batch_loss(
        self, weights: torch.Tensor, inputs: Any, targets: torch.Tensor
    ) -> torch.Tensor:
        tensors = {**self._fixed, **unflatten(weights, self._shapes)}
        args = inputs if isinstance(inputs, (tuple, list)) else (inputs,)
        return self.loss_fn(functional_call(self.model, tensors, tuple(args)), targets)

    @contextlib.contextmanager
    def _eval_mode(self) -> Iterator[None]:
        """Eval mode, and the plain-math attention kernel: fused scaled-dot-product attention
        kernels have no second derivatives."""
        modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        try:
            with sdpa_kernel(SDPBackend.MATH):
                yield
        finally:
            for module, training in modes:
                module.training = training

    def _check_data(self) -> int:
        """Count samples and check that data and model give the same numbers twice."""
        local, first = 0, None
        for inputs, targets, n in self._batches():
            if first is None:
                first = (inputs, targets)
            local += n
        num_samples = int(
            all_reduce_sum(torch.tensor([local], dtype=torch.float64, device=self.device)).item()
        )
        if num_samples == 0:
            raise ValueError("data is empty: the Hessian needs at least one sample")
        if first is None:  # an empty shard on this rank: nothing to check here
            return num_samples
        inputs, targets, _ = next(self._batches())
        if not torch.equal(targets, first[1]):
            raise ValueError(
                "data gives different batches on each pass (a shuffling sampler?): the Hessian "
                "needs the same batches on every product; iterate the data in a fixed order"
            )
        with torch.no_grad(), self._eval_mode():
            a = self._batch_loss(self._weights, inputs, targets)
            b = self._batch_loss(self._weights, inputs, targets)
        # equal bit for bit; a NaN loss is not randomness, and is reported by the caller
        if not torch.allclose(a, b, rtol=0, atol=0, equal_nan=True):
            raise ValueError(
                "the model gives different losses on the same batch in eval mode (dropout or "
                "other randomness left active?): make the forward pass deterministic"
            )
        return num_samples

    def flat_params(self) -> torch.Tensor:
        """The selected parameters at which the Hessian is taken, as a flat vector."""
        return self._weights.clone()

    def loss(self) -> float:
        """The mean loss over all of the data."""
        total = torch.zeros((), dtype=self.dtype, device=self.device)
        with torch.no_grad(), self._eval_mode():
            for inputs, targets, n in self._batches():
                total += self._batch_loss(self._weights, inputs, targets) * n
        return float(all_reduce_sum(total) / self.num_samples)

    def gradient(self) -> torch.Tensor:
        """The gradient of the mean loss over all of the data, as a flat vector."""
        total = torch.zeros_like(self._weights)
        with self._eval_mode():
            for inputs, targets, n in self._batches():
                total += grad(self._batch_loss)(self._weights, inputs, targets) * n
        return all_reduce_sum(total) / self.num_samples

    # ----------------------------------------------------------------- products
    def _chunk_size(self, k: int) -> int:
        if self.probe_batch_size is not None:
            return min(k, self.probe_batch_size)
        if self.hvp_mode == "double_backward":
            return k  # every column shares the batch's graph: no memory grows with k
        # vmap multiplies activation memory by the chunk size; keep the chunk's probe storage
        # near 2**24 entries, but never below one probe.
        return max(1, min(k, 32, (1 << 24) // max(1, self.shape[0])))

    def _hvp_forward(self, inputs: Any, targets: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        def gradient(w: torch.Tensor) -> torch.Tensor:
            return grad(self._batch_loss)(w, inputs, targets)

        def hvp(v: torch.Tensor) -> torch.Tensor:
            return jvp(gradient, (self._weights,), (v,))[1]

        if V.shape[1] == 1:
            return hvp(V[:, 0])[:, None]
        return vmap(hvp, in_dims=1, out_dims=1)(V)

    def _hvp_double_backward(
        self, inputs: Any, targets: torch.Tensor, V: torch.Tensor
    ) -> torch.Tensor:
        w = self._weights.detach().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(self._batch_loss(w, inputs, targets), w, create_graph=True)
            columns = [
                torch.autograd.grad(g, w, V[:, j], retain_graph=j < V.shape[1] - 1)[0]
                for j in range(V.shape[1])
            ]
        return torch.stack(columns, dim=1)

    def _batch_hvp(self, inputs: Any, targets: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        if self.hvp_mode == "double_backward":
            return self._hvp_double_backward(inputs, targets, V)
        try:
            return self._hvp_forward(inputs, targets, V)
        except (NotImplementedError, RuntimeError) as err:
            message = str(err).lower()
            if not any(k in message for k in _FORWARD_AD_MISSING):
                raise
            self.hvp_mode = "double_backward"
            return self._hvp_double_backward(inputs, targets, V)

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(V)
        chunk = self._chunk_size(V.shape[1])
        with self._eval_mode():
            for inputs, targets, n in self._batches():
                for start in range(0, V.shape[1], chunk):
                    cols = slice(start, start + chunk)
                    out[:, cols] += self._batch_hvp(inputs, targets, V[:, cols]) * n
        return all_reduce_sum(out) / self.num_samples
