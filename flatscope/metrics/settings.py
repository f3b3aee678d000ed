"""The settings of an analysis: everything besides model, loss and data that sets its numbers.

Each field carries its command-line help in ``metadata["help"]``; the command line generates
its options from these fields (:mod:`flatscope.cli.options`), so every default is stated here
once.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from flatscope.errors import FlatscopeError
from flatscope.linalg.trace import METHODS

__all__ = [
    "BUDGETS",
    "COMMON_SETTINGS",
    "CURVATURES",
    "DTYPES",
    "MAX_MATVECS",
    "PRESET_SETTINGS",
    "TRACE_MIN_MATVECS",
    "AnalysisError",
    "AnalysisSettings",
    "check_device",
    "flag",
]

DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: The curvature matrices an analysis can measure (:mod:`flatscope.operators`).
CURVATURES = ("hessian", "ggn", "fisher")
#: Settings every analysis reads; the others belong to the metrics that read them.
COMMON_SETTINGS = ("seed", "dtype", "device", "params", "curvature")
#: The fewest products each trace method accepts: Hutch++ splits its budget in thirds,
#: NA-Hutch++ in sixths and thirds, XTrace in halves; a standard error needs two samples.
TRACE_MIN_MATVECS = {"hutchinson": 2, "hutchpp": 4, "na_hutchpp": 6, "xtrace": 4}
#: The most products one estimate may spend (each one is a pass over all of the data).
MAX_MATVECS = 1_000_000
#: The ``--budget`` presets: the product budgets (and the eigenvalue tolerance, which decides
#: when an eigenvalue search stops spending) of every metric together. ``standard`` is the
#: default; ``quick`` spends about a quarter of its products with wider error bars (a trace
#: estimate's error shrinks like ``1/m`` for Hutch++, Meyer et al. 2021, so 30 products give
#: about 3x the error of 100), ``precise`` about four times more.
BUDGETS: dict[str, dict[str, Any]] = {
    "quick": {
        "num_matvecs": 30,
        "eig_max_matvecs": 150,
        "eig_tol": 1e-2,
        "density_steps": 40,
        "density_probes": 1,
    },
    "standard": {
        "num_matvecs": 100,
        "eig_max_matvecs": 500,
        "eig_tol": 1e-3,
        "density_steps": 90,
        "density_probes": 2,
    },
    "precise": {
        "num_matvecs": 300,
        "eig_max_matvecs": 2000,
        "eig_tol": 1e-4,
        "density_steps": 150,
        "density_probes": 8,
    },
}
#: The settings a preset sets: ``None`` in :class:`AnalysisSettings` means "from the preset".
PRESET_SETTINGS = tuple(BUDGETS["standard"])


class AnalysisError(FlatscopeError, ValueError):
    """Analysis inputs that cannot work: an unknown metric, a bad setting, a non-finite loss."""


def flag(name: str) -> str:
    """A setting's name with its command-line flag, for messages: ``top_k (--top-k)``."""
    return f"{name} (--{name.replace('_', '-')})"


def _field(default: Any, help: str, **metadata: Any) -> Any:
    return dataclasses.field(default=default, metadata={"help": help, **metadata})


def _preset_field(name: str, help: str, **metadata: Any) -> Any:
    """Setting ``name``, which ``budget`` sets unless it is given; its help states every
    preset's value (the command line shows no single default for it)."""
    values = ", ".join(f"{preset} {BUDGETS[preset][name]:g}" for preset in BUDGETS)
    return _field(None, f"{help} (default set by --budget: {values})", **metadata)


@dataclasses.dataclass(frozen=True)
class AnalysisSettings:
    """Everything besides model, loss and data that determines an analysis' numbers.

    Attributes:
        seed: seeds every estimator's probes (and the command line's data subset).
        dtype: ``"float32"`` or ``"float64"``, the dtype of every Hessian product.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...; ``None`` for the model's device.
        params: parameter names or globs to analyse (``None``: all trainable parameters).
        curvature: the matrix every product multiplies: ``"hessian"``, ``"ggn"`` (the
            generalized Gauss-Newton matrix) or ``"fisher"`` (the empirical Fisher).
        trace_method: a method of :func:`flatscope.linalg.trace`.
        budget: a preset of :data:`BUDGETS` that sets the product budgets below (and
            ``eig_tol``) left at ``None``; values given one by one win, and after construction
            every one of them holds a number (what the report records).
        num_matvecs: Hessian-vector products of the trace and the diagonal estimates.
        top_k, bottom_k: how many largest and most negative eigenvalues to find.
        eig_tol: eigenvalues stop when every residual is at most ``eig_tol * max|theta|``.
        eig_max_matvecs: product budget of each eigenvalue search.
        density_steps, density_probes: Lanczos steps per probe and probes of the density.
        sharpness_sigma: standard deviation of the Gaussian weight perturbation.
        sharpness_rho: radius of the l2 ball of worst-case sharpness.
        adaptive_sigma, adaptive_rho: the same for adaptive sharpness, relative to ``|w|``
            coordinate-wise (:mod:`flatscope.metrics.adaptive_sharpness`).
        layer_depth: how :mod:`flatscope.metrics.per_layer` groups parameters into layers.
    """

    seed: int = _field(0, "seeds the data subset and every estimator", minimum=0)
    dtype: str = _field("float32", "dtype of every Hessian product", choices=tuple(DTYPES))
    device: str | None = _field(
        None, "cpu or cuda[:N] (default: the model's device, cpu)", metavar="DEVICE"
    )
    params: tuple[str, ...] | None = _field(
        None,
        "analyse only these parameters (names or globs such as 'fc.*')",
        nargs="+",
        metavar="GLOB",
    )
    curvature: str = _field(
        "hessian",
        "the matrix every product multiplies: the Hessian, the generalized Gauss-Newton matrix "
        "J^T H_out J, or the empirical Fisher (mean of per-sample gradient outer products)",
        choices=CURVATURES,
    )
    trace_method: str = _field("hutchpp", "trace estimator", choices=tuple(METHODS))
    budget: str = _field(
        "standard",
        "sets the product budgets of every metric together (each budget option states its "
        "preset values); options given one by one win",
        choices=tuple(BUDGETS),
    )
    num_matvecs: int | None = _preset_field(
        "num_matvecs",
        "Hessian-vector products for the trace and the diagonal: at least 2 (hutchinson), 4 "
        "(hutchpp, xtrace) or 6 (na_hutchpp), at most 1,000,000",
        minimum=2,
    )
    top_k: int = _field(5, "number of largest eigenvalues, at most the parameters", minimum=1)
    bottom_k: int = _field(0, "number of most negative eigenvalues; 0 skips them", minimum=0)
    eig_tol: float | None = _preset_field(
        "eig_tol", "eigenvalues stop at residuals <= tol * |lambda_max|"
    )
    eig_max_matvecs: int | None = _preset_field(
        "eig_max_matvecs", "product budget of each eigenvalue search, at most 1,000,000", minimum=1
    )
    density_steps: int | None = _preset_field(
        "density_steps",
        "Lanczos steps per probe of the spectral density (steps x probes <= 1,000,000)",
        minimum=1,
    )
    density_probes: int | None = _preset_field(
        "density_probes", "random probes of the spectral density", minimum=1
    )
    sharpness_sigma: float = _field(0.01, "std of the Gaussian perturbation, average sharpness")
    sharpness_rho: float = _field(0.05, "l2 radius of worst-case sharpness")
    adaptive_sigma: float = _field(
        0.05, "std of the Gaussian perturbation relative to |w|, adaptive average sharpness"
    )
    adaptive_rho: float = _field(0.5, "l2 radius of e / |w|, adaptive worst-case sharpness")
    layer_depth: int = _field(
        0,
        "per_layer: group parameters by the first N parts of their dotted names (0: up to the "
        "first index, e.g. model.layers.3, else the owning module)",
        minimum=0,
    )

    def __post_init__(self) -> None:
        if self.budget in BUDGETS:  # the preset fills what was not given
            for name, value in BUDGETS[self.budget].items():
                if getattr(self, name) is None:
                    object.__setattr__(self, name, value)
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if "minimum" in item.metadata:
                _check_integer(item.name, value, item.metadata["minimum"])
            elif item.type.startswith("float"):
                _check_positive(item.name, value)
            if "choices" in item.metadata and value not in item.metadata["choices"]:
                raise AnalysisError(
                    f"unknown {flag(item.name)} {value!r}; choose one of "
                    f"{', '.join(item.metadata['choices'])}"
                )
        if isinstance(self.params, str):
            object.__setattr__(self, "params", (self.params,))
        elif self.params is not None:
            object.__setattr__(self, "params", tuple(self.params))
        if self.device is not None:
            object.__setattr__(self, "device", str(check_device(self.device)))
        self._check_budgets()

    def _check_budgets(self) -> None:
        """Each trace method's minimum, and at most :data:`MAX_MATVECS` products an estimate."""
        minimum = TRACE_MIN_MATVECS.get(self.trace_method, 2)
        if self.num_matvecs < minimum:
            raise AnalysisError(
                f"{flag('num_matvecs')} must be at least {minimum} for trace method "
                f"{self.trace_method}, got {self.num_matvecs}"
            )
        spends = {
            flag("num_matvecs"): self.num_matvecs,
            flag("eig_max_matvecs"): self.eig_max_matvecs,
            "density steps x probes": self.density_steps * self.density_probes,
        }
        for what, products in spends.items():
            if products > MAX_MATVECS:
                raise AnalysisError(
                    f"{what} asks for {products:,} Hessian-vector products, each a pass over all "
                    f"of the data; the limit is {MAX_MATVECS:,}"
                )

    @property
    def torch_dtype(self) -> torch.dtype:
        """The dtype of every Hessian product, as a ``torch.dtype``."""
        return DTYPES[self.dtype]

    def to_dict(self) -> dict[str, Any]:
        """The settings as the report stores them."""
        out = dataclasses.asdict(self)
        out["params"] = None if self.params is None else list(self.params)
        return out


def _check_integer(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise AnalysisError(f"{flag(name)} must be an integer >= {minimum}, got {value!r}")


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise AnalysisError(f"{flag(name)} must be a positive number, got {value!r}")
    if not math.isfinite(value):
        raise AnalysisError(f"{flag(name)} must be finite, got {value!r}")


def check_device(device: str | torch.device) -> torch.device:
    """The device, checked to exist on this machine.

    Raises:
        AnalysisError: an unknown device, or CUDA/MPS requested where it is not available.
    """
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise AnalysisError(f"unknown {flag('device')} {device!r}: {err}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise AnalysisError(
                f"device {str(device)!r} was requested but no CUDA GPU is available "
                "(torch.cuda.is_available() is False); use --device cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise AnalysisError(
                f"device {str(device)!r} does not exist: {torch.cuda.device_count()} GPU(s) found"
            )
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise AnalysisError("device 'mps' was requested but MPS is not available; use cpu")
    elif device.type != "cpu":
        raise AnalysisError(f"unsupported {flag('device')} {str(device)!r}; use cpu or cuda")
    return device
