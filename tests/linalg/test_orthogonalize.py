"""The shared Gram-Schmidt helper against exact projections."""

from __future__ import annotations

import torch

from flatscope.linalg._orthogonalize import project_out
from tests.linalg._spectra import F64


def _basis(d: int, n: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(d, n, generator=generator, dtype=F64)).Q


def test_one_pass_is_the_orthogonal_projection():
    Q = _basis(30, 5, 0)
    W = torch.randn(30, 3, generator=torch.Generator().manual_seed(1), dtype=F64)
    expected = (torch.eye(30, dtype=F64) - Q @ Q.mT) @ W
    torch.testing.assert_close(project_out(W, Q, passes=1), expected, rtol=0, atol=1e-14)


def test_two_passes_orthogonalize_a_nearly_dependent_vector_to_working_precision():
    # w lies in span(Q) up to 1e-9 of its norm: one pass leaves a part along Q of order
    # eps / 1e-9 relative to what remains, the second pass removes it.
    Q = _basis(200, 20, 2)
    noise = torch.randn(200, 1, generator=torch.Generator().manual_seed(3), dtype=F64)
    w = Q @ torch.ones(20, 1, dtype=F64) + 1e-9 * noise
    once, twice = project_out(w, Q, passes=1), project_out(w, Q)
    along = (Q.mT @ once).norm() / once.norm()
    assert float(along) > 1e-9
    assert float((Q.mT @ twice).norm() / twice.norm()) < 1e-14


def test_batched_bases_project_each_chain_on_its_own_basis():
    bases = torch.stack([_basis(40, 4, 4), _basis(40, 4, 5)])
    W = torch.randn(2, 40, 2, generator=torch.Generator().manual_seed(6), dtype=F64)
    out = project_out(W, bases)
    for i in range(2):
        torch.testing.assert_close(out[i], project_out(W[i], bases[i]), rtol=0, atol=1e-14)
