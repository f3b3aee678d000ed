"""Tune the hyperparameters of ``flatscope demo``: the noisy-label study's tuning, CNN only.

``flatscope demo`` trains ``cnn:width=8`` on digits with 40% symmetric label noise for 20
epochs, the protocol of ``benchmarks/noisy_label_study.py``, and takes its hyperparameters
(``flatscope.app.demo.TUNED``) from that study's tuning of the CNN: every optimizer gets the
same budget of 49 configurations (learning rates 0.01 to 0.8 x 7 values of its own
hyperparameter: SGD weight decay 0 to 2e-2, SAM rho 0.01 to 1, SGLD and fSGLD beta_inv 0, 1e-9,
1e-7, 1e-5, 1e-4, 1e-3, 1e-2 with fSGLD's sigma coupled; the grids are the study's,
``LEARNING_RATES["cnn"]`` and ``SECOND_AXIS``), each trained on 3 tuning seeds the demo does
not use, scored by the accuracy on the CLEAN labels of the validation split after the last epoch (no
early stopping). The test split is never read. This script runs only that part and prints the
table (winner, runner-up, margin with its paired standard error over the tuning seeds, grid
edge); its records are shared with the study's (``--out``), so either reuses what the other
trained.

    OMP_NUM_THREADS=1 python benchmarks/tune_demo.py [--workers 2] [--optimizers sgd sam fsgld]
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from noisy_label_study import (  # noqa: E402
    SECOND_AXIS,
    TUNING_COLUMNS,
    init_worker,
    tune,
)

from flatscope.io.tables import format_table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("figures/study"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per process")
    parser.add_argument("--optimizers", nargs="+", default=["sgd", "sam", "fsgld", "sgld"])
    args = parser.parse_args()
    unknown = [name for name in args.optimizers if name not in SECOND_AXIS]
    if unknown:
        parser.error(f"unknown optimizer {unknown[0]!r}; choose from {', '.join(SECOND_AXIS)}")
    with ProcessPoolExecutor(
        args.workers, initializer=init_worker, initargs=(args.threads,)
    ) as pool:
        results = tune(pool, args.out, args.optimizers, architectures=("cnn",))["cnn"]
    print(format_table(TUNING_COLUMNS, [result.row() for result in results], markdown=False))


if __name__ == "__main__":
    main()
