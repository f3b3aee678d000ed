"""The fSGLD paper's noisy-label setting: ResNet-34 on CIFAR-10N "worse" labels, 150 epochs.

Bruno, Hwang, An, Sabanis, Lim (arXiv:2510.02174) train a CIFAR ResNet-34 (``resnet34``,
width 64, 21.3M parameters) on the CIFAR-10 training images with the CIFAR-10N human labels
``worse_label`` (about 40% of them wrong) for 150 epochs and report clean test accuracy and
Hessian spectra. This script runs that setting with flatscope, for SGD, SAM and fSGLD, several
seeds each, and then asks the questions of ``benchmarks/noisy_label_study.py``: clean test
accuracy, raw trace, scaled trace tr(D H D), adaptive sharpness and top eigenvalue, at the final
checkpoint and at matched training loss, each ratio with its Fieller interval and Welch's test
over seeds. It needs a GPU (about 150 epochs x 3 optimizers x seeds; SAM costs two gradients per
step) and the data:

- the python version of CIFAR-10 (``cifar-10-batches-py``, as ``torchvision.datasets.CIFAR10(
  root, download=True)`` leaves it) under ``DATA``;
- ``CIFAR-10_human.pt`` from the CIFAR-N release (github.com/UCSC-REAL/cifar-10-100n) in
  ``DATA`` (or ``--human FILE``); flatscope reads it without unpickling code
  (:func:`flatscope.data.cifar.cifar10n`).

The hyper-parameters below are common choices for this setting (batch 128, momentum 0.9, weight
decay 5e-4, cosine schedule, lr 0.1; SAM rho 0.1; fSGLD beta_inv 1e-8 with sigma coupled,
``beta_inv^((1 + eta)/4)``, eta 0.1), not values tuned here: check them against the paper's
appendix, or tune each optimizer on ``--val`` held-out training images (the validation accuracy
is on their clean labels) with the same budget before reading the test column. 5,000 training
images are held out by default, so the models see 45,000; ``--val 0`` trains on all 50,000 as
the paper does. The paper's own accuracy is not copied here: the printed column points to it.

    python benchmarks/paper_recipe_cifar10n.py --data DATA --device cuda [--seeds 3] [--out DIR]

Rerunning with the same ``--out`` reuses finished runs and analyses.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from noisy_label_study import (  # noqa: E402
    analyse_run,
    group_results,
    matched_task,
    matched_work,
    setting_tables,
)

from flatscope.io.atomic import atomic_write  # noqa: E402
from flatscope.training.trainer import TrainConfig, train  # noqa: E402

OPTIMIZERS = {
    "sgd": {"lr": 0.1},
    "sam": {"lr": 0.1, "rho": 0.1},
    "fsgld": {"lr": 0.1, "beta_inv": 1e-8},
}
NAMES = {"sgd": "SGD", "sam": "SAM", "fsgld": "fSGLD"}
PAIRS = (("fsgld", "sgd"), ("fsgld", "sam"), ("sam", "sgd"))
#: What the paper reports for each row; its numbers are not copied here.
PAPER_COLUMN = (
    "paper: clean test acc %",
    {name: "see arXiv:2510.02174, CIFAR-10N (worse) table" for name in OPTIMIZERS},
)


def recipe_config(optimizer: str, seed: int, args: argparse.Namespace) -> TrainConfig:
    """One run of the recipe."""
    human = f",human={args.human}" if args.human else ""
    return TrainConfig.create(
        optimizer=optimizer,
        model=f"resnet34:width={args.width}",
        data=f"cifar10n:{args.data},labels={args.labels},val={args.val}{human}",
        epochs=args.epochs,
        batch_size=args.batch_size,
        schedule="cosine",
        momentum=0.9,
        weight_decay=5e-4,
        seed=seed,
        device=args.device,
        checkpoint_every=args.checkpoint_every,
        **OPTIMIZERS[optimizer],
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder with CIFAR-10 and CIFAR-10_human.pt")
    parser.add_argument("--human", default=None, help="the CIFAR-10N label file, if elsewhere")
    parser.add_argument("--labels", default="worse", help="CIFAR-10N label set (%(default)s)")
    parser.add_argument("--out", type=Path, default=Path("cifar10n-recipe"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--seeds", type=int, default=3, help="seeds per optimizer (>= 3)")
    parser.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS))
    parser.add_argument("--val", type=int, default=5000, help="held-out training images")
    parser.add_argument("--width", type=int, default=64, help="ResNet width (64: the paper's)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--checkpoint-every", type=int, default=10)
    parser.add_argument("--subset", type=int, default=2048, help="training images analysed")
    parser.add_argument("--num-matvecs", type=int, default=60, help="Hutch++ products")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> str:
    """Train, analyse and compare; returns (and prints, and writes) the markdown tables."""
    args = parse_args(argv)
    start = time.perf_counter()
    analysis = {
        "inputs": {"subset": args.subset},
        "num_matvecs": args.num_matvecs,
        "top_k": 1,
        "eig_tol": 1e-2,
        "device": args.device,
        "progress": sys.stderr.isatty(),
        "figures": False,
    }
    groups: dict[str, list[Path]] = {name: [] for name in args.optimizers}
    for seed in range(args.seeds):
        for name in args.optimizers:
            folder = args.out / "runs" / f"{name}-seed{seed}"
            train(
                recipe_config(name, seed, args), folder, resume=True, progress=analysis["progress"]
            )
            analyse_run(folder, analysis)
            groups[name].append(folder)
    _, work = matched_work([folder for folders in groups.values() for folder in folders])
    for folder, checkpoints in work:
        matched_task(folder, checkpoints, analysis)
    pairs = [(a, b) for a, b in PAIRS if a in groups and b in groups]
    result = group_results(groups, pairs)
    title = (
        f"resnet34:width={args.width}, CIFAR-10N {args.labels} labels, {args.epochs} epochs, "
        f"{args.seeds} seed(s)"
    )
    text = setting_tables(title, result, True, NAMES, PAPER_COLUMN)
    text += f"\n\nWall time: {time.perf_counter() - start:.0f} s.\n"
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out / "results.md", lambda file: file.write(text.encode()))
    print(text)
    return text


if __name__ == "__main__":
    main()
