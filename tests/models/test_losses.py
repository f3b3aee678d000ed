"""Loss specs: built-in losses against torch's own, exact second derivatives, import specs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import grad, hessian, jvp

from flatscope.models.losses import build_loss, loss_spec
from flatscope.models.specs import SpecError


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    outputs = torch.randn(6, 4, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 4, (6,), generator=generator)
    return outputs, labels


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_is_torch_cross_entropy(batch, smoothing):
    outputs, labels = batch
    loss = build_loss(f"cross_entropy:label_smoothing={smoothing}")
    expected = F.cross_entropy(outputs, labels, label_smoothing=smoothing)
    torch.testing.assert_close(loss(outputs, labels), expected, rtol=0, atol=0)


def test_mse_of_class_indices_is_mse_against_one_hot_rows(batch):
    outputs, labels = batch
    one_hot = torch.eye(4, dtype=torch.float64)[labels]
    expected = F.mse_loss(outputs, one_hot)
    torch.testing.assert_close(build_loss("mse")(outputs, labels), expected)


def test_mse_of_float_targets_is_torch_mse(batch):
    outputs, _ = batch
    targets = outputs.flip(0)
    torch.testing.assert_close(build_loss("mse")(outputs, targets), F.mse_loss(outputs, targets))


def test_mse_hessian_is_two_over_the_element_count_in_both_ad_modes(batch):
    """L = |o - t|^2 / (B C): Hessian 2 I / (B C), also by forward-over-reverse products."""
    outputs, labels = batch
    loss = build_loss("mse")
    count = outputs.numel()
    H = hessian(lambda o: loss(o, labels))(outputs).reshape(count, count)
    torch.testing.assert_close(H, 2 * torch.eye(count, dtype=torch.float64) / count)
    v = torch.randn_like(outputs)
    _, Hv = jvp(grad(lambda o: loss(o, labels)), (outputs,), (v,))
    torch.testing.assert_close(Hv, 2 * v / count)


def test_mse_refuses_targets_that_do_not_fit(batch):
    outputs, _ = batch
    with pytest.raises(ValueError, match=r"targets of shape \(6, 3\) do not match"):
        build_loss("mse")(outputs, torch.zeros(6, 3, dtype=torch.float64))


def test_an_imported_function_is_the_loss_itself(batch):
    outputs, labels = batch
    assert build_loss("torch.nn.functional:cross_entropy") is F.cross_entropy
    assert loss_spec("torch.nn.functional:cross_entropy") == "torch.nn.functional:cross_entropy"


def test_an_imported_class_or_a_spec_with_values_is_called_to_build_the_loss(batch):
    outputs, labels = batch
    plain = build_loss("torch.nn:CrossEntropyLoss")
    assert isinstance(plain, torch.nn.CrossEntropyLoss)
    smoothed = build_loss("torch.nn:CrossEntropyLoss:label_smoothing=0.3")
    expected = F.cross_entropy(outputs, labels, label_smoothing=0.3)
    torch.testing.assert_close(smoothed(outputs, labels), expected)


def test_canonical_specs_write_defaults_out():
    assert loss_spec("cross_entropy") == "cross_entropy:label_smoothing=0.0"
    assert loss_spec("mse") == "mse"


@pytest.mark.parametrize(
    "spec, message",
    [
        ("hinge", "unknown loss 'hinge'; choose one of causal_lm, cross_entropy, mse"),
        ("no_such.module:loss", "cannot import module 'no_such.module'"),
        ("torch.nn:NoSuchLoss", "has no attribute 'NoSuchLoss'"),
        ("json.decoder:JSONDecoder:strict=true", "built a JSONDecoder, not a callable"),
        ("cross_entropy:label_smoothing=1.5", "label_smoothing must lie in"),
        ("mse:reduction=sum", "mse"),
    ],
)
def test_bad_loss_specs_are_one_line_spec_errors(spec, message):
    with pytest.raises(SpecError, match=message) as info:
        build_loss(spec)
    assert "\n" not in str(info.value)
