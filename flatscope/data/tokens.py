"""Token-id data for language models: pre-tokenized files and plain text, as ``(ids, labels)``.

Data specs (see :mod:`flatscope.data.datasets`):

``tokens:PATH[,pad_id=N]``
    pre-tokenized sequences from a local file, shape ``(N, T)`` with integer ids: a NumPy
    ``.npy`` array (read without pickle), a ``.pt``/``.pth`` file (``torch.load`` with
    ``weights_only=True``) or a ``.safetensors`` file. A ``.pt`` or ``.safetensors`` file may
    hold a dict with ``input_ids`` and optionally ``attention_mask`` (a tokenizer's output);
    otherwise it holds the one id tensor. Padding is marked by ``attention_mask`` (0 = padding)
    or, without one, by ``pad_id``: the run of ``pad_id`` at the end of each row.
``text:PATH,tokenizer=FOLDER[,seq_len=128,stride=SEQ_LEN]``
    a UTF-8 text file tokenized as one stream by the tokenizer saved in ``FOLDER`` (usually
    the model's ``from_pretrained`` folder; read offline, no remote code; needs the
    ``transformers`` extra), cut into windows of ``seq_len`` tokens starting every ``stride``
    tokens. Tokens after the last full window are left out.

Each sample is ``(input_ids, labels)``, both of shape ``(T,)``: ``labels`` equals
``input_ids`` at real tokens and is -100 at padding (the ignore index of the ``causal_lm`` loss,
:mod:`flatscope.models.causal_lm`, which shifts by one position itself). The real tokens of a row
come first: a left-padded row (an attention mask with zeros before ones) is re-packed to the
left keeping the order of its tokens, since the model gets no attention mask and right padding
is invisible to a causal model's real positions. Padding positions of ``input_ids`` hold
``pad_id`` (0 when it is not a valid id). Every row needs at least two real tokens (one to
predict). A file is one data set: only the ``train`` split exists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from flatscope.data.errors import DataError
from flatscope.models.causal_lm import IGNORE_INDEX

__all__ = ["token_file", "text_file", "read_token_ids", "padded_pairs"]

TOKEN_SUFFIXES = (".npy", ".pt", ".pth", ".safetensors")


def _only_train(name: str, split: str) -> None:
    if split != "train":
        raise DataError(
            f"data {name!r} is one file, which flatscope reads as the train split; "
            f"got split {split!r} (use --split train)"
        )


def _existing_file(path: str, name: str) -> Path:
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"data {name!r}: file not found: {file}")
    return file


def _read_object(file: Path) -> Any:
    """The array, tensor or dict of tensors stored in ``file``, read without unpickling code."""
    suffix = file.suffix.lower()
    if suffix not in TOKEN_SUFFIXES:
        raise DataError(
            f"data 'tokens': {file} is not a token file; expected one of "
            f"{', '.join(TOKEN_SUFFIXES)}"
        )
    try:
        if suffix == ".npy":
            return np.load(file, allow_pickle=False)
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(file))
        return torch.load(file, map_location="cpu", weights_only=True)
    except ImportError as error:
        raise DataError(
            f"reading {file} needs the safetensors package: pip install safetensors"
        ) from error
    except Exception as error:
        detail = " ".join(str(error).split())[:200] or type(error).__name__
        raise DataError(f"data 'tokens': cannot read {file}: {detail}") from error


def _as_ids(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        if not np.issubdtype(value.dtype, np.integer) and value.dtype != np.bool_:
            raise DataError(f"{what} must hold integers, got dtype {value.dtype}")
        value = torch.from_numpy(value.astype(np.int64))
    if not isinstance(value, torch.Tensor):
        raise DataError(f"{what} must be an array or a tensor, got {type(value).__name__}")
    if value.is_floating_point() or value.is_complex():
        raise DataError(f"{what} must hold integers, got dtype {value.dtype}")
    if value.ndim != 2 or value.shape[0] < 1 or value.shape[1] < 2:
        raise DataError(
            f"{what} must have shape (N, T) with N >= 1 sequences of T >= 2 tokens, got "
            f"{tuple(value.shape)}"
        )
    return value.to(torch.int64)


def read_token_ids(file: Path) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The ``(N, T)`` token ids of a file and its attention mask (``None`` without one)."""
    stored = _read_object(file)
    mask = None
    if isinstance(stored, dict):
        if "input_ids" in stored:
            ids = stored["input_ids"]
            mask = stored.get("attention_mask")
        elif len(stored) == 1:
            ids = next(iter(stored.values()))
        else:
            raise DataError(
                f"data 'tokens': {file} holds {', '.join(map(str, stored))}; expected one "
                "tensor or input_ids (and attention_mask)"
            )
    else:
        ids = stored
    ids = _as_ids(ids, f"the token ids in {file}")
    if mask is not None:
        mask = _as_ids(mask, f"the attention_mask in {file}")
        if mask.shape != ids.shape or not bool(((mask == 0) | (mask == 1)).all()):
            raise DataError(
                f"the attention_mask in {file} must be 0s and 1s of the ids' shape "
                f"{tuple(ids.shape)}"
            )
    return ids, mask


def padded_pairs(
    ids: torch.Tensor, real: torch.Tensor, pad_id: int | None, source: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, labels)`` with each row's real tokens packed to the left (module docs).

    Args:
        ids: token ids ``(N, T)``.
        real: a boolean mask ``(N, T)`` of the real (non-padding) tokens.
        pad_id: the id written at padding positions of ``input_ids`` (0 when ``None`` or
            negative).
        source: names the data in errors.
    """
    counts = real.sum(dim=1)
    short = torch.nonzero(counts < 2).flatten()
    if len(short):
        raise DataError(
            f"{source}: {len(short)} sequence(s) have fewer than two real tokens (the first is "
            f"row {int(short[0])}); a causal LM predicts nothing from them: drop them"
        )
    order = torch.sort((~real).to(torch.int8), dim=1, stable=True).indices
    packed = torch.gather(ids, 1, order)
    keep = torch.arange(ids.shape[1]) < counts[:, None]
    fill = pad_id if pad_id is not None and pad_id >= 0 else 0
    inputs = torch.where(keep, packed, torch.full_like(packed, fill))
    labels = torch.where(keep, packed, torch.full_like(packed, IGNORE_INDEX))
    if bool((packed[keep] < 0).any()):
        raise DataError(f"{source}: token ids must be non-negative outside padding")
    return inputs, labels


def token_file(
    path: str, *, split: str, pad_id: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pre-tokenized ``(N, T)`` sequences from a ``.npy``, ``.pt`` or ``.safetensors`` file."""
    _only_train("tokens", split)
    file = _existing_file(path, "tokens")
    ids, mask = read_token_ids(file)
    if mask is not None:
        real = mask.bool()
    elif pad_id is not None:
        is_pad = (ids == pad_id).to(torch.int64)
        trailing = torch.flip(is_pad, dims=[1]).cumprod(dim=1).sum(dim=1)
        real = torch.arange(ids.shape[1]) < (ids.shape[1] - trailing)[:, None]
    else:
        real = torch.ones_like(ids, dtype=torch.bool)
    return padded_pairs(ids, real, pad_id, f"data 'tokens' ({file})")


def _tokenizer(folder: str) -> Any:
    from flatscope.models.hf import import_transformers, quiet_transformers

    transformers = import_transformers("data 'text'")
    directory = Path(folder).expanduser()
    if not directory.is_dir():
        raise DataError(f"data 'text': tokenizer folder not found: {directory}")
    try:
        with quiet_transformers(transformers):
            return transformers.AutoTokenizer.from_pretrained(
                str(directory), local_files_only=True, trust_remote_code=False
            )
    except Exception as error:
        detail = " ".join(str(error).split())[:200] or type(error).__name__
        raise DataError(f"data 'text': no usable tokenizer in {directory}: {detail}") from error


def text_file(
    path: str,
    *,
    split: str,
    tokenizer: str,
    seq_len: int = 128,
    stride: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows of ``seq_len`` tokens every ``stride`` tokens of a text file (module docs)."""
    _only_train("text", split)
    stride = seq_len if stride is None else stride
    if seq_len < 2 or stride < 1:
        raise DataError(f"data 'text' needs seq_len >= 2 and stride >= 1, got {seq_len}, {stride}")
    file = _existing_file(path, "text")
    try:
        content = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"data 'text': cannot read {file} as UTF-8 text: {error}") from error
    encoded = _tokenizer(tokenizer)(content, verbose=False)["input_ids"]
    stream = torch.as_tensor(encoded, dtype=torch.int64)
    if len(stream) < seq_len:
        raise DataError(
            f"data 'text': {file} gives {len(stream)} tokens, fewer than seq_len={seq_len}"
        )
    windows = stream.unfold(0, seq_len, stride).contiguous()
    return windows, windows.clone()
