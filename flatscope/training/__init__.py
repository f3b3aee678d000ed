"""The reference trainer (fSGLD, SGLD, SAM, SGD), its learning-rate schedules, and flatness
tracking for other training loops (``FlatnessTracker``; ``callbacks.FlatnessCallback`` for
Lightning)."""

from flatscope.training.callbacks import FlatnessTracker
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
    "FlatnessTracker",
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
