"""Directions in a model's flat parameter space along which the loss landscape is drawn.

Four kinds, each a :class:`Direction` (a flat vector in the order of
:func:`flatscope.operators.params.select_parameters`, with JSON-ready metadata):

- ``random``: Gaussian directions normalized per filter, per layer or globally (Li, Xu, Taylor,
  Studer, Goldstein, "Visualizing the Loss Landscape of Neural Nets", NeurIPS 2018);
- ``eigen``: Hessian eigenvectors from :func:`flatscope.linalg.eigen.eigenvalues`, so a slice
  shows the sharpest (or flattest) direction;
- ``pca``: the two principal directions of an optimization trajectory relative to its final
  weights (Li et al. 2018, section 7), with the explained variance and the projected path;
- ``interpolation``: the straight line from one set of weights to another (Goodfellow, Vinyals,
  Saxe, "Qualitatively characterizing neural network optimization problems", ICLR 2015; linear
  mode connectivity, Frankle et al., ICML 2020). With the two models' buffers it also moves the
  BatchNorm running statistics along the line, so both ends are the checkpoints as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from flatscope.linalg.eigen import eigenvalues
from flatscope.objective import Objective
from flatscope.operators.hessian import HessianOperator
from flatscope.params import flatten, select_parameters

__all__ = [
    "Direction",
    "PCADirections",
    "flat_weights",
    "floating_buffers",
    "random_directions",
    "eigen_directions",
    "pca_directions",
    "interpolation_direction",
]

NORMALIZATIONS = ("filter", "layer", "global")


@dataclass(frozen=True)
class Direction:
    """A flat direction vector ``(d,)`` with its kind and JSON-ready metadata ``info``.

    ``buffers`` optionally says how the model's floating-point buffers move along the direction
    (``{name: change per unit of the coefficient}``): an interpolation between two checkpoints
    moves their BatchNorm running statistics; other directions leave the buffers alone.
    """

    vector: torch.Tensor
    kind: str
    info: dict[str, Any] = field(default_factory=dict)
    buffers: dict[str, torch.Tensor] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        """``{"kind", "norm", **info}``: what a saved landscape records about the direction."""
        return {"kind": self.kind, "norm": float(self.vector.norm()), **self.info}


@dataclass(frozen=True)
class PCADirections:
    """The top two principal directions of a trajectory around its final weights.

    Attributes:
        directions: two orthonormal :class:`Direction` objects of kind ``"pca"``.
        explained_variance_ratio: ``(2,)``, the share of ``sum_i ||w_i - w_final||^2`` that
            each direction captures.
        trajectory: ``(T, 2)``, the coordinates of each ``w_i - w_final`` in the plane.
    """

    directions: tuple[Direction, Direction]
    explained_variance_ratio: np.ndarray
    trajectory: np.ndarray


def flat_weights(model: nn.Module, params: str | Sequence[str] | None = None) -> torch.Tensor:
    """The selected parameters of ``model`` as one detached flat vector (a copy)."""
    return flatten(p.detach() for p in select_parameters(model, params).values()).clone()


def floating_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    """The floating-point buffers of ``model`` (BatchNorm running statistics, ...), detached
    copies by name; integer buffers such as ``num_batches_tracked`` are left out."""
    return {name: b.detach().clone() for name, b in model.named_buffers() if b.is_floating_point()}


def _sign_convention(vectors: torch.Tensor) -> torch.Tensor:
    """Signs ``(k,)`` that make the largest-magnitude entry of each row of ``vectors`` positive
    (a fixed convention for eigen- and singular vectors, whose sign is otherwise arbitrary)."""
    rows = torch.arange(vectors.shape[0], device=vectors.device)
    signs = torch.sign(vectors[rows, vectors.abs().argmax(dim=1)])
    return torch.where(signs == 0, torch.ones_like(signs), signs)


# --------------------------------------------------------------------- random directions
def _unit_ids(
    weights: dict[str, torch.Tensor], normalization: str, ignore_1d: bool
) -> tuple[torch.Tensor, int]:
    """Label each flat coordinate with its normalization unit.

    Units are filters (slices along dim 0 of a parameter with two or more dimensions: output
    channels of a convolution, rows of a linear layer), whole parameters (``"layer"``, and
    1-D parameters under ``"filter"``) or everything (``"global"``). Ignored coordinates get the
    extra label ``num_units``. Returns ``(ids, num_units)``.
    """
    ids, num_units = [], 0
    for w in weights.values():
        n = w.numel()
        if w.ndim <= 1 and ignore_1d:
            ids.append(torch.full((n,), -1, dtype=torch.long))
        elif normalization == "global":
            ids.append(torch.zeros(n, dtype=torch.long))
            num_units = 1
        elif normalization == "filter" and w.ndim >= 2:
            filters = w.shape[0]
            ids.append(torch.arange(filters).repeat_interleave(n // filters) + num_units)
            num_units += filters
        else:
            ids.append(torch.full((n,), num_units, dtype=torch.long))
            num_units += 1
    flat = torch.cat(ids)
    return torch.where(flat < 0, num_units, flat), num_units


def _unit_dot(x: torch.Tensor, y: torch.Tensor, ids: torch.Tensor, num_units: int) -> torch.Tensor:
    """Per-unit inner products ``<x_u, y_u>`` (the last entry collects ignored coordinates)."""
    return torch.zeros(num_units + 1, dtype=x.dtype, device=x.device).index_add_(0, ids, x * y)


def _normalize(d: torch.Tensor, w: torch.Tensor, ids: torch.Tensor, num_units: int) -> torch.Tensor:
    """Scale each unit of ``d`` to the norm of the same unit of ``w``; zero ignored ones."""
    target = _unit_dot(w, w, ids, num_units).sqrt()
    current = _unit_dot(d, d, ids, num_units).sqrt()
    scale = torch.where(current > 0, target / current, torch.zeros_like(current))
    scale[num_units] = 0
    return d * scale[ids]


def _project_out(
    d: torch.Tensor, basis: list[torch.Tensor], ids: torch.Tensor, num_units: int
) -> torch.Tensor:
    """Remove from each unit of ``d`` its components along the same unit of each basis vector
    (modified Gram-Schmidt; the basis vectors must be unit-wise orthogonal to each other)."""
    for b in basis:
        bb = _unit_dot(b, b, ids, num_units)
        coef = torch.where(bb > 0, _unit_dot(d, b, ids, num_units) / bb, torch.zeros_like(bb))
        d = d - coef[ids] * b
    return d


def random_directions(
    model: nn.Module,
    num: int = 2,
    *,
    params: str | Sequence[str] | None = None,
    normalization: str = "filter",
    ignore_1d: bool = True,
    orthogonalize: bool = False,
    orthogonal_to: Sequence[torch.Tensor] = (),
    seed: int = 0,
) -> list[Direction]:
    """Random Gaussian directions, normalized to the scale of the model's weights.

    Each direction starts as ``z ~ N(0, I)`` and is rescaled unit by unit, ``d_u = z_u ||w_u|| /
    ||z_u||``, where a unit is one filter (``"filter"``, Li et al. 2018: each output channel of a
    convolution weight, each row of a linear weight), one parameter tensor (``"layer"``) or all
    selected parameters (``"global"``). Filter normalization removes the scale invariance of
    ReLU networks with batch normalization, so landscapes of different networks compare.

    Args:
        model: the network, at the weights the landscape is drawn around.
        num: how many directions.
        params: ``None`` for every trainable parameter, or names / globs.
        normalization: ``"filter"``, ``"layer"`` or ``"global"``.
        ignore_1d: zero the direction on 1-D parameters (biases, BatchNorm and LayerNorm weights
            and biases), as Li et al. do; with ``False`` each such parameter is one unit and is
            normalized like a layer.
        orthogonalize: make each direction orthogonal to the ones before it, and to
            ``orthogonal_to``, unit by unit (so the directions stay normalized and are also
            orthogonal as whole vectors).
        orthogonal_to: flat vectors to be orthogonal to (for example an interpolation
            direction); non-empty implies ``orthogonalize``.
        seed: seeds a ``torch.Generator``; the same seed gives the same directions.

    Returns:
        ``num`` directions of kind ``"random"`` on the device and dtype of the parameters.
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    if not isinstance(num, int) or num < 1:
        raise ValueError(f"num must be a positive integer, got {num!r}")
    weights = {name: p.detach() for name, p in select_parameters(model, params).items()}
    w = flatten(weights.values())
    ids, num_units = _unit_ids(weights, normalization, ignore_1d)
    ids = ids.to(w.device)
    if num_units == 0:
        raise ValueError(
            "every selected parameter is 1-D (biases, normalization layers) and ignore_1d=True "
            "zeroes them; pass ignore_1d=False or select weight matrices / convolution kernels"
        )
    basis = []
    for vector in orthogonal_to:
        if vector.shape != w.shape:
            raise ValueError(
                f"orthogonal_to holds a vector of shape {tuple(vector.shape)}; the selected "
                f"parameters have {w.numel()} entries"
            )
        basis.append(_project_out(vector.to(w.device, w.dtype), basis, ids, num_units))
    orthogonalize = orthogonalize or bool(basis)
    generator = torch.Generator().manual_seed(seed)
    directions = []
    for index in range(num):
        d = torch.randn(w.numel(), generator=generator, dtype=w.dtype).to(w.device)
        if orthogonalize:
            d = _project_out(d, basis, ids, num_units)
        d = _normalize(d, w, ids, num_units)
        basis.append(d)
        info = {
            "seed": seed,
            "index": index,
            "normalization": normalization,
            "ignore_1d": ignore_1d,
            "orthogonalized": orthogonalize,
        }
        directions.append(Direction(d, "random", info))
    return directions


# --------------------------------------------------------------------- Hessian eigenvectors
def eigen_directions(
    objective: Objective,
    k: int = 2,
    *,
    which: str = "largest",
    tol: float = 1e-6,
    seed: int = 0,
) -> list[Direction]:
    """Unit Hessian eigenvectors of the objective (the mean loss over its data), sharpest first.

    The Hessian is :class:`~flatscope.operators.hessian.HessianOperator` ``(objective)``; its
    ``k`` largest (or smallest) eigenpairs come from :func:`flatscope.linalg.eigen.eigenvalues`.
    Along a unit eigenvector ``v`` with eigenvalue ``lambda`` the loss near a minimum is
    ``L(w + t v) ~ L(w) + lambda t^2 / 2``. Each direction's ``info`` holds its ``eigenvalue``
    and residual ``||H v - lambda v||``. Signs follow a fixed convention (largest-magnitude
    entry positive).
    """
    result = eigenvalues(HessianOperator(objective), k=k, which=which, tol=tol, seed=seed)
    values = torch.as_tensor(result.values)
    residuals = torch.as_tensor(result.residuals)
    order = torch.argsort(values, descending=which == "largest")
    vectors = result.vectors[:, order].T
    vectors = vectors * _sign_convention(vectors)[:, None]
    return [
        Direction(
            vectors[i],
            "eigen",
            {
                "eigenvalue": float(values[j]),
                "residual": float(residuals[j]),
                "which": which,
                "index": i,
                "seed": seed,
                "tol": tol,
            },
        )
        for i, j in enumerate(order.tolist())
    ]


# --------------------------------------------------------------------- trajectory PCA
def pca_directions(trajectory: Sequence[torch.Tensor], final: torch.Tensor) -> PCADirections:
    """Principal directions of ``M = [w_1 - w_final; ...; w_T - w_final]`` (Li et al. 2018).

    With the thin SVD ``M = U S V^T`` the directions are the first two rows of ``V^T``; the
    trajectory's coordinates in their plane are ``M V[:, :2] = U[:, :2] S[:2]`` and the explained
    variance ratios are ``S_k^2 / sum_j S_j^2``. ``M`` is not mean-centred: the plane passes
    through ``w_final``, the centre of the landscape drawn on it, so the projected path is exact
    up to the unexplained part.

    Args:
        trajectory: flat weight vectors of the checkpoints (the final one may be included).
        final: the flat final weights.
    """
    if len(trajectory) < 2:
        raise ValueError(
            f"PCA directions need at least 2 checkpoints besides the final weights, got "
            f"{len(trajectory)}"
        )
    for w in trajectory:
        if w.shape != final.shape:
            raise ValueError(
                f"trajectory holds a vector of shape {tuple(w.shape)} but the final weights "
                f"have shape {tuple(final.shape)}; flatten every checkpoint with the same params"
            )
    M = torch.stack([w.to(final.device, final.dtype) - final for w in trajectory])
    U, S, Vh = torch.linalg.svd(M, full_matrices=False)
    if S.numel() < 2 or S[1] <= S[0] * torch.finfo(S.dtype).eps * max(M.shape):
        raise ValueError(
            "the trajectory spans fewer than 2 directions around the final weights (identical "
            "checkpoints?); PCA needs checkpoints that move in at least two directions"
        )
    signs = _sign_convention(Vh[:2])
    top = Vh[:2] * signs[:, None]
    coords = U[:, :2] * (S[:2] * signs)
    ratios = (S[:2] ** 2 / (S**2).sum()).cpu().numpy()
    directions = tuple(
        Direction(top[i], "pca", {"index": i, "explained_variance_ratio": float(ratios[i])})
        for i in range(2)
    )
    return PCADirections(directions, ratios, coords.detach().cpu().numpy())


# --------------------------------------------------------------------- interpolation
def interpolation_direction(
    start: torch.Tensor,
    end: torch.Tensor,
    *,
    buffers: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]] | None = None,
    labels: tuple[str, str] | None = None,
) -> Direction:
    """The direction ``end - start`` of the straight line between two weight vectors.

    A slice along it centred at ``origin=start`` passes through ``start`` at ``alpha = 0`` and
    ``end`` at ``alpha = 1``; a span such as ``(-0.25, 1.25)`` extends the segment on both
    sides. For a plane, add ``random_directions(model, 1, orthogonal_to=[d.vector])``.

    Args:
        start, end: the flat weights of the two end points.
        buffers: the floating-point buffers of the two models (:func:`floating_buffers`); the
            direction then moves each buffer that differs by ``alpha (end - start)`` too, so
            that BatchNorm running statistics go with the weights and the loss at ``alpha = 1``
            is the second model's own loss (with the first model's statistics it is not).
        labels: names of the two end points (checkpoint paths, say), recorded as the
            direction's ``start`` and ``end`` for figures.
    """
    if start.shape != end.shape:
        raise ValueError(
            f"start and end have shapes {tuple(start.shape)} and {tuple(end.shape)}; flatten "
            "both checkpoints with the same parameter selection"
        )
    vector = end.to(start.device, start.dtype) - start
    steps = {}
    if buffers is not None:
        first, second = buffers
        if first.keys() != second.keys():
            raise ValueError("the two models have different buffers; are they one architecture?")
        for name, b in first.items():
            step = second[name].to(b.device, b.dtype) - b
            if step.shape != b.shape:
                raise ValueError(f"buffer {name!r} has different shapes in the two models")
            if torch.count_nonzero(step):
                steps[name] = step
    info: dict[str, Any] = {"distance": float(vector.norm())}
    if labels is not None:
        info["start"], info["end"] = (str(label) for label in labels)
    return Direction(vector, "interpolation", info, steps)
