"""``flatscope trajectory RUN_DIR [--every N] [--out DIR]``: flatness against epoch."""

from __future__ import annotations

import argparse
from pathlib import Path

#: Where trajectory's settings differ from analyze's: one top eigenvalue per checkpoint.
DEFAULTS = {"top_k": 1}

HELP = "analyse every (or every Nth) checkpoint of a training run and plot flatness vs epoch"

EPILOG = """\
Reports go to OUT/reports/<checkpoint stem>/report.json and are reused when they were made from
the same checkpoint, data and settings (a partial one is completed). OUT (default
RUN_DIR/trajectory) also gets trajectory.json, trajectory.md and trajectory.png/.pdf.

example:
  flatscope train --optimizer fsgld --epochs 20 --checkpoint-every 2 --out runs/fsgld
  flatscope trajectory runs/fsgld --every 2
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``flatscope trajectory``."""
    from flatscope.cli.analyze import add_analysis_options

    parser = subparsers.add_parser(
        "trajectory",
        help=HELP,
        description=HELP + ".",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory of flatscope train")
    parser.add_argument(
        "--every", type=int, default=1, metavar="N", help="every Nth checkpoint (and the last)"
    )
    parser.add_argument("--out", metavar="DIR", help="output directory (RUN_DIR/trajectory)")
    parser.add_argument(
        "--metrics",
        default="trace,scaled_trace,eigenvalues",
        help="metrics of each report, as in analyze (default %(default)s)",
    )
    add_analysis_options(parser, defaults=DEFAULTS)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Analyse the checkpoints (reusing stored reports), print the table, write the files."""
    from flatscope.app.inputs import check_checkpoint_inputs
    from flatscope.app.trajectory import select_checkpoints, trajectory
    from flatscope.cli.analyze import analysis_settings, checkpoint_inputs
    from flatscope.cli.verify import checkpoint_report
    from flatscope.errors import ReportError
    from flatscope.io.lock import output_lock
    from flatscope.io.run_folder import run_checkpoints
    from flatscope.metrics import parse_metrics

    metrics = parse_metrics(args.metrics)
    settings = analysis_settings(args, DEFAULTS)

    def report_for(checkpoint: Path, report_dir: Path):
        try:
            return checkpoint_report(
                args, checkpoint, metrics, settings, out=report_dir, resume=True
            )
        except ReportError:  # made from other inputs, or unreadable: replace it
            return checkpoint_report(args, checkpoint, metrics, settings, out=report_dir)

    for checkpoint in select_checkpoints(run_checkpoints(args.run_dir), args.every):
        check_checkpoint_inputs(checkpoint.path, **checkpoint_inputs(args))  # before any work
    out = Path(args.out) if args.out else Path(args.run_dir) / "trajectory"
    with output_lock(out):
        result = trajectory(args.run_dir, report_for, every=args.every, out=out)
    print(result.table())
    print(
        f"{len(result.computed)} reports computed, {len(result.reused)} reused; "
        f"trajectory.json, trajectory.md and trajectory.png in {result.out}"
    )
    return 0
