"""Randomized trace estimators with standard errors and per-block traces.

Every estimator here is written as

    estimate = sum_j e_j + (1/n) sum_i sum_j C_ji,

an exact part ``e`` (a length-``d`` vector, zero for plain Hutchinson) plus the mean of ``n``
random samples, each a column of per-coordinate contributions ``C`` (``d x n``). Summing rows
of ``e`` and ``C`` over a coordinate block ``b`` gives the same estimator for the trace of the
diagonal block ``A_bb`` from the same products, so per-block traces cost no extra products and
add up to the total. The standard error is the sample standard deviation of the ``n`` column
sums divided by ``sqrt(n)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from flatscope.linalg._common import (
    apply,
    as_symmetric_operator,
    check_choice,
    check_count,
    probe_products,
    probes,
    seeded_generator,
)
from flatscope.linalg._orthogonalize import project_out
from flatscope.operators.base import LinearOperator

__all__ = ["TraceEstimate", "trace", "hutchinson", "hutchpp", "na_hutchpp", "xtrace", "METHODS"]

Blocks = dict[str, slice] | None


@dataclass
class TraceEstimate:
    """A trace estimate.

    Attributes:
        value: the estimate of ``tr A``.
        stderr: its standard error (see each estimator for what it assumes).
        num_matvecs: matrix-vector products spent.
        method: the estimator's name.
        per_block: ``{block: (value, stderr)}`` for the trace of each diagonal block of the
            operator's :attr:`~flatscope.operators.base.LinearOperator.blocks`, or ``None``.
    """

    value: float
    stderr: float
    num_matvecs: int
    method: str
    per_block: dict[str, tuple[float, float]] | None = None

    def to_dict(self) -> dict:
        """JSON-friendly plain Python types."""
        return {
            "value": self.value,
            "stderr": self.stderr,
            "num_matvecs": self.num_matvecs,
            "method": self.method,
            "per_block": None
            if self.per_block is None
            else {name: [v, s] for name, (v, s) in self.per_block.items()},
        }


def _row_sums(C: torch.Tensor, blocks: Blocks) -> torch.Tensor:
    """Column sums of ``C`` (``d x n``) over all rows, then over each block: ``(1 + B, n)``."""
    rows = [C.sum(0)]
    if blocks is not None:
        rows += [C[s].sum(0) for s in blocks.values()]
    return torch.stack(rows)


def _result(
    method: str,
    op: LinearOperator,
    start: int,
    samples: torch.Tensor,
    exact: torch.Tensor | None = None,
) -> TraceEstimate:
    """Assemble an estimate from reduced samples ``(1 + B, n)`` and an exact part ``(1 + B,)``."""
    n = samples.shape[1]
    values = samples.mean(1) + (0 if exact is None else exact)
    errors = samples.std(1) / math.sqrt(n)
    per_block = None
    if op.blocks is not None:
        per_block = {
            name: (float(values[i]), float(errors[i])) for i, name in enumerate(op.blocks, 1)
        }
    return TraceEstimate(
        float(values[0]), float(errors[0]), op.num_matvecs - start, method, per_block
    )


def hutchinson(
    A: LinearOperator | torch.Tensor,
    num_matvecs: int = 100,
    seed: int = 0,
    probe: str = "rademacher",
    batch_size: int | None = None,
) -> TraceEstimate:
    """Hutchinson's estimator ``tr A ~ (1/m) sum_i z_i^T A z_i`` with ``E[z z^T] = I``.

    Probes: ``"rademacher"`` (variance ``2(||A||_F^2 - sum_i A_ii^2)/m``), ``"gaussian"``
    (``2||A||_F^2/m``) or ``"sphere"`` (uniform on the sphere of radius ``sqrt(d)``). The
    standard error is the sample standard deviation of the ``m`` quadratic forms over
    ``sqrt(m)`` (its square is unbiased for the estimator's variance; Hutchinson 1989). Per-block
    traces use ``z_b^T (A z)_b``. Only ``batch_size`` probes are held at a time.
    """
    op = as_symmetric_operator(A)
    check_count("num_matvecs", num_matvecs, minimum=2)
    start = op.num_matvecs
    batches = probe_products(op, num_matvecs, probe, seed, batch_size)
    samples = torch.cat([_row_sums(Z * AZ, op.blocks) for Z, AZ in batches], dim=1)
    return _result("hutchinson", op, start, samples)


def _low_rank_part(Q: torch.Tensor, AQ: torch.Tensor) -> torch.Tensor:
    """Per-coordinate diagonal of ``P A + A P - P A P`` for ``P = Q Q^T``: its sum over all
    coordinates is ``tr(Q^T A Q)`` and ``tr(A_bb) = tr((PA + AP - PAP)_bb) + tr((P' A P')_bb)``
    with ``P' = I - P``."""
    M = Q.mT @ AQ
    return 2 * (Q * AQ).sum(1) - ((Q @ M) * Q).sum(1)


def hutchpp(
    A: LinearOperator | torch.Tensor,
    num_matvecs: int = 100,
    seed: int = 0,
    probe: str = "rademacher",
    batch_size: int | None = None,
) -> TraceEstimate:
    """Hutch++ (Meyer, Musco, Musco, Woodruff, SOSA 2021).

    With ``k = m // 3``: ``Q = orth(A S)`` for ``k`` probes ``S``; then
    ``tr A ~ tr(Q^T A Q) + (1/g) sum_i g_i^T (I - QQ^T) A (I - QQ^T) g_i`` for the remaining
    ``g = m - 2k`` probes. Unbiased for any symmetric ``A``; ``O(1/eps)`` products for PSD ``A``.

    Standard error: conditional on ``S`` the first term is exact and the second is a plain
    Hutchinson estimate of ``tr((I - QQ^T) A (I - QQ^T))``, so the error is the sample standard
    deviation of its ``g`` quadratic forms over ``sqrt(g)``. It assumes nothing about ``A`` but
    is itself estimated from ``g`` samples (noisy when ``g`` is small).
    """
    op = as_symmetric_operator(A)
    check_count("num_matvecs", num_matvecs, minimum=4)
    d = op.shape[0]
    k = min(num_matvecs // 3, d)
    g = num_matvecs - 2 * k
    start = op.num_matvecs
    generator = seeded_generator(seed)
    S = probes(generator, d, k, probe, op.dtype, op.device)
    G = probes(generator, d, g, probe, op.dtype, op.device)
    Q = torch.linalg.qr(apply(op, S, batch_size)).Q
    AQ = apply(op, Q, batch_size)
    G_perp = project_out(G, Q, passes=1)
    residual = project_out(apply(op, G_perp, batch_size), Q, passes=1)
    exact = _row_sums(_low_rank_part(Q, AQ)[:, None], op.blocks)[:, 0]
    return _result("hutchpp", op, start, _row_sums(G * residual, op.blocks), exact)


def na_hutchpp(
    A: LinearOperator | torch.Tensor,
    num_matvecs: int = 100,
    seed: int = 0,
    probe: str = "rademacher",
    batch_size: int | None = None,
) -> TraceEstimate:
    """Non-adaptive Hutch++ (Meyer, Musco, Musco, Woodruff 2021, Algorithm 2): all products in
    one batch.

    With ``r = m // 6`` range probes ``R``, ``s = m // 3`` sketch probes ``S`` and ``g = m - r - s``
    probes ``G``, computing ``Z = A R``, ``W = A S`` and ``A G`` at once, the low-rank
    approximation ``B = Z (S^T Z)^+ W^T`` gives
    ``tr A ~ tr((S^T Z)^+ W^T Z) + (1/g) sum_i g_i^T (A - B) g_i``.

    Standard error: conditional on ``R, S`` the second term is a Hutchinson estimate of
    ``tr(A - B)``; the error is the sample standard deviation of its ``g`` samples over
    ``sqrt(g)``.
    """
    op = as_symmetric_operator(A)
    check_count("num_matvecs", num_matvecs, minimum=6)
    d = op.shape[0]
    r, s = num_matvecs // 6, num_matvecs // 3
    g = num_matvecs - r - s
    start = op.num_matvecs
    generator = seeded_generator(seed)
    probe_matrix = probes(generator, d, num_matvecs, probe, op.dtype, op.device)
    products = apply(op, probe_matrix, batch_size)
    R, S, G = probe_matrix.split([r, s, g], dim=1)
    Z, W, AG = products.split([r, s, g], dim=1)
    ZX = Z @ torch.linalg.pinv(S.mT @ Z)  # (d, s): B = ZX W^T
    exact = _row_sums((ZX * W).sum(1, keepdim=True), op.blocks)[:, 0]
    residual = AG - ZX @ (W.mT @ G)
    return _result("na_hutchpp", op, start, _row_sums(G * residual, op.blocks), exact)


def xtrace(
    A: LinearOperator | torch.Tensor,
    num_matvecs: int = 100,
    seed: int = 0,
    probe: str = "sphere",
    batch_size: int | None = None,
) -> TraceEstimate:
    """XTrace (Epperly, Tropp, Webber, SIAM J. Matrix Anal. Appl. 2024).

    With ``s = m // 2`` probes ``Omega`` and ``Q R = A Omega``, let ``Q_(i)`` be an orthonormal
    basis of ``A Omega`` without column ``i``. Each leave-one-out estimate

        t_i = tr(Q_(i)^T A Q_(i)) + w_i^T (I - Q_(i) Q_(i)^T) A (I - Q_(i) Q_(i)^T) w_i

    is unbiased because ``w_i`` is independent of ``Q_(i)``; the estimate is their mean. The
    ``Q_(i)`` come from a rank-one downdate, ``Q_(i) Q_(i)^T = Q (I - u_i u_i^T) Q^T`` with
    ``u_i`` the normalised ``i``-th column of ``R^{-T}``, so only ``A Omega`` and ``A Q`` are
    needed (``2s`` products). With rotation-invariant probes (``"sphere"``, the default, or
    ``"gaussian"``) the residual probe ``(I - Q_(i) Q_(i)^T) w_i`` is rescaled to norm
    ``sqrt(d - s + 1)``, the paper's improved estimator (still unbiased, lower variance).

    Standard error: the sample standard deviation of the ``t_i`` over ``sqrt(s)``, the paper's
    error estimate. The ``t_i`` are exchangeable but not independent and it underestimates the
    error somewhat (the paper says so; on synthetic spectra we measured actual errors 1.1 to
    1.7 times this estimate in root mean square).

    If ``A Omega`` is numerically rank deficient, ``A`` has rank below ``s``, ``range(Q)``
    contains its range and ``tr(Q^T A Q)`` is returned as exact (standard error 0).
    """
    op = as_symmetric_operator(A)
    check_count("num_matvecs", num_matvecs, minimum=4)
    d = op.shape[0]
    s = min(num_matvecs // 2, d)
    start = op.num_matvecs
    Omega = probes(seeded_generator(seed), d, s, probe, op.dtype, op.device)
    Y = apply(op, Omega, batch_size)
    Q, R = torch.linalg.qr(Y)
    AQ = apply(op, Q, batch_size)
    diag = R.diagonal().abs()
    if float(diag.min()) <= s * torch.finfo(op.dtype).eps * float(diag.max()):
        exact = _row_sums(_low_rank_part(Q, AQ)[:, None], op.blocks)[:, 0]
        no_samples = exact.new_zeros(exact.shape[0], 2)
        return _result("xtrace", op, start, no_samples, exact)
    U = torch.linalg.solve_triangular(
        R.mT, torch.eye(s, dtype=R.dtype, device=R.device), upper=False
    )
    U = U / U.norm(dim=0)  # column i is u_i
    QU, AQU = Q @ U, AQ @ U
    # Exact part of t_i per coordinate: diag(2 P_i A - P_i A P_i) with P_i = Q (I - u u^T) Q^T.
    M = Q.mT @ AQ
    QM, QMU = Q @ M, Q @ (M @ U)
    uMu = (U * (M @ U)).sum(0)
    diag_PA = (Q * AQ).sum(1, keepdim=True) - QU * AQU
    diag_PAP = (QM * Q).sum(1, keepdim=True) - 2 * QMU * QU + uMu * QU.square()
    # Residual part: w_i^T (P_i' A P_i' w_i) per coordinate, P_i' = I - P_i, using
    # P_i' w_i = w_i - Q c_i + gamma_i Q u_i with c = Q^T w_i, gamma_i = u_i^T c_i.
    C = Q.mT @ Omega
    gamma = (U * C).sum(0)
    A_Pw = Y - AQ @ C + AQU * gamma
    Q_A_Pw = Q.mT @ A_Pw
    P_A_Pw = A_Pw - Q @ Q_A_Pw + QU * (U * Q_A_Pw).sum(0)
    residual = Omega * P_A_Pw
    if probe != "rademacher":
        # ||P_i' w_i||^2 = ||w_i||^2 - ||c_i||^2 + gamma_i^2; rescale to sqrt(d - s + 1).
        norm2 = Omega.square().sum(0) - C.square().sum(0) + gamma.square()
        residual = residual * ((d - s + 1) / norm2)
    contributions = 2 * diag_PA - diag_PAP + residual
    return _result("xtrace", op, start, _row_sums(contributions, op.blocks))


METHODS: dict[str, Callable[..., TraceEstimate]] = {
    "hutchinson": hutchinson,
    "hutchpp": hutchpp,
    "na_hutchpp": na_hutchpp,
    "xtrace": xtrace,
}


def trace(
    A: LinearOperator | torch.Tensor,
    method: str = "hutchpp",
    num_matvecs: int = 100,
    seed: int = 0,
    **kwargs,
) -> TraceEstimate:
    """Estimate ``tr A`` with ``method`` in :data:`METHODS`, spending ``num_matvecs`` products.

    ``kwargs`` go to the estimator: ``probe`` (``"rademacher"``, ``"gaussian"``, ``"sphere"``)
    and ``batch_size`` (at most this many columns per ``A @ V``; default all at once).
    """
    check_choice("method", method, tuple(METHODS))
    return METHODS[method](A, num_matvecs=num_matvecs, seed=seed, **kwargs)
