"""Helpers shared by the estimators: input checks, seeded probe vectors, batched products.

Probes are drawn from an explicit CPU ``torch.Generator`` seeded from ``seed``, one column at a
time, and then moved to the operator's device: the same seed gives the same probes on every
device and for every ``batch_size``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from flatscope.operators.base import LinearOperator, as_operator

PROBES = ("rademacher", "gaussian", "sphere")


def as_symmetric_operator(A: LinearOperator | torch.Tensor) -> LinearOperator:
    """Wrap ``A`` with :func:`as_operator`, checking that a dense tensor is real and symmetric.

    Operators are trusted to be symmetric (checking would cost products).
    """
    if isinstance(A, torch.Tensor):
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"expected a square matrix, got a tensor of shape {tuple(A.shape)}")
        if not A.is_floating_point():
            raise TypeError(f"expected a floating-point matrix, got dtype {A.dtype}")
        tolerance = math.sqrt(torch.finfo(A.dtype).eps) * float(A.abs().max())
        if float((A - A.mT).abs().max()) > tolerance:
            raise ValueError("the matrix is not symmetric; pass (A + A.T) / 2")
    op = as_operator(A)
    if not op.dtype.is_floating_point:
        raise TypeError(f"the operator must have a real floating-point dtype, got {op.dtype}")
    return op


def check_count(name: str, value: int, minimum: int = 1) -> int:
    """Return ``value`` if it is an integer ``>= minimum``, else raise a one-line error."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def seeded_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded from ``seed`` (never the global RNG)."""
    check_count("seed", seed, minimum=0)
    return torch.Generator(device="cpu").manual_seed(seed)


def stream_seed(seed: int, stream: int) -> int:
    """A seed for random stream number ``stream`` of ``seed``: the SplitMix64 finalizer of
    ``seed + stream * golden`` (Steele, Lea, Flood, OOPSLA 2014), so that estimators called with
    the same ``seed`` draw unrelated probes when they must be independent."""
    check_count("seed", seed, minimum=0)
    mask = 2**64 - 1
    z = (seed + stream * 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return (z ^ (z >> 31)) >> 1  # 63 bits: a valid seed for torch.Generator


def _probe(generator: torch.Generator, d: int, kind: str, dtype: torch.dtype) -> torch.Tensor:
    if kind == "rademacher":
        return torch.randint(0, 2, (d,), generator=generator).to(dtype) * 2 - 1
    z = torch.randn(d, generator=generator, dtype=dtype)
    if kind == "sphere":
        z *= math.sqrt(d) / z.norm()
    return z


def probes(
    generator: torch.Generator,
    d: int,
    k: int,
    kind: str,
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor:
    """``k`` probe columns of length ``d`` with ``E[z z^T] = I``.

    ``rademacher``: independent signs; ``gaussian``: standard normal entries; ``sphere``:
    uniform on the sphere of radius ``sqrt(d)``.
    """
    check_choice("probe", kind, PROBES)
    if k == 0:
        return torch.empty(d, 0, dtype=dtype, device=device)
    return torch.stack([_probe(generator, d, kind, dtype) for _ in range(k)], dim=1).to(device)


def check_batch_size(batch_size: int | None) -> int | None:
    """``None`` (all columns in one product) or a positive integer."""
    return None if batch_size is None else check_count("batch_size", batch_size)


def apply(op: LinearOperator, V: torch.Tensor, batch_size: int | None) -> torch.Tensor:
    """``op @ V``, passing at most ``batch_size`` columns at a time (all at once if ``None``)."""
    check_batch_size(batch_size)
    if batch_size is None or V.shape[1] <= batch_size:
        return op @ V
    return torch.cat([op @ V[:, i : i + batch_size] for i in range(0, V.shape[1], batch_size)], 1)


def probe_products(
    op: LinearOperator,
    num: int,
    kind: str,
    seed: int,
    batch_size: int | None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(Z, A Z)`` for ``num`` seeded probes, ``batch_size`` columns at a time, so that
    at most one batch of probes is held in memory."""
    check_batch_size(batch_size)
    generator = seeded_generator(seed)
    step = num if batch_size is None else batch_size
    for start in range(0, num, step):
        Z = probes(generator, op.shape[0], min(step, num - start), kind, op.dtype, op.device)
        yield Z, op @ Z
