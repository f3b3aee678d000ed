"""Loss landscapes around a minimum: directions, 1-D and 2-D grids, sharpness measures."""

from flatscope.landscape.directions import (
    Direction,
    PCADirections,
    eigen_directions,
    flat_weights,
    floating_buffers,
    interpolation_direction,
    pca_directions,
    random_directions,
)
from flatscope.landscape.evaluation import LossEvaluator
from flatscope.landscape.sharpness import (
    AverageSharpness,
    WorstCaseSharpness,
    average_sharpness,
    worst_case_sharpness,
)
from flatscope.landscape.surface import LandscapeResult, slice_1d, surface_2d

__all__ = [
    "AverageSharpness",
    "Direction",
    "LandscapeResult",
    "LossEvaluator",
    "PCADirections",
    "WorstCaseSharpness",
    "average_sharpness",
    "eigen_directions",
    "flat_weights",
    "floating_buffers",
    "interpolation_direction",
    "pca_directions",
    "random_directions",
    "slice_1d",
    "surface_2d",
    "worst_case_sharpness",
]
