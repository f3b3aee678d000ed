"""``flatscope demo``: SGD, SAM, fSGLD and SGLD on noisy digits, trained, analysed, compared."""

from __future__ import annotations

import argparse

HELP = "train SGD, SAM, fSGLD and SGLD on noisy digits and compare their Hessians"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``flatscope demo``."""
    parser = subparsers.add_parser(
        "demo",
        help=HELP,
        description=HELP
        + ". Prints one table (clean test accuracy, train loss, raw and scaled Hessian trace, "
        "top eigenvalue, seconds per epoch; mean ± sd over 5 seeds), fSGLD / SGD and fSGLD / SAM "
        "ratios with intervals over seeds, and writes figures and report.md into --out. "
        "About 12 minutes on a busy 2-core machine; --quick under 2 minutes. "
        "benchmarks/noisy_label_study.py adds matched loss, a second architecture and noise.",
    )
    parser.add_argument("--out", default="flatscope-demo", help="output directory (%(default)s)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1 seed, 10 epochs, smaller analysis, no test over seeds",
    )
    parser.add_argument("--seeds", type=int, default=None, help="seeds per optimizer")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument("--epochs", type=int, default=None, help=argparse.SUPPRESS)
    parser.set_defaults(run=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo with the chosen plan and print its table."""
    from flatscope.app.demo import FULL, QUICK, main_demo, with_seeds
    from flatscope.errors import FlatscopeError
    from flatscope.io.lock import output_lock

    for name in ("seeds", "epochs"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise FlatscopeError(f"--{name} must be a positive integer, got {value}")
    plan = with_seeds(QUICK if args.quick else FULL, args.seeds, args.epochs)
    with output_lock(args.out):
        main_demo(args.out, plan, quiet=args.quiet)
    return 0
