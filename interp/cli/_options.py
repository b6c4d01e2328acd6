"""Options that several commands share, each written once, as decorators.

Cheap to import: click, interp._util and interp.errors only, so ``interp CMD --help``
and the ``--out`` check run before torch or any analysis is imported.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from interp._util import DEFAULT_SAMPLES, METHOD_NAMES, MODES

F = TypeVar("F", bound=Callable[..., Any])

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


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


def data_option(
    help: str = "Labelled examples (.npz or .pt with x, y); zoo models draw held-out examples "
    "from their recipe without it.",
) -> Callable[[F], F]:
    return click.option("--data", "data_path", type=_FILE, help=help)


def shifts_option(
    help: str = "Shifts: start:stop:step (stop included) or a list a,b,c; 2D: one SPEC for "
    "both axes, y:SPEC or x:SPEC for one axis, y:SPEC;x:SPEC for a grid. Default: the full "
    "length in ~100 steps (1D), every pixel within +-size/4 (2D).",
) -> Callable[[F], F]:
    return click.option("--shifts", metavar="SPEC", help=help)


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
seed_option = click.option(
    "--seed", type=int, default=0, show_default=True,
    help="Seeds every random choice; same seed, same result.",
)  # fmt: skip
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress bars or notes.")
force_option = click.option("--force", is_flag=True, help="Replace what --out names if it exists.")

@dataclass(frozen=True)
class ModelSpec:
    """How to open and run a model file: ``--trust``, ``--arch``, ``--input-shape``,
    ``--device``; a command receives them as one ``spec`` argument."""

    trust: bool
    arch: str | None
    input_shape: str | None
    device: str


_model_options = _stack(
    click.option("--trust", is_flag=True, help="Allow files that can run code when loaded "
                 "(custom pickles, TorchScript, .pt2). Only for files you trust."),
    click.option("--arch", metavar="MODULE:FACTORY", help="Build the model with this factory, "
                 "for state-dict and .safetensors files (imports MODULE)."),
    click.option("--input-shape", metavar="C,L|C,H,W",
                 help="Input shape without the batch axis, when it cannot be inferred."),
    click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu",
                 show_default=True, help="Where to run the model."),
)  # fmt: skip


def model_options(func: F) -> F:
    """--trust, --arch, --input-shape, --device, passed to ``func`` as ``spec: ModelSpec``."""

    @functools.wraps(func)
    def run(*args: Any, trust: bool, arch: str | None, input_shape: str | None, device: str,
            **kwargs: Any) -> Any:  # fmt: skip
        return func(*args, spec=ModelSpec(trust, arch, input_shape, device), **kwargs)

    return _model_options(run)  # type: ignore[return-value]

@dataclass(frozen=True)
class AnalysisSpec:
    """What the analyses of a report run on (report, compare), as one ``analysis`` argument."""

    data_path: Path | None
    shifts: str | None
    shift_mode: str
    method: str
    samples: int
    seed: int

    def settings(self) -> dict[str, Any]:
        """Keyword arguments of :func:`interp.report` and :func:`interp.compare`."""
        return {"shifts": self.shifts, "mode": self.shift_mode, "method": self.method,
                "samples": self.samples, "seed": self.seed}  # fmt: skip


_analysis_options = _stack(
    data_option(), shifts_option(), shift_mode_option(), method_option, samples_option,
    seed_option,
)  # fmt: skip


def analysis_options(func: F) -> F:
    """--data, --shifts, --shift-mode, --method, --samples, --seed as ``analysis``."""

    @functools.wraps(func)
    def run(*args: Any, data_path: Path | None, shifts: str | None, shift_mode: str,
            method: str, samples: int, seed: int, **kwargs: Any) -> Any:  # fmt: skip
        spec = AnalysisSpec(data_path, shifts, shift_mode, method, samples, seed)
        return func(*args, analysis=spec, **kwargs)

    return _analysis_options(run)  # type: ignore[return-value]


def out_option(help: str, *, folder: bool = True, **kwargs: Any) -> Callable[[F], F]:
    """--out: a folder (``folder=True``) or one file; checked by :func:`check_out`."""
    kind = click.Path(file_okay=not folder, dir_okay=folder, path_type=Path)
    return click.option("--out", type=kind, help=help, **kwargs)


class InputError(click.ClickException):
    """Bad usage or bad input: one line ``Error: ...`` and exit code 2."""

    exit_code = 2


def check_out(path: Path, *, force: bool, folder: bool = True) -> None:
    """Refuse an ``--out`` that cannot be written, before any analysis starts.

    An existing file, or a folder that holds anything, is refused without ``--force``;
    so is a path whose nearest existing parent is not a folder this user may write in.
    """
    if path.exists() or path.is_symlink():
        if folder and not path.is_dir():
            raise InputError(f"`--out` {str(path)!r} is a file, not a folder; choose a folder")
        if not folder and path.is_dir():
            raise InputError(f"`--out` {str(path)!r} is a folder; give a file name")
        if not force and (not folder or any(path.iterdir())):
            raise InputError(
                f"`--out` {str(path)!r} already exists; pass --force to replace it, or choose "
                "another path"
            )
    parent = Path(os.path.abspath(path)).parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(
            f"`--out` {str(path)!r} cannot be created: {str(parent)!r} is a file, not a folder; "
            "choose another path"
        )
    try:  # os.access says yes to root everywhere; a file made and removed at once does not
        if not os.access(parent, os.W_OK | os.X_OK):
            raise PermissionError(13, "permission denied")
        tempfile.TemporaryFile(dir=parent).close()
    except OSError as err:
        raise InputError(
            f"`--out` {str(path)!r} cannot be written: {err.strerror or err} in "
            f"{str(parent)!r}; choose a folder you can write to"
        ) from None
