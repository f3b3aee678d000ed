"""Specs read from files are data: a checkpoint naming an import spec never runs its code.

Every command that reads a checkpoint's model, data or loss spec is tried with checkpoints that
name code to run (``touch MARKER``) in each spec and in each import form; each command refuses
with one line that quotes the spec and says how to proceed, leaves nothing behind and creates
no marker. ``--trust-specs`` and a spec typed by the user still import code, in every form
people write (``module:factory`` in the current folder, ``path/file.py:factory``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from flatscope.app.demo import QUICK, demo_config
from flatscope.io import save_checkpoint
from flatscope.models import build_model, model_spec
from flatscope.training.trainer import make_optimizer
from tests._cli_process import THREAD_LIMITS, listing, refused

SPEC = "mlp:hidden=4,depth=1"
FAST = ["--metrics", "trace", "--num-matvecs", "4", "--subset", "32", "--quiet"]
#: Options that keep each command small, and whether it takes --out.
OPTIONS = {
    "analyze": [*FAST, "--no-figures"],
    "verify": ["--num-matvecs", "4", "--subset", "32", "--quiet"],
    "landscape": ["--subset", "32", "--quiet"],
    "trajectory": FAST,
}
USER_MODULE = """
from flatscope.models import build_model

def make_net(hidden: int = 4):
    return build_model(f"mlp:hidden={hidden},depth=1")
"""


def flatscope_checkpoint(path: Path, model=None, **fields) -> None:
    """A checkpoint as ``flatscope train`` writes it; ``fields`` replace its specs."""
    model = model or build_model(SPEC, seed=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    specs = {"model_spec": model_spec(SPEC), "data_spec": "digits", "loss": "cross_entropy"}
    specs.update(fields)
    extra = {"epoch": 1, "loss": specs.pop("loss"), "train_labels": None}
    extra.update(specs.pop("extra", {}))
    save_checkpoint(path, model, optimizer=specs.pop("optimizer", None), extra=extra, **specs)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("specs")
    marker = root / "MARKER"
    touch = f"touch {marker}"
    (root / "evil.py").write_text(f"import os\nos.system({touch!r})\ndef run():\n    pass\n")
    (root / "mymodels.py").write_text(USER_MODULE)
    (root / "nets").mkdir()
    (root / "nets" / "cnn.py").write_text(USER_MODULE)
    (root / "mlp.py").write_text(USER_MODULE)
    hostile = {
        "dotted": f"os.path:os.system:{touch}",
        "top-level": f"os:system:{touch}",
        "file": "evil.py:run",
    }
    flatscope_checkpoint(root / "good.pt")
    for kind, spec in hostile.items():
        flatscope_checkpoint(root / f"model-{kind}.pt", model_spec=spec)
    flatscope_checkpoint(root / "data.pt", data_spec=hostile["dotted"])
    flatscope_checkpoint(root / "loss.pt", loss=hostile["dotted"])
    flatscope_checkpoint(root / "trusted.pt", model_spec="mymodels:make_net:hidden=4")
    run = root / "run"
    flatscope_checkpoint(run / "final.pt", model_spec=hostile["dotted"])
    (run / "config.json").write_text(json.dumps({"config": {"epochs": 1}}))
    (run / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "train_loss": 2.0}) + "\n")
    return {"root": root, "marker": marker, "hostile": hostile}


@pytest.mark.parametrize(
    ("argv", "spec", "option"),
    [
        (["analyze", "model-dotted.pt"], "dotted", "--model"),
        (["analyze", "model-top-level.pt"], "top-level", "--model"),
        (["analyze", "model-file.pt"], "file", "--model"),
        (["analyze", "data.pt"], "dotted", "--data"),
        (["analyze", "loss.pt"], "dotted", "--loss"),
        (["verify", "model-dotted.pt"], "dotted", "--model"),
        (["verify", "good.pt", "--reference", "loss.pt"], "dotted", "--loss"),
        (["landscape", "data.pt", "--resolution", "3"], "dotted", "--data"),
        (["landscape", "good.pt", "model-file.pt", "--resolution", "3"], "file", "--model"),
        (["trajectory", "run"], "dotted", "--model"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_a_checkpoint_naming_code_is_refused(flatscope_cli, workspace, argv, spec, option):
    root, text = workspace["root"], workspace["hostile"][spec]
    out = root / f"out-{'-'.join(argv)}"
    output = [] if argv[0] == "verify" else ["--out", out]
    run_before = listing(root / "run")
    result = flatscope_cli.run(*argv, *OPTIONS[argv[0]], *output, cwd=root)
    marker = workspace["marker"]
    refused(result, repr(text), f"pass {option} ", "--trust-specs", out=out, marker=marker)
    assert listing(root / "run") == run_before


def test_trusted_and_typed_import_specs_still_run(flatscope_cli, workspace):
    root = workspace["root"]
    fast = OPTIONS["analyze"]
    untrusted = flatscope_cli.run("analyze", "trusted.pt", *fast, "--out", "t0", cwd=root)
    refused(untrusted, "'mymodels:make_net:hidden=4'", out=root / "t0")
    runs = {  # mymodels:make_net typed by the user: the console-script test below
        "t1": ["trusted.pt", "--trust-specs"],
        "t2": ["good.pt", "--model", "nets/cnn.py:make_net:hidden=4"],
    }
    for out, argv in runs.items():
        result = flatscope_cli.run("analyze", *argv, *fast, "--out", out, cwd=root)
        assert result.returncode == 0, result.stderr
        report = json.loads((root / out / "report.json").read_text())
        assert report["model"].split(":")[0] in ("mymodels", "nets/cnn.py")
    ambiguous = flatscope_cli.run("analyze", "good.pt", "--model", "mlp:make_net", cwd=root)
    refused(ambiguous, "ambiguous", "./mlp.py:make_net")


def test_train_resume_and_compare_never_build_specs_from_files(flatscope_cli, workspace):
    root, hostile = workspace["root"], workspace["hostile"]["dotted"]
    run = root / "resumed"
    argv = ["train", "--model", SPEC, "--epochs", "1", "--optimizer", "sgd", "--out", run]
    model = build_model(SPEC, seed=0)
    config = {**_train_config(), "model": SPEC, "epochs": 1, "optimizer": "sgd"}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    extra = {"torch_rng_state": torch.get_rng_state(), "config": config}
    flatscope_checkpoint(
        run / "final.pt", model, model_spec=hostile, loss=hostile, optimizer=optimizer, extra=extra
    )
    (run / "config.json").write_text(json.dumps({"config": config, "model_spec": hostile}))
    (run / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "test_acc": 0.5}) + "\n")
    report = {**_report(), "model": hostile, "loss": hostile}
    for name in ("a", "b"):
        (root / f"{name}.json").write_text(json.dumps(report))
    resumed = flatscope_cli.start(*argv, "--resume", "--quiet", cwd=root)
    compared = flatscope_cli.run("compare", "a.json", "b.json", cwd=root)
    assert flatscope_cli.wait(resumed).returncode == 0
    assert compared.returncode == 0, compared.stderr
    assert not workspace["marker"].exists()


def test_demo_refuses_a_planted_checkpoint(flatscope_cli, workspace):
    root, hostile = workspace["root"], workspace["hostile"]["dotted"]
    out = root / "demo"
    config = demo_config("sgd", 0, QUICK.epochs, track_flatness=5, flatness_matvecs=12)
    model = build_model(config.model)
    optimizer = make_optimizer(config, list(model.parameters()))
    extra = {"torch_rng_state": torch.get_rng_state(), "train_labels": torch.zeros(1079).long()}
    run = out / "runs" / "sgd-seed0"
    flatscope_checkpoint(
        run / "final.pt", model, model_spec=hostile, optimizer=optimizer, extra=extra
    )
    (run / "config.json").write_text(json.dumps({"config": config.to_dict()}))
    records = [{"epoch": epoch, "seconds": 1.0} for epoch in range(1, QUICK.epochs + 1)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    before = listing(out)
    result = flatscope_cli.run("demo", "--quick", "--quiet", "--out", out, cwd=root)
    refused(result, repr(hostile), out=out, before=before, marker=workspace["marker"])


def test_the_console_script_behaves_as_the_forked_children(flatscope_cli, workspace):
    """One real ``exec`` anchors the warm-interpreter harness: the installed ``flatscope``
    script imports ``mymodels`` from the current folder although its own folder heads
    ``sys.path``, then refuses the checkpoint's data spec with the forked child's very line."""
    root = workspace["root"]
    argv = ["analyze", "data.pt", "--model", "mymodels:make_net", *FAST, "--out", "x1"]
    script = Path(sys.executable).with_name("flatscope")
    real = subprocess.run(
        [str(script), *argv],
        cwd=root,
        env={**os.environ, **THREAD_LIMITS},
        capture_output=True,
        text=True,
        timeout=300,
    )
    forked = flatscope_cli.run(*argv, cwd=root)
    refused(forked, "names the data spec", out=root / "x1", marker=workspace["marker"])
    assert (real.returncode, real.stdout, real.stderr) == (2, "", forked.stderr)


def _train_config() -> dict:
    from flatscope.training.trainer import TrainConfig

    return TrainConfig().to_dict()


def _report() -> dict:
    from flatscope.io import Report
    from tests._reports import HEADER

    report = Report.new(HEADER)
    report.set_metric("loss", 1.0, 0.1)
    return report.to_dict()
