"""The Hessian of an objective (the mean training loss over a whole data set), matrix-free.

For an :class:`~flatscope.objective.Objective` ``L(w) = sum_b (n_b / N) loss_b(w)`` the operator
multiplies ``H = sum_b (n_b / N) H_b`` with ``V`` batch by batch (Pearlmutter 1994), in one of
two ways:

- reverse-over-reverse ("double backward"), ``H_b v = grad <grad loss_b, v>``: a forward and a
  differentiable backward pass build the first-order graph of ``grad loss_b``, and one more
  backward pass through it gives a column. The columns of ``V`` either run one after another on
  the same graph (``loop``) or together as one batched backward pass (``batched``:
  ``torch.autograd.grad(..., is_grads_batched=True)``, a ``vmap`` over the backward pass);
- forward-over-reverse, ``H_b v = d/dt grad loss_b(w + t v) |_{t=0}``: ``torch.func.jvp`` of
  ``torch.func.grad``, vectorised over the columns of ``V`` with ``torch.func.vmap``.

**Kept graphs.** The first-order graphs depend only on the weights and the data, which an
operator never changes, so double backward builds them once and keeps them for every later
product when the data is one batch, or when the graphs of all batches fit ``graph_budget``
bytes (by default a quarter of the memory available on the device when the first product runs,
see :mod:`flatscope.operators.memory`). A kept graph costs one backward pass per column instead
of a forward and two backward passes (PyHessian's single-batch mode, Yao et al. 2020, without
its flaws: flatscope's graphs hold private copies of the weights, write no ``.grad``, cover any
number of batches, and are rebuilt if a tensor of the objective or of in-memory data is written
in place, as their version counters show). Graphs that do not fit are rebuilt on every product.

**Memory.** A chunk of ``m`` columns costs memory that grows with ``m`` in the batched and the
forward modes. The first product measures the activation memory ``A`` of one batch (the bytes
a forward pass saves for the backward pass) and sizes the chunks so that a product on one batch
stays within ``memory_multiple`` (default 8) times the memory of a gradient: a gradient costs
``GRADIENT_COST * A`` plus the weights and the gradient, a chunk ``BASE_COST * A`` plus
``COLUMN_COST * A`` and three flat vectors per column (factors measured by
``benchmarks/hvp.py`` on a CNN and a ResNet-18: the gradient's smaller value and the chunks'
larger ones, so that the bound holds for both). The loop mode holds one column's intermediate
results at a time, so its chunks are all the columns.

**Choosing.** ``hvp="auto"`` takes double backward: with kept graphs it does strictly less work
than forward-over-reverse, which redoes the forward and the backward pass for every product.
Its columns run in a loop on the CPU, where the batched backward pass measured slower (digits
CNN: 1.2x per column at 8 columns, 1.5x at 32; ``benchmarks/hvp.py``), and batched on
accelerators, where one wide pass fills the device. The choice is a rule of the device, not a
timing probe: the two modes round differently (products differ by up to 1.7e-7 relative in
float32, 1.6e-16 in float64), and a probe on a small model flipped between them from run to run,
which would break "same seed, same numbers". Kept graphs made the two modes tie on the CPU
(batched / loop per column: 0.86 on a 1,810-parameter MLP, 1.06 on the 139,357-parameter
``cnn:width=39``; ``benchmarks/shared_products.py --sections modes``), so a probe there would
choose by noise for at most 15%. ``"forward"`` falls back to double
backward, with a warning, when forward-over-reverse fails on a batch on which double backward
succeeds (an operation without a forward-mode or vmap rule: :class:`ForwardModeUnavailable`);
an error that double backward raises too is the model's own, and propagates.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import grad, jvp, vmap

from flatscope.objective import LossFn, Objective
from flatscope.operators.curvature import CurvatureOperator, as_objective
from flatscope.operators.memory import available_memory, measure_graph_bytes

__all__ = ["HessianOperator", "ForwardModeUnavailable", "LossFn"]

HVP_MODES = ("auto", "forward", "double_backward", "batched_double_backward")
GRAPH_BUDGET_SHARE = 0.25  # of the memory available when the first product runs
DEFAULT_MEMORY_MULTIPLE = 8.0  # a product's memory on one batch, in gradients' memory
# Peak memory in units of A, as benchmarks/hvp.py measured it (RSS) on the digits CNN and the
# thin ResNet-18: the gradient's smaller value, the chunks' larger ones, so the bound holds for both
GRADIENT_COST = 1.15  # a gradient (measured 1.53, 1.16)
COLUMN_COST = {"forward": 3.0, "batched": 2.0}  # per column (measured 2.79, 2.56; 1.62, 1.22)
BASE_COST = {"forward": 2.5, "batched": 2.5}  # a chunk besides its columns (2.23, 2.33; 2.27, 2.15)
PROBE_STORAGE_ENTRIES = 1 << 24  # a chunk's probe columns never hold more entries than this


class ForwardModeUnavailable(RuntimeError):
    """Forward-over-reverse failed on a batch on which double backward succeeds: an operation
    of the model has no forward-mode (``jvp``) or batching (``vmap``) rule."""


@dataclass
class _BatchGraph:
    """The first-order graph of one batch: ``gradient`` is ``grad loss_b`` at ``weights`` (a
    leaf) with its graph; ``kept`` says whether it outlives the product."""

    weights: torch.Tensor
    gradient: torch.Tensor
    samples: int
    kept: bool


class HessianOperator(CurvatureOperator):
    """The Hessian of an objective's mean loss over all of its data, w.r.t. its parameters.

    A Hessian is symmetric (:attr:`symmetric` is ``True``: ``to_scipy()``'s transpose products
    are its own products).

    Build it from an :class:`~flatscope.objective.Objective`, or, as a convenience, from the
    objective's arguments: ``HessianOperator(model, loss_fn, data, params, device=...,
    dtype=...)`` is ``HessianOperator(Objective(model, loss_fn, data, params, device=...,
    dtype=...))``.

    Args:
        objective: the objective, or the model (with ``loss_fn`` and ``data``).
        loss_fn, data, params, device, dtype: the objective's arguments, when ``objective`` is
            a model.
        probe_batch_size: columns per product chunk; ``None`` sizes chunks by memory (see the
            module docstring).
        hvp: ``"auto"``, ``"double_backward"`` (columns in a loop), ``"batched_double_backward"``
            or ``"forward"`` (forward-over-reverse, falling back to double backward where an
            operation lacks a forward-mode rule); see the module docstring.
        graph_budget: bytes the kept first-order graphs of all batches may take; ``None`` for a
            quarter of the memory available at the first product (and the graph of data that
            is one batch is kept whatever its size); ``0`` never keeps graphs.
        memory_multiple: the memory of a product chunk on one batch, in gradients' memory, that
            the chunk size aims at.

    The operator never changes the model or the objective. Its flat coordinates are the
    objective's (:attr:`blocks` maps each parameter name to its slice). Under ``torch.distributed``
    each rank multiplies over its shard and the sums are all-reduced, so that every rank holds
    the product for the whole data set.
    """

    symmetric = True

    def __init__(
        self,
        objective: Objective | nn.Module,
        loss_fn: LossFn | None = None,
        data: Any = None,
        params: str | Sequence[str] | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        probe_batch_size: int | None = None,
        hvp: str = "auto",
        graph_budget: int | None = None,
        memory_multiple: float = DEFAULT_MEMORY_MULTIPLE,
    ) -> None:
        if hvp not in HVP_MODES:
            raise ValueError(f"hvp must be one of {HVP_MODES}, got {hvp!r}")
        if probe_batch_size is not None and probe_batch_size < 1:
            raise ValueError(f"probe_batch_size must be a positive integer, got {probe_batch_size}")
        if graph_budget is not None and graph_budget < 0:
            raise ValueError(f"graph_budget must be a number of bytes >= 0, got {graph_budget}")
        if not memory_multiple > 1:
            raise ValueError(f"memory_multiple must be larger than 1, got {memory_multiple}")
        objective = as_objective(objective, loss_fn, data, params, device, dtype, "HessianOperator")
        super().__init__(objective)
        self.hvp_mode = "forward" if hvp == "forward" else "double_backward"
        automatic = "loop" if objective.device.type == "cpu" else "batched"
        self.column_mode = {"double_backward": "loop", "batched_double_backward": "batched"}.get(
            hvp, automatic
        )
        self.probe_batch_size = probe_batch_size
        self.graph_budget = graph_budget
        self.memory_multiple = float(memory_multiple)
        self._kept: list[_BatchGraph] | None = None
        self._kept_version: tuple | None = None
        self._keep: bool | None = None  # None until the first pass decides
        self._activation_bytes: int | None = None

    @property
    def graphs_kept(self) -> bool | None:
        """Whether the first-order graphs are kept between products (``None`` before the first
        double-backward product)."""
        return self._keep

    @property
    def activation_bytes(self) -> int | None:
        """``A``, the bytes one batch's forward pass saves for the backward pass, measured on
        the first product of the batched and forward modes (``None`` before it, and in the
        loop mode, which needs no memory rule); it sizes their chunks."""
        return self._activation_bytes

    def release_graphs(self) -> None:
        """Free the kept first-order graphs (the next product rebuilds what it needs)."""
        self._kept = self._kept_version = None

    # ----------------------------------------------------------------- products
    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        P = V.T.contiguous()  # one probe per row: each column's work reads contiguous memory
        with self.objective.evaluating():
            if self.hvp_mode == "forward":
                try:
                    out = self._forward_sum(P)
                except ForwardModeUnavailable as err:
                    warnings.warn(
                        f"{err}; computing Hessian products by double backward instead",
                        RuntimeWarning,
                        stacklevel=4,
                    )
                    self.hvp_mode = "double_backward"
            if self.hvp_mode == "double_backward":
                out = self._double_backward_sum(P)
        del P  # the probes' transposed copy, before the result's
        return self._mean(out).T.contiguous()

    def chunk_size(self, k: int) -> int:
        """Columns per chunk in a product of ``k`` columns: ``probe_batch_size`` if given, all
        of them in the loop mode, else as many as the memory rule of the module docstring
        allows (it uses the activation memory measured by the first product)."""
        if self.probe_batch_size is not None:
            return min(k, self.probe_batch_size)
        mode = "forward" if self.hvp_mode == "forward" else self.column_mode
        if mode == "loop":
            return k
        item = torch.empty((), dtype=self.dtype).element_size()
        A, vector = self._activation_bytes or 0, self.shape[0] * item
        allowed = self.memory_multiple * (GRADIENT_COST * A + 2 * vector) - BASE_COST[mode] * A
        per_column = COLUMN_COST[mode] * A + 3 * vector
        storage = PROBE_STORAGE_ENTRIES // self.shape[0]
        return max(1, min(k, storage, int(allowed // per_column)))

    def _measure_activations(self, inputs: Any, targets: torch.Tensor) -> None:
        """``A``: bytes a forward pass of the batch saves for the backward pass (once)."""
        if self._activation_bytes is not None:
            return
        w = self._weights.detach().requires_grad_(True)
        with measure_graph_bytes(self.device, w) as saved, torch.enable_grad():
            loss = self.objective.batch_loss(w, inputs, targets)
        del loss
        self._activation_bytes = saved.bytes

    # forward-over-reverse
    def _forward_sum(self, P: torch.Tensor) -> torch.Tensor:
        """``sum_b n_b H_b p`` for each row ``p`` of ``P``, forward-over-reverse."""
        out = torch.zeros_like(P)
        for inputs, targets, n in self.objective.batches():
            self._measure_activations(inputs, targets)
            chunk = self.chunk_size(P.shape[0])
            for start in range(0, P.shape[0], chunk):
                rows = slice(start, start + chunk)
                out[rows].add_(self._forward_rows(inputs, targets, P[rows]), alpha=n)
        return out

    def _forward_rows(self, inputs: Any, targets: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
        def gradient(w: torch.Tensor) -> torch.Tensor:
            return grad(self.objective.batch_loss)(w, inputs, targets)

        def hvp(v: torch.Tensor) -> torch.Tensor:
            return jvp(gradient, (self._weights,), (v,))[1]

        try:
            return hvp(P[0])[None] if P.shape[0] == 1 else vmap(hvp)(P)
        except (RuntimeError, NotImplementedError) as err:
            # the same batch by double backward: if that fails too, the model is at fault and
            # its own error propagates
            graph = self._graph(inputs, targets, 0, kept=False)
            torch.autograd.grad(graph.gradient, graph.weights, P[0])
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err)
            raise ForwardModeUnavailable(
                f"forward-over-reverse failed on this model ({first_line})"
            ) from err

    # reverse-over-reverse
    def _graph(self, inputs: Any, targets: torch.Tensor, samples: int, kept: bool) -> _BatchGraph:
        w = self._weights.detach().requires_grad_(True)
        with torch.enable_grad():
            loss = self.objective.batch_loss(w, inputs, targets)
            (g,) = torch.autograd.grad(loss, w, create_graph=True)
        return _BatchGraph(w, g, samples, kept)

    def _graphs(self) -> Iterator[_BatchGraph]:
        """The first-order graph of every batch: kept ones, or built (and kept if they fit)."""
        version = self.objective.state_version()
        if self._kept is not None and self._kept_version == version:
            yield from self._kept
            return
        self._kept = None
        keep = self._keep is not False and self.graph_budget != 0
        budget = self._budget() if keep else 0
        kept, used = [], 0
        for index, (inputs, targets, n) in enumerate(self.objective.batches()):
            if self.column_mode == "batched":  # the loop needs no memory rule
                self._measure_activations(inputs, targets)
            if not keep:
                yield self._graph(inputs, targets, n, kept=False)
                continue
            with measure_graph_bytes(self.device, self._weights) as size:
                graph = self._graph(inputs, targets, n, kept=True)
            used += size.bytes
            # under the default budget one batch's graph is kept whatever its size
            if used > budget and (index > 0 or self.graph_budget is not None):
                for dropped in [*kept, graph]:
                    dropped.kept = False
                keep, kept = False, []
            else:
                kept.append(graph)
            yield graph
        if keep:
            self._kept, self._kept_version = kept, version
        self._keep = keep

    def _budget(self) -> int:
        if self.graph_budget is not None:
            return self.graph_budget
        return int(GRAPH_BUDGET_SHARE * available_memory(self.device))

    def _double_backward_sum(self, P: torch.Tensor) -> torch.Tensor:
        """``sum_b n_b H_b p`` for each row ``p`` of ``P``, reverse-over-reverse."""
        out = torch.zeros_like(P)
        k = P.shape[0]
        for graph in self._graphs():
            chunk = self.chunk_size(k)
            for start in range(0, k, chunk):
                rows = slice(start, start + chunk)
                retain = graph.kept or start + chunk < k
                self._add_backward(out[rows], graph, P[rows], retain)
        return out

    def _add_backward(
        self, out: torch.Tensor, graph: _BatchGraph, P: torch.Tensor, retain: bool
    ) -> None:
        """``out += n_b H_b p`` for the rows ``p`` of ``P``, from the batch's first-order graph."""
        g, w, k = graph.gradient, graph.weights, P.shape[0]
        if self.column_mode == "batched" and k > 1:
            (HP,) = torch.autograd.grad(g, w, P, retain_graph=retain, is_grads_batched=True)
            out.add_(HP, alpha=graph.samples)
            return
        for j in range(k):
            (hp,) = torch.autograd.grad(g, w, P[j], retain_graph=retain or j < k - 1)
            out[j].add_(hp, alpha=graph.samples)
