"""``flatscope analyze CKPT``: from a saved checkpoint to a flatness report, figures and a summary.

Argument parsing only: :func:`flatscope.app.analyze.analyze_checkpoint` does the work. The
estimator options are generated from :class:`flatscope.metrics.AnalysisSettings`
(:mod:`flatscope.cli.options`), so their defaults live there alone. The options that say how to
read a checkpoint (model, data, loss) are shared with ``verify``, ``trajectory`` and
``landscape`` through :func:`add_analysis_options` and :func:`checkpoint_inputs`.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "add_analysis_options",
    "add_parser",
    "analysis_settings",
    "checkpoint_inputs",
    "load_inputs",
    "run",
    "writer_lock",
]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``flatscope analyze``."""
    from flatscope.metrics import REGISTRY, default_metrics

    parser = subparsers.add_parser(
        "analyze",
        help="Hessian spectrum and flatness report of a saved checkpoint",
        description=(
            "Measure the Hessian trace, extreme eigenvalues, spectral density (and optionally "
            "the diagonal and sharpness) of a checkpoint's training loss. Writes DIR/report.json "
            "metric by metric, figures (PNG and PDF) and prints a summary."
        ),
    )
    parser.add_argument(
        "checkpoint", metavar="CKPT", help="the checkpoint file (or a save_pretrained folder)"
    )
    add_analysis_options(parser)
    metrics = parser.add_argument_group("metrics")
    names = [name for name, metric in REGISTRY.items() if not metric.always]
    default = ",".join(default_metrics())
    metrics.add_argument(
        "--metrics",
        default=default,
        help=f"comma-separated: {', '.join(names)}, or all (default {default})",
    )
    run_group = parser.add_argument_group("output")
    run_group.add_argument(
        "--out", metavar="DIR", help="output directory (default ./<checkpoint name>-analysis)"
    )
    run_group.add_argument(
        "--resume", action="store_true", help="keep the finished metrics of DIR/report.json"
    )
    run_group.add_argument("--no-figures", action="store_true", help="write the report only")
    parser.set_defaults(run=run)


def add_analysis_options(
    parser: argparse.ArgumentParser,
    metrics: Iterable[str] | None = None,
    extra: Iterable[str] = (),
    defaults: Mapping[str, Any] | None = None,
) -> None:
    """The options that say how to load and analyse a checkpoint: model, data, loss and the
    settings that ``metrics`` read (every metric's by default) and ``extra`` ones, with the
    command's own ``defaults`` where they differ from the API's (see
    :func:`analysis_settings`). Shared by ``analyze``, ``verify``, ``trajectory`` and
    ``landscape``."""
    from flatscope.app.inputs import DEFAULT_SUBSET
    from flatscope.cli.options import add_settings_options
    from flatscope.metrics import REGISTRY, AnalysisSettings, settings_of
    from flatscope.metrics.settings import PRESET_SETTINGS

    source = parser.add_argument_group("model")
    source.add_argument(
        "--model",
        metavar="SPEC",
        help="NAME[:k=v,...] from the zoo (mlp, cnn, resnet18, resnet34, linear, hf:FOLDER for "
        "a Hugging Face causal LM) or module:factory[:k=v,...] (also package.module:..., "
        "path/file.py:...); optional for checkpoints written by flatscope",
    )
    source.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="let --model hf:FOLDER run the Python code shipped in that folder (only for "
        "folders you trust)",
    )
    source.add_argument(
        "--checkpoint-key", metavar="KEY", help="the entry of a dict checkpoint holding the weights"
    )
    source.add_argument(
        "--unsafe-pickle",
        action="store_true",
        help="also read TorchScript archives and pickled modules (runs code from the file: "
        "only for files you trust)",
    )
    source.add_argument(
        "--trust-specs",
        action="store_true",
        help="let the checkpoint's own model, data and loss specs import code "
        "(module:factory); by default only zoo, data set and loss names are taken from a "
        "file. Only for files you trust",
    )
    data = parser.add_argument_group("data and loss")
    data.add_argument(
        "--data",
        metavar="SPEC",
        help="digits, synthetic[:...], cifar10:PATH, tokens:FILE, text:FILE,tokenizer=FOLDER or "
        "package.module:factory (default: the checkpoint's data spec, else digits)",
    )
    data.add_argument("--split", default="train", help="train, val or test (default train)")
    data.add_argument(
        "--subset",
        metavar="N|all",
        help=f"a fixed subset of N samples, drawn with --seed (default {DEFAULT_SUBSET} or the "
        "whole split if smaller; all for the whole split)",
    )
    data.add_argument("--batch-size", type=int, metavar="B", help="batch size (default 128)")
    data.add_argument(
        "--loss",
        default=None,
        help="cross_entropy, mse, causal_lm or package.module:callable (default: the loss a "
        "flatscope run trained with, else cross_entropy)",
    )
    estimators = parser.add_argument_group("estimators")
    chosen = {*settings_of(REGISTRY if metrics is None else metrics), *extra}
    if chosen & set(PRESET_SETTINGS):  # --budget sets them together
        chosen.add("budget")
    add_settings_options(estimators, AnalysisSettings, only=chosen, defaults=defaults)
    estimators.add_argument(
        "--quiet", action="store_true", help="no progress and no cost estimate on stderr"
    )


def analysis_settings(
    args: argparse.Namespace, defaults: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The analysis settings given on the command line over the command's ``defaults``,
    validated."""
    from flatscope.cli.options import given_settings
    from flatscope.metrics import AnalysisSettings

    settings = {**(defaults or {}), **given_settings(args, AnalysisSettings)}
    AnalysisSettings(**settings)
    return settings


def checkpoint_inputs(args: argparse.Namespace) -> dict[str, Any]:
    """The keywords of :func:`flatscope.app.inputs.load_checkpoint_inputs` given as options."""
    names = ("model", "data", "split", "subset", "batch_size", "loss", "checkpoint_key")
    return {
        **{name: getattr(args, name) for name in names},
        "unsafe_pickle": args.unsafe_pickle,
        "trust_specs": args.trust_specs,
        "trust_remote_code": args.trust_remote_code,
    }


def load_inputs(args: argparse.Namespace, path: str | Path, seed: int) -> Any:
    """The checkpoint, model, data and loss that the options describe (for commands that do
    more with them than analyse, such as ``landscape``)."""
    from flatscope.app.inputs import load_checkpoint_inputs

    return load_checkpoint_inputs(path, seed=seed, **checkpoint_inputs(args))


def run(args: argparse.Namespace) -> int:
    """Analyse the checkpoint; print the summary table. Returns the exit status."""
    from flatscope.app.analyze import analyze_checkpoint, check_output_dir, summary
    from flatscope.io.run_folder import REPORT_NAME
    from flatscope.metrics import parse_metrics
    from flatscope.operators.distributed import get_rank, process_group

    settings = analysis_settings(args)  # every bad option fails here, before any file is read
    metrics = parse_metrics(args.metrics)
    out = check_output_dir(args.out or f"{Path(args.checkpoint).stem}-analysis")
    with process_group(settings.get("device")), writer_lock(out):
        report = analyze_checkpoint(
            args.checkpoint,
            metrics,
            inputs=checkpoint_inputs(args),
            out=out,
            resume=args.resume,
            figures=not args.no_figures,
            progress=not args.quiet,
            **settings,
        )
        writer = get_rank() == 0  # read before the process group is gone
    if writer:
        print(summary(report))
        figures = "" if args.no_figures else f"; figures in {out}"
        print(f"report: {out / REPORT_NAME}{figures}")
    return 0


def writer_lock(out: Path) -> contextlib.AbstractContextManager:
    """The exclusive lock of the output folder, held by the process that writes it (rank 0
    under ``torchrun``; the other ranks write nothing)."""
    from flatscope.io.lock import output_lock
    from flatscope.operators.distributed import get_rank

    return output_lock(out) if get_rank() == 0 else contextlib.nullcontext(out)
