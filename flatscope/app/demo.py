"""``flatscope demo``: fSGLD against SGD, SAM and SGLD on noisy labels, raw and scale-invariant.

The protocol (:func:`demo_config`): scikit-learn's 8x8 digits (1079 training, 359 validation
and 359 test images), 40% symmetric label noise on the training labels (seeded by the run's
seed), the zoo's small CNN ``cnn:width=8`` (6,274 parameters, BatchNorm), batch 128, momentum
0.9, a cosine learning-rate schedule, :data:`EPOCHS` epochs: the protocol of
``benchmarks/noisy_label_study.py`` on its BatchNorm CNN. Every optimizer trains the same network
from the same initial weights for each seed, then every final checkpoint is analysed with
:func:`flatscope.app.analyze.analyze` on a fixed subset of the training set with the noisy
labels the run trained on (the objective the optimizer minimized): Hessian trace by Hutch++ with
its standard error, the scaled trace ``tr(D H D)``, ``D = diag(|w|)`` (unchanged by
function-preserving rescalings of BatchNorm-fed weights, which change the raw trace), the top
eigenvalue by Lanczos and the spectral density by stochastic Lanczos quadrature. The verdict
gives fSGLD / SGD and fSGLD / SAM as ratios of means with 95% Fieller intervals and Welch's
p-values over seeds (with 3 or more seeds). These are the curvatures at each run's last weights,
at whatever training loss it reached, and the last weights of a Langevin sampler need not be a
minimum (``flatscope verify`` tests that); comparisons at matched training loss, on a second
architecture without BatchNorm and a second noise setting, with ablations, are the study's
(``benchmarks/noisy_label_study.py``, tables in ``figures/study``).

Hyperparameters (:data:`TUNED`) are the winners of the study's tuning of this CNN
(``benchmarks/tune_demo.py`` runs that part alone): each optimizer had the same budget of 49
configurations, learning rate 0.01 to 0.8 (7 values) times seven values of its second
hyperparameter (SGD: weight decay 0 to 2e-2; SAM: rho 0.01 to 1; fSGLD and SGLD: beta_inv 0,
1e-9, 1e-7, 1e-5, 1e-4, 1e-3, 1e-2, fSGLD's sigma coupled as ``beta_inv^((1 + eta)/4)``, eta =
0.1), scored by the accuracy on the CLEAN labels of the validation split after the last epoch
(no early stopping), mean of three tuning seeds (100, 101, 102) that the demo does not use. The
test split was never consulted. The winners, their margins over the runners-up and which sit at
a grid edge are in ``figures/study/tuning.md``: every margin is within the noise of three
tuning seeds (at most 0.8 points), and SGD's learning rate sits at the grid's upper end (0.8,
weight decay 0.01), next to lr 0.4 with weight decay 0.02: the same product lr x weight decay,
which is what BatchNorm-fed, scale-invariant weights respond to.

Modes: :data:`FULL` (5 seeds, 20 epochs; 212 s on a 2-core machine) and :data:`QUICK`
(1 seed, 10 epochs, smaller analysis: no test over seeds; 28 s there). Cut from the demo
and left to the study: matched-loss comparison (it needs every checkpoint analysed),
adaptive sharpness, the MLP and the second noise setting, the fSGLD ablations.

Outputs in the demo directory: ``runs/<optimizer>-seed<k>/`` (training runs),
``analysis/<optimizer>-seed<k>/report.json``, ``summary.json`` (every number of the table),
the figures ``spectral_density.png``, ``flatness.png`` and ``training.png``, and
``report.md``. Rerunning into the same directory reuses finished runs and analyses.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from flatscope.app.analyze import analyze
from flatscope.app.seed_statistics import MIN_SEEDS, seed_test
from flatscope.data.datasets import load_data
from flatscope.io import apply_state_dict, atomic_write, load_checkpoint
from flatscope.io.report import Report, to_jsonable
from flatscope.io.tables import fixed, mean, sample_sd, spread_cell
from flatscope.io.tables import format_table as layout_table
from flatscope.models.zoo import build_model
from flatscope.optim import coupled_sigma
from flatscope.training.trainer import RunResult, TrainConfig, train

__all__ = [
    "OPTIMIZERS",
    "TUNED",
    "DemoPlan",
    "FULL",
    "QUICK",
    "DemoResult",
    "OptimizerSummary",
    "demo_config",
    "run_demo",
    "main_demo",
    "with_seeds",
    "format_table",
    "compare",
    "verdict",
]

OPTIMIZERS = ("sgd", "sam", "fsgld", "sgld")
NAMES = {"sgd": "SGD", "sam": "SAM", "fsgld": "fSGLD", "sgld": "SGLD"}
DATA, MODEL, LABEL_NOISE = "digits", "cnn:width=8", "symmetric:0.4"
EPOCHS, BATCH_SIZE, SCHEDULE = 20, 128, "cosine"
MOMENTUM, WEIGHT_DECAY = 0.9, 5e-4
LOSS = "cross_entropy"

#: Chosen by benchmarks/tune_demo.py on the clean validation split (see the module docs).
TUNED: dict[str, dict[str, float]] = {
    "sgd": {"lr": 0.8, "weight_decay": 1e-2},
    "sam": {"lr": 0.4, "rho": 0.5},
    "fsgld": {"lr": 0.1, "beta_inv": 1e-5},
    "sgld": {"lr": 0.05, "beta_inv": 1e-4},
}


def demo_config(
    optimizer: str, seed: int, epochs: int = EPOCHS, *, tuned: bool = True, **overrides: Any
) -> TrainConfig:
    """The training configuration of the demo for one optimizer and seed.

    ``tuned=False`` leaves out :data:`TUNED` (the protocol's defaults only); ``overrides``
    replace any field (the tuning script passes the grid values through them).
    """
    settings = {
        "optimizer": optimizer,
        "model": MODEL,
        "data": DATA,
        "label_noise": LABEL_NOISE,
        "epochs": epochs,
        "batch_size": BATCH_SIZE,
        "schedule": SCHEDULE,
        "momentum": MOMENTUM,
        "weight_decay": WEIGHT_DECAY,
        "seed": seed,
        **(TUNED.get(optimizer, {}) if tuned else {}),
        **overrides,
    }
    return TrainConfig.create(**settings)


@dataclass(frozen=True)
class DemoPlan:
    """How much work the demo does.

    Attributes:
        seeds: training seeds per optimizer (0, 1, ...); with 3 or more the verdict tests the
            ratios over seeds.
        epochs: epochs per run.
        track_every: Hessian trace and top eigenvalue during training every this many epochs,
            on ``flatness_subset`` training samples with ``flatness_matvecs`` products.
        analysis_subset: training samples of the final analysis (a fixed subset).
        trace_matvecs: Hutch++ products of the final trace and of the scaled trace.
        density_steps, density_probes: SLQ Lanczos steps and probes of the final density.
    """

    seeds: int = 5
    epochs: int = EPOCHS
    track_every: int = 5
    flatness_subset: int = 256
    flatness_matvecs: int = 12
    analysis_subset: int = 512
    trace_matvecs: int = 30
    density_steps: int = 24
    density_probes: int = 2


FULL = DemoPlan()
QUICK = DemoPlan(seeds=1, epochs=10, track_every=5, analysis_subset=256, density_steps=16)


@dataclass
class OptimizerSummary:
    """One optimizer's numbers over its seeds (lists in seed order)."""

    optimizer: str
    test_acc: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    trace: list[float] = field(default_factory=list)
    trace_stderr: list[float] = field(default_factory=list)
    scaled_trace: list[float] = field(default_factory=list)
    top_eigenvalue: list[float] = field(default_factory=list)
    seconds_per_epoch: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Every list with its mean and sample standard deviation."""
        out: dict[str, Any] = {"optimizer": self.optimizer}
        for key, values in vars(self).items():
            if key != "optimizer":
                out[key] = {"values": values, "mean": mean(values), "sd": sample_sd(values)}
        return out


@dataclass
class DemoResult:
    """What :func:`run_demo` made: the summaries, the printed table and where files are."""

    out: Path
    plan: DemoPlan
    summaries: dict[str, OptimizerSummary]
    table: str
    verdict: str
    seconds: float


# ------------------------------------------------------------------------------ the work


def _analyze_run(run: RunResult, out: Path, plan: DemoPlan, progress: bool) -> Report:
    """Trace, top eigenvalue and density of the final checkpoint on the training subset."""
    checkpoint = load_checkpoint(run.checkpoint)
    model = build_model(checkpoint.model_spec)
    apply_state_dict(model, checkpoint.state_dict)
    extra = checkpoint.metadata["extra"]
    data = load_data(
        checkpoint.data_spec,
        "train",
        labels=extra["train_labels"],
        subset=min(plan.analysis_subset, len(extra["train_labels"])),
        seed=0,
    )
    return analyze(
        model,
        extra["loss"],
        data,
        ("trace", "scaled_trace", "eigenvalues", "density"),
        out=out,
        resume=True,
        figures=False,
        progress=progress,
        checkpoint=checkpoint,
        num_matvecs=plan.trace_matvecs,
        top_k=1,
        density_steps=plan.density_steps,
        density_probes=plan.density_probes,
    )


def _record(summary: OptimizerSummary, run: RunResult, report: Report) -> None:
    metrics = report.metrics
    summary.test_acc.append(run.metrics[-1]["test_acc"])
    summary.train_loss.append(metrics["loss"])
    summary.trace.append(metrics["hessian_trace"]["value"])
    summary.trace_stderr.append(metrics["hessian_trace"]["stderr"])
    summary.scaled_trace.append(metrics["scaled_trace"]["value"])
    summary.top_eigenvalue.append(metrics["top_eigenvalues"]["values"][0])
    summary.seconds_per_epoch.append(mean([r["seconds"] for r in run.metrics]))


def run_demo(
    out: str | Path,
    plan: DemoPlan = FULL,
    *,
    optimizers: Sequence[str] = OPTIMIZERS,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> DemoResult:
    """Train every optimizer on every seed, analyse the final checkpoints, write the outputs.

    Args:
        out: the demo directory (created).
        plan: :data:`FULL`, :data:`QUICK` or a :class:`DemoPlan` of your own.
        optimizers: a subset of :data:`OPTIMIZERS`, in table order.
        progress: progress bars of training and analysis (on a terminal only).
        log: called with one status line per finished run (e.g. ``print``).
    """
    out = Path(out)
    start = time.perf_counter()
    summaries = {name: OptimizerSummary(name) for name in optimizers}
    histories: dict[str, list] = {name: [] for name in optimizers}
    densities: dict[str, list] = {name: [] for name in optimizers}
    traces: dict[str, list] = {name: [] for name in optimizers}
    for seed in range(plan.seeds):
        for name in optimizers:
            tag = f"{name}-seed{seed}"
            config = demo_config(
                name,
                seed,
                plan.epochs,
                track_flatness=plan.track_every,
                flatness_subset=plan.flatness_subset,
                flatness_matvecs=plan.flatness_matvecs,
            )
            run = train(config, out / "runs" / tag, resume=True, progress=progress)
            report = _analyze_run(run, out / "analysis" / tag, plan, progress)
            _record(summaries[name], run, report)
            histories[name].append(run.metrics)
            densities[name].append(report.metrics["spectral_density"])
            traces[name].append(report.metrics["hessian_trace"])
            if log is not None:
                log(
                    f"{tag}: clean test accuracy {100 * run.metrics[-1]['test_acc']:.1f}%, "
                    f"Hessian trace {report.metrics['hessian_trace']['value']:.4g} "
                    f"({time.perf_counter() - start:.0f} s so far)"
                )
    table = format_table(summaries.values(), plan.seeds)
    summary_verdict = verdict(summaries)
    _write_figures(out, densities, traces, summaries, histories)
    seconds = time.perf_counter() - start
    result = DemoResult(out, plan, summaries, table, summary_verdict, seconds)
    _write_summary(result)
    return result


# ------------------------------------------------------------------------------ outputs


TABLE_COLUMNS = (
    "optimizer",
    "clean test acc %",
    "train loss",
    "Hessian trace",
    "trace stderr",
    "scaled trace",
    "top eigenvalue",
    "s/epoch",
)


def format_table(summaries: Sequence[OptimizerSummary], seeds: int, markdown: bool = False) -> str:
    """The demo's table: mean ± standard deviation over seeds of every quantity, and a note.

    ``trace stderr`` is the Hutch++ standard error of a single trace estimate (mean over
    seeds), to compare with the spread over seeds. ``scaled trace`` is ``tr(D H D)``,
    ``D = diag(|w|)``, unchanged by rescalings of BatchNorm-fed weights that keep the function.
    """
    rows = [
        (
            NAMES.get(s.optimizer, s.optimizer),
            spread_cell(s.test_acc, 1, 100.0),
            spread_cell(s.train_loss, 3),
            spread_cell(s.trace),
            fixed(mean(s.trace_stderr), 2),
            spread_cell(s.scaled_trace),
            spread_cell(s.top_eigenvalue),
            f"{mean(s.seconds_per_epoch):.3f}",
        )
        for s in summaries
    ]
    spread = f"± is the standard deviation over {seeds} seeds" if seeds > 1 else "one seed"
    note = f"({spread}; train loss and Hessian on the noisy training labels)"
    return layout_table(TABLE_COLUMNS, rows, markdown) + ("\n\n" if markdown else "\n") + note


def _ratio_text(measure: str, values: list[float], reference: list[float]) -> str:
    """``ratio 0.14 [0.11, 0.18], p = 0.001`` over seeds, or the ratio with why no test."""
    test = seed_test(measure, values, reference)
    if test.interval is None:
        return f"ratio {test.ratio:.3g} (no test with fewer than {MIN_SEEDS} seeds)"
    low, high = test.interval
    return f"ratio {test.ratio:.3g} [{low:.3g}, {high:.3g}], p = {test.p_two_sided:.2g}" + (
        "" if test.p_two_sided < 0.05 else ", not established"
    )


def compare(summaries: dict[str, OptimizerSummary], ours: str = "fsgld", base: str = "sgd") -> str:
    """One sentence: ``ours``'s raw and scaled trace against ``base``'s, as ratios of means with
    their 95% Fieller interval and Welch's p over seeds (:mod:`flatscope.app.seed_statistics`),
    and the accuracy of both."""
    if ours not in summaries or base not in summaries:
        return ""
    a, b = summaries[ours], summaries[base]
    lower = mean(a.trace) < mean(b.trace)
    every_seed = max(a.trace) < min(b.trace) if lower else min(a.trace) > max(b.trace)
    if min(len(a.trace), len(b.trace)) < 2:
        seeds = "one seed"
    else:
        seeds = "on every seed" if every_seed else "the seed ranges overlap"
    accuracy = mean(a.test_acc) - mean(b.test_acc)
    return (
        f"{NAMES[ours]} vs {NAMES[base]} at the last weights: raw Hessian trace "
        f"{'lower' if lower else 'higher'} ({spread_cell(a.trace)} vs {spread_cell(b.trace)}; "
        f"{seeds}; "
        f"{_ratio_text('trace', a.trace, b.trace)}); scaled trace tr(DHD) "
        f"{spread_cell(a.scaled_trace)} vs {spread_cell(b.scaled_trace)} "
        f"({_ratio_text('scaled trace', a.scaled_trace, b.scaled_trace)}); "
        f"{'equal or better' if accuracy >= 0 else 'lower'} clean test accuracy "
        f"({spread_cell(a.test_acc, 1, 100.0)}% vs {spread_cell(b.test_acc, 1, 100.0)}%) at "
        f"training loss {spread_cell(a.train_loss, 3)} vs {spread_cell(b.train_loss, 3)}."
    )


def verdict(summaries: dict[str, OptimizerSummary]) -> str:
    """fSGLD against SGD and against SAM (:func:`compare`), and what the numbers do not say."""
    sentences = [compare(summaries, "fsgld", base) for base in ("sgd", "sam")]
    return " ".join(s for s in sentences if s) + (
        " Ratios are fSGLD / baseline with 95% Fieller intervals over seeds (Welch's test). "
        "These are the last weights of each run at different training losses; "
        "benchmarks/noisy_label_study.py compares at matched loss, on two architectures."
    )


def _write_figures(out: Path, densities, traces, summaries, histories) -> None:
    from flatscope.plotting.demo_figures import (
        density_overlay_figure,
        flatness_figure,
        history_figure,
    )
    from flatscope.plotting.report_figures import save_figure

    tops = {name: s.top_eigenvalue for name, s in summaries.items()}
    save_figure(density_overlay_figure(densities), out / "spectral_density", ("png",))
    save_figure(flatness_figure(traces, tops), out / "flatness", ("png",))
    save_figure(history_figure(histories), out / "training", ("png",))


def _sigma(optimizer: str) -> float:
    hyper = demo_config(optimizer, 0).hyperparameters
    return hyper.sigma if hyper.sigma is not None else coupled_sigma(hyper.beta_inv, hyper.eta)


def _write_summary(result: DemoResult) -> None:
    plan = result.plan
    document = {
        "plan": vars(plan),
        "protocol": {
            "data": DATA,
            "model": MODEL,
            "label_noise": LABEL_NOISE,
            "schedule": SCHEDULE,
            "batch_size": BATCH_SIZE,
            "momentum": MOMENTUM,
        },
        "tuned": {name: TUNED.get(name, {}) for name in result.summaries},
        "summaries": [s.to_dict() for s in result.summaries.values()],
        "verdict": result.verdict,
        "seconds": result.seconds,
    }
    text = json.dumps(to_jsonable(document), indent=2)
    atomic_write(result.out / "summary.json", lambda file: file.write(text.encode()))
    tuned = "\n".join(
        f"| {NAMES.get(name, name)} | "
        + ", ".join(f"{key} = {value:g}" for key, value in TUNED.get(name, {}).items())
        + (f" (sigma = {_sigma(name):.3f})" if name == "fsgld" else "")
        + " |"
        for name in result.summaries
    )
    markdown = f"""# flatscope demo

Digits (8x8) with label noise `{LABEL_NOISE}` on the training labels,
`{MODEL}`, {plan.epochs} epochs, batch {BATCH_SIZE}, {SCHEDULE} schedule, momentum {MOMENTUM},
{plan.seeds} seed(s) per optimizer. Test accuracy on the clean test labels; training loss and
Hessian on a fixed subset of {plan.analysis_subset} training images with their noisy labels
(Hutch++ trace and scaled trace tr(DHD), D = diag(abs(w)), with {plan.trace_matvecs} products
each, Lanczos top eigenvalue, SLQ density with
{plan.density_probes} x {plan.density_steps} products). Seconds per epoch count training steps
only. Total time: {result.seconds:.0f} s.

{format_table(result.summaries.values(), plan.seeds, markdown=True)}

{result.verdict}

Hyperparameters, tuned with `benchmarks/tune_demo.py` on the clean validation split (same
budget of 49 configurations x 3 tuning seeds per optimizer, no early stopping; the test split
was never used; margins and grid edges in `figures/study/tuning.md`):

| optimizer | settings |
|---|---|
{tuned}

![spectral densities](spectral_density.png)

![trace and top eigenvalue](flatness.png)

![trace during training](training.png)
"""
    atomic_write(result.out / "report.md", lambda file: file.write(markdown.encode()))


def main_demo(out: str | Path, plan: DemoPlan, *, quiet: bool = False) -> DemoResult:
    """Run the demo and print its table (what ``flatscope demo`` does)."""
    chatty = not quiet and sys.stderr.isatty()

    def log(line: str) -> None:
        print(line, file=sys.stderr)

    result = run_demo(out, plan, progress=chatty, log=log if chatty else None)
    print(result.table)
    print(result.verdict)
    print(f"figures and report.md in {result.out} ({result.seconds:.0f} s)")
    return result


def with_seeds(plan: DemoPlan, seeds: int | None, epochs: int | None = None) -> DemoPlan:
    """``plan`` with another number of seeds and/or epochs."""
    changes = {k: v for k, v in (("seeds", seeds), ("epochs", epochs)) if v is not None}
    return replace(plan, **changes)
