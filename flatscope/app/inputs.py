"""From a checkpoint file to what an analysis needs: the model with its weights, data, loss.

:func:`load_checkpoint_inputs` is the one path every command that analyses a checkpoint takes
(analyze, verify, trajectory, landscape). A checkpoint written by ``flatscope train`` names its
model, data and loss and carries the (possibly noisy) training labels it was trained on: without
``data`` the training split is analysed with those labels and, without ``loss``, with that loss,
so the Hessian is the one of the objective that was minimised.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from torch import nn

from flatscope.data.datasets import DATASETS, DataBundle, LabelNoise, load_data
from flatscope.data.fit import check_model_fits
from flatscope.errors import CheckpointError, FlatscopeError
from flatscope.io.checkpoint import LoadedCheckpoint, apply_state_dict, load_checkpoint
from flatscope.models.losses import LOSSES, loss_spec
from flatscope.models.zoo import MODELS, build_model, model_spec

__all__ = [
    "DEFAULT_SUBSET",
    "CheckpointInputs",
    "check_checkpoint_inputs",
    "load_checkpoint_inputs",
    "model_from_checkpoint",
]

#: Samples analysed by default: a fixed seeded subset of the split when it is larger.
DEFAULT_SUBSET = 256


@dataclass
class CheckpointInputs:
    """What an analysis of one checkpoint needs.

    Attributes:
        checkpoint: the file as read.
        model: the model with the checkpoint's weights.
        model_spec: how the report names the model.
        data: the analysed data (split, labels and subset applied).
        loss: the loss spec.
    """

    checkpoint: LoadedCheckpoint
    model: nn.Module
    model_spec: str
    data: DataBundle
    loss: str


def model_from_checkpoint(
    checkpoint: LoadedCheckpoint, spec: str | None = None, *, trust_remote_code: bool = False
) -> tuple[nn.Module, str]:
    """The model with the checkpoint's weights, and the spec a report records for it.

    ``spec`` (the user's) wins over the checkpoint's own; a pickled module read with
    ``unsafe_pickle`` is used as it is. ``trust_remote_code`` lets ``hf:FOLDER`` run the code
    shipped in the folder (see :func:`flatscope.models.zoo.build_model`).

    Raises:
        CheckpointError: no spec and no module (or a TorchScript archive, which flatscope
            cannot differentiate); weights that do not fit the model.
    """
    spec = spec or checkpoint.model_spec
    if spec is None:
        module = checkpoint.module
        if module is not None and checkpoint.layout == "pickled-module":
            return module, f"pickled {type(module).__module__}.{type(module).__qualname__}"
        need = (
            "a TorchScript archive cannot be differentiated by flatscope"
            if checkpoint.layout == "torchscript"
            else "it does not say which model it holds"
        )
        raise CheckpointError(
            f"{checkpoint.path}: {need}; pass --model NAME[:k=v,...] (mlp, cnn, resnet18, "
            "resnet34, linear, hf:FOLDER) or --model module:factory to rebuild the model"
        )
    model = build_model(spec, trust_remote_code=trust_remote_code)
    apply_state_dict(model, checkpoint.state_dict)
    return model, model_spec(spec)


def _subset_size(subset: int | str | None, split_size: int) -> int | None:
    """The subset size to draw, or None for the whole split."""
    if subset is None:
        return DEFAULT_SUBSET if split_size > DEFAULT_SUBSET else None
    if subset == "all":
        return None
    try:
        return int(subset)
    except (TypeError, ValueError):
        message = f"--subset must be a number of samples or all, got {subset!r}"
        raise FlatscopeError(message) from None


def load_checkpoint_inputs(
    path: str | os.PathLike,
    *,
    model: str | None = None,
    data: str | None = None,
    split: str = "train",
    subset: int | str | None = None,
    batch_size: int | None = None,
    loss: str | None = None,
    seed: int = 0,
    checkpoint_key: str | None = None,
    unsafe_pickle: bool = False,
    trust_specs: bool = False,
    trust_remote_code: bool = False,
) -> CheckpointInputs:
    """Read a checkpoint and build its model, data and loss (see the module docs).

    The checkpoint's own specs resolve to registry names only unless ``trust_specs`` (see
    :class:`flatscope.models.specs.FileSpec`); the loss is resolved and the labels are checked
    against the model's classes before any work.

    Args:
        path: the checkpoint file (or a ``save_pretrained`` folder).
        model, data, loss: specs that replace the checkpoint's own (``data`` defaults to the
            checkpoint's data, else ``digits``; ``loss`` to the trained loss, else
            ``cross_entropy``).
        split: the split analysed.
        subset: samples analysed: a number, ``"all"``, or ``None`` for :data:`DEFAULT_SUBSET`
            (the whole split when it is smaller), drawn with ``seed``.
        batch_size: the batch size of the data passes (default 128).
        seed: seeds the subset.
        checkpoint_key, unsafe_pickle, trust_specs: as for :func:`flatscope.io.load_checkpoint`.
        trust_remote_code: let ``model`` ``hf:FOLDER`` run the folder's own code (never a spec).

    Raises:
        FlatscopeError: the checkpoint, a spec or the data cannot be used (one line).
    """
    checkpoint = load_checkpoint(
        path, key=checkpoint_key, unsafe_pickle=unsafe_pickle, trust_specs=trust_specs
    )
    network, spec = model_from_checkpoint(checkpoint, model, trust_remote_code=trust_remote_code)
    extra: dict[str, Any] = checkpoint.metadata.get("extra") or {}
    own_data = data is None and checkpoint.data_spec is not None
    labels = extra.get("train_labels") if own_data and split == "train" else None
    bundle = load_data(
        data or checkpoint.data_spec or "digits",
        split,
        seed=seed,
        batch_size=batch_size,
        labels=labels,
    )
    if labels is not None and extra.get("label_noise"):  # the noise that made those labels
        bundle = dataclasses.replace(bundle, label_noise=LabelNoise.parse(extra["label_noise"]))
    size = _subset_size(subset, len(bundle))
    bundle = bundle if size is None else bundle.subset(size)
    origin = f"data {bundle.spec!r}" if labels is None else f"the training labels of {path}"
    check_model_fits(network, bundle, model_name=repr(spec), origin=origin)
    trained_loss = loss or checkpoint.loss_spec or "cross_entropy"
    loss_spec(trained_loss)  # resolved, not called: a bad loss fails before any work
    return CheckpointInputs(checkpoint, network, spec, bundle, trained_loss)


def check_checkpoint_inputs(
    path: str | os.PathLike,
    *,
    model: str | None = None,
    data: str | None = None,
    loss: str | None = None,
    checkpoint_key: str | None = None,
    unsafe_pickle: bool = False,
    trust_specs: bool = False,
    **_: Any,
) -> None:
    """Read a checkpoint and resolve, without building anything, the model, data and loss specs
    that :func:`load_checkpoint_inputs` would build for it (the same keywords), so that a bad
    checkpoint fails before any work (``trajectory`` checks every checkpoint of a run first).

    Raises:
        FlatscopeError: as :func:`load_checkpoint_inputs` for the checkpoint and its specs.
    """
    checkpoint = load_checkpoint(
        path, key=checkpoint_key, unsafe_pickle=unsafe_pickle, trust_specs=trust_specs
    )
    if model is None and checkpoint.model_spec is None:
        model_from_checkpoint(checkpoint)  # a pickled module, else the one-line error
    for registry, spec in (
        (MODELS, model or checkpoint.model_spec),
        (DATASETS, data or checkpoint.data_spec),
        (LOSSES, loss or checkpoint.loss_spec),
    ):
        if spec is not None:
            registry.resolve(spec)
