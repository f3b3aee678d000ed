"""``flatscope train``: train a model with fSGLD, SGLD, SAM or SGD into a run directory."""

from __future__ import annotations

import argparse

HELP = "train a model with fSGLD or a baseline, with metrics and resumable checkpoints"

EPILOG = """\
examples:
  flatscope train --optimizer fsgld --label-noise symmetric:0.4 --epochs 30 --out runs/fsgld
  flatscope train --optimizer sam --rho 0.05 --schedule multistep:15,25 --out runs/sam
  flatscope analyze runs/fsgld/final.pt     # the checkpoint carries its model spec
  torchrun --nproc_per_node 2 -m flatscope train --optimizer sam --out runs/sam2
      # DistributedDataParallel: each rank trains on its slice of every batch

The run directory holds config.json, metrics.jsonl (one JSON object per epoch),
checkpoints/epoch_NNNN.pt (every --checkpoint-every epochs) and final.pt.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``flatscope train``."""
    from flatscope.training.trainer import TrainConfig

    defaults = TrainConfig()
    parser = subparsers.add_parser(
        "train",
        help=HELP,
        description=HELP + ".",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = parser.add_argument_group("what to train")
    what.add_argument(
        "--optimizer", default=defaults.optimizer, help="fsgld, sgld, sam or sgd (%(default)s)"
    )
    what.add_argument("--model", default=defaults.model, help="model spec (%(default)s)")
    what.add_argument("--data", default=defaults.data, help="data spec (%(default)s)")
    what.add_argument(
        "--label-noise", default=None, metavar="SPEC", help="e.g. symmetric:0.4, asymmetric:0.2"
    )
    what.add_argument("--loss", default=defaults.loss, help="loss spec (%(default)s)")
    how = parser.add_argument_group("optimization")
    how.add_argument("--epochs", type=int, default=defaults.epochs)
    how.add_argument("--batch-size", type=int, default=defaults.batch_size)
    how.add_argument("--lr", type=float, default=defaults.lr, help="base learning rate")
    how.add_argument(
        "--schedule",
        default=defaults.schedule,
        help="constant, cosine[:min_factor=F] or multistep:M1,M2[,gamma=G] (%(default)s)",
    )
    how.add_argument("--momentum", type=float, default=defaults.momentum)
    how.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    how.add_argument(
        "--beta-inv", type=float, default=defaults.beta_inv, help="temperature 1/beta (Langevin)"
    )
    how.add_argument(
        "--sigma",
        type=float,
        default=None,
        help="fSGLD perturbation std (default: coupled, beta_inv^((1+eta)/4))",
    )
    how.add_argument("--eta", type=float, default=defaults.eta, help="coupling exponent in (0,1)")
    how.add_argument("--antithetic", action="store_true", help="fSGLD: alternate +eps and -eps")
    how.add_argument("--rho", type=float, default=defaults.rho, help="SAM radius")
    how.add_argument("--seed", type=int, default=defaults.seed)
    how.add_argument("--device", default=defaults.device, help="cpu or cuda (%(default)s)")
    run = parser.add_argument_group("run directory")
    run.add_argument("--out", required=True, metavar="RUN_DIR", help="the run directory")
    run.add_argument("--checkpoint-every", type=int, default=None, metavar="N")
    run.add_argument(
        "--track-flatness",
        type=int,
        default=None,
        metavar="EVERY",
        help="Hessian trace and top eigenvalue on a training subset every EVERY epochs",
    )
    run.add_argument("--flatness-subset", type=int, default=defaults.flatness_subset)
    run.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    run.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.set_defaults(run=run_train)


def config_from_args(args: argparse.Namespace):
    """The :class:`~flatscope.training.trainer.TrainConfig` the options describe."""
    from flatscope.training.trainer import TrainConfig

    return TrainConfig(
        optimizer=args.optimizer,
        model=args.model,
        data=args.data,
        label_noise=args.label_noise,
        loss=args.loss,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        schedule=args.schedule,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        beta_inv=args.beta_inv,
        sigma=args.sigma,
        eta=args.eta,
        antithetic=args.antithetic,
        rho=args.rho,
        seed=args.seed,
        device=args.device,
        checkpoint_every=args.checkpoint_every,
        track_flatness=args.track_flatness,
        flatness_subset=args.flatness_subset,
    )


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
