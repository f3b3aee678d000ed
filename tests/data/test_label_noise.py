"""Symmetric and asymmetric label noise and its specs."""

from __future__ import annotations

import pytest
import torch

from flatscope.data.cifar import CIFAR10_CLASSES
from flatscope.data.errors import DataError
from flatscope.data.label_noise import LabelNoise, add_label_noise, asymmetric_map
from flatscope.models.specs import SpecError
from tests.data._datasets import binomial_bound


def _balanced_labels(n: int, k: int) -> torch.Tensor:
    return torch.arange(n) % k


def test_symmetric_noise_flips_a_binomial_fraction_to_uniform_other_classes():
    n, k, rate = 30_000, 10, 0.3
    labels = _balanced_labels(n, k)
    noisy = add_label_noise(labels, k, "symmetric:0.3", seed=5)
    changed = noisy != labels
    assert abs(changed.sum().item() - rate * n) < binomial_bound(n, rate)
    shift = ((noisy - labels) % k)[changed]
    counts = torch.bincount(shift, minlength=k)
    assert counts[0] == 0
    flipped = changed.sum().item()
    assert all(
        abs(c - flipped / (k - 1)) < binomial_bound(flipped, 1 / (k - 1)) for c in counts[1:]
    )


def test_asymmetric_noise_moves_each_class_to_its_mapped_class():
    n, k, rate = 20_000, 7, 0.2
    labels = _balanced_labels(n, k)
    noisy = add_label_noise(labels, k, LabelNoise("asymmetric", rate), seed=1)
    changed = noisy != labels
    assert torch.equal(noisy[changed], (labels[changed] + 1) % k)
    assert abs(changed.sum().item() - rate * n) < binomial_bound(n, rate)


def test_asymmetric_noise_on_cifar10_uses_the_class_confusions():
    mapping = asymmetric_map(10, CIFAR10_CLASSES)
    name = dict(enumerate(CIFAR10_CLASSES))
    pairs = {(name[c], name[int(mapping[c])]) for c in range(10) if mapping[c] != c}
    expected = {
        ("truck", "automobile"),
        ("bird", "airplane"),
        ("deer", "horse"),
        ("cat", "dog"),
        ("dog", "cat"),
    }
    assert pairs == expected
    n, rate = 20_000, 0.4
    labels = _balanced_labels(n, 10)
    noisy = add_label_noise(labels, 10, "asymmetric:0.4", seed=2, class_names=CIFAR10_CLASSES)
    changed = noisy != labels
    assert torch.equal(noisy[changed], mapping[labels[changed]])
    movable = (mapping[labels] != labels).sum().item()
    assert abs(changed.sum().item() - rate * movable) < binomial_bound(movable, rate)


def test_label_noise_is_reproducible_and_its_own_seed_wins():
    labels = _balanced_labels(1000, 10)
    first = add_label_noise(labels, 10, "symmetric:0.5", seed=3)
    assert torch.equal(first, add_label_noise(labels, 10, "symmetric:0.5", seed=3))
    assert not torch.equal(first, add_label_noise(labels, 10, "symmetric:0.5", seed=4))
    fixed = "symmetric:rate=0.5,seed=9"
    assert torch.equal(
        add_label_noise(labels, 10, fixed, seed=3), add_label_noise(labels, 10, fixed, seed=4)
    )
    assert torch.equal(add_label_noise(labels, 10, "asymmetric:0", seed=3), labels)


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        ("symmetric:1.0", SpecError, r"must lie in \[0, 1\)"),
        ("symmetric:-0.1", SpecError, r"must lie in \[0, 1\)"),
        ("symmetric:nan", SpecError, r"must lie in \[0, 1\)"),
        ("symmetric:high", SpecError, "rate expects a number"),
        ("uniform:0.1", SpecError, "unknown label noise 'uniform'"),
        ("symmetric:rate=0.1,seed=-1", DataError, "non-negative"),
    ],
)
def test_bad_label_noise_specs_are_refused(spec, error, message):
    with pytest.raises(error, match=message):
        LabelNoise.parse(spec)


def test_label_noise_spec_round_trips():
    noise = LabelNoise.parse("asymmetric:rate=0.25,seed=3")
    assert noise == LabelNoise("asymmetric", 0.25, 3)
    assert LabelNoise.parse(noise.spec) == noise
    assert LabelNoise.parse("symmetric:0.4").spec == "symmetric:rate=0.4"


def test_bad_labels_for_noise_are_refused():
    with pytest.raises(DataError, match="0..2"):
        add_label_noise(torch.tensor([0, 3]), 3, "symmetric:0.1")
    with pytest.raises(DataError, match="integer"):
        add_label_noise(torch.tensor([0.0, 1.0]), 3, "symmetric:0.1")
    with pytest.raises(DataError, match="at least 2 classes"):
        add_label_noise(torch.tensor([0, 0]), 1, "symmetric:0.1")
