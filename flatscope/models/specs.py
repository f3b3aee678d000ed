"""Text specs for models, data, losses and label noise, and the registries that resolve them.

A spec is one string a user types on the command line. Two forms exist, told apart by the
first ``:``-separated field:

``NAME[:VALUES]``
    a name from a registry (``mlp``, ``digits``, ``cifar10``, ``symmetric``). Registry names
    never contain a ``.``. ``VALUES`` is a comma-separated list of ``key=value`` items,
    optionally preceded by positional values: ``mlp:hidden=64,depth=3``,
    ``cifar10:/data/cifar,val=5000``, ``symmetric:0.4``.

``package.module:factory[:VALUES]``
    an import spec: the first field holds a ``.``, so it is a dotted module path. The module
    is imported, ``factory`` (a dotted attribute path is allowed) is looked up in it and
    called with ``VALUES``: ``torch.nn:Linear:in_features=64,out_features=10``. A top-level
    module with no ``.`` in its name cannot be named this way; put it inside a package.

Values are parsed by the type hints of the factory's parameters (``int``, ``float``,
``bool``, ``str``, ``X | None``); without a hint a value becomes, in this order, a bool
(``true``/``false``), ``None`` (``none``/``null``), an ``int``, a ``float`` or else a string.
Quote a value with ``'...'`` or ``"..."`` to keep it a string or to include ``,`` or ``=``.
Only the fields before ``VALUES`` are split on ``:``, so values may contain colons
(``cifar10:C:/data``).

Every problem with a spec raises :class:`SpecError` (a :class:`~flatscope.errors.FlatscopeError`
and a :class:`ValueError`) with one line that says what to change.
"""

from __future__ import annotations

import importlib
import inspect
import keyword
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from flatscope.errors import FlatscopeError

__all__ = [
    "SpecError",
    "Spec",
    "Registry",
    "parse_spec",
    "parse_value",
    "format_value",
    "accepts_keyword",
]

_QUOTES = ("'", '"')
_TRUE = ("true", "yes")
_FALSE = ("false", "no")
_NONE = ("none", "null")


class SpecError(FlatscopeError, ValueError):
    """A model, data, loss or label-noise spec that cannot be parsed, resolved or called."""


@dataclass(frozen=True)
class Spec:
    """A parsed spec: a registry name or an import target, and the raw value strings.

    Attributes:
        text: the spec as given (stripped).
        name: the registry name, or the import target ``"package.module:factory"``.
        is_import: whether ``name`` is an import target.
        args: raw positional values, quotes kept.
        kwargs: raw ``(key, value)`` pairs in the order given, quotes kept.
    """

    text: str
    name: str
    is_import: bool
    args: tuple[str, ...]
    kwargs: tuple[tuple[str, str], ...]


def _is_dotted_identifier(text: str) -> bool:
    parts = text.split(".")
    return all(part.isidentifier() and not keyword.iskeyword(part) for part in parts)


def _split_outside_quotes(text: str, spec: str) -> list[str]:
    """Split ``text`` on commas that are not inside a quoted value."""
    items, current, quote = [], [], None
    for char in text:
        if quote is not None:
            quote = None if char == quote else quote
        elif char in _QUOTES:
            quote = char
        elif char == ",":
            items.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    if quote is not None:
        raise SpecError(f"spec {spec!r} has an unterminated {quote} quote")
    items.append("".join(current).strip())
    return items


def _parse_values(text: str, spec: str) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    if not text.strip():
        return (), ()
    args: list[str] = []
    kwargs: dict[str, str] = {}
    for item in _split_outside_quotes(text, spec):
        if not item:
            raise SpecError(f"spec {spec!r} has an empty value between commas")
        if item[0] not in _QUOTES and "=" in item:
            key, value = (part.strip() for part in item.split("=", 1))
            if not key.isidentifier():
                raise SpecError(
                    f"spec {spec!r}: {key!r} is not a valid keyword; write key=value, "
                    "and quote values that contain '='"
                )
            if key in kwargs:
                raise SpecError(f"spec {spec!r} gives {key!r} twice")
            if not value:
                raise SpecError(f"spec {spec!r} gives no value for {key!r}")
            kwargs[key] = value
        elif kwargs:
            raise SpecError(f"spec {spec!r}: positional value {item!r} follows key=value items")
        else:
            args.append(item)
    return tuple(args), tuple(kwargs.items())


def parse_spec(text: str) -> Spec:
    """Parse ``NAME[:VALUES]`` or ``package.module:factory[:VALUES]`` (see the module docs)."""
    if not isinstance(text, str):
        raise SpecError(f"a spec must be a string, got {type(text).__name__}")
    spec = text.strip()
    if not spec:
        raise SpecError("empty spec: give a name such as 'mlp' or 'package.module:factory'")
    head, _, rest = spec.partition(":")
    head = head.strip()
    if "." not in head:
        args, kwargs = _parse_values(rest, spec)
        return Spec(spec, head, False, args, kwargs)
    attribute, _, values = rest.partition(":")
    attribute = attribute.strip()
    if not _is_dotted_identifier(head) or not _is_dotted_identifier(attribute):
        raise SpecError(
            f"spec {spec!r} has a '.' before its first ':', so it must be an import spec "
            "'package.module:factory[:key=value,...]'"
        )
    args, kwargs = _parse_values(values, spec)
    return Spec(spec, f"{head}:{attribute}", True, args, kwargs)


def _unquote(raw: str) -> str | None:
    """The content of a quoted value, or ``None`` if ``raw`` is not quoted."""
    if len(raw) >= 2 and raw[0] in _QUOTES and raw[-1] == raw[0]:
        return raw[1:-1]
    return None


def parse_value(raw: str) -> Any:
    """Parse one value without a type hint: bool, None, int, float, else string."""
    quoted = _unquote(raw)
    if quoted is not None:
        return quoted
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in _NONE:
        return None
    for convert in (int, float):
        try:
            return convert(raw)
        except ValueError:
            pass
    return raw


def _coerce_one(raw: str, hint: Any) -> Any:
    """Convert ``raw`` to the type ``hint``; raise ``ValueError`` naming the expected type."""
    quoted = _unquote(raw)
    if hint is str:
        return raw if quoted is None else quoted
    if quoted is not None:
        raise ValueError(f"expects {getattr(hint, '__name__', hint)}, got the string {raw}")
    if hint is bool:
        if raw.lower() in _TRUE + ("1",):
            return True
        if raw.lower() in _FALSE + ("0",):
            return False
        raise ValueError(f"expects true or false, got {raw!r}")
    if hint is int:
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"expects an integer, got {raw!r}") from None
    if hint is float:
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"expects a number, got {raw!r}") from None
    if hint is type(None):
        if raw.lower() in _NONE:
            return None
        raise ValueError(f"expects none, got {raw!r}")
    return parse_value(raw)


def _coerce(raw: str, hint: Any) -> Any:
    """Convert ``raw`` by a type hint, trying each member of a union in order."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        members = typing.get_args(hint)
        if type(None) in members and _unquote(raw) is None and raw.lower() in _NONE:
            return None
        errors = []
        for member in members:
            if member is type(None):
                continue
            try:
                return _coerce_one(raw, member)
            except ValueError as error:
                errors.append(str(error))
        raise ValueError(" or ".join(errors))
    return _coerce_one(raw, hint)


def format_value(value: Any) -> str:
    """Write ``value`` so that :func:`parse_value` (and any type hint) reads it back unchanged."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        plain = (
            value
            and value == value.strip()
            and not any(char in value for char in ",='\"")
            and parse_value(value) == value
            and isinstance(parse_value(value), str)
        )
        if plain:
            return value
        if "'" not in value:
            return f"'{value}'"
        if '"' not in value:
            return f'"{value}"'
        raise SpecError(f"the string {value!r} holds both quote characters; it cannot be a spec")
    raise SpecError(f"{type(value).__name__} values cannot be written in a spec")


def _representable(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _signature(factory: Callable) -> inspect.Signature | None:
    try:
        return inspect.signature(factory)
    except (TypeError, ValueError):
        return None


def _type_hints(factory: Callable) -> dict[str, Any]:
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        return typing.get_type_hints(inspect.unwrap(target))
    except Exception:
        return {}


def accepts_keyword(factory: Callable, name: str) -> bool:
    """Whether ``factory`` can be called with the keyword argument ``name``."""
    signature = _signature(factory)
    if signature is None:
        return False
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            return True
        if parameter.name == name and parameter.kind is not inspect.Parameter.POSITIONAL_ONLY:
            return True
    return False


class Registry:
    """Named factories of one kind (models, datasets, losses), resolved from text specs.

    ``context`` names keyword arguments that the caller supplies (such as a dataset's
    ``split``) rather than the user; they are passed only to factories that accept them, are
    refused in specs, and are left out of the canonical form.
    """

    def __init__(self, kind: str, *, context: Iterable[str] = (), allow_import: bool = True):
        self.kind = kind
        self.context = frozenset(context)
        self.allow_import = allow_import
        self._factories: dict[str, Callable] = {}

    def register(self, name: str) -> Callable[[Callable], Callable]:
        """Decorator that registers a factory under ``name`` (no ``.`` or ``:`` allowed)."""
        if not name.replace("-", "_").isidentifier():
            raise ValueError(f"{self.kind} name {name!r} must be an identifier (dashes allowed)")

        def decorate(factory: Callable) -> Callable:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._factories[name] = factory
            return factory

        return decorate

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._factories)

    def _parse(self, spec: str | Spec) -> Spec:
        return spec if isinstance(spec, Spec) else parse_spec(spec)

    def resolve(self, spec: str | Spec) -> Callable:
        """The factory a spec names: a registered one, or one imported from its module."""
        parsed = self._parse(spec)
        if not parsed.is_import:
            if parsed.name not in self._factories:
                hint = " or an import spec 'package.module:factory'" if self.allow_import else ""
                raise SpecError(
                    f"unknown {self.kind} {parsed.name!r}; choose one of "
                    f"{', '.join(self.names())}{hint}"
                )
            return self._factories[parsed.name]
        if not self.allow_import:
            raise SpecError(
                f"{self.kind} specs cannot import code ({parsed.text!r}); "
                f"choose one of {', '.join(self.names())}"
            )
        module_name, attribute = parsed.name.split(":")
        try:
            target: Any = importlib.import_module(module_name)
        except Exception as error:
            raise SpecError(
                f"cannot import module {module_name!r} for {self.kind} spec {parsed.text!r}: "
                f"{type(error).__name__}: {error}"
            ) from error
        for part in attribute.split("."):
            if not hasattr(target, part):
                raise SpecError(
                    f"{self.kind} spec {parsed.text!r}: {target.__name__!r} has no attribute "
                    f"{part!r}"
                )
            target = getattr(target, part)
        if not callable(target):
            raise SpecError(
                f"{self.kind} spec {parsed.text!r} names a {type(target).__name__}, "
                "which cannot be called"
            )
        return target

    def bind(
        self, spec: str | Spec, *, partial: bool = False, **context: Any
    ) -> tuple[Callable, inspect.BoundArguments | None, dict[str, Any]]:
        """Resolve ``spec`` and convert its values by the factory's type hints.

        Returns the factory, the bound arguments and ``{}``; or, for a factory whose signature
        Python cannot inspect (some builtins), the factory, ``None`` and the keyword values
        parsed without hints (such a factory gets no ``context``). ``partial`` allows
        required arguments to be missing (for :meth:`canonical`).
        """
        parsed = self._parse(spec)
        factory = self.resolve(parsed)
        where = f"{self.kind} {parsed.name!r}"
        given = set(dict(parsed.kwargs)) & self.context
        if given:
            raise SpecError(
                f"{where}: {', '.join(sorted(given))} is set by flatscope, not the spec"
            )
        signature = _signature(factory)
        if signature is None:
            return factory, None, {key: parse_value(raw) for key, raw in parsed.kwargs}
        hints = _type_hints(factory)
        parameters = list(signature.parameters.values())
        positional = [
            p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        var_positional = any(p.kind is p.VAR_POSITIONAL for p in parameters)
        if len(parsed.args) > len(positional) and not var_positional:
            raise SpecError(
                f"{where} takes {len(positional)} positional value(s) but the spec gives "
                f"{len(parsed.args)}; write key=value (accepted: {_accepted(signature)})"
            )
        var_hint = next((hints.get(p.name) for p in parameters if p.kind is p.VAR_POSITIONAL), None)
        args = [
            _coerce_named(raw, hints.get(p.name), where, p.name)
            for raw, p in zip(parsed.args, positional, strict=False)
        ]
        args += [
            _coerce_named(raw, var_hint, where, "*args") for raw in parsed.args[len(positional) :]
        ]
        kwargs = {key: _coerce_named(raw, hints.get(key), where, key) for key, raw in parsed.kwargs}
        kwargs.update(
            {key: value for key, value in context.items() if accepts_keyword(factory, key)}
        )
        binder = signature.bind_partial if partial else signature.bind
        try:
            bound = binder(*args, **kwargs)
        except TypeError as error:
            raise SpecError(f"{where}: {error} (accepted: {_accepted(signature)})") from None
        return factory, bound, {}

    def build(self, spec: str | Spec, **context: Any) -> Any:
        """Call the factory a spec names with its values and the ``context`` it accepts.

        An exception raised inside an imported factory becomes a :class:`SpecError` naming
        the spec (the original stays attached as ``__cause__``); built-in factories raise
        their own errors.
        """
        parsed = self._parse(spec)
        factory, bound, kwargs = self.bind(parsed, **context)
        args = () if bound is None else bound.args
        kwargs = kwargs if bound is None else bound.kwargs
        if not parsed.is_import:
            return factory(*args, **kwargs)
        try:
            return factory(*args, **kwargs)
        except Exception as error:
            raise SpecError(
                f"{self.kind} spec {parsed.text!r}: calling {parsed.name} failed: "
                f"{type(error).__name__}: {error}"
            ) from error

    def canonical(self, spec: str | Spec) -> str:
        """The spec with every representable default filled in, in signature order.

        Two specs that build the same object have the same canonical form, and the
        canonical form builds it again, so a checkpoint can carry it.
        """
        parsed = self._parse(spec)
        factory, bound, kwargs = self.bind(parsed, partial=True)
        if bound is None:
            items = [f"{key}={format_value(value)}" for key, value in kwargs.items()]
        else:
            items = _canonical_items(bound, self.context)
        return f"{parsed.name}:{','.join(items)}" if items else parsed.name


def _coerce_named(raw: str, hint: Any, where: str, name: str) -> Any:
    try:
        return _coerce(raw, hint)
    except ValueError as error:
        raise SpecError(f"{where}: {name} {error}") from None


def _accepted(signature: inspect.Signature) -> str:
    names = [
        p.name
        for p in signature.parameters.values()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    return ", ".join(names) or "nothing"


def _canonical_items(bound: inspect.BoundArguments, context: frozenset[str]) -> list[str]:
    given = dict(bound.arguments)
    bound.apply_defaults()
    items = []
    for name, parameter in bound.signature.parameters.items():
        if name in context or name not in bound.arguments:
            continue
        value = bound.arguments[name]
        if parameter.kind is parameter.VAR_POSITIONAL:
            items.extend(format_value(item) for item in value)
        elif parameter.kind is parameter.VAR_KEYWORD:
            items.extend(f"{key}={format_value(item)}" for key, item in value.items())
        elif parameter.kind is parameter.POSITIONAL_ONLY:
            if name in given:
                items.append(format_value(value))
        elif name in given or _representable(value):
            items.append(f"{name}={format_value(value)}")
    return items
