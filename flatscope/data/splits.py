"""One split of a built-in dataset in memory, and the fixed seeded train/val/test partition."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from flatscope.data.random_streams import check_seed

__all__ = ["SplitData", "split_indices"]


@dataclass(frozen=True)
class SplitData:
    """A built-in dataset's split in memory; ``clean_labels`` when ``labels`` are noisy."""

    inputs: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    class_names: tuple[str, ...] | None = None
    clean_labels: torch.Tensor | None = None


def split_indices(n: int, split: str, split_seed: int, n_val: int, n_test: int) -> np.ndarray:
    """Sorted indices of ``split`` under a fixed permutation: test first, then val, then train."""
    order = np.random.default_rng(check_seed(split_seed, "split_seed")).permutation(n)
    bounds = {"test": (0, n_test), "val": (n_test, n_test + n_val), "train": (n_test + n_val, n)}
    start, stop = bounds[split]
    return np.sort(order[start:stop])
