"""Data-parallel reductions for Hessian products under ``torch.distributed``.

When a process group is initialised, each rank holds a shard of the data. A product is then

    H V = (sum over ranks r of sum over local batches b of n_b H_b V) / (sum over ranks of N_r),

so every rank computes its local weighted sum, and one ``all_reduce`` of the sums (and, once,
of the sample counts) gives every rank the product for the mean loss over the whole dataset.
The probe vectors must agree across ranks: flatscope's estimators draw them from generators
seeded identically on every rank, so no broadcast is needed, and every rank then runs the same
deterministic recurrence (Lanczos included) on identical reduced products.

DDP does not synchronise second-order gradients: give :class:`HessianOperator` the unwrapped
module (``ddp_model.module``), never the ``DistributedDataParallel`` wrapper.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sized

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

__all__ = [
    "is_distributed",
    "get_rank",
    "get_world_size",
    "all_reduce_sum",
    "barrier",
    "shard_batches",
    "init_from_environment",
    "process_group",
    "ShardSampler",
]


def is_distributed() -> bool:
    """True when a process group with more than one rank is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    """This process's rank (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    """The number of ranks (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all ranks in place (a no-op in a single process); returns it."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def shard_batches(batches: list) -> list:
    """This rank's share of a list of batches: every ``world``-th one, from its rank on.

    With the operator's all-reduced, sample-weighted sums this covers every sample once, for
    any batch sizes (the whole list in a single process).
    """
    return batches[get_rank() :: get_world_size()]


def barrier() -> None:
    """Wait for every rank (a no-op in a single process)."""
    if is_distributed():
        dist.barrier()


def init_from_environment(device: str | None) -> bool:
    """Join the process group described by ``torchrun``'s environment, if there is one.

    Uses NCCL for CUDA devices and Gloo otherwise; returns whether a group was initialised
    here (the caller then destroys it when done).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return False
    cuda = device is not None and str(device).startswith("cuda")
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo")
    return True


@contextlib.contextmanager
def process_group(device: str | None) -> Iterator[None]:
    """Inside ``torchrun`` (``WORLD_SIZE`` > 1), a process group joined for the block (see
    :func:`init_from_environment`) and destroyed after it; elsewhere nothing happens."""
    joined = init_from_environment(device)
    try:
        yield
    finally:
        if joined:
            dist.destroy_process_group()


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, rank + 2 world, ...``: a fixed, unpadded, unshuffled shard.

    Unlike ``DistributedSampler``, no sample is repeated to even out the shards, so the
    all-reduced sums count every sample exactly once and uneven shards are weighted correctly.
    """

    def __init__(self, data: Sized, rank: int | None = None, world: int | None = None) -> None:
        self.num_samples_total = len(data)
        self.rank = get_rank() if rank is None else rank
        self.world = get_world_size() if world is None else world
        if not 0 <= self.rank < self.world:
            raise ValueError(f"rank {self.rank} is outside a world of size {self.world}")

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.num_samples_total, self.world))

    def __len__(self) -> int:
        return len(range(self.rank, self.num_samples_total, self.world))
