"""Training-side building blocks: datasets and label noise, and the model zoo."""

from flatscope.training.data import (
    DATASETS,
    LABEL_NOISE,
    SPLITS,
    DataBundle,
    DataError,
    LabelNoise,
    add_label_noise,
    asymmetric_map,
    load_data,
    load_numpy_pickle,
)
from flatscope.training.models import MODELS, build_model, model_spec

__all__ = [
    "DATASETS",
    "LABEL_NOISE",
    "MODELS",
    "SPLITS",
    "DataBundle",
    "DataError",
    "LabelNoise",
    "add_label_noise",
    "asymmetric_map",
    "build_model",
    "load_data",
    "load_numpy_pickle",
    "model_spec",
]
