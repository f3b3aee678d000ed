"""Run a function on several Gloo processes on localhost (loopback only), for the tests."""

from __future__ import annotations

import socket
from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _member(rank: int, world: int, port: int, work: Callable, args: tuple) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        torch.set_num_threads(1)
        work(rank, *args)
    finally:
        dist.destroy_process_group()


def run_on_gloo(work: Callable, world: int, *args: object) -> None:
    """Call ``work(rank, *args)`` in ``world`` forked processes joined in one Gloo group."""
    mp.start_processes(
        _member,
        args=(world, _free_port(), work, args),
        nprocs=world,
        join=True,
        start_method="fork",
    )
