"""``flatscope compare``: the table on the terminal, files with --out, one-line errors."""

from __future__ import annotations

from flatscope.cli import main
from flatscope.io import Report
from tests._reports import HEADER


def write_report(folder, trace: float) -> str:
    folder.mkdir()
    report = Report.new(HEADER, folder / "report.json")
    report.set_metric("loss", 0.25, 0.0)
    report.set_metric("hessian_trace", {"value": trace, "stderr": 0.5, "per_block": None}, 0.0)
    report.set_metric("top_eigenvalues", {"values": [trace / 4], "residuals": [0.01]}, 0.0)
    return str(folder)


def test_compare_prints_the_shared_metrics_and_writes_files(tmp_path, capsys):
    a, b = write_report(tmp_path / "sgd", 40.0), write_report(tmp_path / "fsgld", 20.0)
    out = tmp_path / "out"
    assert main(["compare", a, b, "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["metric", "sgd", "fsgld"]
    assert lines[1].split() == ["loss", "0.25", "0.25"]
    assert lines[2].split() == ["trace", "40", "±", "0.5", "20", "±", "0.5"]
    assert lines[3].split() == ["top", "eigenvalue", "1", "10", "±", "0.01", "5", "±", "0.01"]
    for name in ("comparison.md", "comparison.json", "trace_comparison.png"):
        assert (out / name).is_file()


def test_labels_name_the_columns(tmp_path, capsys):
    a, b = write_report(tmp_path / "a", 4.0), write_report(tmp_path / "b", 2.0)
    assert main(["compare", a, b, "--labels", "SGD", "fSGLD"]) == 0
    assert capsys.readouterr().out.split()[:3] == ["metric", "SGD", "fSGLD"]
    assert main(["compare", a, b, "--labels", "only-one"]) == 2
    assert "--labels gives 1 names for 2 inputs" in capsys.readouterr().err


def test_bad_inputs_exit_two_with_one_line(tmp_path, capsys):
    a = write_report(tmp_path / "a", 4.0)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text("")
    for args, message in (
        ([a], "at least two reports"),
        ([a, str(tmp_path / "missing")], "does not exist"),
        ([a, str(tmp_path / "run")], "has no report of its final checkpoint"),
    ):
        assert main(["compare", *args]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1


def write_runs(folder, name: str, traces: list[float]) -> None:
    for seed, trace in enumerate(traces):
        run = folder / f"{name}-seed{seed}"
        run.mkdir()
        (run / "metrics.jsonl").write_text("")
        write_report(run / "analysis", trace)


def test_groups_print_per_seed_values_and_ratios_over_seeds(tmp_path, capsys):
    write_runs(tmp_path, "fsgld", [20.0, 22.0, 19.0])
    write_runs(tmp_path, "sgd", [40.0, 44.0, 41.0])
    code = main(
        [
            "compare",
            "--group",
            f"fsgld={tmp_path / 'fsgld-seed*'}",
            "--group",
            "sgd",
            *(str(tmp_path / f"sgd-seed{k}") for k in range(3)),
        ]
    )
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        "per-seed values (fsgld: fsgld-seed0, fsgld-seed1, fsgld-seed2; sgd: "
        "sgd-seed0, sgd-seed1, sgd-seed2)"
    )
    seeds, pair = [line.split() for line in lines if line.startswith("trace ")]
    assert seeds[1:] == ["20", "±", "0.5", "22", "±", "0.5", "19", "±", "0.5"] + [
        "40",
        "±",
        "0.5",
        "44",
        "±",
        "0.5",
        "41",
        "±",
        "0.5",
    ]
    trace = " ".join(pair)
    assert trace.split()[1:4] == ["20.33", "±", "1.5"] and "3, 3" in trace
    assert trace.split()[-1] == "lower" and "0.488" in trace  # 61 / 125


def test_bad_groups_exit_two_with_one_line(tmp_path, capsys):
    a = write_report(tmp_path / "a", 4.0)
    for args, message in (
        (["--group", "x=nothing*", "--group", "y", a], "'nothing*' matches nothing"),
        (["--group", "x", a], "at least two groups"),
        (["--group", "x", a, "--group", "x", a], "same name"),
        ([a, "--group", "x", a, "--group", "y", a], "not both"),
        ([a, a, "--matched-loss", "auto"], "needs run directories"),
    ):
        assert main(["compare", *args]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
