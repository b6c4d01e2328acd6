"""Sections backed by analyses: connectivity, shift sweep, equivariance, explanation, attribution.

Each ``run_*`` runs one analysis inside the report's :class:`~interp.reporting.build.Context`
and stores its result object and JSON; each ``*_section`` turns them into blocks
afterwards. When an analysis cannot run (no data, a head it does not support) the
note says why and the section is omitted; a broken installation fails loudly.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from interp.errors import InterpError
from interp.reporting import captions
from interp.reporting.blocks import (
    FigureRef,
    Gallery,
    Note,
    Paragraph,
    Section,
    Table,
    figure_ref,
    omitted,
)
from interp.reporting.choose import (
    attribution_shifts,
    collapse,
    equivariance_shifts,
    pick_samples,
    telling,
    telling_shift,
)
from interp.reporting.verdict import pct

if TYPE_CHECKING:
    from interp.reporting.build import Context

EXPLAINED_SAMPLES = 3  # samples shown in "why shifted patterns are missed"
ATTRIBUTED_SAMPLES = 2  # of those, samples attributed across shifts
EQUIVARIANCE_SAMPLES = 4  # a relative error per layer: a few samples measure it
CANDIDATES = 64  # samples searched for ones that fail at the telling shift
NO_DATA = (
    "no data: pass --data FILE (x, y) (data=(x, y) in Python) to measure {what}; "
    "zoo models regenerate examples from their recipe"
)


def _figure(name: str, make: Callable[[], Any], caption: Any) -> FigureRef:
    """Draw a figure and render it to a FigureRef; a callable ``caption`` is written from
    what the figure drew (``plots.drawn``)."""
    return figure_ref(name, make(), caption)


def _run(ctx: Context, key: str, call: Callable[[], Any]) -> Any:
    """Run one analysis; a user-fixable failure becomes the section's note.

    UserWarnings the analysis raises (e.g. a large integrated-gradients convergence
    delta) are kept for the section and the JSON instead of scrolling past on stderr.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            return call()
        except InterpError as err:
            ctx.notes[key] = str(err)
            return None
        finally:
            for w in caught:
                if issubclass(w.category, UserWarning):
                    ctx.warnings.setdefault(key, []).append(str(w.message))
                else:
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _warned(ctx: Context, key: str) -> list[Note]:
    return [Note(f"Warning: {text}") for text in dict.fromkeys(ctx.warnings.get(key, []))]


# --- connectivity -------------------------------------------------------------


def run_connectivity(ctx: Context) -> None:
    from interp.readout.core import connectivity as fn

    conn = _run(ctx, "connectivity", lambda: fn(
        ctx.model, ctx.geo, x=ctx.x, y=ctx.y, axis=ctx.axis, classes=ctx.classes))  # fmt: skip
    if conn is not None:
        from interp.readout.text import inside_ratio

        ctx.results["connectivity"] = conn
        data = conn.to_dict()
        for entry, c in zip(data.get("per_class") or [], conn.per_class, strict=False):
            if isinstance(entry, dict) and conn.kind == "positional":
                entry["inside_ratio"] = inside_ratio(c)  # quoted by conn.sentences()
        ctx.content["connectivity"] = data


def connectivity_section(ctx: Context) -> Section:
    title = "Connectivity: which neurons each class reads"
    conn = ctx.results.get("connectivity")
    if conn is None:
        return omitted("connectivity", title, ctx.notes.get("connectivity", "not computed"))
    blocks: list[Any] = [Paragraph(s) for s in conn.sentences()]
    data = ctx.content["connectivity"]
    if conn.kind == "positional":
        rows = []
        for entry in data["per_class"]:
            fp = entry.get("footprint_input")
            rows.append((
                entry["class"],
                captions.where(entry.get("peak_position_input"), ctx.axis),
                captions.where(entry.get("centre_of_mass_input"), ctx.axis),
                captions.span(fp, ctx.axis) if fp else "-",
                pct(entry["mass_inside"]) if entry.get("mass_inside") is not None else "-",
                ", ".join(str(k) for k in entry["top_kernels"][:5]),
            ))  # fmt: skip
        blocks.append(Table(
            ("class", "peak weight at", "centre of mass", "footprint", "|W| inside footprint",
             "top kernels"),
            tuple(rows),
            caption="Positions in input units. The footprint is where the class's data "
            "activates the feature map; weights outside it were shaped only by background.",
        ))  # fmt: skip
    blocks.append(_figure("connectivity_profiles", conn.plot, partial(captions.profiles, conn)))
    if conn.kind == "positional":
        maps = [
            _figure(
                f"connectivity_weights_{k}",
                partial(conn.plot_weights, k),
                partial(captions.weight_map, name),
            )
            for k, name in enumerate(conn.classes)
        ]
        figures = tuple(m for m in maps if isinstance(m, FigureRef))
        blocks += [Gallery(figures)] if figures else maps  # fmt: skip
    if getattr(conn, "kernels", None) is not None:
        blocks.append(_figure("connectivity_kernels", lambda: conn.plot_kernels(0),
                              captions.kernels(conn.classes[0])))  # fmt: skip
    elif getattr(conn, "kernels_note", ""):
        blocks.append(Note(f"No learned-kernel figure: {conn.kernels_note}."))
    if ctx.x is None:
        blocks.append(Note(NO_DATA.format(what="the footprint of each class")))
    blocks += _warned(ctx, "connectivity")
    return Section("connectivity", title, tuple(blocks))


# --- shift sweep and equivariance ---------------------------------------------


def run_sweep(ctx: Context) -> None:
    if ctx.x is None:
        ctx.notes["shifts"] = NO_DATA.format(what="accuracy over shifts")
        return
    from interp.sweep.core import shift_sweep as fn

    sw = _run(ctx, "shifts", lambda: fn(
        ctx.model, ctx.x, ctx.y, ctx.shifts, mode=ctx.mode, structure=ctx.geo, axis=ctx.axis,
        train_range=ctx.train_range, classes=ctx.classes, progress=ctx.progress,
        executor=ctx.executor))  # fmt: skip
    if sw is not None:
        ctx.results["shifts"] = sw
        data = sw.to_dict()
        # The one record of the telling shift and of a collapse onto one class: every
        # section, caption and the verdict quote these fields (choose.py has the rules).
        data["telling"] = telling_shift(data)
        data["collapse"] = collapse(data)
        ctx.content["sweep"] = data


def run_equivariance(ctx: Context) -> None:
    if ctx.x is None:
        ctx.notes["equivariance"] = NO_DATA.format(what="per-layer equivariance")
        return
    from interp.sweep.per_layer import equivariance as fn

    shifts = equivariance_shifts(ctx.geo, ctx.shifts)
    x = ctx.x[:EQUIVARIANCE_SAMPLES]
    eq = _run(ctx, "equivariance", lambda: fn(ctx.model, x, shifts, mode=ctx.mode,
                                               structure=ctx.geo))  # fmt: skip
    if eq is not None:
        ctx.results["equivariance"] = eq
        ctx.content["equivariance"] = eq.to_dict()


def shifts_section(ctx: Context) -> Section:
    title = "Shifts: accuracy, confidence and equivariance"
    sw = ctx.results.get("shifts")
    if sw is None:
        return omitted("shifts", title, ctx.notes.get("shifts", "not computed"))
    data = ctx.content["sweep"]
    expl = ctx.content.get("explanation") or {}
    winners = [e.get("winner") for e in expl.get("per_sample") or []]
    blocks: list[Any] = [Paragraph(s) for s in captions.sweep_sentences(data, ctx.axis, winners)]
    blocks.append(_figure("sweep_accuracy", sw.plot, partial(captions.sweep, data, ctx.axis)))
    if hasattr(sw, "plot_per_class"):
        blocks.append(_figure("sweep_per_class", sw.plot_per_class,
                              captions.per_class(data, ctx.axis)))  # fmt: skip
    eq = ctx.results.get("equivariance")
    if eq is None:
        blocks.append(Note(ctx.notes.get("equivariance", "per-layer equivariance not computed")))
    else:
        edata = ctx.content["equivariance"]
        blocks += [Paragraph(s) for s in captions.equivariance_sentences(edata)]
        blocks.append(_figure("equivariance", eq.plot, partial(captions.equivariance, edata)))
    blocks += _warned(ctx, "shifts") + _warned(ctx, "equivariance")
    return Section("shifts", title, tuple(blocks))


# --- why shifted patterns are missed --------------------------------------------


def run_explanation(ctx: Context) -> None:
    sweep = ctx.content.get("sweep")
    if sweep is None or ctx.x is None or ctx.y is None:
        ctx.notes["explanation"] = ctx.notes.get("shifts") or "no shift sweep to choose a shift"
        return
    from interp.readout.core import explain_shift as fn
    from interp.sweep.core import sweep_logits as logits_fn

    shift = telling(sweep)
    x, y = ctx.x, ctx.y

    def call() -> Any:
        zero = 0 if ctx.geo.spatial_dims == 1 else (0, 0)
        logits, _, _ = logits_fn(
            ctx.model, x[:CANDIDATES], [zero, shift], mode=ctx.mode, structure=ctx.geo
        )  # (min(N, 64), 2, K)
        index = pick_samples(logits.argmax(-1), y[:CANDIDATES], EXPLAINED_SAMPLES)
        conn = ctx.results.get("connectivity")
        return index, [
            fn(ctx.model, x[i : i + 1], int(y[i]), shift, mode=ctx.mode,
               structure=ctx.geo, connectivity=conn)
            for i in index
        ]  # fmt: skip

    out = _run(ctx, "explanation", call)
    if out is not None:
        index, explanations = out
        ctx.results["explanation"] = explanations
        ctx.content["explanation"] = {
            "shift": list(shift) if isinstance(shift, tuple) else shift,
            "shift_chosen_as": sweep["telling"]["chosen_as"],
            "samples": index,
            "per_sample": [e.to_dict() for e in explanations],
        }


def explanation_section(ctx: Context) -> Section:
    title = "Why shifted patterns are missed"
    explanations = ctx.results.get("explanation")
    if explanations is None:
        return omitted("explanation", title, ctx.notes.get("explanation", "not computed"))
    data = ctx.content["explanation"]
    blocks: list[Any] = [Paragraph(captions.explanation_intro(data, ctx.axis))]
    for i, (expl, entry) in enumerate(zip(explanations, data["per_sample"], strict=True)):
        blocks.append(Paragraph(f"Sample {data['samples'][i]}: {entry['sentence']}"))
        blocks.append(_figure(f"explanation_{i}", expl.plot,
                              partial(captions.explanation, data, i, ctx.axis)))  # fmt: skip
    blocks += _warned(ctx, "explanation")
    return Section("explanation", title, tuple(blocks))


# --- attribution ----------------------------------------------------------------


def run_attribution(ctx: Context) -> None:
    if ctx.x is None or ctx.y is None:
        ctx.notes["attribution"] = NO_DATA.format(what="attributions across shifts")
        return
    from interp.attribution.core import attribution_across_shifts as fn

    expl = ctx.content.get("explanation")
    index = list(expl["samples"][:ATTRIBUTED_SAMPLES]) if expl else [0]
    sweep = ctx.content.get("sweep")
    shifts = attribution_shifts(telling(sweep) if sweep else None, ctx.shifts)
    x, y = ctx.x[index], ctx.y[index]
    comp = _run(ctx, "attribution", lambda: fn(
        ctx.model, x, y, shifts, method=ctx.method, mode=ctx.mode,
        structure=ctx.geo, axis=ctx.axis))  # fmt: skip
    if comp is not None:
        ctx.results["attribution"] = comp
        ctx.content["attribution"] = {"samples": index, **comp.to_dict()}


def attribution_section(ctx: Context) -> Section:
    title = "Attributions across shifts"
    comp = ctx.results.get("attribution")
    if comp is None:
        return omitted("attribution", title, ctx.notes.get("attribution", "not computed"))
    data = ctx.content["attribution"]
    blocks: list[Any] = [Paragraph(captions.attribution_intro(data, ctx.axis))]
    blocks += [Paragraph(s) for s in data.get("sentences") or comp.sentences()]
    blocks.append(_figure("attribution_similarity", comp.plot,
                          captions.attribution(data, ctx.axis)))  # fmt: skip
    if hasattr(comp, "plot_maps"):
        from interp.plots.attribution import plot_maps

        blocks.append(_figure("attribution_maps", lambda: plot_maps(comp, 0, classes=ctx.classes),
                              captions.attribution_maps(data, ctx.axis)))  # fmt: skip
    blocks += _warned(ctx, "attribution")
    return Section("attribution", title, tuple(blocks))
