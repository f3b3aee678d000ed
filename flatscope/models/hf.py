"""Hugging Face causal language models from a local ``from_pretrained`` folder: ``hf:PATH``.

``hf:PATH[,dtype=float32]`` loads ``AutoModelForCausalLM.from_pretrained(PATH)`` from a folder
holding ``config.json`` and safetensors weights (``model.safetensors``, or shards with their
``model.safetensors.index.json``), offline (``local_files_only``, never the Hub) and without
unpickling (``use_safetensors``). ``dtype`` is the dtype the weights are held in: ``float32``
by default, so bfloat16 and float16 checkpoints are analysed in float32 (the canonical model
spec a report records says so); ``float64``, ``bfloat16``, ``float16``, or ``auto`` for the dtype
stored in the folder.

Code that ships inside a model folder (a config whose ``auto_map`` names Python files) runs only
when the caller passes ``trust_remote_code=True`` to :func:`flatscope.models.zoo.build_model`
(``--trust-remote-code`` on the command line). It is not a spec value, so a spec read from a
checkpoint, a report or a file can never turn it on.

The model is wrapped in :class:`CausalLMLogits`, which returns the logits tensor ``(B, T, V)``
for ``input_ids`` ``(B, T)``, the batch convention of
:class:`~flatscope.operators.hessian.HessianOperator` (``inputs, targets = batch``;
``loss_fn(model(inputs), targets)``) with the ``causal_lm`` loss
(:mod:`flatscope.models.causal_lm`), and keeps the Hugging Face parameter names
(``transformer.h.0.attn.c_attn.weight``, ``model.layers.0.self_attn.q_proj.weight``), so
``--params 'model.layers.3.*'`` selects one transformer layer.

Needs the ``transformers`` package (``pip install "flatscope[transformers]"``), imported only
when such a model is built.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flatscope.models.specs import SpecError

__all__ = ["DTYPES", "CausalLMLogits", "hf", "import_transformers", "pretrained_folder"]

DTYPES: dict[str, torch.dtype | str] = {
    "float32": torch.float32,
    "float64": torch.float64,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "auto": "auto",
}
INSTALL_HINT = 'pip install "flatscope[transformers]"'


def import_transformers(what: str) -> Any:
    """The ``transformers`` module, or a :class:`SpecError` saying how to install it."""
    try:
        import transformers
    except ImportError as error:
        raise SpecError(f"{what} needs the transformers package: {INSTALL_HINT}") from error
    return transformers


@contextlib.contextmanager
def quiet_transformers(transformers: Any) -> Iterator[None]:
    """No progress bars or info logging from ``transformers`` inside the block."""
    logging = transformers.utils.logging
    bars, verbosity = logging.is_progress_bar_enabled(), logging.get_verbosity()
    logging.disable_progress_bar()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def pretrained_folder(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a folder holding ``config.json``, or a :class:`SpecError` saying why not."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise SpecError(
            f"{what}: {folder} is not a folder; give the folder that save_pretrained wrote "
            "(with config.json)"
        )
    if not (folder / "config.json").is_file():
        raise SpecError(f"{what}: {folder} holds no config.json; it is no from_pretrained folder")
    return folder


def _check_weights(folder: Path) -> None:
    if any(folder.glob("*.safetensors")):
        return
    pickled = sorted(p.name for p in folder.glob("*.bin"))
    found = f" (it holds {', '.join(pickled)}, which are pickles)" if pickled else ""
    raise SpecError(
        f"model 'hf': {folder} holds no .safetensors weights{found}; flatscope reads weights "
        "without unpickling: re-save the model with save_pretrained(..., safe_serialization=True)"
    )


class CausalLMLogits(nn.Module):
    """A Hugging Face model that returns its logits tensor, under the model's own names.

    ``forward(input_ids, attention_mask=None)`` is ``model(input_ids=...,
    attention_mask=..., use_cache=False).logits``. The wrapper shares the wrapped model's
    parameter, buffer and submodule dictionaries, so its ``named_parameters()`` and
    ``state_dict()`` are the model's (no ``model.`` prefix) and
    ``torch.func.functional_call`` on the wrapper swaps the tensors the model computes with.
    Tied weights (an output layer sharing the input embedding) stay one parameter.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        for name in ("_parameters", "_buffers", "_non_persistent_buffers_set", "_modules"):
            object.__setattr__(self, name, getattr(model, name))
        object.__setattr__(self, "wrapped", model)
        self.training = model.training
        config = getattr(model, "config", None)
        self.vocab_size: int | None = getattr(config, "vocab_size", None)

    def train(self, mode: bool = True) -> CausalLMLogits:
        """Set training mode on the wrapper, the wrapped model and every submodule."""
        super().train(mode)
        self.wrapped.training = mode
        return self

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        if input_ids.is_floating_point():
            raise ValueError(f"the model needs integer token ids, got {input_ids.dtype} inputs")
        if self.vocab_size is not None and input_ids.numel() > 0:
            low, high = int(input_ids.min()), int(input_ids.max())
            if low < 0 or high >= self.vocab_size:
                raise ValueError(
                    f"token ids must lie in 0..{self.vocab_size - 1} (the model's vocabulary), "
                    f"got ids from {low} to {high}: data and model do not fit"
                )
        output = self.wrapped(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        return output.logits


def hf(path: str, *, dtype: str = "float32", trust_remote_code: bool = False) -> CausalLMLogits:
    """A causal LM from a local ``from_pretrained`` folder, returning logits (module docs).

    ``trust_remote_code`` is supplied by the caller (``build_model(...,
    trust_remote_code=True)``), never by the spec.
    """
    if dtype not in DTYPES:
        raise SpecError(f"model 'hf': dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    folder = pretrained_folder(path, "model 'hf'")
    _check_weights(folder)
    transformers = import_transformers("model 'hf'")
    try:
        with quiet_transformers(transformers):
            model = transformers.AutoModelForCausalLM.from_pretrained(
                str(folder),
                dtype=DTYPES[dtype],
                local_files_only=True,
                use_safetensors=True,
                trust_remote_code=trust_remote_code,
            )
    except Exception as error:
        message = " ".join(str(error).split()) or type(error).__name__
        hint = (
            "; if you trust the code in that folder, pass --trust-remote-code"
            if "trust_remote_code" in message and not trust_remote_code
            else ""
        )
        raise SpecError(
            f"model 'hf': cannot load {folder} as a causal language model: "
            f"{type(error).__name__}: {message[:300]}{hint}"
        ) from error
    model.eval()
    return CausalLMLogits(model)
