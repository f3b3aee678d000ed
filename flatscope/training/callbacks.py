"""Flatness tracking for training loops flatscope did not write: a plain hook and a Lightning
callback that write run folders ``flatscope trajectory`` and ``flatscope compare`` read.

:class:`FlatnessTracker` is the hook for a hand-written loop: call :meth:`FlatnessTracker.step`
after every optimizer step (or every epoch: the tracker counts calls) and
:meth:`FlatnessTracker.finish` after the last one. ``FlatnessCallback`` does the same inside a
PyTorch Lightning ``Trainer`` (``from flatscope.training.callbacks import FlatnessCallback``
imports Lightning; nothing else in flatscope does).

Every ``every`` calls the tracker measures, on the fixed data it was given (no shuffling; eval
mode, weights untouched), the Hessian of the mean loss: its trace by Hutch++ (Meyer, Musco,
Musco, Woodruff, "Hutch++: Optimal Stochastic Trace Estimation", SOSA 2021) with its standard
error from ``num_matvecs`` products, and its largest eigenvalue by Lanczos (stopped at a residual
of at most 1e-2 times its value, ``10 num_matvecs`` products at most), as
``flatscope train --track-flatness`` does. It appends one JSON line to ``RUN_DIR/metrics.jsonl``
with the trainer's field names::

    {"epoch": INDEX, "hessian_trace": ..., "hessian_trace_stderr": ..., "top_eigenvalue": ...,
     ...the values passed in (train_loss, lr, ...)}

and, with ``save_checkpoints``, writes the weights as a flatscope checkpoint
``RUN_DIR/checkpoints/epoch_NNNN.pt`` (``final.pt`` for the last one; ``model_spec``,
``data_spec`` and the loss spec inside, so ``flatscope analyze`` needs no options when they are
given). ``INDEX`` counts the calls of ``step`` (or the index given to :meth:`record`): it is
written as ``epoch`` because that is the time axis of flatscope's run folders, which trajectory
and compare read, even when it counts steps; ``config.json`` records the unit.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flatscope.data.datasets import DataBundle
from flatscope.errors import FlatscopeError
from flatscope.io import atomic_write, save_checkpoint, to_jsonable
from flatscope.io.run_folder import (
    CONFIG_FILE,
    METRICS_FILE,
    append_record,
    checkpoint_path,
)
from flatscope.models.losses import LossFn, build_loss, loss_spec
from flatscope.operators import HessianOperator
from flatscope.operators.distributed import is_distributed
from flatscope.training.trainer import flatness_record

__all__ = ["FlatnessTracker", "flatness_record"]  # and FlatnessCallback, built on first use


def _loss(loss_fn: str | LossFn) -> tuple[LossFn, str | None]:
    if isinstance(loss_fn, str):
        return build_loss(loss_fn), loss_spec(loss_fn)
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be a loss spec or a callable, got {type(loss_fn).__name__}")
    return loss_fn, None


class FlatnessTracker:
    """Records Hessian trace and top eigenvalue of a model into a run folder (module docs).

    Args:
        run_dir: the run folder; created if missing. A folder that already holds
            ``metrics.jsonl`` is refused, so two runs never mix.
        loss_fn: a loss spec (``"cross_entropy"``, ``"causal_lm"``) or ``loss_fn(outputs,
            targets)`` returning the batch mean. A spec is stored in the checkpoints.
        data: the fixed data of the Hessian: a :class:`~flatscope.data.DataBundle`, a
            non-shuffling ``DataLoader``, a list of ``(inputs, targets)`` batches or one pair.
        every: record on every ``every``-th call of :meth:`step`.
        unit: what one call of :meth:`step` is, ``"step"`` or ``"epoch"`` (stored in
            ``config.json``).
        num_matvecs: products of the Hutch++ trace (Lanczos gets at most ten times as many).
        seed: seeds the probes (the same every time, so records differ by the weights only).
        params: parameter names or globs to analyse (``None``: all trainable parameters).
        dtype: dtype of the Hessian products (default: the parameters' dtype).
        model_spec, data_spec: stored in the checkpoints and ``config.json`` so that analysis
            commands rebuild model and data without ``--model`` / ``--data``; ``data_spec``
            defaults to the spec of a ``DataBundle``.
        save_checkpoints: write a checkpoint with every record.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        loss_fn: str | LossFn,
        data: Any,
        *,
        every: int = 1,
        unit: str = "step",
        num_matvecs: int = 30,
        seed: int = 0,
        params: str | list[str] | None = None,
        dtype: torch.dtype | None = None,
        model_spec: str | None = None,
        data_spec: str | None = None,
        save_checkpoints: bool = True,
    ) -> None:
        for name, value, minimum in (("every", every, 1), ("num_matvecs", num_matvecs, 3)):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise FlatscopeError(f"{name} must be an integer >= {minimum}, got {value!r}")
        if unit not in ("step", "epoch"):
            raise FlatscopeError(f"unit must be 'step' or 'epoch', got {unit!r}")
        self.run_dir = Path(run_dir)
        if (self.run_dir / METRICS_FILE).exists():
            raise FlatscopeError(
                f"{self.run_dir} already holds {METRICS_FILE}; record each run in its own folder"
            )
        self.loss_fn, self.loss_spec = _loss(loss_fn)
        if isinstance(data, DataBundle):
            data_spec = data_spec or data.spec
            data = data.batches()
        self.data = data
        self.every, self.unit, self.num_matvecs, self.seed = every, unit, num_matvecs, seed
        self.params, self.dtype = params, dtype
        self.model_spec, self.data_spec = model_spec, data_spec
        self.save_checkpoints = save_checkpoints
        self.count = 0
        self.records: list[dict[str, Any]] = []
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise FlatscopeError(f"cannot create the run folder {self.run_dir}: {error}") from None
        self._write_config(epochs=None)

    def _write_config(self, epochs: int | None) -> None:
        document = {
            "config": {"epochs": epochs, "loss": self.loss_spec},
            "model_spec": self.model_spec,
            "data_spec": self.data_spec,
            "tracker": {
                "unit": self.unit,
                "every": self.every,
                "num_matvecs": self.num_matvecs,
                "seed": self.seed,
                "params": self.params,
            },
        }
        text = json.dumps(document, indent=2) + "\n"
        atomic_write(self.run_dir / CONFIG_FILE, lambda file: file.write(text.encode()))

    @property
    def last_index(self) -> int | None:
        """The index of the latest record, or ``None`` before the first."""
        return self.records[-1]["epoch"] if self.records else None

    def step(self, model: nn.Module, **values: Any) -> dict[str, Any] | None:
        """Count one step (or epoch); on every ``every``-th, :meth:`record` it.

        ``values`` (``train_loss=...``, ``lr=...``) go into the record as they are.
        """
        self.count += 1
        if self.count % self.every:
            return None
        return self.record(model, self.count, **values)

    def record(self, model: nn.Module, index: int, **values: Any) -> dict[str, Any]:
        """Measure ``model`` now and write the record (and checkpoint) of ``index``."""
        if is_distributed():
            raise FlatscopeError(
                "flatness tracking runs in one process; under torch.distributed, analyse the "
                "saved checkpoints with torchrun -m flatscope trajectory instead"
            )
        if self.last_index is not None and index <= self.last_index:
            raise FlatscopeError(
                f"record index {index} does not follow the previous one ({self.last_index})"
            )
        self.count = max(self.count, index)
        operator = HessianOperator(model, self.loss_fn, self.data, self.params, dtype=self.dtype)
        flatness = flatness_record(operator, self.num_matvecs, self.seed)
        record = to_jsonable({"epoch": index, **values, **flatness}, "the record")
        append_record(self.run_dir, record)
        self.records.append(record)
        if self.save_checkpoints:
            self._save(model, checkpoint_path(self.run_dir, index, final=False), index)
        return record

    def _save(self, model: nn.Module, path: Path, index: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(
            path,
            model,
            model_spec=self.model_spec,
            data_spec=self.data_spec,
            extra={"epoch": index, "loss": self.loss_spec},
        )

    def finish(self, model: nn.Module, **values: Any) -> Path | None:
        """End the run: record the final state (unless the last call was recorded), write
        ``final.pt`` (with ``save_checkpoints``) and the number of steps to ``config.json``.

        Returns the final checkpoint, or ``None`` without checkpoints.
        """
        if self.count == 0:
            raise FlatscopeError("finish() before any step: nothing was trained")
        if self.last_index != self.count:
            self.record(model, self.count, **values)
        self._write_config(epochs=self.count)
        if not self.save_checkpoints:
            return None
        final = checkpoint_path(self.run_dir, self.count, final=True)
        os.replace(checkpoint_path(self.run_dir, self.count, final=False), final)
        return final


def _batch_loss(outputs: Any) -> float | None:
    """The loss a Lightning ``training_step`` returned (a tensor or a dict with ``loss``)."""
    if isinstance(outputs, Mapping):
        outputs = outputs.get("loss")
    if isinstance(outputs, torch.Tensor) and outputs.numel() == 1:
        return float(outputs.detach())
    return None


@functools.cache
def _lightning_callback() -> type:
    """Build ``FlatnessCallback`` on first use, importing Lightning only then."""
    try:
        from lightning.pytorch.callbacks import Callback
    except ImportError as error:
        raise ImportError(
            'FlatnessCallback needs PyTorch Lightning: pip install "flatscope[lightning]"'
        ) from error

    class FlatnessCallback(Callback):
        """A Lightning callback that records flatness into a run folder (module docs).

        Args:
            run_dir, loss_fn, data: as :class:`FlatnessTracker`.
            every_n_steps: record every this many optimizer steps (``trainer.global_step``);
                the record's ``epoch`` is then the step and ``train_loss`` the mean batch loss
                since the previous record.
            every_n_epochs: record after every this many epochs (the record's ``epoch`` is
                the number of epochs completed); give one of the two.
            module: the attribute of the LightningModule that holds the network to analyse
                (``"model"`` for ``self.model``); ``None`` analyses the LightningModule itself
                (its ``forward`` must map inputs to outputs).
            **options: ``num_matvecs``, ``seed``, ``params``, ``dtype``, ``model_spec``,
                ``data_spec``, ``save_checkpoints`` of :class:`FlatnessTracker`.
        """

        def __init__(
            self,
            run_dir: str | os.PathLike,
            loss_fn: str | LossFn,
            data: Any,
            *,
            every_n_steps: int | None = None,
            every_n_epochs: int | None = None,
            module: str | None = None,
            **options: Any,
        ) -> None:
            super().__init__()
            if (every_n_steps is None) == (every_n_epochs is None):
                raise FlatscopeError("give exactly one of every_n_steps and every_n_epochs")
            unit = "step" if every_n_steps is not None else "epoch"
            self.tracker = FlatnessTracker(
                run_dir,
                loss_fn,
                data,
                every=every_n_steps or every_n_epochs,
                unit=unit,
                **options,
            )
            self.module = module
            self._losses: list[float] = []

        def _network(self, pl_module: nn.Module) -> nn.Module:
            return pl_module if self.module is None else getattr(pl_module, self.module)

        def _values(self, trainer: Any) -> dict[str, Any]:
            values: dict[str, Any] = {"step": trainer.global_step}
            if self._losses:
                values["train_loss"] = sum(self._losses) / len(self._losses)
            if trainer.optimizers:
                values["lr"] = trainer.optimizers[0].param_groups[0]["lr"]
            return values

        def _record(self, trainer: Any, pl_module: nn.Module, index: int) -> None:
            last = self.tracker.last_index
            if last is not None and index <= last:  # gradient accumulation: same step again
                return
            self.tracker.record(self._network(pl_module), index, **self._values(trainer))
            self._losses.clear()

        def setup(self, trainer: Any, pl_module: nn.Module, stage: str) -> None:
            if trainer.world_size > 1:
                raise FlatscopeError(
                    "FlatnessCallback runs in one process; with several devices, save "
                    "checkpoints and run flatscope trajectory on them"
                )

        def on_train_batch_end(
            self, trainer: Any, pl_module: nn.Module, outputs: Any, batch: Any, batch_idx: int
        ) -> None:
            loss = _batch_loss(outputs)
            if loss is not None:
                self._losses.append(loss)
            step = trainer.global_step
            if self.tracker.unit == "step" and step > 0 and step % self.tracker.every == 0:
                self._record(trainer, pl_module, step)

        def on_train_epoch_end(self, trainer: Any, pl_module: nn.Module) -> None:
            epoch = trainer.current_epoch + 1
            if self.tracker.unit == "epoch" and epoch % self.tracker.every == 0:
                self._record(trainer, pl_module, epoch)

        def on_train_end(self, trainer: Any, pl_module: nn.Module) -> None:
            if self.tracker.unit == "epoch":
                self.tracker.count = trainer.current_epoch + 1
            else:
                self.tracker.count = trainer.global_step
            if self.tracker.count > 0:
                self.tracker.finish(self._network(pl_module), **self._values(trainer))

    return FlatnessCallback


def __getattr__(name: str) -> Callable[..., Any] | type:
    if name == "FlatnessCallback":
        return _lightning_callback()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
