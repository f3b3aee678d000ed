"""CIFAR-10 and CIFAR-10N read from their on-disk files, without torchvision or pickled code.

The ``cifar10`` and ``cifar10n`` data specs (see :mod:`flatscope.data.datasets`) build their
splits with :func:`cifar10` and :func:`cifar10n`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from flatscope.data.errors import DataError
from flatscope.data.safe_pickle import load_numpy_pickle, torch_load_numpy
from flatscope.data.splits import SplitData, split_indices
from flatscope.models.specs import SpecError

__all__ = ["CIFAR10_CLASSES", "CIFAR10_MEAN", "CIFAR10_STD", "cifar10", "cifar10n"]

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def _cifar_folder(path: str) -> Path:
    root = Path(path).expanduser()
    for folder in (root / "cifar-10-batches-py", root):
        if (folder / "data_batch_1").is_file():
            return folder
    raise DataError(
        f"no CIFAR-10 batches under {root}: expected data_batch_1..5, test_batch and "
        "batches.meta there or in its cifar-10-batches-py folder (the python version of "
        "CIFAR-10, as torchvision's CIFAR10(root, download=True) leaves it)"
    )


def _text_keys(record: Any, path: Path) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise DataError(f"{path} holds a {type(record).__name__}, not a CIFAR batch dict")
    return {key.decode("latin1") if isinstance(key, bytes) else key: v for key, v in record.items()}


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DataError(f"missing CIFAR-10 batch file {path}")
    record = _text_keys(load_numpy_pickle(path), path)
    data, labels = record.get("data"), record.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise DataError(f"{path}: 'data' must be a uint8 array of shape (N, 3072)")
    try:
        labels = np.asarray(labels if labels is not None else [], dtype=np.int64)
    except (TypeError, ValueError):
        raise DataError(f"{path}: 'labels' must be a list of integers") from None
    if data.shape[1] != 3 * 32 * 32 or labels.shape != (len(data),):
        raise DataError(
            f"{path}: expected data of shape (N, 3072) and N labels, got {data.shape} and "
            f"{labels.shape}"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= len(CIFAR10_CLASSES)):
        raise DataError(f"{path}: labels must lie in 0..9")
    return data, labels


def _read_cifar(folder: Path, train: bool) -> tuple[np.ndarray, np.ndarray]:
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    parts = [_read_cifar_batch(folder / name) for name in names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _cifar_class_names(folder: Path) -> tuple[str, ...]:
    meta_path = folder / "batches.meta"
    if not meta_path.is_file():
        return CIFAR10_CLASSES
    names = _text_keys(load_numpy_pickle(meta_path), meta_path).get("label_names")
    if not isinstance(names, list) or len(names) != len(CIFAR10_CLASSES):
        raise DataError(f"{meta_path}: 'label_names' must list the 10 class names")
    return tuple(n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names)


def _normalise_cifar(data: np.ndarray) -> torch.Tensor:
    images = torch.from_numpy(data).view(-1, 3, 32, 32).to(torch.float32).div_(255.0)
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    return images.sub_(mean).div_(std)


def _train_index(num_train: int, split: str, val: int, split_seed: int) -> np.ndarray:
    """Indices of ``train`` or ``val`` when ``val`` training images are held out."""
    if split == "val" and val == 0:
        raise DataError(
            "CIFAR-10 has no val split by default: hold training images out, for example "
            "cifar10:PATH,val=5000"
        )
    if not 0 <= val < num_train:
        raise SpecError(f"CIFAR-10: val must lie in [0, {num_train}), got {val}")
    return split_indices(num_train, split, split_seed, val, 0)


def cifar10(path: str, *, split: str, val: int = 0, split_seed: int = 0) -> SplitData:
    """CIFAR-10 from torchvision's on-disk python batches, normalised per channel."""
    folder = _cifar_folder(path)
    data, labels = _read_cifar(folder, train=split != "test")
    if split != "test":
        index = _train_index(len(labels), split, val, split_seed)
        data, labels = data[index], labels[index]
    return SplitData(
        _normalise_cifar(data), torch.from_numpy(labels), 10, _cifar_class_names(folder)
    )


_CIFAR10N_KEYS = {
    "clean": "clean_label",
    "aggre": "aggre_label",
    "worse": "worse_label",
    "random1": "random_label1",
    "random2": "random_label2",
    "random3": "random_label3",
}


def _human_labels(
    path: str, folder: Path, human: str | None, labels: str, clean: np.ndarray
) -> np.ndarray:
    """The chosen CIFAR-10N labels, checked against the CIFAR-10 training labels ``clean``."""
    key = _CIFAR10N_KEYS.get(labels, labels)
    if key not in _CIFAR10N_KEYS.values():
        raise SpecError(
            f"data 'cifar10n': unknown labels {labels!r}; choose one of {', '.join(_CIFAR10N_KEYS)}"
        )
    if human:
        candidates = [Path(human).expanduser()]
    else:
        candidates = [Path(path).expanduser() / "CIFAR-10_human.pt", folder / "CIFAR-10_human.pt"]
    found = next((file for file in candidates if file.is_file()), None)
    if found is None:
        raise DataError(
            f"no CIFAR-10N label file at {' or '.join(map(str, candidates))}: download "
            "CIFAR-10_human.pt from the CIFAR-N release, or name it with human=FILE"
        )
    record = torch_load_numpy(found)
    if not isinstance(record, dict) or key not in record:
        raise DataError(f"{found} holds no {key!r} entry; is it CIFAR-10_human.pt?")
    try:
        chosen = np.asarray(record[key]).reshape(-1).astype(np.int64)
    except (TypeError, ValueError):
        raise DataError(f"{found}: {key!r} must hold integer labels") from None
    if chosen.shape != clean.shape:
        raise DataError(
            f"{found} has {len(chosen)} labels but CIFAR-10 has {len(clean)} training images"
        )
    if "clean_label" in record and not np.array_equal(np.asarray(record["clean_label"]), clean):
        raise DataError(f"{found}: clean_label does not match the CIFAR-10 training labels")
    if chosen.min() < 0 or chosen.max() >= len(CIFAR10_CLASSES):
        raise DataError(f"{found}: {key} labels must lie in 0..9")
    return chosen


def cifar10n(
    path: str,
    *,
    split: str,
    labels: str = "worse",
    human: str | None = None,
    val: int = 0,
    split_seed: int = 0,
) -> SplitData:
    """CIFAR-10 images with CIFAR-10N human labels on the training images (train and val)."""
    if split == "test":
        return cifar10(path, split=split)
    folder = _cifar_folder(path)
    data, clean = _read_cifar(folder, train=True)
    noisy = _human_labels(path, folder, human, labels, clean)
    index = _train_index(len(clean), split, val, split_seed)
    return SplitData(
        _normalise_cifar(data[index]),
        torch.from_numpy(noisy[index]),
        10,
        _cifar_class_names(folder),
        clean_labels=torch.from_numpy(clean[index]),
    )
