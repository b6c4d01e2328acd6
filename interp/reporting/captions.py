"""Figure captions and section sentences, generated from the report JSON.

A caption says what the figure shows and what to look at, with the numbers
that make the point; nothing here is specific to one model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from interp._util import default_unit
from interp.reporting.choose import collapse, lowest, telling_shift
from interp.reporting.formatting import fmt_extent, fmt_shift, pct, size


def _units(values: Sequence[float], axis: Any) -> list[float]:
    axes = list(axis or [])
    out = []
    for d, v in enumerate(values):
        a = axes[d] if d < len(axes) else {}
        out.append(float(a.get("start", 0.0)) + float(v) * float(a.get("step", 1.0)))
    return out


def _unit(axis: Any, dims: int = 1) -> str:
    axes = list(axis or [])
    return (axes[0].get("unit") if axes else None) or default_unit(dims)


def where(position: Any, axis: Any) -> str:
    """An input position (index, or [y, x]) in axis units: ``'1234 Hz'``."""
    if position is None:
        return "-"
    values = list(position) if isinstance(position, (list, tuple)) else [position]
    units = _units(values, axis)
    text = ", ".join(f"{v:.4g}" for v in units)
    return f"({text}) {_unit(axis, 2)}" if len(units) > 1 else f"{text} {_unit(axis)}"


def span(bounds: Sequence[Any], axis: Any) -> str:
    """A footprint ``[lo, hi]`` in axis units: ``'-350 to 420 Hz'``."""
    lo, hi = bounds
    if isinstance(lo, (list, tuple)):
        return f"{where(lo, axis)} to {where(hi, axis)}"
    a, b = _units([lo], axis)[0], _units([hi], axis)[0]
    return f"{a:.4g} to {b:.4g} {_unit(axis)}"


# --- connectivity ---------------------------------------------------------------


def _names(names: Sequence[str]) -> str:
    quoted = [f"'{n}'" for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def profiles(conn: Any, drawn: Mapping[str, Any] | None = None) -> str:
    """Caption of the connectivity profile figure, from what it drew (``plots.drawn``)."""
    if conn.kind == "pooled":
        return (
            "Head weight of every kernel for each class. Position does not enter: a pooled head "
            "multiplies each kernel's pooled activation by one weight, wherever the pattern is."
        )
    d = dict(drawn or {})
    text = "Head weights summed over kernels, one colour per class, against input position"
    if d.get("dims") == 2:
        box = " (each class's footprint a dashed box)" if d.get("footprint") else ""
        return text + f"{box}. Look at where each class's weight mass sits."
    text += "; each class's footprint is shaded in its colour." if d.get("footprint") else "."
    names = list(d.get("classes") or conn.classes)
    inside = list(d.get("inside_mean") or [])
    up = [n for n, v in zip(names, inside, strict=False) if v is not None and v > 0]
    down = [(n, v) for n, v in zip(names, inside, strict=False) if v is not None and v <= 0]
    if up:
        text += (
            f" For {_names(up)} the summed weight is positive on average inside the class's "
            "own footprint: activations landing there raise that logit."
        )
    if down:
        text += (
            f" For {_names([n for n, _ in down])} it is negative there (mean "
            f"{', '.join(f'{v:+.3g}' for _, v in down)}): activations in the footprint lower "
            "that logit, and its evidence comes from other positions."
        )
    rng = d.get("outside_range")
    if rng:
        text += (
            f" Outside their footprints the summed weights range from {rng[0]:+.3g} to "
            f"{rng[1]:+.3g}: a shifted pattern meets weights that background shaped."
        )
    return text


def weight_map(name: str, drawn: Mapping[str, Any] | None = None) -> str:
    """Caption of one class's weight map, naming only the marks the figure has."""
    d = dict(drawn or {})
    marks = []
    if d.get("footprint"):
        marks.append(f"the class's footprint interval as {d['footprint']}"
                     if d.get("dims") == 1 else f"its footprint as a {d['footprint']}")
    if d.get("cells"):
        marks.append("the (kernel, position) cells its data activates outlined")
    shown = f", {' and '.join(marks)}" if marks else ""
    look = (" Look at how much of the weight sits inside the footprint: a shifted pattern "
            "activates neurons outside it.") if d.get("footprint") else ""  # fmt: skip
    what = "per (kernel, position)" if d.get("dims") != 2 else "summed over kernels"
    return f"Weights of class '{name}' {what}, red positive, blue negative{shown}.{look}"


def kernels(name: str) -> str:
    return (
        f"The first-layer kernels that class '{name}' relies on most: the pattern detectors "
        "whose activations the head reads. They respond the same way wherever the pattern is."
    )


# --- sweep ----------------------------------------------------------------------


def _zero_index(shifts: Sequence[Any]) -> int:
    return min(range(len(shifts)), key=lambda i: (size(shifts[i]), i))


def telling_sentence(data: Mapping[str, Any], axis: Any) -> str:
    """How the telling shift (``sweep.telling``) was chosen, with its tie rule."""
    t = data["telling"]
    shift = fmt_shift(t["shift"], axis)
    if t["chosen_as"] != "lowest accuracy":
        return f"The report explains {shift}, {t['rule']}."
    ties = (
        f" {t['tied']} of the {len(data['shifts'])} shifts share that accuracy; the report "
        f"explains {shift}, chosen as {t['rule']}."
        if t["tied"] > 1
        else f" The report explains that shift, {shift}."
    )
    return f"Accuracy is lowest, {pct(t['accuracy'])}, at {shift}.{ties}"


def collapse_sentence(data: Mapping[str, Any], axis: Any,
                      winners: Sequence[str] = ()) -> str | None:  # fmt: skip
    """The collapse onto one class (``sweep.collapse``), or None when there is none.

    ``winners``: the classes that win in the explained samples; when they are all the
    collapse class the sentence says so (its weights are where the activations land).
    """
    c = data.get("collapse")
    if not c:
        return None
    name = c["class"]
    where = ""
    if c.get("all_from"):
        dims = 2 if isinstance(data["shifts"][0], (list, tuple)) else 1
        where = (
            f" At {fmt_extent(c['all_from'], axis, dims)} and beyond, every one of the "
            f"{data['n']} samples is predicted '{name}'."
        )
    why = ""
    if winners and all(w == name for w in winners):
        why = (
            f" '{name}' is also the class that wins in every sample explained above: its "
            "weights are the largest where the shifted activations land."
        )
    return (
        f"Shifted samples collapse onto one class: at the {c['failing_shifts']} shifts where "
        f"accuracy drops, {pct(c['share'])} of the predictions are '{name}'.{where}{why}"
    )


def consistency_sentence(data: Mapping[str, Any]) -> str | None:
    """Consistency next to what a constant predictor, and the collapse alone, give."""
    value = data.get("consistency")
    if not isinstance(value, (int, float)):
        return None
    c = data.get("collapse")
    text = (
        f"Consistency (two different shifts of an input get the same predicted class, Zhang "
        f"2019) is {pct(value)}; a constant predictor, one class for every input, scores "
        f"{pct(1.0)} on the same shifts, so consistency alone does not show that predictions "
        "are right."
    )
    if c and c.get("consistency_floor") is not None:
        text += (
            f" The collapse onto '{c['class']}' alone forces at least "
            f"{pct(c['consistency_floor'])} of it: pairs of shifts at which both predictions "
            f"are '{c['class']}'."
        )
    return text


def _with_choices(data: Mapping[str, Any]) -> dict[str, Any]:
    """The sweep dict with ``telling`` and ``collapse`` (as the report stores them)."""
    out = dict(data)
    if "telling" not in out:
        out["telling"] = telling_shift(out)
    if "collapse" not in out:
        out["collapse"] = collapse(out)
    return out


def sweep_sentences(data: Mapping[str, Any], axis: Any, winners: Sequence[str] = ()) -> list[str]:
    data = _with_choices(data)
    shifts, acc = data["shifts"], data["accuracy"]
    prob = data["mean_true_probability"]
    i0 = _zero_index(shifts)
    out = [
        f"{data['n']} samples, each shifted by {len(shifts)} shifts from "
        f"{fmt_shift(shifts[0], axis)} to {fmt_shift(shifts[-1], axis)} ({data['mode']} mode). "
        f"Accuracy is {pct(acc[i0])} at {fmt_shift(shifts[i0], axis)}; the mean probability of "
        f"the true class is {pct(prob[i0])} there and {pct(min(prob))} at its lowest.",
        telling_sentence(data, axis),
    ]
    out += [s for s in (collapse_sentence(data, axis, winners), consistency_sentence(data)) if s]
    if data.get("engine_reason"):
        out.append(f"How the logits of every (sample, shift) were computed: "
                   f"{data['engine_reason']}.")  # fmt: skip
    elif data.get("engine"):
        out.append(f"Logits of every (sample, shift) from the {data['engine']} engine.")
    return out


def sweep(data: Mapping[str, Any], axis: Any, drawn: Mapping[str, Any] | None = None) -> str:
    data = _with_choices(data)
    d = dict(drawn or {})
    t = data["telling"]
    marks = ""
    if d.get("train_range"):
        marks += f" The {d['train_range'].replace('shaded', 'shaded band')} marks the range of " \
                 "offsets seen in training."  # fmt: skip
    if d.get("invariance_range"):
        marks += f" The {d['invariance_range']} bound the invariance range."
    head = f"Accuracy and mean true-class probability versus shift.{marks}"
    if t["chosen_as"] != "lowest accuracy":
        return f"{head} Accuracy stays within the tolerance of its shift-0 level."
    at = (f"at {t['tied']} shifts, the smallest in size {fmt_shift(t['shift'], axis)}"
          if t["tied"] > 1 else f"at {fmt_shift(t['shift'], axis)}")  # fmt: skip
    return (
        f"{head} Look at where the curves leave their shift-0 level: accuracy reaches its "
        f"lowest, {pct(t['accuracy'])}, {at}."
    )


def per_class(data: Mapping[str, Any], axis: Any) -> str:
    worst = []
    for name, row in zip(data["classes"], data["per_class_accuracy"], strict=True):
        have = [i for i, v in enumerate(row) if v is not None]
        if have:
            i = have[lowest([row[j] for j in have], [data["shifts"][j] for j in have])]
            v = row[i]
            worst.append(f"'{name}' {pct(v)} at {fmt_shift(data['shifts'][i], axis)}")
    low = "; ".join(worst)
    return (
        "Accuracy of each class versus shift. Look for the classes that fail first, and at "
        f"which shifts. Lowest: {low}."
    )


# --- equivariance -----------------------------------------------------------------


def equivariance_sentences(data: Mapping[str, Any]) -> list[str]:
    """The equivariance analysis's own findings (generated from its measured errors)."""
    return [str(f) for f in data.get("findings") or []]


def equivariance(data: Mapping[str, Any], drawn: Mapping[str, Any] | None = None) -> str:
    line = (dict(drawn or {}).get("tolerance") or "tolerance line").replace(" line", "")
    brk = data.get("first_break")
    where = f"layer {brk!r} here" if brk else "no layer crosses it here"
    return (
        "Relative equivariance error per layer: how far each layer's output for a shifted "
        "input is from the shifted output (interior, on the stride grid), how much strided "
        "layers change off the grid (aliasing), and how much outputs without positions change. "
        f"Look for the first bar above the {line} tolerance line: {where}."
    )


# --- explanation --------------------------------------------------------------------


def explanation_intro(data: Mapping[str, Any], axis: Any) -> str:
    samples = ", ".join(str(i) for i in data["samples"])
    shift = fmt_shift(data["shift"], axis)
    if data.get("shift_chosen_as") == "largest shift":
        return (
            f"Samples {samples} at {shift}, the largest swept shift (accuracy did not drop): "
            "activity of the feature map before and after the shift and each position's "
            "contribution to the logits, which move with the pattern while the logits stay."
        )
    return (
        f"Samples {samples} (right unshifted and wrong shifted where possible, one per class) at "
        f"{shift}, the shift where accuracy is lowest: activity of the feature map before and "
        "after the shift, each position's contribution to the logits, the logit lost and the "
        "class that wins instead."
    )


def explanation(data: Mapping[str, Any], i: int, axis: Any,
                drawn: Mapping[str, Any] | None = None) -> str:  # fmt: skip
    entry = data["per_sample"][i]
    true, winner, drop = entry["true_class"], entry["winner"], entry.get("logit_drop")
    change = ""
    if isinstance(drop, (int, float)):
        change = f" loses {drop:.3g} logit" if drop > 0 else f" gains {-drop:.3g} logit"
    outcome = f"'{winner}' wins instead" if winner != true else f"'{true}' still wins"
    d = dict(drawn or {})
    where = (f" relative to the {d['footprint']} footprint of '{true}'"
             if d.get("footprint") else "")  # fmt: skip
    winner = f" ('{winner}' as a {d['winner']})" if d.get("winner") and winner != true else ""
    return (
        f"Sample {data['samples'][i]} (class '{true}'){change} when shifted by "
        f"{fmt_shift(data['shift'], axis)}; {outcome}. Look at where the activity moves{where}, "
        f"and where the contributions to the true class and to the winner{winner} go."
        if winner else
        f"Sample {data['samples'][i]} (class '{true}'){change} when shifted by "
        f"{fmt_shift(data['shift'], axis)}; {outcome}. Look at where the activity moves{where}, "
        "and where the true class's contributions go."
    )


# --- attribution --------------------------------------------------------------------


def attribution_intro(data: Mapping[str, Any], axis: Any) -> str:
    samples = ", ".join(str(i) for i in data["samples"])
    return (
        f"Samples {samples} (the first of those explained above, when there are), attributed "
        f"to their true class with {data['method']} at shifts "
        f"{', '.join(fmt_shift(s, axis) for s in data['shifts'])}."
    )


def attribution(data: Mapping[str, Any], axis: Any) -> str:
    sims = [(v, i) for i, v in enumerate(data.get("aligned_similarity") or [])
            if isinstance(v, (int, float))]  # fmt: skip
    low = ""
    if sims:
        v, i = min(sims)
        low = f" Lowest mean correlation: {v:.2f} at {fmt_shift(data['shifts'][i], axis)}."
    return (
        "Pearson correlation of each aligned attribution map with the unshifted one, versus "
        "shift. Look at whether it stays near 1: an equivariant explanation follows the "
        f"pattern even where the prediction changes.{low}"
    )


def attribution_maps(data: Mapping[str, Any], axis: Any) -> str:
    return (
        f"Attribution maps of sample {data['samples'][0]} at each shift, aligned back. Look at "
        "whether the attribution moves with the pattern and keeps its shape."
    )
