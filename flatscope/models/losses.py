"""Loss functions from specs: ``cross_entropy``, ``mse`` or ``package.module:callable``.

A loss is called as ``loss_fn(outputs, targets)`` and returns the mean loss of the batch, the
convention of :class:`~flatscope.operators.hessian.HessianOperator`.

Built-in losses (see :mod:`flatscope.models.specs` for the spec syntax):

``cross_entropy[:label_smoothing=0.0]``
    ``torch.nn.functional.cross_entropy`` of logits ``(B, C)`` against class indices ``(B,)`` or
    class probabilities ``(B, C)``, averaged over the batch.
``mse``
    the squared error averaged over every element, as ``torch.nn.MSELoss()``:
    ``(1 / (B C)) sum_{b, c} (outputs_bc - t_bc)^2``. Class-index targets ``(B,)`` against
    outputs ``(B, C)`` become one-hot rows ``t_b = e_{y_b}`` first. It is written with plain
    tensor operations because ``mse_loss``'s backward lacks a working forward-mode rule in some
    PyTorch versions, which forward-over-reverse Hessian products need.

``causal_lm[:reduction=token]``
    next-token cross-entropy of a language model's logits ``(B, T, V)`` against its input ids
    ``(B, T)``, shifted by one position, labels -100 (padding) ignored; the mean over the
    batch's predicted tokens (``reduction=sequence``: the mean over sequences of their
    per-token means). See :mod:`flatscope.models.causal_lm` for the exact definition.

``module:callable[:key=value,...]`` (or ``package.module:...``, ``path/file.py:...``)
    a class (``torch.nn:CrossEntropyLoss``) or a spec with values is *called* with those values
    and must return the loss function; any other callable (``torch.nn.functional:huber_loss``,
    ``mypkg.losses:focal``) *is* the loss function.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
import torch.nn.functional as F

from flatscope.models.causal_lm import causal_lm
from flatscope.models.specs import Registry, SpecError

__all__ = ["LOSSES", "LossFn", "build_loss", "loss_spec", "cross_entropy", "mse", "causal_lm"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

LOSSES = Registry("loss")


@LOSSES.register("cross_entropy")
def cross_entropy(*, label_smoothing: float = 0.0) -> LossFn:
    """Mean cross-entropy of logits against class indices or probabilities."""
    if not 0.0 <= label_smoothing < 1.0:
        raise SpecError(
            f"loss 'cross_entropy': label_smoothing must lie in [0, 1), got {label_smoothing}"
        )

    def loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, targets, label_smoothing=label_smoothing)

    return loss


def _mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if not targets.is_floating_point() and targets.shape == outputs.shape[:-1]:
        targets = F.one_hot(targets.long(), outputs.shape[-1])
    if targets.shape != outputs.shape:
        raise ValueError(
            f"loss 'mse': targets of shape {tuple(targets.shape)} do not match outputs of shape "
            f"{tuple(outputs.shape)} (class indices need outputs of shape (B, C))"
        )
    return (outputs - targets.to(outputs.dtype)).square().mean()


@LOSSES.register("mse")
def mse() -> LossFn:
    """Mean squared error over all elements; class indices become one-hot targets."""
    return _mse


LOSSES.register("causal_lm")(causal_lm)


def build_loss(spec: str) -> LossFn:
    """The loss function a spec names (see the module docstring).

    Raises:
        SpecError: unknown name, an import that fails, bad values, or a factory that does not
            return a callable.
    """
    parsed = LOSSES.parse(spec)
    if parsed.is_import and not parsed.args and not parsed.kwargs:
        target = LOSSES.resolve(parsed)
        if not inspect.isclass(target):
            return target
    loss = LOSSES.build(parsed)
    if not callable(loss):
        raise SpecError(
            f"loss spec {spec!r} built a {type(loss).__name__}, not a callable "
            "loss_fn(outputs, targets)"
        )
    return loss


def loss_spec(spec: str) -> str:
    """The canonical form of a loss spec (defaults written out), as reports record it."""
    parsed = LOSSES.parse(spec)
    if parsed.is_import and not parsed.args and not parsed.kwargs:
        return parsed.name
    return LOSSES.canonical(parsed)
