"""``flatscope landscape CKPT [CKPT ...]``: loss slices and surfaces around checkpoints.

Argument parsing and file writing only: directions come from :mod:`flatscope.landscape.directions`,
grids from :func:`flatscope.landscape.slice_1d` / :func:`~flatscope.landscape.surface_2d`, figures
from :mod:`flatscope.plotting.landscape`. Checkpoints, models, data and loss are read with the
options and rules of ``flatscope analyze`` (:func:`flatscope.cli.analyze.add_analysis_options`).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run", "parse_directions"]

HELP = "loss along 1-D slices or on 2-D planes around checkpoints, with figures"
DIRECTION_KINDS = ("random", "eigen", "pca:RUN_DIR", "interp:CKPT2")
DEFAULT_RESOLUTION = {1: 51, 2: 21}
DEFAULT_RANGE = 1.0
MAX_RANGE = 1e6
RESOLUTION_LIMITS = (2, 1001)
DEFAULT_INTERP_RANGE = 0.25
PCA_MARGIN = 1.2  # the default pca range covers the projected path with this margin

EPILOG = """\
directions (the plane or line is centred on each CKPT):
  random        Gaussian, filter-normalized (Li et al. 2018); seeded by --seed
  eigen         top Hessian eigenvectors (unit norm), sharpest first
  pca:RUN_DIR   principal directions of RUN_DIR's checkpoints around CKPT (unit norm); on a
                plane the projected trajectory is drawn; default range covers it
  interp:CKPT2  the line from CKPT (alpha=0) to CKPT2 (alpha=1), alpha in [-A, 1+A]
                (default A=0.25); with --dims 2 a random direction orthogonal to it

Writes OUT/<ckpt>-<kind>-<dims>d.npz (reload with LandscapeResult.load_npz) and PNG+PDF figures:
1-D: slice-<kind> (every CKPT on one axis); 2-D: <ckpt>-<kind>-contour, <ckpt>-<kind>-surface
(every CKPT on one colour scale).

example:
  flatscope landscape runs/fsgld/final.pt --directions pca:runs/fsgld --dims 2
  flatscope landscape runs/sgd/final.pt runs/fsgld/final.pt --directions random
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``flatscope landscape``."""
    from flatscope.cli.analyze import add_analysis_options

    parser = subparsers.add_parser(
        "landscape",
        help=HELP,
        description=HELP + ".",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoints", nargs="+", metavar="CKPT", help="checkpoint files")
    grid = parser.add_argument_group("landscape")
    grid.add_argument(
        "--directions",
        default="random",
        metavar="KIND",
        help="random, eigen, pca:RUN_DIR or interp:CKPT2 (default random)",
    )
    grid.add_argument("--dims", type=int, choices=(1, 2), default=1, help="1 or 2 (default 1)")
    grid.add_argument(
        "--range",
        type=float,
        metavar="A",
        help=f"coefficients in [-A, A], 0 < A <= {MAX_RANGE:g} (default {DEFAULT_RANGE}; see "
        "below for pca and interp)",
    )
    low, high = RESOLUTION_LIMITS
    grid.add_argument(
        "--resolution",
        type=int,
        metavar="N",
        help=f"points per axis, {low} to {high} (default 51 in 1-D, 21 in 2-D)",
    )
    grid.add_argument("--out", metavar="DIR", help="output directory (./<CKPT name>-landscape)")
    add_analysis_options(parser, metrics=(), extra=("eig_tol",))
    parser.set_defaults(run=run)


@dataclass(frozen=True)
class _Directions:
    """The directions of one checkpoint's landscape, the coefficient span of each axis and
    the projected trajectory (PCA planes), with a one-line description for the summary."""

    directions: list[Any]
    spans: list[tuple[float, float]]
    trajectory: Any
    note: str


def parse_directions(text: str) -> tuple[str, str | None]:
    """``"random"`` -> ``("random", None)``, ``"pca:runs/x"`` -> ``("pca", "runs/x")``, ...

    Raises:
        FlatscopeError: an unknown kind, a missing argument, or an argument given to a kind
            that takes none.
    """
    from flatscope.errors import FlatscopeError

    kind, sep, target = text.partition(":")
    takes_target = {"random": False, "eigen": False, "pca": True, "interp": True}
    if kind not in takes_target or takes_target[kind] != bool(target) or (sep and not target):
        raise FlatscopeError(
            f"--directions must be one of {', '.join(DIRECTION_KINDS)}, got {text!r}"
        )
    return kind, target or None


def _check_grid(args: argparse.Namespace) -> tuple[int, float | None]:
    from flatscope.errors import FlatscopeError

    resolution = DEFAULT_RESOLUTION[args.dims] if args.resolution is None else args.resolution
    low, high = RESOLUTION_LIMITS
    if not low <= resolution <= high:
        raise FlatscopeError(
            f"--resolution must be {low} to {high} points per axis, got {resolution}"
        )
    if args.range is not None and not 0 < args.range <= MAX_RANGE:
        raise FlatscopeError(
            f"--range must be a positive finite number of at most {MAX_RANGE:g}, got {args.range}"
        )
    return resolution, args.range


def _check_finite(label: str, result: Any) -> None:
    """Refuse a grid whose loss overflowed: its figures would be blank or NaN."""
    import numpy as np

    bad = ~np.isfinite(result.loss)
    if bad.any():
        from flatscope.errors import FlatscopeError

        reach = max(float(np.abs(coords).max()) for coords in result.coords)
        raise FlatscopeError(
            f"{label}: the loss is not finite at {int(bad.sum())} of {bad.size} grid points "
            f"(coefficients up to {reach:g}); lower --range"
        )


def _weights_of(args: argparse.Namespace, path: Path, model: Any, params: Any, center: str) -> Any:
    """The flat weights ``path`` holds, read into a copy of ``model`` (the same architecture)."""
    import copy

    from flatscope.errors import CheckpointError
    from flatscope.io import apply_state_dict, load_checkpoint
    from flatscope.landscape import flat_weights

    other = load_checkpoint(path, key=args.checkpoint_key, unsafe_pickle=args.unsafe_pickle)
    clone = copy.deepcopy(model)
    try:
        apply_state_dict(clone, other.state_dict)
    except CheckpointError as err:
        raise CheckpointError(f"{path} does not hold the model of {center}: {err}") from err
    return flat_weights(clone, params)


def _directions(
    kind: str,
    target: str | None,
    args: argparse.Namespace,
    checkpoint_path: str,
    model: Any,
    loss_fn: Any,
    data: Any,
    settings: Any,
    span: float | None,
) -> _Directions:
    from flatscope.io.run_folder import run_checkpoints
    from flatscope.landscape import (
        eigen_directions,
        flat_weights,
        interpolation_direction,
        pca_directions,
        random_directions,
    )
    from flatscope.operators.distributed import shard_batches

    dims, seed, params = args.dims, settings.seed, settings.params
    if kind == "random":
        found = random_directions(model, dims, params=params, orthogonalize=True, seed=seed)
        a = span or DEFAULT_RANGE
        return _Directions(found, [(-a, a)] * dims, None, f"random, seed {seed}")
    if kind == "eigen":
        found = eigen_directions(
            model,
            loss_fn,
            shard_batches(data.batches()),
            dims,
            params=params,
            tol=settings.eig_tol,
            seed=seed,
            device=settings.device,
            dtype=settings.torch_dtype,
        )
        a = span or DEFAULT_RANGE
        values = ", ".join(f"{d.info['eigenvalue']:.4g}" for d in found)
        return _Directions(found, [(-a, a)] * dims, None, f"eigenvalues {values}")
    center = flat_weights(model, params)
    if kind == "pca":
        paths = [c.path for c in run_checkpoints(target)]
        path_weights = [_weights_of(args, p, model, params, checkpoint_path) for p in paths]
        pca = pca_directions(path_weights, center)
        a = span or PCA_MARGIN * float(abs(pca.trajectory[:, :dims]).max())
        ratios = ", ".join(f"{r:.3f}" for r in pca.explained_variance_ratio[:dims])
        note = f"pca of {len(paths)} checkpoints in {target}, explained variance {ratios}"
        trajectory = pca.trajectory if dims == 2 else None
        return _Directions(list(pca.directions[:dims]), [(-a, a)] * dims, trajectory, note)
    end = _weights_of(args, Path(target), model, params, checkpoint_path)
    line = interpolation_direction(center, end)
    found = [line]
    if dims == 2:
        found += random_directions(model, 1, params=params, orthogonal_to=[line.vector], seed=seed)
    a = span or DEFAULT_INTERP_RANGE
    spans = [(-a, 1.0 + a), (-a, a)][:dims]
    return _Directions(
        found, spans, None, f"interp to {target}, distance {line.info['distance']:.4g}"
    )


def _labels(paths: list[str]) -> list[str]:
    """File-name stems of the checkpoints; ``run-stem`` (the folder's name first) when two
    share a stem, as the ``final.pt`` of two runs do; numbered if that is still ambiguous."""
    for label in (lambda p: p.stem, lambda p: f"{p.parent.name}-{p.stem}"):
        labels = [label(Path(p)) for p in paths]
        if len(set(labels)) == len(labels):
            return labels
    return [f"{i}-{Path(p).stem}" for i, p in enumerate(paths)]


def _centre_value(result: Any) -> float | None:
    """The loss at the grid point where every coefficient is 0 (to round-off: linspace's middle
    point of a symmetric span can be 1e-16), if the grid has one."""
    import numpy as np

    index = []
    for coords in result.coords:
        zero = np.flatnonzero(np.abs(coords) <= 1e-12 * np.abs(coords).max())
        if zero.size == 0:
            return None
        index.append(int(zero[0]))
    return float(result.loss[tuple(index)])


def _summary_line(label: str, result: Any, note: str) -> str:
    centre = _centre_value(result)
    at_centre = "" if centre is None else f"loss {centre:.6g} at the checkpoint, "
    shape = "x".join(str(len(c)) for c in result.coords)
    return (
        f"{label}: {at_centre}min {result.loss.min():.6g}, max {result.loss.max():.6g} "
        f"on {shape} points; {note}"
    )


def run(args: argparse.Namespace) -> int:
    """Compute, save and plot the landscapes; print one line per checkpoint."""
    import sys

    from flatscope.cli.analyze import analysis_settings, load_inputs, writer_lock
    from flatscope.io.output import check_output_dir
    from flatscope.io.run_folder import run_checkpoints
    from flatscope.landscape import slice_1d, surface_2d
    from flatscope.metrics import AnalysisSettings
    from flatscope.models.losses import build_loss
    from flatscope.operators.distributed import get_rank, process_group, shard_batches
    from flatscope.plotting.landscape import (
        plot_slice_1d,
        plot_surface_2d,
        plot_surface_3d,
        shared_levels,
    )
    from flatscope.plotting.report_figures import save_figure

    kind, target = parse_directions(args.directions)
    resolution, span = _check_grid(args)
    settings = AnalysisSettings(**analysis_settings(args))
    out = Path(check_output_dir(args.out or f"{Path(args.checkpoints[0]).stem}-landscape"))
    if kind == "pca":
        run_checkpoints(target)  # a missing or empty run directory fails before any work
    written, lines, slices, surfaces = [], [], [], {}
    # under torchrun every rank evaluates its shard of the batches; rank 0 writes and prints
    with process_group(settings.device), writer_lock(out):
        writer = get_rank() == 0
        # every checkpoint, model, data set and loss is read before any work
        loaded = [load_inputs(args, path, settings.seed) for path in args.checkpoints]
        results = {}
        for path, label, inputs in zip(
            args.checkpoints, _labels(args.checkpoints), loaded, strict=True
        ):
            checkpoint, model, spec, data = (
                inputs.checkpoint,
                inputs.model,
                inputs.model_spec,
                inputs.data,
            )
            loss_fn = build_loss(inputs.loss)
            found = _directions(kind, target, args, path, model, loss_fn, data, settings, span)
            if not args.quiet and writer:
                points = resolution**args.dims
                print(f"{label}: evaluating {points} points ({found.note})", file=sys.stderr)
            common = dict(
                params=settings.params,
                device=settings.device,
                dtype=settings.torch_dtype,
                data_spec=data.spec,
                label=label,
            )
            if args.dims == 1:
                result = slice_1d(
                    model,
                    loss_fn,
                    shard_batches(data.batches()),
                    found.directions[0],
                    steps=resolution,
                    span=found.spans[0],
                    **common,
                )
            else:
                result = surface_2d(
                    model,
                    loss_fn,
                    shard_batches(data.batches()),
                    *found.directions,
                    steps=resolution,
                    span=tuple(found.spans),
                    trajectory=found.trajectory,
                    **common,
                )
            result.metadata.update(
                checkpoint=str(path),
                checkpoint_sha256=checkpoint.sha256,
                model_spec=spec,
                loss=inputs.loss,
                split=args.split,
                seed=settings.seed,
                directions_arg=args.directions,
                spans=[list(s) for s in found.spans],
            )
            _check_finite(label, result)
            lines.append(_summary_line(label, result, found.note))
            results[label] = result
        if not writer:
            return 0
        # written only once every landscape is computed: a failure leaves no partial output
        for label, result in results.items():
            npz = out / f"{label}-{kind}-{args.dims}d.npz"
            result.save_npz(npz)
            written.append(npz)
            if args.dims == 1:
                slices.append(result)
            else:
                surfaces[out / f"{label}-{kind}"] = result
        if slices:
            written += save_figure(plot_slice_1d(slices), out / f"slice-{kind}")
        levels = shared_levels(list(surfaces.values())) if surfaces else None  # one colour scale
        for stem, result in surfaces.items():
            written += save_figure(plot_surface_2d(result, levels=levels), f"{stem}-contour")
            written += save_figure(plot_surface_3d(result, levels=levels), f"{stem}-surface")
    print("\n".join(lines))
    print(f"wrote {', '.join(p.name for p in written)} in {out}")
    return 0
