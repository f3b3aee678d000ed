"""Papyan's outliers: the GGN of a trained classifier with C classes has about C large
eigenvalues above its bulk.

Trains the demo's CNN (``flatscope demo``: ``cnn:width=8`` on ``digits``, 10 classes, the
demo's tuned SGD protocol) with clean labels, then prints the top ``--k`` eigenvalues of the
generalized Gauss-Newton matrix and of the Hessian on ``--subset`` training samples, with their
Lanczos residual bounds, and the gap between the C-th and the (C+1)-th GGN eigenvalue (Papyan,
"Measurements of three-level hierarchical structure in the outliers in the spectrum of deepnet
Hessians", ICML 2019; "Traces of class/cross-class structure pervade deep learning spectra",
JMLR 2020: the outliers come from the class means of the logit gradients, C of them, or C - 1
with softmax's shift invariance).

    OMP_NUM_THREADS=1 python benchmarks/ggn_outliers.py [--epochs 10] [--subset 512] [--k 15]
"""

from __future__ import annotations

import argparse
import tempfile

import torch

import flatscope as fs
from flatscope.app.demo import demo_config
from flatscope.data import load_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--subset", type=int, default=512)
    parser.add_argument("--k", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        config = demo_config("sgd", args.seed, args.epochs, label_noise=None)
        run = fs.train(config, folder)
    data = load_data("digits", "train", subset=args.subset, seed=args.seed, batch_size=256)
    objective = fs.Objective(run.model, torch.nn.CrossEntropyLoss(), data.batches())
    print(
        f"demo CNN ({config.model}), {args.epochs} epochs of SGD on clean digits; "
        f"{objective.num_samples} training samples, d = {objective.dim}, "
        f"loss {objective.loss():.4f}"
    )
    results = {}
    for name, operator in (
        ("GGN", fs.GGNOperator(objective)),
        ("Hessian", fs.HessianOperator(objective)),
    ):
        results[name] = fs.eigenvalues(operator, args.k, "largest", tol=1e-4, seed=args.seed)
    print(
        f"{'rank':>4} {'GGN eigenvalue':>15} {'residual':>9} {'Hessian eigenvalue':>19} "
        f"{'residual':>9}"
    )
    for rank in range(args.k):
        ggn, hessian = results["GGN"], results["Hessian"]
        print(
            f"{rank + 1:>4} {ggn.values[rank]:>15.5g} {ggn.residuals[rank]:>9.2g} "
            f"{hessian.values[rank]:>19.5g} {hessian.residuals[rank]:>9.2g}"
        )
    values = results["GGN"].values
    for c in (9, 10):
        print(f"GGN lambda_{c} / lambda_{c + 1} = {float(values[c - 1] / values[c]):.2f}")
    print(
        f"converged: GGN {results['GGN'].converged}, Hessian {results['Hessian'].converged}; "
        f"products: GGN {results['GGN'].num_matvecs}, Hessian {results['Hessian'].num_matvecs}"
    )


if __name__ == "__main__":
    main()
