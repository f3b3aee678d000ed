"""The per_layer metric against dense float64 block Hessians of a tiny layered model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from flatscope.app.analyze import analyze, summary
from flatscope.io.tables import format_number
from flatscope.metrics.per_layer import layer_blocks, layer_of
from tests.operators.test_hessian import _dense_hessian

F64 = torch.float64


class Layered(nn.Module):
    """Names like a transformer's: ``model.embed.*``, ``model.layers.{0,1}.{up,down}.*``,
    ``head.*``."""

    def __init__(self) -> None:
        super().__init__()
        self.model = nn.Module()
        self.model.embed = nn.Linear(3, 4)
        self.model.layers = nn.ModuleList(
            nn.ModuleDict({"up": nn.Linear(4, 5), "down": nn.Linear(5, 4)}) for _ in range(2)
        )
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.model.embed(x))
        for layer in self.model.layers:
            h = h + layer["down"](torch.tanh(layer["up"](h)))
        return self.head(h)


def test_layer_names_by_depth():
    assert layer_of("model.layers.3.mlp.up.weight", 0) == "model.layers.3"
    assert layer_of("model.layers.3.mlp.up.weight", 2) == "model.layers"
    assert layer_of("fc.weight", 0) == "fc" and layer_of("bias", 0) == "bias"
    blocks = {"a.0.w": slice(0, 2), "a.0.b": slice(2, 3), "b.w": slice(3, 5), "a.0.c": slice(5, 6)}
    assert layer_blocks(blocks, 0) == {"a.0": slice(0, 3), "b": slice(3, 5), "a.0#2": slice(5, 6)}


def test_traces_and_top_eigenvalues_match_dense_block_hessians():
    torch.manual_seed(0)
    model = Layered().to(F64)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(24, 3, generator=g, dtype=F64), torch.randint(0, 3, (24,), generator=g)
    settings = {"dtype": "float64", "num_matvecs": 40, "eig_tol": 1e-6, "seed": 2}
    report = analyze(model, "cross_entropy", [(x[:16], y[:16]), (x[16:], y[16:])],
                     "trace,per_layer", progress=False, **settings)  # fmt: skip
    entry = report.metrics["per_layer"]
    hessian = _dense_hessian(model, nn.CrossEntropyLoss(), x, y)
    names = [n for n, _ in model.named_parameters()]
    sizes = [p.numel() for p in model.parameters()]
    starts = torch.tensor([0, *sizes]).cumsum(0).tolist()
    expected_layers = ["model.embed", "model.layers.0", "model.layers.1", "head"]
    assert list(entry["layers"]) == expected_layers
    per_tensor = report.metrics["hessian_trace"]["per_block"]
    for layer, numbers in entry["layers"].items():
        members = [i for i, n in enumerate(names) if layer_of(n, 0) == layer]
        index = torch.cat([torch.arange(starts[i], starts[i + 1]) for i in members])
        block = hessian[index][:, index]
        assert numbers["size"] == len(index)
        exact_trace = float(block.trace())
        assert abs(numbers["trace"] - exact_trace) <= 4 * numbers["trace_stderr"] + 1e-10
        # the same probes as the trace metric's: the layer's trace is its tensors' sum
        summed = sum(per_tensor[names[i]][0] for i in members)
        assert numbers["trace"] == pytest.approx(summed, rel=1e-10, abs=1e-12)
        top = float(torch.linalg.eigvalsh(block)[-1])
        assert abs(numbers["top_eigenvalue"] - top) <= numbers["residual"] + 1e-6 * abs(top)
        assert numbers["converged"]
    assert entry["num_matvecs"] > 40
    # the summary prints one row per layer: its size, block trace and block lambda_max
    table = summary(report).split("per_layer (hutchpp):\n")[1].splitlines()
    assert table[0].split() == ["layer", "parameters", "block", "trace", "block", "lambda_max"]
    for row, (layer, numbers) in zip(table[1:], entry["layers"].items(), strict=True):
        assert row.split()[:2] == [layer, str(numbers["size"])]
        assert row.split()[-1] == format_number(numbers["top_eigenvalue"])
