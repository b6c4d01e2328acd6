"""What every command shares: error handling, model options, JSON and progress output."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from interp.errors import InterpError

F = TypeVar("F", bound=Callable[..., Any])


class InputError(click.ClickException):
    """Bad usage or bad input: one line ``Error: ...`` and exit code 2."""

    exit_code = 2


class InterpGroup(click.Group):
    """A click group that maps interp's errors onto the exit codes in DESIGN.md.

    0 done; 2 bad usage or input (InterpError), one line, no traceback;
    1 unexpected failure (traceback only with INTERP_DEBUG=1); 130 interrupted.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except InterpError as exc:
            raise InputError(str(exc)) from None
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            raise click.exceptions.Exit(130) from None
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            if os.environ.get("INTERP_DEBUG"):
                raise
            first = str(exc).splitlines()[0] if str(exc) else ""
            click.echo(
                f"Error: unexpected failure: {type(exc).__name__}: {first} "
                "(rerun with INTERP_DEBUG=1 for the traceback, and please report it)",
                err=True,
            )
            raise click.exceptions.Exit(1) from None


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    """'1,8192' -> (1, 8192); None stays None."""
    if text is None:
        return None
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise InputError(
            f"`--input-shape` {text!r} is not a list of integers like 1,8192"
        ) from None
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise InputError(f"`--input-shape` {text!r} must be C,L or C,H,W with positive sizes")
    return shape


def model_options(func: F) -> F:
    """--trust, --arch, --input-shape, --device: how to open and run a model file."""
    func = click.option(
        "--device",
        type=click.Choice(["cpu", "cuda"]),
        default="cpu",
        show_default=True,
        help="Where to run the model.",
    )(func)
    func = click.option(
        "--input-shape",
        metavar="C,L|C,H,W",
        help="Input shape without the batch axis, when it cannot be inferred.",
    )(func)
    func = click.option(
        "--arch",
        metavar="MODULE:FACTORY",
        help="Build the model with this factory, for state-dict and .safetensors files "
        "(imports MODULE).",
    )(func)
    func = click.option(
        "--trust",
        is_flag=True,
        help="Allow files that can run code when loaded (custom pickles, TorchScript, .pt2). "
        "Only for files you trust.",
    )(func)
    return func


def model_path_argument(func: F) -> F:
    return click.argument(
        "model_path",
        metavar="MODEL",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
    )(func)


def load_model(
    path: Path, *, trust: bool, arch: str | None, input_shape: str | None, device: str
) -> tuple[Any, Any, tuple[int, ...] | None]:
    """Open a model file the safe way; return (module, info, input shape or None)."""
    from interp.loading.core import load

    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise InputError(
                "`--device cuda` asked for, but torch sees no CUDA device; use --device cpu"
            )
    shape = parse_shape(input_shape)
    model, info = load(path, trust=trust, arch=arch, input_shape=shape)
    for note in getattr(info, "notes", ()):  # what loading did for the user, e.g. a key prefix
        click.echo(f"note: {path}: {note}", err=True)
    if device != "cpu":
        model = model.to(device)
    return model, info, shape or info.input_shape


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(func)


def quiet_option(func: F) -> F:
    return click.option("--quiet", "-q", is_flag=True, help="No progress bars or notes.")(func)


def echo_json(data: Any) -> None:
    """Strict JSON (no NaN) with sorted keys on stdout."""
    click.echo(json.dumps(data, indent=2, sort_keys=True, allow_nan=False))


def show_progress(quiet: bool) -> bool:
    """Progress bars go to stderr, only on a terminal and without --quiet."""
    return not quiet and sys.stderr.isatty()
