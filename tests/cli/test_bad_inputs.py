"""Every bad input of issue 11, through the command line in a child process: exit status 2, one
line on stderr that says what to do, no traceback, nothing left in the output folder.

Numbers are validated before any work (with the limits ``--help`` states), reports are checked
by the one validator of ``Report.load``, a failing command leaves no partial files, user code
that exits or is interrupted is reported, and the messages name the cause and the fix.
"""

from __future__ import annotations

import json

import pytest
import torch

from flatscope.io import Report, save_checkpoint
from flatscope.models import build_model, model_spec
from flatscope.training.trainer import TrainConfig
from tests._cli_process import listing, refused
from tests._reports import HEADER

SPEC = "mlp:hidden=4,depth=1"  # 310 parameters
QUICK = ["--subset", "16", "--quiet"]
ANALYZE = ["--metrics", "trace", "--num-matvecs", "4", *QUICK, "--no-figures"]
USER_CODE = """
import sys
import torch
from torch import nn

def labels99(split="train"):
    return torch.rand(40, 1, 8, 8), torch.arange(40) % 100 + 60

def exits(split="train"):
    sys.exit(0)

def interrupts(split="train"):
    raise KeyboardInterrupt

def tagged(split="train", tag=None):
    assert tag == "abc", tag
    return torch.rand(40, 1, 8, 8), torch.arange(40) % 10

class Exiting(nn.Linear):
    def forward(self, x):
        sys.exit(3)

def exiting_model():
    return nn.Sequential(nn.Flatten(), Exiting(64, 10))
"""


def report_with(**metrics) -> dict:
    report = Report.new(HEADER)
    report.set_metric("loss", 1.0, 0.0)
    document = report.to_dict()
    document["metrics"].update(metrics)
    return document


DENSITY = {"nodes": [[0.0, 1.0]], "weights": [[0.5, 0.5]], "num_matvecs": 2, "method": "slq"}
REPORTS = {
    "good": report_with(spectral_density=DENSITY),
    "string-nan": report_with(hessian_trace={"value": "NaN", "stderr": 1.0}),
    "lengths": report_with(top_eigenvalues={"values": [3.0, 2.0], "residuals": [0.1]}),
    "density": report_with(spectral_density={**DENSITY, "weights": [[1.0]]}),
    "empty-density": report_with(spectral_density={**DENSITY, "nodes": [], "weights": []}),
}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    (root / "usercode.py").write_text(USER_CODE)
    model = build_model(SPEC, seed=0)
    state = model.state_dict()
    specs = {"model_spec": model_spec(SPEC), "data_spec": "digits"}
    save_checkpoint(root / "good.pt", model, **specs, extra={"loss": "cross_entropy"})
    labels = {"loss": "cross_entropy", "train_labels": torch.arange(1079) % 100}
    save_checkpoint(root / "labels.pt", model, **specs, extra=labels)
    torch.save({k: v.to(torch.int64) for k, v in state.items()}, root / "int.pt")
    torch.save({}, root / "empty.pt")
    torch.save(state, root / "bare.pt")
    exiting = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    torch.save(exiting.state_dict(), root / "exiting.pt")
    for name, document in REPORTS.items():
        (root / f"{name}.json").write_text(json.dumps(document))
    run = root / "run"
    run.mkdir()
    (run / "final.pt").write_bytes((root / "good.pt").read_bytes())
    (run / "config.json").write_text('{"config": {"epochs": ')  # cut off
    resumed = root / "resume-bare"
    resumed.mkdir()
    config = TrainConfig.create(model=SPEC, epochs=1, optimizer="sgd").to_dict()
    (resumed / "config.json").write_text(json.dumps({"config": config}))
    (resumed / "final.pt").write_bytes((root / "bare.pt").read_bytes())
    (root / "analysis").mkdir()
    (root / "analysis" / "report.json").write_text(json.dumps(REPORTS["string-nan"]))
    return root


CASES = {
    # landscape: limits stated in --help, checked before any work
    "range inf": (["landscape", "good.pt", "--range", "inf", *QUICK], "--range must be a positive"),
    "range 1e30": (["landscape", "good.pt", "--range", "1e30", *QUICK], "at most 1e+06, got 1e+30"),
    "resolution 0": (["landscape", "good.pt", "--resolution", "0", *QUICK], "2 to 1001 points"),
    "resolution 1e8": (["landscape", "good.pt", "--resolution", "100000000"], "got 100000000"),
    "second checkpoint": (
        ["landscape", "good.pt", "bare.pt", "--resolution", "3", *QUICK],
        "bare.pt: it does not say which model it holds; pass --model",
    ),
    # analyze: each estimator's minimum, counts against the parameters, absurd budgets
    "hutchpp 2": (["analyze", "good.pt", *ANALYZE, "--num-matvecs", "2"], "at least 4 for"),
    "na_hutchpp 3": (
        ["analyze", "good.pt", *ANALYZE, "--trace-method", "na_hutchpp", "--num-matvecs", "3"],
        "at least 6 for trace method na_hutchpp, got 3",
    ),
    "top-k": (
        ["analyze", "good.pt", *ANALYZE, "--metrics", "eigenvalues", "--top-k", "5000"],
        "top_k (--top-k) is 5000, more than the 310 parameters analysed",
    ),
    "1e12 products": (
        ["analyze", "good.pt", *ANALYZE, "--num-matvecs", "1000000000000"],
        "asks for 1,000,000,000,000 Hessian-vector products",
    ),
    "density budget": (
        ["analyze", "good.pt", *ANALYZE, "--density-steps", "1000000", "--density-probes", "2"],
        "density steps x probes asks for 2,000,000",
    ),
    "int64 weights": (["analyze", "int.pt", "--model", SPEC, *ANALYZE], "dtype mismatches"),
    "empty dict": (["analyze", "empty.pt", "--model", SPEC, *ANALYZE], "holds an empty dict"),
    "labels of a spec": (
        ["analyze", "good.pt", "--data", "synthetic:d=64,classes=100", *ANALYZE],
        "labels of data 'synthetic:",
    ),
    "labels of a checkpoint": (
        ["analyze", "labels.pt", *ANALYZE],
        "the training labels of labels.pt run from",
    ),
    "labels of a factory": (
        ["analyze", "good.pt", "--data", "usercode:labels99", *ANALYZE],
        "labels of data 'usercode:labels99' run from",
    ),
    "train on labels of a factory": (
        ["train", "--data", "usercode:labels99", "--model", SPEC, "--epochs", "1"],
        "labels of data 'usercode:labels99' run from",
    ),
    "factory exits": (
        ["analyze", "good.pt", "--data", "usercode:exits", *ANALYZE],
        "called sys.exit(0); a factory must return, not exit",
    ),
    "factory interrupted": (
        ["analyze", "good.pt", "--data", "usercode:interrupts", *ANALYZE],
        "it was interrupted (KeyboardInterrupt)",
    ),
    "resume string values": (
        ["analyze", "good.pt", *ANALYZE, "--resume", "--out", "analysis"],
        "metrics.hessian_trace.value is 'NaN', not a number (reports store NaN",
    ),
    # reports: one validator in Report.load
    "verify string NaN": (["verify", "good.json", "--reference", "string-nan.json"], "'NaN'"),
    "verify lengths": (["verify", "good.json", "--reference", "lengths.json"], "2 values but 1"),
    "compare density": (["compare", "good.json", "density.json"], "nodes and weights must be"),
    "plot empty density": (["plot", "empty-density.json", "--out", "figs"], "non-empty tables"),
    # run folders
    "trajectory config": (["trajectory", "run", *QUICK], "run/config.json is corrupt"),
    "lr inf": (["train", "--lr", "inf", "--model", SPEC], "lr must be a finite number, got inf"),
    "diverging": (
        [
            "train",
            "--lr",
            "1e30",
            "--model",
            "linear",
            "--batch-size",
            "4",
            "--epochs",
            "1",
            "--data",
            "synthetic:n=60,d=64,classes=10",
            "--quiet",
        ],
        "training diverged in epoch 1",
    ),  # fmt: skip
    "resume bare": (
        ["train", "--model", SPEC, "--epochs", "1", "--optimizer", "sgd", "--resume"],
        "resume-bare/final.pt: it is not a checkpoint of flatscope train",
    ),
    # argparse: one line and where to read more
    "argparse type": (["analyze", "good.pt", "--top-k", "abc"], "see `flatscope analyze --help`"),
    "argparse command": (["bogus"], "invalid choice: 'bogus'"),
}
OUT = {
    "resume bare": "resume-bare",
    "resume string values": "analysis",
    "plot empty density": "figs",
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(flatscope_cli, root, case):
    argv, needle = CASES[case]
    out = root / OUT.get(case, f"out-{case.replace(' ', '-')}")
    before = listing(out)
    takes_out = argv[0] in ("analyze", "landscape", "compare", "trajectory", "train")
    output = ["--out", str(out)] if takes_out and "--out" not in argv else []
    refused(flatscope_cli.run(*argv, *output, cwd=root), needle, out=out, before=before)


def test_user_code_that_exits_mid_command_and_quoted_values(flatscope_cli, root):
    """A model whose forward pass calls ``sys.exit(3)`` is reported, not a silent exit; a
    quoted value reaches an unhinted parameter as a string."""
    argv = ["analyze", "exiting.pt", "--model", "usercode:exiting_model", *ANALYZE]
    refused(flatscope_cli.run(*argv, "--out", "x", cwd=root), "called sys.exit(3)", out=root / "x")
    argv = ["analyze", "good.pt", "--data", "usercode:tagged:tag='abc'", *ANALYZE, "--out", "y"]
    result = flatscope_cli.run(*argv, cwd=root)
    assert result.returncode == 0, result.stderr
