"""Command-line options generated from settings dataclasses, so each default is stated once.

A field ``name: T = default`` with ``metadata={"help": ...}`` becomes ``--name`` (underscores
as dashes) of type ``T``; its help ends with ``(default ...)`` taken from the field itself, and
``metadata`` may add ``choices`` (listed in the help; the dataclass validates them, so the API
and the command line give the same message), ``nargs`` and ``metavar``. Options not given on
the command line are left out of the namespace (``argparse.SUPPRESS``), so the dataclass keeps
its defaults and :func:`given_settings` collects exactly what the user typed.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["add_settings_options", "given_settings"]

_TYPES = {"int": int, "float": float, "str": str}
_METAVARS = {int: "N", float: "X", str: "NAME"}


def _kind(annotation: str) -> type:
    """The converter of a field annotation such as ``"int"`` or ``"str | None"``."""
    first = annotation.split("|")[0].strip()
    if first.startswith("tuple[str"):
        return str
    return _TYPES[first]


def _help(field: dataclasses.Field, default: Any) -> str:
    text = field.metadata["help"]
    if "choices" in field.metadata:
        text += f": {', '.join(field.metadata['choices'])}"
    if default is None or isinstance(default, bool):
        return text
    default = ",".join(default) if isinstance(default, tuple) else default
    return f"{text} (default {default})"


def add_settings_options(
    group: argparse._ActionsContainer,
    settings: type,
    *,
    only: Iterable[str] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> None:
    """Add one option per field of the dataclass ``settings`` (or of the fields in ``only``);
    ``defaults`` are a command's own defaults, which its help states instead of the field's."""
    names = None if only is None else set(only)
    defaults = defaults or {}
    for field in dataclasses.fields(settings):
        if names is not None and field.name not in names:
            continue
        help_text = _help(field, defaults.get(field.name, field.default))
        flag = "--" + field.name.replace("_", "-")
        if field.type == "bool":
            group.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_text,
            )
            continue
        kind = _kind(field.type)
        group.add_argument(
            flag,
            type=kind,
            default=argparse.SUPPRESS,
            metavar=field.metadata.get("metavar", _METAVARS[kind]),
            nargs=field.metadata.get("nargs"),
            help=help_text,
        )


def given_settings(args: argparse.Namespace, settings: type) -> dict[str, Any]:
    """The fields of ``settings`` given on the command line, by field name."""
    return {
        field.name: getattr(args, field.name)
        for field in dataclasses.fields(settings)
        if hasattr(args, field.name)
    }
