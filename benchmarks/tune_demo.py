"""Tune the hyperparameters of ``flatscope demo`` honestly: one grid per optimizer, equal budget.

Every optimizer gets the same number of tries: 4 learning rates times 4 values of its own second
hyperparameter (16 configurations), each trained with the demo's exact protocol
(:func:`flatscope.app.demo.demo_config`: digits, 40% symmetric label noise, the demo CNN, cosine
schedule, momentum 0.9, batch 128) on tuning seeds that the demo does not use. A configuration
is scored by its accuracy on the CLEAN labels of the held-out validation split (359 images that
are never trained on) after the last epoch, averaged over the tuning seeds. The test split is
never looked at. Second hyperparameters:

- SGD: weight decay (SGD has no other knob; the others keep the demo's 5e-4),
- SAM: the radius rho,
- fSGLD and SGLD: the temperature beta_inv (fSGLD's sigma coupled, beta_inv^((1+eta)/4), eta 0.1).

The winners go into ``flatscope.app.demo.TUNED``. Runs that diverge score 0.

    python benchmarks/tune_demo.py [--seeds 100 101] [--optimizers sgd sam fsgld sgld] [--lrs ...]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time

import torch

from flatscope.app.demo import demo_config
from flatscope.training.trainer import TrainingError, train

LEARNING_RATES = (0.01, 0.02, 0.05, 0.1)
SECOND_AXIS = {
    "sgd": ("weight_decay", (1e-4, 5e-4, 2e-3, 5e-3)),
    "sam": ("rho", (0.02, 0.05, 0.1, 0.2)),
    "fsgld": ("beta_inv", (1e-7, 1e-6, 1e-5, 1e-4)),
    "sgld": ("beta_inv", (1e-7, 1e-6, 1e-5, 1e-4)),
}


def score(optimizer: str, settings: dict[str, float], seeds: list[int]) -> list[float]:
    """Final clean validation accuracy of each tuning seed (0 for a diverged run)."""
    accuracies = []
    for seed in seeds:
        config = demo_config(optimizer, seed, tuned=False, **settings)
        with tempfile.TemporaryDirectory() as out:
            try:
                accuracies.append(train(config, out).metrics[-1]["val_acc"])
            except TrainingError:
                accuracies.append(0.0)
    return accuracies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[100, 101])
    parser.add_argument("--optimizers", nargs="+", default=list(SECOND_AXIS))
    parser.add_argument("--lrs", type=float, nargs="+", default=list(LEARNING_RATES))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for optimizer in args.optimizers:
        name, values = SECOND_AXIS[optimizer]
        results = []
        start = time.perf_counter()
        for lr, value in itertools.product(args.lrs, values):
            settings = {"lr": lr, name: value}
            accuracies = score(optimizer, settings, args.seeds)
            results.append((statistics.mean(accuracies), settings, accuracies))
            seeds = " ".join(f"{100 * a:5.1f}" for a in accuracies)
            print(
                f"{optimizer:6s} lr={lr:<5g} {name}={value:<7g} val acc {100 * results[-1][0]:5.1f}"
                f"  (seeds: {seeds})",
                flush=True,
            )
        best = max(results, key=lambda item: item[0])
        print(
            f"{optimizer:6s} BEST {best[1]}  val acc {100 * best[0]:.1f}  "
            f"({time.perf_counter() - start:.0f} s)\n",
            flush=True,
        )


if __name__ == "__main__":
    main()
