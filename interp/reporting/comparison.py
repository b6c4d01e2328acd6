"""Compare several models on the same data and shifts: one report (schema ``interp.compare/1``).

Each model gets its full single-model analysis (:func:`interp.reporting`) on the
same examples, shifts and seed; the comparison puts the verdicts side by side,
the accuracy curves on one plot and the connectivity figures next to each other.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from collections.abc import Mapping, Sequence
from typing import Any

from interp._version import __version__
from interp.errors import InterpError
from interp.loading.examples import sample_recipe
from interp.reporting.blocks import (
    Bullets,
    Gallery,
    Note,
    Paragraph,
    Section,
    Table,
    figure_ref,
    omitted,
)
from interp.reporting.build import (
    DEFAULT_METHOD,
    default_shift_spec,
    report,
)
from interp.reporting.figures import plot_compare_accuracy
from interp.reporting.formatting import fmt_shift, pct, size
from interp.reporting.jsonio import COMPARE_SCHEMA, dumps, jsonable
from interp.reporting.result import Report


def _names(models: Sequence[tuple[Any, Any]]) -> list[str]:
    names: list[str] = []
    for i, (_model, info) in enumerate(models):
        meta = getattr(info, "meta", None) or {}
        path = getattr(info, "path", None)
        name = meta.get("name") or (str(path).rsplit("/", 1)[-1].rsplit(".", 1)[0] if path
                                    else f"model {i + 1}")  # fmt: skip
        names.append(name if name not in names else f"{name} ({i + 1})")
    return names


def _shared_data(models: Sequence[tuple[Any, Any]], data: Any, samples: int | None,
                 seed: int) -> Any:  # fmt: skip
    """Explicit data, else held-out examples from the first model's recipe, else None."""
    if data is not None:
        return data
    for _, info in models:
        drawn = sample_recipe(info, samples, seed)
        if drawn is not None:
            return drawn
    return None


def compare(
    models: Sequence[tuple[Any, Any]],
    *,
    data: Any = None,
    shifts: str | Sequence[Any] | None = None,
    mode: str = "roll",
    method: str = DEFAULT_METHOD,
    samples: int | None = None,  # None: the data whole (a recipe: its default count)
    seed: int = 0,
    device: str = "cpu",
    progress: bool = False,
    axis: Sequence[Mapping[str, Any]] | None = None,
) -> Report:
    """One report comparing ``models`` (a list of ``(model, info)``) on the same data.

    Without ``data`` every model is measured on examples drawn from the first
    model's zoo recipe (held out from training), so a model trained with shift
    augmentation is tested on the same examples as the others. ``axis`` is the
    input's axes for every model, as in :func:`interp.report` (None: the data's,
    else each checkpoint's).

    >>> rep = compare([interp.load(p) for p in paths])   # doctest: +SKIP
    >>> rep.save("reports/compare")                      # doctest: +SKIP
    """
    if len(models) < 2:
        raise InterpError(f"`models` has {len(models)} model; compare needs at least two")
    start = time.perf_counter()
    names = _names(models)
    shared = _shared_data(models, data, samples, seed)
    reports = [
        report(model, info, data=shared, shifts=shifts, mode=mode, method=method,
               samples=samples, seed=seed, device=device, progress=progress, axis=axis)
        for model, info in models
    ]  # fmt: skip
    dicts = [r.to_dict() for r in reports]
    shapes = {tuple(d["structure"]["input_shape"]) for d in dicts}
    if len(shapes) > 1:
        raise InterpError(
            f"the models take different input shapes {sorted(shapes)}; compare models that "
            "read the same data"
        )
    spec = shifts if shifts is not None else default_shift_spec(next(iter(shapes)))
    axis = dicts[0].get("axis")
    sections = [
        _verdicts(names, dicts, axis),
        _accuracy(names, dicts, axis),
        _connectivity(names, reports),
        _architecture(names, dicts),
    ]
    content = {
        "schema": COMPARE_SCHEMA,
        "interp_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "names": names,
        "data": dicts[0].get("data"),
        "settings": {
            **dicts[0]["settings"],
            "shifts": spec if isinstance(spec, str) else jsonable(list(spec)),
        },
        "models": dicts,
        "timings": {"total": round(time.perf_counter() - start, 3)},
    }
    sections.append(_reproducibility(names, dicts))
    title = "Comparison: " + " vs ".join(names)
    subtitle = f"{len(names)} models on the same data · interp {__version__}"
    return Report(title, subtitle, tuple(sections), dumps(jsonable(content)))


def _verdicts(names: list[str], dicts: list[dict[str, Any]], axis: Any) -> Section:
    rows = []
    for name, d in zip(names, dicts, strict=True):
        v, sweep = d["verdict"], d.get("sweep")
        inv = {True: "yes", False: "NO", None: "undecided"}[v["translation_invariant"]]
        acc0 = lowest = consistency = "-"
        if sweep:
            acc, shifts = sweep["accuracy"], sweep["shifts"]
            z = min(range(len(shifts)), key=lambda i: (size(shifts[i]), i))
            from interp.reporting.choose import lowest as lowest_index

            lo = lowest_index(acc, shifts)  # the report's one tie rule
            acc0 = pct(acc[z])
            lowest = f"{pct(acc[lo])} at {fmt_shift(shifts[lo], axis)}"
            if sweep.get("consistency") is not None:
                consistency = pct(sweep["consistency"])
        rows.append((name, inv, v["basis"], d["structure"]["head"]["kind"], acc0, lowest,
                     consistency))  # fmt: skip
    blocks: list[Any] = [Table(
        ("model", "invariant", "decided from", "head", "accuracy at 0", "lowest accuracy",
         "consistency"),
        tuple(rows),
        caption="Each model's verdict, from its own measurements on the same examples and shifts.",
    )]  # fmt: skip
    for name, d in zip(names, dicts, strict=True):
        v = d["verdict"]
        items = tuple(v["reasons"][:2]) + tuple(f"To do: {s}" for s in v["suggestions"][:2])
        blocks.append(Bullets(f"{name}: {v['headline']}", items))
    return Section("verdicts", "Verdicts side by side", tuple(blocks))


def _accuracy(names: list[str], dicts: list[dict[str, Any]], axis: Any) -> Section:
    title = "Accuracy versus shift"
    have = [(n, d["sweep"]) for n, d in zip(names, dicts, strict=True) if d.get("sweep")]
    if not have:
        return omitted("accuracy", title, "no data: pass --data FILE to measure shifts")
    fig = plot_compare_accuracy([n for n, _ in have], [s for _, s in have], axis)
    caption = (
        "Accuracy of every model on the same shifted examples; dotted lines mark each model's "
        "training range. Look at which curves stay flat: " + "; ".join(
            f"{n} lowest {pct(min(s['accuracy']))}" for n, s in have) + "."
    )  # fmt: skip
    blocks: list[Any] = [figure_ref("compare_accuracy", fig, caption)]
    missing = [n for n, d in zip(names, dicts, strict=True) if not d.get("sweep")]
    if missing:
        blocks.append(Note(f"no sweep for {', '.join(missing)}"))
    return Section("accuracy", title, tuple(blocks))


def _connectivity(names: list[str], reports: list[Report]) -> Section:
    title = "Connectivity next to each other"
    figures = []
    for i, (name, rep) in enumerate(zip(names, reports, strict=True)):
        section = rep.section("connectivity")
        fig = next((f for f in section.figures if f.name == "connectivity_profiles"), None)
        if fig is not None:
            figures.append(dataclasses.replace(fig, name=f"compare_connectivity_{i}",
                                               caption=f"{name}: {fig.caption}"))  # fmt: skip
    if not figures:
        return omitted("connectivity", title, "no model has a head whose weights map to positions")
    return Section("connectivity", title, (
        Paragraph("Where each model's head weights sit, per class. A positional head concentrates "
                  "them where training put the patterns; a pooled head has one weight per kernel."),
        Gallery(tuple(figures)),
    ))  # fmt: skip


def _architecture(names: list[str], dicts: list[dict[str, Any]]) -> Section:
    rows = []
    for name, d in zip(names, dicts, strict=True):
        head = d["structure"]["head"]
        positions = "x".join(str(p) for p in head.get("positions") or []) or "-"
        rows.append(
            (
                name,
                f"{d['model']['parameters']:,}",
                head["kind"],
                str(head["linear"]),
                str(head["channels"]),
                positions,
                str(head.get("pooling") or "-"),
            )
        )

    return Section("architecture", "Architectures", (Table(
        ("model", "parameters", "head", "head Linear", "kernels", "positions", "pooling"),
        tuple(rows),
    ),))  # fmt: skip


def _reproducibility(names: list[str], dicts: list[dict[str, Any]]) -> Section:
    rows = tuple(
        (
            n,
            str(d["model"]["path"]),
            str(d["model"]["sha256"]),
            f"{d['timings'].get('total', 0):.2f} s",
        )
        for n, d in zip(names, dicts, strict=True)
    )
    data = dicts[0].get("data") or {}
    settings = dicts[0]["settings"]
    return Section("reproducibility", "Reproducibility", (
        Table(("model", "file", "sha256", "time"), rows),
        Paragraph(f"Data: {data.get('selection') or 'none'} ({data.get('path') or '-'}); shifts "
                  f"{settings['shifts']} ({settings['mode']} mode); seed {settings['seed']}; "
                  f"interp {__version__}."),
    ))  # fmt: skip
