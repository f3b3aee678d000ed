"""``flatscope plot REPORT.json``: re-render an analysis report's figures, no model needed."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``flatscope plot``."""
    parser = subparsers.add_parser(
        "plot",
        help="re-render the figures of an analysis report",
        description=(
            "Draw the spectral density, eigenvalue and per-layer trace figures (PNG and PDF) "
            "from the numbers stored in a report.json written by 'flatscope analyze'."
        ),
    )
    parser.add_argument("report", metavar="REPORT.json", help="the report file")
    parser.add_argument(
        "--out", metavar="DIR", help="directory for the figures (default: the report's)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Render the figures; print the files written. Returns the exit status."""
    from flatscope.app.plot import render_report
    from flatscope.errors import ReportError
    from flatscope.io import Report

    report = Report.load(args.report)
    paths = render_report(report, args.out)
    if not paths:
        raise ReportError(
            f"{args.report} holds no metric with a figure (spectral_density, top_eigenvalues, "
            "bottom_eigenvalues, hessian_trace with per_block); run flatscope analyze with "
            "--metrics trace,eigenvalues,density"
        )
    for path in paths:
        print(path)
    return 0
