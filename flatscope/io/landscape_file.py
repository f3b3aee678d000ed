"""Saved loss landscapes: the :class:`LandscapeResult` numbers and their ``.npz`` file.

A result holds the loss (and accuracy) on a grid of direction coefficients and JSON-ready
metadata; it is data only, so figures can be redrawn from the file without any model. The
file is a NumPy ``.npz`` archive of plain arrays (``coords_0``, ``coords_1``, ``loss``,
``accuracy``, ``trajectory``) and the metadata as one JSON string with a format header; it is
read without unpickling anything. Computed by :mod:`flatscope.landscape.surface`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from flatscope.errors import FlatscopeError
from flatscope.io.atomic import atomic_write

__all__ = ["FORMAT", "FORMAT_VERSION", "LandscapeResult"]

FORMAT = "flatscope.landscape"
FORMAT_VERSION = 1


@dataclass
class LandscapeResult:
    """Loss (and accuracy) on a grid of direction coefficients.

    Attributes:
        coords: one array per axis: ``(alphas,)`` for a slice, ``(alphas, betas)`` for a surface.
        loss: ``(n,)`` or ``(n_alpha, n_beta)``; ``loss[i, j]`` is at ``(alphas[i], betas[j])``.
        accuracy: same shape as ``loss`` (a fraction in [0, 1]), or ``None`` when the model's
            outputs are not logits against class-index targets.
        metadata: JSON-ready: the directions' kinds, norms and seeds, the data spec, ...
        trajectory: optional ``(T, 2)`` path in the plane (a PCA surface's projected checkpoints).
    """

    coords: tuple[np.ndarray, ...]
    loss: np.ndarray
    accuracy: np.ndarray | None
    metadata: dict[str, Any]
    trajectory: np.ndarray | None = None

    @property
    def dims(self) -> int:
        return len(self.coords)

    def save_npz(self, path: str | os.PathLike) -> None:
        """Write the result to ``path`` (``.npz``) atomically: a complete file or the old one."""
        arrays = {f"coords_{i}": c for i, c in enumerate(self.coords)}
        arrays["loss"] = self.loss
        if self.accuracy is not None:
            arrays["accuracy"] = self.accuracy
        if self.trajectory is not None:
            arrays["trajectory"] = self.trajectory
        header = {"format": FORMAT, "version": FORMAT_VERSION, **self.metadata}
        arrays["metadata"] = np.array(json.dumps(header))
        atomic_write(path, lambda f: np.savez(f, **arrays))

    @classmethod
    def load_npz(cls, path: str | os.PathLike) -> LandscapeResult:
        """Read a result written by :meth:`save_npz` (no pickles are loaded)."""
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {key: npz[key] for key in npz.files}
            metadata = json.loads(str(arrays.pop("metadata")))
        except (OSError, ValueError, KeyError) as err:
            raise FlatscopeError(
                f"cannot read {path} as a flatscope landscape .npz ({err}); pass a file written "
                "by LandscapeResult.save_npz or `flatscope landscape`"
            ) from err
        header = (metadata.pop("format", None), metadata.pop("version", None))
        if header != (FORMAT, FORMAT_VERSION):
            raise FlatscopeError(
                f"{path} is not a flatscope landscape file of version {FORMAT_VERSION}; "
                "recompute it with this version of flatscope"
            )
        coords = []
        while f"coords_{len(coords)}" in arrays:
            coords.append(arrays[f"coords_{len(coords)}"])
        return cls(
            tuple(coords),
            arrays["loss"],
            arrays.get("accuracy"),
            metadata,
            arrays.get("trajectory"),
        )
