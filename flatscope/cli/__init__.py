"""The ``flatscope`` command line: argument parsing only; every subcommand calls the Python API.

Each subcommand lives in ``flatscope/cli/<name>.py`` and provides ``add_parser(subparsers)``,
which registers its options and sets ``run(args) -> int`` as the handler. Heavy imports happen
inside ``run`` so that ``flatscope --help`` stays fast.

Errors the user can fix are :class:`flatscope.errors.FlatscopeError`; they, and any other
failure, print one line on stderr and exit with status 2 (``--debug`` shows the traceback).
So do bad arguments (one line and where to read the usage, not argparse's usage block) and a
``sys.exit()`` from user code (a model, data or loss factory) in the middle of a command.

Every subcommand takes ``--threads N``, the CPU threads PyTorch uses (see :func:`default_threads`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

__all__ = ["main", "console_main", "COMMANDS", "OneLineParser", "default_threads"]

COMMANDS = ("analyze", "plot", "train", "demo", "landscape", "verify", "compare", "trajectory")
EXIT_BAD_INPUT = 2


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line and a pointer to the help."""

    def error(self, message: str) -> NoReturn:
        text = " ".join(message.split())
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {text} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available subcommand registered."""
    parser = OneLineParser(
        prog="flatscope", description="Hessian-spectrum and flatness analysis for PyTorch models."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"flatscope.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"flatscope.cli.{name}":
                raise
            continue
        module.add_parser(subparsers)
    for command in subparsers.choices.values():
        command.add_argument(
            "--threads",
            type=int,
            metavar="N",
            help=f"CPU threads of PyTorch (default {default_threads()}: half the cores, at "
            "least 1; more threads per process slow products down badly on a busy machine)",
        )
    return parser


def default_threads() -> int:
    """Half this machine's CPU cores, at least one.

    Measured on a 2-core machine (benchmarks/threads.py): with another process busy, Hessian
    products with 2 threads ran 10-50x slower than with 1 (OpenMP threads spin while they wait
    for a core), while on an idle machine the second thread gained far less than that.
    """
    import os

    return max(1, (os.cpu_count() or 1) // 2)


def _set_threads(threads: int | None) -> None:
    from flatscope.errors import FlatscopeError

    if threads is not None and threads < 1:
        raise FlatscopeError(f"--threads must be a positive integer, got {threads}")
    import torch

    torch.set_num_threads(default_threads() if threads is None else threads)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        _set_threads(args.threads)
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("flatscope: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exit:  # flatscope never exits inside a command: user code did
        if args.debug:
            raise
        print(
            f"flatscope: error: user code called sys.exit({exit.code!r}) during "
            f"flatscope {args.command}; a model, data or loss must return, not exit",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    except Exception as err:  # noqa: BLE001 - the one place that turns errors into messages
        if args.debug:
            raise
        from flatscope.errors import FlatscopeError

        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if not isinstance(err, FlatscopeError):
            message = f"{type(err).__name__}: {message} (run with --debug for the traceback)"
        print(f"flatscope: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT


def console_main() -> None:
    """Entry point of the ``flatscope`` console script."""
    sys.exit(main())
