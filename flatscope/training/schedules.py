"""Learning-rate schedules as pure functions of the epoch, from specs such as ``cosine``.

A schedule maps the index of an epoch (0-based) and the number of epochs to a factor of the
base learning rate; the trainer sets ``lr = base_lr * factor`` at the start of every epoch.
Because the factor depends on nothing but ``(epoch, epochs)``, a resumed run needs no scheduler
state to continue bit for bit. Specs (see :mod:`flatscope.models.specs` for the syntax):

``constant``
    factor 1.
``multistep:M1,M2,...[,gamma=0.1]``
    factor ``gamma ** k`` where ``k`` is the number of milestones ``<= epoch``: the rate drops
    by ``gamma`` when epoch ``M1``, ``M2``, ... begins (as :class:`torch.optim.lr_scheduler.
    MultiStepLR`; the fSGLD paper's schedule). Example: ``multistep:30,60,gamma=0.2``.
``cosine[:min_factor=0.0]``
    cosine annealing (Loshchilov & Hutter, "SGDR", ICLR 2017) without restarts:
    ``min_factor + (1 - min_factor) * (1 + cos(pi * epoch / epochs)) / 2``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from flatscope.models.specs import Registry, SpecError

__all__ = ["SCHEDULES", "Schedule", "build_schedule", "schedule_spec"]

Schedule = Callable[[int, int], float]
"""``factor(epoch, epochs)``: the learning-rate factor of 0-based ``epoch`` of ``epochs``."""

SCHEDULES = Registry("schedule", allow_import=False)


@SCHEDULES.register("constant")
def constant() -> Schedule:
    """The base learning rate throughout."""
    return lambda epoch, epochs: 1.0


@SCHEDULES.register("multistep")
def multistep(*milestones: int, gamma: float = 0.1) -> Schedule:
    """Multiply the rate by ``gamma`` at the start of each milestone epoch."""
    if not milestones:
        raise SpecError("schedule 'multistep' needs milestone epochs, e.g. multistep:30,60")
    if any(m < 1 for m in milestones) or list(milestones) != sorted(set(milestones)):
        raise SpecError(
            f"schedule 'multistep': milestones must be increasing positive epochs, got "
            f"{','.join(map(str, milestones))}"
        )
    if not 0 < gamma <= 1:
        raise SpecError(f"schedule 'multistep': gamma must lie in (0, 1], got {gamma}")
    return lambda epoch, epochs: gamma ** sum(epoch >= m for m in milestones)


@SCHEDULES.register("cosine")
def cosine(*, min_factor: float = 0.0) -> Schedule:
    """Cosine annealing from the base rate to ``min_factor`` times it."""
    if not 0 <= min_factor <= 1:
        raise SpecError(f"schedule 'cosine': min_factor must lie in [0, 1], got {min_factor}")
    return lambda epoch, epochs: (
        min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * epoch / epochs))
    )


def build_schedule(spec: str) -> Schedule:
    """The schedule a spec names (see the module docs); :class:`SpecError` on a bad spec."""
    return SCHEDULES.build(spec)


def schedule_spec(spec: str) -> str:
    """The canonical form of a schedule spec, e.g. ``multistep:30,60,gamma=0.1``."""
    return SCHEDULES.canonical(spec)
