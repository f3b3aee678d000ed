"""Randomized trace estimators with standard errors and per-block traces.

Every estimator here is written as

    estimate = sum_j e_j + (1/n) sum_i sum_j C_ji,

an exact part ``e`` (a length-``d`` vector, zero for plain Hutchinson) plus the mean of ``n``
random samples, each a column of per-coordinate contributions ``C`` (``d x n``). Summing rows
of ``e`` and ``C`` over a coordinate block ``b`` gives the same estimator for the trace of the
diagonal block ``A_bb`` from the same products, so per-block traces cost no extra products and
add up to the total.

Standard errors. Every estimate states ``value ± 1.96 stderr`` as its 95% interval, and
``benchmarks/coverage.py`` measures how often that holds on the exact Hessians of trained
networks. The sample standard deviation of the ``n`` random samples over ``sqrt(n)`` is unbiased
in square but, on network spectra (a few large eigenvalues left in the remainder), its own
scatter at 10 to 50 samples let coverage fall to 85%. Hutchinson-type samples ``z^T B z``
(plain Hutchinson, and the residual parts of Hutch++ and NA-Hutch++ conditional on their
sketches) have the known variance ``2 (||B||_F^2 - sum_i B_ii^2)`` for Rademacher probes,
``2 ||B||_F^2`` for Gaussian ones and at most that on the sphere (Hutchinson 1989; Avron and
Toledo, J. ACM 2011; Meyer et al. 2021, Lemma 2), and the products at hand estimate it without
bias: ``||B||_F^2 = E ||B z||^2`` (Gratton and Titley-Peloquin, SIAM J. Matrix Anal. Appl.
2018) and ``sum_i B_ii^2 = E (z o B z)^T (z' o B z')`` over pairs of independent probes. A
norm of ``d``-vectors averages over many more numbers than the ``n`` quadratic forms, so this
estimate scatters much less and restores the coverage. For a block ``b`` the same formula with
``||B_{b,:}||_F^2`` is an upper bound of the variance (it counts the coupling to the other
blocks twice), so per-block errors err on the wide side. XTrace's samples are not independent
(see :func:`xtrace`); its error comes from a jackknife over groups of probes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import scipy.stats
import torch

from flatscope.linalg._common import (
    apply,
    as_symmetric_operator,
    check_choice,
    check_count,
    probe_products,
    probes,
    seeded_generator,
    stream_seed,
)
from flatscope.linalg._orthogonalize import project_out
from flatscope.linalg.eigen import EigenResult
from flatscope.operators.base import LinearOperator

__all__ = ["TraceEstimate", "trace", "hutchinson", "hutchpp", "na_hutchpp", "xtrace", "METHODS"]

Blocks = dict[str, slice] | None
#: Random stream (of the caller's seed) of the probes of a deflated trace estimate.
DEFLATION_STREAM = 1
#: Groups of probes in XTrace's jackknife error estimate.
XTRACE_GROUPS = 20
_NORMAL_975 = 1.959963984540054


def _student_t_975(dof: int) -> float:
    """The 0.975 quantile of Student's t with ``dof`` degrees of freedom."""
    return float(scipy.stats.t.ppf(0.975, dof))


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
        deflation_rank: dimension of the subspace handled exactly (``deflate=`` of
            :func:`trace`; 0 without).
    """

    value: float
    stderr: float
    num_matvecs: int
    method: str
    per_block: dict[str, tuple[float, float]] | None = None
    deflation_rank: int = 0

    def to_dict(self) -> dict:
        """JSON-friendly plain Python types."""
        return {
            "value": self.value,
            "stderr": self.stderr,
            "num_matvecs": self.num_matvecs,
            "method": self.method,
            "deflation_rank": self.deflation_rank,
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


class _QuadraticForms:
    """Quadratic forms ``z^T B z`` of probes ``z`` (per coordinate block) and the estimate of
    the variance of their mean from the products ``B z`` (see the module docs)."""

    def __init__(self, op: LinearOperator, probe: str) -> None:
        self.blocks, self.rademacher = op.blocks, probe == "rademacher"
        self.samples: list[torch.Tensor] = []
        rows = 1 + (0 if op.blocks is None else len(op.blocks))
        self.frobenius = torch.zeros(rows, dtype=op.dtype, device=op.device)
        self.diagonal_sum = torch.zeros(op.shape[0], dtype=op.dtype, device=op.device)
        self.diagonal_squares = torch.zeros_like(self.frobenius)

    def add(self, Z: torch.Tensor, BZ: torch.Tensor) -> None:
        """Add the probes ``Z`` (``d x n``) with their products ``B Z`` (``B`` symmetric)."""
        C = Z * BZ
        self.samples.append(_row_sums(C, self.blocks))
        self.frobenius += _row_sums(BZ.square(), self.blocks).sum(1)
        if self.rademacher:
            self.diagonal_sum += C.sum(1)
            self.diagonal_squares += _row_sums(C.square(), self.blocks).sum(1)

    def reduced(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(1 + B, n)`` samples and the ``(1 + B,)`` variance of their mean."""
        samples = torch.cat(self.samples, dim=1)
        n = samples.shape[1]
        per_sample = self.frobenius / n  # estimates ||B_{b,:}||_F^2
        if self.rademacher:
            crossed = _row_sums(self.diagonal_sum[:, None].square(), self.blocks)[:, 0]
            per_sample = per_sample - (crossed - self.diagonal_squares) / (n * (n - 1))
        return samples, 2 * per_sample.clamp_min(0) / n


def _result(
    method: str,
    op: LinearOperator,
    start: int,
    samples: torch.Tensor,
    variance: torch.Tensor,
    exact: torch.Tensor | None = None,
) -> TraceEstimate:
    """Assemble an estimate from reduced samples ``(1 + B, n)``, the variance of their mean and
    an exact part (both ``(1 + B,)``)."""
    values = samples.mean(1) + (0 if exact is None else exact)
    errors = variance.sqrt()
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
    standard error estimates that variance from the products (see the module docs). Per-block
    traces use ``z_b^T (A z)_b``. Only ``batch_size`` probes are held at a time.
    """
    op = as_symmetric_operator(A)
    check_count("num_matvecs", num_matvecs, minimum=2)
    start = op.num_matvecs
    forms = _QuadraticForms(op, probe)
    for Z, AZ in probe_products(op, num_matvecs, probe, seed, batch_size):
        forms.add(Z, AZ)
    return _result("hutchinson", op, start, *forms.reduced())


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
    Hutchinson estimate of ``tr(B)``, ``B = (I - QQ^T) A (I - QQ^T)``, whose variance is
    estimated from the products ``B g_i`` (see the module docs). Since the estimate is unbiased
    given any ``S``, this conditional error is also the unconditional one on average.
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
    forms = _QuadraticForms(op, probe)
    forms.add(G, residual)
    return _result("hutchpp", op, start, *forms.reduced(), exact)


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
    ``tr(A - B)``, that is of ``tr M`` for the symmetric part ``M = A - (B + B^T) / 2`` (the
    quadratic forms are the same); its variance is estimated from the products ``M g_i``, which
    need no further product since ``B^T g = W (Z X)^T g`` (see the module docs). Per-block
    traces use ``g_b^T (M g)_b``.
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
    # g^T (A - B) g = g^T M g with M the symmetric part of A - B (B is not symmetric).
    residual = AG - (ZX @ (W.mT @ G) + W @ (ZX.mT @ G)) / 2
    forms = _QuadraticForms(op, probe)
    forms.add(G, residual)
    return _result("na_hutchpp", op, start, *forms.reduced(), exact)


def _xtrace_contributions(
    Omega: torch.Tensor, Y: torch.Tensor, Q: torch.Tensor, R: torch.Tensor, AQ: torch.Tensor, probe
) -> torch.Tensor:
    """Per-coordinate contributions ``(d, s)`` of XTrace's leave-one-out estimates ``t_i`` from
    the probes ``Omega``, ``Y = A Omega = Q R`` and ``A Q``; one column (the exact low-rank
    part) if ``Y`` is numerically rank deficient."""
    d, s = Omega.shape
    diag = R.diagonal().abs()
    if float(diag.min()) <= s * torch.finfo(R.dtype).eps * float(diag.max()):
        return _low_rank_part(Q, AQ)[:, None]
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
    return 2 * diag_PA - diag_PAP + residual


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

    Standard error: the ``t_i`` share their probes, so the paper's estimate, their sample
    standard deviation over ``sqrt(s)``, runs low (on trained networks' Hessians the actual
    error was 1.15 to 1.35 times it and the 95% interval covered 84-89%). Instead the ``s``
    probes are split into ``J = min(s, XTRACE_GROUPS)`` groups and XTrace is recomputed
    without each group, from the same products (``A Q_g = (A Q)(Q^T Q_g)`` since
    ``range(Q_g)`` lies in ``range(Q)``); the delete-a-group jackknife variance
    ``(J - 1)/J sum_g (theta_g - mean theta)^2`` (Shao and Wu, Ann. Statist. 1989) resamples
    the whole estimator, dependence included, and for a symmetric function of independent
    probes it errs on the high side in expectation (Efron and Stein, Ann. Statist. 1981). The
    standard error is its square root times ``t_{J-1} / z`` (0.975 quantiles of Student's t and
    of the normal), so that ``value ± 1.96 stderr`` is the jackknife's t-interval. Extra cost:
    ``J`` small XTrace computations, ``O(J d s^2)`` flops, no products.

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
    samples = _row_sums(_xtrace_contributions(Omega, Y, Q, R, AQ, probe), op.blocks)
    if samples.shape[1] == 1:  # rank deficient: exact
        return _result("xtrace", op, start, samples, torch.zeros_like(samples[:, 0]))
    groups = min(s, XTRACE_GROUPS)
    group = torch.arange(s, device=op.device) % groups
    replicates = []
    for g in range(groups):
        keep = group != g
        Q_g, R_g = torch.linalg.qr(Y[:, keep])
        AQ_g = AQ @ (Q.mT @ Q_g)
        part = _xtrace_contributions(Omega[:, keep], Y[:, keep], Q_g, R_g, AQ_g, probe)
        replicates.append(_row_sums(part, op.blocks).mean(1))
    theta = torch.stack(replicates, dim=1)
    variance = (groups - 1) / groups * (theta - theta.mean(1, keepdim=True)).square().sum(1)
    inflation = (_student_t_975(groups - 1) / _NORMAL_975) ** 2
    return _result("xtrace", op, start, samples, variance * inflation)


class _Deflated(LinearOperator):
    """``P' A P'`` with ``P' = I - Q Q^T`` for orthonormal ``Q``: one product of ``A`` per column,
    with the blocks of ``A``."""

    def __init__(self, op: LinearOperator, Q: torch.Tensor) -> None:
        super().__init__(op.shape, op.dtype, op.device, op.blocks)
        self.op, self.Q = op, Q

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        return project_out(self.op @ project_out(V, self.Q, passes=1), self.Q, passes=1)


def _orthonormal_pair(op: LinearOperator, deflate: EigenResult) -> tuple[torch.Tensor, ...]:
    """``Q`` orthonormal with ``span(Q) = span(basis)`` and ``A Q``, from ``basis = Q R`` and
    ``A Q = (A basis) R^{-1}``: no product."""
    basis, products = deflate.basis, deflate.products
    if basis.ndim != 2 or basis.shape[0] != op.shape[0] or products.shape != basis.shape:
        raise ValueError(
            f"deflate holds a basis of shape {tuple(basis.shape)}, which does not fit an "
            f"operator of shape {op.shape}"
        )
    basis = basis.to(device=op.device, dtype=op.dtype)
    products = products.to(device=op.device, dtype=op.dtype)
    Q, R = torch.linalg.qr(basis)
    diag = R.diagonal().abs()
    if basis.shape[1] and float(diag.min()) <= math.sqrt(torch.finfo(op.dtype).eps) * float(
        diag.max()
    ):
        raise ValueError("the deflation basis is numerically rank deficient")
    return Q, torch.linalg.solve_triangular(R, products, upper=True, left=False)


def _deflated_trace(
    op: LinearOperator, method: str, num_matvecs: int, seed: int, deflate: EigenResult, **kwargs
) -> TraceEstimate:
    Q, AQ = _orthonormal_pair(op, deflate)
    start = op.num_matvecs
    exact = _row_sums(_low_rank_part(Q, AQ)[:, None], op.blocks)[:, 0].tolist()
    seed = stream_seed(seed, DEFLATION_STREAM)
    rest = METHODS[method](_Deflated(op, Q), num_matvecs=num_matvecs, seed=seed, **kwargs)
    per_block = None
    if rest.per_block is not None:
        per_block = {
            name: (exact[i] + value, stderr)
            for i, (name, (value, stderr)) in enumerate(rest.per_block.items(), 1)
        }
    return TraceEstimate(
        exact[0] + rest.value,
        rest.stderr,
        op.num_matvecs - start,
        method,
        per_block,
        Q.shape[1],
    )


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
    *,
    deflate: EigenResult | None = None,
    **kwargs,
) -> TraceEstimate:
    """Estimate ``tr A`` with ``method`` in :data:`METHODS`, spending ``num_matvecs`` products.

    ``kwargs`` go to the estimator: ``probe`` (``"rademacher"``, ``"gaussian"``, ``"sphere"``)
    and ``batch_size`` (at most this many columns per ``A @ V``; default all at once).

    ``deflate``: the result of :func:`flatscope.linalg.eigenvalues` on the same operator. The
    subspace its search built, ``span(Q)`` with ``Q`` orthonormal and ``A Q`` already computed,
    is taken exactly and only the rest is estimated:

        tr A = tr(Q^T A Q) + tr(P' A P'),   P' = I - Q Q^T,

    the first term from the stored products (no product; for exact eigenpairs it is the sum of
    their eigenvalues, and for inexact Ritz pairs it is still exact for ``Q``), the second by
    ``method`` on the operator ``P' A P'`` (one product of ``A`` per column) with probes drawn
    from a stream of ``seed`` independent of the eigen solve's. Given ``Q`` the estimate is
    unbiased, and its standard error is the second term's, so it holds whatever ``Q`` is
    (Gambhir, Stathopoulos, Orginos, SIAM J. Sci. Comput. 2017, deflated Hutchinson; Chen and
    Hallman, SIAM J. Matrix Anal. Appl. 2023, Krylov-aware trace estimation). Per-block traces
    use ``tr(A_bb) = tr((P A + A P - P A P)_bb) + tr((P' A P')_bb)`` with ``P = Q Q^T``: the
    first term is ``sum_i lambda_i ||q_i[b]||^2`` for exact eigenpairs and accounts for the
    residuals of inexact ones. ``num_matvecs`` of the result counts only this call's products;
    the whole cost is ``deflate.num_matvecs + result.num_matvecs``.
    """
    check_choice("method", method, tuple(METHODS))
    if deflate is not None:
        op = as_symmetric_operator(A)
        return _deflated_trace(op, method, num_matvecs, seed, deflate, **kwargs)
    return METHODS[method](A, num_matvecs=num_matvecs, seed=seed, **kwargs)
