"""HessianOperator against dense Hessians from torch.func.hessian in float64."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.data import DataLoader, TensorDataset

import flatscope as fs
from flatscope.operators import unflatten

F64 = torch.float64


class TinyCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.bn = nn.BatchNorm2d(2)
        self.fc = nn.Linear(2 * 2 * 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


class TinyAttention(nn.Module):
    """One self-attention block over a sequence of 3 tokens of width 4."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(4, num_heads=2, batch_first=True)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.attn(x, x, x, need_weights=False)
        return self.head(h.mean(dim=1))


class TiedAutoencoder(nn.Module):
    """Decoder weight tied to the encoder weight (one parameter used twice)."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(4, 3)
        self.dec = nn.Linear(3, 4, bias=False)
        self.dec.weight = self.enc.weight  # not the transpose: a plain shared tensor
        self.out = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.enc(x))
        return self.out(torch.tanh(nn.functional.linear(h, self.dec.weight.t())))


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))


def _layernorm() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 5), nn.LayerNorm(5), nn.GELU(), nn.Linear(5, 3))


def _bn_with_stats() -> nn.Module:
    model = TinyCNN()
    model.bn.running_mean.uniform_(-0.5, 0.5)
    model.bn.running_var.uniform_(0.5, 2.0)
    return model


# (name, model factory, input shape of one sample, loss, target kind)
CASES = [
    ("mlp-ce", _mlp, (4,), nn.CrossEntropyLoss(), "class"),
    ("mlp-mse", _mlp, (4,), nn.MSELoss(), "regress"),
    ("cnn-bn-ce", _bn_with_stats, (1, 4, 4), nn.CrossEntropyLoss(), "class"),
    ("layernorm-ce", _layernorm, (4,), nn.CrossEntropyLoss(), "class"),
    ("attention-ce", TinyAttention, (3, 4), nn.CrossEntropyLoss(), "class"),
    ("tied-mse", TiedAutoencoder, (4,), nn.MSELoss(), "regress2"),
]


def _data(shape: tuple[int, ...], kind: str, n: int = 17) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, *shape, generator=g, dtype=F64)
    if kind == "class":
        y = torch.randint(0, 3, (n,), generator=g)
    else:
        y = torch.randn(n, 3 if kind == "regress" else 2, generator=g, dtype=F64)
    return x, y


def _dense_hessian(model, loss_fn, x, y, names=None) -> torch.Tensor:
    """Reference: the dense Hessian of the mean loss over all samples at once (eval mode).

    Computed row by row by ``torch.autograd.functional.hessian``. ``torch.func.hessian`` is not
    used: in PyTorch 2.13 it returns a wrong, non-symmetric matrix for ``nn.LayerNorm``
    (checked against central finite differences), see the finite-difference test below.
    """
    model.eval()
    params = {n: p.detach() for n, p in model.named_parameters() if names is None or n in names}
    fixed = {n: p.detach() for n, p in model.named_parameters() if n not in params}
    fixed.update(dict(model.named_buffers()))
    flat = torch.cat([p.reshape(-1) for p in params.values()])

    def loss(w):
        return loss_fn(functional_call(model, {**fixed, **unflatten(w, params)}, (x,)), y)

    with sdpa_kernel(SDPBackend.MATH):  # fused attention kernels have no second derivative
        return torch.autograd.functional.hessian(loss, flat)


def _make(case):
    _, factory, shape, loss_fn, kind = case
    torch.manual_seed(0)
    model = factory().to(F64)
    x, y = _data(shape, kind)
    return model, loss_fn, x, y


def _batches(x, y, sizes=(7, 7, 3)):
    out, start = [], 0
    for s in sizes:
        out.append((x[start : start + s], y[start : start + s]))
        start += s
    return out


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("hvp", ["forward", "double_backward"])
def test_matches_dense_hessian_over_unequal_batches(case, hvp):
    model, loss_fn, x, y = _make(case)
    reference = _dense_hessian(model, loss_fn, x, y)
    op = fs.HessianOperator(model, loss_fn, _batches(x, y), dtype=F64, hvp=hvp)
    dense = op @ torch.eye(op.shape[0], dtype=F64)
    assert op.num_samples == 17
    assert op.num_matvecs == op.shape[0]
    err = (dense - reference).norm() / reference.norm()
    assert err < 1e-10
    torch.testing.assert_close(dense, dense.T, rtol=0, atol=1e-14 * dense.abs().max())


def test_agrees_with_finite_differences_where_torch_func_hessian_does_not():
    """Central differences of the gradient confirm the operator on a LayerNorm model."""
    model, loss_fn, x, y = _make(CASES[3])
    op = fs.HessianOperator(model, loss_fn, (x, y), dtype=F64)
    w, eps = op.flat_params(), 1e-5
    params = {n: p.detach() for n, p in model.named_parameters()}

    def gradient(v):
        return torch.func.grad(
            lambda u: loss_fn(functional_call(model, unflatten(u, params), (x,)), y)
        )(v)

    e = torch.zeros_like(w)
    e[0] = 1.0
    central = (gradient(w + eps * e) - gradient(w - eps * e)) / (2 * eps)
    assert (op @ e - central).norm() < 1e-8 * central.norm()


@pytest.mark.parametrize("case", CASES[:3], ids=[c[0] for c in CASES[:3]])
def test_dataloader_and_single_tuple_agree(case):
    model, loss_fn, x, y = _make(case)
    loader = DataLoader(TensorDataset(x, y), batch_size=7, shuffle=False)
    op_loader = fs.HessianOperator(model, loss_fn, loader, dtype=F64)
    op_tuple = fs.HessianOperator(model, loss_fn, (x, y), dtype=F64)
    V = torch.randn(op_tuple.shape[0], 3, dtype=F64, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(op_loader @ V, op_tuple @ V, rtol=1e-12, atol=1e-14)


def test_matmat_equals_stacked_matvecs_in_every_chunk_size():
    model, loss_fn, x, y = _make(CASES[2])
    V = torch.randn(sum(p.numel() for p in model.parameters()), 5, dtype=F64)
    columns = None
    for chunk in (1, 2, 5):
        op = fs.HessianOperator(model, loss_fn, (x, y), dtype=F64, probe_batch_size=chunk)
        stacked = torch.stack([op @ V[:, j] for j in range(5)], dim=1)
        torch.testing.assert_close(op @ V, stacked, rtol=1e-12, atol=1e-14)
        columns = stacked if columns is None else columns
        torch.testing.assert_close(stacked, columns, rtol=1e-12, atol=1e-14)


def test_parameter_selection_gives_the_sub_block():
    model, loss_fn, x, y = _make(CASES[2])
    full = fs.HessianOperator(model, loss_fn, (x, y), dtype=F64)
    full_dense = full @ torch.eye(full.shape[0], dtype=F64)
    sub = fs.HessianOperator(model, loss_fn, (x, y), params=["bn.*", "fc.weight"], dtype=F64)
    assert sub.param_names == ["bn.weight", "bn.bias", "fc.weight"]
    index = torch.cat([torch.arange(full.shape[0])[full.blocks[n]] for n in sub.param_names])
    torch.testing.assert_close(
        sub @ torch.eye(sub.shape[0], dtype=F64), full_dense[index][:, index], rtol=1e-10, atol=0
    )
    assert [s.stop - s.start for s in sub.blocks.values()] == [2, 2, 24]


def test_loss_and_gradient_are_over_all_data():
    model, loss_fn, x, y = _make(CASES[0])
    op = fs.HessianOperator(model, loss_fn, _batches(x, y), dtype=F64)
    flat = op.flat_params().requires_grad_(True)
    params = {n: p for n, p in model.named_parameters()}
    full = loss_fn(functional_call(model, unflatten(flat, params), (x,)), y)
    (reference_grad,) = torch.autograd.grad(full, flat)
    assert op.loss() == pytest.approx(full.item(), rel=1e-13)
    torch.testing.assert_close(op.gradient(), reference_grad, rtol=1e-12, atol=1e-15)


def test_model_is_untouched_and_mode_restored():
    model, loss_fn, x, y = _make(CASES[2])
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    op = fs.HessianOperator(model, loss_fn, (x, y), dtype=torch.float32)
    op @ torch.ones(op.shape[0])
    assert model.training and model.bn.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
        assert v.dtype == before[k].dtype


def test_float32_default_and_float64_on_request():
    torch.manual_seed(0)
    model = _mlp()
    x, y = torch.randn(6, 4), torch.randint(0, 3, (6,))
    assert fs.HessianOperator(model, nn.CrossEntropyLoss(), (x, y)).dtype == torch.float32
    op = fs.HessianOperator(model, nn.CrossEntropyLoss(), (x, y), dtype=F64)
    assert (op @ torch.ones(op.shape[0], dtype=F64)).dtype == F64


def test_scipy_adapter_round_trips():
    model, loss_fn, x, y = _make(CASES[0])
    op = fs.HessianOperator(model, loss_fn, (x, y), dtype=F64)
    V = np.random.default_rng(0).standard_normal((op.shape[0], 3))
    scipy_op = op.to_scipy()
    expected = (op @ torch.from_numpy(V)).numpy()
    np.testing.assert_allclose(scipy_op @ V, expected, rtol=1e-13)
    np.testing.assert_allclose(scipy_op.matvec(V[:, 0]), expected[:, 0], rtol=1e-13)
    assert scipy_op.shape == op.shape and scipy_op.dtype == np.float64


def test_forward_mode_falls_back_to_double_backward():
    class NoForwardAD(torch.autograd.Function):
        @staticmethod
        def forward(x):
            return torch.sin(x)

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(inputs[0])

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * torch.cos(x)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 2)

        def forward(self, x):
            return NoForwardAD.apply(self.lin(x))

    torch.manual_seed(0)
    model = Model().to(F64)
    x, y = torch.randn(5, 3, dtype=F64), torch.randn(5, 2, dtype=F64)
    op = fs.HessianOperator(model, nn.MSELoss(), (x, y), dtype=F64, hvp="forward")
    e = torch.eye(op.shape[0], dtype=F64)
    reference = _dense_hessian(model, nn.MSELoss(), x, y)
    torch.testing.assert_close(op @ e, reference, rtol=1e-10, atol=1e-14)
    assert op.hvp_mode == "double_backward"


def test_auto_takes_double_backward_on_cpu():
    model, loss_fn, x, y = _make(CASES[0])
    assert fs.HessianOperator(model, loss_fn, (x, y)).hvp_mode == "double_backward"


def test_bad_arguments_raise_clear_errors():
    model, loss_fn, x, y = _make(CASES[0])
    op = fs.HessianOperator(model, loss_fn, (x, y), dtype=F64)
    d = op.shape[0]
    with pytest.raises(ValueError, match="cannot multiply"):
        op @ torch.ones(d + 1, dtype=F64)
    with pytest.raises(TypeError, match="dtype"):
        op @ torch.ones(d, dtype=torch.float32)
    with pytest.raises(ValueError, match="empty"):
        fs.HessianOperator(model, loss_fn, [], dtype=F64)
    with pytest.raises(ValueError, match="matches no parameter"):
        fs.HessianOperator(model, loss_fn, (x, y), params=["encoder.*"])
    with pytest.raises(ValueError, match="one-shot"):
        fs.HessianOperator(model, loss_fn, (b for b in [(x, y)]))
    with pytest.raises(ValueError, match="hvp"):
        fs.HessianOperator(model, loss_fn, (x, y), hvp="finite-differences")


def test_shuffling_loader_and_active_dropout_are_refused():
    model, loss_fn, x, y = _make(CASES[0])
    loader = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True)
    with pytest.raises(ValueError, match="shuffle=False"):
        fs.HessianOperator(model, loss_fn, loader)

    class AlwaysDropout(nn.Module):
        def forward(self, h):
            return nn.functional.dropout(h, p=0.5, training=True)

    noisy = nn.Sequential(nn.Linear(4, 5), AlwaysDropout(), nn.Linear(5, 3)).to(F64)
    with pytest.raises(ValueError, match="dropout"):
        fs.HessianOperator(noisy, loss_fn, (x, y))


def test_nan_loss_is_not_mistaken_for_randomness():
    model, loss_fn, x, y = _make(CASES[0])
    x = x.clone()
    x[0, 0] = float("nan")
    op = fs.HessianOperator(model, loss_fn, (x, y), dtype=F64)
    assert math.isnan(op.loss())


# ------------------------------------------------------------------- kept graphs, modes, memory
def _dense(op) -> torch.Tensor:
    return op @ torch.eye(op.shape[0], dtype=F64)


KEPT_CASES = [CASES[i] for i in (0, 2, 3, 5)]
BATCHED_CASES = [CASES[i] for i in (1, 2, 4)]


@pytest.mark.parametrize("case", KEPT_CASES, ids=[c[0] for c in KEPT_CASES])
def test_kept_graphs_give_the_recomputed_products_and_the_dense_hessian(case):
    model, loss_fn, x, y = _make(case)
    reference = _dense_hessian(model, loss_fn, x, y)
    kept = fs.HessianOperator(model, loss_fn, _batches(x, y), dtype=F64)
    recomputed = fs.HessianOperator(model, loss_fn, _batches(x, y), dtype=F64, graph_budget=0)
    first, again, fresh = _dense(kept), _dense(kept), _dense(recomputed)
    assert kept.graphs_kept is True and recomputed.graphs_kept is False
    torch.testing.assert_close(again, first, rtol=1e-12, atol=1e-12 * first.abs().max())
    torch.testing.assert_close(first, fresh, rtol=1e-12, atol=1e-12 * first.abs().max())
    assert (first - reference).norm() < 1e-10 * reference.norm()


def test_one_batch_keeps_its_graph_under_the_default_budget(monkeypatch):
    monkeypatch.setattr("flatscope.operators.hessian.available_memory", lambda device: 0)
    model, loss_fn, x, y = _make(CASES[2])
    op = fs.HessianOperator(model, loss_fn, (x, y), dtype=F64)
    torch.testing.assert_close(_dense(op), _dense_hessian(model, loss_fn, x, y), rtol=1e-10, atol=0)
    assert op.graphs_kept is True
    batches = fs.HessianOperator(model, loss_fn, _batches(x, y), dtype=F64)
    batches @ torch.ones(op.shape[0], dtype=F64)
    assert batches.graphs_kept is False  # more than one batch: the budget rules
    explicit = fs.HessianOperator(model, loss_fn, (x, y), dtype=F64, graph_budget=0)
    explicit @ torch.ones(op.shape[0], dtype=F64)
    assert explicit.graphs_kept is False


def test_kept_graphs_are_rebuilt_when_the_data_is_written_in_place():
    model, loss_fn, x, y = _make(CASES[0])
    x = x.clone()
    op = fs.HessianOperator(model, loss_fn, [(x, y)], dtype=F64)
    v = torch.randn(op.shape[0], dtype=F64, generator=torch.Generator().manual_seed(3))
    before = op @ v
    x.mul_(1.5)
    after = op @ v
    torch.testing.assert_close(
        after, fs.HessianOperator(model, loss_fn, [(x, y)], dtype=F64) @ v, rtol=1e-12, atol=0
    )
    assert not torch.allclose(after, before)
    op.release_graphs()
    torch.testing.assert_close(op @ v, after, rtol=1e-12, atol=0)


@pytest.mark.parametrize("case", BATCHED_CASES, ids=[c[0] for c in BATCHED_CASES])
def test_batched_double_backward_equals_the_loop_and_the_dense_hessian(case):
    model, loss_fn, x, y = _make(case)
    batched = fs.HessianOperator(
        model, loss_fn, _batches(x, y), dtype=F64, hvp="batched_double_backward"
    )
    loop = fs.HessianOperator(model, loss_fn, _batches(x, y), dtype=F64, hvp="double_backward")
    assert (batched.column_mode, loop.column_mode) == ("batched", "loop")
    dense = _dense(batched)
    torch.testing.assert_close(dense, _dense(loop), rtol=1e-12, atol=1e-12 * dense.abs().max())
    reference = _dense_hessian(model, loss_fn, x, y)
    assert (dense - reference).norm() < 1e-10 * reference.norm()


@pytest.mark.parametrize("hvp", ["forward", "batched_double_backward"])
def test_memory_sized_chunks_give_the_same_products(hvp):
    model, loss_fn, x, y = _make(CASES[2])
    V = torch.randn(sum(p.numel() for p in model.parameters()), 6, dtype=F64)
    tight, loose = (
        fs.HessianOperator(model, loss_fn, (x, y), dtype=F64, hvp=hvp, memory_multiple=multiple)
        for multiple in (1.5, 1e6)
    )
    small, large = tight @ V, loose @ V
    assert (tight.chunk_size(6), loose.chunk_size(6)) == (1, 6)
    torch.testing.assert_close(small, large, rtol=1e-12, atol=1e-12 * large.abs().max())


class _NoForwardRule(torch.autograd.Function):
    """sin, in the old style (``ctx`` in ``forward``): no forward-mode (jvp) or vmap rule."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.sin()

    @staticmethod
    def backward(ctx, g):
        return g * ctx.saved_tensors[0].cos()


class _BrokenBackward(_NoForwardRule):
    @staticmethod
    def backward(ctx, g):
        raise RuntimeError("the model's own backward is broken")


class _Wrapped(nn.Module):
    def __init__(self, function):
        super().__init__()
        self.lin, self.function = nn.Linear(3, 2), function

    def forward(self, x):
        return self.function.apply(self.lin(x))


def test_forward_mode_fallback_warns_once_and_gives_the_hessian():
    torch.manual_seed(0)
    model = _Wrapped(_NoForwardRule).to(F64)
    x, y = torch.randn(5, 3, dtype=F64), torch.randn(5, 2, dtype=F64)
    op = fs.HessianOperator(model, nn.CrossEntropyLoss(), (x, y), dtype=F64, hvp="forward")
    with pytest.warns(RuntimeWarning, match="forward-over-reverse failed") as record:
        first = _dense(op)
    assert len([w for w in record if w.category is RuntimeWarning]) == 1
    assert op.hvp_mode == "double_backward"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        torch.testing.assert_close(_dense(op), first, rtol=1e-12, atol=0)
    reference = _dense_hessian(model, nn.CrossEntropyLoss(), x, y)
    torch.testing.assert_close(first, reference, rtol=1e-10, atol=1e-14)


def test_an_error_of_the_model_itself_is_not_taken_for_a_missing_forward_rule():
    model = _Wrapped(_BrokenBackward).to(F64)
    x, y = torch.randn(5, 3, dtype=F64), torch.randn(5, 2, dtype=F64)
    op = fs.HessianOperator(model, nn.MSELoss(), (x, y), dtype=F64, hvp="forward")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(RuntimeError, match="own backward is broken") as raised:
            op @ torch.ones(op.shape[0], dtype=F64)
    assert not isinstance(raised.value, fs.operators.ForwardModeUnavailable)
    assert op.hvp_mode == "forward"


def test_to_scipy_transposes_only_what_is_not_symmetric():
    model, loss_fn, x, y = _make(CASES[0])
    op = fs.HessianOperator(model, loss_fn, (x, y), dtype=F64)
    v = np.random.default_rng(1).standard_normal(op.shape[0])
    assert op.symmetric
    np.testing.assert_allclose(op.to_scipy().rmatvec(v), op.to_scipy().matvec(v), rtol=1e-14)
    A = torch.arange(9, dtype=F64).reshape(3, 3)
    dense = fs.DenseOperator(A)
    u = np.array([1.0, -2.0, 0.5])
    assert not dense.symmetric and fs.DenseOperator(A + A.T).symmetric
    np.testing.assert_allclose(dense.to_scipy().rmatvec(u), A.T.numpy() @ u, rtol=1e-14)
    np.testing.assert_allclose(dense.to_scipy().H @ u, A.T.numpy() @ u, rtol=1e-14)
    np.testing.assert_allclose(
        dense.to_scipy(symmetric=True).rmatvec(u), A.numpy() @ u, rtol=1e-14
    )  # the caller's word

    class Plain(fs.LinearOperator):
        def _matmat(self, V):
            return 2 * V

    with pytest.raises(NotImplementedError, match="transpose"):
        Plain((3, 3), F64, "cpu").to_scipy().rmatvec(u)
