"""Graph-memory measurement: what a graph saves is counted once, and the graph is not kept."""

from __future__ import annotations

import gc
import weakref

import torch

from flatscope.operators.memory import available_memory, measure_graph_bytes

CPU = torch.device("cpu")


def test_saved_tensors_are_counted_once_and_the_leaf_not_at_all():
    x = torch.randn(64, 32, dtype=torch.float64)
    w = torch.randn(32, 16, dtype=torch.float64, requires_grad=True)
    with measure_graph_bytes(CPU, w) as size:
        h = torch.tanh(x @ w)  # mm saves x (and the leaf w); tanh saves its output h
        loss = (h * h).sum()  # saves h again (one storage, counted once)
    assert size.bytes == x.nbytes + h.nbytes
    loss.backward()
    assert w.grad is not None


def test_measuring_a_graph_does_not_keep_it_alive():
    x = torch.randn(64, 32)
    w = torch.randn(32, 16, requires_grad=True)
    with measure_graph_bytes(CPU, w):
        h = torch.tanh(x @ w)  # a saved output: packed with its own grad_fn it would leak
        loss = h.sum()
    ref = weakref.ref(h)
    del h, loss
    gc.collect()
    assert ref() is None


def test_available_memory_is_positive():
    assert available_memory(CPU) > 0
