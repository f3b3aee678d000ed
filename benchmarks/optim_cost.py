"""Cost of one training step with SGD, SGLD, fSGLD and SAM, side by side in one run.

Every optimizer trains its own copy of the same model (same initial weights) on the same fixed
batch of 128 random images through the closure interface (zero grads, forward, cross-entropy,
backward, update). Steps are timed one by one and interleaved (one step of each optimizer per
round, the order rotating between rounds), so load on the machine hits all alike; the medians
are compared as ratios:

- fSGLD / SGD: the price of the weight perturbation and the Langevin noise (target <= 1.10),
- SAM / fSGLD: SAM's second forward-backward pass (target >= 1.7).

Models: ``cnn`` is the zoo's small CNN on digits-sized 1x8x8 images; ``resnet`` a thin
ResNet-18 (width 16) on 3x32x32 images.

    python benchmarks/optim_cost.py [--model cnn|resnet] [--device cpu] [--steps 300] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.optim import Optimizer

from flatscope.models.zoo import build_model
from flatscope.optim import FSGLD, SAM, SGLD

MODELS = {"cnn": ("cnn", (1, 8, 8)), "resnet": ("resnet18:width=16", (3, 32, 32))}
LR, MOMENTUM, WEIGHT_DECAY, BETA_INV, RHO = 0.05, 0.9, 5e-4, 1e-8, 0.05


def make_optimizers(spec: str, device: torch.device) -> dict[str, tuple[nn.Module, Optimizer]]:
    """Each optimizer with its own copy of the model, all with the same initial weights."""
    common = {"lr": LR, "momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY}
    factories: dict[str, Callable[[list], Optimizer]] = {
        "SGD": lambda p: torch.optim.SGD(p, **common),
        "SGLD": lambda p: SGLD(p, beta_inv=BETA_INV, seed=0, **common),
        "fSGLD": lambda p: FSGLD(p, beta_inv=BETA_INV, seed=0, **common),
        "SAM": lambda p: SAM(p, rho=RHO, **common),
    }
    setups = {}
    for name, factory in factories.items():
        model = build_model(spec, seed=0).to(device).train()
        setups[name] = (model, factory(list(model.parameters())))
    return setups


def make_closure(model: nn.Module, optimizer: Optimizer, batch) -> Callable[[], torch.Tensor]:
    """Zero the gradients, forward, cross-entropy, backward, return the loss."""
    inputs, targets = batch

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(inputs), targets)
        loss.backward()
        return loss

    return closure


def time_step(
    optimizer: Optimizer, closure: Callable[[], torch.Tensor], device: torch.device
) -> float:
    """Seconds for one training step ``optimizer.step(closure)``."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    optimizer.step(closure)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def interleaved_step_times(
    setups: dict[str, tuple[nn.Module, Optimizer]],
    batch: tuple[torch.Tensor, torch.Tensor],
    device: torch.device,
    steps: int,
    warmup: int,
) -> dict[str, list[float]]:
    """Seconds of each of ``steps`` timed steps per optimizer, after ``warmup`` untimed ones;
    one step of each optimizer per round, the order rotating between rounds."""
    closures = {
        name: (opt, make_closure(model, opt, batch)) for name, (model, opt) in setups.items()
    }
    names = list(closures)
    for name in names:  # warm-up: allocator, kernels, momentum buffers, work buffers
        for _ in range(warmup):
            time_step(*closures[name], device)
    times: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(steps):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(time_step(*closures[name], device))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="cnn")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=300, help="timed steps per optimizer")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps per optimizer")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    spec, shape = MODELS[args.model]
    generator = torch.Generator().manual_seed(0)
    batch = (
        torch.randn(args.batch_size, *shape, generator=generator).to(device),
        torch.randint(0, 10, (args.batch_size,), generator=generator).to(device),
    )
    setups = make_optimizers(spec, device)
    times = interleaved_step_times(setups, batch, device, args.steps, args.warmup)
    names = list(times)

    num_params = sum(p.numel() for p in setups["SGD"][0].parameters())
    image = "x".join(map(str, shape))
    print(
        f"model {spec} ({num_params:,} parameters), batch {args.batch_size}x{image}, "
        f"device {device}, threads {torch.get_num_threads()}, "
        f"median of {args.steps} interleaved steps each"
    )
    median = {name: statistics.median(values) for name, values in times.items()}
    for name in names:
        low, high = statistics.quantiles(times[name], n=4)[::2]
        print(
            f"  {name:6s} {1e3 * median[name]:8.3f} ms/step  "
            f"(quartiles {1e3 * low:.3f} .. {1e3 * high:.3f})"
        )
    print(f"fSGLD / SGD  = {median['fSGLD'] / median['SGD']:.3f}   (target <= 1.10)")
    print(f"SGLD  / SGD  = {median['SGLD'] / median['SGD']:.3f}")
    print(f"SAM / fSGLD  = {median['SAM'] / median['fSGLD']:.3f}   (target >= 1.7)")


if __name__ == "__main__":
    main()
