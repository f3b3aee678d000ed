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

__all__ = ["add_field_option", "add_settings_options", "given_settings"]

_TYPES = {"int": int, "float": float, "str": str}
_METAVARS = {int: "N", float: "X", str: "NAME"}


def _kind(annotation: str) -> type:
    """The converter of a field annotation such as ``"int"`` or ``"str | None"``."""
    first = annotation.split("|")[0].strip()
    if first.startswith("tuple[str"):
        return str
    return _TYPES[first]


def _help(field: dataclasses.Field, default: Any, note: str = "") -> str:
    """The field's help, ``note``, and in parentheses its choices and ``default``."""
    text = field.metadata["help"] + (f" {note}" if note else "")
    parts = []
    if "choices" in field.metadata:
        parts.append(f"one of {', '.join(map(str, field.metadata['choices']))}")
    if isinstance(default, bool):
        parts.append(f"default {'on' if default else 'off'}")
    elif default is not None:
        shown = ",".join(default) if isinstance(default, tuple) else default
        parts.append(f"default {shown}")
    return f"{text} ({'; '.join(parts)})" if parts else text


def add_field_option(
    group: argparse._ActionsContainer, field: dataclasses.Field, default: Any, note: str = ""
) -> None:
    """Add ``--field-name`` for one dataclass field; its help states ``default`` and ``note``."""
    flag = "--" + field.name.replace("_", "-")
    help_text = _help(field, default, note)
    if field.type == "bool":
        group.add_argument(
            flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text
        )
        return
    kind = _kind(field.type)
    group.add_argument(
        flag,
        type=kind,
        default=argparse.SUPPRESS,
        metavar=field.metadata.get("metavar", _METAVARS[kind]),
        nargs=field.metadata.get("nargs"),
        help=help_text,
    )


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
        if names is None or field.name in names:
            add_field_option(group, field, defaults.get(field.name, field.default))


def given_settings(args: argparse.Namespace, settings: type) -> dict[str, Any]:
    """The fields of ``settings`` given on the command line, by field name."""
    return {
        field.name: getattr(args, field.name)
        for field in dataclasses.fields(settings)
        if hasattr(args, field.name)
    }
