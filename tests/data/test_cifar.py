"""CIFAR-10 and CIFAR-10N read from their on-disk files."""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from flatscope.data.cifar import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD
from flatscope.data.datasets import load_data
from flatscope.data.errors import DataError
from flatscope.models.specs import SpecError
from tests.data._datasets import Exploit, legacy_numpy_names, sorted_rows, write_fake_cifar


@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar10_reads_torchvision_batches_and_normalises_per_channel(tmp_path, protocol):
    train_data, train_labels, (test_data, test_labels) = write_fake_cifar(tmp_path, protocol)
    train = load_data(f"cifar10:{tmp_path}")
    images, labels = train.dataset.tensors
    assert images.shape == (20, 3, 32, 32) and images.dtype == torch.float32
    assert torch.equal(labels, torch.as_tensor(train_labels))
    assert train.class_names == CIFAR10_CLASSES
    sample, channel, row, col = 13, 2, 5, 30
    raw = train_data[sample, channel * 1024 + row * 32 + col]
    expected = (raw / 255 - CIFAR10_MEAN[channel]) / CIFAR10_STD[channel]
    assert images[sample, channel, row, col].item() == pytest.approx(expected, rel=1e-6)
    test = load_data(f"cifar10:{tmp_path / 'cifar-10-batches-py'}", "test")
    assert torch.equal(test.labels, torch.as_tensor(test_labels))
    assert len(test) == len(test_data) == 3


def test_cifar10_validation_holdout_is_fixed_and_disjoint(tmp_path):
    write_fake_cifar(tmp_path)
    spec = f"cifar10:{tmp_path},val=6"
    train, val = load_data(spec, "train"), load_data(spec, "val")
    assert (len(train), len(val)) == (14, 6)
    everything = load_data(f"cifar10:{tmp_path}")
    assert np.array_equal(sorted_rows(train, val), sorted_rows(everything))
    assert torch.equal(load_data(spec, "val").dataset.tensors[0], val.dataset.tensors[0])
    with pytest.raises(DataError, match="no val split by default.*val=5000"):
        load_data(f"cifar10:{tmp_path}", "val")
    with pytest.raises(SpecError, match="val must lie in"):
        load_data(f"cifar10:{tmp_path},val=20")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (pickle.dumps({b"data": np.array([{}, None], dtype=object)}), "Python objects"),
        (pickle.dumps({b"data": np.zeros(3)})[:-8], "cannot read"),
        (b"just some text, not a pickle\n", "cannot read"),
        (pickle.dumps([1, 2, 3]), "not a CIFAR batch dict"),
        (pickle.dumps({b"data": np.zeros((2, 3072)), b"labels": [0, 1]}), "uint8"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}), "N labels"),
        (pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]}), "0..9"),
    ],
)
def test_bad_cifar_batches_give_data_errors(tmp_path, payload, message):
    write_fake_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(payload)
    with pytest.raises(DataError, match=message):
        load_data(f"cifar10:{tmp_path}")


def test_missing_cifar_folder_says_what_is_expected(tmp_path):
    with pytest.raises(DataError, match="no CIFAR-10 batches under .*data_batch_1"):
        load_data(f"cifar10:{tmp_path}")


# --- CIFAR-10N -------------------------------------------------------------------------------


def _legacy_torch_file(path: Path) -> None:
    """Rewrite a torch zip file so its pickle names numpy 1's modules."""
    source = zipfile.ZipFile(io.BytesIO(path.read_bytes()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename.endswith("data.pkl"):
                data = legacy_numpy_names(data)
            target.writestr(item, data)
    path.write_bytes(buffer.getvalue())


@pytest.mark.parametrize("legacy", [False, True])
def test_cifar10n_uses_the_chosen_human_labels_on_training_images(tmp_path, legacy):
    _, clean, (_, test_labels) = write_fake_cifar(tmp_path)
    worse = (clean + 1 + np.arange(20) % 2) % 10
    record = {"clean_label": clean, "worse_label": worse, "aggre_label": clean.copy()}
    human = tmp_path / "CIFAR-10_human.pt"
    torch.save(record, human)
    if legacy:
        _legacy_torch_file(human)
    bundle = load_data(f"cifar10n:{tmp_path},labels=worse")
    assert torch.equal(bundle.labels, torch.as_tensor(worse))
    assert torch.equal(bundle.clean_labels, torch.as_tensor(clean))
    assert bundle.noisy_mask.all()
    spec = f"cifar10n:{tmp_path},labels=worse,val=5"
    val = load_data(spec, "val")
    assert torch.equal(val.clean_labels[val.noisy_mask], val.clean_labels)
    assert len(val) + len(load_data(spec, "train")) == 20
    test = load_data(f"cifar10n:{tmp_path}", "test")
    assert torch.equal(test.labels, torch.as_tensor(test_labels)) and test.clean_labels is None


def test_cifar10n_refuses_mismatched_unknown_or_unsafe_label_files(tmp_path):
    _, clean, _ = write_fake_cifar(tmp_path)
    human = tmp_path / "CIFAR-10_human.pt"
    spec = f"cifar10n:{tmp_path}"
    with pytest.raises(DataError, match="no CIFAR-10N label file.*human=FILE"):
        load_data(spec)
    torch.save({"clean_label": (clean + 1) % 10, "worse_label": clean}, human)
    with pytest.raises(DataError, match="clean_label does not match"):
        load_data(spec)
    torch.save({"worse_label": clean[:10]}, human)
    with pytest.raises(DataError, match="has 10 labels but CIFAR-10 has 20"):
        load_data(spec)
    with pytest.raises(SpecError, match="unknown labels 'best'"):
        load_data(f"{spec},labels=best")
    torch.save({"worse_label": Exploit(os.system, "true")}, human)
    with pytest.raises(DataError, match="weights-only torch file: .*GLOBAL .*system"):
        load_data(spec)
