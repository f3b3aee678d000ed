"""Memory measurements that size Hessian products: graph bytes and the memory left on a device.

Two numbers decide how products run (see :mod:`flatscope.operators.hessian`):

- the bytes of the autograd graph of one data batch, measured while the graph is built: on CUDA
  the growth of ``torch.cuda.memory_allocated``; elsewhere the bytes of the distinct tensor
  storages that autograd saves for the backward pass (``torch.autograd.graph.saved_tensors_hooks``),
  the parameters' own storage excluded. Saved tensors are what a graph keeps alive: activations,
  and with ``create_graph=True`` the intermediate results of the first backward pass;
- the memory available on the device: ``torch.cuda.mem_get_info`` on CUDA, ``MemAvailable`` of
  ``/proc/meminfo`` on Linux, the free physical pages elsewhere, :data:`UNKNOWN_AVAILABLE` if the
  system does not say.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch

__all__ = ["GraphBytes", "measure_graph_bytes", "available_memory", "UNKNOWN_AVAILABLE"]

UNKNOWN_AVAILABLE = 1 << 30  # bytes assumed available where the system does not report it


@dataclass
class GraphBytes:
    """The result of :func:`measure_graph_bytes`: ``bytes`` is final when the block exits."""

    bytes: int = 0


def _storage_key(t: torch.Tensor) -> tuple[int, int]:
    try:
        storage = t.untyped_storage()
        return storage.data_ptr(), storage.nbytes()
    except (RuntimeError, NotImplementedError):  # tensors without a plain storage
        return id(t), t.numel() * t.element_size()


@contextlib.contextmanager
def measure_graph_bytes(device: torch.device, exclude: torch.Tensor) -> Iterator[GraphBytes]:
    """Measure the memory that the autograd graph built inside the block keeps alive.

    ``exclude`` (the leaf the graph differentiates, whose storage exists anyway) is not counted.
    """
    result = GraphBytes()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        yield result
        torch.cuda.synchronize(device)
        result.bytes = max(0, torch.cuda.memory_allocated(device) - before)
        return
    seen = {_storage_key(exclude)[0]}

    def pack(t: torch.Tensor) -> torch.Tensor:
        key, nbytes = _storage_key(t)
        if key not in seen:
            seen.add(key)
            result.bytes += nbytes
        # detached (autograd restores the metadata on unpacking): a saved output packed with
        # its own grad_fn would keep its node alive through a reference cycle that Python's
        # collector cannot see, and the graph would leak
        return t.detach()

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield result


def available_memory(device: torch.device) -> int:
    """Bytes of memory available for new allocations on ``device`` right now."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return UNKNOWN_AVAILABLE
