"""Trained networks and their exact float64 Hessians, for calibrating the estimators.

A network is trained by flatscope's own trainer with the demo's protocol (digits with 40%
symmetric label noise, cosine schedule, the tuned hyper-parameters of
:func:`flatscope.app.demo.demo_config`), then its Hessian is formed densely over a fixed subset
of the training set with its noisy labels, in eval mode, with
``torch.autograd.functional.hessian`` (not ``torch.func.hessian``, wrong for some layers in
torch 2.13) and checked against a :class:`~flatscope.operators.HessianOperator` product. The
benchmarks import this module too, so that tests and benchmarks score the estimators on the
same networks.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.autograd.functional import hessian
from torch.func import functional_call

from flatscope.app.demo import demo_config
from flatscope.data.datasets import load_data
from flatscope.io import load_checkpoint
from flatscope.models.losses import build_loss
from flatscope.operators import HessianOperator, unflatten
from flatscope.training import train

F64 = torch.float64


@dataclass
class TrainedNetwork:
    """A trained network (float64, eval mode) and its analysis data.

    Attributes:
        name: ``model / optimizer``.
        model: the network.
        inputs, targets: the analysis samples (training images with the labels trained on).
        loss_fn: the training loss.
    """

    name: str
    model: torch.nn.Module
    inputs: torch.Tensor
    targets: torch.Tensor
    loss_fn: torch.nn.Module

    def operator(self, dtype: torch.dtype = F64) -> HessianOperator:
        """The Hessian of the mean loss over the analysis samples, matrix-free."""
        data = [(self.inputs.to(dtype), self.targets)]
        return HessianOperator(self.model, self.loss_fn, data, dtype=dtype)


@dataclass
class TrainedHessian:
    """A trained network's exact Hessian over its analysis data.

    Attributes:
        name: ``model / optimizer``.
        matrix: the dense ``(d, d)`` Hessian (float64, symmetrised).
        blocks: ``{parameter name: slice}`` of the flat parameter vector.
    """

    name: str
    matrix: torch.Tensor
    blocks: dict[str, slice]


def trained_network(
    model: str, optimizer: str = "sgd", *, epochs: int = 30, samples: int = 512, seed: int = 0
) -> TrainedNetwork:
    """Train ``model`` (a zoo spec) with ``optimizer`` by the demo protocol; keep ``samples``
    training images with their noisy labels for the analysis."""
    config = demo_config(optimizer, seed, epochs, model=model)
    with tempfile.TemporaryDirectory() as out:
        run = train(config, out)
        labels = load_checkpoint(run.checkpoint).metadata["extra"]["train_labels"]
    bundle = load_data(config.data, "train", labels=labels, subset=samples, seed=0)
    x, y = (torch.cat(t) for t in zip(*bundle.batches(), strict=True))
    net = run.model.to(F64).eval()
    return TrainedNetwork(f"{model} / {optimizer}", net, x.to(F64), y, build_loss(config.loss))


def _dense_hessian(network: TrainedNetwork, vectorize: bool) -> tuple[torch.Tensor, dict]:
    net, x, y = network.model, network.inputs, network.targets
    params = {name: p.detach() for name, p in net.named_parameters()}
    flat = torch.cat([p.reshape(-1) for p in params.values()])

    def loss(w: torch.Tensor) -> torch.Tensor:
        return network.loss_fn(functional_call(net, unflatten(w, params), (x,)), y)

    H = hessian(loss, flat, vectorize=vectorize)
    H = (H + H.mT) / 2
    operator = network.operator()
    v = torch.randn(flat.numel(), generator=torch.Generator().manual_seed(0), dtype=F64)
    mismatch = float((operator @ v - H @ v).norm() / (H @ v).norm())
    if mismatch > 1e-10:
        raise AssertionError(f"dense Hessian and HessianOperator differ by {mismatch:.1e}")
    return H, operator.blocks


def trained_hessian(
    model: str,
    optimizer: str = "sgd",
    *,
    epochs: int = 30,
    samples: int = 512,
    seed: int = 0,
    vectorize: bool = False,
    cache: Path | None = None,
) -> TrainedHessian:
    """Train ``model`` (a zoo spec) with ``optimizer`` by the demo protocol and return the
    exact Hessian of the mean loss over ``samples`` training images with their noisy labels.

    ``vectorize=True`` forms all Hessian columns in one vmapped pass (fast for small models and
    subsets; memory ``d`` times one backward pass). With ``cache`` (a folder) the matrix is kept
    there and read back on the next call with the same arguments.
    """
    name = f"{model} / {optimizer}"
    key = f"{model}-{optimizer}-e{epochs}-n{samples}-s{seed}"
    path = None if cache is None else Path(cache) / (key.replace(":", "_") + ".pt")
    if path is not None and path.exists():
        stored = torch.load(path, weights_only=True)
        blocks = {block: slice(a, b) for block, (a, b) in stored["blocks"].items()}
        return TrainedHessian(name, stored["matrix"], blocks)
    network = trained_network(model, optimizer, epochs=epochs, samples=samples, seed=seed)
    H, blocks = _dense_hessian(network, vectorize)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        spans = {block: (s.start, s.stop) for block, s in blocks.items()}
        torch.save({"matrix": H, "blocks": spans}, path)
    return TrainedHessian(name, H, blocks)
