"""Reading pickles of numeric numpy arrays and plain containers without running pickled code."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flatscope.data.errors import DataError

__all__ = ["load_numpy_pickle", "torch_load_numpy"]

_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]
_FROMBUFFER = np.ndarray.__reduce_ex__(np.zeros(1), 5)[0]


def _safe_dtype(*args: Any) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise DataError("refusing a pickled numpy array of Python objects: only numeric data")
    return dtype


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for ``bytes``; nothing else allowed."""
    if encoding not in ("latin1", "latin-1"):
        raise DataError(f"refusing a pickled call to codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


# What a pickle of numpy arrays, bytes, strings, lists and dicts may name: numpy's array
# reconstruction (legacy ``numpy.core`` and numpy 2's ``numpy._core`` module names), dtypes
# without Python objects, and latin-1 encoding of bytes. Nothing here can run other code.
_NUMPY_PICKLE_GLOBALS: dict[tuple[str, str], Callable] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _safe_dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file, encoding="latin1")
        self._path = path

    def find_class(self, module: str, name: str) -> Callable:
        try:
            return _NUMPY_PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise DataError(
                f"refusing to load {self._path}: it asks to call {module}.{name}, but it should "
                "hold only numpy arrays, lists and strings"
            ) from None


def load_numpy_pickle(path: str | Path) -> Any:
    """Unpickle a file of numpy arrays, bytes, strings, numbers, lists and dicts, safely.

    Any other global the pickle names (``os.system``, ``builtins.eval``, any class) is refused
    with :class:`DataError` before it is called. Python 2 pickles (such as the CIFAR-10
    batches) are read with ``encoding="latin1"``, as numpy requires.
    """
    path = Path(path)
    try:
        with path.open("rb") as file:
            return _NumpyOnlyUnpickler(file, path).load()
    except DataError:
        raise
    except Exception as error:  # a corrupt pickle can fail in many ways; none may escape raw
        raise DataError(f"cannot read {path}: {type(error).__name__}: {error}") from None


def torch_load_numpy(path: Path) -> Any:
    """``torch.load(weights_only=True)`` that also accepts numeric numpy arrays."""
    allowed = [
        (obj, f"{module}.{name}")
        for (module, name), obj in _NUMPY_PICKLE_GLOBALS.items()
        if obj is not _safe_dtype
    ]
    # torch rebuilds dtypes itself and asks for each numeric dtype class by name.
    numeric = np.typecodes["AllInteger"] + np.typecodes["AllFloat"] + "?"
    allowed += [np.dtype, *{type(np.dtype(code)) for code in numeric}]
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # corrupt zip, refused global, truncated file, ...
        raise DataError(
            f"cannot read {path} as a weights-only torch file: {_torch_load_reason(error)}"
        ) from None


def _torch_load_reason(error: Exception) -> str:
    """The informative line of a ``torch.load`` error (its messages are many lines long)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    refused = [line for line in lines if "GLOBAL" in line]
    if refused:
        return refused[0]
    if lines and not lines[0].startswith("Weights only load failed"):
        return lines[0].split(". ")[0]
    return f"{type(error).__name__} (it holds more than tensors and numeric numpy arrays)"
