"""Extreme eigenpairs of a symmetric operator: thick-restart Lanczos, scipy's eigsh, and power
iteration with deflation as the reference users know from PyHessian."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse.linalg
import torch

from flatscope.linalg._common import (
    as_symmetric_operator,
    check_choice,
    check_count,
    probes,
    seeded_generator,
)
from flatscope.linalg._orthogonalize import DEPENDENT_COLUMN_RTOL, project_out
from flatscope.operators.base import LinearOperator

__all__ = ["EigenResult", "eigenvalues", "power_iteration"]

WHICH = ("largest", "smallest")


@dataclass
class EigenResult:
    """Eigenpairs found by :func:`eigenvalues` or :func:`power_iteration`.

    Attributes:
        values: ``(k,)`` eigenvalue estimates, the most extreme first (descending for
            ``"largest"``, ascending for ``"smallest"``; by decreasing ``|lambda|`` for power
            iteration).
        vectors: ``(d, k)`` unit eigenvector estimates.
        residuals: ``(k,)`` residual norms ``||A v - lambda v||``.
        num_matvecs: matrix-vector products spent.
        converged: whether every pair met the stopping rule.
        method: ``"lanczos"``, ``"scipy"`` or ``"power_iteration"``.
        block_size: columns per product of the Lanczos search (1 for the other methods).
        basis: ``(d, n)`` the vectors whose products the search holds at the end, ``n >= k``,
            the first ``k`` being ``vectors``: for Lanczos the Ritz vectors of the whole search
            space (orthonormal), for the other methods ``vectors`` themselves.
        products: ``(d, n)`` ``A @ basis``, known without further products. With ``basis``
            they let a trace estimate deflate the search space
            (:func:`flatscope.linalg.trace` with ``deflate=``). Not stored by :meth:`to_dict`.
    """

    values: torch.Tensor
    vectors: torch.Tensor
    residuals: torch.Tensor
    num_matvecs: int
    converged: bool
    method: str
    block_size: int
    basis: torch.Tensor
    products: torch.Tensor

    def to_dict(self, include_vectors: bool = False) -> dict:
        """JSON-friendly plain Python types; eigenvectors only if ``include_vectors``."""
        out = {
            "values": self.values.tolist(),
            "residuals": self.residuals.tolist(),
            "num_matvecs": self.num_matvecs,
            "converged": self.converged,
            "method": self.method,
            "block_size": self.block_size,
        }
        if include_vectors:
            out["vectors"] = self.vectors.mT.tolist()
        return out


def _orthonormal_block(
    V: torch.Tensor, W: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Orthonormalize the columns of ``W`` against ``V`` and each other (Gram-Schmidt twice).

    A column left with at most :data:`DEPENDENT_COLUMN_RTOL` of its norm lies in the current
    subspace; it is replaced by a random direction, so the search continues in the rest of the
    space. Returns at most ``d - V.shape[1]`` columns.
    """
    d = V.shape[0]
    basis = V
    new = []
    for w in W.mT:
        if basis.shape[1] == d:
            break
        f = project_out(w[:, None], basis)
        if float(f.norm()) <= DEPENDENT_COLUMN_RTOL * float(w.norm()):
            f = project_out(probes(generator, d, 1, "gaussian", V.dtype, V.device), basis)
        f = f / f.norm()
        new.append(f)
        basis = torch.cat([basis, f], dim=1)
    return torch.cat(new, dim=1) if new else W[:, :0]


def _lanczos_eigenpairs(
    op: LinearOperator,
    k: int,
    which: str,
    tol: float,
    max_matvecs: int,
    seed: int,
    subspace_size: int | None,
    block_size: int,
    min_subspace: int,
) -> EigenResult:
    d = op.shape[0]
    m = subspace_size or max(2 * k + 1, 30, k + 2 * block_size, min_subspace + block_size)
    m = min(d, m)
    if m < min(d, k + block_size):
        raise ValueError(f"subspace_size must be at least k + block_size = {k + block_size}")
    if m < min(d, min_subspace):
        raise ValueError(f"subspace_size must be at least min_subspace = {min_subspace}")
    keep = min(m - block_size, k + (m - k) // 2)
    generator = seeded_generator(seed)
    start = op.num_matvecs
    V = AV = torch.empty(d, 0, dtype=op.dtype, device=op.device)
    H = torch.empty(0, 0, dtype=op.dtype, device=op.device)  # V^T A V
    F = _orthonormal_block(
        V, probes(generator, d, block_size, "gaussian", V.dtype, V.device), generator
    )
    while True:
        # Grow by whole blocks only, so that A V stays inside span(V, F): thick restart
        # relies on it. Stop before a block that would overrun the budget.
        exhausted = F.shape[1] == 0 or op.num_matvecs - start + F.shape[1] > max_matvecs
        if not exhausted:
            W = op @ F
            VW = V.mT @ W
            H = torch.cat([torch.cat([H, VW], 1), torch.cat([VW.mT, F.mT @ W], 1)], 0)
            V, AV = torch.cat([V, F], dim=1), torch.cat([AV, W], dim=1)
            F = _orthonormal_block(V, W, generator)
        theta, S = torch.linalg.eigh((H + H.mT) / 2)
        order = theta.argsort(descending=which == "largest")
        theta, S = theta[order], S[:, order]
        count = min(k, V.shape[1])
        Y, AY = V @ S[:, :count], AV @ S[:, :count]
        residuals = (AY - Y * theta[:count]).norm(dim=0)
        scale = float(theta.abs().max()) if count else 0.0
        converged = count == k and bool((residuals <= tol * scale).all())
        grown = V.shape[1] >= min(min_subspace, d)
        if (converged and grown) or exhausted or V.shape[1] == d:
            basis, products = V @ S, AV @ S
            return EigenResult(
                theta[:count],
                basis[:, :count],
                residuals,
                op.num_matvecs - start,
                converged or V.shape[1] == d,
                "lanczos",
                block_size,
                basis,
                products,
            )
        if V.shape[1] + F.shape[1] > m:
            # Thick restart (Wu & Simon 2000): keep the best Ritz vectors. The residuals of
            # all Ritz pairs lie in span(V, F), so the search continues from F.
            V, AV = V @ S[:, :keep], AV @ S[:, :keep]
            H = torch.diag(theta[:keep])


def _scipy_eigenpairs(
    op: LinearOperator, k: int, which: str, tol: float, max_matvecs: int, seed: int
) -> EigenResult:
    d = op.shape[0]
    if k >= d:
        raise ValueError(f"method='scipy' (ARPACK) needs k < d, got k={k}, d={d}")
    v0 = probes(seeded_generator(seed), d, 1, "gaussian", op.dtype, torch.device("cpu"))[:, 0]
    ncv = min(d, max(2 * k + 1, 30))
    start = op.num_matvecs
    try:
        values, vectors = scipy.sparse.linalg.eigsh(
            op.to_scipy(),
            k=k,
            which="LA" if which == "largest" else "SA",
            tol=tol,
            v0=v0.numpy(),
            ncv=ncv,
            maxiter=max(1, max_matvecs // ncv),
        )
        converged = True
    except scipy.sparse.linalg.ArpackNoConvergence as err:
        values, vectors, converged = err.eigenvalues, err.eigenvectors, False
    order = np.argsort(-values if which == "largest" else values)
    values = torch.as_tensor(values[order].copy(), dtype=op.dtype, device=op.device)
    vectors = torch.as_tensor(vectors[:, order].copy(), dtype=op.dtype, device=op.device)
    products = op @ vectors
    residuals = (products - vectors * values).norm(dim=0)
    converged = converged and len(values) == k
    return EigenResult(
        values, vectors, residuals, op.num_matvecs - start, converged, "scipy", 1, vectors, products
    )


def eigenvalues(
    A: LinearOperator | torch.Tensor,
    k: int = 5,
    which: str = "largest",
    tol: float = 1e-6,
    max_matvecs: int | None = None,
    seed: int = 0,
    method: str = "lanczos",
    *,
    subspace_size: int | None = None,
    block_size: int = 1,
    min_subspace: int = 0,
) -> EigenResult:
    """The ``k`` algebraically largest or smallest eigenpairs of a symmetric operator.

    ``which="smallest"`` finds the most negative eigenvalues (saddle directions of a Hessian).

    ``method="lanczos"``: thick-restart Lanczos in torch on the operator's device (Wu & Simon,
    SIAM J. Matrix Anal. Appl. 2000). The basis ``V`` grows by ``block_size`` products at a
    time, each new block orthogonalized twice against it, up to ``m = subspace_size`` vectors
    (default ``max(2k + 1, 30, k + 2 block_size, min_subspace + block_size)``). After every
    block, Rayleigh-Ritz on
    ``V^T A V`` gives Ritz pairs whose residuals ``||A y - theta y||`` come from the stored
    products ``A V`` without extra ones. It stops when all ``k`` residuals are at most
    ``tol * max|theta|`` (``max|theta|`` estimates ``||A||_2``): then each eigenvalue is within
    ``tol * ||A||`` of the truth and, if a gap ``g`` separates it from the rest of the
    spectrum, within ``(tol * ||A||)^2 / g``. When the basis is full it keeps the best
    ``k + (m - k) // 2`` Ritz vectors and grows again. Memory: ``2 m d``. The result keeps the
    final search space and its products (``basis``, ``products``), so a trace estimate can
    deflate it without further products (``flatscope.trace(A, ..., deflate=result)``);
    ``min_subspace`` keeps the search growing after convergence until the space holds that
    many vectors, to give the deflation a larger subspace from the same products.

    ``method="scipy"``: ARPACK's ``eigsh`` on ``A.to_scipy()`` for cross-checking (its ``tol`` is
    relative to each eigenvalue); residuals cost ``k`` extra products.

    Args:
        max_matvecs: budget of products (default ``max(1000, 100 k)``); ``converged`` is False if
            it runs out first.
        seed: seeds the start vectors (and any restart after breakdown).
        block_size: products per expansion step. 1 (plain Lanczos) reached every tolerance in
            the fewest products on trained networks' Hessians, e.g. top-5 at ``tol=1e-3`` in
            12 products against 25 with blocks of 5 (``benchmarks/estimators.py --sections
            blocks``); larger blocks only pay where one product of ``b`` columns costs much
            less than ``b`` products (clustered eigenvalues, or accelerators).
        min_subspace: grow the search space to at least this many vectors before stopping.
    """
    op = as_symmetric_operator(A)
    d = op.shape[0]
    check_count("k", k)
    if k > d:
        raise ValueError(f"k={k} exceeds the dimension d={d}")
    check_choice("which", which, WHICH)
    check_choice("method", method, ("lanczos", "scipy"))
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol}")
    max_matvecs = check_count(
        "max_matvecs", max_matvecs if max_matvecs is not None else max(1000, 100 * k)
    )
    check_count("block_size", block_size)
    if method == "scipy":
        return _scipy_eigenpairs(op, k, which, tol, max_matvecs, seed)
    check_count("min_subspace", min_subspace, minimum=0)
    return _lanczos_eigenpairs(
        op, k, which, tol, max_matvecs, seed, subspace_size, block_size, min_subspace
    )


def power_iteration(
    A: LinearOperator | torch.Tensor,
    k: int = 5,
    tol: float = 1e-3,
    max_iter: int = 100,
    seed: int = 0,
) -> EigenResult:
    """Power iteration with deflation, the algorithm and stopping rule of PyHessian.

    For each of ``k`` eigenpairs in turn: start from a Gaussian vector; repeat
    ``v <- v`` orthogonalized against the pairs found so far and normalized, ``w = A v``,
    ``lambda = v^T w``, ``v <- w / ||w||``, until the Rayleigh quotient changes by less than
    ``tol * (|lambda_previous| + 1e-6)`` or ``max_iter`` products are spent.

    It converges to the eigenvalues of largest ``|lambda|`` (a large negative eigenvalue of an
    indefinite Hessian wins over a smaller positive one), at a rate set by the ratio of
    consecutive ``|lambda|``, and the stopping rule bounds the change per step, not the error:
    expect about ``tol`` relative accuracy at best. Each pair returned is the last iterate ``v``
    with its Rayleigh quotient ``v^T A v`` (PyHessian returns the previous quotient and the next
    iterate), so the residual ``||A v - lambda v||`` costs no extra product. ``converged`` says
    whether every pair stopped by the rule rather than by ``max_iter``. Values are in the order
    found, normally by decreasing ``|lambda|``.
    """
    op = as_symmetric_operator(A)
    d = op.shape[0]
    check_count("k", k)
    if k > d:
        raise ValueError(f"k={k} exceeds the dimension d={d}")
    check_count("max_iter", max_iter)
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol}")
    generator = seeded_generator(seed)
    start = op.num_matvecs
    found = torch.empty(d, 0, dtype=op.dtype, device=op.device)
    values, residuals, products, all_converged = [], [], [], True
    for _ in range(k):
        x = probes(generator, d, 1, "gaussian", op.dtype, op.device)[:, 0]
        previous, converged = None, False
        for _ in range(max_iter):
            v = project_out(x[:, None], found, passes=1)[:, 0]
            v = v / v.norm()
            w = op @ v
            value = float(v @ w)
            if previous is not None and abs(value - previous) < tol * (abs(previous) + 1e-6):
                converged = True
                break
            previous, x = value, w
        values.append(value)
        residuals.append(float((w - value * v).norm()))
        products.append(w)
        found = torch.cat([found, v[:, None]], dim=1)
        all_converged &= converged
    return EigenResult(
        torch.tensor(values, dtype=op.dtype, device=op.device),
        found,
        torch.tensor(residuals, dtype=op.dtype, device=op.device),
        op.num_matvecs - start,
        all_converged,
        "power_iteration",
        1,
        found,
        torch.stack(products, dim=1),
    )
