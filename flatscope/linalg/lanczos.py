"""The Lanczos process, one chain or several side by side, with or without reorthogonalization.

Starting from a unit vector ``v_1``, Lanczos builds an orthonormal basis ``V_n`` of the Krylov
space ``span{v_1, A v_1, ..., A^{n-1} v_1}`` in which ``V_n^T A V_n = T_n`` is tridiagonal:

    A v_j = beta_{j-1} v_{j-1} + alpha_j v_j + beta_j v_{j+1}.

Each step computes ``u = A v_j - beta_{j-1} v_{j-1}``, then ``alpha_j = v_j^T u`` and
``w = u - alpha_j v_j`` (the ordering Paige, J. Inst. Math. Appl. 1972, showed to be the stable
one). In finite precision the recurrence loses orthogonality as Ritz values converge and then
produces spurious copies of them (Paige 1976). With ``reorthogonalize=True`` each ``w`` is
orthogonalized against the whole basis twice (classical Gram-Schmidt twice is enough; Giraud et
al. 2005), which keeps ``V_n`` orthonormal to working precision, as eigenvalue computations
need. Without it only three vectors per chain are kept: the copies share the Gauss quadrature
weight of the eigenvalue they copy, so quadrature-based estimates (spectral densities, moments)
stay accurate (Greenbaum, Linear Algebra Appl. 1989; Knizhnerman 1996; Chen, Trogdon, Ubaru,
ICML 2021). If ``beta_j`` falls to rounding level (see
:data:`~flatscope.linalg._orthogonalize.INVARIANT_SUBSPACE_RTOL`) the Krylov space is invariant
("breakdown"): the chain stops early and its Ritz values are exact eigenvalues of ``A``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from flatscope.linalg._common import as_symmetric_operator, check_count, probes, seeded_generator
from flatscope.linalg._orthogonalize import INVARIANT_SUBSPACE_RTOL, project_out
from flatscope.operators.base import LinearOperator

__all__ = ["LanczosResult", "lanczos", "lanczos_batched"]


@dataclass
class LanczosResult:
    """One Lanczos chain.

    Attributes:
        alpha: ``(n,)`` diagonal of ``T_n``.
        beta: ``(n - 1,)`` off-diagonal of ``T_n``.
        residual_norm: ``beta_n``, the norm of the part of ``A v_n`` outside the basis (the
            Ritz pair ``(theta, V_n s)`` has residual ``residual_norm * |s_n|``).
        basis: ``(d, n)`` orthonormal Lanczos vectors, or ``None`` unless requested.
        num_matvecs: products spent on this chain (``n``).
        breakdown: whether the chain stopped early on an invariant subspace.
    """

    alpha: torch.Tensor
    beta: torch.Tensor
    residual_norm: float
    basis: torch.Tensor | None
    num_matvecs: int
    breakdown: bool

    def tridiagonal(self) -> torch.Tensor:
        """The ``(n, n)`` tridiagonal matrix ``T_n``."""
        return torch.diag(self.alpha) + torch.diag(self.beta, 1) + torch.diag(self.beta, -1)

    def ritz(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Eigenvalues of ``T_n`` (ascending) and its orthonormal eigenvectors as columns."""
        return torch.linalg.eigh(self.tridiagonal())

    def to_dict(self) -> dict:
        """JSON-friendly plain Python types (without the basis)."""
        return {
            "alpha": self.alpha.tolist(),
            "beta": self.beta.tolist(),
            "residual_norm": self.residual_norm,
            "num_matvecs": self.num_matvecs,
            "breakdown": self.breakdown,
        }


def _start_vectors(
    op: LinearOperator, V0: torch.Tensor | None, num_vectors: int, seed: int, dtype: torch.dtype
) -> torch.Tensor:
    d = op.shape[0]
    if V0 is None:
        V0 = probes(seeded_generator(seed), d, num_vectors, "gaussian", dtype, op.device)
    elif not isinstance(V0, torch.Tensor) or V0.ndim != 2 or V0.shape[0] != d:
        shape = tuple(V0.shape) if isinstance(V0, torch.Tensor) else type(V0).__name__
        raise ValueError(f"start vectors must be a ({d}, p) tensor, got {shape}")
    norms = V0.norm(dim=0)
    if not bool((norms > 0).all()) or not bool(norms.isfinite().all()):
        raise ValueError("start vectors must be finite and nonzero")
    return (V0 / norms).to(dtype=dtype, device=op.device)


def lanczos_batched(
    A: LinearOperator | torch.Tensor,
    num_steps: int,
    V0: torch.Tensor | None = None,
    num_vectors: int = 1,
    seed: int = 0,
    return_basis: bool = False,
    reorthogonalize: bool = True,
    dtype: torch.dtype | None = None,
) -> list[LanczosResult]:
    """Run independent Lanczos chains side by side, one ``A @ V`` per step for all of them.

    Args:
        A: symmetric operator or dense matrix.
        num_steps: steps per chain (at most ``d``; a chain stops earlier on breakdown).
        V0: ``(d, p)`` start vectors (normalized here); ``None`` draws ``num_vectors``
            Gaussian ones from ``seed``.
        return_basis: keep each chain's ``(d, n)`` basis in the result.
        reorthogonalize: full reorthogonalization (memory ``p * n * d``, work ``4 p n^2 d``
            over ``n`` steps); without it only the three-term recurrence runs (memory ``3 p d``),
            enough for quadrature (see the module docs) but not for eigenvectors.
        dtype: the dtype of the recurrence (``torch.float64`` for spectral densities); products
            still run in the operator's dtype.

    Returns:
        One :class:`LanczosResult` per chain.
    """
    op = as_symmetric_operator(A)
    d = op.shape[0]
    num_steps = min(check_count("num_steps", num_steps), d)
    check_count("num_vectors", num_vectors)
    dtype = op.dtype if dtype is None else dtype
    # One row per running chain; a chain that breaks down is dropped from these rows, so the
    # working tensors stay contiguous and need no gather or scatter.
    V = _start_vectors(op, V0, num_vectors, seed, dtype).mT.contiguous()
    previous = torch.zeros_like(V)
    p = V.shape[0]
    chains = list(range(p))
    eps = max(torch.finfo(dtype).eps, torch.finfo(op.dtype).eps)
    keep = reorthogonalize or return_basis
    basis = torch.empty(p, num_steps, d, dtype=dtype, device=op.device) if keep else None
    alpha = torch.zeros(p, num_steps, dtype=dtype, device=op.device)
    beta = torch.zeros(p, num_steps, dtype=dtype, device=op.device)
    anorm = torch.zeros(p, dtype=dtype, device=op.device)
    length = [0] * p
    broke = [False] * p

    for j in range(num_steps):
        rows = torch.tensor(chains, device=op.device)
        if keep:
            basis[rows, j] = V
        # In place where possible: each step then touches every d-vector a few times only.
        W = (op @ V.mT.to(op.dtype)).mT.to(dtype).contiguous()
        if j > 0:
            W.addcmul_(beta[rows, j - 1, None], previous, value=-1)
        a = (V * W).sum(1)
        W.addcmul_(a[:, None], V, value=-1)
        if reorthogonalize:
            # One chain at a time: as a batched product (bmm with one column) the same matrix-
            # vector products run about 7x slower on CPUs.
            for i, c in enumerate(chains):
                W[i] = project_out(W[i, :, None], basis[c, : j + 1].mT)[:, 0]
        b = W.norm(dim=1)
        alpha[rows, j], beta[rows, j] = a, b
        previous_beta = beta[rows, j - 1] if j > 0 else torch.zeros_like(b)
        anorm[rows] = torch.maximum(anorm[rows], (a**2 + b**2 + previous_beta**2).sqrt())
        stopped = (b <= INVARIANT_SUBSPACE_RTOL * eps * anorm[rows]).tolist()
        for i, chain in enumerate(chains):
            length[chain] = j + 1
            broke[chain] = stopped[i] and j + 1 < d
        if any(stopped):
            going = [i for i, stop in enumerate(stopped) if not stop]
            if not going:
                break
            chains = [chains[i] for i in going]
            V, W, b = V[going], W[going], b[going]
        previous, V = V, W.div_(b[:, None])

    results = []
    for chain in range(p):
        n = length[chain]
        results.append(
            LanczosResult(
                alpha=alpha[chain, :n].clone(),
                beta=beta[chain, : n - 1].clone(),
                residual_norm=float(beta[chain, n - 1]),
                basis=basis[chain, :n].mT.clone() if return_basis else None,
                num_matvecs=n,
                breakdown=broke[chain],
            )
        )
    return results


def lanczos(
    A: LinearOperator | torch.Tensor,
    num_steps: int,
    v0: torch.Tensor | None = None,
    seed: int = 0,
    return_basis: bool = False,
    reorthogonalize: bool = True,
    dtype: torch.dtype | None = None,
) -> LanczosResult:
    """Lanczos from ``v0`` (or a seeded Gaussian vector), by default with full
    reorthogonalization.

    Runs on the operator's device; ``dtype`` sets the recurrence's dtype (default the
    operator's). See :func:`lanczos_batched` for the arguments.
    """
    if v0 is not None and (not isinstance(v0, torch.Tensor) or v0.ndim != 1):
        raise ValueError("v0 must be a 1-D tensor of length d")
    V0 = None if v0 is None else v0[:, None]
    return lanczos_batched(A, num_steps, V0, 1, seed, return_basis, reorthogonalize, dtype)[0]
