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

import torch
import torch.nn.functional as F

from flatscope.models.specs import SpecError

__all__ = ["IGNORE_INDEX", "REDUCTIONS", "causal_lm"]

IGNORE_INDEX = -100
REDUCTIONS = ("token", "sequence")


def _token_losses(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token losses ``l_{b,t}`` (zero where ignored) and the mask of predicted tokens,
    both of shape ``(B, T - 1)``."""
    if logits.ndim != 3 or labels.shape != logits.shape[:2]:
        raise ValueError(
            f"loss 'causal_lm' needs logits of shape (B, T, V) and labels (B, T), got logits "
            f"{tuple(logits.shape)} and labels {tuple(labels.shape)}"
        )
    if labels.is_floating_point():
        raise ValueError("loss 'causal_lm' needs integer token ids as labels, got floats")
    predicting, predicted = logits[:, :-1, :], labels[:, 1:]
    losses = F.cross_entropy(
        predicting.reshape(-1, logits.shape[-1]),
        predicted.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    ).view(predicted.shape)
    return losses, predicted != IGNORE_INDEX


def causal_lm(*, reduction: str = "token") -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Shifted next-token cross-entropy, padding (label -100) masked; mean as ``reduction``
    says (see the module docstring)."""
    if reduction not in REDUCTIONS:
        raise SpecError(
            f"loss 'causal_lm': reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}"
        )

    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        losses, mask = _token_losses(logits, labels)
        counts = mask.sum(dim=1)
        if not bool((counts > 0).all()):
            raise ValueError(
                "loss 'causal_lm': a sequence has no token to predict (fewer than two "
                "non-padding tokens); drop such sequences from the data"
            )
        if reduction == "token":
            return losses.sum() / counts.sum()
        return (losses.sum(dim=1) / counts).mean()

    return loss
