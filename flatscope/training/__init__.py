"""The reference trainer (fSGLD, SGLD, SAM, SGD) and its learning-rate schedules."""

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
    "OPTIMIZERS",
    "SCHEDULES",
    "RunResult",
    "TrainConfig",
    "TrainingError",
    "build_schedule",
    "make_optimizer",
    "schedule_spec",
    "train",
]
