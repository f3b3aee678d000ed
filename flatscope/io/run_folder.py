"""The layout of a training run folder, and of the analyses kept inside it.

A run folder is what :func:`flatscope.training.trainer.train` writes (and what the training
callbacks write for loops flatscope did not run)::

    RUN/config.json                 the configuration, with the canonical model and data specs
    RUN/metrics.jsonl               one JSON object per epoch, with an integer ``epoch`` field
    RUN/checkpoints/epoch_NNNN.pt   intermediate checkpoints
    RUN/final.pt                    the last checkpoint
    RUN/analysis/report.json        ``flatscope analyze RUN/final.pt --out RUN/analysis``

This module is the one place that knows these names: it finds checkpoints and reports, and
reads and writes ``metrics.jsonl``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flatscope.errors import FlatscopeError
from flatscope.io.atomic import atomic_write

__all__ = [
    "CHECKPOINT_DIR",
    "CONFIG_FILE",
    "FINAL_CHECKPOINT",
    "METRICS_FILE",
    "REPORT_NAME",
    "RUN_REPORTS",
    "RunCheckpoint",
    "append_record",
    "checkpoint_path",
    "is_run_folder",
    "read_config",
    "read_records",
    "run_checkpoints",
    "write_records",
]

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
FINAL_CHECKPOINT = "final.pt"
CHECKPOINT_DIR = "checkpoints"
REPORT_NAME = "report.json"
#: Where a run folder's report of its final checkpoint is looked for, in order: its own
#: analysis, the final point of ``flatscope trajectory RUN``, or, for ``DEMO/runs/NAME`` of
#: ``flatscope demo``, the demo's analysis of that run.
RUN_REPORTS = (
    "analysis/report.json",
    "trajectory/reports/final/report.json",
    "../../analysis/{name}/report.json",
)


@dataclass(frozen=True)
class RunCheckpoint:
    """A checkpoint of a run and the number of epochs it had completed."""

    epoch: int
    path: Path


def is_run_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds any of a run folder's files."""
    path = Path(path)
    return any((path / name).exists() for name in (CONFIG_FILE, METRICS_FILE, FINAL_CHECKPOINT))


def checkpoint_path(run_dir: str | os.PathLike, epoch: int, final: bool) -> Path:
    """Where the checkpoint after ``epoch`` epochs lives (``final.pt`` for the last one)."""
    run_dir = Path(run_dir)
    if final:
        return run_dir / FINAL_CHECKPOINT
    return run_dir / CHECKPOINT_DIR / f"epoch_{epoch:04d}.pt"


def read_config(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The JSON object of ``RUN/config.json``; ``None`` when the file is missing.

    Raises:
        FlatscopeError: the file exists but is not a JSON object.
    """
    path = Path(run_dir) / CONFIG_FILE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise FlatscopeError(f"cannot read {path}: {err}") from None
    except ValueError as err:
        raise FlatscopeError(f"{path} is corrupt: it is not JSON ({err})") from None
    if not isinstance(document, dict):
        raise FlatscopeError(f"{path} is not a run configuration: it holds no JSON object")
    return document


def read_records(run_dir: str | os.PathLike) -> dict[int, dict[str, Any]]:
    """The records of ``RUN/metrics.jsonl`` by epoch; ``{}`` when the file is missing.

    Lines that are not JSON objects with an integer ``epoch`` (a cut-off last line) are skipped;
    a later record of the same epoch replaces an earlier one.
    """
    path = Path(run_dir) / METRICS_FILE
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as err:
        raise FlatscopeError(f"cannot read {path}: {err}") from None
    records = {}
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        epoch = record.get("epoch") if isinstance(record, dict) else None
        if isinstance(epoch, int) and not isinstance(epoch, bool):
            records[epoch] = record
    return records


def _line(record: Mapping[str, Any]) -> str:
    from flatscope.io.report import to_jsonable

    return json.dumps(to_jsonable(record, "record")) + "\n"


def write_records(run_dir: str | os.PathLike, records: Iterable[Mapping[str, Any]]) -> None:
    """Replace ``RUN/metrics.jsonl`` by ``records``, atomically."""
    text = "".join(_line(record) for record in records)
    atomic_write(Path(run_dir) / METRICS_FILE, lambda file: file.write(text.encode("utf-8")))


def append_record(run_dir: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """Append one record to ``RUN/metrics.jsonl`` and flush it to disk."""
    with open(Path(run_dir) / METRICS_FILE, "a", encoding="utf-8") as file:
        file.write(_line(record))
        file.flush()
        os.fsync(file.fileno())


def _final_epoch(run_dir: Path, epochs_seen: list[int]) -> int:
    """The epoch of ``final.pt``: the configured epochs, else (no ``config.json``) the last
    metrics record.

    Raises:
        FlatscopeError: ``config.json`` exists but holds no positive ``config.epochs``.
    """
    config = read_config(run_dir)
    if config is not None:
        settings = config.get("config")
        epochs = settings.get("epochs") if isinstance(settings, dict) else None
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise FlatscopeError(
                f"{run_dir / CONFIG_FILE} is corrupt: it holds no config.epochs, so the epoch of "
                f"{FINAL_CHECKPOINT} is unknown; restore the file, or remove it to number "
                f"{FINAL_CHECKPOINT} after the last {METRICS_FILE} record"
            )
        return epochs
    records = read_records(run_dir)
    if records:
        return max(records)
    return max(epochs_seen, default=0) + 1


def run_checkpoints(run_dir: str | os.PathLike, *, required: bool = True) -> list[RunCheckpoint]:
    """The checkpoints of a run folder in epoch order (``final.pt`` last).

    Raises:
        FlatscopeError: when ``required``, ``run_dir`` is not a directory or holds no
            checkpoint (otherwise the list is empty).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        if not required:
            return []
        raise FlatscopeError(f"run directory not found: {run_dir}")
    found = []
    for path in (run_dir / CHECKPOINT_DIR).glob("epoch_*.pt"):
        number = path.stem.removeprefix("epoch_")
        if number.isdigit():
            found.append(RunCheckpoint(int(number), path))
    found.sort(key=lambda checkpoint: checkpoint.epoch)
    if (run_dir / FINAL_CHECKPOINT).is_file():
        epoch = _final_epoch(run_dir, [c.epoch for c in found])
        found.append(RunCheckpoint(epoch, run_dir / FINAL_CHECKPOINT))
    if required and not found:
        raise FlatscopeError(
            f"{run_dir} holds no checkpoints ({CHECKPOINT_DIR}/epoch_NNNN.pt or "
            f"{FINAL_CHECKPOINT}); train with --checkpoint-every N to keep intermediate ones"
        )
    return found
