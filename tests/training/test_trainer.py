import json

import pytest
import torch

from flatscope.data import load_data
from flatscope.io import apply_state_dict, load_checkpoint
from flatscope.models import build_model
from flatscope.operators import HessianOperator
from flatscope.optim import FSGLD, SAM, SGLD
from flatscope.training.trainer import TrainConfig, TrainingError, make_optimizer, train

TINY = {"model": "mlp:hidden=4", "data": "digits", "batch_size": 128, "lr": 0.05}


def config(**changes) -> TrainConfig:
    return TrainConfig.create(**{**TINY, **changes})


def without_seconds(metrics):
    return [{k: v for k, v in record.items() if k != "seconds"} for record in metrics]


class Interrupt(Exception):
    pass


def stop_after(epoch):
    def on_epoch(record):
        if record["epoch"] == epoch:
            raise Interrupt

    return on_epoch


@pytest.mark.parametrize(
    "changes",
    [
        {"optimizer": "fsgld", "beta_inv": 1e-4, "antithetic": True, "model": "cnn:width=2"},
        {"optimizer": "sgld", "beta_inv": 1e-4},
        {"optimizer": "sam", "rho": 0.1},
        {"optimizer": "sgd", "schedule": "multistep:1,3"},
    ],
    ids=lambda changes: changes["optimizer"],
)
def test_resume_after_interruption_is_bit_identical(tmp_path, changes):
    run = config(epochs=4, checkpoint_every=2, label_noise="symmetric:0.4", **changes)
    straight = train(run, tmp_path / "straight")
    with pytest.raises(Interrupt):
        train(run, tmp_path / "resumed", on_epoch=stop_after(3))
    assert (tmp_path / "resumed" / "checkpoints" / "epoch_0002.pt").is_file()
    assert not (tmp_path / "resumed" / "final.pt").exists()
    resumed = train(run, tmp_path / "resumed", resume=True)  # epoch 3 is redone from epoch 2
    a = load_checkpoint(straight.checkpoint).state_dict
    b = load_checkpoint(resumed.checkpoint).state_dict
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert without_seconds(straight.metrics) == without_seconds(resumed.metrics)
    lines = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    assert without_seconds([json.loads(line) for line in lines]) == without_seconds(
        straight.metrics
    )


def test_resuming_a_finished_run_returns_it(tmp_path):
    run = config(epochs=2)
    first = train(run, tmp_path)
    again = train(run, tmp_path, resume=True)
    assert again.metrics == first.metrics
    assert all(
        torch.equal(p, q)
        for p, q in zip(first.model.parameters(), again.model.parameters(), strict=True)
    )


def test_existing_run_and_changed_config_are_refused(tmp_path):
    train(config(epochs=1), tmp_path)
    with pytest.raises(TrainingError, match="already holds a training run"):
        train(config(epochs=1), tmp_path)
    with pytest.raises(TrainingError, match=r"lr: 0.05 -> 0.1"):
        train(config(epochs=1, lr=0.1), tmp_path, resume=True)


def test_metrics_record_every_epoch_on_clean_labels(tmp_path):
    run = config(epochs=3, schedule="cosine", label_noise="symmetric:0.4", seed=3)
    result = train(run, tmp_path)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert set(records[0]) == {
        "epoch", "lr", "train_loss", "train_acc", "val_acc", "test_acc", "seconds"
    }  # fmt: skip
    assert [r["lr"] for r in records] == pytest.approx([0.05, 0.0375, 0.0125])
    model = result.model.eval()
    for split in ("val", "test"):
        bundle = load_data("digits", split)  # clean labels
        inputs, labels = bundle.dataset.tensors
        with torch.no_grad():
            accuracy = (model(inputs).argmax(1) == labels).double().mean().item()
        assert records[-1][f"{split}_acc"] == pytest.approx(accuracy, abs=1e-12)
    assert all(0 <= r["train_acc"] <= 1 and r["train_loss"] > 0 for r in records)


def test_checkpoint_carries_specs_and_the_noisy_labels(tmp_path):
    result = train(config(epochs=1, label_noise="symmetric:0.4", seed=5), tmp_path)
    checkpoint = load_checkpoint(tmp_path / "final.pt")
    assert checkpoint.layout == "flatscope"
    assert (
        checkpoint.model_spec
        == "mlp:in_features=64,hidden=4,depth=2,num_classes=10,activation=relu"
    )
    assert checkpoint.data_spec == "digits:split_seed=0"
    extra = checkpoint.metadata["extra"]
    assert extra["epoch"] == 1 and extra["loss"] == "cross_entropy:label_smoothing=0.0"
    assert extra["label_noise"] == "symmetric:rate=0.4,seed=5"
    model = build_model(checkpoint.model_spec)
    apply_state_dict(model, checkpoint.state_dict)
    x = load_data("digits", "test").dataset.tensors[0]
    assert torch.equal(model(x), result.model(x))
    noisy = load_data(checkpoint.data_spec, "train", label_noise=extra["label_noise"]).labels
    clean = load_data(checkpoint.data_spec, "train").labels
    assert torch.equal(extra["train_labels"], noisy)
    assert 0.3 < (noisy != clean).double().mean() < 0.5
    assert json.loads((tmp_path / "config.json").read_text())["label_noise"] == extra["label_noise"]


def test_flatness_tracking_matches_the_exact_hessian(tmp_path):
    run = config(epochs=2, track_flatness=2, flatness_subset=64, flatness_matvecs=60)
    result = train(run, tmp_path)
    assert "hessian_trace" not in result.metrics[0]
    last = result.metrics[1]
    subset = load_data("digits", "train", seed=run.seed).subset(64).batches()
    op = HessianOperator(
        result.model, torch.nn.functional.cross_entropy, subset, dtype=torch.float64
    )
    exact = torch.linalg.eigvalsh(op @ torch.eye(op.shape[0], dtype=torch.float64))
    assert abs(last["hessian_trace"] - exact.sum().item()) <= 4 * last["hessian_trace_stderr"]
    assert last["top_eigenvalue"] == pytest.approx(exact[-1].item(), rel=1e-2)


def test_fsgld_without_noise_trains_exactly_like_sgd(tmp_path):
    sgd = train(config(epochs=2, optimizer="sgd"), tmp_path / "sgd")
    fsgld = train(config(epochs=2, optimizer="fsgld", sigma=0.0, beta_inv=0.0), tmp_path / "f")
    assert without_seconds(sgd.metrics) == without_seconds(fsgld.metrics)
    assert all(
        torch.equal(p, q)
        for p, q in zip(sgd.model.parameters(), fsgld.model.parameters(), strict=True)
    )


def test_training_leaves_the_global_generator_alone(tmp_path):
    state = torch.get_rng_state()
    train(config(epochs=1), tmp_path)
    assert torch.equal(torch.get_rng_state(), state)


def test_divergence_is_reported(tmp_path):
    with pytest.raises(TrainingError, match="diverged in epoch 1"):
        train(config(epochs=1, lr=1e12, momentum=0.0), tmp_path)


def test_make_optimizer_passes_the_hyperparameters():
    params = list(torch.nn.Linear(2, 2).parameters())
    kinds = {"sgd": torch.optim.SGD, "sgld": SGLD, "fsgld": FSGLD, "sam": SAM}
    for name, kind in kinds.items():
        optimizer = make_optimizer(config(optimizer=name, lr=0.3), params)
        assert type(optimizer) is kind
        group = optimizer.param_groups[0]
        assert group["lr"] == 0.3 and group["momentum"] == 0.9 and group["weight_decay"] == 5e-4
    assert make_optimizer(config(optimizer="sam", rho=0.2), params).param_groups[0]["rho"] == 0.2
    fsgld = make_optimizer(config(optimizer="fsgld", beta_inv=1e-6), params)
    assert FSGLD.group_sigma(fsgld.param_groups[0]) == pytest.approx(1e-6 ** (1.1 / 4))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"optimizer": "adam"}, "unknown optimizer 'adam'"),
        ({"label_noise": "symmetric:1.5"}, r"rate must lie in \[0, 1\)"),
        ({"schedule": "multistep:5,2"}, "milestones must be increasing"),
        ({"epochs": 0}, "epochs must be an integer >= 1"),
        ({"eta": 1.0}, r"eta must lie in \(0, 1\)"),
        ({"model": "nope"}, "unknown model 'nope'"),
    ],
)
def test_bad_configurations_say_what_to_change(changes, message):
    with pytest.raises(TrainingError, match=message):
        config(**changes)


def test_model_that_does_not_fit_the_data(tmp_path):
    with pytest.raises(TrainingError, match="has 10 classes; set the model's num_classes=10"):
        train(config(model="mlp:num_classes=3"), tmp_path)


def test_a_configuration_holds_its_optimizers_hyperparameters_only():
    sam = config(optimizer="sam", rho=0.2, epochs=3)
    flat = sam.to_dict()
    assert flat["rho"] == 0.2 and flat["epochs"] == 3 and flat["optimizer"] == "sam"
    assert "beta_inv" not in flat and "sigma" not in flat
    assert TrainConfig.from_dict(flat) == sam
    with pytest.raises(TrainingError, match="rho: not a hyper-parameter of fsgld"):
        config(optimizer="fsgld", rho=0.2)


def test_configurations_of_earlier_versions_are_read():
    """Earlier config.json files list every optimizer's hyper-parameters and no BatchNorm
    choice: the foreign ones are dropped and the statistics were the running ones."""
    old = {**config(optimizer="sgd").to_dict(), "rho": 0.05, "beta_inv": 1e-8, "sigma": None}
    del old["batchnorm"]
    read = TrainConfig.from_dict(old)
    assert read.optimizer == "sgd" and read.batchnorm == "running"
    with pytest.raises(TrainingError, match="not a run configuration"):
        TrainConfig.from_dict({**old, "flavour": "vanilla"})
