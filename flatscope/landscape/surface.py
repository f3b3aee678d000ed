"""Loss and accuracy on 1-D and 2-D grids around a point of parameter space.

A 1-D slice is ``f(alpha) = L(w + alpha d)`` and a 2-D surface ``f(alpha, beta) = L(w + alpha d1
+ beta d2)`` (Li, Xu, Taylor, Studer, Goldstein, "Visualizing the Loss Landscape of Neural Nets",
NeurIPS 2018), with ``L`` the mean loss over all of the data (as for the Hessian operator).
Grid points are evaluated several per forward pass (``torch.func.vmap`` over weight vectors,
see :class:`~flatscope.landscape.evaluation.LossEvaluator`); the model's tensors are never
written. Along a direction that moves buffers (an interpolation between two checkpoints moves
their BatchNorm running statistics, see
:func:`~flatscope.landscape.directions.interpolation_direction`) the buffers at ``alpha d`` are
``b + clamp(alpha, 0, 1) delta_b``: exact at both checkpoints, cheap, and held at the nearer
checkpoint's beyond them (no statistics were measured there, and running variances extrapolated
linearly turn negative, which makes the loss NaN). Results save to ``.npz`` with
their metadata as a JSON string, so figures can be redrawn without recomputing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from flatscope.io.landscape_file import LandscapeResult
from flatscope.landscape.directions import Direction
from flatscope.landscape.evaluation import LossEvaluator
from flatscope.objective import Objective

__all__ = ["LandscapeResult", "slice_1d", "surface_2d"]

Span = tuple[float, float]


def _as_direction(direction: Direction | torch.Tensor) -> Direction:
    if isinstance(direction, Direction):
        return direction
    if isinstance(direction, torch.Tensor) and direction.ndim == 1:
        return Direction(direction.detach(), "custom")
    raise TypeError(
        "a direction must be a flatscope Direction or a flat 1-D torch.Tensor, got "
        f"{type(direction).__name__}"
    )


def _axis(steps: int, span: Span, name: str) -> np.ndarray:
    if not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"{name} steps must be a positive integer, got {steps!r}")
    if len(span) != 2 or not span[0] <= span[1]:
        raise ValueError(f"{name} span must be (low, high) with low <= high, got {span!r}")
    return np.linspace(float(span[0]), float(span[1]), int(steps))


def _per_axis(value: Any, is_scalar: bool, name: str) -> tuple[Any, Any]:
    """``value`` for both axes, or a pair of per-axis values."""
    if is_scalar:
        return value, value
    if isinstance(value, Sequence) and len(value) == 2:
        return value[0], value[1]
    raise ValueError(f"{name} must be one value for both axes or a pair of per-axis values")


def _buffer_steps(objective: Objective, directions: list[Direction]) -> dict[str, torch.Tensor]:
    """``{name: (num_directions, *shape)}``: how far each buffer moves per unit of each
    direction's coefficient (zero for directions that leave it alone)."""
    names = sorted({name for direction in directions for name in direction.buffers})
    steps = {}
    for name in names:
        if name not in objective.fixed_tensors:
            raise ValueError(f"a direction moves {name!r}, which is not a buffer of the model")
        base = objective.fixed_tensors[name]
        steps[name] = torch.stack(
            [
                direction.buffers[name].to(base.device, base.dtype)
                if name in direction.buffers
                else torch.zeros_like(base)
                for direction in directions
            ]
        )
    return steps


def _grid(
    objective: Objective,
    directions: list[Direction],
    axes: list[np.ndarray],
    *,
    origin: torch.Tensor | None,
    bn_recompute: bool,
    points_per_pass: int | None,
    data_spec: str | None,
    label: str | None,
    trajectory: np.ndarray | None,
) -> LandscapeResult:
    if not isinstance(objective, Objective):
        raise TypeError(f"expected a flatscope Objective, got {type(objective).__name__}")
    evaluator = LossEvaluator(objective, points_per_pass=points_per_pass, bn_recompute=bn_recompute)
    d = evaluator.dim
    for direction in directions:
        if direction.vector.shape != (d,):
            raise ValueError(
                f"a {direction.kind} direction has shape {tuple(direction.vector.shape)} but the "
                f"selected parameters have {d} entries; build directions with the same params"
            )
    if origin is None:
        center = evaluator.origin
    elif origin.shape == (d,):
        center = origin.to(evaluator.device, evaluator.dtype)
    else:
        raise ValueError(f"origin must be a flat vector of {d} entries, got {tuple(origin.shape)}")
    D = torch.stack([dir_.vector.to(evaluator.device, evaluator.dtype) for dir_ in directions])
    buffer_steps = {} if bn_recompute else _buffer_steps(objective, directions)
    mesh = np.meshgrid(*axes, indexing="ij")
    coefficients = torch.as_tensor(
        np.stack([m.reshape(-1) for m in mesh], axis=1), dtype=evaluator.dtype
    ).to(evaluator.device)
    losses, accuracies = [], []
    for rows in evaluator.chunks(coefficients.shape[0]):
        C = coefficients[rows]
        buffers = {
            name: objective.fixed_tensors[name]
            + torch.tensordot(C.clamp(0, 1).to(step.dtype), step, dims=1)
            for name, step in buffer_steps.items()
        }
        loss, accuracy = evaluator.evaluate(center + C @ D, buffers)
        losses.append(loss)
        accuracies.append(accuracy)
    shape = tuple(len(a) for a in axes)
    loss = torch.cat(losses).cpu().numpy().reshape(shape)
    accuracy = None
    if accuracies[0] is not None:
        accuracy = torch.cat(accuracies).cpu().numpy().reshape(shape)
    metadata = {
        "dims": len(axes),
        "directions": [dir_.metadata() for dir_ in directions],
        "data_spec": data_spec,
        "label": label,
        "num_samples": evaluator.num_samples,
        "num_params": d,
        "param_names": objective.param_names,
        "dtype": str(evaluator.dtype).replace("torch.", ""),
        "bn_recompute": bn_recompute,
        "interpolated_buffers": sorted(buffer_steps),
        "points_per_pass": evaluator.points_per_pass,
        "origin_norm": float(center.norm()),
    }
    traj = None if trajectory is None else np.asarray(trajectory, dtype=np.float64)
    return LandscapeResult(tuple(axes), loss, accuracy, metadata, traj)


def slice_1d(
    objective: Objective,
    direction: Direction | torch.Tensor,
    *,
    steps: int = 51,
    span: Span = (-1.0, 1.0),
    origin: torch.Tensor | None = None,
    bn_recompute: bool = False,
    points_per_pass: int | None = None,
    data_spec: str | None = None,
    label: str | None = None,
) -> LandscapeResult:
    """Loss and accuracy along ``origin + alpha * direction`` for ``steps`` values of ``alpha``.

    Args:
        objective: the :class:`~flatscope.objective.Objective` (model, loss, data, parameter
            selection, device, dtype); the loss is its mean over all of the data, in ``eval()``
            mode (the model's modes are restored afterwards).
        direction: a :class:`~flatscope.landscape.directions.Direction` or a flat tensor. A
            direction that moves buffers (an interpolation) moves them by ``alpha`` too.
        steps, span: ``alpha`` runs over ``numpy.linspace(span[0], span[1], steps)``.
        origin: the flat weights at ``alpha = 0``; ``None`` for the objective's weights.
        bn_recompute: re-estimate BatchNorm running statistics over the data at every point
            (instead of keeping, or interpolating, the stored ones).
        points_per_pass: grid points per vectorised forward pass (``1``: one at a time).
        data_spec, label: recorded in the metadata (the data spec string, a legend label).
    """
    return _grid(
        objective,
        [_as_direction(direction)],
        [_axis(steps, span, "slice")],
        origin=origin,
        bn_recompute=bn_recompute,
        points_per_pass=points_per_pass,
        data_spec=data_spec,
        label=label,
        trajectory=None,
    )


def surface_2d(
    objective: Objective,
    d1: Direction | torch.Tensor,
    d2: Direction | torch.Tensor,
    *,
    steps: int | tuple[int, int] = 21,
    span: Span | tuple[Span, Span] = (-1.0, 1.0),
    origin: torch.Tensor | None = None,
    bn_recompute: bool = False,
    points_per_pass: int | None = None,
    data_spec: str | None = None,
    label: str | None = None,
    trajectory: np.ndarray | None = None,
) -> LandscapeResult:
    """Loss and accuracy on the grid ``origin + alpha * d1 + beta * d2``.

    Arguments as for :func:`slice_1d`; ``steps`` and ``span`` are one value for both axes or a
    pair of per-axis values. ``trajectory`` (``(T, 2)`` coordinates in the plane, for example
    :attr:`PCADirections.trajectory`) is stored with the result for plotting.
    """
    steps_a, steps_b = _per_axis(steps, isinstance(steps, (int, np.integer)), "steps")
    span_a, span_b = _per_axis(span, np.ndim(span) == 1, "span")
    if trajectory is not None and np.shape(trajectory)[-1:] != (2,):
        raise ValueError(f"trajectory must have shape (T, 2), got {np.shape(trajectory)}")
    return _grid(
        objective,
        [_as_direction(d1), _as_direction(d2)],
        [_axis(steps_a, span_a, "first-axis"), _axis(steps_b, span_b, "second-axis")],
        origin=origin,
        bn_recompute=bn_recompute,
        points_per_pass=points_per_pass,
        data_spec=data_spec,
        label=label,
        trajectory=trajectory,
    )
