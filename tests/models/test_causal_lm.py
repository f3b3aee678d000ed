"""The causal_lm loss against a hand-written shifted log-softmax, for both reductions."""

from __future__ import annotations

import pytest
import torch

from flatscope.models.losses import build_loss, loss_spec
from flatscope.models.specs import SpecError

VOCAB = 5


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (3, 6, 5) and labels with padding (-100) at the end of rows 1 and 2."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 6, VOCAB, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, VOCAB, (3, 6), generator=generator)
    labels[1, 4:] = -100
    labels[2, 2:] = -100
    return logits, labels


def reference_terms(logits: torch.Tensor, labels: torch.Tensor) -> list[list[float]]:
    """-log p(labels[b, t] | position t - 1) for every real label at t >= 1, row by row."""
    rows = []
    for b in range(labels.shape[0]):
        log_p = torch.log_softmax(logits[b], dim=-1)
        rows.append(
            [
                -float(log_p[t - 1, labels[b, t]])
                for t in range(1, labels.shape[1])
                if labels[b, t] != -100
            ]
        )
    return rows


@pytest.mark.parametrize("lean", ["false", "true"])
def test_token_mean_is_the_mean_over_every_predicted_token(batch, lean):
    logits, labels = batch
    terms = reference_terms(logits, labels)
    expected = sum(map(sum, terms)) / sum(map(len, terms))  # 5 + 3 + 1 predicted tokens
    assert sum(map(len, terms)) == 9
    value = build_loss(f"causal_lm:lean={lean}")(logits, labels)
    torch.testing.assert_close(value, torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("lean", ["false", "true"])
def test_sequence_mean_averages_each_sequence_mean(batch, lean):
    logits, labels = batch
    terms = reference_terms(logits, labels)
    expected = sum(sum(row) / len(row) for row in terms) / len(terms)
    value = build_loss(f"causal_lm:reduction=sequence,lean={lean}")(logits, labels)
    torch.testing.assert_close(value, torch.tensor(expected, dtype=torch.float64))


def test_first_label_of_a_row_is_never_predicted(batch):
    """Changing labels[:, 0] (no position before it) leaves the loss unchanged."""
    logits, labels = batch
    changed = labels.clone()
    changed[:, 0] = (labels[:, 0] + 1) % VOCAB
    loss = build_loss("causal_lm")
    assert loss(logits, changed) == loss(logits, labels)


def test_canonical_spec_names_the_reduction():
    assert loss_spec("causal_lm") == "causal_lm:reduction=token,lean=false"


@pytest.mark.parametrize(
    ("logits_shape", "labels_shape", "message"),
    [((3, 6), (3,), "logits of shape \\(B, T, V\\)"), ((3, 6, 5), (3, 5), "labels \\(3, 5\\)")],
)
def test_shapes_that_do_not_fit_are_refused(logits_shape, labels_shape, message):
    with pytest.raises(ValueError, match=message):
        build_loss("causal_lm")(torch.zeros(logits_shape), torch.zeros(labels_shape, dtype=int))


def test_a_sequence_without_a_token_to_predict_is_refused(batch):
    logits, labels = batch
    labels[0, 1:] = -100
    with pytest.raises(ValueError, match="no token to predict"):
        build_loss("causal_lm")(logits, labels)


def test_unknown_reduction_is_a_spec_error():
    with pytest.raises(SpecError, match="reduction must be one of token, sequence"):
        build_loss("causal_lm:reduction=sum")
