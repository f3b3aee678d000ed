"""Softmax cross-entropy over rows of logits, lean in memory through its second derivative.

For logits ``z`` of shape ``(R, V)`` (rows, vocabulary), integer targets ``t_r`` and row
weights ``w_r`` (zero for ignored rows), with ``p_r = softmax(z_r)``:

    L(z)            = sum_r w_r (logsumexp(z_r) - z_r[t_r]),
    dL/dz_r         = w_r (p_r - e_{t_r}),
    (d^2L/dz_r^2) u = w_r (p_r * u - p_r (p_r . u)),       i.e. w_r (diag(p_r) - p_r p_r^T) u,

the last for any target (Martens 2020, "New insights and perspectives on the natural gradient
method", JMLR 21, Sec. 9.2). PyTorch's ``F.cross_entropy`` keeps its log-softmax ``(R, V)`` for
the backward, and differentiated twice (a Hessian-vector product by double backward or
forward-over-reverse) its graph holds several more tensors of that size, each as large as a
small model when ``V`` is a language model's vocabulary. :func:`softmax_cross_entropy` is two
custom autograd functions, the loss and its gradient, whose backward and forward-mode rules are
the formulas above; each takes the softmax ``chunk_rows`` rows at a time from the logits and
keeps nothing else of size ``(R, V)``: the loss keeps the logits, its gradient is one ``(R,
V)`` tensor, and a product with the Hessian makes one more. Both functions work under
``torch.func`` (``grad``, ``jvp``, ``vmap``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["softmax_cross_entropy", "softmax_hessian_rows"]

DEFAULT_CHUNK_ROWS = 1024


def _by_rows(
    compute: Callable[[int, int], torch.Tensor], like: torch.Tensor, chunk_rows: int
) -> torch.Tensor:
    """``compute(start, length)`` for the rows (second-to-last axis) ``start .. start + length``
    in chunks of ``chunk_rows``, written into one tensor shaped like ``like`` (``narrow`` views:
    the only slicing that batched gradients, ``is_grads_batched``, know)."""
    total = like.shape[-2]
    if total <= chunk_rows:
        return compute(0, total)
    out = torch.empty_like(like)
    for start in range(0, total, chunk_rows):
        length = min(chunk_rows, total - start)
        out.narrow(-2, start, length).copy_(compute(start, length))
    return out


def softmax_hessian_rows(
    logits: torch.Tensor, weights: torch.Tensor, U: torch.Tensor, chunk_rows: int
) -> torch.Tensor:
    """``w_r (diag p_r - p_r p_r^T) u_r`` for logits ``(R, V)``, weights ``(R,)`` and ``U``
    ``(..., R, V)``, the softmax taken ``chunk_rows`` rows at a time."""

    def rows_of(start: int, length: int) -> torch.Tensor:
        p = torch.softmax(logits.narrow(0, start, length), dim=-1)
        pu = p * U.narrow(-2, start, length)
        return (pu - p * pu.sum(dim=-1, keepdim=True)) * weights.narrow(0, start, length)[:, None]

    return _by_rows(rows_of, U, chunk_rows)


def _gradient_rows(
    logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, chunk_rows: int
) -> torch.Tensor:
    """``w_r (p_r - e_{t_r})`` for every row (``t_r`` clamped to a valid index: an ignored row
    weighs zero)."""

    def rows_of(start: int, length: int) -> torch.Tensor:
        p = torch.softmax(logits.narrow(0, start, length), dim=-1)
        index = targets.narrow(0, start, length).clamp(min=0)[:, None]
        one_hot = torch.zeros_like(p).scatter(-1, index, torch.ones_like(index, dtype=p.dtype))
        return (p - one_hot) * weights.narrow(0, start, length)[:, None]

    return _by_rows(rows_of, logits, chunk_rows)


class _Gradient(torch.autograd.Function):
    """``G(z) = dL/dz``; its backward and forward-mode rules are the closed-form Hessian."""

    generate_vmap_rule = True

    @staticmethod
    def forward(logits, targets, weights, chunk_rows):  # noqa: D102 (torch's protocol)
        return _gradient_rows(logits, targets, weights, chunk_rows)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # noqa: D102
        logits, _, weights, chunk_rows = inputs
        ctx.save_for_backward(logits, weights)
        ctx.save_for_forward(logits, weights)
        ctx.chunk_rows = chunk_rows

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[Any, ...]:  # noqa: D102
        logits, weights = ctx.saved_tensors
        return softmax_hessian_rows(logits, weights, grad, ctx.chunk_rows), None, None, None

    @staticmethod
    def jvp(ctx, tangent: torch.Tensor, *_: Any) -> torch.Tensor:  # noqa: D102
        logits, weights = ctx.saved_tensors
        return softmax_hessian_rows(logits, weights, tangent, ctx.chunk_rows)


class _Loss(torch.autograd.Function):
    """``L(z)``; its backward is :class:`_Gradient` (so that it can be differentiated again)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(logits, targets, weights, chunk_rows):  # noqa: D102
        total = logits.new_zeros(())
        for start in range(0, logits.shape[0], chunk_rows):
            rows = slice(start, start + chunk_rows)
            z = logits[rows]
            picked = z.gather(-1, targets[rows, None].clamp(min=0)).squeeze(-1)
            total = total + (weights[rows] * (torch.logsumexp(z, dim=-1) - picked)).sum()
        return total

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # noqa: D102
        logits, targets, weights, chunk_rows = inputs
        ctx.save_for_backward(logits, targets, weights)
        ctx.save_for_forward(logits, targets, weights)
        ctx.chunk_rows = chunk_rows

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[Any, ...]:  # noqa: D102
        logits, targets, weights = ctx.saved_tensors
        gradient = _Gradient.apply(logits, targets, weights, ctx.chunk_rows)
        return grad * gradient, None, None, None

    @staticmethod
    def jvp(ctx, tangent: torch.Tensor, *_: Any) -> torch.Tensor:  # noqa: D102
        logits, targets, weights = ctx.saved_tensors
        gradient = _Gradient.apply(logits, targets, weights, ctx.chunk_rows)
        return (gradient * tangent).sum()


def softmax_cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> torch.Tensor:
    """``sum_r w_r CE(z_r, t_r)`` for logits ``(R, V)``, integer targets ``(R,)`` and weights
    ``(R,)``, differentiable twice in reverse and forward mode without ``(R, V)`` intermediates
    beyond the logits, the gradient and one product (see the module docstring)."""
    if logits.ndim != 2 or targets.shape != logits.shape[:1] or weights.shape != targets.shape:
        raise ValueError(
            f"softmax_cross_entropy needs logits (R, V), targets (R,) and weights (R,), got "
            f"{tuple(logits.shape)}, {tuple(targets.shape)}, {tuple(weights.shape)}"
        )
    return _Loss.apply(logits, targets, weights.to(logits.dtype), chunk_rows)
