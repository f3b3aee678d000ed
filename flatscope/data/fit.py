"""Does a model fit its data? One forward pass on one sample, before any work.

Class-index labels must index the model's outputs: cross-entropy and the one-hot targets of the
squared error need ``0 <= y < C`` for outputs of shape ``(B, C)``, and otherwise fail deep inside
PyTorch (``Target 99 is out of bounds``). :func:`check_model_fits` says instead which labels
they were (``origin``: the checkpoint's training labels, a data spec, a factory) and how many
classes the model has.
"""

from __future__ import annotations

import torch
from torch import nn

from flatscope.data.datasets import DataBundle
from flatscope.data.errors import DataError

__all__ = ["check_labels", "check_model_fits", "output_shape"]


def output_shape(model: nn.Module, bundle: DataBundle, model_name: str) -> tuple[int, ...]:
    """The shape of the model's output for one sample (batch dimension dropped), computed in
    eval mode without gradients; the model's mode is restored.

    Raises:
        DataError: the forward pass fails on the data's inputs.
    """
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    inputs = torch.as_tensor(bundle.dataset[0][0]).unsqueeze(0).to(device)
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            outputs = model(inputs)
    except (RuntimeError, TypeError, ValueError, IndexError) as error:
        raise DataError(
            f"model {model_name} does not fit data {bundle.spec!r} (inputs of shape "
            f"{tuple(inputs.shape[1:])}): {str(error).splitlines()[0] if str(error) else error!r}"
        ) from None
    finally:
        model.train(training)
    return tuple(outputs.shape[1:]) if isinstance(outputs, torch.Tensor) else ()


def check_labels(
    bundle: DataBundle, output_shape: tuple[int, ...], *, model_name: str, origin: str
) -> None:
    """Check that integer class labels index outputs of shape ``(C,)`` per sample.

    Raises:
        DataError: a label lies outside ``0..C-1`` (the message names ``origin``).
    """
    labels = bundle.labels
    if len(output_shape) != 1 or labels.is_floating_point() or labels.ndim != 1:
        return
    classes = output_shape[0]
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= classes:
        raise DataError(
            f"the labels of {origin} run from {low} to {high}, but model {model_name} has "
            f"{classes} output classes (labels 0..{classes - 1}); use a model with "
            f"num_classes={high + 1} or data with {classes} classes"
        )


def check_model_fits(
    model: nn.Module, bundle: DataBundle, *, model_name: str, origin: str
) -> tuple[int, ...]:
    """Check that ``model`` runs on the data and that integer labels index its output classes;
    return the output shape of one sample.

    Args:
        model_name: how messages name the model (its spec).
        origin: where the labels came from, for messages (``"the training labels stored in
            run/final.pt"``, ``"data 'synthetic:classes=100'"``).

    Raises:
        DataError: the forward pass fails, or a label lies outside ``0..C-1``.
    """
    shape = output_shape(model, bundle, model_name)
    check_labels(bundle, shape, model_name=model_name, origin=origin)
    return shape
