"""``flatscope verify CKPT_OR_REPORT [--reference CKPT_OR_REPORT ...]``: is it a minimum, and
at lower curvature than the references? ``flatscope verify --group NAME=RUNS
--reference-group NAME=RUNS``: the same for groups of runs over seeds.

Reports are read as they are; checkpoints are analysed first with the options of
``flatscope analyze`` (the subject with its bottom eigenvalue, which the negative-curvature
criterion needs). Groups are run folders (or reports, or globs of them) with their analyses, as
``flatscope compare --group`` reads them. The verdict logic is
:func:`flatscope.app.verify.verify` and :func:`~flatscope.app.verify.verify_groups`. Exit
status: 0 when every claim holds, 1 when one fails or is not established, 2 for bad input.

This module also holds the checkpoint-to-report path that ``flatscope trajectory`` shares
(:func:`checkpoint_report`); the options come from :mod:`flatscope.cli.analyze`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "checkpoint_report", "is_report_file", "run"]

#: The metrics verify computes for checkpoints (the sharpness ones only with --sharpness).
METRICS = ("trace", "scaled_trace", "eigenvalues", "sharpness", "adaptive_sharpness")
#: Where verify's settings differ from analyze's: the top eigenvalue of every checkpoint and
#: the most negative one of the subject, which the negative-curvature criterion needs.
SUBJECT_DEFAULTS = {"top_k": 1, "bottom_k": 1}

HELP = "decide whether a checkpoint (or group of runs) sits at a minimum, at lower curvature"

EPILOG = """\
criteria (each: pass, fail or not established):
  minimum: gradient            ||grad L|| <= GRAD_TOL * max(L, 1)
  minimum: negative curvature  lambda_min >= -NEG_TOL * lambda_max (eigenvalue bound intervals)
  vs REF: trace                one-sided z-test on the trace estimates' standard errors
  vs REF: scaled trace         the same on tr(D H D), D = diag(|w|): invariant to rescalings
  vs REF: top eigenvalue       disjoint residual-bound intervals of lambda_max
  vs REF: sharpness            (--sharpness) one-sided z-test on average-case sharpness, and
                               on adaptive sharpness when the reports have it

one checkpoint against another covers the estimators' noise only, not the spread between
training runs; for an optimizer-level claim give groups of at least 3 runs (seeds) per side:
each 'vs' claim is then Welch's one-sided test over seeds, each minimum claim must hold for
every run, and groups analysed on different data are refused unless --force.

--only flatter tests just the 'vs' claims (a Langevin sampler such as fSGLD samples around a
minimum, so the minimum criteria fail by design); --only minimum just the minimum ones. A
reference of another model or data (model spec, data spec, analysed parameters or their
number differ) is refused, exit status 2, unless --force.

examples:
  flatscope verify runs/fsgld/final.pt --reference runs/sgd/final.pt
  flatscope verify runs/fsgld/final.pt --reference runs/sgd/analysis/report.json --json
  flatscope verify runs/fsgld/final.pt --reference runs/sgd/final.pt --only flatter
  flatscope verify --group fsgld='runs/fsgld-seed*' --reference-group sgd='runs/sgd-seed*'

exit status: 0 every claim holds; 1 a claim fails or is not established; 2 bad input.
"""


def checkpoint_report(
    args: argparse.Namespace,
    path: str | Path,
    metrics: tuple[str, ...],
    settings: dict[str, Any],
    *,
    out: Path | None = None,
    resume: bool = False,
):
    """Analyse one checkpoint as ``flatscope analyze`` does (same model, data and subset
    rules) and return the :class:`~flatscope.io.report.Report` (no figures)."""
    from flatscope.app.analyze import analyze_checkpoint
    from flatscope.cli.analyze import checkpoint_inputs

    return analyze_checkpoint(
        path,
        metrics,
        inputs=checkpoint_inputs(args),
        out=out,
        resume=resume,
        figures=False,
        progress=not args.quiet,
        **settings,
    )


def is_report_file(path: str | Path) -> bool:
    """Whether ``path`` is a JSON file (a report) rather than a checkpoint: a ``.json`` name or
    a first non-blank byte ``{``.

    Raises:
        FlatscopeError: ``path`` is a directory or does not exist.
    """
    from flatscope.errors import FlatscopeError

    path = Path(path)
    if path.is_dir():
        raise FlatscopeError(
            f"{path} is a directory; pass a checkpoint file (e.g. {path / 'final.pt'}) or a "
            "report .json"
        )
    if not path.is_file():
        raise FlatscopeError(f"not found: {path}; pass a checkpoint file or a report .json")
    if path.suffix == ".json":
        return True
    with open(path, "rb") as file:
        return file.read(64).lstrip()[:1] == b"{"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``flatscope verify``."""
    from flatscope.app.verify import ONLY
    from flatscope.cli.analyze import add_analysis_options
    from flatscope.metrics import VerifySettings

    parser = subparsers.add_parser(
        "verify",
        help=HELP,
        description=HELP + ".",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "subject", nargs="?", metavar="CKPT_OR_REPORT", help="checkpoint or report.json"
    )
    claims = parser.add_argument_group("claims")
    claims.add_argument(
        "--reference",
        action="append",
        default=[],
        metavar="CKPT_OR_REPORT",
        help="be flatter than this checkpoint or report (repeatable)",
    )
    claims.add_argument(
        "--group",
        nargs="+",
        metavar="NAME=RUNS",
        help="instead of a checkpoint: a group of runs, one per seed (NAME=GLOB or NAME RUN "
        "[RUN ...]; run folders with their analyses)",
    )
    claims.add_argument(
        "--reference-group",
        nargs="+",
        action="append",
        default=[],
        metavar="NAME=RUNS",
        help="be flatter than this group of runs, over seeds (repeatable)",
    )
    claims.add_argument(
        "--only",
        choices=ONLY,
        help="test only the minimum criteria, or only the comparisons with the references "
        "(flatter: for samplers such as fSGLD, which sample around a minimum; default both)",
    )
    claims.add_argument(
        "--force",
        action="store_true",
        help="decide even against a reference of another model or data (model spec, data "
        "spec, parameters) and across groups on different data",
    )
    claims.add_argument(
        "--grad-tol",
        type=float,
        default=VerifySettings.grad_tol,
        help="minimum: ||grad L|| <= GRAD_TOL * max(L, 1) (default %(default)s)",
    )
    claims.add_argument(
        "--neg-tol",
        type=float,
        default=VerifySettings.neg_tol,
        help="minimum: lambda_min >= -NEG_TOL * lambda_max (default %(default)s)",
    )
    claims.add_argument(
        "--confidence",
        type=float,
        default=VerifySettings.confidence,
        help="level of the one-sided tests against references (default %(default)s)",
    )
    claims.add_argument(
        "--sharpness",
        action="store_true",
        help="also require lower average-case sharpness (analyses with --metrics sharpness)",
    )
    claims.add_argument("--json", action="store_true", help="print the verdict as JSON")
    add_analysis_options(parser, metrics=METRICS, defaults=SUBJECT_DEFAULTS)
    parser.set_defaults(run=run)


def _read_all(args: argparse.Namespace, paths: list[str]) -> dict[str, dict[str, Any]]:
    """Every report's document, after checking that every checkpoint and its specs can be
    read: a bad reference fails before the subject is analysed."""
    from flatscope.app.inputs import check_checkpoint_inputs
    from flatscope.cli.analyze import checkpoint_inputs
    from flatscope.io import Report

    reports = {path: Report.load(path).to_dict() for path in paths if is_report_file(path)}
    for path in paths:
        if path not in reports:
            check_checkpoint_inputs(path, **checkpoint_inputs(args))
    return reports


def _load(
    args: argparse.Namespace,
    path: str,
    reports: dict[str, dict[str, Any]],
    metrics: tuple[str, ...],
    settings: dict[str, Any],
) -> dict[str, Any]:
    if path in reports:
        return reports[path]
    return checkpoint_report(args, path, metrics, settings).to_dict()


def run(args: argparse.Namespace) -> int:
    """Verify, print the table (or JSON); 0 when every claim holds, else 1."""
    import json

    from flatscope.io.report import to_jsonable
    from flatscope.metrics import VerifySettings

    VerifySettings(args.grad_tol, args.neg_tol, args.confidence, args.sharpness)
    if args.group is not None or args.reference_group:
        verdict = _verify_groups(args)
    else:
        verdict = _verify_checkpoints(args)
    if args.json:
        print(json.dumps(to_jsonable(verdict.to_dict()), indent=2))
    else:
        print(verdict.table())
    return verdict.exit_code


def _verify_groups(args: argparse.Namespace):
    from flatscope.app.groups import parse_group
    from flatscope.app.verify import verify_groups
    from flatscope.errors import FlatscopeError

    if args.subject is not None or args.reference:
        raise FlatscopeError("give a checkpoint with --reference, or groups, not both")
    if args.group is None or not args.reference_group:
        raise FlatscopeError("verify of groups needs --group and at least one --reference-group")
    name, members = parse_group(args.group)
    references = dict(parse_group(tokens) for tokens in args.reference_group)
    return verify_groups(members, references, name=name, **_claim_options(args))


def _claim_options(args: argparse.Namespace) -> dict:
    """The claim options shared by single-checkpoint and group verification."""
    names = ("grad_tol", "neg_tol", "confidence", "sharpness", "force", "only")
    return {name: getattr(args, name) for name in names}


def _verify_checkpoints(args: argparse.Namespace):
    from flatscope.app.verify import check_only, verify
    from flatscope.cli.analyze import analysis_settings
    from flatscope.errors import FlatscopeError

    if args.subject is None:
        raise FlatscopeError("give a checkpoint or report to verify (or --group)")
    check_only(args.only, len(args.reference))
    if args.only == "minimum":  # the gradient (always analysed) and the extreme eigenvalues
        metrics = ("eigenvalues",)
    else:
        metrics = METRICS if args.sharpness else METRICS[:3]
    reference_settings = analysis_settings(args, {**SUBJECT_DEFAULTS, "bottom_k": 0})
    # the most negative eigenvalue serves only the negative-curvature criterion
    subject_settings = (
        reference_settings if args.only == "flatter" else analysis_settings(args, SUBJECT_DEFAULTS)
    )
    reports = _read_all(args, [args.subject, *args.reference])
    subject = _load(args, args.subject, reports, metrics, subject_settings)
    references = {
        path: _load(args, path, reports, metrics, reference_settings) for path in args.reference
    }
    return verify(subject, references, subject_label=args.subject, **_claim_options(args))
