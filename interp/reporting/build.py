"""Run every analysis on a model and assemble the report (JSON content + sections).

Data flows one way: (model, info, data) -> structure -> connectivity -> sweep
and equivariance -> explanation -> attribution -> verdict, each timed. The
JSON content is complete before any section is drawn, and the verdict reads
only that JSON. An analysis that cannot run here (no data, an unsupported
head) leaves its section with a note saying why, never invented content.
"""

from __future__ import annotations

import datetime
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from interp._version import __version__
from interp.errors import InterpError
from interp.geometry.core import structure
from interp.loading.examples import check_xy, class_names, examples
from interp.reporting import sections_arch, sections_data, sections_fix
from interp.reporting.blocks import Note, Section
from interp.reporting.jsonio import SCHEMA, dumps, jsonable
from interp.reporting.result import Report
from interp.reporting.verdict import verdict

DEFAULT_METHOD = "integrated_gradients"


def _why(section: Section) -> str:
    """The note an omitted section prints instead of its content."""
    return " ".join(b.text for b in section.blocks if isinstance(b, Note))


@dataclass
class Context:
    """Everything the section builders share; ``content`` becomes report.json."""

    model: nn.Module
    info: Any
    x: torch.Tensor | None
    y: torch.Tensor | None
    classes: list[str]
    axis: list[dict[str, Any]] | None
    shifts: list[Any]
    mode: str
    method: str
    seed: int
    progress: bool
    geo: Any = None
    train_range: Any = None
    executor: Any = None  # where the sweep runs (RayExecutor); None: this process
    results: dict[str, Any] = field(default_factory=dict)  # analysis objects, by section
    notes: dict[str, str] = field(default_factory=dict)  # why a section is missing
    warnings: dict[str, list[str]] = field(default_factory=dict)  # by section
    content: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def generator(self, salt: int = 0) -> torch.Generator:
        """A local generator for one random choice; the global RNG is never touched."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + salt)


def default_shift_spec(input_shape: Sequence[int]) -> str:
    """The spec of :func:`interp.shifts.default_shifts`, as ``interp sweep`` uses it.

    >>> default_shift_spec((1, 8192)), default_shift_spec((1, 32, 32))
    ('-4018:4018:82', 'y:-8:8;x:-8:8')
    """
    from interp.shifts import default_shifts

    shifts = default_shifts(input_shape)
    first, last = shifts[0], shifts[-1]
    if isinstance(first, tuple) and isinstance(last, tuple):
        return f"y:{first[0]}:{last[0]};x:{first[1]}:{last[1]}"
    step = int(shifts[1]) - int(first) if len(shifts) > 1 else 1  # type: ignore[arg-type]
    return f"{first}:{last}:{step}"


def _timed(ctx: Context, name: str, step: Callable[[Context], None]) -> None:
    start = time.perf_counter()
    step(ctx)
    ctx.timings[name] = round(time.perf_counter() - start, 3)


def report(
    model: nn.Module,
    info: Any = None,
    *,
    data: Any = None,
    shifts: str | Sequence[Any] | None = None,
    mode: str = "roll",
    method: str = DEFAULT_METHOD,
    samples: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = False,
    fix: Any = None,
    train: Any = None,
    executor: Any = None,
    axis: Sequence[Mapping[str, Any]] | None = None,
) -> Report:
    """Explain why ``model`` is or is not translation invariant, with every analysis.

    Args:
        model: the classifier; left unchanged (see DESIGN.md, Promises).
        info: the ``ModelInfo`` from :func:`interp.load` (file identity, axis, recipe).
        data: ``(x, y)`` tensors, an interp ``Dataset``, or any data form of
            :func:`interp.shift_sweep` (a torch Dataset, a DataLoader, batches: the
            ``samples`` examples are picked from it as from tensors); None uses the zoo
            recipe if the model has one, else structure and connectivity only.
        shifts: a spec such as ``"-3000:3000:250"`` or a list; None sweeps the full range.
        mode: ``roll``, ``zero`` or ``edge``.
        method: attribution method name (``interp.METHODS``).
        samples: None uses a data file whole (a zoo recipe draws its default count,
            ``RECIPE_SAMPLES``); N uses a seeded random subset of N rows. The per-sample
            sections (explanation, attribution, equivariance) use a stated few of them.
        seed: seeds every random choice (local generators only).
        device: where the model's parameters are; data is moved there.
        progress: a progress bar on stderr.
        fix: a ``FixResult`` from :func:`interp.fix`, or True to run it here (zoo recipe,
            or ``train``): adds the "What each remedy does" section and the ``fix`` block.
        train: ``(x, y)`` training tensors for ``fix=True`` on a model without a recipe.
        executor: where the sweep section runs, e.g. ``RayExecutor()``; None: here.
        axis: the input's axes, one dict per spatial dimension with ``name``, ``unit``,
            ``step`` (units per position) and ``start`` (the unit at position 0), e.g.
            ``[{"name": "frequency", "unit": "Hz", "step": 1.0}]``; replaces the
            checkpoint's. None: the checkpoint's or the data's ``axis``, else positions
            in samples (1D) or px (2D).

    >>> rep = report(model, info)                 # doctest: +SKIP
    >>> rep.verdict["translation_invariant"]      # doctest: +SKIP
    False
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be an nn.Module, got {type(model).__name__}")
    if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int)
                                or samples < 1):  # fmt: skip
        raise InterpError(f"`samples` must be a positive integer or None (all rows), "
                          f"got {samples!r}")  # fmt: skip
    param = next(iter(model.parameters()), None)
    if param is not None and param.device.type != torch.device(device).type:
        raise InterpError(
            f"`device` {device!r} but the model's parameters are on {param.device}; "
            f"move the model with model.to({device!r}) or pass device={param.device.type!r}"
        )
    _check_options(mode, method)
    start = time.perf_counter()
    x, y, data_entry = examples(info, _picked(data, samples, seed), samples, seed)
    if x is not None and y is not None:
        check_xy(x, y, getattr(info, "input_shape", None))
        x, y = x.to(device), y.to(device)
    meta = getattr(info, "meta", None) or {}
    geo = structure(model, x[:1] if x is not None else None,
                    input_shape=getattr(info, "input_shape", None))  # fmt: skip
    k = geo.num_classes or 0
    if y is not None and len(y) and (int(y.min()) < 0 or int(y.max()) >= k):
        raise InterpError(
            f"`data` has labels {int(y.min())}..{int(y.max())} but the model has {k} outputs; "
            f"labels must be class indices 0..{k - 1}"
        )
    spec = shifts if shifts is not None else default_shift_spec(geo.input_shape)
    shift_list = _shift_list(spec, geo.spatial_dims)
    ctx = Context(
        model=model,
        info=info,
        x=x,
        y=y,
        classes=class_names(info, data_entry, geo.num_classes),
        axis=_axis(axis, data, meta),
        shifts=shift_list,
        mode=mode,
        method=method,
        seed=seed,
        progress=progress,
        geo=geo,
    )
    recipe = getattr(info, "recipe", None)
    ctx.train_range = getattr(recipe, "train_shift_range", None)
    ctx.executor = executor
    ctx.timings["structure"] = round(time.perf_counter() - start, 3)
    ctx.content = _header(ctx, info, data_entry, spec, samples, device)
    steps = [
        ("connectivity", sections_data.run_connectivity),
        ("shifts", sections_data.run_sweep),
        ("equivariance", sections_data.run_equivariance),
        ("explanation", sections_data.run_explanation),
        ("attribution", sections_data.run_attribution),
    ]
    bar = _progress(len(steps), progress)
    for name, step in steps:
        if bar is not None:
            bar.set_description(name)
        _timed(ctx, name, step)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if fix is not None and fix is not False:
        _timed(ctx, "fix", lambda c: sections_fix.run_fix(c, fix, train))
    ctx.content["warnings"] = {k: list(dict.fromkeys(v)) for k, v in ctx.warnings.items()}
    ctx.content["verdict"] = verdict(ctx.content)
    t_render = time.perf_counter()
    sections = _sections(ctx)
    ctx.timings["figures"] = round(time.perf_counter() - t_render, 3)
    ctx.timings["total"] = round(time.perf_counter() - start, 3)
    ctx.content["timings"] = dict(ctx.timings)
    sections.append(sections_arch.reproducibility_section(ctx.content, ctx.timings))
    # A section left out says why in the report; the same sentence is kept here.
    ctx.content["sections"] = [
        {"id": s.id, "title": s.title, "available": s.available}
        | ({} if s.available else {"why": _why(s)})
        for s in sections
    ]
    # What each figure draws (line styles, shading, summaries of its arrays): its caption
    # is written from this record, and report.json keeps it beside the numbers.
    ctx.content["figures"] = {f.name: f.drawn for s in sections for f in s.figures if f.drawn}
    name = meta.get("name") or _stem(getattr(info, "path", None)) or type(model).__name__
    subtitle = f"{getattr(info, 'path', None) or 'in-memory model'} · interp {__version__}"
    return Report(f"Is {name} translation invariant?", subtitle, tuple(sections),
                  dumps(jsonable(ctx.content)))  # fmt: skip


def _axis(axis: Any, data: Any, meta: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The axis metadata a report uses: the argument, else the data's, else the checkpoint's."""
    for source in (axis, getattr(data, "axis", None), meta.get("axis")):
        if source:
            if not isinstance(source, (list, tuple)) or not all(
                isinstance(a, Mapping) for a in source
            ):
                raise InterpError(
                    f"`axis` must be a list of dicts (name, unit, step, start), got {source!r}"
                )
            return [dict(a) for a in source]
    return None


def _picked(data: Any, samples: int | None, seed: int) -> Any:
    """A data source (Dataset, DataLoader, batches) -> the examples :func:`examples`
    would pick from the same samples as tensors; tensors and None pass through."""
    if data is None or (isinstance(data, (tuple, list)) and len(data) == 2) or (
        hasattr(data, "x") and hasattr(data, "y")
    ):
        return data
    from interp._batches import as_source
    from interp.loading.examples import Examples

    source = as_source(data)
    classes = getattr(data, "classes", None) or getattr(getattr(data, "dataset", None),
                                                        "classes", None)  # fmt: skip
    if samples is None or not (source.indexable and source.n is not None
                               and source.n > samples):  # fmt: skip
        x, y = source.tensors()
        return Examples(x, y, None, classes)
    gen = torch.Generator().manual_seed(seed)  # the draw of examples() on tensors
    index = torch.randperm(source.n, generator=gen)[:samples].sort().values
    x, y = source.rows(index)
    pick = f"{samples} of {source.n} examples, chosen at random with seed {seed}"
    return Examples(x, y, None, classes, {"selection": pick})


def _check_options(mode: str, method: str) -> None:
    from interp.attribution.methods import METHODS
    from interp.shifts import check_mode

    check_mode(mode)
    if method not in METHODS:
        raise InterpError(
            f"`method` {method!r} is not an attribution method; use one of: {', '.join(METHODS)}"
        )


def _shift_list(spec: str | Sequence[Any], dims: int) -> list[Any]:
    from interp.shifts import normalize_shifts, parse_shifts

    if isinstance(spec, str):
        return list(parse_shifts(spec, dims))
    return list(normalize_shifts(spec, dims))


def _stem(path: Any) -> str | None:
    if not path:
        return None
    from pathlib import Path

    return Path(str(path)).stem


def _header(
    ctx: Context, info: Any, data_entry: dict[str, Any] | None, spec: Any, samples: int | None,
    device: str
) -> dict[str, Any]:
    to_dict = getattr(info, "to_dict", None)
    model_entry = to_dict() if callable(to_dict) else {
        "path": getattr(info, "path", None), "format": "in-memory", "sha256": None,
        "parameters": sum(p.numel() for p in ctx.model.parameters()),
    }  # fmt: skip
    if data_entry is not None and ctx.x is not None:
        data_entry = {
            **data_entry,
            "n": int(ctx.x.shape[0]),
            "classes": ctx.classes,
            "input_shape": list(ctx.x.shape[1:]),
        }
    return {
        "schema": SCHEMA,
        "interp_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": model_entry,
        "data": data_entry,
        "axis": ctx.axis,
        "classes": ctx.classes,
        "settings": {
            "shifts": spec if isinstance(spec, str) else jsonable(list(spec)),
            "mode": ctx.mode,
            "method": ctx.method,
            "samples": samples,
            "seed": ctx.seed,
            "device": device,
        },
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "platform": sys.platform,
        },
        "structure": ctx.geo.to_dict(),
        "connectivity": None,
        "sweep": None,
        "equivariance": None,
        "explanation": None,
        "attribution": None,
    }


def _sections(ctx: Context) -> list[Section]:
    return [
        sections_arch.verdict_section(ctx.content),
        sections_arch.architecture_section(ctx.geo, ctx.content),
        sections_data.connectivity_section(ctx),
        sections_data.explanation_section(ctx),
        sections_data.shifts_section(ctx),
        sections_data.attribution_section(ctx),
        *([sections_fix.fix_section(ctx)] if "fix" in ctx.timings else []),
    ]


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, file=sys.stderr, unit="section", leave=False)
