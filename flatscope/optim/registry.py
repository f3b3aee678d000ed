"""The optimizers flatscope trains with, by name, each with its hyper-parameters declared once.

Each optimizer's hyper-parameters are a frozen dataclass (its fields carry their help text and
their valid range in ``metadata``); a baseline's class extends the one it builds on, so shared
hyper-parameters (``lr``, ``momentum``, ``weight_decay``) are declared once, in
:class:`SGDHyperparameters`. :data:`OPTIMIZERS` maps a name to its class and to the function
that builds the optimizer from them:

=========  =========================================  =====================================
name       optimizer                                  hyper-parameters beyond SGD's
=========  =========================================  =====================================
``sgd``    :class:`torch.optim.SGD`                   (none)
``sgld``   :class:`~flatscope.optim.SGLD`             ``beta_inv``
``fsgld``  :class:`~flatscope.optim.FSGLD`            ``beta_inv``, ``sigma``, ``eta``,
                                                      ``antithetic``
``sam``    :class:`~flatscope.optim.SAM` around SGD   ``rho``, ``adaptive`` (ASAM)
=========  =========================================  =====================================
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from flatscope.errors import FlatscopeError
from flatscope.optim.fsgld import FSGLD
from flatscope.optim.sam import SAM
from flatscope.optim.sgld import SGLD

__all__ = [
    "OPTIMIZERS",
    "FSGLDHyperparameters",
    "HyperparameterError",
    "OptimizerEntry",
    "SAMHyperparameters",
    "SGDHyperparameters",
    "SGLDHyperparameters",
    "all_hyperparameters",
    "optimizer_entry",
]


class HyperparameterError(FlatscopeError, ValueError):
    """An unknown optimizer, or a hyper-parameter it does not take or out of its range."""


def _hyper(default: Any, help: str, low: float | None = None, high: float | None = None, *,
           open_low: bool = False, open_high: bool = True) -> Any:  # fmt: skip
    """A hyper-parameter field: its help text and its range ``[low, high)`` (or as marked)."""
    return dataclasses.field(
        default=default,
        metadata={"help": help, "range": (low, high, open_low, open_high)},
    )


def _check_range(name: str, value: Any, bounds: tuple) -> None:
    low, high, open_low, open_high = bounds
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise HyperparameterError(f"{name} must be a finite number, got {value!r}")
    below = value <= low if open_low else value < low
    above = high is not None and (value >= high if open_high else value > high)
    if below or above:
        left, right = "(" if open_low else "[", ")" if open_high or high is None else "]"
        raise HyperparameterError(
            f"{name} must lie in {left}{low:g}, {'inf' if high is None else f'{high:g}'}{right}, "
            f"got {value}"
        )


@dataclasses.dataclass(frozen=True)
class SGDHyperparameters:
    """Stochastic gradient descent with heavy-ball momentum and L2 weight decay."""

    lr: float = _hyper(0.05, "base learning rate", 0.0, None, open_low=True)
    momentum: float = _hyper(0.9, "momentum", 0.0, 1.0)
    weight_decay: float = _hyper(5e-4, "L2 weight decay", 0.0, None)

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type == "bool":
                if not isinstance(value, bool):
                    message = f"{field.name} must be true or false, got {value!r}"
                    raise HyperparameterError(message)
            elif value is not None or "None" not in field.type:
                _check_range(field.name, value, field.metadata["range"])


@dataclasses.dataclass(frozen=True)
class SGLDHyperparameters(SGDHyperparameters):
    """SGLD: SGD plus Gaussian noise of temperature ``beta_inv`` (Welling, Teh, ICML 2011)."""

    beta_inv: float = _hyper(1e-8, "temperature 1/beta of the Langevin noise", 0.0, None)


@dataclasses.dataclass(frozen=True)
class FSGLDHyperparameters(SGLDHyperparameters):
    """fSGLD: SGLD with the gradient taken at weights perturbed by ``N(0, sigma^2 I)``
    (Bruno, Hwang, An, Sabanis, Lim, arXiv:2510.02174, 2025)."""

    sigma: float | None = _hyper(
        None, "perturbation std (default: coupled, beta_inv^((1+eta)/4))", 0.0, None
    )
    eta: float = _hyper(0.1, "coupling exponent of sigma", 0.0, 1.0, open_low=True)
    antithetic: bool = _hyper(False, "alternate +eps and -eps perturbations")


@dataclasses.dataclass(frozen=True)
class SAMHyperparameters(SGDHyperparameters):
    """SAM around SGD: the gradient at the worst point of an l2 ball of radius ``rho``
    (Foret, Kleiner, Mobahi, Neyshabur, ICLR 2021; ``adaptive``: ASAM, Kwon et al., ICML 2021)."""

    rho: float = _hyper(0.05, "radius of the ascent step", 0.0, None)
    adaptive: bool = _hyper(False, "ASAM: a ball scaled by |w|")


Builder = Callable[[list[nn.Parameter], Any, int], torch.optim.Optimizer]


@dataclasses.dataclass(frozen=True)
class OptimizerEntry:
    """One optimizer of :data:`OPTIMIZERS`.

    Attributes:
        name: what ``--optimizer`` takes.
        title: how tables name it.
        hyperparameters: its hyper-parameter dataclass.
        build: ``build(params, hyperparameters, seed)`` returns the optimizer; ``seed`` seeds
            the optimizer's own noise, where it has any.
    """

    name: str
    title: str
    hyperparameters: type
    build: Builder

    def hyper(self, values: Mapping[str, Any] | None = None) -> Any:
        """Its hyper-parameters from ``values`` (the defaults for the rest).

        Raises:
            HyperparameterError: a value it does not take, or out of range.
        """
        values = dict(values or {})
        taken = {field.name for field in dataclasses.fields(self.hyperparameters)}
        foreign = sorted(set(values) - taken)
        if foreign:
            raise HyperparameterError(
                f"{', '.join(foreign)}: not a hyper-parameter of {self.name} (it takes "
                f"{', '.join(sorted(taken))})"
            )
        return self.hyperparameters(**values)


def _sgd(params: list[nn.Parameter], hyper: SGDHyperparameters, seed: int) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, **dataclasses.asdict(hyper))


def _sgld(
    params: list[nn.Parameter], hyper: SGLDHyperparameters, seed: int
) -> torch.optim.Optimizer:
    return SGLD(params, seed=seed, **dataclasses.asdict(hyper))


def _fsgld(
    params: list[nn.Parameter], hyper: FSGLDHyperparameters, seed: int
) -> torch.optim.Optimizer:
    return FSGLD(params, seed=seed, **dataclasses.asdict(hyper))


def _sam(params: list[nn.Parameter], hyper: SAMHyperparameters, seed: int) -> torch.optim.Optimizer:
    values = dataclasses.asdict(hyper)
    rho, adaptive = values.pop("rho"), values.pop("adaptive")
    return SAM(params, torch.optim.SGD, rho=rho, adaptive=adaptive, **values)


#: Every optimizer by name, in the order tables list them.
OPTIMIZERS: dict[str, OptimizerEntry] = {
    entry.name: entry
    for entry in (
        OptimizerEntry("sgd", "SGD", SGDHyperparameters, _sgd),
        OptimizerEntry("sam", "SAM", SAMHyperparameters, _sam),
        OptimizerEntry("fsgld", "fSGLD", FSGLDHyperparameters, _fsgld),
        OptimizerEntry("sgld", "SGLD", SGLDHyperparameters, _sgld),
    )
}


def optimizer_entry(name: str) -> OptimizerEntry:
    """The optimizer ``name`` names.

    Raises:
        HyperparameterError: an unknown name.
    """
    if name not in OPTIMIZERS:
        raise HyperparameterError(
            f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}"
        )
    return OPTIMIZERS[name]


def all_hyperparameters() -> dict[str, tuple[dataclasses.Field, tuple[str, ...]]]:
    """Every hyper-parameter of any optimizer: its field and the optimizers that take it."""
    found: dict[str, tuple[dataclasses.Field, list[str]]] = {}
    for entry in OPTIMIZERS.values():
        for field in dataclasses.fields(entry.hyperparameters):
            found.setdefault(field.name, (field, []))[1].append(entry.name)
    return {name: (field, tuple(users)) for name, (field, users) in found.items()}
