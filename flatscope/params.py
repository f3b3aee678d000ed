"""Parameter selection by name or glob, and the flat-vector view of a parameter dict.

flatscope orders parameters as ``model.named_parameters()`` does; the flat vector of a
selection is the concatenation of the flattened tensors in that order, and ``block_slices``
says which slice of it belongs to which parameter.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence

import torch
from torch import nn

__all__ = ["select_parameters", "flatten", "unflatten", "block_slices"]


def select_parameters(
    model: nn.Module, patterns: str | Sequence[str] | None = None
) -> dict[str, nn.Parameter]:
    """Return ``{name: parameter}`` for the selected parameters, in ``named_parameters`` order.

    Args:
        model: the network.
        patterns: ``None`` selects every parameter with ``requires_grad``; otherwise exact
            names or :mod:`fnmatch` globs such as ``"layer1.*"`` or ``"fc.weight"``. Tied
            (shared) parameters appear once, under their first name.

    Raises:
        ValueError: a pattern matches no parameter, or nothing is selected.
    """
    named = dict(model.named_parameters())
    if patterns is None:
        selected = {name: p for name, p in named.items() if p.requires_grad}
    else:
        if isinstance(patterns, str):
            patterns = [patterns]
        for pattern in patterns:
            if not any(fnmatch.fnmatchcase(name, pattern) for name in named):
                raise ValueError(
                    f"parameter pattern {pattern!r} matches no parameter of the model; "
                    f"its parameters are: {', '.join(list(named)[:8])}"
                    + (", ..." if len(named) > 8 else "")
                )
        selected = {
            name: p
            for name, p in named.items()
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
        }
    if not selected:
        raise ValueError("no parameters selected: the model has no trainable parameters")
    return selected


def flatten(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    """Concatenate tensors into one flat vector (in iteration order)."""
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten(
    vector: torch.Tensor, like: dict[str, torch.Tensor | torch.Size]
) -> dict[str, torch.Tensor]:
    """Split a flat vector into views shaped like the tensors (or shapes) of ``like``."""
    out: dict[str, torch.Tensor] = {}
    offset = 0
    for name, t in like.items():
        shape = t.shape if isinstance(t, torch.Tensor) else torch.Size(t)
        n = shape.numel()
        out[name] = vector[offset : offset + n].view(shape)
        offset += n
    if offset != vector.shape[0]:
        raise ValueError(f"flat vector has {vector.shape[0]} entries, expected {offset}")
    return out


def block_slices(named: dict[str, torch.Tensor]) -> dict[str, slice]:
    """Return ``{name: slice}`` locating each tensor of ``named`` in the flat vector."""
    slices: dict[str, slice] = {}
    offset = 0
    for name, t in named.items():
        slices[name] = slice(offset, offset + t.numel())
        offset += t.numel()
    return slices
