"""GGNOperator against dense float64 references: explicit Jacobians and output Hessians, and the
identity H = GGN + residual; the closed-form cross-entropy output Hessians against autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

import flatscope as fs
from flatscope.models.losses import causal_lm, cross_entropy
from flatscope.operators import (
    causal_lm_output_hessian,
    cross_entropy_output_hessian,
    unflatten,
)
from tests.operators.test_hessian import CASES, _batches, _dense_hessian, _make

F64 = torch.float64
GGN_CASES = [case for case in CASES if case[0] in ("mlp-ce", "mlp-mse", "cnn-bn-ce", "tied-mse")]


def _functional(model: nn.Module):
    """``(flat weights, f(x; w) as a function of w)`` of a float64 model in eval mode."""
    model.eval()
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = dict(model.named_buffers())
    flat = torch.cat([p.reshape(-1) for p in params.values()])

    def outputs(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return functional_call(model, {**buffers, **unflatten(w, params)}, (x,))

    return flat, outputs


def _dense_ggn(model, loss_fn, batches) -> torch.Tensor:
    """``sum_b (n_b / N) J_b^T H_b J_b`` from explicit Jacobians and output Hessians."""
    w, outputs = _functional(model)
    total, count = torch.zeros(w.numel(), w.numel(), dtype=F64), 0
    for x, y in batches:
        z = outputs(w, x).detach()
        J = torch.autograd.functional.jacobian(lambda v, x=x: outputs(v, x), w)
        J = J.reshape(-1, w.numel())
        H = torch.autograd.functional.hessian(
            lambda u, y=y, s=z.shape: loss_fn(u.view(s), y), z.reshape(-1)
        )
        total += len(y) * J.T @ H @ J
        count += len(y)
    return total / count


def _dense(op) -> torch.Tensor:
    return op @ torch.eye(op.shape[0], dtype=F64)


@pytest.mark.parametrize("case", GGN_CASES, ids=[c[0] for c in GGN_CASES])
@pytest.mark.parametrize("jacobian", ["forward", "reverse"])
def test_matches_explicit_jacobians_over_unequal_batches(case, jacobian):
    model, loss_fn, x, y = _make(case)
    batches = _batches(x, y)
    reference = _dense_ggn(model, loss_fn, batches)
    op = fs.GGNOperator(model, loss_fn, batches, dtype=F64, jacobian=jacobian)
    dense = _dense(op)
    assert op.num_matvecs == op.shape[0] and op.symmetric
    assert (dense - reference).norm() < 1e-10 * reference.norm()
    eigenvalues = torch.linalg.eigvalsh((dense + dense.T) / 2)
    assert eigenvalues.min() > -1e-10 * eigenvalues.max()  # PSD: the losses are convex


def test_hessian_is_ggn_plus_residual():
    """``H = G + sum_b (n_b / N) sum_k (d loss_b / d z_k) d^2 z_k / dw^2`` on a tanh MLP."""
    model, loss_fn, x, y = _make(CASES[0])
    batches = _batches(x, y)
    w, outputs = _functional(model)
    residual = torch.zeros(w.numel(), w.numel(), dtype=F64)
    for xb, yb in batches:
        z = outputs(w, xb).detach().requires_grad_(True)
        (dz,) = torch.autograd.grad(loss_fn(z, yb), z)
        residual += len(yb) * torch.autograd.functional.hessian(
            lambda v, xb=xb, dz=dz: (outputs(v, xb) * dz).sum(), w
        )
    residual /= len(y)
    hessian = _dense_hessian(model, loss_fn, x, y)
    ggn = _dense(fs.GGNOperator(model, loss_fn, batches, dtype=F64))
    assert (ggn + residual - hessian).norm() < 1e-10 * hessian.norm()
    assert residual.norm() > 1e-3 * hessian.norm()  # the identity is not G = H in disguise


def test_interface_vector_scipy_blocks_and_objective():
    model, loss_fn, x, y = _make(CASES[2])
    objective = fs.Objective(model, loss_fn, (x, y), params=["bn.*", "fc.weight"], dtype=F64)
    op = fs.GGNOperator(objective)
    assert list(op.blocks) == ["bn.weight", "bn.bias", "fc.weight"]
    assert op.num_samples == 17 and op.loss() == objective.loss()
    V = torch.randn(op.shape[0], 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    product = op @ V
    torch.testing.assert_close(op @ V[:, 1], product[:, 1], rtol=1e-12, atol=1e-14)
    scipy_op = op.to_scipy()
    np.testing.assert_allclose(scipy_op.matmat(V.numpy()), product.numpy(), rtol=1e-12)
    np.testing.assert_allclose(scipy_op.rmatvec(V[:, 0].numpy()), product[:, 0].numpy())
    assert op.num_matvecs == 3 + 1 + 3 + 1
    with pytest.raises(TypeError, match="not both"):
        fs.GGNOperator(objective, loss_fn)
    with pytest.raises(ValueError, match="jacobian must be one of"):
        fs.GGNOperator(objective, jacobian="central")


def test_forward_mode_failure_falls_back_to_the_double_vjp(monkeypatch):
    model, loss_fn, x, y = _make(CASES[0])
    reverse = _dense(fs.GGNOperator(model, loss_fn, (x, y), dtype=F64, jacobian="reverse"))
    op = fs.GGNOperator(model, loss_fn, (x, y), dtype=F64)

    def unavailable(*args):
        raise NotImplementedError("Trying to use forward AD with an_op that does not support it")

    monkeypatch.setattr(op, "_forward_product", unavailable)
    with pytest.warns(RuntimeWarning, match="double-vjp"):
        dense = _dense(op)
    assert op.jacobian_mode == "reverse"
    torch.testing.assert_close(dense, reverse, rtol=1e-12, atol=1e-14)


def _dense_output_hessian(loss_fn, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.autograd.functional.hessian(lambda u: loss_fn(u.view(z.shape), y), z.reshape(-1))


def _closed_form_dense(prepare, z, y, chunk_rows: int) -> torch.Tensor:
    U = torch.eye(z.numel(), dtype=F64).view(z.numel(), *z.shape)
    return prepare(z, y)(U).reshape(z.numel(), -1)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("probabilities", [False, True])
def test_cross_entropy_closed_form_matches_autograd(label_smoothing, probabilities):
    g = torch.Generator().manual_seed(3)
    z = torch.randn(5, 4, dtype=F64, generator=g)
    y = torch.randint(0, 4, (5,), generator=g)
    if probabilities:
        y = torch.softmax(torch.randn(5, 4, dtype=F64, generator=g), dim=-1)
    loss_fn = cross_entropy(label_smoothing=label_smoothing)
    closed = _closed_form_dense(cross_entropy_output_hessian(chunk_rows=2), z, y, 2)
    torch.testing.assert_close(closed, _dense_output_hessian(loss_fn, z, y), rtol=1e-12, atol=1e-14)


def test_cross_entropy_closed_form_over_positions_with_ignored_labels():
    g = torch.Generator().manual_seed(7)
    z = torch.randn(3, 4, 2, dtype=F64, generator=g)  # (B, C, positions)
    y = torch.randint(0, 4, (3, 2), generator=g)
    y[0, 1] = -100
    loss_fn = cross_entropy()
    closed = _closed_form_dense(cross_entropy_output_hessian(chunk_rows=4), z, y, 4)
    torch.testing.assert_close(closed, _dense_output_hessian(loss_fn, z, y), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("reduction", ["token", "sequence"])
def test_causal_lm_closed_form_matches_autograd_with_padding(reduction):
    g = torch.Generator().manual_seed(4)
    z = torch.randn(2, 5, 6, dtype=F64, generator=g)
    labels = torch.randint(0, 6, (2, 5), generator=g)
    labels[1, 3:] = -100  # padding at the end of the second sequence
    loss_fn = causal_lm(reduction=reduction)
    closed = _closed_form_dense(causal_lm_output_hessian(reduction, chunk_rows=3), z, labels, 3)
    reference = _dense_output_hessian(loss_fn, z, labels)
    torch.testing.assert_close(closed, reference, rtol=1e-12, atol=1e-14)


def test_closed_form_output_hessian_gives_the_same_ggn():
    model, loss_fn, x, y = _make(CASES[2])
    batches = _batches(x, y)
    autograd = _dense(fs.GGNOperator(model, loss_fn, batches, dtype=F64))
    closed = fs.GGNOperator(
        model, loss_fn, batches, dtype=F64, output_hessian=cross_entropy_output_hessian(4)
    )
    torch.testing.assert_close(_dense(closed), autograd, rtol=1e-12, atol=1e-14)
