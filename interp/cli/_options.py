"""Options that several commands share, each written once, as decorators.

Cheap to import: click, interp._util, interp._write and interp.errors only, so
``interp CMD --help`` and the ``--out`` check run before torch or any analysis is
imported. Values are parsed here (``--resize 64,64``, ``--normalize 0.5/0.25``) so
a malformed one is a usage error before anything loads.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click

from interp._util import DEFAULT_SAMPLES, METHOD_NAMES, MODES
from interp._write import check_writable
from interp.errors import InterpError

F = TypeVar("F", bound=Callable[..., Any])

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
_FILE_OR_FOLDER = click.Path(exists=True, path_type=Path)

# The rule of interp.shifts.default_shifts, word for word (tests/cli checks that its
# docstring says the same): every --help that mentions the default quotes this.
DEFAULT_SHIFTS_RULE = (
    "~100 steps over the full length (1D), or every pixel within +-size/4 on both axes (2D)"
)
SHIFT_UNITS = (
    "Shifts are in input positions (samples, bins or pixels); outputs also give them in "
    "the axis unit (--unit, --sample-spacing)."
)


def _stack(*options: Callable[[F], F]) -> Callable[[F], F]:
    """Apply ``options`` so that they list in ``--help`` in the order given."""

    def apply(func: F) -> F:
        for option in reversed(options):
            func = option(func)
        return func

    return apply


def model_argument(func: F) -> F:
    """MODEL: the model file."""
    return click.argument("model_path", metavar="MODEL", type=_FILE)(func)


# --- values parsed at the command line ------------------------------------------------


def _resize(ctx: click.Context, param: click.Parameter, text: str | None) -> Any:
    """'64,64' -> (64, 64)."""
    if text is None:
        return None
    try:
        size = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        size = ()
    if len(size) != 2 or min(size) < 1:
        raise click.BadParameter(f"{text!r} is not two positive sizes H,W such as 64,64")
    return size


def _numbers(text: str) -> tuple[float, ...]:
    values = tuple(float(v) for v in text.split(","))
    if not values or not all(math.isfinite(v) for v in values):
        raise ValueError(text)
    return values


def _normalize(ctx: click.Context, param: click.Parameter, text: str | None) -> Any:
    """'0.5,0.5,0.5/0.2,0.2,0.2' -> ((0.5, 0.5, 0.5), (0.2, 0.2, 0.2)); '0.5/0.25' too."""
    if text is None:
        return None
    mean, sep, std = text.partition("/")
    try:
        if not sep:
            raise ValueError(text)
        pair = (_numbers(mean), _numbers(std))
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not MEAN/STD; write e.g. 0.5/0.25 (every channel) or "
            "0.485,0.456,0.406/0.229,0.224,0.225 (one value per channel)"
        ) from None
    if min(pair[1]) <= 0:
        raise click.BadParameter(f"{text!r}: every STD must be positive")
    return pair


def _spacing(ctx: click.Context, param: click.Parameter, value: float | None) -> Any:
    if value is not None and (not math.isfinite(value) or value == 0):
        raise click.BadParameter(f"{value!r} must be a finite, non-zero step, such as 1 or 0.5")
    return value


# --- data -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DataSpec:
    """Where the labelled examples come from: ``--data`` and how to read it."""

    path: Path | None = None
    labels: Path | None = None
    resize: tuple[int, int] | None = None
    normalize: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    grayscale: bool = False

    def read_options(self) -> dict[str, Any]:
        """Keyword arguments of :func:`interp.load_data` besides the path and labels."""
        return {"resize": self.resize, "normalize": self.normalize, "grayscale": self.grayscale}

    def check(self) -> None:
        """Refuse reading options without ``--data`` to apply them to."""
        if self.path is None:
            options = (
                ("--labels", self.labels), ("--resize", self.resize),
                ("--normalize", self.normalize), ("--grayscale", self.grayscale),
            )  # fmt: skip
            given = [name for name, value in options if value]
            if given:
                raise InputError(f"`{given[0]}` reads `--data`; pass --data too")


DATA_HELP = (
    "Labelled examples: .npz or .pt with x, y (and classes); a folder with one subfolder "
    "of PNG/JPEG images per class; or a .npy of inputs with --labels. Zoo models draw "
    "held-out examples from their recipe without it."
)

_data_option_list = _stack(
    click.option("--data", "data_path", type=_FILE_OR_FOLDER, metavar="FILE|FOLDER",
                 help=DATA_HELP),
    click.option("--labels", "labels_path", type=_FILE, metavar="Y.npy",
                 help="Integer labels, one per row of a .npy --data."),
    click.option("--resize", metavar="H,W", callback=_resize,
                 help="Image folders: resize every image to H,W (bilinear)."),
    click.option("--normalize", metavar="MEAN/STD", callback=_normalize,
                 help="Image folders: (x - MEAN) / STD on values in [0, 1]; one number for "
                 "every channel (0.5/0.25) or one per channel (0.485,0.456,0.406/"
                 "0.229,0.224,0.225)."),
    click.option("--grayscale", is_flag=True, help="Image folders: read one channel (luma)."),
)  # fmt: skip


_train_options = _stack(
    click.option("--train-data", "train_path", type=_FILE_OR_FOLDER, metavar="FILE|FOLDER",
                 help="Training examples the remedies are fitted on, in any --data form "
                 "(--resize, --normalize, --grayscale apply to both); zoo models draw "
                 "them from their recipe without it."),
    click.option("--train-labels", type=_FILE, metavar="Y.npy",
                 help="Labels for a .npy --train-data."),
)  # fmt: skip


def _data_options(with_train: bool) -> Callable[[F], F]:
    """--data, --labels, --resize, --normalize, --grayscale as ``data: DataSpec``; with
    ``with_train`` also --train-data, --train-labels as ``train: DataSpec | None``
    (read with the same --resize, --normalize, --grayscale)."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def run(*args: Any, data_path: Path | None, labels_path: Path | None, resize: Any,
                normalize: Any, grayscale: bool, **kwargs: Any) -> Any:  # fmt: skip
            spec = DataSpec(data_path, labels_path, resize, normalize, grayscale)
            if with_train:
                train_path, train_labels = kwargs.pop("train_path"), kwargs.pop("train_labels")
                if train_path is None and train_labels is not None:
                    raise InputError("`--train-labels` reads `--train-data`; pass --train-data too")
                kwargs["train"] = None if train_path is None else dataclasses.replace(
                    spec, path=train_path, labels=train_labels
                )  # fmt: skip
                if train_path is not None and data_path is None:
                    spec = DataSpec(labels=labels_path)  # the reading options serve --train-data
            spec.check()
            return func(*args, data=spec, **kwargs)

        options = _stack(_data_option_list, _train_options) if with_train else _data_option_list
        return options(run)  # type: ignore[return-value]

    return decorate


data_options = _data_options(with_train=False)
data_and_train_options = _data_options(with_train=True)


# --- shifts, methods, the rest ----------------------------------------------------------


def shifts_option(default: str = f"Default: {DEFAULT_SHIFTS_RULE}.") -> Callable[[F], F]:
    """--shifts SPEC; ``default`` says what happens without it."""
    return click.option(
        "--shifts", metavar="SPEC",
        help="Shifts: start:stop:step (stop included) or a list a,b,c; 2D: one SPEC for both "
        f"axes, y:SPEC or x:SPEC for one axis, y:SPEC;x:SPEC for a grid. {SHIFT_UNITS} "
        + default,
    )  # fmt: skip


def shift_mode_option(help: str = "How vacated positions are filled.") -> Callable[[F], F]:
    return click.option(
        "--shift-mode", type=click.Choice(MODES), default=MODES[0], show_default=True, help=help
    )


method_option = click.option(
    "--method", type=click.Choice(METHOD_NAMES), metavar="NAME", default=METHOD_NAMES[0],
    show_default=True, help=f"Captum attribution method: {', '.join(METHOD_NAMES)}.",
)  # fmt: skip
samples_option = click.option(
    "--samples", type=click.IntRange(min=1), default=DEFAULT_SAMPLES, show_default=True,
    help="Examples used (a seeded random subset of larger data; the same as `interp report`'s).",
)  # fmt: skip
analysis_samples_option = click.option(
    "--samples", type=click.IntRange(min=1), metavar="N",
    help="Analyse a seeded random subset of N examples (default: every row of --data; "
    f"{DEFAULT_SAMPLES} drawn from a zoo recipe).",
)  # fmt: skip
sweep_samples_option = click.option(
    "--samples", type=click.IntRange(min=1), metavar="N",
    help="Sweep a seeded random subset of N examples (default: every row of --data; "
    f"{DEFAULT_SAMPLES} drawn from a zoo recipe).",
)  # fmt: skip
seed_option = click.option(
    "--seed", type=int, default=0, show_default=True,
    help="Seeds every random choice; same seed, same result.",
)  # fmt: skip
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
quiet_option = click.option(
    "--quiet", "-q", is_flag=True,
    help="No progress and no notes on stderr (progress: a bar on a terminal, one line per "
    "step otherwise).",
)  # fmt: skip
force_option = click.option("--force", is_flag=True, help="Replace what --out names if it exists.")
ray_option = click.option(
    "--ray", "ray_address", metavar="[ADDRESS]", is_flag=False, flag_value="", default=None,
    help="Run the shift sweep on a Ray cluster (HOST:6379, ray://HOST:10001, auto); without "
    "ADDRESS: RAY_ADDRESS if set, else a local Ray on this machine. Needs "
    "pip install 'interp[ray]'.",
)  # fmt: skip


# --- the axis unit ----------------------------------------------------------------------


@dataclass(frozen=True)
class AxisSpec:
    """``--unit`` and ``--sample-spacing``: what one input position is, in the user's unit."""

    unit: str | None = None
    step: float | None = None

    def apply(self, axis: Any, dims: int) -> list[dict[str, Any]] | None:
        """``axis`` metadata (one dict per spatial axis) with the unit and step set.

        Keeps each axis's ``name`` and ``start``; None when nothing is set or known.
        """
        axes = [dict(a) for a in axis] if isinstance(axis, (list, tuple)) else []
        if len(axes) != dims:
            axes = []
        if self.unit is None and self.step is None:
            return axes or None
        axes = axes or [{} for _ in range(dims)]
        for entry in axes:
            if self.unit is not None:
                entry["unit"] = self.unit
            if self.step is not None:
                entry["step"] = self.step
        return axes


def _unit(ctx: click.Context, param: click.Parameter, text: str | None) -> Any:
    if text is not None and not (0 < len(text.strip()) <= 32):
        raise click.BadParameter(f"{text!r} must be a short name such as Hz, ms or px")
    return text.strip() if text is not None else None


_axis_options = _stack(
    click.option("--unit", metavar="NAME", callback=_unit,
                 help="Unit of one input position, e.g. Hz, ms, nm, px (default: the "
                 "checkpoint's, else samples/px)."),
    click.option("--sample-spacing", type=float, metavar="STEP", callback=_spacing,
                 help="Size of one input position in --unit (default: the checkpoint's, "
                 "else 1)."),
)  # fmt: skip


def axis_options(func: F) -> F:
    """--unit, --sample-spacing, passed as ``axis: AxisSpec``."""

    @functools.wraps(func)
    def run(*args: Any, unit: str | None, sample_spacing: float | None, **kwargs: Any) -> Any:
        return func(*args, axis=AxisSpec(unit, sample_spacing), **kwargs)

    return _axis_options(run)  # type: ignore[return-value]


# --- the model --------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """How to open and run a model file: ``--trust``, ``--arch``, ``--arch-kwargs``,
    ``--input-shape``, ``--device``, ``--max-memory`` (also used for data files); a
    command receives them as one ``spec`` argument."""

    trust: bool
    arch: str | None
    input_shape: str | None
    device: str
    arch_kwargs: str | None = None
    max_memory: str | None = None
    archs: tuple[str, ...] = field(default=())  # compare: one --arch per model


def _model_option_list(per_model: bool) -> Callable[[F], F]:
    arch_help = (
        "Build the model with this factory, for state-dict and .safetensors files (imports "
        "MODULE)."
    )
    if per_model:
        arch_help += (" Give it once for every model, or once per model in MODEL order; "
                      "MODEL::MODULE:FACTORY sets it for one model.")  # fmt: skip
    return _stack(
        click.option("--trust", is_flag=True, help="Allow files that can run code when loaded "
                     "(custom pickles, TorchScript, .pt2). Only for files you trust."),
        click.option("--arch", metavar="MODULE:FACTORY", multiple=per_model, help=arch_help),
        click.option("--arch-kwargs", metavar="K=V,...",
                     help="Arguments of the --arch factory, literals only (numbers, quoted "
                     "strings, True/False/None, tuples), e.g. num_classes=10,in_chans=1."),
        click.option("--input-shape", metavar="C,L|C,H,W",
                     help="Input shape without the batch axis, when it cannot be inferred."),
        click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu",
                     show_default=True, help="Where to run the model."),
        click.option("--max-memory", metavar="SIZE",
                     help="Memory loading a file may allocate, e.g. 8G or 512M (default: 64x "
                     "the file, at least 1 GiB, at most 4 GiB). Larger declared sizes are "
                     "refused before anything is allocated."),
    )  # fmt: skip


def _model_options(per_model: bool) -> Callable[[F], F]:
    def decorate(func: F) -> F:
        @functools.wraps(func)
        def run(*args: Any, trust: bool, arch: Any, arch_kwargs: str | None,
                input_shape: str | None, device: str, max_memory: str | None,
                **kwargs: Any) -> Any:  # fmt: skip
            archs = tuple(arch) if per_model else ()
            one = None if per_model else arch
            spec = ModelSpec(trust, one, input_shape, device, arch_kwargs, max_memory, archs)
            return func(*args, spec=spec, **kwargs)

        return _model_option_list(per_model)(run)  # type: ignore[return-value]

    return decorate


model_options = _model_options(per_model=False)
"""--trust, --arch, --arch-kwargs, --input-shape, --device, --max-memory as ``spec``."""
models_options = _model_options(per_model=True)
"""The same for `interp compare`: ``--arch`` may be given once per model (``spec.archs``)."""

run_options = _stack(axis_options, model_options, json_option, quiet_option)
"""The options every analysis command ends with: --unit, --sample-spacing (``axis``), the
model options (``spec``), --json (``as_json``), --quiet (``quiet``)."""
compare_run_options = _stack(axis_options, models_options, json_option, quiet_option)
"""The same with `interp compare`'s per-model --arch."""


# --- what a report analyses -------------------------------------------------------------


@dataclass(frozen=True)
class AnalysisSpec:
    """What the analyses of a report run on (report, compare), as one ``analysis`` argument."""

    data: DataSpec
    shifts: str | None
    shift_mode: str
    method: str
    samples: int | None  # None: every row of --data (a zoo recipe: its default count)
    seed: int

    @property
    def data_path(self) -> Path | None:
        return self.data.path

    def settings(self) -> dict[str, Any]:
        """Keyword arguments of :func:`interp.report` and :func:`interp.compare`."""
        return {"shifts": self.shifts, "mode": self.shift_mode, "method": self.method,
                "samples": self.samples, "seed": self.seed}  # fmt: skip


_analysis_options = _stack(
    shifts_option(), shift_mode_option(), method_option, analysis_samples_option, seed_option,
)  # fmt: skip


def _analysis_options_for(with_train: bool) -> Callable[[F], F]:
    def decorate(func: F) -> F:
        @functools.wraps(func)
        def run(*args: Any, data: DataSpec, shifts: str | None, shift_mode: str,
                method: str, samples: int | None, seed: int, **kwargs: Any) -> Any:  # fmt: skip
            spec = AnalysisSpec(data, shifts, shift_mode, method, samples, seed)
            return func(*args, analysis=spec, **kwargs)

        return _data_options(with_train)(_analysis_options(run))  # type: ignore[return-value]

    return decorate


analysis_options = _analysis_options_for(with_train=False)
"""The data options, --shifts, --shift-mode, --method, --samples, --seed as ``analysis``."""
analysis_and_train_options = _analysis_options_for(with_train=True)
"""The same, with --train-data and --train-labels as ``train`` (`interp report --fix`)."""


# --- where results go -------------------------------------------------------------------


def out_option(help: str, *, folder: bool = True, **kwargs: Any) -> Callable[[F], F]:
    """--out: a folder (``folder=True``) or one file; checked by :func:`check_out`."""
    kind = click.Path(file_okay=not folder, dir_okay=folder, path_type=Path)
    return click.option("--out", type=kind, help=help, **kwargs)


def default_out(kind: str, *stems: str) -> Path:
    """``interp-<kind>-<stem>[-<stem>...]/`` in the current folder: a new folder of its own,
    never the package's committed ``reports/``."""
    return Path(f"interp-{kind}-" + "-".join(stems))


class InputError(click.ClickException):
    """Bad usage or bad input: one line ``Error: ...`` and exit code 2."""

    exit_code = 2


def check_out(path: Path, *, force: bool, folder: bool = True) -> None:
    """Refuse an ``--out`` that cannot be written, before any analysis starts.

    :func:`interp._write.check_writable`, the check of the one writer that will write
    it (a folder holding anything but a report is refused even with ``--force``).
    """
    try:
        check_writable(path, force=force, directory=folder)
    except InterpError as err:
        text = str(err).replace("`out`", "`--out`").replace(" (force=True)", "")
        raise InputError(text) from None
