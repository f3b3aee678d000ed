"""``flatscope train``: train a model with fSGLD, SGLD, SAM or SGD into a run directory."""

from __future__ import annotations

import argparse

HELP = "train a model with fSGLD or a baseline, with metrics and resumable checkpoints"

EPILOG = """\
examples:
  flatscope train --optimizer fsgld --label-noise symmetric:0.4 --epochs 30 --out runs/fsgld
  flatscope train --optimizer sam --rho 0.05 --schedule multistep:15,25 --out runs/sam
  flatscope train --out runs/sam --resume      # continues with runs/sam/config.json
  flatscope analyze runs/fsgld/final.pt     # the checkpoint carries its model spec
  torchrun --nproc_per_node 2 -m flatscope train --optimizer sam --out runs/sam2
      # DistributedDataParallel: each rank trains on its slice of every batch

The run directory holds config.json, metrics.jsonl (one JSON object per epoch),
checkpoints/epoch_NNNN.pt (every --checkpoint-every epochs) and final.pt.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``flatscope train``: the run's options come from the fields of
    :class:`~flatscope.training.trainer.TrainConfig`, the optimizers' from their hyper-parameter
    classes (:mod:`flatscope.optim.registry`), so every default is stated once."""
    from flatscope.cli.options import add_field_option, add_settings_options
    from flatscope.optim.registry import all_hyperparameters
    from flatscope.training.trainer import TrainConfig

    parser = subparsers.add_parser(
        "train",
        help=HELP,
        description=HELP + ".",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = parser.add_argument_group("what to train")
    add_settings_options(what, TrainConfig, only=WHAT)
    how = parser.add_argument_group("optimization (the optimizers using an option in brackets)")
    add_settings_options(how, TrainConfig, only=HOW)
    for field, users in all_hyperparameters().values():
        add_field_option(how, field, field.default, f"[{', '.join(users)}]")
    run = parser.add_argument_group("run directory")
    run.add_argument("--out", required=True, metavar="RUN_DIR", help="the run directory")
    add_settings_options(run, TrainConfig, only=RUN)
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in RUN_DIR with its saved configuration (options given as well "
        "must agree with it)",
    )
    run.add_argument(
        "--trust-specs",
        action="store_true",
        help="with --resume: let RUN_DIR/config.json's model, data and loss specs import code "
        "(only for runs you trust)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.set_defaults(run=run_train)


#: The fields of a saved configuration that are specs, read from the file as data.
SPECS = ("model", "data", "label_noise", "loss", "schedule")
#: Which TrainConfig fields each option group shows.
WHAT = ("optimizer", "model", "data", "label_noise", "loss")
HOW = ("epochs", "batch_size", "schedule", "seed", "device", "batchnorm")
RUN = ("checkpoint_every", "track_flatness", "flatness_subset", "flatness_matvecs")


def _given(args: argparse.Namespace) -> dict:
    """The configuration options typed on the command line (run fields and hyper-parameters)."""
    from flatscope.optim.registry import all_hyperparameters

    names = (*WHAT, *HOW, *RUN, *all_hyperparameters())
    return {name: getattr(args, name) for name in names if hasattr(args, name)}


def config_from_args(args: argparse.Namespace):
    """The :class:`~flatscope.training.trainer.TrainConfig` to run: the saved one of the run
    in ``--out`` with ``--resume`` (checked against what was typed; its specs resolve to
    registry names only unless ``--trust-specs``), else the options'."""
    from pathlib import Path

    from flatscope.io.run_folder import CONFIG_FILE, read_config
    from flatscope.models.specs import FileSpec
    from flatscope.training.trainer import TrainConfig, TrainingError

    given = _given(args)
    saved = read_config(args.out) if args.resume else None
    if saved is None:
        return TrainConfig.create(**given)
    document = saved.get("config")
    if isinstance(document, dict):  # specs in the file are data (see the README's safety notes)
        source = Path(args.out) / CONFIG_FILE
        document = {
            key: FileSpec(value, source, args.trust_specs)
            if key in SPECS and isinstance(value, str)
            else value
            for key, value in document.items()
        }
    config = TrainConfig.from_dict(document)
    recorded = config.to_dict()
    differing = [
        f"--{name.replace('_', '-')} {value} (the run has {recorded.get(name)})"
        for name, value in given.items()
        if recorded.get(name, value) != value or name not in recorded
    ]
    if differing:
        raise TrainingError(
            f"cannot resume {args.out} with other settings: {'; '.join(differing)}; resume "
            "without them, or train into another --out"
        )
    return config


def run_train(args: argparse.Namespace) -> int:
    """Train, then print where the final checkpoint is."""
    from flatscope.operators.distributed import get_rank, process_group
    from flatscope.training.trainer import train

    config = config_from_args(args)
    with process_group(config.device):
        result = train(config, args.out, resume=args.resume, progress=not args.quiet)
        writer = get_rank() == 0  # read before the process group is gone
    last = result.metrics[-1]
    if writer and not args.quiet:
        accuracy = "n/a" if last["test_acc"] is None else f"{100 * last['test_acc']:.1f}%"
        print(
            f"trained {result.config.optimizer} for {last['epoch']} epochs: clean test accuracy "
            f"{accuracy}; checkpoint {result.checkpoint}"
        )
    return 0
