"""Checkpoint loading: every layout round-trips into a model; every bad file is one clear error."""

from __future__ import annotations

import hashlib
import os
import pickle
import sys

import numpy as np
import pytest
import torch
from torch import nn

from flatscope.errors import CheckpointError, OutputError
from flatscope.io.checkpoint import (
    CHECKPOINT_FORMAT,
    apply_state_dict,
    load_checkpoint,
    save_checkpoint,
)


class TinyNet(nn.Module):
    """Conv + BatchNorm + Linear: parameters, running buffers and num_batches_tracked."""

    def __init__(self, width: int = 2) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, width, 3)
        self.bn = nn.BatchNorm2d(width)
        self.fc = nn.Linear(9 * width, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.bn(self.conv(x)).flatten(1))


class Wrapper(nn.Module):
    """A model whose own keys start with ``model.``: nothing may be stripped."""

    def __init__(self) -> None:
        super().__init__()
        self.model = TinyNet()


class Harmful:
    """Unpickling this would run a shell command that creates ``marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def random_model(seed: int, width: int = 2) -> TinyNet:
    """A TinyNet whose every parameter and buffer is drawn from a generator seeded by ``seed``."""
    model = TinyNet(width)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            else:
                tensor.fill_(int(torch.randint(1, 100, (), generator=generator)))
    return model


def assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name


def load_into_fresh(path, **kwargs) -> TinyNet:
    model = TinyNet()
    apply_state_dict(model, load_checkpoint(path, **kwargs).state_dict)
    return model


@pytest.fixture
def source() -> TinyNet:
    return random_model(seed=0)


def prefixed(state_dict, prefix):
    return {prefix + name: tensor for name, tensor in state_dict.items()}


LAYOUTS = {
    "raw": lambda sd: sd,
    "state_dict": lambda sd: {"state_dict": sd, "epoch": 3},
    "model_state_dict": lambda sd: {"model_state_dict": sd, "optimizer_state_dict": {}},
    "model": lambda sd: {"model": sd, "step": 10},
    "net": lambda sd: {"net": sd},
    "ema": lambda sd: {"ema": sd},
    "ddp": lambda sd: prefixed(sd, "module."),
    "lightning": lambda sd: {"state_dict": prefixed(sd, "model."), "global_step": 5},
    "compiled": lambda sd: prefixed(sd, "_orig_mod."),
    "ddp+compiled": lambda sd: {"model": prefixed(sd, "module._orig_mod.")},
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_torch_save_layouts_round_trip(tmp_path, source, layout):
    path = tmp_path / "ckpt.pt"
    torch.save(LAYOUTS[layout](source.state_dict()), path)
    assert_same_state(load_into_fresh(path), source)


def test_legacy_serialization_round_trips(tmp_path, source):
    path = tmp_path / "legacy.pt"
    torch.save({"state_dict": source.state_dict()}, path, _use_new_zipfile_serialization=False)
    assert_same_state(load_into_fresh(path), source)


def test_safetensors_round_trip_with_header_metadata(tmp_path, source):
    from safetensors.torch import save_file

    path = tmp_path / "weights.safetensors"
    save_file(source.state_dict(), path, metadata={"origin": "test"})
    loaded = load_checkpoint(path)
    assert loaded.layout == "safetensors"
    assert loaded.metadata == {"origin": "test"}
    assert_same_state(load_into_fresh(path), source)


def test_safetensors_detected_by_content_not_name(tmp_path, source):
    from safetensors.torch import save_file

    path = tmp_path / "weights.bin"
    save_file(source.state_dict(), path)
    assert load_checkpoint(path).layout == "safetensors"


def test_missing_safetensors_package_is_a_clear_error(tmp_path, source, monkeypatch):
    from safetensors.torch import save_file

    path = tmp_path / "weights.safetensors"
    save_file(source.state_dict(), path)
    monkeypatch.setitem(sys.modules, "safetensors", None)
    with pytest.raises(CheckpointError, match="pip install safetensors"):
        load_checkpoint(path)


def test_loaded_checkpoint_records_sha256_path_and_metadata(tmp_path, source):
    path = tmp_path / "ckpt.pt"
    torch.save({"model": source.state_dict(), "epoch": 7}, path)
    loaded = load_checkpoint(path)
    assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert loaded.path == path
    assert loaded.layout == "dict[model]"
    assert loaded.metadata == {"epoch": 7}
    assert loaded.module is None and loaded.model_spec is None


def test_training_weights_preferred_over_ema_unless_named(tmp_path, source):
    other = random_model(seed=1)
    path = tmp_path / "ckpt.pt"
    torch.save({"ema": other.state_dict(), "model": source.state_dict()}, path)
    assert_same_state(load_into_fresh(path), source)
    assert_same_state(load_into_fresh(path, key="ema"), other)


def test_user_named_key(tmp_path, source):
    path = tmp_path / "ckpt.pt"
    torch.save({"weights_blob": source.state_dict(), "epoch": 1}, path)
    with pytest.raises(CheckpointError, match="weights_blob"):
        load_checkpoint(path)
    assert_same_state(load_into_fresh(path, key="weights_blob"), source)
    with pytest.raises(CheckpointError, match="no entry 'nope'.*weights_blob"):
        load_checkpoint(path, key="nope")
    with pytest.raises(CheckpointError, match="entry 'epoch'.*not a state_dict"):
        load_checkpoint(path, key="epoch")


def test_keys_that_already_fit_are_not_stripped(tmp_path):
    source = Wrapper()
    source.model = random_model(seed=2)
    path = tmp_path / "ckpt.pt"
    torch.save(source.state_dict(), path)
    target = Wrapper()
    apply_state_dict(target, load_checkpoint(path).state_dict)
    assert_same_state(target, source)


def test_flatscope_checkpoint_carries_specs_and_optimizer(tmp_path, source):
    optimizer = torch.optim.SGD(source.parameters(), lr=0.1, momentum=0.9)
    source(torch.ones(2, 1, 5, 5)).sum().backward()
    optimizer.step()
    rng_state = torch.Generator().manual_seed(3).get_state()
    path = tmp_path / "trained.pt"
    save_checkpoint(
        path,
        source,
        model_spec="tiny:width=2",
        data_spec="digits",
        optimizer=optimizer,
        extra={"epoch": 2, "rng": rng_state, "history": [0.5, 0.25]},
    )
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == CHECKPOINT_FORMAT
    loaded = load_checkpoint(path)
    assert (loaded.layout, loaded.model_spec, loaded.data_spec) == (
        "flatscope",
        "tiny:width=2",
        "digits",
    )
    assert loaded.metadata["extra"]["epoch"] == 2
    assert torch.equal(loaded.metadata["extra"]["rng"], rng_state)
    assert_same_state(load_into_fresh(path), source)
    restored = torch.optim.SGD(TinyNet().parameters(), lr=0.1, momentum=0.9)
    restored.load_state_dict(loaded.metadata["optimizer_state_dict"])
    buffers = [s["momentum_buffer"] for s in restored.state_dict()["state"].values()]
    expected = [s["momentum_buffer"] for s in optimizer.state_dict()["state"].values()]
    assert all(torch.equal(a, b) for a, b in zip(buffers, expected, strict=True))


def test_save_refuses_values_that_need_unsafe_unpickling(tmp_path, source):
    path = tmp_path / "ckpt.pt"
    with pytest.raises(TypeError, match=r"\['extra'\]\['stats'\]\[1\] is a ndarray"):
        save_checkpoint(path, source, model_spec="tiny", extra={"stats": [1.0, np.zeros(2)]})
    with pytest.raises(TypeError, match="float64"):
        save_checkpoint(path, source, model_spec="tiny", extra={"loss": np.float64(0.1)})
    assert list(tmp_path.iterdir()) == []


def test_newer_flatscope_format_is_refused(tmp_path, source):
    path = tmp_path / "ckpt.pt"
    torch.save({"format": "flatscope.checkpoint/2", "state_dict": source.state_dict()}, path)
    with pytest.raises(CheckpointError, match="upgrade flatscope"):
        load_checkpoint(path)


def test_failed_save_keeps_old_file_and_leaves_no_temporary(tmp_path, source, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, source, model_spec="tiny")
    before = path.read_bytes()

    def save_half_then_fail(obj, file):
        file.write(b"PK\x03\x04 partial bytes")
        raise RuntimeError("serialization failed")

    monkeypatch.setattr(torch, "save", save_half_then_fail)
    with pytest.raises(RuntimeError, match="serialization failed"):
        save_checkpoint(path, random_model(seed=5), model_spec="tiny")
    with pytest.raises(RuntimeError, match="serialization failed"):
        save_checkpoint(tmp_path / "new.pt", source, model_spec="tiny")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_unwritable_destination_is_an_output_error(tmp_path, source):
    with pytest.raises(OutputError, match="cannot write .*missing"):
        save_checkpoint(tmp_path / "missing" / "ckpt.pt", source, model_spec="tiny")


def test_torchscript_only_with_unsafe_pickle(tmp_path, source):
    path = tmp_path / "scripted.pt"
    torch.jit.script(source.eval()).save(str(path))
    with pytest.raises(CheckpointError, match="TorchScript.*--unsafe-pickle"):
        load_checkpoint(path)
    loaded = load_checkpoint(path, unsafe_pickle=True)
    assert loaded.layout == "torchscript"
    x = torch.rand(2, 1, 5, 5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(loaded.module(x), source(x))
    assert_same_state(load_into_fresh(path, unsafe_pickle=True), source)


def test_pickled_module_only_with_unsafe_pickle(tmp_path, source):
    path = tmp_path / "module.pt"
    torch.save({"model": source, "epoch": 4}, path)
    with pytest.raises(CheckpointError, match="references .*TinyNet.*--unsafe-pickle"):
        load_checkpoint(path)
    loaded = load_checkpoint(path, unsafe_pickle=True)
    assert isinstance(loaded.module, TinyNet) and loaded.metadata == {"epoch": 4}
    assert_same_state(load_into_fresh(path, unsafe_pickle=True), source)
    torch.save(source, path)
    assert load_checkpoint(path, unsafe_pickle=True).layout == "pickled-module"


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_code_executing_pickle_is_refused_without_running(tmp_path, writer):
    marker = tmp_path / "marker"
    path = tmp_path / "harmful.pt"
    payload = {"state_dict": Harmful(str(marker))}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(CheckpointError, match=r"pickled Python code.*system.*--unsafe-pickle"):
        load_checkpoint(path)
    assert not marker.exists()


def truncated(tmp_path, source, **save_kwargs):
    full = tmp_path / "full.pt"
    torch.save(source.state_dict(), full, **save_kwargs)
    data = full.read_bytes()
    full.unlink()
    return data[: len(data) // 2]


def bad_files(tmp_path, source):
    """name -> (make the file and return its path, a phrase the message must contain)."""
    from safetensors.torch import save as save_bytes

    def write(name, data):
        path = tmp_path / name
        path.write_bytes(data)
        return path

    def saved(name, obj):
        path = tmp_path / name
        torch.save(obj, path)
        return path

    safetensors_bytes = save_bytes(source.state_dict())
    return {
        "missing": (lambda: tmp_path / "nope.pt", "not found"),
        "directory": (lambda: tmp_path, "is a directory"),
        "empty": (lambda: write("empty.pt", b""), "is empty"),
        "truncated zip": (lambda: write("t.pt", truncated(tmp_path, source)), "truncated"),
        "truncated legacy": (
            lambda: write(
                "l.pt", truncated(tmp_path, source, _use_new_zipfile_serialization=False)
            ),
            "truncated",
        ),
        "truncated safetensors": (
            lambda: write("t.safetensors", safetensors_bytes[: len(safetensors_bytes) // 2]),
            "not a readable safetensors",
        ),
        "text": (lambda: write("notes.pt", b"epoch 3: loss 0.12\n"), "looks like a text file"),
        "png": (lambda: write("img.pt", b"\x89PNG\r\n\x1a\n" + bytes(64)), "PNG image"),
        "binary junk": (lambda: write("junk.pt", bytes(range(7, 200))), "not a readable PyTorch"),
        "list": (lambda: saved("list.pt", [torch.zeros(2)]), "holds a list"),
        "dict without weights": (lambda: saved("d.pt", {"epoch": 1, "lr": 0.1}), "epoch, lr"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "directory",
        "empty",
        "truncated zip",
        "truncated legacy",
        "truncated safetensors",
        "text",
        "png",
        "binary junk",
        "list",
        "dict without weights",
    ],
)
def test_bad_files_give_one_line_checkpoint_errors(tmp_path, source, case):
    make, phrase = bad_files(tmp_path, source)[case]
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(make())
    message = str(info.value)
    assert phrase in message and "\n" not in message


def test_directory_error_names_candidate_files(tmp_path, source):
    torch.save(source.state_dict(), tmp_path / "last.ckpt")
    with pytest.raises(CheckpointError, match="contains last.ckpt"):
        load_checkpoint(tmp_path)


def test_mismatch_lists_missing_unexpected_and_shapes_and_leaves_model_alone(source):
    state = dict(source.state_dict())
    del state["fc.bias"]
    state["head.weight"] = torch.zeros(1)
    state["conv.weight"] = torch.zeros(4, 1, 3, 3)
    target = random_model(seed=9)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(CheckpointError) as info:
        apply_state_dict(target, state)
    message = str(info.value)
    assert "1 missing key (fc.bias)" in message
    assert "1 unexpected key (head.weight)" in message
    assert (
        "1 shape mismatch (conv.weight: checkpoint [4, 1, 3, 3] vs model [2, 1, 3, 3])" in message
    )
    assert "\n" not in message
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


def test_mismatch_shows_first_few_with_counts(source):
    wide = random_model(seed=0, width=4)
    with pytest.raises(CheckpointError, match=r"7 shape mismatches \(.* and 2 more\)"):
        apply_state_dict(source, prefixed(wide.state_dict(), "module."))
    unrelated = {f"module.layer{i}.weight": torch.zeros(1) for i in range(8)}
    with pytest.raises(
        CheckpointError, match=r"8 missing keys .*and 3 more.* 8 unexpected keys"
    ) as info:
        apply_state_dict(source, unrelated)
    assert "stripping" not in str(info.value)  # stripping that gains nothing is not done


def test_mismatch_message_names_stripped_prefix(source):
    state = prefixed(source.state_dict(), "module.")
    del state["module.fc.weight"]
    with pytest.raises(CheckpointError, match="after stripping 'module.'.*fc.weight"):
        apply_state_dict(TinyNet(), state)


def test_missing_num_batches_tracked_is_tolerated(source):
    state = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    target = TinyNet()
    apply_state_dict(target, state)
    assert torch.equal(target.bn.running_var, source.bn.running_var)
    assert int(target.bn.num_batches_tracked) == 0


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(source, bad):
    state = dict(source.state_dict())
    state["bn.running_var"] = state["bn.running_var"].clone()
    state["bn.running_var"][0] = bad
    state["fc.weight"] = torch.full_like(state["fc.weight"], bad)
    kind = "NaN" if bad != bad else "Inf"
    with pytest.raises(
        CheckpointError, match=rf"'bn.running_var' holds .*1 {kind}.*1 other tensor"
    ):
        apply_state_dict(TinyNet(), state)


# ------------------------------------------- save_pretrained folders and tied parameters


class TiedLM(nn.Module):
    """An embedding and an output layer that share one weight, as language models tie them."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(5, 3)
        self.head = nn.Linear(3, 5, bias=False)
        self.head.weight = self.embed.weight


def test_a_tied_name_may_be_missing_when_its_partner_is_present(tmp_path):
    """safetensors stores a shared tensor once; the missing alias takes the present weight."""
    from safetensors.torch import save_model

    source = TiedLM()
    save_model(source, str(tmp_path / "model.safetensors"))
    loaded = load_checkpoint(tmp_path / "model.safetensors")
    assert len(loaded.state_dict) == 1  # one of the two tied names
    target = TiedLM()
    apply_state_dict(target, loaded.state_dict)
    assert torch.equal(target.embed.weight, source.embed.weight)
    assert target.head.weight is target.embed.weight


def test_an_untied_missing_key_is_still_refused():
    model = TinyNet()
    state = {k: v for k, v in model.state_dict().items() if k != "fc.weight"}
    with pytest.raises(CheckpointError, match="1 missing key \\(fc.weight\\)"):
        apply_state_dict(TinyNet(), state)


def test_a_sharded_folder_is_one_checkpoint(tmp_path):
    """Shards listed by model.safetensors.index.json, as save_pretrained writes them."""
    import json

    from safetensors.torch import save_file

    state = random_model(3).state_dict()
    names = list(state)
    shards = {
        "model-00001-of-00002.safetensors": names[:3],
        "model-00002-of-00002.safetensors": names[3:],
    }
    for file, keys in shards.items():
        save_file({k: state[k].contiguous() for k in keys}, str(tmp_path / file))
    weight_map = {k: file for file, keys in shards.items() for k in keys}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (tmp_path / "config.json").write_text("{}")
    loaded = load_checkpoint(tmp_path)
    assert loaded.layout == "safetensors-folder"
    assert loaded.metadata["files"] == sorted(shards)
    lines = "".join(
        f"{file} {hashlib.sha256((tmp_path / file).read_bytes()).hexdigest()}\n"
        for file in sorted(shards)
    )
    assert loaded.sha256 == hashlib.sha256(lines.encode()).hexdigest()
    model = TinyNet()
    apply_state_dict(model, loaded.state_dict)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, state[name])

    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="lacks shards its index lists"):
        load_checkpoint(tmp_path)


def test_a_folder_without_save_pretrained_weights_is_not_a_checkpoint(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(tmp_path / "weights.safetensors"))
    with pytest.raises(CheckpointError, match="is a directory, not a checkpoint file"):
        load_checkpoint(tmp_path)


def test_integer_tensors_for_floating_parameters_are_refused(source):
    state = {name: tensor.clone() for name, tensor in source.state_dict().items()}
    state["conv.weight"] = state["conv.weight"].round().to(torch.int64)  # mostly zeros
    state["bn.num_batches_tracked"] = state["bn.num_batches_tracked"].double()  # an int buffer
    with pytest.raises(CheckpointError, match=r"1 dtype mismatch \(conv.weight: checkpoint int64"):
        apply_state_dict(random_model(seed=9), state)
    state["conv.weight"] = source.state_dict()["conv.weight"].double()  # floating: cast, fine
    apply_state_dict(random_model(seed=9), state)


def test_specs_of_a_flatscope_checkpoint_are_marked_as_read_from_it(tmp_path, source):
    from flatscope.models.specs import FileSpec

    path = tmp_path / "run.pt"
    extra = {"loss": "mypkg.losses:focal"}
    save_checkpoint(path, source, model_spec="mypkg:net", data_spec="digits", extra=extra)
    for trusted in (False, True):
        loaded = load_checkpoint(path, trust_specs=trusted)
        for spec in (loaded.model_spec, loaded.data_spec, loaded.loss_spec):
            assert isinstance(spec, FileSpec) and spec.source == str(path)
            assert spec.trusted is trusted
    assert loaded.loss_spec == "mypkg.losses:focal"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({}, "holds an empty dict: there are no weights in it"),
        ({"format": CHECKPOINT_FORMAT, "state_dict": {"w": torch.ones(1)}, "extra": [1]},
         "its extra entry is a list"),
        ({"format": CHECKPOINT_FORMAT, "state_dict": {"w": torch.ones(1)},
          "extra": {"train_labels": [1, 2]}}, "its train_labels are a list"),
    ],
)  # fmt: skip
def test_empty_and_malformed_dicts_are_one_line_errors(tmp_path, payload, message):
    torch.save(payload, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path / "x.pt")
