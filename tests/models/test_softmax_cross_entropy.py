"""The lean softmax cross-entropy against autograd of ``F.cross_entropy`` in float64: value,
gradient, Hessian, Hessian products by double backward, batched double backward and
forward-over-reverse, per-sample gradients under vmap; in one chunk and in several."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import grad, jvp, vmap

from flatscope.models.softmax_cross_entropy import softmax_cross_entropy

ROWS, VOCAB = 7, 5


@pytest.fixture
def problem():
    """Logits (7, 5), targets with one ignored row, the mean's weights, 3 directions."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(ROWS, VOCAB, generator=generator, dtype=torch.float64)
    targets = torch.randint(0, VOCAB, (ROWS,), generator=generator)
    targets[2] = -100
    kept = (targets != -100).double()
    U = torch.randn(3, ROWS, VOCAB, generator=generator, dtype=torch.float64)
    return logits, targets, kept / kept.sum(), U


def reference(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, targets, ignore_index=-100)


@pytest.fixture(params=[1024, 3], ids=["one chunk", "chunks of 3 rows"])
def lean(request, problem):
    _, targets, weights, _ = problem
    return lambda z: softmax_cross_entropy(z, targets, weights, request.param)


def test_value_gradient_and_hessian_are_autograds(problem, lean):
    logits, targets, _, _ = problem
    torch.testing.assert_close(lean(logits), reference(logits, targets), rtol=1e-14, atol=0)
    torch.testing.assert_close(grad(lean)(logits), grad(lambda z: reference(z, targets))(logits))
    H = torch.autograd.functional.hessian(lean, logits)
    H_ref = torch.autograd.functional.hessian(lambda z: reference(z, targets), logits)
    torch.testing.assert_close(H, H_ref, rtol=1e-12, atol=1e-15)
    assert H[2].abs().max() == 0  # the ignored row has no curvature


def test_hessian_products_in_every_mode(problem, lean):
    logits, targets, _, U = problem
    H = torch.autograd.functional.hessian(lambda z: reference(z, targets), logits)
    expected = torch.einsum("rvsw,ksw->krv", H, U)
    z = logits.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(lean(z), z, create_graph=True)
    one_by_one = torch.stack([torch.autograd.grad(g, z, u, retain_graph=True)[0] for u in U])
    (batched,) = torch.autograd.grad(g, z, U, retain_graph=True, is_grads_batched=True)
    forward = torch.stack([jvp(grad(lean), (logits,), (u,))[1] for u in U])
    for products in (one_by_one, batched, forward):
        torch.testing.assert_close(products, expected, rtol=1e-12, atol=1e-15)


def test_per_sample_gradients_under_vmap(problem, lean):
    logits, targets, _, U = problem
    per_sample = vmap(grad(lean))(U)
    expected = torch.stack([grad(lambda z: reference(z, targets))(u) for u in U])
    torch.testing.assert_close(per_sample, expected, rtol=1e-12, atol=1e-15)


def test_shapes_that_do_not_fit_are_refused(problem):
    logits, targets, weights, _ = problem
    with pytest.raises(ValueError, match="needs logits \\(R, V\\), targets \\(R,\\)"):
        softmax_cross_entropy(logits, targets[:-1], weights[:-1])
