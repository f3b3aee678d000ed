"""The empirical Fisher, and the Monte-Carlo Fisher, of an objective, matrix-free.

For an :class:`~flatscope.objective.Objective` over ``N`` samples whose batch loss is the mean
of per-sample losses ``l_i(w) = loss_fn(f(x_i; w), y_i)`` (the loss of a batch of one sample),
so that ``L(w) = (1 / N) sum_i l_i(w)``, the **empirical Fisher** is the mean outer product of
the per-sample gradients ``g_i = grad l_i(w)``,

    F_emp = (1 / N) sum_i g_i g_i^T,

on the same scale as the Hessian of the mean loss ``L`` (not of the sum). The **Monte-Carlo
Fisher** replaces the data's labels by ``S`` labels drawn from the model's own predictive
distribution, ``y_is ~ Categorical(softmax(f(x_i; w)))``:

    F_MC = (1 / N) sum_i (1 / S) sum_s g_is g_is^T,   g_is = grad loss_fn(f(x_i; w), y_is).

For softmax cross-entropy ``E[F_MC] = (1 / N) sum_i J_i^T (diag p_i - p_i p_i^T) J_i``, the
true Fisher, which equals the generalized Gauss-Newton matrix
(:mod:`flatscope.operators.ggn`; Martens 2020, "New insights and perspectives on the natural
gradient method", JMLR 21, Sec. 9). The empirical Fisher is a different matrix: it weights each
sample by its own residual ``p_i - e_{y_i}``, so it vanishes at an interpolating fit where the
GGN does not, and it need not share the GGN's or the Hessian's eigenvectors (Kunstner, Hennig,
Balles, "Limitations of the empirical Fisher approximation for natural gradient descent",
NeurIPS 2019). Both are positive semi-definite.

Per-sample gradients come from ``torch.func.vmap(torch.func.grad(...))`` over chunks of
``sample_chunk`` samples (``(sample_chunk, d)`` entries at a time); a product with ``k``
columns is ``sum_i g_i (g_i^T P)``, so all columns share one pass of per-sample gradients.
The sampled labels are drawn from a generator seeded with ``seed`` at the start of every
product, so the operator is one fixed matrix and the same seed gives the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.func import grad, vmap

from flatscope.objective import LossFn, Objective
from flatscope.operators.curvature import CurvatureOperator, as_objective, outputs_at

__all__ = ["EmpiricalFisherOperator"]

LABELS = ("data", "sampled")
PER_SAMPLE_ENTRIES = 1 << 24  # a chunk of per-sample gradients holds at most this many entries


def _rows(x: Any, rows: slice) -> Any:
    """The rows ``rows`` of a batch's inputs (a tensor or a tuple/list of tensors)."""
    if isinstance(x, (tuple, list)):
        return type(x)(_rows(t, rows) for t in x)
    return x[rows]


def _one(x: Any) -> Any:
    """A sample as a batch of one (a leading axis of length one on every tensor)."""
    if isinstance(x, (tuple, list)):
        return type(x)(_one(t) for t in x)
    return x.unsqueeze(0)


class EmpiricalFisherOperator(CurvatureOperator):
    """The empirical Fisher ``(1 / N) sum_i g_i g_i^T`` of an objective's mean loss, or with
    ``labels="sampled"`` the Monte-Carlo Fisher (see the module docs); symmetric, positive
    semi-definite.

    Build it from an :class:`~flatscope.objective.Objective` or from the objective's arguments,
    as :class:`~flatscope.operators.hessian.HessianOperator`.

    Args:
        objective: the objective, or the model (with ``loss_fn`` and ``data``).
        loss_fn, data, params, device, dtype: the objective's arguments, when ``objective`` is
            a model.
        labels: ``"data"`` (the empirical Fisher) or ``"sampled"`` (the Monte-Carlo Fisher of
            a classifier with logits ``(B, C)``).
        mc_samples: labels drawn per sample with ``labels="sampled"``.
        seed: seeds the sampled labels.
        sample_chunk: samples whose gradients are held at once; ``None`` for as many as fit
            ``2^24`` entries.

    Raises:
        ValueError: an unknown ``labels``, ``mc_samples`` or ``sample_chunk`` below one;
            sampled labels for outputs that are not ``(B, C)`` logits (at the first product).
    """

    def __init__(
        self,
        objective: Objective | nn.Module,
        loss_fn: LossFn | None = None,
        data: Any = None,
        params: str | Sequence[str] | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        labels: str = "data",
        mc_samples: int = 1,
        seed: int = 0,
        sample_chunk: int | None = None,
    ) -> None:
        if labels not in LABELS:
            raise ValueError(f"labels must be one of {LABELS}, got {labels!r}")
        for name, value in (("mc_samples", mc_samples), ("sample_chunk", sample_chunk)):
            if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        objective = as_objective(
            objective, loss_fn, data, params, device, dtype, "EmpiricalFisherOperator"
        )
        super().__init__(objective)
        self.labels = labels
        self.mc_samples = int(mc_samples)
        self.seed = int(seed)
        self.sample_chunk = sample_chunk or max(1, PER_SAMPLE_ENTRIES // objective.dim)
        self._generator: torch.Generator | None = None

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        self._generator = torch.Generator().manual_seed(self.seed)  # the same labels each time
        return super()._matmat(V)

    def _batch_product(self, inputs: Any, targets: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(P)
        n = int(targets.shape[0])
        for start in range(0, n, self.sample_chunk):
            rows = slice(start, start + self.sample_chunk)
            x = _rows(inputs, rows)
            draws = [targets[rows]] if self.labels == "data" else self._sample(x)
            for y in draws:
                G = self._per_sample_gradients(x, y)  # (m, d)
                out.addmm_(P @ G.T, G, alpha=1.0 / len(draws))
        return out / n

    def _per_sample_gradients(self, inputs: Any, targets: torch.Tensor) -> torch.Tensor:
        def sample_loss(w: torch.Tensor, x: Any, y: torch.Tensor) -> torch.Tensor:
            return self.objective.batch_loss(w, _one(x), _one(y))

        return vmap(grad(sample_loss), in_dims=(None, 0, 0))(self._weights, inputs, targets)

    def _sample(self, inputs: Any) -> list[torch.Tensor]:
        """``mc_samples`` draws of class labels from the model's predictive distribution."""
        with torch.no_grad():
            logits = outputs_at(self.objective, self._weights, inputs)
        if logits.ndim != 2:
            raise ValueError(
                "labels='sampled' draws class labels from logits (B, C); the model returns "
                f"outputs of shape {tuple(logits.shape)}"
            )
        probabilities = torch.softmax(logits.to(torch.float64), dim=-1).cpu()
        draws = torch.multinomial(
            probabilities, self.mc_samples, replacement=True, generator=self._generator
        )
        return [draw.to(logits.device) for draw in draws.T]
