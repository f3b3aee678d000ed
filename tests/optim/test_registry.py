"""The optimizer registry: each name builds its optimizer from hyper-parameters declared once."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from flatscope.optim import FSGLD, SAM, SGLD
from flatscope.optim.registry import (
    OPTIMIZERS,
    HyperparameterError,
    all_hyperparameters,
    optimizer_entry,
)

KINDS = {"sgd": torch.optim.SGD, "sam": SAM, "fsgld": FSGLD, "sgld": SGLD}


@pytest.mark.parametrize("name", list(KINDS))
def test_each_optimizer_is_built_with_its_hyperparameters(name):
    entry = optimizer_entry(name)
    hyper = entry.hyper({"lr": 0.3, "momentum": 0.5})
    optimizer = entry.build(list(torch.nn.Linear(2, 2).parameters()), hyper, 7)
    assert type(optimizer) is KINDS[name]
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.3, 0.5, 5e-4)
    for field in dataclasses.fields(hyper):
        assert field.name in group or name == "fsgld" and field.name == "antithetic"


def test_shared_hyperparameters_are_declared_once():
    found = all_hyperparameters()
    assert found["lr"][1] == tuple(OPTIMIZERS)
    assert found["rho"][1] == ("sam",) and found["beta_inv"][1] == ("fsgld", "sgld")
    assert found["sigma"][0].default is None


@pytest.mark.parametrize(
    ("name", "values", "message"),
    [
        ("sgd", {"lr": 0.0}, r"lr must lie in \(0, inf\)"),
        ("sgd", {"momentum": 1.0}, r"momentum must lie in \[0, 1\)"),
        ("fsgld", {"eta": 1.0}, r"eta must lie in \(0, 1\)"),
        ("fsgld", {"sigma": -0.1}, r"sigma must lie in \[0, inf\)"),
        ("fsgld", {"beta_inv": float("inf")}, "beta_inv must be a finite number"),
        ("fsgld", {"antithetic": "yes"}, "antithetic must be true or false"),
        ("sgd", {"rho": 0.1}, "rho: not a hyper-parameter of sgd"),
    ],
)
def test_values_out_of_range_or_foreign_are_refused(name, values, message):
    with pytest.raises(HyperparameterError, match=message):
        optimizer_entry(name).hyper(values)


def test_unknown_optimizers_list_the_known_ones():
    with pytest.raises(HyperparameterError, match="choose one of sgd, sam, fsgld, sgld"):
        optimizer_entry("adam")
