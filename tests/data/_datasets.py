"""Shared helpers of the data tests: fake CIFAR-10 files, a pickled exploit, error bars."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import torch

from flatscope.data.cifar import CIFAR10_CLASSES
from flatscope.data.datasets import DataBundle


def binomial_bound(n: int, p: float) -> float:
    """Four standard deviations of a Binomial(n, p) count."""
    return 4 * math.sqrt(n * p * (1 - p))


def sorted_rows(*bundles: DataBundle) -> np.ndarray:
    """All (input, label) rows of the bundles as one lexicographically sorted float64 matrix."""
    rows = np.concatenate(
        [
            torch.cat([b.dataset.tensors[0].flatten(1), b.labels[:, None]], 1).double().numpy()
            for b in bundles
        ]
    )
    return rows[np.lexsort(rows.T[::-1])]


def legacy_numpy_names(payload: bytes) -> bytes:
    """Rename numpy 2's modules to the numpy 1 names that older pickles carry."""
    return payload.replace(b"numpy._core.", b"numpy.core.")


def _dump(path: Path, record: dict, protocol: int) -> None:
    payload = pickle.dumps(record, protocol=protocol)
    path.write_bytes(legacy_numpy_names(payload) if protocol == 2 else payload)


def write_fake_cifar(root: Path, protocol: int = 2, per_batch: int = 4, num_test: int = 3):
    """Five small training batches, a test batch and the meta file, as CIFAR-10 lays them out."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = num_test if name == "test_batch" else per_batch
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).tolist()
        record = {b"batch_label": name.encode(), b"labels": labels, b"data": data}
        _dump(folder / name, record, protocol)
        arrays[name] = (data, np.array(labels))
    meta = {b"label_names": [name.encode() for name in CIFAR10_CLASSES], b"num_vis": 3072}
    _dump(folder / "batches.meta", meta, protocol)
    train = [arrays[f"data_batch_{i}"] for i in range(1, 6)]
    return (
        np.concatenate([a[0] for a in train]),
        np.concatenate([a[1] for a in train]),
        arrays["test_batch"],
    )


class Exploit:
    def __init__(self, call, argument):
        self.call, self.argument = call, argument

    def __reduce__(self):
        return self.call, (self.argument,)
