"""``flatscope analyze CKPT``: from a saved checkpoint to a flatness report, figures and a summary.

This module parses arguments, loads the checkpoint, model and data, and calls
:func:`flatscope.app.analyze.analyze`; the numbers come from there. Options that only tune the
analysis are left out of the namespace when not given (``argparse.SUPPRESS``), so the defaults
live in one place, :class:`flatscope.app.analyze.AnalysisSettings`; the help texts quote them.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "add_parser",
    "add_analysis_options",
    "analysis_settings",
    "run",
    "load_inputs",
    "AnalysisInputs",
    "SETTING_OPTIONS",
]

#: Options forwarded to AnalysisSettings: (flag, type, help with the default spelled out).
SETTING_OPTIONS: tuple[tuple[str, type, str], ...] = (
    (
        "--trace-method",
        str,
        "trace estimator: hutchpp, hutchinson, na_hutchpp, xtrace (default hutchpp)",
    ),
    ("--num-matvecs", int, "Hessian-vector products for the trace and the diagonal (default 100)"),
    ("--top-k", int, "number of largest eigenvalues (default 5)"),
    ("--bottom-k", int, "number of most negative eigenvalues; 0 skips them (default 0)"),
    ("--eig-tol", float, "eigenvalues stop at residuals <= tol * |lambda_max| (default 0.001)"),
    ("--eig-max-matvecs", int, "product budget of each eigenvalue search (default 500)"),
    ("--density-steps", int, "Lanczos steps per probe of the spectral density (default 90)"),
    ("--density-probes", int, "random probes of the spectral density (default 2)"),
    (
        "--sharpness-sigma",
        float,
        "std of the Gaussian perturbation, average-case sharpness (default 0.01)",
    ),
    ("--sharpness-rho", float, "l2 radius of worst-case sharpness (default 0.05)"),
    ("--dtype", str, "float32 or float64, the dtype of every Hessian product (default float32)"),
    ("--seed", int, "seeds the data subset and every estimator (default 0)"),
)
DEFAULT_SUBSET = 256


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``flatscope analyze``."""
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
    metrics.add_argument(
        "--metrics",
        default="trace,eigenvalues,density",
        help="comma-separated: trace, eigenvalues, density, diagonal, sharpness, or all "
        "(default trace,eigenvalues,density)",
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


def add_analysis_options(parser: argparse.ArgumentParser) -> None:
    """The options that say how to load and analyse a checkpoint: model, data, loss and the
    estimator settings. Shared by ``analyze``, ``verify``, ``trajectory`` and ``landscape``.

    Setting options are left out of the namespace when not given (``argparse.SUPPRESS``), so
    :class:`flatscope.app.analyze.AnalysisSettings` keeps the defaults.
    """
    source = parser.add_argument_group("model")
    source.add_argument(
        "--model",
        metavar="SPEC",
        help="NAME[:k=v,...] from the zoo (mlp, cnn, resnet18, resnet34, linear, "
        "hf:FOLDER for a Hugging Face causal LM) or package.module:factory[:k=v,...]; "
        "optional for checkpoints written by flatscope",
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
    data = parser.add_argument_group("data and loss")
    data.add_argument(
        "--data",
        metavar="SPEC",
        help="digits, synthetic[:...], cifar10:PATH or package.module:factory (default: the "
        "checkpoint's data spec, else digits)",
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
        help="cross_entropy, mse or package.module:callable (default: the loss a flatscope "
        "run trained with, else cross_entropy)",
    )
    estimators = parser.add_argument_group("estimators")
    estimators.add_argument(
        "--params",
        nargs="+",
        metavar="GLOB",
        default=argparse.SUPPRESS,
        help="analyse only these parameters (names or globs such as 'fc.*')",
    )
    metavars = {int: "N", float: "X", str: "NAME"}
    for flag, kind, text in SETTING_OPTIONS:
        estimators.add_argument(
            flag, type=kind, metavar=metavars[kind], default=argparse.SUPPRESS, help=text
        )
    estimators.add_argument(
        "--device", default=argparse.SUPPRESS, help="cpu or cuda[:N] (default cpu)"
    )
    estimators.add_argument("--quiet", action="store_true", help="no progress bars")


def analysis_settings(args: argparse.Namespace, **overrides: Any) -> dict[str, Any]:
    """The analysis settings given on the command line, with ``overrides``, validated."""
    from flatscope.app.analyze import AnalysisSettings

    settings = {**_settings(args), **overrides}
    AnalysisSettings(**settings)
    return settings


@contextlib.contextmanager
def _spec_errors_as_user_errors() -> Iterator[None]:
    """Spec and data errors are the user's to fix: report them as flatscope errors."""
    from flatscope.data.datasets import DataError
    from flatscope.errors import FlatscopeError
    from flatscope.models.specs import SpecError

    try:
        yield
    except (SpecError, DataError) as err:
        raise FlatscopeError(str(err)) from err


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    names = [flag[2:].replace("-", "_") for flag, _, _ in SETTING_OPTIONS] + ["params", "device"]
    return {name: getattr(args, name) for name in names if hasattr(args, name)}


def _subset(text: str | None, split_size: int) -> int | None:
    """The subset size to draw, or None for the whole split."""
    from flatscope.errors import FlatscopeError

    if text is None:
        return DEFAULT_SUBSET if split_size > DEFAULT_SUBSET else None
    if text == "all":
        return None
    try:
        return int(text)
    except ValueError:
        raise FlatscopeError(f"--subset must be a number of samples or all, got {text!r}") from None


def _load_model(
    checkpoint: Any, spec: str | None, trust_remote_code: bool = False
) -> tuple[Any, str]:
    """The model with the checkpoint's weights, and the spec the report records."""
    from flatscope.errors import CheckpointError
    from flatscope.io import apply_state_dict
    from flatscope.models.zoo import build_model, model_spec

    spec = spec or checkpoint.model_spec
    if spec is None:
        module = checkpoint.module
        if module is not None and checkpoint.layout == "pickled-module":
            return module, f"pickled {type(module).__module__}.{type(module).__qualname__}"
        need = (
            "a TorchScript archive cannot be differentiated by flatscope"
            if checkpoint.layout == "torchscript"
            else "it does not say which model it holds"
        )
        raise CheckpointError(
            f"{checkpoint.path}: {need}; pass --model NAME[:k=v,...] (mlp, cnn, resnet18, "
            "resnet34, linear, hf:FOLDER) or --model package.module:factory to rebuild the model"
        )
    model = build_model(spec, trust_remote_code=trust_remote_code)
    apply_state_dict(model, checkpoint.state_dict)
    return model, model_spec(spec)


@dataclasses.dataclass
class AnalysisInputs:
    """What an analysis of one checkpoint needs: the checkpoint, the model with its weights,
    the model spec the report records, the data and the loss spec."""

    checkpoint: Any
    model: Any
    model_spec: str
    data: Any
    loss: str


def load_inputs(args: argparse.Namespace, path: str | Path, seed: int) -> AnalysisInputs:
    """Load a checkpoint, its model and its data as ``flatscope analyze`` does.

    A checkpoint written by ``flatscope train`` names its data and loss, and carries the
    (possibly noisy) labels it was trained on: without ``--data`` the training split is
    analysed with those labels and, without ``--loss``, with that loss, so the Hessian is the
    one of the objective that was minimised.
    """
    from flatscope.data.datasets import load_data
    from flatscope.io import load_checkpoint

    with _spec_errors_as_user_errors():
        checkpoint = load_checkpoint(
            path, key=args.checkpoint_key, unsafe_pickle=args.unsafe_pickle
        )
        model, spec = _load_model(checkpoint, args.model, args.trust_remote_code)
        extra = checkpoint.metadata.get("extra") or {}
        own_data = args.data is None and checkpoint.data_spec is not None
        labels = extra.get("train_labels") if own_data and args.split == "train" else None
        data = load_data(
            args.data or checkpoint.data_spec or "digits",
            args.split,
            seed=seed,
            batch_size=args.batch_size,
            labels=labels,
        )
        subset = _subset(args.subset, len(data))
        data = data if subset is None else data.subset(subset)
    loss = args.loss or extra.get("loss") or "cross_entropy"
    return AnalysisInputs(checkpoint, model, spec, data, loss)


def run(args: argparse.Namespace) -> int:
    """Analyse the checkpoint; print the summary table. Returns the exit status."""
    from flatscope.app.analyze import (
        REPORT_NAME,
        AnalysisSettings,
        analyze,
        check_output_dir,
        parse_metrics,
        summary,
    )
    from flatscope.operators.distributed import get_rank

    settings = _settings(args)
    AnalysisSettings(**settings)  # every bad option fails here, before any file is read
    metrics = parse_metrics(args.metrics)
    out = check_output_dir(args.out or f"{Path(args.checkpoint).stem}-analysis")
    inputs = load_inputs(args, args.checkpoint, settings.get("seed", 0))
    with _spec_errors_as_user_errors(), _process_group(settings.get("device")):
        report = analyze(
            inputs.model,
            inputs.loss,
            inputs.data,
            metrics,
            out=out,
            resume=args.resume,
            figures=not args.no_figures,
            progress=not args.quiet,
            checkpoint=inputs.checkpoint,
            model_spec=inputs.model_spec,
            **settings,
        )
        writer = get_rank() == 0  # read before the process group is gone
    if writer:
        print(summary(report))
        figures = "" if args.no_figures else f"; figures in {out}"
        print(f"report: {out / REPORT_NAME}{figures}")
    return 0


@contextlib.contextmanager
def _process_group(device: str | None) -> Iterator[None]:
    """Under ``torchrun`` (``WORLD_SIZE`` > 1), join the process group for the analysis: each
    rank takes a shard of the batches and rank 0 writes the report and figures."""
    import torch.distributed as dist

    from flatscope.operators.distributed import init_from_environment

    joined = init_from_environment(device)
    try:
        yield
    finally:
        if joined:
            dist.destroy_process_group()
