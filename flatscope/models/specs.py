"""Text specs for models, data, losses and label noise, and the registries that resolve them.

A spec is one string a user types on the command line. Two forms exist, told apart by the
first ``:``-separated field:

``NAME[:VALUES]``
    a name from a registry (``mlp``, ``digits``, ``cifar10``, ``symmetric``). Registry names
    never contain a ``.``. ``VALUES`` is a comma-separated list of ``key=value`` items,
    optionally preceded by positional values: ``mlp:hidden=64,depth=3``,
    ``cifar10:/data/cifar,val=5000``, ``symmetric:0.4``.

``MODULE:factory[:VALUES]`` with ``MODULE`` one of ``module``, ``package.module``, ``path/file.py``
    an import spec: the module is imported (a ``.py`` file is loaded from its path),
    ``factory`` (a dotted attribute path is allowed) is looked up in it and called with
    ``VALUES``: ``torch.nn:Linear:in_features=64,out_features=10``, ``mymodels:make_net``
    (``mymodels.py`` in the current folder), ``nets/cnn.py:build:width=8``. The current folder
    is importable, as it is for ``python -m``. A first field with a ``.`` is always a module path
    or a file; a plain name (``mymodels``) is a registry name when the registry has it, else a
    module. A spec that reads both ways (``mlp:make_net`` with an ``mlp.py`` in the current
    folder that defines ``make_net``) is refused with a message that says how to write each.

**Import specs run code.** Importing a module runs it, and so does calling its factory. A spec
read from a file (a checkpoint's model, data or loss spec) is data: wrap it in
:class:`FileSpec` and the registries resolve it to their own names only, and refuse any import
spec and any value of a parameter registered as ``trusted_only`` (one that would let the factory
run code, such as a ``trust_remote_code`` switch), unless the file is marked as trusted.

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

import ast
import hashlib
import importlib
import importlib.util
import inspect
import keyword
import os
import sys
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from flatscope.errors import FlatscopeError

__all__ = [
    "SpecError",
    "UntrustedSpecError",
    "FileSpec",
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


class UntrustedSpecError(SpecError):
    """A spec read from a file asks for code (an import, a ``trusted_only`` value)."""


#: What user code may raise while it is imported or called, besides ordinary exceptions:
#: ``sys.exit()`` and an interrupt must not end flatscope silently.
_USER_CODE_ERRORS = (Exception, SystemExit, KeyboardInterrupt)


class FileSpec(str):
    """A spec read from a file: it reads as the string it holds and remembers where it came from.

    Registries resolve an untrusted ``FileSpec`` to registry names only: an import spec, or a
    value for a ``trusted_only`` parameter, raises :class:`UntrustedSpecError` naming the file,
    since obeying it would run code that the file's author chose. ``trusted=True`` (the
    command line's ``--trust-specs``) lifts that for files the user trusts.

    Attributes:
        source: the file the spec was read from.
        trusted: whether the user trusts that file.
    """

    source: str
    trusted: bool

    def __new__(cls, text: str, source: str | os.PathLike, trusted: bool = False) -> FileSpec:
        spec = super().__new__(cls, text)
        spec.source = str(source)
        spec.trusted = bool(trusted)
        return spec

    def __reduce__(self) -> tuple:
        return (FileSpec, (str(self), self.source, self.trusted))


@dataclass(frozen=True)
class Spec:
    """A parsed spec: a registry name or an import target, and the raw value strings.

    Attributes:
        text: the spec as given (stripped).
        name: the registry name, or the import target ``"package.module:factory"``.
        is_import: whether ``name`` is an import target.
        args: raw positional values, quotes kept.
        kwargs: raw ``(key, value)`` pairs in the order given, quotes kept.
        source: the file an untrusted spec was read from (see :class:`FileSpec`); ``None``
            for a spec the user gave or trusts.
    """

    text: str
    name: str
    is_import: bool
    args: tuple[str, ...]
    kwargs: tuple[tuple[str, str], ...]
    source: str | None = None


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


def _source(text: str) -> str | None:
    return text.source if isinstance(text, FileSpec) and not text.trusted else None


def parse_spec(text: str) -> Spec:
    """Parse ``NAME[:VALUES]`` or an import spec ``MODULE:factory[:VALUES]`` (module docs).

    A first field with a ``.`` (``package.module``, ``path/file.py``) makes an import spec; a
    plain name is read as a registry name here (:meth:`Registry.parse` also reads it as a
    top-level module when the registry does not have it).
    """
    if not isinstance(text, str):
        raise SpecError(f"a spec must be a string, got {type(text).__name__}")
    spec = text.strip()
    if not spec:
        raise SpecError("empty spec: give a name such as 'mlp' or 'package.module:factory'")
    head, _, rest = spec.partition(":")
    head = head.strip()
    if "." not in head:
        args, kwargs = _parse_values(rest, spec)
        return Spec(spec, head, False, args, kwargs, _source(text))
    reading = _import_reading(spec, _source(text))
    if reading is None:
        raise SpecError(
            f"spec {spec!r} has a '.' before its first ':', so it must be an import spec "
            "'package.module:factory[:key=value,...]' or 'path/to/file.py:factory[:...]'"
        )
    return reading


def _is_file(head: str) -> bool:
    return head.endswith(".py") and len(head) > 3


def _import_reading(spec: str, source: str | None) -> Spec | None:
    """``spec`` read as ``MODULE:factory[:VALUES]``, or ``None`` if it cannot be one."""
    head, _, rest = spec.partition(":")
    head = head.strip()
    attribute, _, values = rest.partition(":")
    attribute = attribute.strip()
    if not (_is_file(head) or _is_dotted_identifier(head)) or not _is_dotted_identifier(attribute):
        return None
    args, kwargs = _parse_values(values, spec)
    return Spec(spec, f"{head}:{attribute}", True, args, kwargs, source)


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
    if hint not in (bool, int, float, type(None)):  # no hint, or one without a conversion
        return parse_value(raw)
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
    if raw.lower() in _NONE:
        return None
    raise ValueError(f"expects none, got {raw!r}")


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
    refused in specs, and are left out of the canonical form. ``option`` is the command-line
    option that gives a spec of this kind (``--model``), named in messages.
    """

    def __init__(
        self,
        kind: str,
        *,
        context: Iterable[str] = (),
        allow_import: bool = True,
        option: str | None = None,
    ):
        self.kind = kind
        self.context = frozenset(context)
        self.allow_import = allow_import
        self.option = option or f"--{kind.replace(' ', '-')}"
        self._factories: dict[str, Callable] = {}
        self._trusted_only: dict[str, frozenset[str]] = {}

    def register(
        self, name: str, *, trusted_only: Iterable[str] = ()
    ) -> Callable[[Callable], Callable]:
        """Decorator that registers a factory under ``name`` (no ``.`` or ``:`` allowed).

        ``trusted_only`` names parameters whose values can make the factory run code chosen
        by the spec's author (a ``trust_remote_code`` switch, a module path): a spec read from
        an untrusted file (:class:`FileSpec`) may not set them to anything but their defaults.
        """
        if not name.replace("-", "_").isidentifier():
            raise ValueError(f"{self.kind} name {name!r} must be an identifier (dashes allowed)")

        def decorate(factory: Callable) -> Callable:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._factories[name] = factory
            self._trusted_only[name] = frozenset(trusted_only)
            return factory

        return decorate

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._factories)

    def parse(self, spec: str | Spec) -> Spec:
        """The spec as this registry reads it: a plain first field is a registry name when the
        registry has it, else the top-level module of an import spec (module docs).

        Raises:
            SpecError: the spec reads both ways (a registry name, and a module in the current
                folder that defines the factory).
        """
        if isinstance(spec, Spec):
            parsed = spec
        else:
            try:
                parsed = parse_spec(spec)
            except SpecError:  # values that only a module's factory would take
                reading = self._module_reading(spec)
                if reading is None:
                    raise
                if reading.name.split(":")[0] not in self._factories:
                    return reading
                self._check_unambiguous(reading)
                raise
        if parsed.is_import or not self.allow_import:
            return parsed
        reading = self._module_reading(parsed.text, parsed.source)
        if reading is None:
            return parsed
        if parsed.name not in self._factories:
            return reading
        self._check_unambiguous(reading)
        return parsed

    def _module_reading(self, text: str, source: str | None = None) -> Spec | None:
        """``text`` as ``module:factory[:VALUES]`` when its first field is a plain name, else
        ``None`` (also when its values do not parse that way)."""
        if not self.allow_import or "." in text.strip().partition(":")[0]:
            return None
        try:
            return _import_reading(text.strip(), source or _source(text))
        except SpecError:
            return None

    def _check_unambiguous(self, reading: Spec) -> None:
        """Refuse a registry name whose spec also names a factory of a module in the current
        folder."""
        module, attribute = reading.name.split(":")
        found = _local_module_defining(module, attribute.split(".")[0])
        if found is not None:
            raise SpecError(
                f"{self.kind} spec {reading.text!r} is ambiguous: {module!r} is a {self.kind} "
                f"of flatscope and {found} in the current folder defines {attribute!r}; write "
                f"./{found}:{attribute} for the file, or rename {found}"
            )

    def resolve(self, spec: str | Spec) -> Callable:
        """The factory a spec names: a registered one, or one imported from its module.

        Raises:
            UntrustedSpecError: an import spec read from an untrusted file (:class:`FileSpec`).
            SpecError: an unknown name, a module that cannot be imported, a missing attribute.
        """
        parsed = self.parse(spec)
        if not parsed.is_import:
            if parsed.name not in self._factories:
                hint = " or an import spec 'module:factory'" if self.allow_import else ""
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
        if parsed.source is not None:
            raise self._untrusted(parsed, f"would import {module_name!r} and run its code")
        target: Any = self._import(module_name, parsed)
        for part in attribute.split("."):
            if not hasattr(target, part):
                raise SpecError(
                    f"{self.kind} spec {parsed.text!r}: module {module_name!r} has no attribute "
                    f"{part!r}"
                )
            target = getattr(target, part)
        if not callable(target):
            raise SpecError(
                f"{self.kind} spec {parsed.text!r} names a {type(target).__name__}, "
                "which cannot be called"
            )
        return target

    def _import(self, module_name: str, parsed: Spec) -> types.ModuleType:
        """Import a module (or load a ``.py`` file), the current folder being importable."""
        try:
            if _is_file(module_name):
                return _load_file(module_name)
            _current_folder_importable()
            return importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            parts = module_name.split(".")
            if error.name not in {".".join(parts[:i]) for i in range(1, len(parts) + 1)}:
                raise self._import_error(module_name, parsed, error) from error
            names = (
                f"; and {module_name!r} is not a {self.kind} name ({', '.join(self.names())})"
                if len(parts) == 1
                else ""
            )
            raise SpecError(
                f"cannot import module {module_name!r} for {self.kind} spec {parsed.text!r}: "
                f"no module {error.name!r} in the current folder ({os.getcwd()}) or the "
                f"installed packages{names}"
            ) from error
        except _USER_CODE_ERRORS as error:
            raise self._import_error(module_name, parsed, error) from error

    def _import_error(self, module_name: str, parsed: Spec, error: BaseException) -> SpecError:
        return SpecError(
            f"cannot import module {module_name!r} for {self.kind} spec {parsed.text!r}: "
            f"{type(error).__name__}: {error}"
        )

    def _untrusted(self, parsed: Spec, what: str) -> UntrustedSpecError:
        return UntrustedSpecError(
            f"{parsed.source} names the {self.kind} spec {parsed.text!r}, which {what}; "
            f"flatscope runs no code named by a file. If you trust it, pass "
            f"{self.option} {parsed.text!r} yourself or add --trust-specs"
        )

    def bind(
        self, spec: str | Spec, *, partial: bool = False, **context: Any
    ) -> tuple[Callable, inspect.BoundArguments | None, dict[str, Any]]:
        """Resolve ``spec`` and convert its values by the factory's type hints.

        Returns the factory, the bound arguments and ``{}``; or, for a factory whose signature
        Python cannot inspect (some builtins), the factory, ``None`` and the keyword values
        parsed without hints (such a factory gets no ``context``). ``partial`` allows
        required arguments to be missing (for :meth:`canonical`).
        """
        parsed = self.parse(spec)
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
        if parsed.source is not None:
            self._check_trusted_only(parsed, bound)
        return factory, bound, {}

    def _check_trusted_only(self, parsed: Spec, bound: inspect.BoundArguments) -> None:
        """An untrusted spec leaves every ``trusted_only`` parameter at its default."""
        for name in sorted(self._trusted_only.get(parsed.name, ())):
            parameter = bound.signature.parameters.get(name)
            if name in bound.arguments and (
                parameter is None or bound.arguments[name] != parameter.default
            ):
                raise self._untrusted(
                    parsed,
                    f"sets {name}={format_value(bound.arguments[name])}, a value only a "
                    "trusted spec may set",
                )

    def build(self, spec: str | Spec, **context: Any) -> Any:
        """Call the factory a spec names with its values and the ``context`` it accepts.

        An exception raised inside an imported factory, ``sys.exit()`` and
        ``KeyboardInterrupt`` included, becomes a :class:`SpecError` naming the spec (the
        original stays attached as ``__cause__``); built-in factories raise their own errors.
        """
        parsed = self.parse(spec)
        factory, bound, kwargs = self.bind(parsed, **context)
        args = () if bound is None else bound.args
        kwargs = kwargs if bound is None else bound.kwargs
        if not parsed.is_import:
            return factory(*args, **kwargs)
        try:
            return factory(*args, **kwargs)
        except _USER_CODE_ERRORS as error:
            raise SpecError(
                f"{self.kind} spec {parsed.text!r}: calling {parsed.name} failed: "
                f"{_describe_error(error)}"
            ) from error

    def canonical(self, spec: str | Spec) -> str:
        """The spec with every representable default filled in, in signature order.

        Two specs that build the same object have the same canonical form, and the
        canonical form builds it again, so a checkpoint can carry it.
        """
        parsed = self.parse(spec)
        factory, bound, kwargs = self.bind(parsed, partial=True)
        if bound is None:
            items = [f"{key}={format_value(value)}" for key, value in kwargs.items()]
        else:
            items = _canonical_items(bound, self.context)
        return f"{parsed.name}:{','.join(items)}" if items else parsed.name


def _describe_error(error: BaseException) -> str:
    if isinstance(error, SystemExit):
        return f"it called sys.exit({error.code!r}); a factory must return, not exit"
    if isinstance(error, KeyboardInterrupt):
        return "it was interrupted (KeyboardInterrupt)"
    return f"{type(error).__name__}: {error}"


def _current_folder_importable() -> None:
    """Put the current folder first on ``sys.path`` as ``python -m`` does (the ``flatscope``
    script starts with its own folder there instead)."""
    here = os.getcwd()
    if "" not in sys.path and here not in sys.path:
        sys.path.insert(0, here)
    importlib.invalidate_caches()


def _load_file(path_text: str) -> types.ModuleType:
    """The module of a ``.py`` file, executed once per process (cached in ``sys.modules``)."""
    path = os.path.abspath(path_text)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no file {path}")
    name = "flatscope_user_" + hashlib.sha256(path.encode()).hexdigest()[:16]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _local_module_defining(module: str, name: str) -> str | None:
    """``module.py`` (or ``module/__init__.py``) in the current folder if its source binds
    ``name`` at top level (read with :mod:`ast`, never run), else ``None``."""
    for candidate in (f"{module}.py", os.path.join(module, "__init__.py")):
        try:
            with open(candidate, encoding="utf-8") as file:
                tree = ast.parse(file.read())
        except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
            continue
        names = _top_level_names(tree)
        if name in names or "*" in names:
            return candidate
    return None


def _top_level_names(tree: ast.Module) -> set[str]:
    """The names a module's top level binds (``*`` stands for a star import)."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


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
