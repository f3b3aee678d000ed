"""Flat work buffers shared by the optimizers: Gaussian draws and exact weight snapshots.

The parameters are laid out as one flat buffer per dtype (in order of first appearance), with
one view per parameter. The buffers are allocated once and reused every step, so drawing noise
for a whole network, or saving its weights, costs one kernel per dtype (or one multi-tensor
kernel) and no per-step allocation or per-tensor Python work.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def single_device(params: Sequence[Tensor]) -> torch.device:
    """The one device all ``params`` live on; a ValueError if they span several."""
    devices = {p.device for p in params}
    if len(devices) != 1:
        names = ", ".join(sorted(str(d) for d in devices))
        raise ValueError(
            f"the optimizer's parameters live on several devices ({names}); "
            "move the model to one device before building the optimizer"
        )
    return devices.pop()


class FlatBuffers:
    """One flat buffer per dtype of ``params`` and, in ``views``, one view per parameter.

    The buffer of a dtype holds the parameters of that dtype in parameter order; dtypes come in
    order of their first appearance in ``params``.
    """

    def __init__(self, params: Sequence[Tensor]) -> None:
        self.params = tuple(params)
        positions: dict[torch.dtype, list[int]] = {}
        for index, p in enumerate(self.params):
            positions.setdefault(p.dtype, []).append(index)
        self.flats: list[Tensor] = []
        views: list[Tensor | None] = [None] * len(self.params)
        for dtype, indices in positions.items():
            sizes = [self.params[i].numel() for i in indices]
            flat = torch.empty(sum(sizes), dtype=dtype, device=self.params[0].device)
            self.flats.append(flat)
            for i, chunk in zip(indices, flat.split(sizes), strict=True):
                views[i] = chunk.view(self.params[i].shape)
        self.views: list[Tensor] = views  # type: ignore[assignment]

    def holds(self, params: Sequence[Tensor]) -> bool:
        """Whether these buffers were laid out for exactly ``params`` (same tensors, same order)."""
        return len(params) == len(self.params) and all(
            a is b for a, b in zip(params, self.params, strict=True)
        )

    def standard_normal(self, generator: torch.Generator) -> list[Tensor]:
        """Fill with independent N(0, 1) draws from ``generator``; return the per-parameter views.

        The stream is consumed as one ``torch.randn(n, generator=generator)`` per dtype, ``n``
        the number of elements of that dtype: what a test regenerates to check an update.
        """
        for flat in self.flats:
            flat.normal_(generator=generator)
        return self.views

    def save(self) -> None:
        """Copy the parameters in, bit for bit."""
        with torch.no_grad():
            torch._foreach_copy_(self.views, list(self.params))

    def restore(self) -> None:
        """Copy the saved values back into the parameters in place (exact: no arithmetic)."""
        with torch.no_grad():
            torch._foreach_copy_(list(self.params), self.views)


def reused_buffers(cache: dict[str, FlatBuffers], key: str, params: list[Tensor]) -> FlatBuffers:
    """``cache[key]`` if it was laid out for ``params``, else new buffers stored there."""
    buffers = cache.get(key)
    if buffers is None or not buffers.holds(params):
        buffers = cache[key] = FlatBuffers(params)
    return buffers
