"""What the commands share at run time: opening files, examples, JSON and progress output.

No analysis policy lives here: examples come from :func:`interp.loading.examples.examples`
and default shifts from :mod:`interp.shifts`, as they do for the library's report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

from interp.cli._options import AxisSpec, DataSpec, InputError, ModelSpec
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


def memory_limit(spec: ModelSpec) -> int | None:
    """``--max-memory`` in bytes (None: the default budget of each file)."""
    if spec.max_memory is None:
        return None
    from interp.loading.budget import parse_memory

    try:
        return parse_memory(spec.max_memory)
    except InterpError:
        raise InputError(
            f"`--max-memory` {spec.max_memory!r} is not a size; write it like 8G, 512M or 2.5GiB"
        ) from None


def _arch_kwargs(spec: ModelSpec, arch: str | None) -> dict[str, Any] | None:
    if spec.arch_kwargs is None:
        return None
    if arch is None:
        raise InputError("`--arch-kwargs` are the arguments of --arch's factory; pass --arch too")
    from interp.loading.weights import parse_arch_kwargs

    try:
        return parse_arch_kwargs(spec.arch_kwargs)
    except InterpError as err:
        raise InputError(str(err).replace("`arch_kwargs`", "`--arch-kwargs`")) from None


def load_model(
    path: Path, spec: ModelSpec, quiet: bool = False, axis: AxisSpec | None = None
) -> tuple[Any, Any, tuple[int, ...] | None]:
    """Open a model file the safe way; return (module, info, input shape or None).

    With ``axis`` (``--unit``, ``--sample-spacing``), ``info.meta['axis']`` carries them:
    every analysis reads the axis from there, as from a checkpoint's own metadata.
    """
    trust, arch, device = spec.trust, spec.arch, spec.device
    shape = parse_shape(spec.input_shape)
    kwargs = _arch_kwargs(spec, arch)
    limit = memory_limit(spec)
    from interp.loading.core import load

    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise InputError(
                "`--device cuda` asked for, but torch sees no CUDA device; use --device cpu"
            )
    model, info = quietly(path, quiet, load, path, trust=trust, arch=arch, arch_kwargs=kwargs,
                          input_shape=shape, max_memory=limit)  # fmt: skip
    if not quiet:
        for note in getattr(info, "notes", ()):  # what loading did for the user
            click.echo(f"note: {path}: {note}", err=True)
    if device != "cpu":
        model = model.to(device)
    shape = shape or info.input_shape
    if axis is not None:
        info = with_axis(info, axis, shape)
    return model, info, shape


def with_axis(info: Any, axis: AxisSpec, shape: tuple[int, ...] | None) -> Any:
    """``info`` whose ``meta['axis']`` has ``--unit`` and ``--sample-spacing`` applied."""
    if axis.unit is None and axis.step is None:
        return info
    if shape is None:
        raise InputError(
            "`--unit`/`--sample-spacing` need the input shape; pass --input-shape or --data"
        )
    meta = dict(info.meta) if isinstance(info.meta, dict) else {}
    meta["axis"] = axis.apply(meta.get("axis"), len(shape) - 1)
    return dataclasses.replace(info, meta=meta)


def resolve_axis(info: Any, axis: AxisSpec, shape: tuple[int, ...] | None,
                 data_axis: Any = None) -> list[dict[str, Any]] | None:  # fmt: skip
    """The axis every output uses: --unit/--sample-spacing > the data file's ``units`` >
    the checkpoint's ``axis`` > None (positions in samples or px)."""
    meta = info.meta if isinstance(info.meta, dict) else {}
    base = data_axis or meta.get("axis")
    if axis.unit is None and axis.step is None:
        return [dict(a) for a in base] if base else None
    if shape is None:
        raise InputError(
            "`--unit`/`--sample-spacing` need the input shape; pass --input-shape or --data"
        )
    return axis.apply(base, len(shape) - 1)


def load_data_for(
    data: DataSpec | None, model: Any, shape: tuple[int, ...] | None, quiet: bool = False,
    spec: ModelSpec | None = None,
) -> Any:  # fmt: skip
    """The checked Dataset that ``--data`` (and its reading options) names, or None."""
    if data is None or data.path is None:
        return None
    from interp.loading.core import load_data

    limit = memory_limit(spec) if spec is not None else None
    return quietly(data.path, quiet, load_data, data.path, model=model, input_shape=shape,
                   max_memory=limit, labels=data.labels, **data.read_options())  # fmt: skip


def get_examples(
    info: Any, model: Any, data: DataSpec, shape: Any, samples: int | None, seed: int,
    what: str, quiet: bool = False, spec: ModelSpec | None = None,
) -> tuple[Any, Any, dict[str, Any], str]:  # fmt: skip
    """(x, y, data entry, where they came from): the draw `interp report` makes
    (``samples=None``: every row of ``--data``).

    Raises:
        InterpError: no ``--data`` and the model carries no recipe.
    """
    from interp._util import DEFAULT_SAMPLES
    from interp.loading.examples import examples

    loaded = load_data_for(data, model, shape, quiet, spec)
    if samples is None:  # the person's data whole; a recipe draws the default number
        samples = int(loaded.x.shape[0]) if loaded is not None else DEFAULT_SAMPLES
    x, y, entry = examples(info, loaded, samples, seed)
    if entry is not None and getattr(loaded, "axis", None):
        entry["axis"] = [dict(a) for a in loaded.axis]  # the file's `units`
    if x is None or y is None or entry is None:
        raise InterpError(
            f"{info.path} carries no dataset recipe, so there is nothing to {what}; "
            "pass `--data FILE` (.npz or .pt with x and y, an image folder, or x.npy with "
            "--labels y.npy)"
        )
    if data.path is not None:
        where = f"{data.path}: {entry['selection']}"
    else:
        where = f"{x.shape[0]} held-out examples from the {info.recipe.generator} recipe"
    return x, y, entry, where


def check_ray(address: str | None) -> None:
    """Refuse ``--ray`` at once when Ray is not installed (before any loading)."""
    if address is None:
        return
    import importlib.util

    try:
        found = importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):  # a broken or stubbed-out installation
        found = False
    if not found:
        raise InputError("`--ray` needs Ray, which is not installed; pip install 'interp[ray]'")


@contextlib.contextmanager
def ray_executor(
    address: str | None, model_path: Path, spec: ModelSpec, shape: tuple[int, ...] | None
) -> Iterator[Any]:
    """The ``--ray`` executor (None without ``--ray``), closed when the block ends."""
    if address is None:
        yield None
        return
    check_ray(address)
    from interp.sweep.distributed import RayExecutor

    options: dict[str, Any] = {}
    kwargs = _arch_kwargs(spec, spec.arch)
    if kwargs is not None:
        options["arch_kwargs"] = kwargs
    if spec.max_memory is not None:
        options["max_memory"] = memory_limit(spec)
    executor = RayExecutor(address or None, model_path=model_path, trust=spec.trust,
                           arch=spec.arch, input_shape=shape, **options)  # fmt: skip
    try:
        yield executor
    finally:
        executor.close()


def echo_json(data: Any) -> None:
    """Strict JSON (no NaN) with sorted keys on stdout."""
    click.echo(json.dumps(data, indent=2, sort_keys=True, allow_nan=False))


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_UNNAMED = re.compile(r"\d+%")
_BAR = re.compile(r"\|[^|]*\|")  # tqdm's bar between its two pipes


class _StepLog(io.TextIOBase):
    """A stderr for tqdm when stderr is not a terminal: one plain line per step.

    tqdm redraws its status line with ``\\r``; a log file or a CI console would get
    every redraw glued into one line, or nothing readable. Here each redraw is a
    candidate line ``progress: shift sweep: 45% 2700/6000 [00:10<00:12, 260input/s]``,
    written when the step changes (a new description) or, within a step, at most
    every ``interval`` seconds, and once more when the bar finishes. Other text (notes)
    passes through as it is.
    """

    def __init__(self, stream: Any, interval: float = 10.0) -> None:
        super().__init__()
        self.stream, self.interval = stream, interval
        self.pending = ""  # text since the last \r or \n
        self.redraw = False  # the pending text is a tqdm redraw (it followed a \r)
        self.last_step: str | None = None
        self.last_time = 0.0
        self.unwritten: str | None = None  # the latest redraw not written yet

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        for piece in re.split(r"([\r\n])", text):
            if piece in ("\r", "\n"):
                self._end(piece)
            else:
                self.pending += piece
        return len(text)

    def _end(self, sep: str) -> None:
        line, self.pending = self.pending, ""
        if self.redraw:
            self._status(" ".join(_BAR.sub(" ", _ANSI.sub("", line)).split()))
        elif sep == "\n":
            self.stream.write(line + "\n")
        elif line.strip():
            self.stream.write(line)
        self.redraw = sep == "\r"

    def _status(self, text: str) -> None:
        if not text:  # the bar was cleared: it finished; its last state is the step's end
            if self.unwritten is not None:
                self._emit(self.unwritten)
            return
        if _UNNAMED.match(text):  # a bar's first draw, before it names its step
            return
        step = text.split(":", 1)[0]
        now = time.monotonic()
        if step != self.last_step or now - self.last_time >= self.interval:
            self._emit(text)
            self.last_step, self.last_time = step, now
        else:
            self.unwritten = text

    def _emit(self, text: str) -> None:
        self.stream.write(f"progress: {text}\n")
        self.stream.flush()
        self.unwritten = None

    def flush(self) -> None:
        self.stream.flush()


@contextlib.contextmanager
def progress(quiet: bool) -> Iterator[bool]:
    """Whether the analyses show progress, with stderr ready for it.

    On a terminal: tqdm bars. Otherwise (a log file, CI, a pipe): one line per step
    (:class:`_StepLog`). Nothing with ``--quiet``.
    """
    if quiet:
        yield False
        return
    if sys.stderr.isatty():
        yield True
        return
    original = sys.stderr
    log = _StepLog(original)
    sys.stderr = log  # type: ignore[assignment]
    try:
        yield True
    finally:
        if sys.stderr is log:
            sys.stderr = original
        if log.unwritten is not None:
            log._emit(log.unwritten)
        if log.pending.strip() and not log.redraw:
            original.write(log.pending)
