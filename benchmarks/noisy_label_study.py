"""Is fSGLD flatter than SGD and SAM on noisy labels? A tuned, multi-seed study at matched loss.

The demo (``flatscope demo``) is one architecture, one noise setting, three seeds and raw
curvature at the last weights. This script asks the question the way a reviewer would:

1. **Tuning, same budget per optimizer, validation split only.** For each architecture, every
   optimizer gets the same configurations count (learning rates x 7 values of its own
   hyper-parameter: 7 x 7 on the CNN, 4 x 7 on the MLP, :data:`LEARNING_RATES`), each trained on
   3 tuning seeds (100, 101, 102) that the experiment does not use, on digits with
   40% symmetric label noise. Score: accuracy on the CLEAN labels of the validation split after
   the last epoch (no early stopping, for every method alike), mean over the tuning seeds. The
   test split is never read during tuning. Second hyper-parameters (:data:`SECOND_AXIS`):
   SGD weight decay; SAM rho 0.01-1; SGLD and fSGLD beta_inv 0, the paper's range 1e-9 and
   1e-7, then 1e-5 to 1e-2 (fSGLD's sigma coupled, ``beta_inv^((1 + eta)/4)``, eta = 0.1);
   and, as an ablation, fSGLD with sigma decoupled (beta_inv fixed at the paper's 1e-8, sigma
   on a grid). The table gives the winner, its margin over the runner-up with the standard
   error of the paired difference over the tuning seeds, and whether it sits at a grid edge.
2. **The experiment.** For each architecture (``mlp``: no BatchNorm; ``cnn:width=8``: BatchNorm)
   and each noise setting (symmetric 40%, asymmetric 30%; tuned on the first, reused on the
   second), 5 seeds of: SGD, SAM, fSGLD (tuned), and two fSGLD ablations: beta_inv = 0 with the
   tuned sigma kept (random weight perturbation without Langevin noise) and the paper's
   beta_inv = 1e-8 with its coupled sigma (0.0063) at fSGLD's tuned learning rate. Each run keeps
   a checkpoint every 4 epochs. Every checkpoint is analysed for its exact training loss (the
   analysed 256 training images with the run's noisy labels, eval mode) and top eigenvalue; the
   final checkpoint and the checkpoints around the matched loss level for the full set:
   Hessian trace (Hutch++, 30 products), scaled trace tr(D H D) with D = diag(|w|), adaptive
   average sharpness (sigma 0.05 |w|), top eigenvalue (Lanczos).
3. **Matched loss.** One level per (architecture, noise) setting: the lowest loss every run of
   the setting reaches (:func:`flatscope.app.matched_loss.common_level`); each run is read where
   its checkpoint losses first reach it, interpolated linearly between the two checkpoints around
   it (:func:`flatscope.app.matched_loss.match_runs`); test accuracy there is interpolated with
   the same weight between the two epochs' records.
4. **Statistics over seeds.** Every ratio of means (method / reference) with its 95% Fieller
   interval and Welch's two-sided p-value over the 5 seeds
   (:func:`flatscope.app.groups.compare_groups`, :mod:`flatscope.app.seed_statistics`), at the
   final checkpoint and at the matched loss.

Outputs in ``--out`` (default ``figures/study``): ``tuning.md``/``tuning.json``,
``results.md``/``results.json`` and figures ``tuning-<arch>.png`` and ``ratios-<setting>.png``;
run folders and tuning records go to ``OUT/runs`` (git-ignored) and are reused on a rerun, so an
interrupted study resumes where it stopped. All training uses one thread per process and at
most ``--workers`` processes.

    OMP_NUM_THREADS=1 python benchmarks/noisy_label_study.py [--workers 2] [--out figures/study]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from flatscope.app.analyze import analyze_checkpoint
from flatscope.app.demo import demo_config
from flatscope.app.groups import compare_groups
from flatscope.app.matched_loss import (
    MatchedPoint,
    common_level,
    loss_path,
    match_level,
    trajectory_report,
)
from flatscope.app.seed_statistics import seed_test
from flatscope.io.atomic import atomic_write
from flatscope.io.run_folder import read_records, run_checkpoints
from flatscope.io.tables import format_table, mean, sample_sd
from flatscope.optim import coupled_sigma
from flatscope.training.trainer import TrainConfig, TrainingError, config_changes, train

ARCHITECTURES = {"mlp": "mlp", "cnn": "cnn:width=8"}
NOISES = {"sym40": "symmetric:0.4", "asym30": "asymmetric:0.3"}
TUNING_NOISE = "sym40"
EPOCHS = 20
CHECKPOINT_EVERY = 4
TUNING_SEEDS = (100, 101, 102)
SEEDS = (0, 1, 2, 3, 4)
#: Learning rates per architecture: the CNN's around the best ones of the demo's earlier tuning
#: (0.02-0.05), widened to 0.01-0.1 after SGD's winner sat at 0.02 and SAM's and fSGLD's at 0.05,
#: then to 0.2 after SAM's and fSGLD's sat at 0.1, to 0.4 after SAM's sat at 0.2, and to 0.8
#: after SGD's and SAM's sat at 0.4;
#: the MLP's from a pilot run (at 0.05 it underfits in 20 epochs: 77% validation accuracy),
#: widened to 0.4 and then 0.8 after every MLP winner sat at the grid's upper edge.
LEARNING_RATES = {"mlp": (0.1, 0.2, 0.4, 0.8), "cnn": (0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.8)}
PAPER_BETA_INV = 1e-8
ETA = 0.1
BETA_INVS = (0.0, 1e-9, 1e-7, 1e-5, 1e-4, 1e-3, 1e-2)
#: Each optimizer's second axis: (its trainer name, field, 7 values, fixed extra settings); the
#: 7th value of each was added when SAM's CNN winner sat at rho 0.5, the end of its first grid.
SECOND_AXIS: dict[str, tuple[str, str, tuple[float, ...], dict[str, float]]] = {
    "sgd": ("sgd", "weight_decay", (0.0, 1e-4, 5e-4, 2e-3, 5e-3, 1e-2, 2e-2), {}),
    "sam": ("sam", "rho", (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0), {}),
    "fsgld": ("fsgld", "beta_inv", BETA_INVS, {}),
    "fsgld_sigma": (
        "fsgld",
        "sigma",
        (0.003, 0.006, 0.012, 0.042, 0.079, 0.15, 0.3),
        {"beta_inv": PAPER_BETA_INV},
    ),
    "sgld": ("sgld", "beta_inv", BETA_INVS, {}),
}
#: Tuned before the experiment needs them.
TUNED_FIRST = ("sgd", "sam", "fsgld")
#: Tuned after the experiment, which does not use them (an ablation and an extra baseline).
TUNED_LAST = ("fsgld_sigma", "sgld")
#: Settings in the order they are run: the BatchNorm CNN on the tuning noise first, the cheap
#: MLP before the CNN's second noise setting.
SETTINGS = (("cnn", "sym40"), ("mlp", "sym40"), ("mlp", "asym30"), ("cnn", "asym30"))
METHODS = ("sgd", "sam", "fsgld", "fsgld_b0", "fsgld_paper")
NAMES = {
    "sgd": "SGD",
    "sam": "SAM",
    "fsgld": "fSGLD",
    "fsgld_sigma": "fSGLD, sigma decoupled (beta_inv 1e-8)",
    "sgld": "SGLD",
    "fsgld_b0": "fSGLD beta_inv=0 (sigma kept)",
    "fsgld_paper": "fSGLD beta_inv=1e-8 (paper)",
}
#: (method, reference) pairs of the ratio tables.
PAIRS = (
    ("fsgld", "sgd"),
    ("fsgld", "sam"),
    ("sam", "sgd"),
    ("fsgld_b0", "fsgld"),
    ("fsgld_paper", "sgd"),
)
ANALYSIS = {
    "inputs": {"subset": 256},
    "num_matvecs": 30,
    "top_k": 1,
    "eig_tol": 1e-2,
    "progress": False,
    "figures": False,
}
PILOT_METRICS = ("eigenvalues",)
FULL_METRICS = ("trace", "scaled_trace", "eigenvalues", "adaptive_sharpness")
#: Rows of the reports that the tables show, in order: (row name in the report, short name).
MEASURES = (
    ("trace", "trace"),
    ("scaled trace", "scaled trace"),
    ("adaptive avg sharpness (sigma=0.05)", "adaptive sharpness"),
    ("top eigenvalue 1", "top eigenvalue"),
)


# ------------------------------------------------------------------------------ tuning


def _config(arch: str, noise: str, optimizer: str, seed: int, **settings: Any):
    return demo_config(
        optimizer,
        seed,
        EPOCHS,
        tuned=False,
        model=ARCHITECTURES[arch],
        label_noise=NOISES[noise],
        **settings,
    )


def _key(settings: dict[str, float]) -> str:
    return ",".join(f"{k}={v:g}" for k, v in sorted(settings.items()))


def _record_path(out: Path, arch: str, name: str, settings: dict[str, float], seed: int) -> Path:
    return out / "runs" / "tuning" / arch / name / f"{_key(settings)},seed={seed}.json"


def tuning_task(out: Path, arch: str, name: str, settings: dict[str, float], seed: int) -> dict:
    """Train one tuning configuration on one seed (or reuse its record): final clean
    validation accuracy, 0 for a diverged run."""
    record_path = _record_path(out, arch, name, settings, seed)
    if record_path.is_file():
        return json.loads(record_path.read_text())
    optimizer = SECOND_AXIS[name][0]
    config = _config(arch, TUNING_NOISE, optimizer, seed, **settings)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        try:
            val_acc, diverged = train(config, scratch).metrics[-1]["val_acc"], False
        except TrainingError:
            val_acc, diverged = 0.0, True
    record = {"val_acc": val_acc, "diverged": diverged, "seconds": time.perf_counter() - start}
    text = json.dumps(record)
    record_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(record_path, lambda file: file.write(text.encode()))
    return record


def recorded_tuning(out: Path, arch: str, name: str) -> TuningResult | None:
    """The tuning of ``name`` on ``arch`` from its records alone, ``None`` if any is missing."""
    scores = []
    for settings in tuning_grid(arch, name):
        paths = [_record_path(out, arch, name, settings, seed) for seed in TUNING_SEEDS]
        if not all(path.is_file() for path in paths):
            return None
        scores.append((settings, [json.loads(path.read_text())["val_acc"] for path in paths]))
    return TuningResult(arch, name, scores)


def tuning_grid(arch: str, name: str) -> list[dict[str, float]]:
    """The configurations of ``name`` on ``arch``: learning rate x its second axis."""
    _, field, values, fixed = SECOND_AXIS[name]
    return [
        {"lr": lr, field: value, **fixed}
        for lr, value in itertools.product(LEARNING_RATES[arch], values)
    ]


@dataclass
class TuningResult:
    """One optimizer's tuning on one architecture: every configuration's per-seed scores."""

    arch: str
    name: str
    scores: list[tuple[dict[str, float], list[float]]]

    def ranked(self) -> list[tuple[dict[str, float], list[float]]]:
        return sorted(self.scores, key=lambda item: -mean(item[1]))

    @property
    def best(self) -> dict[str, float]:
        return self.ranked()[0][0]

    def edges(self) -> list[str]:
        """The axes on which the winner lies at the end of the grid."""
        _, field, values, _ = SECOND_AXIS[self.name]
        best = self.best
        out = []
        for axis, grid in (("lr", LEARNING_RATES[self.arch]), (field, values)):
            if best[axis] in (min(grid), max(grid)):
                out.append(f"{axis} {'low' if best[axis] == min(grid) else 'high'} end")
        return out

    def row(self) -> list[str]:
        (best, a), (second, b) = self.ranked()[:2]
        differences = [x - y for x, y in zip(a, b, strict=True)]
        se = sample_sd(differences) / math.sqrt(len(differences))
        field = SECOND_AXIS[self.name][1]
        return [
            NAMES[self.name],
            _settings_text(best, field, self.name),
            f"{100 * mean(a):.1f} ± {100 * sample_sd(a):.1f}",
            _settings_text(second, field, self.name),
            f"{100 * mean(b):.1f}",
            f"{100 * mean(differences):.1f} ± {100 * se:.1f}",
            ", ".join(self.edges()) or "inside",
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "edges": self.edges(),
            "scores": [{"settings": s, "val_acc": v} for s, v in self.ranked()],
        }


def _settings_text(settings: dict[str, float], field: str, name: str) -> str:
    text = f"lr {settings['lr']:g}, {field} {settings[field]:g}"
    if name == "fsgld":
        text += f" (sigma {coupled_sigma(settings[field], ETA):.3g})"
    return text


TUNING_COLUMNS = (
    "optimizer",
    "winner",
    "val acc % (mean ± sd, 3 seeds)",
    "runner-up",
    "val acc %",
    "margin (points, ± paired SE)",
    "grid edge",
)


# -------------------------------------------------------------------------- experiment


def method_settings(method: str, tuned: dict[str, dict[str, float]]) -> tuple[str, dict]:
    """The optimizer and settings of an experiment method from the architecture's winners."""
    if method in ("sgd", "sam", "fsgld", "sgld"):
        return method, dict(tuned[method])
    fsgld = tuned["fsgld"]
    if method == "fsgld_b0":
        sigma = fsgld.get("sigma", coupled_sigma(fsgld["beta_inv"], ETA))
        return "fsgld", {"lr": fsgld["lr"], "beta_inv": 0.0, "sigma": sigma}
    if method == "fsgld_paper":
        return "fsgld", {"lr": fsgld["lr"], "beta_inv": PAPER_BETA_INV}
    raise ValueError(f"unknown method {method!r}")


def run_dir(out: Path, arch: str, noise: str, method: str, seed: int) -> Path:
    return out / "runs" / f"{arch}-{noise}" / f"{method}-seed{seed}"


def _analyse(checkpoint: Path, folder: Path, metrics: Sequence[str], analysis: dict) -> None:
    analyze_checkpoint(checkpoint, metrics, out=folder, resume=True, **analysis)


def analyse_run(folder: Path, analysis: dict = ANALYSIS) -> None:
    """Analyse every checkpoint of a run for its loss and top eigenvalue, the final one in full
    (reports in ``RUN/trajectory/reports``, reused when done)."""
    for checkpoint in run_checkpoints(folder):
        metrics = FULL_METRICS if checkpoint.path.name == "final.pt" else PILOT_METRICS
        _analyse(
            checkpoint.path, trajectory_report(folder, checkpoint.path).parent, metrics, analysis
        )


def experiment_task(out: Path, arch: str, noise: str, method: str, seed: int, tuned) -> float:
    """Train one run (or resume it) and :func:`analyse_run` it; returns the seconds spent.

    A run recorded with other settings (the winners changed after the grid was widened) is
    deleted and trained again with the current ones."""
    start = time.perf_counter()
    optimizer, settings = method_settings(method, tuned)
    config = _config(arch, noise, optimizer, seed, checkpoint_every=CHECKPOINT_EVERY, **settings)
    folder = run_dir(out, arch, noise, method, seed)
    if folder.is_dir() and _recorded_with_other_settings(folder, config):
        print(f"{folder}: recorded with other settings; trained again", flush=True)
        shutil.rmtree(folder)
    train(config, folder, resume=True)
    analyse_run(folder)
    return time.perf_counter() - start


def _recorded_with_other_settings(folder: Path, config: TrainConfig) -> bool:
    """Whether ``folder`` holds a run of another configuration (or none readable)."""
    try:
        return bool(config_changes(folder, config))
    except TrainingError:
        return True


def matched_task(folder: Path, checkpoints: list[Path], analysis: dict = ANALYSIS) -> float:
    """The full analysis of the checkpoints around the matched loss level."""
    start = time.perf_counter()
    for checkpoint in checkpoints:
        _analyse(checkpoint, trajectory_report(folder, checkpoint).parent, FULL_METRICS, analysis)
    return time.perf_counter() - start


def matched_work(folders: Sequence[Path]) -> tuple[float, list[tuple[Path, list[Path]]]]:
    """The common loss level of the runs and, per run, the checkpoints its point there is
    made of (:func:`flatscope.app.matched_loss.match_level`)."""
    paths = {folder: loss_path(folder) for folder in folders}
    level = common_level({str(folder): path for folder, path in paths.items()})
    work = []
    for folder, path in paths.items():
        point = match_level(path, level)
        if not isinstance(point, MatchedPoint):
            continue
        by_report = {trajectory_report(folder, c.path): c.path for c in run_checkpoints(folder)}
        reports = dict.fromkeys(p.report for p in (point.before, point.after))
        work.append((folder, [by_report[report] for report in reports]))
    return level, work


# ---------------------------------------------------------------------------- tables


def _cell(values: Sequence[float], scale: float = 1.0) -> str:
    values = [scale * v for v in values]
    if len(values) < 2:
        return f"{values[0]:.4g}" if values else "n/a"
    return f"{mean(values):.4g} ± {sample_sd(values):.2g}"


def _test_cell(test) -> str:
    if test.ratio is None:
        return "n/a (reference mean 0)"
    if test.interval is None:
        return f"{test.ratio:.3g} (no test: {test.refused})"
    low, high = test.interval
    return f"{test.ratio:.3g} [{low:.3g}, {high:.3g}] p={test.p_two_sided:.2g}"


def _accuracy_at(records: dict[int, dict], point: MatchedPoint) -> float:
    before = records[point.before.epoch]["test_acc"]
    after = records[point.after.epoch]["test_acc"]
    return (1 - point.weight) * before + point.weight * after


def _best_val_test(records: dict[int, dict]) -> float | None:
    """Test accuracy at the epoch of the best validation accuracy (early stopping), ``None``
    without a validation split."""
    scored = [r for r in records.values() if r.get("val_acc") is not None]
    if not scored:
        return None
    return max(scored, key=lambda r: (r["val_acc"], -r["epoch"]))["test_acc"]


def setting_results(out: Path, arch: str, noise: str, seeds: Sequence[int]) -> dict[str, Any]:
    """Every number of one (architecture, noise) setting (:func:`group_results`)."""
    groups = {m: [run_dir(out, arch, noise, m, s) for s in seeds] for m in METHODS}
    return group_results(groups, PAIRS)


def group_results(
    groups: dict[str, list[Path]], pairs: Sequence[tuple[str, str]]
) -> dict[str, Any]:
    """Per-method summaries (per-seed lists) at the final checkpoint and at the common matched
    loss of all the runs, and the seed tests of ``pairs`` (method, reference)."""
    paths = {f"{m}/{f.name}": loss_path(f) for m, fs in groups.items() for f in fs}
    level = common_level(paths)
    comparison = compare_groups(groups, matched_loss=level)
    points = comparison.matched.points if comparison.matched else {}
    suffix = f" at loss {level:.4g}"
    summary: dict[str, dict[str, list[float]]] = {}
    for method in groups:
        rows = {name: [] for name in ("test acc", "early-stopped test acc", "loss")}
        rows.update({f"{short}{when}": [] for _, short in MEASURES for when in ("", " matched")})
        rows["test acc matched"], rows["matched epoch"] = [], []
        for entry in comparison.groups[method]:
            records = read_records(entry.run_dir)
            values = comparison.rows[entry.label]
            rows["test acc"].append(records[max(records)]["test_acc"])
            early = _best_val_test(records)
            if early is not None:
                rows["early-stopped test acc"].append(early)
            rows["loss"].append(values["loss"][0])
            for name, short in MEASURES:
                rows[short].append(values[name][0])
                if name + suffix in values:
                    rows[f"{short} matched"].append(values[name + suffix][0])
            point = points.get(entry.label)
            if isinstance(point, MatchedPoint):
                rows["test acc matched"].append(_accuracy_at(records, point))
                rows["matched epoch"].append(point.epoch)
        summary[method] = rows
    tests = []
    for method, reference in pairs:
        for measure in summary[method]:
            a, b = summary[method][measure], summary[reference][measure]
            if measure == "matched epoch" or not a or not b:
                continue
            tests.append((method, reference, seed_test(measure, a, b)))
    return {"level": level, "summary": summary, "tests": tests, "notes": comparison.notes}


def setting_tables(
    title: str,
    result: dict[str, Any],
    markdown: bool,
    names: dict[str, str] = NAMES,
    extra: tuple[str, dict[str, str]] | None = None,
) -> str:
    """The tables of :func:`group_results`; ``extra`` adds a column ``(header, by method)`` to
    the final-checkpoint table (the recipe's paper numbers)."""
    summary = result["summary"]
    methods = list(summary)
    level = result["level"]
    finals = ["test acc", "early-stopped test acc", "loss"] + [s for _, s in MEASURES]
    header = ["method", "clean test acc %", "early-stopped test acc %", "train loss"] + [
        s for _, s in MEASURES
    ]
    rows = [
        [names[m]] + [_cell(summary[m][k], 100.0 if "acc" in k else 1.0) for k in finals]
        for m in methods
    ]
    if extra is not None:
        header.insert(2, extra[0])
        for row, method in zip(rows, methods, strict=True):
            row.insert(2, extra[1].get(method, ""))
    matched = ["test acc matched", "matched epoch"] + [f"{s} matched" for _, s in MEASURES]
    matched_header = ["method", "clean test acc %", "epoch"] + [s for _, s in MEASURES]
    matched_rows = [
        [names[m]] + [_cell(summary[m][k], 100.0 if "acc" in k else 1.0) for k in matched]
        for m in methods
    ]
    measures = ["test acc"] + [s for _, s in MEASURES]
    ratio_header = ["ratio (95% Fieller interval, Welch p)"] + [
        f"{m}{when}" for m in measures for when in ("", " matched")
    ]
    by_pair: dict[tuple[str, str], dict[str, Any]] = {}
    for method, reference, test in result["tests"]:
        by_pair.setdefault((method, reference), {})[test.measure] = test
    ratio_rows = [
        [f"{names[m]} / {names[r]}"]
        + [
            _test_cell(tests[k]) if k in tests else "n/a"
            for k in (f"{x}{w}" for x in measures for w in ("", " matched"))
        ]
        for (m, r), tests in by_pair.items()
    ]
    parts = [
        f"## {title}" if markdown else f"== {title}",
        "",
        "At the final checkpoint (mean ± sd over seeds):",
        "",
        format_table(header, rows, markdown),
        "",
        f"At matched training loss {level:.4g} (the lowest loss every run reaches; "
        "interpolated between checkpoints):",
        "",
        format_table(matched_header, matched_rows, markdown),
        "",
        "Ratios of means over seeds:",
        "",
        _transpose(ratio_header, ratio_rows, markdown),
    ]
    return "\n".join(parts)


def _transpose(header: list[str], rows: list[list[str]], markdown: bool) -> str:
    """One row per measure, one column per pair (the ratio table reads better that way)."""
    columns = [header[0].replace("ratio", "measure")] + [row[0] for row in rows]
    body = [[header[i]] + [row[i] for row in rows] for i in range(1, len(header))]
    return format_table(columns, body, markdown)


# --------------------------------------------------------------------------- figures


def tuning_figure(results: list[TuningResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from flatscope.plotting.report_figures import save_figure

    fig, axes = plt.subplots(1, len(results), figsize=(3.2 * len(results), 3), squeeze=False)
    for ax, result in zip(axes[0], results, strict=True):
        field = SECOND_AXIS[result.name][1]
        for lr in LEARNING_RATES[result.arch]:
            scores = [(s[field], v) for s, v in result.scores if s["lr"] == lr]
            xs = list(range(len(scores)))
            ax.errorbar(
                xs,
                [100 * mean(v) for _, v in scores],
                yerr=[100 * sample_sd(v) for _, v in scores],
                marker="o",
                capsize=2,
                label=f"lr {lr:g}",
            )
            ax.set_xticks(xs, [f"{x:g}" for x, _ in scores], rotation=45, fontsize=7)
        ax.set(title=NAMES[result.name], xlabel=field, ylabel="clean val acc % (3 seeds)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, ("png",))
    plt.close(fig)


def ratio_figure(arch: str, noise: str, result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    from flatscope.plotting.report_figures import save_figure

    shorts = [s for _, s in MEASURES]
    fig, axes = plt.subplots(1, len(shorts), figsize=(3.4 * len(shorts), 3.2), sharey=True)
    labels = [f"{NAMES[m]} / {NAMES[r]}" for m, r in PAIRS]
    for ax, short in zip(axes, shorts, strict=True):
        for offset, when, marker in ((-0.15, "", "o"), (0.15, " matched", "^")):
            for i, (m, r) in enumerate(PAIRS):
                test = next(
                    (
                        t
                        for a, b, t in result["tests"]
                        if (a, b) == (m, r) and t.measure == short + when
                    ),
                    None,
                )
                if test is None or test.interval is None:
                    continue
                low, high = (max(x, 1e-3) if math.isfinite(x) else 1e3 for x in test.interval)
                ax.errorbar(
                    test.ratio,
                    i + offset,
                    xerr=[[test.ratio - low], [high - test.ratio]],
                    fmt=marker,
                    color="tab:blue" if not when else "tab:red",
                    capsize=2,
                    label=("final" if not when else "matched loss") if i == 0 else None,
                )
        ax.axvline(1.0, color="gray", lw=0.8)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(short)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{arch}, {NOISES[noise]}: ratio of means over seeds, 95% Fieller interval")
    fig.tight_layout()
    save_figure(fig, path, ("png",))
    plt.close(fig)


# ------------------------------------------------------------------------------ main


def init_worker(threads: int) -> None:
    """Each worker process trains with ``threads`` torch threads."""
    torch.set_num_threads(threads)


def _run_all(pool: ProcessPoolExecutor, tasks: list[tuple]) -> list[Any]:
    futures = [pool.submit(*task) for task in tasks]
    return [future.result() for future in futures]


def tune(
    pool, out: Path, names: Sequence[str], architectures: Sequence[str] = tuple(ARCHITECTURES)
) -> dict[str, list[TuningResult]]:
    """Every tuning run of ``names`` on ``architectures`` (reused when recorded), by arch."""
    tasks, index = [], []
    for arch in architectures:
        for name in names:
            for settings in tuning_grid(arch, name):
                for seed in TUNING_SEEDS:
                    tasks.append((tuning_task, out, arch, name, settings, seed))
                    index.append((arch, name, _key(settings)))
    records = _run_all(pool, tasks)
    results: dict[str, list[TuningResult]] = {}
    for arch in architectures:
        results[arch] = []
        for name in names:
            scores = []
            for settings in tuning_grid(arch, name):
                key = (arch, name, _key(settings))
                scores.append(
                    (
                        settings,
                        [r["val_acc"] for i, r in zip(index, records, strict=True) if i == key],
                    )
                )
            results[arch].append(TuningResult(arch, name, scores))
    return results


def run_setting(pool, out: Path, arch: str, noise: str, seeds, winners) -> None:
    """Train and analyse every run of one setting, then the checkpoints at its matched loss."""
    tasks = [
        (experiment_task, out, arch, noise, method, seed, winners[arch])
        for seed in seeds
        for method in METHODS
    ]
    _run_all(pool, tasks)
    _, work = matched_work([run_dir(out, arch, noise, m, s) for m in METHODS for s in seeds])
    _run_all(pool, [(matched_task, folder, checkpoints) for folder, checkpoints in work])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("figures/study"))
    parser.add_argument("--workers", type=int, default=2, help="training processes at once")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--seeds", type=int, default=len(SEEDS), help="experiment seeds")
    parser.add_argument(
        "--settings",
        nargs="+",
        default=[f"{a}-{n}" for a, n in SETTINGS],
        help="which settings to run (arch-noise), in order",
    )
    parser.add_argument(
        "--skip-ablation-tuning",
        action="store_true",
        help="do not tune fSGLD with decoupled sigma nor SGLD (the experiment uses neither)",
    )
    parser.add_argument(
        "--tables-only",
        action="store_true",
        help="train and analyse nothing: write the tables of what is recorded",
    )
    args = parser.parse_args()
    start = time.perf_counter()
    out: Path = args.out
    seeds = SEEDS[: args.seeds]
    chosen = [tuple(text.split("-")) for text in args.settings]
    if args.tables_only:
        tuning = {
            arch: [r for n in (*TUNED_FIRST, *TUNED_LAST) if (r := recorded_tuning(out, arch, n))]
            for arch in ARCHITECTURES
        }
        done = [
            (arch, noise)
            for arch, noise in chosen
            if all(
                (run_dir(out, arch, noise, m, s) / "final.pt").is_file()
                for m in METHODS
                for s in seeds
            )
        ]
        previous = out / "results.json"
        seconds = json.loads(previous.read_text())["seconds"] if previous.is_file() else math.nan
        write_outputs(out, tuning, done, seeds, seconds)
        return
    workers = ProcessPoolExecutor(args.workers, initializer=init_worker, initargs=(args.threads,))
    with workers as pool:
        tuning = tune(pool, out, TUNED_FIRST)
        print(f"tuning done ({time.perf_counter() - start:.0f} s)", flush=True)
        winners = {arch: {r.name: r.best for r in results} for arch, results in tuning.items()}
        done = []
        for arch, noise in chosen:
            run_setting(pool, out, arch, noise, seeds, winners)
            done.append((arch, noise))
            print(f"{arch}-{noise} done ({time.perf_counter() - start:.0f} s)", flush=True)
            write_outputs(out, tuning, done, seeds, time.perf_counter() - start, quiet=True)
        if not args.skip_ablation_tuning:
            for arch, results in tune(pool, out, TUNED_LAST).items():
                tuning[arch] += results
    write_outputs(out, tuning, done, seeds, time.perf_counter() - start)


def write_outputs(
    out: Path,
    tuning: dict[str, list[TuningResult]],
    settings: Sequence[tuple[str, str]],
    seeds: Sequence[int],
    seconds: float,
    quiet: bool = False,
) -> None:
    """Write (and unless ``quiet`` print) the tuning tables and those of the finished
    ``settings``, their JSON and the figures."""
    out.mkdir(parents=True, exist_ok=True)
    parts_md, parts_text, document = [], [], {"tuning": {}, "settings": {}}
    for arch, results in tuning.items():
        rows = [r.row() for r in results]
        title = f"Tuning on {arch} ({ARCHITECTURES[arch]}), {NOISES[TUNING_NOISE]}"
        for parts, markdown in ((parts_md, True), (parts_text, False)):
            parts += [f"## {title}" if markdown else f"== {title}", ""]
            parts += [format_table(TUNING_COLUMNS, rows, markdown), ""]
        document["tuning"][arch] = {r.name: r.to_dict() for r in results}
        tuning_figure(results, out / f"tuning-{arch}")
    tuning_md = "# Tuning (clean validation split only)\n\n" + "\n".join(parts_md)
    atomic_write(out / "tuning.md", lambda file: file.write(tuning_md.encode()))
    results_md = [f"# Noisy-label study ({len(seeds)} seeds per method, {EPOCHS} epochs)", ""]
    for arch, noise in settings:
        result = setting_results(out, arch, noise, seeds)
        title = f"{arch} ({ARCHITECTURES[arch]}), {NOISES[noise]}"
        results_md += [setting_tables(title, result, True), ""]
        parts_text += [setting_tables(title, result, False), ""]
        ratio_figure(arch, noise, result, out / f"ratios-{arch}-{noise}")
        document["settings"][f"{arch}-{noise}"] = {
            "level": result["level"],
            "summary": result["summary"],
            "tests": [{"method": m, "reference": r, **t.to_dict()} for m, r, t in result["tests"]],
            "notes": result["notes"],
        }
    document["seconds"] = seconds
    results_md.append(f"Wall time of the study: {seconds:.0f} s.")
    text = "\n".join(results_md) + "\n"
    atomic_write(out / "results.md", lambda file: file.write(text.encode()))
    blob = json.dumps(document, indent=1, default=str)
    atomic_write(out / "results.json", lambda file: file.write(blob.encode()))
    if quiet:
        return
    print("\n".join(parts_text))
    print(f"wall time {seconds:.0f} s; tables in {out}/tuning.md and {out}/results.md")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
