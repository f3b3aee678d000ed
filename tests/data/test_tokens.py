"""Token-id data sets: every file kind, padding by pad_id and by attention mask, bad files."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from flatscope.data import DataError, load_data
from flatscope.models.specs import SpecError

IDS = np.array(
    [
        [5, 6, 7, 8, 9],
        [3, 4, 0, 0, 0],  # two real tokens, right-padded with pad_id 0
        [1, 0, 2, 0, 0],  # a 0 inside the row is a real token; only the trailing run pads
    ]
)


def pairs(spec: str) -> tuple[torch.Tensor, torch.Tensor]:
    bundle = load_data(spec)
    inputs, labels = bundle.dataset.tensors
    return inputs, labels


def test_npy_with_pad_id_masks_the_trailing_run_only(tmp_path):
    np.save(tmp_path / "ids.npy", IDS)
    inputs, labels = pairs(f"tokens:{tmp_path / 'ids.npy'},pad_id=0")
    assert inputs.dtype == labels.dtype == torch.int64
    assert inputs.tolist() == IDS.tolist()
    assert labels.tolist() == [[5, 6, 7, 8, 9], [3, 4, -100, -100, -100], [1, 0, 2, -100, -100]]


def test_without_pad_id_every_token_is_real(tmp_path):
    np.save(tmp_path / "ids.npy", IDS.astype(np.uint16))
    inputs, labels = pairs(f"tokens:{tmp_path / 'ids.npy'}")
    assert inputs.tolist() == labels.tolist() == IDS.tolist()


def test_attention_mask_repacks_left_padding(tmp_path):
    """A tokenizer's left-padded output: real tokens move to the front in their order."""
    ids = torch.tensor([[0, 0, 7, 8, 9], [4, 5, 6, 0, 0]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 0, 0]])
    torch.save({"input_ids": ids, "attention_mask": mask}, tmp_path / "batch.pt")
    inputs, labels = pairs(f"tokens:{tmp_path / 'batch.pt'}")
    assert inputs.tolist() == [[7, 8, 9, 0, 0], [4, 5, 6, 0, 0]]
    assert labels.tolist() == [[7, 8, 9, -100, -100], [4, 5, 6, -100, -100]]


def test_safetensors_with_one_tensor(tmp_path):
    from safetensors.torch import save_file

    save_file({"tokens": torch.from_numpy(IDS)}, str(tmp_path / "ids.safetensors"))
    inputs, labels = pairs(f"tokens:{tmp_path / 'ids.safetensors'},pad_id=0")
    assert inputs.tolist() == IDS.tolist()
    assert (labels == -100).sum() == 5


def test_negative_pad_id_becomes_id_zero_in_the_inputs(tmp_path):
    ids = np.array([[4, 5, 6, -1], [7, 8, -1, -1]])
    np.save(tmp_path / "ids.npy", ids)
    inputs, labels = pairs(f"tokens:{tmp_path / 'ids.npy'},pad_id=-1")
    assert inputs.tolist() == [[4, 5, 6, 0], [7, 8, 0, 0]]
    assert labels.tolist() == [[4, 5, 6, -100], [7, 8, -100, -100]]


def test_subsets_and_batches_keep_pairs_together(tmp_path):
    ids = np.arange(40).reshape(10, 4)
    np.save(tmp_path / "ids.npy", ids)
    bundle = load_data(f"tokens:{tmp_path / 'ids.npy'}", subset=6, batch_size=4)
    batches = bundle.batches()
    assert [len(x) for x, _ in batches] == [4, 2]
    for inputs, labels in batches:
        assert torch.equal(inputs, labels)
        assert inputs.shape[1] == 4


def write(tmp_path, name: str, value) -> str:
    path = tmp_path / name
    if name.endswith(".npy"):
        np.save(path, value)
    else:
        torch.save(value, path)
    return str(path)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("f.npy", np.ones((2, 3)), "must hold integers"),
        ("v.npy", np.arange(5), "shape \\(N, T\\)"),
        ("t.npy", np.ones((2, 1), dtype=int), "T >= 2 tokens"),
        ("s.npy", np.array([[1, 2, 3], [4, 0, 0]]), "fewer than two real tokens"),
        ("d.pt", {"a": torch.ones(2, 2), "b": torch.ones(2, 2)}, "expected one tensor"),
        ("m.pt", {"input_ids": torch.ones(2, 3), "attention_mask": torch.ones(2, 2)}, "integers"),
        (
            "n.pt",
            {
                "input_ids": torch.ones(2, 3, dtype=int),
                "attention_mask": 2 * torch.ones(2, 3, dtype=int),
            },
            "0s and 1s",
        ),
        ("neg.npy", np.array([[1, -5, 3]]), "non-negative"),
    ],
)
def test_bad_token_files_are_one_line_data_errors(tmp_path, name, value, message):
    path = write(tmp_path, name, value)
    with pytest.raises(DataError, match=message):
        load_data(f"tokens:{path},pad_id=0" if name == "s.npy" else f"tokens:{path}")


class Harmful:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "ids.pt"
    torch.save({"input_ids": Harmful(str(marker))}, path)
    with pytest.raises(DataError, match="cannot read"):
        load_data(f"tokens:{path}")
    assert not marker.exists()


def test_missing_file_unknown_suffix_and_other_splits(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_data(f"tokens:{tmp_path / 'none.npy'}")
    (tmp_path / "ids.txt").write_text("1 2 3")
    with pytest.raises(DataError, match="not a token file"):
        load_data(f"tokens:{tmp_path / 'ids.txt'}")
    np.save(tmp_path / "ids.npy", IDS)
    with pytest.raises(DataError, match="use --split train"):
        load_data(f"tokens:{tmp_path / 'ids.npy'}", "val")


def test_text_needs_a_tokenizer_folder(tmp_path):
    (tmp_path / "a.txt").write_text("hello world")
    with pytest.raises(SpecError, match="tokenizer"):
        load_data(f"text:{tmp_path / 'a.txt'}")
