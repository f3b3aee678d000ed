"""Data-parallel Hessian products: time with 1 and 2 Gloo processes, and the communication share.

Every rank builds the zoo's small CNN and its shard of scikit-learn's digits (ShardSampler),
then times ``op @ V`` (``--probes`` columns) over ``--repeats`` repeats, and separately the
all-reduce of a tensor the size of the product (the only communication a product does).

    python benchmarks/distributed.py [--processes 1 2] [--probes 8] [--repeats 3]

On one machine the processes share its cores: set ``--threads`` so that processes x threads
does not exceed the core count, or the comparison measures oversubscription.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import DataLoader

import flatscope as fs
from flatscope.data import load_data
from flatscope.models import build_model
from flatscope.operators.distributed import ShardSampler, all_reduce_sum


def _timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        dist.barrier()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _worker(rank: int, world: int, port: int, args: argparse.Namespace, queue) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    torch.set_num_threads(args.threads)
    model = build_model(f"cnn:width={args.width}", seed=0)
    bundle = load_data("digits", "train")
    loader = DataLoader(bundle.dataset, batch_size=256, sampler=ShardSampler(bundle.dataset))
    op = fs.HessianOperator(model, nn.CrossEntropyLoss(), loader)
    V = torch.randn(op.shape[0], args.probes, generator=torch.Generator().manual_seed(0))
    op @ V  # warm-up
    product = _timed(lambda: op @ V, args.repeats)
    reduce = _timed(lambda: all_reduce_sum(torch.zeros_like(V)), args.repeats)
    if rank == 0:
        queue.put((op.shape[0], op.num_samples, product, reduce))
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--probes", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--width", type=int, default=16)
    args = parser.parse_args()

    queue = mp.get_context("fork").SimpleQueue()
    rows = []
    for world in args.processes:
        mp.start_processes(
            _worker, args=(world, _free_port(), args, queue), nprocs=world, start_method="fork"
        )
        rows.append((world, *queue.get()))
    d, n = rows[0][1], rows[0][2]
    print(
        f"cnn:width={args.width}, d = {d}, {n} samples, {args.probes} probes per product, "
        f"{args.threads} thread(s) per process, median of {args.repeats}"
    )
    print(
        f"{'processes':>9s} {'product s':>10s} {'all-reduce s':>13s} {'comm share':>10s} "
        f"{'speed-up':>8s}"
    )
    base = rows[0][3]
    for world, _, _, product, reduce in rows:
        print(
            f"{world:9d} {product:10.3f} {reduce:13.4f} {reduce / product:10.1%} "
            f"{base / product:8.2f}"
        )


if __name__ == "__main__":
    main()
