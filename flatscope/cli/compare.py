"""``flatscope compare A B ... [--out DIR]``: reports or run directories side by side."""

from __future__ import annotations

import argparse

HELP = "compare analysis reports or training runs: shared metrics with error bars, figures"

EPILOG = """\
inputs: report.json files, directories holding report.json, or run directories (their final
checkpoint's report: RUN_DIR/analysis/report.json or RUN_DIR/trajectory/reports/final/report.json).

examples:
  flatscope compare runs/sgd runs/fsgld --out comparison
  flatscope compare sgd-analysis/report.json fsgld-analysis/report.json
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
    parser.add_argument("inputs", nargs="+", metavar="REPORT_OR_RUN", help="two or more")
    parser.add_argument("--labels", nargs="+", metavar="NAME", help="column titles, in order")
    parser.add_argument(
        "--out", metavar="DIR", help="write comparison.md, comparison.json and figures here"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the table of shared metrics; with ``--out`` write the files and figures."""
    from flatscope.app.compare import ERROR_NOTE, compare, write_comparison
    from flatscope.errors import FlatscopeError
    from flatscope.io.lock import output_lock

    if args.labels is not None and len(args.labels) != len(args.inputs):
        raise FlatscopeError(
            f"--labels gives {len(args.labels)} names for {len(args.inputs)} inputs"
        )
    comparison = compare(args.inputs, args.labels)
    print(comparison.table())
    print(ERROR_NOTE)
    for note in comparison.notes:
        print(f"note: {note}")
    if args.out is not None:
        with output_lock(args.out):
            written = write_comparison(comparison, args.out)
        print(f"wrote {len(written)} files to {args.out} (comparison.md has per-block traces)")
    return 0
