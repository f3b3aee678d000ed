"""``flatscope compare A B ... [--out DIR]`` or ``flatscope compare --group NAME=RUNS ...``:
reports or run directories side by side, or groups of runs (one per seed) at the optimizer
level."""

from __future__ import annotations

import argparse

HELP = "compare analysis reports or training runs, or groups of runs over seeds"

EPILOG = """\
inputs: report.json files, directories holding report.json, or run directories (their final
checkpoint's report: RUN_DIR/analysis/report.json or RUN_DIR/trajectory/reports/final/report.json).

groups (--group NAME=RUN_OR_GLOB or --group NAME RUN [RUN ...], repeatable): one run per seed;
prints the per-seed values and, for every pair of groups, the ratio of means over seeds with
its Fieller interval, Welch's two-sided p-value and the number of seeds (a verdict needs at
least 3 seeds per side and the same data, loss and label noise on both sides).

--matched-loss auto|LEVEL: also compare every run where its training loss (the exact loss of
its checkpoint analyses) first reaches a common level; needs checkpoints (flatscope train
--checkpoint-every N) analysed by: flatscope trajectory RUN --every 1.

examples:
  flatscope compare runs/sgd runs/fsgld --out comparison
  flatscope compare --group fsgld='runs/fsgld-seed*' --group sgd='runs/sgd-seed*' \\
      --matched-loss auto
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``flatscope compare``."""
    parser = subparsers.add_parser(
        "compare",
        help=HELP,
        description=HELP + ".",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "inputs", nargs="*", metavar="REPORT_OR_RUN", help="two or more (or use --group)"
    )
    parser.add_argument("--labels", nargs="+", metavar="NAME", help="column titles, in order")
    parser.add_argument(
        "--group",
        nargs="+",
        action="append",
        metavar="NAME=RUNS",
        help="a group of runs, one per seed: NAME=GLOB or NAME RUN [RUN ...] (repeatable)",
    )
    parser.add_argument(
        "--matched-loss",
        metavar="auto|LEVEL",
        help="also compare the runs at a common training loss (auto: the lowest every run reaches)",
    )
    parser.add_argument(
        "--confidence",
        type=float,
        default=0.95,
        help="level of the intervals over seeds; tests at 1 - level (default %(default)s)",
    )
    parser.add_argument(
        "--force", action="store_true", help="give verdicts across groups on different data"
    )
    parser.add_argument(
        "--out", metavar="DIR", help="write comparison.md, comparison.json and figures here"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the table (and notes); with ``--out`` write the files and figures."""
    from flatscope.app.compare import ERROR_NOTE, compare, write_comparison
    from flatscope.app.groups import SEED_NOTE, parse_group
    from flatscope.errors import FlatscopeError
    from flatscope.io.lock import output_lock

    if args.labels is not None and len(args.labels) != len(args.inputs):
        raise FlatscopeError(
            f"--labels gives {len(args.labels)} names for {len(args.inputs)} inputs"
        )
    groups = None
    if args.group:
        groups = dict(parse_group(tokens) for tokens in args.group)
        if len(groups) < len(args.group):
            raise FlatscopeError("--group: two groups have the same name")
    comparison = compare(
        args.inputs,
        args.labels,
        groups=groups,
        matched_loss=args.matched_loss,
        confidence=args.confidence,
        force=args.force,
    )
    print(comparison.table())
    print(SEED_NOTE if groups else ERROR_NOTE)
    for note in comparison.notes:
        print(f"note: {note}")
    if args.out is not None:
        with output_lock(args.out):
            written = write_comparison(comparison, args.out)
        print(f"wrote {len(written)} files to {args.out}")
    return 0
