"""Tensor helpers shared by the optimizers: flat buffers, Gaussian draws, exact weight snapshots.

Every helper lays the parameters out as one flat buffer per dtype (in order of first appearance)
and hands back one view per parameter, so that drawing noise for a whole network, or saving its
weights, costs one kernel launch per dtype instead of one per tensor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

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


def flat_views(
    params: Sequence[Tensor], make_flat: Callable[[int, torch.dtype], Tensor]
) -> list[Tensor]:
    """One view per parameter (same shape) into flat buffers made by ``make_flat(numel, dtype)``.

    ``make_flat`` is called once per dtype, in order of the dtype's first appearance in
    ``params``, with the total number of elements of the parameters of that dtype; the buffer is
    split in parameter order.
    """
    positions: dict[torch.dtype, list[int]] = {}
    for index, p in enumerate(params):
        positions.setdefault(p.dtype, []).append(index)
    views: list[Tensor] = [params[0]] * len(params)
    for dtype, indices in positions.items():
        sizes = [params[i].numel() for i in indices]
        flat = make_flat(sum(sizes), dtype)
        for i, chunk in zip(indices, flat.split(sizes), strict=True):
            views[i] = chunk.view(params[i].shape)
    return views


def standard_normal_like(params: Sequence[Tensor], generator: torch.Generator) -> list[Tensor]:
    """Independent N(0, 1) entries shaped like ``params``, drawn from ``generator``.

    The random stream is consumed as one ``torch.randn(n, generator=generator)`` per dtype (see
    :func:`flat_views` for the layout), which is what a test regenerates to check an update.
    """
    return flat_views(
        params,
        lambda numel, dtype: torch.randn(
            numel, generator=generator, device=generator.device, dtype=dtype
        ),
    )


def snapshot(params: Sequence[Tensor]) -> list[Tensor]:
    """Exact copies of ``params`` (bit for bit), to be put back with :func:`restore`."""
    device = params[0].device
    copies = flat_views(params, lambda numel, dtype: torch.empty(numel, device=device, dtype=dtype))
    torch._foreach_copy_(copies, [p.detach() for p in params])
    return copies


def restore(params: Sequence[Tensor], copies: Sequence[Tensor]) -> None:
    """Copy a :func:`snapshot` back into ``params`` in place (exact: no arithmetic involved)."""
    with torch.no_grad():
        torch._foreach_copy_(list(params), list(copies))
