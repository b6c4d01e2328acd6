"""What the commands share at run time: opening files, examples, JSON and progress output.

No analysis policy lives here: examples come from :func:`interp.loading.examples.examples`
and default shifts from :mod:`interp.shifts`, as they do for the library's report.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from interp.cli._options import InputError, ModelSpec
from interp.errors import InterpError

T = TypeVar("T")

# Warnings worth a note: about the user's file or data. Torch's and numpy's deprecation
# chatter says nothing they can act on.
_NOTED = (UserWarning, RuntimeWarning)


def quietly(path: Path, quiet: bool, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn`` with warnings caught: none reach stderr before an ``Error:`` line; after
    success the useful ones are shown as ``note: PATH: ...`` (none with ``--quiet``)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn(*args, **kwargs)
    if not quiet:
        seen: set[str] = set()
        for w in caught:
            text = str(w.message).strip().splitlines()[0] if str(w.message).strip() else ""
            if isinstance(w.message, _NOTED) and text and text not in seen:
                seen.add(text)
                click.echo(f"note: {path}: {text}", err=True)
    return result


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


def load_model(
    path: Path, spec: ModelSpec, quiet: bool = False
) -> tuple[Any, Any, tuple[int, ...] | None]:
    """Open a model file the safe way; return (module, info, input shape or None)."""
    trust, arch, device = spec.trust, spec.arch, spec.device
    shape = parse_shape(spec.input_shape)
    from interp.loading.core import load

    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise InputError(
                "`--device cuda` asked for, but torch sees no CUDA device; use --device cpu"
            )
    model, info = quietly(path, quiet, load, path, trust=trust, arch=arch, input_shape=shape)
    if not quiet:
        for note in getattr(info, "notes", ()):  # what loading did for the user
            click.echo(f"note: {path}: {note}", err=True)
    if device != "cpu":
        model = model.to(device)
    return model, info, shape or info.input_shape


def load_data_for(
    path: Path | None, model: Any, shape: tuple[int, ...] | None, quiet: bool = False
) -> Any:
    """The checked Dataset from ``--data``, or None."""
    if path is None:
        return None
    from interp.loading.core import load_data

    return quietly(path, quiet, load_data, path, model=model, input_shape=shape)


def get_examples(
    info: Any, model: Any, data_path: Path | None, shape: Any, samples: int, seed: int,
    what: str, quiet: bool = False,
) -> tuple[Any, Any, dict[str, Any], str]:  # fmt: skip
    """(x, y, data entry, where they came from): the draw `interp report` makes.

    Raises:
        InterpError: no ``--data`` and the model carries no recipe.
    """
    from interp.loading.examples import examples

    data = load_data_for(data_path, model, shape, quiet)
    x, y, entry = examples(info, data, samples, seed)
    if x is None or y is None or entry is None:
        raise InterpError(
            f"{info.path} carries no dataset recipe, so there is nothing to {what}; "
            "pass `--data FILE` (.npz or .pt with x and y)"
        )
    if data_path is not None:
        where = f"{data_path}: {entry['selection']}"
    else:
        where = f"{x.shape[0]} held-out examples from the {info.recipe.generator} recipe"
    return x, y, entry, where


def echo_json(data: Any) -> None:
    """Strict JSON (no NaN) with sorted keys on stdout."""
    click.echo(json.dumps(data, indent=2, sort_keys=True, allow_nan=False))


def show_progress(quiet: bool) -> bool:
    """Progress bars go to stderr, only on a terminal and without --quiet."""
    return not quiet and sys.stderr.isatty()
