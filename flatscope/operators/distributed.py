"""Data-parallel reductions, re-exported from :mod:`flatscope.distributed` (their home since the
objective layer, which sits below the operators, all-reduces its sums with them)."""

from flatscope.distributed import (
    ShardSampler,
    all_reduce_sum,
    barrier,
    get_rank,
    get_world_size,
    init_from_environment,
    is_distributed,
    process_group,
    shard_batches,
)

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
