import pytest
import torch

from flatscope.optim import SAM, SGLD
from tests.optim._problems import (
    assert_resume_is_bit_identical,
    assert_zero_temperature_is_sgd,
)


def quadratic(seed=0):
    """L(w) = w^T A w / 2 - b^T w over w = (w1, w2), A symmetric positive definite."""
    generator = torch.Generator().manual_seed(seed)
    root = torch.randn(5, 5, generator=generator, dtype=torch.float64)
    a = root @ root.T + torch.eye(5, dtype=torch.float64)
    b = torch.randn(5, generator=generator, dtype=torch.float64)
    w = torch.randn(5, generator=generator, dtype=torch.float64)
    w1, w2 = w[:3].clone().requires_grad_(True), w[3:].clone().requires_grad_(True)

    def closure():
        w1.grad = w2.grad = None
        v = torch.cat([w1, w2])
        loss = 0.5 * v @ a @ v - b @ v
        loss.backward()
        return loss

    return a, b, w, (w1, w2), closure


@pytest.mark.parametrize("adaptive", [False, True])
def test_step_matches_hand_computed_sam_on_quadratic(adaptive):
    """Two groups (lr 0.1, rho 0.05) and (lr 0.03, rho 0.2); the norm runs over both."""
    a, b, w, (w1, w2), closure = quadratic()
    optimizer = SAM(
        [{"params": [w1]}, {"params": [w2], "lr": 0.03, "rho": 0.2}],
        rho=0.05,
        adaptive=adaptive,
        lr=0.1,
    )
    loss = optimizer.step(closure)

    rho = torch.tensor([0.05] * 3 + [0.2] * 2, dtype=torch.float64)
    lr = torch.tensor([0.1] * 3 + [0.03] * 2, dtype=torch.float64)
    g = a @ w - b
    t = w.abs() + 0.01 if adaptive else torch.ones_like(w)
    e = rho * t**2 * g / torch.linalg.vector_norm(t * g)
    g_sharp = a @ (w + e) - b
    expected = w - lr * g_sharp
    torch.testing.assert_close(loss, 0.5 * w @ a @ w - b @ w, rtol=1e-14, atol=0)
    torch.testing.assert_close(torch.cat([w1, w2]).detach(), expected, rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(torch.cat([w1.grad, w2.grad]), g_sharp, rtol=1e-14, atol=1e-15)


def test_weights_are_restored_exactly_before_the_base_step():
    _, _, w, (w1, w2), closure = quadratic(seed=1)
    optimizer = SAM([w1, w2], rho=0.5, lr=0.0)
    optimizer.step(closure)
    assert torch.equal(torch.cat([w1, w2]).detach(), w)


@pytest.mark.parametrize("momentum, weight_decay", [(0.0, 0.0), (0.9, 0.01)])
def test_zero_radius_is_sgd_bit_for_bit(momentum, weight_decay):
    assert_zero_temperature_is_sgd(
        lambda groups, **options: SAM(groups, rho=0.0, **options), momentum, weight_decay
    )


@pytest.mark.parametrize("adaptive", [False, True])
def test_resume_from_state_dict_is_bit_identical(adaptive):
    assert_resume_is_bit_identical(
        lambda params, seed: SAM(
            params, rho=0.1, adaptive=adaptive, lr=0.1, momentum=0.9, weight_decay=1e-3
        )
    )


def test_zero_gradient_gives_no_ascent_and_no_nan():
    w = torch.ones(3, dtype=torch.float64, requires_grad=True)

    def closure():
        w.grad = None
        loss = (0 * w).sum()
        loss.backward()
        return loss

    SAM([w], lr=0.1).step(closure)
    assert torch.equal(w.detach(), torch.ones(3, dtype=torch.float64))


def test_groups_are_shared_with_the_base_optimizer():
    w1, w2 = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    optimizer = SAM([w1], base_optimizer_cls=SGLD, rho=0.1, lr=0.1, beta_inv=0.0)
    optimizer.add_param_group({"params": [w2], "rho": 0.3})
    assert optimizer.param_groups is optimizer.base_optimizer.param_groups
    assert [g["rho"] for g in optimizer.param_groups] == [0.1, 0.3]
    assert optimizer.param_groups[1]["lr"] == 0.1
    optimizer.load_state_dict(optimizer.state_dict())
    assert optimizer.param_groups is optimizer.base_optimizer.param_groups


def test_bad_input_gets_clear_errors():
    w = torch.zeros(2, requires_grad=True)
    with pytest.raises(TypeError, match="base_optimizer_cls"):
        SAM([w], base_optimizer_cls=torch.optim.SGD(params=[w], lr=0.1))
    with pytest.raises(ValueError, match="rho"):
        SAM([w], rho=-0.1, lr=0.1)
    with pytest.raises(ValueError, match="closure"):
        SAM([w], lr=0.1).step()
