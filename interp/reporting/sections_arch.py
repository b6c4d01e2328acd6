"""Sections that need no data: the verdict, the architecture and reproducibility.

Every sentence is generated from the report JSON or the Structure, never typed
as a claim about a particular model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from interp._util import default_unit
from interp.geometry.core import Structure, explain
from interp.reporting.blocks import Bullets, Note, Paragraph, Section, Table


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return " x ".join(str(v) for v in value)
    return str(value)


def verdict_section(content: Mapping[str, Any]) -> Section:
    """Section 1: the verdict, its reasons and suggestions (all from ``content['verdict']``)."""
    v = content["verdict"]
    basis = v.get("basis_text") or (  # written by verdict() from the sweep it read
        "measured on data" if v["basis"] == "measured" else "decided from the architecture"
    )
    headline = str(v["headline"]).rstrip(".")
    blocks: list[Any] = [Paragraph(f"{headline} ({basis}).", strong=True)]
    if v["reasons"]:
        blocks.append(Bullets("Why", tuple(v["reasons"])))
    if v["suggestions"]:
        blocks.append(Bullets("What to do", tuple(v["suggestions"])))
    else:
        blocks.append(Paragraph("No change is needed for the shifts measured here."))
    return Section("verdict", "Verdict", tuple(blocks))


def architecture_section(geo: Structure, content: Mapping[str, Any]) -> Section:
    """Section 2: the layer table and where positions collapse."""
    rows, highlight = [], []
    head = geo.head
    where = collapse_layer(geo)
    collapse = where.name if where is not None else None
    for i, lay in enumerate(geo.layers):
        eq = {True: "yes", False: "NO", None: "n/a"}[lay.equivariant]
        rows.append((lay.name, lay.type, _fmt(lay.output_shape), _fmt(lay.receptive_field),
                     _fmt(lay.stride), eq, lay.role))  # fmt: skip
        if lay.name in (collapse, head.linear) or lay.equivariant is False:
            highlight.append(i)
    unit = default_unit(geo.spatial_dims)
    table = Table(
        ("layer", "type", "output shape", f"receptive field ({unit})", "stride", "equivariant",
         "role"),
        tuple(rows),
        caption="Highlighted: where positions collapse and where equivariance breaks. Receptive "
        "field and stride are in input positions; output shapes leave out the batch axis.",
        highlight=tuple(highlight),
    )  # fmt: skip
    blocks: list[Any] = [Paragraph(sentence) for sentence in explain(geo)]
    blocks.append(table)
    blocks.append(Paragraph(_collapse_sentence(geo, content.get("axis"))))
    return Section("architecture", "Architecture", tuple(blocks))


def collapse_layer(geo: Structure) -> Any:
    """The layer where positions go: a global pool if the head has one, else the first
    layer without spatial axes (e.g. Flatten), else None."""
    pooled = next((lay for lay in geo.layers if lay.role == "global pool"), None)
    if pooled is not None and geo.head.kind == "pooled":
        return pooled
    return geo.layer(geo.collapse) if geo.collapse is not None else None


def _collapse_sentence(geo: Structure, axis: Any) -> str:
    head = geo.head
    collapse = collapse_layer(geo)
    if collapse is None:
        return "Positions never collapse: the output keeps spatial axes."
    verb = "are pooled away" if collapse.role == "global pool" else "collapse"
    text = f"Positions {verb} at layer {collapse.name!r} ({collapse.type})"
    fmap = geo.feature_map
    if fmap is None or fmap.receptive_field is None or fmap.stride is None or not head.channels:
        return text + "."
    step = ""
    if axis and geo.spatial_dims == 1:
        unit = axis[0].get("unit") or default_unit(1)
        step = f" ({fmap.receptive_field[0] * float(axis[0].get('step', 1.0)):g} {unit})"
    n = 1
    for p in head.positions or ():
        n *= p
    features = (
        f"{head.channels * n} features, one per (kernel, position)"
        if head.kind == "positional"
        else f"{head.channels} features after pooling, one per kernel"
    )
    return text + (
        f"; the head reads layer {fmap.name!r} ({head.channels} kernels x "
        f"{_fmt(head.positions)} positions) as {features}. Each position there sees "
        f"{_fmt(fmap.receptive_field)} input positions{step} at a stride of {_fmt(fmap.stride)}."
    )


def reproducibility_section(content: Mapping[str, Any], timings: Mapping[str, float]) -> Section:
    """Section 7: versions, model hash, data source, settings, time per section."""
    model, data, settings = content["model"], content.get("data"), content["settings"]
    env = content.get("environment") or {}
    if data is None:
        source = "none (structure and connectivity only)"
    elif data.get("path") == "recipe":
        recipe = data.get("recipe") or {}
        source = (
            f"regenerated from the zoo recipe ({recipe.get('generator')}, training seed "
            f"{recipe.get('seed')}, draw seed {data.get('sample_seed')})"
        )
    else:
        source = str(data.get("path") or "in-memory tensors")
    rows = [
        ("interp version", str(content["interp_version"])),
        ("torch / python", f"{env.get('torch')} / {env.get('python')}"),
        ("model file", str(model.get("path"))),
        ("model format", str(model.get("format"))),
        ("model sha256", str(model.get("sha256"))),
        ("parameters", f"{model.get('parameters'):,}" if model.get("parameters") else "-"),
        ("data", source),
        ("examples", str(data.get("selection")) if data else "-"),
        ("seed", str(settings["seed"])),
        ("shifts", _fmt(settings["shifts"])),
        ("shift mode", str(settings["mode"])),
        ("attribution method", str(settings["method"])),
        ("device", str(settings["device"])),
        ("created", str(content.get("created"))),
    ]
    times = tuple((name, f"{seconds:.2f} s") for name, seconds in timings.items())
    return Section(
        "reproducibility",
        "Reproducibility",
        (
            Table(("setting", "value"), tuple(rows)),
            Table(("step", "time"), times, caption="Wall-clock time of each step of this run."),
            Note(
                "The same model file, data, settings and seed give the same report.json, "
                "apart from `created` and `timings`."
            ),
        ),
    )
