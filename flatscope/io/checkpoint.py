"""Load the checkpoint layouts found in the wild, safely; save flatscope's own checkpoints.

Reading never runs code from the file unless the caller opts in with ``unsafe_pickle=True``
(``--unsafe-pickle`` on the command line), and the specs a flatscope checkpoint names (its model,
data and loss) come back as :class:`~flatscope.models.specs.FileSpec` strings, which the
registries resolve to their own names only, never to an import (``trust_specs=True``,
``--trust-specs``, lifts that for a file the user trusts):

- ``.safetensors`` files are read with the ``safetensors`` package (tensors only, no pickle);
- files written by ``torch.save`` go through ``torch.load(weights_only=True)``, whose unpickler
  accepts tensors and plain containers but refuses references to other Python objects;
- TorchScript archives and whole pickled ``nn.Module`` objects carry code, so they are read only
  with ``unsafe_pickle=True``.

A folder written by Hugging Face's ``save_pretrained`` is read as one checkpoint: the shards its
``model.safetensors.index.json`` lists, else its ``model.safetensors``.

The object read is then searched for a state_dict: the object itself (a flat mapping of names to
tensors), the entry ``state_dict``, ``model_state_dict``, ``model``, ``net`` or ``ema`` of a dict,
or an entry the caller names with ``key``. :func:`apply_state_dict` loads it into a model after
stripping wrapper prefixes (``module.``, ``model.``, ``_orig_mod.``) when that makes it fit.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import re
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flatscope.errors import CheckpointError, preview
from flatscope.io.atomic import atomic_write
from flatscope.models.specs import FileSpec

__all__ = [
    "CHECKPOINT_FORMAT",
    "LoadedCheckpoint",
    "apply_state_dict",
    "load_checkpoint",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "flatscope.checkpoint/1"
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "net", "ema")
WRAPPER_PREFIXES = ("module.", "model.", "_orig_mod.")
UNSAFE_HINT = "load it with --unsafe-pickle (unsafe_pickle=True) only if you trust its source"

_FOREIGN_MAGIC = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"%PDF": "a PDF document",
    b"\x1f\x8b": "a gzip archive",
    b"\x89HDF": "an HDF5 file",
    b"\x93NUMPY": "a NumPy .npy array",
}
_REFUSED_GLOBAL = re.compile(r"GLOBAL (\S+?)(?: was not an allowed global|\s+whose module)")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class LoadedCheckpoint:
    """What :func:`load_checkpoint` found in a file.

    Attributes:
        path: the file read.
        sha256: hex SHA-256 of the file's bytes (identifies the checkpoint in reports); for a
            folder, of the lines ``<file name> <SHA-256 of the file>`` of its weight files.
        layout: how the weights were found: ``"state_dict"`` (a raw state_dict),
            ``"flatscope"``, ``"dict[<key>]"``, ``"safetensors"``, ``"safetensors-folder"``,
            ``"torchscript"`` or ``"pickled-module"``.
        state_dict: parameter and buffer names to tensors, on the CPU.
        model_spec: the model spec stored by flatscope's trainer (a
            :class:`~flatscope.models.specs.FileSpec`), else ``None``.
        data_spec: the data spec stored by flatscope's trainer (a ``FileSpec``), else ``None``.
        metadata: the file's other top-level entries (epoch, optimizer state, ``extra``, ...) or
            the safetensors header metadata.
        module: the ``nn.Module`` itself when the file held one (TorchScript or a pickled module,
            read only with ``unsafe_pickle=True``), else ``None``.
    """

    path: Path
    sha256: str
    layout: str
    state_dict: dict[str, torch.Tensor]
    model_spec: str | None = None
    data_spec: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    module: nn.Module | None = None

    @property
    def loss_spec(self) -> str | None:
        """The loss a flatscope run trained with (a ``FileSpec``, from ``extra``), else None."""
        extra = self.metadata.get("extra")
        return extra.get("loss") if isinstance(extra, dict) else None


def load_checkpoint(
    path: str | os.PathLike,
    *,
    key: str | None = None,
    unsafe_pickle: bool = False,
    trust_specs: bool = False,
) -> LoadedCheckpoint:
    """Read a checkpoint file and find its state_dict.

    Args:
        path: the checkpoint file, or a ``save_pretrained`` folder of safetensors weights.
        key: the top-level entry of a dict checkpoint that holds the weights; by default the
            first of ``state_dict``, ``model_state_dict``, ``model``, ``net``, ``ema`` present,
            or the whole dict when it is itself a state_dict.
        unsafe_pickle: also read TorchScript archives and pickles that reference Python classes
            or functions. Unpickling such a file can run arbitrary code: use only for trusted files.
        trust_specs: let the file's model, data and loss specs name code to import (import
            specs); by default they resolve to registry names only.

    Raises:
        CheckpointError: one line naming the problem: missing file, a directory, an empty,
            truncated or corrupt file, a file of another kind (text, image), a file that holds
            code and ``unsafe_pickle`` is off, or no state_dict found.
    """
    if _weight_files(Path(path)):
        return _load_safetensors_folder(Path(path))
    path = _readable_file(path)
    sha256 = _sha256(path)
    kind = _sniff(path)
    metadata: dict[str, Any] = {}
    if kind == "safetensors":
        obj, metadata = _read_safetensors(path)
        layout = "safetensors"
    elif kind == "torchscript":
        if not unsafe_pickle:
            raise CheckpointError(
                f"{path} is a TorchScript archive, which contains code; {UNSAFE_HINT}"
            )
        obj, layout = _read_torchscript(path), "torchscript"
    else:
        obj = _torch_load(path, unsafe_pickle)
        layout = "pickled-module" if isinstance(obj, nn.Module) else "state_dict"
    found = _find_state_dict(obj, key, path, trust_specs)
    found.update(path=path, sha256=sha256, layout=found.get("layout", layout))
    found["metadata"] = {**metadata, **found.get("metadata", {})}
    return LoadedCheckpoint(**found)


def apply_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Load ``state_dict`` into ``model`` with strict semantics, or explain why it does not fit.

    The prefixes ``module.`` (DataParallel/DDP), ``model.`` (PyTorch Lightning) and
    ``_orig_mod.`` (``torch.compile``) are stripped, alone or combined, when that makes more keys
    match the model's. Every parameter and persistent buffer must then be present with the
    model's shape and kind (a floating parameter takes floating values: integer or boolean
    tensors would be cast silently, small weights becoming 0); only BatchNorm's
    ``num_batches_tracked`` may be missing (it keeps the model's value), and so may a name of a
    parameter the model ties to another present one (a language model's output layer sharing
    the input embedding, which safetensors files store once). Floating weights must be finite.
    The model is left unchanged when any check fails.

    Raises:
        CheckpointError: one line listing missing keys, unexpected keys, shape and dtype
            mismatches (the first few of each, with counts), or naming the first tensor with
            NaN/Inf.
    """
    expected = model.state_dict()
    renamed, stripped = _strip_wrapper_prefixes(state_dict, expected.keys())
    _fill_tied(renamed, model)
    _check_fits(renamed, expected, stripped)
    _check_finite(renamed)
    for name in expected.keys() - renamed.keys():
        renamed[name] = expected[name]
    model.load_state_dict(renamed, strict=True)


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    model_spec: str | None,
    data_spec: str | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Write a flatscope checkpoint atomically (temporary file, ``fsync``, ``os.replace``).

    The file holds ``{"format": "flatscope.checkpoint/1", "state_dict", "model_spec",
    "data_spec", "optimizer_state_dict", "extra"}`` and only tensors, numbers, strings, ``None``,
    lists, tuples and dicts, so ``torch.load(weights_only=True)`` reads it. ``model_spec`` lets
    ``flatscope analyze`` rebuild the model without ``--model``.

    Raises:
        TypeError: ``extra`` or the optimizer state holds a value that would need unsafe
            unpickling (for example a NumPy array); nothing is written.
        OutputError: the file cannot be written; an existing file keeps its content.
    """
    for name, spec in (("model_spec", model_spec), ("data_spec", data_spec)):
        if spec is not None and not isinstance(spec, str):
            raise TypeError(f"{name} must be a string or None, got {type(spec).__name__}")
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model_spec": model_spec,
        "data_spec": data_spec,
        "state_dict": model.state_dict(),
        "optimizer_state_dict": None if optimizer is None else optimizer.state_dict(),
        "extra": dict(extra or {}),
    }
    _check_weights_only_loadable(payload, "checkpoint")
    atomic_write(path, lambda file: torch.save(payload, file))


# ---------------------------------------------------------------------------- reading the file


def _readable_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.is_dir():
        inside = sorted(
            p.name
            for p in path.iterdir()
            if p.suffix in {".pt", ".pth", ".ckpt", ".bin", ".safetensors"}
        )
        hint = f" (it contains {preview(inside)})" if inside else ""
        raise CheckpointError(f"{path} is a directory, not a checkpoint file{hint}; pass the file")
    if not path.exists():
        raise CheckpointError(f"checkpoint file not found: {path}")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as file:
            for chunk in iter(lambda: file.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return digest.hexdigest()


def _sniff(path: Path) -> str:
    """Classify the file by its first bytes: "safetensors", "torchscript" or "torch"."""
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path} is empty; it is not a checkpoint")
    with open(path, "rb") as file:
        head = file.read(512)
    if path.suffix == ".safetensors" or _looks_like_safetensors(head, size):
        return "safetensors"
    if head.startswith(b"PK\x03\x04"):
        return "torchscript" if _is_torchscript_zip(path) else "torch"
    if head.startswith(b"\x80"):  # pickle protocol >= 2, torch.save's legacy format
        return "torch"
    kind = next((name for magic, name in _FOREIGN_MAGIC.items() if head.startswith(magic)), None)
    if kind is None and _is_text(head):
        kind = "a text file"
    if kind is not None:
        raise CheckpointError(
            f"{path} is not a checkpoint: it looks like {kind}; "
            "expected a file written by torch.save or a .safetensors file"
        )
    return "torch"


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    """safetensors: an 8-byte little-endian header length, then a JSON header."""
    header_length = int.from_bytes(head[:8], "little")
    return len(head) > 8 and head[8:9] == b"{" and 8 + header_length <= size


def _is_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return all(char.isprintable() or char.isspace() for char in text)


def _is_torchscript_zip(path: Path) -> bool:
    """TorchScript archives hold ``<name>/constants.pkl`` and ``<name>/code/``."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(
            f"{path} is truncated or corrupt: not a readable zip archive ({exc})"
        ) from exc
    return any(name.split("/", 1)[-1] == "constants.pkl" for name in names)


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        from safetensors import safe_open
    except ImportError as exc:
        raise CheckpointError(
            f"reading {path} needs the 'safetensors' package: pip install safetensors"
        ) from exc
    try:
        with safe_open(str(path), framework="pt", device="cpu") as file:
            tensors = {name: file.get_tensor(name) for name in file.keys()}
            metadata = dict(file.metadata() or {})
    except Exception as exc:
        raise CheckpointError(
            f"{path} is not a readable safetensors file (truncated or corrupt?): {_detail(exc)}"
        ) from exc
    return tensors, metadata


def _weight_files(folder: Path) -> list[Path]:
    """The safetensors files of a ``save_pretrained`` folder: those its
    ``model.safetensors.index.json`` lists, else ``model.safetensors``; ``[]`` for anything else.
    """
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            names = sorted(set(weight_map.values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"{index} is not a readable shard index: {exc}") from exc
        files = [folder / name for name in names]
        missing = [file.name for file in files if not file.is_file()]
        if missing or not files:
            raise CheckpointError(f"{folder} lacks shards its index lists: {preview(missing)}")
        return files
    single = folder / "model.safetensors"
    return [single] if single.is_file() else []


def _load_safetensors_folder(folder: Path) -> LoadedCheckpoint:
    files = _weight_files(folder)
    state_dict: dict[str, torch.Tensor] = {}
    digest = hashlib.sha256()
    for file in files:
        tensors, _ = _read_safetensors(file)
        repeated = state_dict.keys() & tensors.keys()
        if repeated:
            raise CheckpointError(f"{file} repeats tensors of another shard: {preview(repeated)}")
        state_dict.update(tensors)
        digest.update(f"{file.name} {_sha256(file)}\n".encode())
    return LoadedCheckpoint(
        path=folder,
        sha256=digest.hexdigest(),
        layout="safetensors-folder",
        state_dict=state_dict,
        metadata={"files": [file.name for file in files]},
    )


def _read_torchscript(path: Path) -> nn.Module:
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise CheckpointError(f"{path} is a corrupt TorchScript archive: {_detail(exc)}") from exc


def _torch_load(path: Path, unsafe_pickle: bool) -> Any:
    """``torch.load`` with ``weights_only=True``; unsafe unpickling only when allowed and needed."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        refused = _REFUSED_GLOBAL.search(str(exc))
        if refused is None:
            raise CheckpointError(
                f"{path} is not a readable PyTorch checkpoint: truncated, corrupt or not written "
                f"by torch.save ({_detail(exc)})"
            ) from exc
        if not unsafe_pickle:
            raise CheckpointError(
                f"{path} contains pickled Python code or objects (it references "
                f"{refused.group(1)}), which safe loading refuses; {UNSAFE_HINT}"
            ) from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CheckpointError(
            f"{path} could not be unpickled even with --unsafe-pickle: {_detail(exc)} "
            "(the code that defined its classes must be importable)"
        ) from exc


def _detail(exc: BaseException) -> str:
    """One short line from an exception message (torch's weights-only errors are multi-line)."""
    message = _ANSI.sub("", str(exc))
    marker = "WeightsUnpickler error:"
    if marker in message:
        message = message.split(marker, 1)[1]
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    line = lines[0] if lines else type(exc).__name__
    return line if len(line) <= 160 else line[:157] + "..."


# ------------------------------------------------------------------ finding the state_dict


def _find_state_dict(obj: Any, key: str | None, path: Path, trust_specs: bool) -> dict[str, Any]:
    """Return the LoadedCheckpoint fields that depend on the object's layout."""
    if isinstance(obj, nn.Module):
        return {"state_dict": dict(obj.state_dict()), "module": obj}
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{path} holds a {type(obj).__name__}, not a state_dict or a dict containing one"
        )
    if not obj:
        raise CheckpointError(
            f"{path} holds an empty dict: there are no weights in it; pass the checkpoint that "
            "holds the trained weights"
        )
    found: dict[str, Any] = {}
    rest = dict(obj)
    fmt = obj.get("format")
    if isinstance(fmt, str) and fmt.startswith("flatscope.checkpoint/"):
        if fmt != CHECKPOINT_FORMAT:
            raise CheckpointError(
                f"{path} has format {fmt!r}, but this flatscope reads {CHECKPOINT_FORMAT!r}; "
                "upgrade flatscope"
            )
        found.update(
            layout="flatscope",
            model_spec=_file_spec(rest.pop("model_spec", None), "model_spec", path, trust_specs),
            data_spec=_file_spec(rest.pop("data_spec", None), "data_spec", path, trust_specs),
        )
        if "extra" in rest:
            rest["extra"] = _flatscope_extra(rest["extra"], path, trust_specs)
    if key is not None:
        if key not in obj:
            raise CheckpointError(
                f"{path} has no entry {key!r}; its top-level entries are {preview(obj)}"
            )
        found.setdefault("layout", f"dict[{key}]")
    elif _is_state_dict(obj):
        return {"state_dict": dict(obj)}
    else:
        key = next(
            (k for k in STATE_DICT_KEYS if isinstance(obj.get(k), (Mapping, nn.Module))), None
        )
        if key is None:
            raise CheckpointError(
                f"{path} holds a dict without a state_dict under any of "
                f"{', '.join(STATE_DICT_KEYS)}; its top-level entries are {preview(obj)}: "
                "choose the one holding the weights with --checkpoint-key NAME (key=NAME)"
            )
        found.setdefault("layout", f"dict[{key}]")
    entry = rest.pop(key)
    if isinstance(entry, nn.Module):
        found.update(state_dict=dict(entry.state_dict()), module=entry)
    elif isinstance(entry, Mapping) and _is_state_dict(entry):
        found["state_dict"] = dict(entry)
    else:
        raise CheckpointError(
            f"entry {key!r} of {path} is not a state_dict (a mapping of names to tensors); "
            f"the top-level entries are {preview(obj)}"
        )
    found["metadata"] = rest
    return found


def _is_state_dict(obj: Mapping) -> bool:
    return len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def _file_spec(value: Any, name: str, path: Path, trusted: bool) -> FileSpec | None:
    """A spec stored in the file, marked as read from it (see :class:`FileSpec`)."""
    if value is not None and not isinstance(value, str):
        raise CheckpointError(f"{path} is corrupt: its {name} is a {type(value).__name__}")
    return None if value is None else FileSpec(value, path, trusted)


def _flatscope_extra(extra: Any, path: Path, trusted: bool) -> dict[str, Any]:
    """The ``extra`` entry of a flatscope checkpoint: a dict whose ``loss`` is a spec."""
    if extra is None:
        return {}
    if not isinstance(extra, dict):
        raise CheckpointError(f"{path} is corrupt: its extra entry is a {type(extra).__name__}")
    labels = extra.get("train_labels")
    if labels is not None and not isinstance(labels, torch.Tensor):
        raise CheckpointError(f"{path} is corrupt: its train_labels are a {type(labels).__name__}")
    return {**extra, "loss": _file_spec(extra.get("loss"), "loss", path, trusted)}


# ----------------------------------------------------------- fitting the state_dict to a model


def _strip_wrapper_prefixes(
    state_dict: Mapping[str, torch.Tensor], model_keys: Iterable[str]
) -> tuple[dict[str, torch.Tensor], tuple[str, ...]]:
    """Rename keys by stripping wrapper prefixes where that matches the most model keys.

    Breadth-first over sequences of strips (each removes one prefix from every key that starts
    with it), so combined wrappers such as ``module._orig_mod.`` are found; ties keep the fewest
    strips, so keys that already fit are never renamed.
    """
    targets = set(model_keys)
    identity = {name: name for name in state_dict}
    best, best_steps = identity, ()
    best_score = len(targets.intersection(identity))
    frontier = [(identity, ())]
    for _depth in range(len(WRAPPER_PREFIXES)):
        next_frontier = []
        for mapping, steps in frontier:
            for prefix in WRAPPER_PREFIXES:
                if not any(name.startswith(prefix) for name in mapping):
                    continue
                stripped = {name.removeprefix(prefix): old for name, old in mapping.items()}
                if len(stripped) < len(mapping):  # two keys collapsed into one
                    continue
                score = len(targets.intersection(stripped))
                if score > best_score:
                    best, best_steps, best_score = stripped, (*steps, prefix), score
                next_frontier.append((stripped, (*steps, prefix)))
        frontier = next_frontier
    return {new: state_dict[old] for new, old in best.items()}, best_steps


def _fill_tied(state_dict: dict[str, torch.Tensor], model: nn.Module) -> None:
    """Give each missing name of a tied parameter the tensor of a present name it is tied to."""
    names_of: dict[int, list[str]] = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        names_of.setdefault(id(parameter), []).append(name)
    for names in names_of.values():
        present = next((name for name in names if name in state_dict), None)
        if present is not None:
            for name in names:
                state_dict.setdefault(name, state_dict[present])


def _check_fits(
    state_dict: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Tensor],
    stripped: tuple[str, ...],
) -> None:
    missing = [
        name
        for name in expected
        if name not in state_dict and not name.endswith("num_batches_tracked")
    ]
    unexpected = [name for name in state_dict if name not in expected]
    mismatched = [
        f"{name}: checkpoint {list(state_dict[name].shape)} vs model {list(expected[name].shape)}"
        for name in expected
        if name in state_dict and state_dict[name].shape != expected[name].shape
    ]
    # load_state_dict would cast integers into floating parameters (small weights become 0)
    wrong_kind = [
        f"{name}: checkpoint {str(state_dict[name].dtype).removeprefix('torch.')} vs model "
        f"{str(expected[name].dtype).removeprefix('torch.')}"
        for name in expected
        if name in state_dict
        and _kind(state_dict[name]) != _kind(expected[name])
        and _kind(expected[name]) != "integer"
    ]
    problems = [
        f"{_count(len(items), *labels)} ({preview(items)})"
        for items, *labels in (
            (missing, "missing key"),
            (unexpected, "unexpected key"),
            (mismatched, "shape mismatch", "shape mismatches"),
            (wrong_kind, "dtype mismatch", "dtype mismatches"),
        )
        if items
    ]
    if problems:
        after = f" after stripping {' + '.join(repr(p) for p in stripped)}" if stripped else ""
        raise CheckpointError(
            f"the checkpoint does not fit the model{after}: {'; '.join(problems)}; "
            "check that the model (--model and its options) is the one the checkpoint came from"
        )


def _kind(tensor: torch.Tensor) -> str:
    if tensor.is_complex():
        return "complex"
    return "floating" if tensor.is_floating_point() else "integer"


def _check_finite(state_dict: Mapping[str, torch.Tensor]) -> None:
    bad = [
        name
        for name, tensor in state_dict.items()
        if (tensor.is_floating_point() or tensor.is_complex()) and not torch.isfinite(tensor).all()
    ]
    if bad:
        tensor = state_dict[bad[0]]
        nan, inf = int(torch.isnan(tensor).sum()), int(torch.isinf(tensor).sum())
        others = f" ({_count(len(bad) - 1, 'other tensor')} too)" if len(bad) > 1 else ""
        raise CheckpointError(
            f"weight {bad[0]!r} holds {nan} NaN and {inf} Inf of {tensor.numel()} values{others}; "
            "the checkpoint comes from a diverged run or is corrupt"
        )


def _count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


# ----------------------------------------------------------------------------------- saving

_SAFE_LEAVES = (type(None), bool, int, float, str, torch.Tensor, nn.Parameter)
_SAFE_CONTAINERS = (dict, OrderedDict, list, tuple)


def _check_weights_only_loadable(obj: Any, where: str) -> None:
    """Refuse values that ``torch.load(weights_only=True)`` would not read back.

    Exact type checks, since e.g. ``numpy.float64`` subclasses ``float`` but pickles as a NumPy
    object.
    """
    kind = type(obj)
    if kind in _SAFE_LEAVES:
        return
    if kind not in _SAFE_CONTAINERS:
        raise TypeError(
            f"{where} is a {kind.__name__}, which a flatscope checkpoint cannot hold (only "
            "tensors, numbers, strings, None, lists, tuples and dicts load safely); convert it"
        )
    if isinstance(obj, dict):
        for name, value in obj.items():
            if type(name) not in (str, int):
                raise TypeError(f"{where} has a key of type {type(name).__name__}; use str or int")
            _check_weights_only_loadable(value, f"{where}[{name!r}]")
    else:
        for index, value in enumerate(obj):
            _check_weights_only_loadable(value, f"{where}[{index}]")
