"""The reference training loop: fSGLD and its baselines, metrics, checkpoints, exact resume.

:func:`train` trains one model on one dataset with one optimizer, as described by a
:class:`TrainConfig`, and writes a run directory::

    RUN_DIR/config.json               the configuration and the canonical model/data specs
    RUN_DIR/metrics.jsonl             one JSON object per epoch (see below)
    RUN_DIR/checkpoints/epoch_NNNN.pt every ``checkpoint_every`` epochs (not the last one)
    RUN_DIR/final.pt                  after the last epoch

Optimizers (``optimizer=``) and their hyper-parameters come from
:data:`flatscope.optim.registry.OPTIMIZERS`: ``sgd``, ``sam``, ``fsgld`` (the gradient at
weights perturbed by ``N(0, sigma^2 I)``, Bruno et al., arXiv:2510.02174, 2025; ``sigma=None``
couples ``sigma = beta_inv^((1+eta)/4)``) and ``sgld``.

Every step goes through the closure interface: the closure zeroes the gradients, runs the
forward pass, computes the loss and calls ``backward()``; weight decay and noise belong to the
optimizer. fSGLD calls it once per step (its cost stays one SGD step), SAM twice.

BatchNorm statistics (``batchnorm=``): fSGLD's forward passes run at perturbed weights and SAM's
second pass at the ascent point, so the running statistics they leave describe other weights
than the ones kept. With ``"recompute"`` (the default) they are measured again at the trained
weights after every epoch, before the evaluation, flatness tracking and checkpoint (one forward
pass over the training data, :func:`flatscope.training.batchnorm.recompute_batchnorm`): the
network that is evaluated and analysed is then the one at its own weights for every optimizer,
which is what comparing optimizers needs. ``"running"`` keeps what the steps left, as the
reference implementation of fSGLD does. Training itself normalizes with batch statistics either
way, so the choice changes no training step.

Each line of ``metrics.jsonl`` holds ``epoch`` (epochs completed), ``lr``, ``train_loss`` and
``train_acc`` (running means over the epoch's minibatches, on the labels trained on, i.e. the
noisy ones, as the optimizer saw them: for fSGLD at the perturbed weights), ``val_acc`` and
``test_acc`` (accuracy on the clean labels of the validation and test splits, ``null`` when the
data has no such split), ``seconds`` (wall time of the epoch's training steps only) and, on
epochs with flatness tracking, ``hessian_trace``, ``hessian_trace_stderr`` (Hutch++, Meyer et
al. 2021) and ``top_eigenvalue`` (Lanczos, residual at most 1e-2 of it) of the Hessian of the
training loss on a fixed subset of the training set (``flatness_subset`` samples, noisy labels,
eval mode).

Reproducibility: the initial weights, the optimizer's noise, the data order and the label noise
come from separate random streams derived from ``seed``; the data order of an epoch depends only
on ``(seed, epoch)``. A checkpoint carries the weights, the optimizer state (its generator
included), the global torch generator's state (used by user models with dropout; the loop runs
inside ``torch.random.fork_rng`` so the caller's state is untouched) and the epoch, so a run
resumed from it reproduces an uninterrupted run bit for bit on the CPU.

Checkpoints are :func:`flatscope.io.save_checkpoint` files with the canonical ``model_spec``
and ``data_spec``; their ``extra`` holds ``epoch``, ``config``, ``loss`` (canonical loss spec),
``label_noise`` (canonical spec, seed included, or ``None``), ``train_labels`` (the noisy
labels of the whole training split, or ``None`` without label noise), ``data_seed`` and the
generator states. ``flatscope analyze`` rebuilds the model from them without ``--model``.

Data parallel (``torchrun --nproc_per_node N -m flatscope train``): under an initialised
process group the model trains wrapped in :class:`~torch.nn.parallel.DistributedDataParallel`.
Every rank draws the same global batch order and takes its contiguous slice of each global
batch, so the slices of a step partition the single-process batch. A rank's mean loss is scaled
by ``world * n_rank / n_batch``, so DDP's average of the gradients is the gradient of the mean
loss over the whole global batch even when the slices are uneven. SAM's two backward passes are
both all-reduced by DDP. The optimizers get the same seed on every rank, so fSGLD's
perturbations, the Langevin noise and SAM's ascent agree and the parameters stay identical.
Training metrics are summed over ranks; flatness tracking runs on every rank with sharded data;
rank 0 alone evaluates, writes the run directory and draws progress, the others wait for it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from flatscope.data.datasets import DataBundle, DataError, LabelNoise, load_data
from flatscope.data.fit import check_labels, output_shape
from flatscope.errors import FlatscopeError
from flatscope.io import (
    LoadedCheckpoint,
    apply_state_dict,
    atomic_write,
    load_checkpoint,
    save_checkpoint,
)
from flatscope.io.lock import output_lock
from flatscope.io.run_folder import (
    CONFIG_FILE,
    FINAL_CHECKPOINT,
    METRICS_FILE,
    append_record,
    checkpoint_path,
    read_records,
    run_checkpoints,
    write_records,
)
from flatscope.linalg import eigenvalues, trace
from flatscope.models.losses import LossFn, build_loss, loss_spec
from flatscope.models.specs import SpecError
from flatscope.models.zoo import build_model, model_spec
from flatscope.operators import HessianOperator
from flatscope.operators.distributed import (
    all_reduce_sum,
    barrier,
    get_rank,
    get_world_size,
    is_distributed,
)
from flatscope.optim.registry import (
    OPTIMIZERS,
    HyperparameterError,
    all_hyperparameters,
    optimizer_entry,
)
from flatscope.progress import Progress
from flatscope.training.batchnorm import recompute_batchnorm
from flatscope.training.schedules import Schedule, build_schedule

__all__ = [
    "BATCHNORM_MODES",
    "TrainConfig",
    "TrainingError",
    "RunResult",
    "config_changes",
    "train",
    "make_optimizer",
]

#: How BatchNorm running statistics are kept (see the module docs).
BATCHNORM_MODES = ("recompute", "running")
EVAL_BATCH_SIZE = 1024
# Lanczos stops at residuals below this fraction of |lambda_max| when tracking flatness.
FLATNESS_EIG_TOL = 1e-2
# Random streams derived from the seed (the data module uses 1-3 for noise, subsets, order).
_INIT_STREAM, _OPTIMIZER_STREAM, _GLOBAL_STREAM, _FLATNESS_STREAM = 11, 12, 13, 14


class TrainingError(FlatscopeError, ValueError):
    """A training configuration that cannot run, or a run that cannot continue."""


def _setting(default: Any, help: str, **metadata: Any) -> Any:
    return field(default=default, metadata={"help": help, **metadata})


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (see the module docs for the meanings).

    ``model``, ``data``, ``label_noise``, ``loss`` and ``schedule`` are specs (``cnn:width=8``,
    ``digits``, ``symmetric:0.4``, ``cross_entropy``, ``multistep:30,60``). ``hyperparameters``
    are the optimizer's (:mod:`flatscope.optim.registry`): its dataclass, a mapping of its
    fields, or ``None`` for its defaults. :meth:`create` takes everything as flat keywords.
    """

    optimizer: str = _setting("fsgld", "the optimizer", choices=tuple(OPTIMIZERS))
    model: str = _setting("cnn", "model spec", metavar="SPEC")
    data: str = _setting("digits", "data spec", metavar="SPEC")
    label_noise: str | None = _setting(
        None, "label noise on the training labels, e.g. symmetric:0.4, asymmetric:0.2",
        metavar="SPEC",
    )  # fmt: skip
    loss: str = _setting("cross_entropy", "loss spec", metavar="SPEC")
    epochs: int = _setting(10, "epochs", minimum=1)
    batch_size: int = _setting(128, "batch size", minimum=1)
    schedule: str = _setting(
        "constant", "learning-rate schedule: constant, cosine[:min_factor=F] or "
        "multistep:M1,M2[,gamma=G]", metavar="SPEC",
    )  # fmt: skip
    seed: int = _setting(
        0, "seeds the weights, the data order, the label noise, the noise", minimum=0
    )
    device: str = _setting("cpu", "cpu or cuda[:N]", metavar="DEVICE")
    checkpoint_every: int | None = _setting(
        None, "keep a checkpoint every N epochs (the last one always)", minimum=1
    )
    track_flatness: int | None = _setting(
        None, "Hessian trace and top eigenvalue on a training subset every N epochs", minimum=1
    )
    flatness_subset: int = _setting(256, "training samples of flatness tracking", minimum=1)
    flatness_matvecs: int = _setting(30, "Hutch++ products of flatness tracking", minimum=3)
    batchnorm: str = _setting(
        "recompute", "BatchNorm statistics for evaluation and checkpoints: recompute them at "
        "the trained weights (one pass over the training data) or keep the running ones the "
        "steps left (fSGLD's and SAM's at perturbed weights)", choices=BATCHNORM_MODES,
    )  # fmt: skip
    hyperparameters: Any = None

    def __post_init__(self) -> None:
        try:
            entry = optimizer_entry(self.optimizer)
            hyper = self.hyperparameters
            if hyper is None or isinstance(hyper, Mapping):
                hyper = entry.hyper(hyper)
            elif type(hyper) is not entry.hyperparameters:
                raise HyperparameterError(
                    f"optimizer {self.optimizer} takes {entry.hyperparameters.__name__}, "
                    f"got {type(hyper).__name__}"
                )
        except HyperparameterError as error:
            raise TrainingError(str(error)) from None
        object.__setattr__(self, "hyperparameters", hyper)
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if "minimum" in item.metadata and (value is not None or "None" not in item.type):
                _check_int(item.name, value, item.metadata["minimum"])
            choices = item.metadata.get("choices")
            if choices and value not in choices:
                raise TrainingError(
                    f"unknown {item.name} {value!r}; choose one of {', '.join(choices)}"
                )
        try:
            if self.label_noise is not None:
                LabelNoise.parse(self.label_noise)
            build_schedule(self.schedule)
            build_loss(self.loss)
            model_spec(self.model)
        except SpecError as error:
            raise TrainingError(str(error)) from None

    @property
    def lr(self) -> float:
        """The base learning rate (a hyper-parameter of every optimizer)."""
        return self.hyperparameters.lr

    @classmethod
    def create(cls, **settings: Any) -> TrainConfig:
        """A configuration from flat keywords: the run's fields and the optimizer's
        hyper-parameters side by side (``TrainConfig.create(optimizer="sam", rho=0.1)``).

        Raises:
            TrainingError: a keyword that is neither, or a hyper-parameter the optimizer does
                not take.
        """
        own = {item.name for item in dataclasses.fields(cls)} - {"hyperparameters"}
        hyper = {key: value for key, value in settings.items() if key not in own}
        return cls(**{key: settings[key] for key in own & set(settings)}, hyperparameters=hyper)

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> TrainConfig:
        """The configuration :meth:`to_dict` wrote (``config.json``). Hyper-parameters of
        other optimizers, which runs of earlier versions recorded too, are ignored.

        Raises:
            TrainingError: the document does not describe a configuration.
        """
        if not isinstance(document, Mapping):
            raise TrainingError(f"a run configuration is a JSON object, got {document!r:.60}")
        # runs that predate the choice kept the running statistics
        settings = {"batchnorm": "running", **document}
        known = {item.name for item in dataclasses.fields(cls)} | set(all_hyperparameters())
        unknown = sorted(set(settings) - known)
        if unknown:
            raise TrainingError(f"not a run configuration: unknown fields {', '.join(unknown)}")
        entry = OPTIMIZERS.get(settings.get("optimizer", cls.optimizer))
        if entry is not None:
            taken = {item.name for item in dataclasses.fields(entry.hyperparameters)}
            foreign = set(all_hyperparameters()) - taken
            settings = {key: value for key, value in settings.items() if key not in foreign}
        return cls.create(**settings)

    def to_dict(self) -> dict[str, Any]:
        """The run's fields and the optimizer's hyper-parameters, flat, as plain JSON values."""
        own = {  # a spec read from a file (a str subclass) is written as the plain string
            item.name: str(value) if isinstance(value, str) else value
            for item in dataclasses.fields(self)
            if item.name != "hyperparameters"
            for value in [getattr(self, item.name)]
        }
        return {**own, **dataclasses.asdict(self.hyperparameters)}


def _check_int(name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise TrainingError(f"{name} must be an integer >= {minimum}, got {value!r}")


@dataclass
class RunResult:
    """A finished run: its directory, configuration, trained model and per-epoch metrics."""

    out_dir: Path
    config: TrainConfig
    model: nn.Module
    metrics: list[dict[str, Any]] = field(default_factory=list)

    @property
    def checkpoint(self) -> Path:
        """The final checkpoint, ``RUN_DIR/final.pt``."""
        return self.out_dir / FINAL_CHECKPOINT


def derived_seed(seed: int, stream: int) -> int:
    """An independent 63-bit seed for random stream ``stream`` of ``seed`` (SeedSequence)."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1, np.uint64)[0] >> 1)


def make_optimizer(config: TrainConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """The optimizer ``config.optimizer`` names, with the config's hyper-parameters and its own
    random stream (:data:`flatscope.optim.registry.OPTIMIZERS`)."""
    entry = optimizer_entry(config.optimizer)
    return entry.build(params, config.hyperparameters, derived_seed(config.seed, _OPTIMIZER_STREAM))


# ------------------------------------------------------------------------------ the setup


@dataclass
class _Setup:
    model: nn.Module
    # What the training steps call: ``model`` itself, or its DDP wrapper under a process group.
    forward: nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: LossFn
    schedule: Schedule
    train: DataBundle
    evaluation: dict[str, list[tuple[torch.Tensor, torch.Tensor]] | None]
    flatness_batches: list[tuple[torch.Tensor, torch.Tensor]] | None
    device: torch.device


def _device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise TrainingError(f"unknown device {name!r}: {error}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device 'cuda' requested but no CUDA GPU is available; use cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise TrainingError(
            f"device {name!r}: there are only {torch.cuda.device_count()} cuda devices"
        )
    return device


def _clean_batches(bundle: DataBundle) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The bundle's inputs in fixed batches with its clean labels (the labels if clean)."""
    clean = bundle.labels if bundle.clean_labels is None else bundle.clean_labels
    batches, start = [], 0
    for inputs, _ in bundle.loader(shuffle=False, batch_size=EVAL_BATCH_SIZE):
        batches.append((inputs, clean[start : start + len(inputs)]))
        start += len(inputs)
    return batches


def _optional_split(config: TrainConfig, split: str) -> DataBundle | None:
    """A split the data may lack (CIFAR-10 without ``val=``, a factory without ``split``)."""
    try:
        return load_data(config.data, split, seed=config.seed)
    except DataError:
        return None


def _check_fit(model: nn.Module, train: DataBundle, config: TrainConfig) -> None:
    try:
        shape = output_shape(model, train, repr(config.model))
        classes = train.num_classes
        if classes is not None and shape != (classes,):
            raise TrainingError(
                f"model {config.model!r} gives outputs of shape {shape} but data "
                f"{config.data!r} has {classes} classes; set the model's num_classes={classes}"
            )
        if train.labels_in_memory:  # a factory's tensors: no class count, labels at hand
            check_labels(
                train, shape, model_name=repr(config.model), origin=f"data {config.data!r}"
            )
    except DataError as error:
        raise TrainingError(str(error)) from None


def _setup(config: TrainConfig) -> _Setup:
    device = _device(config.device)
    try:
        train = load_data(
            config.data,
            "train",
            seed=config.seed,
            batch_size=config.batch_size,
            label_noise=config.label_noise,
        )
        model = build_model(config.model, seed=derived_seed(config.seed, _INIT_STREAM))
    except (SpecError, DataError) as error:
        raise TrainingError(str(error)) from None
    _check_fit(model, train, config)
    model.to(device)
    evaluation = {}
    for split in ("val", "test"):
        bundle = _optional_split(config, split)
        evaluation[split] = None if bundle is None else _clean_batches(bundle)
    flatness = None
    if config.track_flatness is not None:
        size = min(config.flatness_subset, len(train))
        shards = (_local_slice(batch) for batch in train.subset(size).batches())
        flatness = [(inputs, targets) for inputs, targets in shards if len(targets)]
    forward = model
    if is_distributed():
        ids = None if device.type == "cpu" else [device]
        forward = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    return _Setup(
        model=model,
        forward=forward,
        optimizer=make_optimizer(config, list(model.parameters())),
        loss_fn=build_loss(config.loss),
        schedule=build_schedule(config.schedule),
        train=train,
        evaluation=evaluation,
        flatness_batches=flatness,
        device=device,
    )


# ------------------------------------------------------------------------------ one epoch


def _local_slice(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's contiguous slice of a global batch (the whole batch in a single process)."""
    rank, world = get_rank(), get_world_size()
    inputs, targets = batch
    return inputs.tensor_split(world)[rank], targets.tensor_split(world)[rank]


def _closure(
    setup: _Setup, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int, seen: list
) -> Callable[[], torch.Tensor]:
    """Zero the gradients, forward, loss, backward; ``seen`` collects (loss, outputs) per call.

    ``inputs`` is this rank's slice of a global batch of ``batch_size`` samples: the loss that is
    differentiated is scaled by ``world * len(inputs) / batch_size`` (1 in a single process), so
    that DDP's mean of the ranks' gradients is the gradient of the global batch's mean loss.
    """
    weight = get_world_size() * len(targets) / batch_size

    def closure() -> torch.Tensor:
        setup.optimizer.zero_grad(set_to_none=True)
        outputs = setup.forward(inputs)
        # An empty slice (a last batch smaller than the world) still joins DDP's all-reduce.
        loss = setup.loss_fn(outputs, targets) if len(targets) else outputs.sum()
        (loss * weight).backward()
        seen.append((loss.detach(), outputs.detach()))
        return loss

    return closure


def _train_epoch(setup: _Setup, epoch: int, progress: Progress) -> tuple[float, float]:
    """One pass over the shuffled training data; the running mean loss and accuracy."""
    setup.model.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=setup.device)
    correct = torch.zeros((), dtype=torch.int64, device=setup.device)
    for batch in setup.train.loader(shuffle=True, epoch=epoch):
        inputs, targets = (t.to(setup.device) for t in _local_slice(batch))
        seen: list[tuple[torch.Tensor, torch.Tensor]] = []
        setup.optimizer.step(_closure(setup, inputs, targets, len(batch[1]), seen))
        loss, outputs = seen[0]  # SAM calls the closure twice; the first call is at w
        loss_sum += loss.double() * len(targets)
        correct += (outputs.argmax(1) == targets).sum()
        progress.update()
    n = len(setup.train)
    return all_reduce_sum(loss_sum).item() / n, all_reduce_sum(correct).item() / n


@torch.no_grad()
def _accuracy(model: nn.Module, batches: list | None, device: torch.device) -> float | None:
    if batches is None:
        return None
    model.eval()
    correct = total = 0
    for inputs, labels in batches:
        correct += int((model(inputs.to(device)).argmax(1).cpu() == labels).sum())
        total += len(labels)
    model.train()
    return correct / total


def flatness_record(operator: HessianOperator, num_matvecs: int, seed: int) -> dict[str, float]:
    """Hutch++ trace with its standard error and the top eigenvalue of ``operator``.

    Returns ``{"hessian_trace", "hessian_trace_stderr", "top_eigenvalue"}``, the flatness
    fields of a ``metrics.jsonl`` record; the trace spends ``num_matvecs`` products and Lanczos
    (stopped at residuals below ``FLATNESS_EIG_TOL`` of the value) at most ``10 num_matvecs``.
    """
    estimate = trace(operator, "hutchpp", num_matvecs=num_matvecs, seed=seed)
    top = eigenvalues(operator, k=1, tol=FLATNESS_EIG_TOL, max_matvecs=10 * num_matvecs, seed=seed)
    return {
        "hessian_trace": estimate.value,
        "hessian_trace_stderr": estimate.stderr,
        "top_eigenvalue": float(top.values[0]),
    }


def _flatness(setup: _Setup, config: TrainConfig) -> dict[str, float]:
    """Hutch++ trace and the top eigenvalue of the Hessian on the fixed training subset."""
    op = HessianOperator(setup.model, setup.loss_fn, setup.flatness_batches, device=setup.device)
    seed = derived_seed(config.seed, _FLATNESS_STREAM) % 2**31
    return flatness_record(op, config.flatness_matvecs, seed)


# ---------------------------------------------------------------------- files of the run


def _wants_checkpoint(epoch: int, config: TrainConfig) -> bool:
    every = config.checkpoint_every
    return epoch == config.epochs or (every is not None and epoch % every == 0)


def _save(out: Path, setup: _Setup, config: TrainConfig, epoch: int) -> None:
    noise = setup.train.label_noise
    extra = {
        "epoch": epoch,
        "config": config.to_dict(),
        "loss": loss_spec(config.loss),
        "label_noise": None if noise is None else noise.spec,
        "train_labels": None if noise is None else setup.train.labels,
        "data_seed": config.seed,
        "torch_rng_state": torch.get_rng_state(),
    }
    if setup.device.type == "cuda":
        extra["cuda_rng_state"] = torch.cuda.get_rng_state(setup.device)
    path = checkpoint_path(out, epoch, final=epoch == config.epochs)
    path.parent.mkdir(exist_ok=True)
    save_checkpoint(
        path,
        setup.model,
        model_spec=model_spec(config.model),
        data_spec=setup.train.spec,
        optimizer=setup.optimizer,
        extra=extra,
    )


def _latest_checkpoint(out: Path, config: TrainConfig) -> tuple[int, Path] | None:
    if (out / FINAL_CHECKPOINT).is_file():
        return config.epochs, out / FINAL_CHECKPOINT
    found = [c for c in run_checkpoints(out, required=False) if c.path.name != FINAL_CHECKPOINT]
    return (found[-1].epoch, found[-1].path) if found else None


def _write_config(out: Path, setup: _Setup, config: TrainConfig) -> None:
    noise = setup.train.label_noise
    document = {
        "config": config.to_dict(),
        "model_spec": model_spec(config.model),
        "data_spec": setup.train.spec,
        "label_noise": None if noise is None else noise.spec,
    }
    text = json.dumps(document, indent=2) + "\n"
    atomic_write(out / CONFIG_FILE, lambda file: file.write(text.encode()))


def config_changes(out: Path, config: TrainConfig) -> list[str]:
    """``"field: saved -> new"`` for each field of ``config`` that differs from the
    configuration saved in the run directory ``out``.

    Raises:
        TrainingError: ``out`` holds no readable configuration.
    """
    try:
        saved = json.loads((out / CONFIG_FILE).read_text())["config"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise TrainingError(
            f"cannot resume: {out / CONFIG_FILE} is missing or unreadable ({error})"
        ) from None
    saved = json.loads(json.dumps(TrainConfig.from_dict(saved).to_dict()))
    current = json.loads(json.dumps(config.to_dict()))
    return [f"{k}: {saved.get(k)!r} -> {v!r}" for k, v in current.items() if saved.get(k) != v]


def _check_resumable(out: Path, config: TrainConfig) -> None:
    changed = config_changes(out, config)
    if changed:
        raise TrainingError(
            f"cannot resume {out}: the configuration differs from the saved one "
            f"({'; '.join(changed)}); use the same options or another --out"
        )


def _read_metrics(out: Path, upto: int) -> list[dict[str, Any]]:
    """The metrics of epochs ``1..upto`` from ``metrics.jsonl`` (a cut-off last line is dropped)."""
    records = read_records(out)
    if any(epoch not in records for epoch in range(1, upto + 1)):
        raise TrainingError(
            f"cannot resume: {out / METRICS_FILE} does not hold the metrics of epochs 1..{upto} "
            "that the checkpoint has reached"
        )
    return [records[epoch] for epoch in range(1, upto + 1)]


def _resume_checkpoint(path: Path) -> LoadedCheckpoint:
    """The checkpoint to resume from, checked to hold what :func:`_restore` needs."""
    checkpoint = load_checkpoint(path)
    extra = checkpoint.metadata.get("extra") or {}
    rng_state = extra.get("torch_rng_state")
    if checkpoint.layout != "flatscope" or not isinstance(
        checkpoint.metadata.get("optimizer_state_dict"), dict
    ):
        raise TrainingError(
            f"cannot resume from {path}: it is not a checkpoint of flatscope train (it holds "
            "no optimizer state); move it away to resume from an earlier checkpoint, or train "
            "into another --out"
        )
    if not isinstance(rng_state, torch.Tensor) or rng_state.dtype != torch.uint8:
        raise TrainingError(f"cannot resume from {path}: its random generator state is missing")
    return checkpoint


def _restore(setup: _Setup, checkpoint: LoadedCheckpoint) -> None:
    apply_state_dict(setup.model, checkpoint.state_dict)
    try:
        setup.optimizer.load_state_dict(checkpoint.metadata["optimizer_state_dict"])
    except (ValueError, KeyError, TypeError) as error:
        raise TrainingError(
            f"cannot resume from {checkpoint.path}: its optimizer state does not fit "
            f"{type(setup.optimizer).__name__} ({error})"
        ) from None
    extra = checkpoint.metadata["extra"]
    torch.set_rng_state(extra["torch_rng_state"])
    if setup.device.type == "cuda" and "cuda_rng_state" in extra:
        torch.cuda.set_rng_state(extra["cuda_rng_state"], setup.device)


@contextmanager
def _own_global_rng(config: TrainConfig, device: torch.device) -> Iterator[None]:
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(derived_seed(config.seed, _GLOBAL_STREAM))
        yield


# ----------------------------------------------------------------------------- the loop


def _epoch_line(record: dict[str, Any], epochs: int) -> str:
    def pct(value: float | None) -> str:
        return "  -  " if value is None else f"{100 * value:5.1f}"

    return (
        f"epoch {record['epoch']}/{epochs}  loss {record['train_loss']:.4f}  "
        f"train {pct(record['train_acc'])}  val {pct(record['val_acc'])}  "
        f"test {pct(record['test_acc'])}  lr {record['lr']:.3g}"
    )


def train(
    config: TrainConfig,
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    progress: bool = False,
    stream: TextIO | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> RunResult:
    """Train as ``config`` says and write the run directory ``out_dir`` (see the module docs).

    Args:
        config: the run's configuration.
        out_dir: the run directory; it must not hold a run already unless ``resume``.
        resume: continue from the latest checkpoint in ``out_dir`` (the configuration must be
            the saved one); a finished run is loaded and returned as it is, and a directory
            without a run starts a new one.
        progress: draw a progress line per epoch on ``stream`` (stderr), only on a terminal
            (and only on rank 0 under a process group).
        on_epoch: called with each epoch's metrics record after it is written (on every rank).

    The run directory is locked while training (:func:`flatscope.io.lock.output_lock`): a
    second writer fails at once. ``config.json`` and ``metrics.jsonl`` are written when the
    first epoch is done, so a run that fails before that leaves nothing behind.

    Raises:
        TrainingError: a configuration that cannot run, a run directory that holds another
            run, a resume that does not match, or a loss that became NaN or infinite.
        LockedError: another process is writing ``out_dir``.
    """
    out = Path(out_dir)
    writer = get_rank() == 0
    with output_lock(out) if writer else nullcontext(out):
        return _train(config, out, resume, progress and writer, stream, on_epoch)


def _train(
    config: TrainConfig,
    out: Path,
    resume: bool,
    progress: bool,
    stream: TextIO | None,
    on_epoch: Callable[[dict[str, Any]], None] | None,
) -> RunResult:
    """:func:`train` with the run directory locked (on rank 0)."""
    if (out / CONFIG_FILE).exists():
        if not resume:
            raise TrainingError(
                f"{out} already holds a training run; pass --resume (resume=True) to continue "
                "it or choose another output directory"
            )
        _check_resumable(out, config)
    # the run's own files are read and checked before the data and model are set up
    latest = _latest_checkpoint(out, config) if resume else None
    checkpoint = None if latest is None else _resume_checkpoint(latest[1])
    metrics: list[dict[str, Any]] = [] if latest is None else _read_metrics(out, latest[0])
    setup = _setup(config)
    writer = get_rank() == 0
    with _own_global_rng(config, setup.device):
        barrier()  # every rank has looked at the directory before rank 0 writes to it
        if checkpoint is not None:
            _restore(setup, checkpoint)
            if writer:
                write_records(out, metrics)
        for epoch in range(len(metrics), config.epochs):
            record = _run_epoch(setup, config, epoch, progress, stream)
            if writer:
                if not (out / CONFIG_FILE).exists():  # the first epoch of a new run is done
                    _write_config(out, setup, config)
                    write_records(out, [])
                append_record(out, record)
                if _wants_checkpoint(epoch + 1, config):
                    _save(out, setup, config, epoch + 1)
            record = _from_rank_0(record)
            metrics.append(record)
            if on_epoch is not None:
                on_epoch(record)
    return RunResult(out, config, setup.model, metrics)


def _from_rank_0(record: dict[str, Any]) -> dict[str, Any]:
    """Rank 0's record on every rank, once rank 0 has written it (itself in a single process)."""
    if not is_distributed():
        return record
    box = [record]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _run_epoch(
    setup: _Setup, config: TrainConfig, epoch: int, progress: bool, stream: TextIO | None
) -> dict[str, Any]:
    lr = config.lr * setup.schedule(epoch, config.epochs)
    for group in setup.optimizer.param_groups:
        group["lr"] = lr
    bar = Progress(
        f"epoch {epoch + 1}/{config.epochs}",
        math.ceil(len(setup.train) / config.batch_size),
        unit="batches",
        enabled=progress,
        stream=stream,
    )
    start = time.perf_counter()
    train_loss, train_acc = _train_epoch(setup, epoch, bar)
    seconds = time.perf_counter() - start
    if not math.isfinite(train_loss):
        bar.close()
        raise TrainingError(
            f"training diverged in epoch {epoch + 1}: the loss is {train_loss}; lower --lr"
        )
    if config.batchnorm == "recompute":
        training_inputs = setup.train.loader(shuffle=False, batch_size=EVAL_BATCH_SIZE)
        recompute_batchnorm(setup.model, (inputs for inputs, _ in training_inputs), setup.device)
    # Only rank 0 evaluates (the others receive its record in :func:`train`).
    evaluation = setup.evaluation if get_rank() == 0 else {"val": None, "test": None}
    record = {
        "epoch": epoch + 1,
        "lr": lr,
        "train_loss": train_loss,
        "train_acc": train_acc,
        "val_acc": _accuracy(setup.model, evaluation["val"], setup.device),
        "test_acc": _accuracy(setup.model, evaluation["test"], setup.device),
        "seconds": seconds,
    }
    every = config.track_flatness
    if every is not None and ((epoch + 1) % every == 0 or epoch + 1 == config.epochs):
        record.update(_flatness(setup, config))
    bar.label = _epoch_line(record, config.epochs)
    bar.close()
    return record
