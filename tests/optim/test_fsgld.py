import math

import pytest
import torch

from flatscope.optim import FSGLD, SGLD, coupled_sigma
from tests.optim._problems import (
    Z,
    assert_chain_temperature_is_exact_to_order_lr,
    assert_resume_is_bit_identical,
    assert_same_parameters,
    assert_samples_match_stationary_law,
    assert_zero_temperature_is_sgd,
    batches,
    mse_closure,
    round_trip,
    split_like,
    tiny_net,
    train,
    two_groups,
)


@pytest.mark.parametrize(
    "momentum, weight_decay", [(0.0, 0.0), (0.9, 0.0), (0.0, 0.01), (0.9, 0.01)]
)
@pytest.mark.parametrize("sigma", [0.0, None])  # None couples sigma to beta_inv = 0, so 0
def test_zero_temperature_is_sgd_bit_for_bit(sigma, momentum, weight_decay):
    assert_zero_temperature_is_sgd(
        lambda groups, **options: FSGLD(groups, beta_inv=0.0, sigma=sigma, **options),
        momentum,
        weight_decay,
    )


def test_zero_sigma_is_sgld_and_a_generator_works_as_seed():
    data = batches(4)
    reference, model = tiny_net(), tiny_net()
    options = {"lr": 0.1, "beta_inv": 1e-3, "momentum": 0.9}
    train(SGLD(reference.parameters(), seed=7, **options), reference, data)
    generator = torch.Generator().manual_seed(7)
    train(FSGLD(model.parameters(), sigma=0.0, seed=generator, **options), model, data)
    assert_same_parameters(reference, model)


def test_coupled_sigma_formula():
    beta = 1e8
    assert coupled_sigma(1 / beta, eta=0.1) == pytest.approx(beta ** (-(1 + 0.1) / 4), rel=1e-14)
    assert coupled_sigma(1e-4, eta=0.5) == pytest.approx(1e-4**0.375, rel=1e-14)
    assert coupled_sigma(0.0) == 0.0
    with pytest.raises(ValueError, match="eta"):
        coupled_sigma(1e-8, eta=1.0)


def step_and_watch(optimizer, model, inputs, targets):
    """Take one step; return the weights before it and the weights the closure saw."""
    original = [p.detach().clone() for p in model.parameters()]
    seen = []
    closure = mse_closure(model, inputs, targets)

    def watching_closure() -> torch.Tensor:
        seen.extend(p.detach().clone() for p in model.parameters())
        return closure()

    optimizer.step(watching_closure)
    return original, seen


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_step_is_perturbed_gradient_plus_langevin_noise(dtype, momentum):
    """Regenerate eps and xi from the same seed and rebuild the step by hand, bit for bit.

    Two groups: (lr 0.1, beta_inv 1e-3, coupled sigma) and (lr 0.02, beta_inv 1e-2, sigma 0.3).
    """
    model = tiny_net(dtype)
    groups = two_groups(model, lr=0.02, beta_inv=1e-2, sigma=0.3)
    optimizer = FSGLD(groups, lr=0.1, beta_inv=1e-3, momentum=momentum, seed=7)
    params = list(model.parameters())
    settings = [(0.1, 1e-3, coupled_sigma(1e-3))] * 2 + [(0.02, 1e-2, 0.3)] * 2
    replay = torch.Generator().manual_seed(7)
    buffers = [None] * len(params)
    for inputs, targets in batches(3, dtype):
        original, seen = step_and_watch(optimizer, model, inputs, targets)
        d = sum(p.numel() for p in params)
        eps = split_like(torch.randn(d, generator=replay, dtype=dtype), params)
        xi = split_like(torch.randn(d, generator=replay, dtype=dtype), params)
        for i, (p, (lr, beta_inv, sigma)) in enumerate(zip(params, settings, strict=True)):
            assert torch.equal(seen[i], original[i].add(eps[i], alpha=sigma))
            if momentum == 0:
                expected = original[i].add(p.grad, alpha=-lr)
                expected = expected.add(xi[i], alpha=math.sqrt(2 * lr * beta_inv))
            else:
                scale = math.sqrt(2 * (1 - momentum) * beta_inv / lr)
                buffers[i] = (
                    p.grad.clone() if buffers[i] is None else buffers[i].mul(momentum).add(p.grad)
                )
                buffers[i] = buffers[i].add(xi[i], alpha=scale)
                expected = original[i].add(buffers[i], alpha=-lr)
            assert torch.equal(p.detach(), expected)


def test_closure_sees_perturbation_of_stated_size():
    """sum(delta^2) / sigma^2 over d weights is chi-square with d degrees of freedom."""
    model = tiny_net(width=400)
    sigma = 0.05
    optimizer = FSGLD(model.parameters(), lr=0.1, beta_inv=0.0, sigma=sigma, seed=3)
    original, seen = step_and_watch(optimizer, model, *batches(1)[0])
    delta = torch.cat([(s - o).flatten() for s, o in zip(seen, original, strict=True)])
    d = delta.numel()
    assert delta.abs().min() > 0
    chi_square = (delta.pow(2).sum() / sigma**2).item()
    assert abs(chi_square - d) < Z * math.sqrt(2 * d)
    assert abs(delta.mean().item()) < Z * sigma / math.sqrt(d)


def test_antithetic_pairs_use_opposite_perturbations():
    """Stream: eps1, xi1, (step 2 replays eps1 without drawing) xi2, eps3, xi3."""
    model = tiny_net()
    optimizer = FSGLD(model.parameters(), lr=0.1, beta_inv=1e-3, antithetic=True, seed=5)
    sigma = coupled_sigma(1e-3)
    params = list(model.parameters())
    d = sum(p.numel() for p in params)
    replay = torch.Generator().manual_seed(5)
    eps = None
    for step, (inputs, targets) in enumerate(batches(3)):
        original, seen = step_and_watch(optimizer, model, inputs, targets)
        if step % 2 == 0:
            eps = split_like(torch.randn(d, generator=replay, dtype=torch.float64), params)
        torch.randn(d, generator=replay, dtype=torch.float64)  # xi
        sign = 1.0 if step % 2 == 0 else -1.0
        for p0, p_seen, e in zip(original, seen, eps, strict=True):
            assert torch.equal(p_seen, p0.add(e, alpha=sign * sigma))


@pytest.mark.parametrize("antithetic", [False, True])
def test_resume_from_state_dict_is_bit_identical(antithetic):
    """Resuming after 3 steps also resumes in the middle of an antithetic pair."""
    assert_resume_is_bit_identical(
        lambda params, seed: FSGLD(
            params, lr=0.1, beta_inv=1e-3, momentum=0.9, antithetic=antithetic, seed=seed
        )
    )


@pytest.mark.parametrize("momentum, lr", [(0.0, 0.02), (0.9, 0.004)])
def test_long_run_samples_match_stationary_law(momentum, lr):
    assert_samples_match_stationary_law(
        lambda params: FSGLD(params, lr=lr, beta_inv=0.05, momentum=momentum, seed=0),
        lr=lr,
        beta_inv=0.05,
        sigma=coupled_sigma(0.05),
        momentum=momentum,
    )


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_chain_has_target_temperature_up_to_order_lr(momentum):
    assert_chain_temperature_is_exact_to_order_lr(sigma=0.3, momentum=momentum)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"lr": 0.0}, "lr"),
        ({"lr": 0.1, "beta_inv": -1.0}, "beta_inv"),
        ({"lr": 0.1, "sigma": -0.1}, "sigma"),
        ({"lr": 0.1, "eta": 0.0}, "eta"),
        ({"lr": 0.1, "momentum": 1.0}, "momentum"),
        ({"lr": 0.1, "weight_decay": -1.0}, "weight_decay"),
    ],
)
def test_bad_hyperparameters_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FSGLD(tiny_net().parameters(), **kwargs)


def test_bad_input_gets_clear_errors():
    model = tiny_net()
    with pytest.raises(TypeError, match="seed"):
        FSGLD(model.parameters(), lr=0.1, seed="0")
    with pytest.raises(ValueError, match="several devices"):
        FSGLD([next(model.parameters()), torch.zeros(2, device="meta")], lr=0.1)
    optimizer = FSGLD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="closure"):
        optimizer.step()
    with pytest.raises(ValueError, match="rng"):
        optimizer.load_state_dict(torch.optim.SGD(model.parameters(), lr=0.1).state_dict())
    with pytest.raises(ValueError, match="lr"):
        optimizer.add_param_group({"params": [torch.zeros(2, dtype=torch.float64)], "lr": -1.0})
    assert len(optimizer.param_groups) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_runs_on_gpu_with_generator_on_device():
    model = tiny_net(torch.float32).cuda()
    data = [(x.cuda(), y.cuda()) for x, y in batches(4, torch.float32)]
    optimizer = FSGLD(model.parameters(), lr=0.1, beta_inv=1e-3, momentum=0.9, seed=1)
    assert optimizer.generator.device.type == "cuda"
    train(optimizer, model, data[:2])
    state = round_trip({"model": model.state_dict(), "optim": optimizer.state_dict()})
    train(optimizer, model, data[2:])
    resumed = tiny_net(torch.float32).cuda()
    resumed.load_state_dict(state["model"])
    resumed_optimizer = FSGLD(resumed.parameters(), lr=0.1, beta_inv=1e-3, momentum=0.9)
    resumed_optimizer.load_state_dict(state["optim"])
    train(resumed_optimizer, resumed, data[2:])
    for expected, actual in zip(model.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(expected, actual)
