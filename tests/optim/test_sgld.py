import math

import pytest
import torch

from flatscope.optim import SGLD
from tests.optim._problems import (
    assert_chain_temperature_is_exact_to_order_lr,
    assert_resume_is_bit_identical,
    assert_samples_match_stationary_law,
    assert_zero_temperature_is_sgd,
    batches,
    mse_closure,
    split_like,
    tiny_net,
    two_groups,
)


@pytest.mark.parametrize(
    "momentum, weight_decay", [(0.0, 0.0), (0.9, 0.0), (0.0, 0.01), (0.9, 0.01)]
)
def test_zero_temperature_is_sgd_bit_for_bit(momentum, weight_decay):
    assert_zero_temperature_is_sgd(
        lambda groups, **options: SGLD(groups, beta_inv=0.0, **options), momentum, weight_decay
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_step_is_gradient_step_plus_noise_per_group(dtype):
    """Regenerate xi from the same seed; each group uses its own lr and temperature."""
    model = tiny_net(dtype)
    optimizer = SGLD(two_groups(model, lr=0.02, beta_inv=1e-2), lr=0.1, beta_inv=1e-3, seed=4)
    params = list(model.parameters())
    in_second = [False] * 2 + [True] * 2
    replay = torch.Generator().manual_seed(4)
    for inputs, targets in batches(3, dtype):
        original = [p.detach().clone() for p in params]
        optimizer.step(mse_closure(model, inputs, targets))
        d = sum(p.numel() for p in params)
        xi = split_like(torch.randn(d, generator=replay, dtype=dtype), params)
        for p, p0, x, second in zip(params, original, xi, in_second, strict=True):
            lr, beta_inv = (0.02, 1e-2) if second else (0.1, 1e-3)
            expected = p0.add(p.grad, alpha=-lr).add(x, alpha=math.sqrt(2 * lr * beta_inv))
            assert torch.equal(p.detach(), expected)


def test_resume_from_state_dict_is_bit_identical():
    assert_resume_is_bit_identical(
        lambda params, seed: SGLD(params, lr=0.1, beta_inv=1e-3, momentum=0.9, seed=seed)
    )


@pytest.mark.parametrize("momentum, lr", [(0.0, 0.02), (0.9, 0.004)])
def test_long_run_samples_match_stationary_law(momentum, lr):
    assert_samples_match_stationary_law(
        lambda params: SGLD(params, lr=lr, beta_inv=0.05, momentum=momentum, seed=0),
        lr=lr,
        beta_inv=0.05,
        sigma=0.0,
        momentum=momentum,
    )


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_chain_has_target_temperature_up_to_order_lr(momentum):
    assert_chain_temperature_is_exact_to_order_lr(sigma=0.0, momentum=momentum)


def test_step_without_closure_and_parameters_without_gradient():
    used, unused = torch.zeros(3, requires_grad=True), torch.zeros(2, requires_grad=True)
    optimizer = SGLD([used, unused], lr=0.1, beta_inv=1e-2)
    used.grad = torch.ones(3)
    assert optimizer.step() is None
    assert torch.equal(unused.detach(), torch.zeros(2))
    assert not torch.equal(used.detach(), torch.full((3,), -0.1))
