"""The causal language-model loss: shifted next-token cross-entropy with padding masked.

A batch is ``(input_ids, labels)``, both of shape ``(B, T)``: ``labels`` holds the same token
ids as ``input_ids`` where a token is real and :data:`IGNORE_INDEX` (-100, PyTorch's and Hugging
Face's ignore index) at padding, unshifted, as Hugging Face's ``labels=`` argument. The model
returns logits ``z`` of shape ``(B, T, V)``; position ``t`` predicts token ``t + 1``, so the
predicted tokens of row ``b`` are

    P_b = {t in 1..T-1 : labels[b, t] != -100},   l_{b,t} = -log softmax(z[b, t-1])[labels[b, t]].

``reduction`` says what the mean of a batch is over:

``token`` (the default, Hugging Face's convention)
    ``sum_b sum_{t in P_b} l_{b,t} / sum_b |P_b|``: the mean over the batch's predicted tokens.
``sequence``
    ``(1 / B) sum_b (1 / |P_b|) sum_{t in P_b} l_{b,t}``: each sequence's mean, averaged over
    the batch's sequences.

:class:`~flatscope.operators.hessian.HessianOperator` weights each batch's loss by its number
of sequences ``B`` (rows of ``labels``), so over the whole data the objective is, with ``token``,
the mean over all predicted tokens whenever every batch has the same number of predicted tokens
per sequence (no padding, e.g. fixed-length windows of a text), and otherwise a mean of batch
token-means weighted by sequence counts, which depends on the batching; with ``sequence`` it is
exactly the mean over all sequences of their per-token means, for any batching.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

from flatscope.models.softmax_cross_entropy import softmax_cross_entropy
from flatscope.models.specs import SpecError

__all__ = ["IGNORE_INDEX", "REDUCTIONS", "RowTargets", "causal_lm", "row_targets"]

IGNORE_INDEX = -100
REDUCTIONS = ("token", "sequence")


class RowTargets(NamedTuple):
    """Per-row targets ``(R,)`` and weights ``(R,)`` of a loss over rows of logits."""

    targets: torch.Tensor
    weights: torch.Tensor


def _check(logits: torch.Tensor, labels: torch.Tensor) -> None:
    if logits.ndim != 3 or labels.shape != logits.shape[:2]:
        raise ValueError(
            f"loss 'causal_lm' needs logits of shape (B, T, V) and labels (B, T), got logits "
            f"{tuple(logits.shape)} and labels {tuple(labels.shape)}"
        )
    if labels.is_floating_point():
        raise ValueError("loss 'causal_lm' needs integer token ids as labels, got floats")


def row_targets(labels: torch.Tensor, reduction: str, dtype: torch.dtype) -> RowTargets:
    """The loss of logits ``(B, T, V)`` as rows ``(B T, V)`` of their own layout (no shifted
    copy): row ``b T + t`` has target ``labels[b, t + 1]`` and weight ``1 / sum_b |P_b|``
    (``token``) or ``1 / (B |P_b|)`` (``sequence``); the last position of every sequence and the
    padding have target -100 and weight 0. The batch's loss is ``sum_r w_r CE(z_r, t_r)``."""
    predicted = labels[:, 1:]
    mask = predicted != IGNORE_INDEX
    counts = mask.sum(dim=1, keepdim=True)
    if not bool((counts > 0).all()):
        raise ValueError(
            "loss 'causal_lm': a sequence has no token to predict (fewer than two "
            "non-padding tokens); drop such sequences from the data"
        )
    total = counts.sum() if reduction == "token" else counts * labels.shape[0]
    weights = mask.to(dtype) / total
    pad = labels.new_full((labels.shape[0], 1), IGNORE_INDEX)
    targets = torch.cat([predicted, pad], dim=1).reshape(-1)
    return RowTargets(targets, torch.cat([weights, weights.new_zeros(pad.shape)], 1).reshape(-1))


def causal_lm(
    *, reduction: str = "token", lean: bool = False
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Shifted next-token cross-entropy, padding (label -100) masked; mean as ``reduction``
    says (see the module docstring). ``lean=True`` computes the same loss with
    :func:`~flatscope.models.softmax_cross_entropy.softmax_cross_entropy`, whose first and
    second derivatives keep no vocabulary-sized intermediate beyond the logits, the gradient
    and one product (for Hessian-vector products of language models with large
    vocabularies)."""
    if reduction not in REDUCTIONS:
        raise SpecError(
            f"loss 'causal_lm': reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}"
        )

    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _check(logits, labels)
        rows = row_targets(labels, reduction, logits.dtype)
        flat = logits.reshape(-1, logits.shape[-1])
        if lean:
            return softmax_cross_entropy(flat, rows.targets, rows.weights)
        losses = F.cross_entropy(flat, rows.targets, ignore_index=IGNORE_INDEX, reduction="none")
        return (losses * rows.weights).sum()

    return loss
