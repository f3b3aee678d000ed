"""Files in and out: checkpoints (safe loading of many layouts, saving) and JSON reports."""

from flatscope.io.atomic import atomic_write
from flatscope.io.checkpoint import (
    CHECKPOINT_FORMAT,
    LoadedCheckpoint,
    apply_state_dict,
    load_checkpoint,
    save_checkpoint,
)
from flatscope.io.report import (
    REPORT_SCHEMA,
    Report,
    environment_info,
    flatscope_version,
    to_jsonable,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "REPORT_SCHEMA",
    "LoadedCheckpoint",
    "Report",
    "apply_state_dict",
    "atomic_write",
    "environment_info",
    "flatscope_version",
    "load_checkpoint",
    "save_checkpoint",
    "to_jsonable",
]
