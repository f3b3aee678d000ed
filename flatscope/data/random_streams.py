"""Seeded random streams of the data pipeline: one torch generator per ``(seed, stream)``.

Every random choice of the data pipeline (label noise, subsets, shuffling) draws from its own
generator, seeded from the user's ``seed`` and a fixed stream number through
``numpy.random.SeedSequence``, never from global random state.
"""

from __future__ import annotations

import numpy as np
import torch

from flatscope.data.errors import DataError

__all__ = ["NOISE_STREAM", "SHUFFLE_STREAM", "SUBSET_STREAM", "check_seed", "stream_generator"]

NOISE_STREAM, SUBSET_STREAM, SHUFFLE_STREAM = 1, 2, 3


def check_seed(seed: int, what: str = "seed") -> int:
    """``seed`` when it is a non-negative integer; else a :class:`DataError` naming ``what``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DataError(f"{what} must be a non-negative integer, got {seed!r}")
    return seed


def stream_generator(seed: int, *stream: int) -> torch.Generator:
    """A torch generator for one named random stream of ``seed`` (via ``numpy.SeedSequence``)."""
    state = np.random.SeedSequence([check_seed(seed), *stream]).generate_state(1, np.uint64)
    return torch.Generator().manual_seed(int(state[0]))
