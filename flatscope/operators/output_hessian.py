"""Products with the Hessian of a batch's loss w.r.t. the model's outputs, ``H_out U``.

The generalized Gauss-Newton matrix (:mod:`flatscope.operators.ggn`) needs, on each batch with
outputs ``z = f(x; w)`` and mean loss ``loss_b(z)``, products with ``H_out = d^2 loss_b / dz^2``.
An *output Hessian* is a function ``prepare(outputs, targets)`` returning ``apply(U)``, which
maps ``U`` of shape ``(k, *outputs.shape)`` to ``H_out U`` of the same shape; ``prepare`` runs
once per batch and ``apply`` once per chunk of columns.

- :func:`autograd_output_hessian` differentiates any loss twice w.r.t. its outputs (the
  default). Its first-order graph holds several tensors of the outputs' size (for
  cross-entropy the log-softmax and its gradient), which for a language model's logits
  ``(B, T, V)`` with a vocabulary of 50,257 are each as large as a whole small model.
- :func:`cross_entropy_output_hessian` and :func:`causal_lm_output_hessian` use the closed form
  of softmax cross-entropy: for a row of logits ``z_r`` with ``p_r = softmax(z_r)``, whatever
  the target (a class index, class probabilities, label smoothing: the targets' weights sum to
  one), ``d^2 CE / dz_r^2 = diag(p_r) - p_r p_r^T``, so

      (H_out U)_r = w_r (p_r * u_r - p_r (p_r . u_r)),

  with ``w_r`` the row's weight in the batch's mean loss. It keeps no graph and computes the
  softmax ``chunk_rows`` rows at a time, so beyond ``U`` and the result it holds one chunk of
  probabilities (Martens 2020, "New insights and perspectives on the natural gradient method",
  JMLR 21, Sec. 9.2, for the matching-loss form of ``H_out``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from flatscope.models.causal_lm import IGNORE_INDEX, REDUCTIONS, row_targets
from flatscope.models.softmax_cross_entropy import DEFAULT_CHUNK_ROWS, softmax_hessian_rows
from flatscope.objective import LossFn

__all__ = [
    "OutputHessian",
    "autograd_output_hessian",
    "causal_lm_output_hessian",
    "cross_entropy_output_hessian",
]

#: ``prepare(outputs, targets) -> apply``, ``apply(U) = H_out U`` for ``U`` ``(k, *outputs.shape)``
OutputHessian = Callable[[torch.Tensor, torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]


def autograd_output_hessian(loss_fn: LossFn) -> OutputHessian:
    """``H_out U`` of ``loss_fn`` by double backward w.r.t. the outputs (any loss)."""

    def prepare(
        outputs: torch.Tensor, targets: torch.Tensor
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        z = outputs.detach().requires_grad_(True)
        with torch.enable_grad():
            (gradient,) = torch.autograd.grad(loss_fn(z, targets), z, create_graph=True)

        def apply(U: torch.Tensor) -> torch.Tensor:
            if not gradient.requires_grad:  # a loss linear in the outputs
                return torch.zeros_like(U)
            columns = []
            for u in U:
                (hu,) = torch.autograd.grad(gradient, z, u, retain_graph=True, allow_unused=True)
                columns.append(torch.zeros_like(u) if hu is None else hu)
            return torch.stack(columns)

        return apply

    return prepare


def _check_chunk(chunk_rows: int) -> None:
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")


def cross_entropy_output_hessian(chunk_rows: int = DEFAULT_CHUNK_ROWS) -> OutputHessian:
    """Closed-form ``H_out U`` of ``torch.nn.functional.cross_entropy`` with its defaults (mean
    reduction, ignore index -100) and any label smoothing: logits ``(B, C)`` or ``(B, C, d1,
    ...)``, each position a row over the classes of axis 1. With class probabilities as targets
    every row weighs ``1 / rows``; with class indices the rows labelled -100 weigh nothing and
    the others ``1 / (rows not ignored)``."""
    _check_chunk(chunk_rows)

    def prepare(
        outputs: torch.Tensor, targets: torch.Tensor
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        if outputs.ndim < 2:
            raise ValueError(
                "the cross-entropy output Hessian needs logits (B, C, ...), got "
                f"{tuple(outputs.shape)}"
            )
        logits = outputs.detach().movedim(1, -1)
        shape = logits.shape
        logits = logits.reshape(-1, shape[-1])
        if targets.is_floating_point():
            kept = torch.ones(logits.shape[0], dtype=logits.dtype, device=logits.device)
        else:
            kept = (targets.reshape(-1) != IGNORE_INDEX).to(logits.dtype)
        weights = kept / kept.sum()

        def apply(U: torch.Tensor) -> torch.Tensor:
            rows = U.movedim(2, -1).reshape(U.shape[0], -1, shape[-1])
            out = softmax_hessian_rows(logits, weights, rows, chunk_rows)
            return out.view(U.shape[0], *shape).movedim(-1, 2)

        return apply

    return prepare


def causal_lm_output_hessian(
    reduction: str = "token", chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> OutputHessian:
    """Closed-form ``H_out U`` of the causal-LM loss (:mod:`flatscope.models.causal_lm`):
    logits ``(B, T, V)``, position ``t < T - 1`` predicts ``labels[:, t + 1]`` unless it is
    padding (-100). Its weight is ``1 / (number of predicted tokens in the batch)`` with
    ``reduction="token"``, ``1 / (B |P_b|)`` with ``"sequence"``; the last position and the
    padded ones carry no loss and get zero rows."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    _check_chunk(chunk_rows)

    def prepare(
        outputs: torch.Tensor, labels: torch.Tensor
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        if outputs.ndim != 3 or labels.shape != outputs.shape[:2]:
            raise ValueError(
                "the causal-LM output Hessian needs logits (B, T, V) and labels (B, T), got "
                f"{tuple(outputs.shape)} and {tuple(labels.shape)}"
            )
        vocabulary = outputs.shape[-1]
        weights = row_targets(labels, reduction, outputs.dtype).weights
        logits = outputs.detach().reshape(-1, vocabulary)

        def apply(U: torch.Tensor) -> torch.Tensor:
            rows = U.reshape(U.shape[0], -1, vocabulary)
            return softmax_hessian_rows(logits, weights, rows, chunk_rows).view(U.shape)

        return apply

    return prepare
