"""Training-side building blocks: datasets and label noise, and the model zoo."""

from flatscope.training.data import DATASETS, SPLITS, DataBundle, DataError, load_data
from flatscope.training.label_noise import LABEL_NOISE, LabelNoise, add_label_noise, asymmetric_map
from flatscope.training.models import MODELS, build_model, model_spec
from flatscope.training.safe_pickle import load_numpy_pickle
from flatscope.training.schedules import SCHEDULES, build_schedule, schedule_spec
from flatscope.training.trainer import (
    OPTIMIZERS,
    RunResult,
    TrainConfig,
    TrainingError,
    make_optimizer,
    train,
)

__all__ = [
    "DATASETS",
    "LABEL_NOISE",
    "MODELS",
    "OPTIMIZERS",
    "SCHEDULES",
    "SPLITS",
    "DataBundle",
    "DataError",
    "LabelNoise",
    "RunResult",
    "TrainConfig",
    "TrainingError",
    "add_label_noise",
    "asymmetric_map",
    "build_model",
    "build_schedule",
    "load_data",
    "load_numpy_pickle",
    "make_optimizer",
    "model_spec",
    "schedule_spec",
    "train",
]
