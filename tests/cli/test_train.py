import json

import pytest
import torch

from flatscope.cli import main
from flatscope.io import load_checkpoint

TINY = ["--model", "mlp:hidden=4", "--epochs", "2", "--quiet"]


def test_train_writes_a_run_directory(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--optimizer", "sam", "--rho", "0.1", "--label-noise", "symmetric:0.4"]
    argv += ["--schedule", "multistep:1", "--lr", "0.2", "--seed", "7", "--out", str(out)]
    assert main(argv + TINY) == 0
    assert capsys.readouterr().err == ""
    saved = json.loads((out / "config.json").read_text())["config"]
    assert saved["optimizer"] == "sam" and saved["rho"] == 0.1 and saved["seed"] == 7
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in records] == pytest.approx([0.2, 0.02])
    checkpoint = load_checkpoint(out / "final.pt")
    assert checkpoint.model_spec.startswith("mlp:") and checkpoint.metadata["extra"]["epoch"] == 2


def test_resume_flag_continues_the_run(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["train", "--optimizer", "fsgld", "--out", out, *TINY]) == 0
    before = load_checkpoint(f"{out}/final.pt").state_dict
    assert main(["train", "--optimizer", "fsgld", "--out", out, "--resume", *TINY]) == 0
    after = load_checkpoint(f"{out}/final.pt").state_dict
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert main(["train", "--optimizer", "fsgld", "--out", out, *TINY]) == 2
    assert "pass --resume" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--optimizer", "adam"], "unknown optimizer 'adam'; choose one of sgd, sam, fsgld, sgld"),
        (["--label-noise", "symmetric:1.5"], "label noise rate must lie in [0, 1), got 1.5"),
        (["--label-noise", "uniform:0.2"], "unknown label noise 'uniform'"),
        (["--schedule", "steps"], "unknown schedule 'steps'"),
        (["--device", "cuda:99" if torch.cuda.is_available() else "cuda"], "cuda"),
    ],
)
def test_bad_options_give_one_line_errors(tmp_path, capsys, options, message):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *TINY, *options]) == 2
    err = capsys.readouterr().err
    assert err.startswith("flatscope: error: ") and message in err
    assert err.count("\n") == 1
    assert not out.exists()


def test_analyze_reads_a_trained_checkpoint_without_model(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--optimizer", "fsgld", "--out", str(run), *TINY]) == 0
    out = tmp_path / "analysis"
    argv = ["analyze", str(run / "final.pt"), "--metrics", "trace", "--num-matvecs", "4"]
    assert main([*argv, "--subset", "32", "--out", str(out), "--quiet"]) == 0, capsys.readouterr()
    report = json.loads((out / "report.json").read_text())
    assert report["model"] == load_checkpoint(run / "final.pt").model_spec
    assert report["data"]["spec"] == "digits:split_seed=0"


def test_analyze_uses_the_noisy_labels_and_loss_the_run_trained_on(tmp_path, capsys):
    """The Hessian analysed is the one of the objective that was minimised."""
    from flatscope.app.analyze import analyze
    from flatscope.data import load_data
    from flatscope.models import build_model

    run = tmp_path / "run"
    noise = ["--label-noise", "symmetric:0.4"]
    assert main(["train", "--optimizer", "sgd", "--out", str(run), *noise, *TINY]) == 0
    out = tmp_path / "analysis"
    argv = ["analyze", str(run / "final.pt"), "--metrics", "trace", "--num-matvecs", "4"]
    assert main([*argv, "--subset", "32", "--out", str(out), "--quiet", "--no-figures"]) == 0
    reported = json.loads((out / "report.json").read_text())["metrics"]["loss"]

    checkpoint = load_checkpoint(run / "final.pt")
    extra = checkpoint.metadata["extra"]
    model = build_model(checkpoint.model_spec)
    model.load_state_dict(checkpoint.state_dict)
    noisy = load_data(checkpoint.data_spec, "train", labels=extra["train_labels"]).subset(32)
    clean = load_data(checkpoint.data_spec, "train").subset(32)
    assert not torch.equal(noisy.labels, clean.labels)
    expected = analyze(model, extra["loss"], noisy, "trace", num_matvecs=4, progress=False)
    assert reported == expected.metrics["loss"]


def test_resume_reads_the_saved_configuration(tmp_path, capsys):
    out = tmp_path / "run"
    first = ["train", "--optimizer", "sam", "--rho", "0.1", "--checkpoint-every", "1"]
    assert (
        main([*first, "--model", "mlp:hidden=4", "--epochs", "2", "--quiet", "--out", str(out)])
        == 0
    )
    whole = load_checkpoint(out / "final.pt").state_dict
    (out / "final.pt").unlink()  # as if killed after the first epoch's checkpoint
    lines = (out / "metrics.jsonl").read_text().splitlines(keepends=True)
    (out / "metrics.jsonl").write_text(lines[0])
    assert main(["train", "--out", str(out), "--resume", "--quiet"]) == 0
    resumed = load_checkpoint(out / "final.pt").state_dict
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--rho", "0.2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--rho 0.2 (the run has 0.1)" in err and err.count("\n") == 1


def test_resume_takes_no_code_from_the_configuration_file(tmp_path, capsys):
    out = tmp_path / "run"
    marker = tmp_path / "MARKER"
    assert main(["train", *TINY, "--epochs", "1", "--optimizer", "sgd", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    config["config"]["model"] = f"os.path:os.system:touch {marker}"
    (out / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--quiet"]) == 2
    assert "--trust-specs" in capsys.readouterr().err
    assert not marker.exists()
