"""Spec parsing, value conversion, registries and import specs."""

from __future__ import annotations

import math
import re
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flatscope.errors import FlatscopeError
from flatscope.models.specs import (
    FileSpec,
    Registry,
    Spec,
    SpecError,
    UntrustedSpecError,
    format_value,
    parse_spec,
    parse_value,
)


def test_parse_registry_spec_with_positional_and_keyword_values():
    spec = parse_spec(" cifar10:C:/data/x, val=500 , split_seed=2 ")
    assert not spec.is_import
    assert spec.name == "cifar10"
    assert spec.args == ("C:/data/x",)
    assert spec.kwargs == (("val", "500"), ("split_seed", "2"))


def test_parse_bare_name_and_trailing_colon():
    assert parse_spec("digits") == Spec("digits", "digits", False, (), ())
    assert parse_spec("digits:") == Spec("digits:", "digits", False, (), ())


def test_a_dot_before_the_first_colon_makes_an_import_spec():
    spec = parse_spec("torch.nn:Linear:in_features=3,out_features=2")
    assert spec.is_import
    assert spec.name == "torch.nn:Linear"
    assert spec.kwargs == (("in_features", "3"), ("out_features", "2"))


def test_quoted_values_keep_commas_and_equals():
    spec = parse_spec("""x:'a,b=c',path="d,e",k='1'""")
    assert spec.args == ("'a,b=c'",)
    assert dict(spec.kwargs) == {"path": '"d,e"', "k": "'1'"}
    assert parse_value(dict(spec.kwargs)["k"]) == "1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty spec"),
        ("   ", "empty spec"),
        ("x:a='b", "unterminated"),
        ("x:a=1,,b=2", "empty value"),
        ("x:a=1,a=2", "twice"),
        ("x:a=1,b", "follows key=value"),
        ("x:a b=1", "not a valid keyword"),
        ("x:a=", "no value"),
        ("pkg.mod", "import spec"),
        ("0.4", "import spec"),
        ("pkg.mod:1bad", "import spec"),
    ],
)
def test_malformed_specs_raise_one_line_spec_errors(text, message):
    with pytest.raises(SpecError, match=message) as info:
        parse_spec(text)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, FlatscopeError)


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("true", True),
        ("False", False),
        ("none", None),
        ("null", None),
        ("3", 3),
        ("-7", -7),
        ("1e-3", 1e-3),
        ("0.5", 0.5),
        ("inf", math.inf),
        ("abc", "abc"),
        ("'3'", "3"),
        ('"true"', "true"),
    ],
)
def test_parse_value_without_hints(raw, value):
    parsed = parse_value(raw)
    assert parsed == value and type(parsed) is type(value)


_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text().filter(lambda s: not ("'" in s and '"' in s)),
)


@settings(derandomize=True, max_examples=300, deadline=None)
@given(_values)
def test_format_value_round_trips_through_parse_value(value):
    parsed = parse_value(format_value(value))
    assert parsed == value and type(parsed) is type(value)


@settings(derandomize=True, max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(["a", "b", "c"]), _values, max_size=3))
def test_formatted_values_survive_a_whole_spec(kwargs):
    text = "x:" + ",".join(f"{key}={format_value(value)}" for key, value in kwargs.items())
    parsed = {key: parse_value(raw) for key, raw in parse_spec(text).kwargs}
    assert parsed == kwargs


def _registry() -> Registry:
    registry = Registry("widget", context=("split",))

    @registry.register("plain")
    def plain(
        *,
        count: int = 2,
        scale: float = 1.0,
        flag: bool = False,
        label: str = "a",
        limit: int | None = None,
    ) -> dict:
        return {"count": count, "scale": scale, "flag": flag, "label": label, "limit": limit}

    @registry.register("positional")
    def positional(path: str, *, size: int = 1, split: str = "train") -> tuple:
        return path, size, split

    return registry


def test_values_are_converted_by_type_hints():
    registry = _registry()
    built = registry.build("plain:count=5,scale=3,flag=true,label=123,limit=none")
    assert built == {"count": 5, "scale": 3.0, "flag": True, "label": "123", "limit": None}
    assert type(built["scale"]) is float and type(built["label"]) is str
    assert registry.build("plain:limit=4")["limit"] == 4


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("plain:count=abc", "count expects an integer"),
        ("plain:count=1.5", "count expects an integer"),
        ("plain:count='3'", "count expects int"),
        ("plain:flag=maybe", "flag expects true or false"),
        ("plain:scale=fast", "scale expects a number"),
        ("plain:limit=many", "limit expects an integer"),
        ("plain:colour=red", "unexpected keyword.*accepted: count, scale, flag, label, limit"),
        ("plain:3", "takes 0 positional"),
        ("positional", "missing a required argument: 'path'"),
        ("positional:/a,split=test", "split is set by flatscope"),
        ("gadget", "unknown widget 'gadget'; choose one of plain, positional or an import"),
    ],
)
def test_bad_values_and_names_raise_spec_errors(text, message):
    with pytest.raises(SpecError, match=message):
        _registry().build(text)


def test_context_reaches_only_factories_that_accept_it():
    registry = _registry()
    assert registry.build("positional:/data,size=3", split="test") == ("/data", 3, "test")
    assert registry.build("plain", split="test")["count"] == 2


def test_canonical_form_fills_defaults_and_rebuilds_the_same_object():
    registry = _registry()
    canonical = registry.canonical("plain:label=123,count=4")
    assert canonical == "plain:count=4,scale=1.0,flag=false,label='123',limit=none"
    assert registry.canonical(canonical) == canonical
    assert registry.build(canonical) == registry.build("plain:label=123,count=4")
    assert registry.canonical("positional:/d") == "positional:path=/d,size=1"


def test_import_spec_builds_with_hinted_keywords():
    registry = Registry("model")
    layer = registry.build("torch.nn:Linear:in_features=3,out_features=2,bias=false")
    assert (layer.in_features, layer.out_features, layer.bias) == (3, 2, None)
    canonical = registry.canonical("torch.nn:Linear:in_features=3,out_features=2")
    assert canonical.startswith("torch.nn:Linear:in_features=3,out_features=2,bias=true")


def test_import_failures_are_spec_errors(tmp_path, monkeypatch):
    package = tmp_path / "flatscope_spec_fixture"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "broken.py").write_text("raise RuntimeError('boom at import')\n")
    (package / "fine.py").write_text(
        textwrap.dedent("""
        VALUE = 3
        def make(size: int = 1):
            return ("made", size)
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry("model")
    assert registry.build("flatscope_spec_fixture.fine:make:size=4") == ("made", 4)
    cases = [
        ("no_such_pkg.mod:f", "cannot import module 'no_such_pkg.mod'.*no module 'no_such_pkg'"),
        ("flatscope_spec_fixture.broken:f", "RuntimeError: boom at import"),
        ("flatscope_spec_fixture.fine:missing", "has no attribute 'missing'"),
        ("flatscope_spec_fixture.fine:VALUE", "cannot be called"),
        ("flatscope_spec_fixture.fine:make:size=x", "size expects an integer"),
    ]
    for text, message in cases:
        with pytest.raises(SpecError, match=message):
            registry.build(text)


def test_registry_without_imports_refuses_import_specs():
    registry = Registry("loss", allow_import=False)
    registry.register("mse")(lambda: "mse")
    with pytest.raises(SpecError, match="cannot import code"):
        registry.build("os.path:join")
    with pytest.raises(ValueError, match="already registered"):
        registry.register("mse")(lambda: None)


@pytest.fixture
def user_modules():
    """Forget the modules a test imports from its folder."""
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        del sys.modules[name]


@pytest.mark.usefixtures("user_modules")
def test_a_spec_read_from_a_file_resolves_to_registry_names_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "userfactories.py").write_text("def make(size: int = 1):\n    return size\n")
    registry = Registry("model")
    registry.register("plain", trusted_only=("code",))(lambda size=1, code=None: (size, code))
    untrusted = {
        "os.path:join:a": "would import 'os.path'",
        "userfactories:make": "would import 'userfactories'",
        "./userfactories.py:make": "would import './userfactories.py'",
        "plain:code=x": "sets code=x, a value only a trusted spec may set",
    }
    for text, message in untrusted.items():
        spec = FileSpec(text, "run/final.pt")
        with pytest.raises(UntrustedSpecError, match=re.escape(message)) as info:
            registry.build(spec)
        assert str(info.value).startswith(f"run/final.pt names the model spec {text!r}")
        assert str(info.value).endswith(f"pass --model {text!r} yourself or add --trust-specs")
        trusted = FileSpec(text, "run/final.pt", trusted=True)
        if not text.startswith("os"):
            registry.build(trusted)  # trusted: imports and runs
    assert registry.build(FileSpec("plain:size=3,code=none", "a.pt")) == (3, None)  # the default
    assert registry.canonical(FileSpec("plain:size=3", "a.pt")) == "plain:size=3,code=none"


@pytest.mark.usefixtures("user_modules")
def test_import_specs_as_people_write_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "deep.py").write_text("def make(width: int = 2):\n    return width\n")
    (tmp_path / "toplevel.py").write_text("from nets.deep import make\n")
    (tmp_path / "plain.py").write_text("def make():\n    return 'file'\n")
    registry = Registry("model")
    registry.register("plain")(lambda hidden=1: ("registry", hidden))
    assert registry.build("toplevel:make:width=5") == 5  # the current folder is importable
    assert registry.canonical("toplevel:make") == "toplevel:make:width=2"
    assert registry.build("nets/deep.py:make:3") == 3
    assert registry.build("plain:hidden=4") == ("registry", 4)  # registry names keep priority
    assert registry.build("./plain.py:make") == "file"
    for text in ("plain:make", "plain:make:x=1"):
        with pytest.raises(SpecError, match="ambiguous.*write ./plain.py:make for the file"):
            registry.build(text)
    with pytest.raises(SpecError, match="no module 'nothere' in the current folder.*not a model"):
        registry.build("nothere:make")


def test_a_quoted_value_reaches_an_unhinted_parameter_as_a_string():
    registry = Registry("model")

    @registry.register("tagged")
    def tagged(tag=None, count: int = 0):
        return tag, count

    assert registry.build("tagged:tag='abc'") == ("abc", 0)
    assert registry.build("tagged:tag=abc,count=2") == ("abc", 2)
    assert registry.build("tagged:tag='3'") == ("3", 0)
    with pytest.raises(SpecError, match="count expects int, got the string '2'"):
        registry.build("tagged:count='2'")


@pytest.mark.usefixtures("user_modules")
def test_exits_and_interrupts_of_user_factories_are_spec_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source = "def quits():\n    sys.exit(0)\ndef stops():\n    raise KeyboardInterrupt\n"
    (tmp_path / "leaving.py").write_text("import sys\n" + source)
    registry = Registry("data")
    with pytest.raises(SpecError, match=r"called sys.exit\(0\); a factory must return"):
        registry.build("leaving:quits")
    with pytest.raises(SpecError, match=r"interrupted \(KeyboardInterrupt\)"):
        registry.build("leaving:stops")
