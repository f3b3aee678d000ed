import pytest
import torch

from flatscope.models.specs import SpecError
from flatscope.training.schedules import build_schedule, schedule_spec

EPOCHS = 12


def torch_rates(make_scheduler) -> list[float]:
    """Per-epoch learning rates of a torch scheduler stepped once per epoch, base rate 1."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    scheduler = make_scheduler(optimizer)
    rates = []
    for _ in range(EPOCHS):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def factors(spec: str) -> list[float]:
    schedule = build_schedule(spec)
    return [schedule(epoch, EPOCHS) for epoch in range(EPOCHS)]


def test_multistep_matches_torch():
    expected = torch_rates(lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [3, 8], gamma=0.2))
    assert factors("multistep:3,8,gamma=0.2") == pytest.approx(expected, rel=1e-12)


def test_cosine_matches_torch():
    def make(o):
        return torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=EPOCHS, eta_min=0.1)

    assert factors("cosine:min_factor=0.1") == pytest.approx(torch_rates(make), rel=1e-12)


def test_constant_and_canonical_specs():
    assert factors("constant") == [1.0] * EPOCHS
    assert schedule_spec("multistep:3,8") == "multistep:3,8,gamma=0.1"
    assert schedule_spec("cosine") == "cosine:min_factor=0.0"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("multistep", "needs milestone epochs"),
        ("multistep:8,3", "must be increasing positive epochs"),
        ("multistep:0", "must be increasing positive epochs"),
        ("multistep:3,gamma=2", r"gamma must lie in \(0, 1\]"),
        ("cosine:min_factor=-1", r"min_factor must lie in \[0, 1\]"),
        ("linear", "unknown schedule 'linear'; choose one of constant, cosine, multistep"),
        ("pkg.mod:f", "cannot import code"),
    ],
)
def test_bad_schedules(spec, message):
    with pytest.raises(SpecError, match=message):
        build_schedule(spec)
