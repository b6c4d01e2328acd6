"""The verdict: invariant or not, why, and what to do, generated from the report JSON alone.

:func:`verdict` reads only the report dict (structure, sweep, equivariance,
axis), so every sentence it writes can be checked against numbers in
``report.json``. The rule:

- with a sweep, and a model that works at shift 0 (accuracy at least halfway
  from chance to 100%): invariant when accuracy stays within the sweep's
  tolerance (5 points) of its shift-0 value at every swept shift, in either
  direction (the rule of the sweep's invariance range, applied to all shifts);
- otherwise from structure: a positional head is not invariant by
  construction; a pooled head is invariant up to boundary effects and
  aliasing (to be confirmed with data); an unknown head is undecided (None).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from interp._util import ACCURACY_TOLERANCE
from interp.reporting.formatting import fmt_extent, fmt_shift, pct, rel, size

__all__ = ["fmt_extent", "fmt_shift", "head_clause", "pct", "rel", "size", "verdict"]


def _layer(structure: Mapping[str, Any], name: Any) -> Mapping[str, Any]:
    for lay in structure.get("layers") or []:
        if isinstance(lay, Mapping) and lay.get("name") == name:
            return lay
    return {}


def site_ref(structure: Mapping[str, Any], name: Any) -> str:
    """A call site's quoted name, with the module that makes the call when it is a function
    or method inside a module's forward (the graph's names for those, 'log' or 'mul', are
    not names in the person's code).

    >>> site_ref({"layers": [{"name": "log", "module": "pool_nonlin_exp"}]}, "log")
    "'log' (in module 'pool_nonlin_exp')"
    >>> site_ref({"layers": [{"name": "conv", "module": None}]}, "conv")
    "'conv'"
    """
    owner = _layer(structure, name).get("module")
    return f"{name!r} (in module {owner!r})" if owner else repr(name)


def head_clause(structure: Mapping[str, Any]) -> str:
    """What makes a positional head positional, from the structure JSON: the one wording
    the verdict, the equivariance findings and the connectivity text agree with.

    >>> head_clause({"head": {"kind": "positional", "linear": "fc", "reads": "3",
    ...              "channels": 8, "positions": [247]}})
    "the head Linear 'fc' gives each of the 8 kernels x 247 positions of layer '3' its own weight"
    """
    head = structure.get("head") or {}
    positions = "x".join(str(p) for p in head.get("positions") or [])
    reads, linear = head.get("reads"), head.get("linear")
    brk = head.get("breaks") or linear
    lay = _layer(structure, brk)
    at = site_ref(structure, reads)
    kind, role = str(lay.get("type") or ""), str(lay.get("role") or "")
    if "Conv" in kind or "conv" in kind:
        return (
            f"the classifier conv {brk!r} covers every one of the {positions} positions of layer "
            f"{at}: each (kernel, position) gets its own weight, as with Flatten -> Linear"
        )
    if "fixed positions" in role or kind.endswith("getitem") or "index" in role:
        return (
            f"the head reads fixed positions of layer {at} at {site_ref(structure, brk)} (an "
            "index, not a pooling): the logits depend on where a pattern sits"
        )
    if any(r in kind for r in ("LSTM", "GRU", "RNN")):
        return (
            f"the recurrent layer {brk!r} reads the {positions} positions of layer {at} "
            "in order: rolling the map changes the logits"
        )
    what = f"the head Linear {linear!r}" if linear else "the head"
    return (
        f"{what} gives each of the {head.get('channels')} kernels x {positions} positions of "
        f"layer {at} its own weight"
    )


def _head_reason(structure: Mapping[str, Any], measured_invariant: bool | None) -> str | None:
    head = structure.get("head") or {}
    positions = "x".join(str(p) for p in head.get("positions") or [])
    if head.get("kind") == "positional":
        clause = head_clause(structure)
        clause = clause[0].upper() + clause[1:]
        if measured_invariant:
            return (
                f"{clause}: the head is positional, so the invariance measured here was learned "
                "position by position (e.g. from shift augmentation) and holds only where "
                "training put patterns."
            )
        return (
            f"{clause}, with no global pooling: the head is positional, so a shifted pattern "
            "lands on neurons whose weights for its class were shaped only by background."
        )
    if head.get("kind") == "pooled":
        how = f"global {head.get('pooling')} pooling" if head.get("pooling") else "global pooling"
        return (
            f"The head Linear {head.get('linear')!r} reads {head.get('channels')} kernels after "
            f"{how} over the {positions} positions of layer {head.get('reads')!r}: one weight "
            "per kernel, wherever the pattern is."
        )
    return None


def _pooling_suggestion(structure: Mapping[str, Any], num_classes: Any) -> str:
    head = structure.get("head") or {}
    dims = int(structure.get("spatial_dims") or 1)
    shape = _layer(structure, head.get("reads")).get("output_shape")
    if isinstance(shape, list) and len(shape) in (2, 3):
        dims = len(shape) - 1  # the map's own rank: an EEG map (C, T, 1) needs a 2d pool
    positions = "x".join(str(p) for p in head.get("positions") or [])
    return (
        f"Put global pooling before the head: AdaptiveMaxPool{dims}d(1) (or AvgPool) after layer "
        f"{head.get('reads')!r}, then Linear({head.get('channels')}, {num_classes}); every one "
        f"of the {positions} positions then shares one weight per kernel."
    )


def _equivariance_reasons(
    eq: Mapping[str, Any] | None, invariant: bool | None
) -> tuple[list[str], list[str]]:
    """Where equivariance breaks and which strided layers alias, from the equivariance JSON.

    ``invariant``: the measured verdict; when accuracy held, anti-aliasing is optional.
    """
    if not eq:
        return [], []
    reasons, suggestions = [], []
    layers = [lay for lay in eq.get("layers") or [] if isinstance(lay, Mapping)]
    by_name = {lay.get("name"): lay for lay in layers}
    brk = by_name.get(eq.get("first_break"))
    if brk is not None:
        before = [float(lay["interior_error"]) for lay in layers[: layers.index(brk)]
                  if lay.get("positions") and lay.get("interior_error") is not None]  # fmt: skip
        trunk = f" every layer before it moves its features with the input (interior error at " \
                f"most {rel(max(before))});" if before else ""  # fmt: skip
        if brk.get("positions"):
            change = (
                f"its output differs from its shifted output by {rel(brk.get('interior_error'))}"
            )
        else:
            change = f"its output changes by {rel(brk.get('invariance_error'))} under shifts"
        reasons.append(
            f"Equivariance first breaks at layer {_label(brk)!r} ({brk.get('type')}):{trunk} "
            f"{change}."
        )
    aliasing = [by_name[n] for n in eq.get("aliasing_layers") or [] if n in by_name]
    for lay in aliasing:
        stride = "x".join(str(v) for v in lay.get("stride") or []) or "?"
        against = (f", more than the {rel(lay.get('error'))} that shifts by multiples of "
                   f"{stride} cause" if lay.get("error") is not None else "")  # fmt: skip
        reasons.append(
            f"Strided layer {_label(lay)!r} ({lay.get('type')}, stride {stride}) aliases: shifts "
            f"that are not multiples of {stride} change its features by "
            f"{rel(lay.get('aliasing_error'))}{against}."
        )
    if aliasing:
        quoted = [repr(_label(lay)) for lay in aliasing]
        names = ("layer " if len(quoted) == 1 else "layers ") + (
            quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]
        )
        worst = max((lay.get("aliasing_error") or 0.0) for lay in aliasing)
        text = (
            f"anti-aliased pooling (blur before subsampling, Zhang 2019; a wider blur where one "
            f"is already there) in {names}: shifts off the stride grid change the features by "
            f"up to {rel(worst)}, more than shifts on it do"
        )
        suggestions.append(
            f"If exact invariance matters, use {text}, although accuracy held over the swept "
            "shifts."
            if invariant
            else f"Use {text}."
        )
    return reasons, suggestions


def _label(lay: Mapping[str, Any]) -> Any:
    """A layer's name in sentences: the owner module of a functional call site (``module``,
    e.g. the BlurPool whose forward calls ``F.conv2d``), else the call site's own name."""
    return lay.get("module") or lay.get("name")


def _train_extent(train: Any) -> float | None:
    """Largest |offset| of the sweep's ``train_range`` ([lo, hi] or r), or None."""
    if isinstance(train, (int, float)) and not isinstance(train, bool):
        return abs(float(train))
    if isinstance(train, (list, tuple)) and len(train) == 2:
        return max(abs(float(v)) for v in train)
    return None


def _range_sentence(inv: Any, axis: Any, dims: int, tol: float) -> str | None:
    if not isinstance(inv, (list, tuple)) or len(inv) != 2:
        return None
    lo, hi = inv
    if dims == 1:
        where = f"from {fmt_shift(lo, axis)} to {fmt_shift(hi, axis)}"
    else:
        unit = fmt_shift(0, axis).split()[-1] if axis else "px"
        where = (f"for dy from {lo[0]:+d} to {hi[0]:+d} (dx = 0) and dx from {lo[1]:+d} to "
                 f"{hi[1]:+d} (dy = 0) {unit}")  # fmt: skip
    return (
        f"The invariance range, where accuracy stays within {tol * 100:g} points of shift 0 "
        f"without a gap, runs {where}."
    )


def collapse_clause(sweep: Mapping[str, Any], axis: Any, dims: int) -> str | None:
    """The collapse onto one class, from ``sweep.collapse`` alone, as a clause (or None).

    ``all_from`` gives "beyond +-X, 100% of the N samples are predicted 'c'"; without such
    a tail, the share of the predictions at the failing shifts.

    >>> collapse_clause({"n": 4, "collapse": {"class": "b", "share": 1.0, "all_from": 1,
    ...     "failing_shifts": 2}}, None, 1)
    "at ±1 samples and beyond, 100.0% of the 4 samples are predicted 'b'"
    """
    c = sweep.get("collapse")
    if not isinstance(c, Mapping):
        return None
    name = c["class"]
    if c.get("all_from"):
        return (
            f"at {fmt_extent(c['all_from'], axis, dims)} and beyond, {pct(1.0)} of the "
            f"{sweep.get('n')} samples are predicted '{name}'"
        )
    return (
        f"at the {c['failing_shifts']} shifts where accuracy drops, {pct(c['share'])} of the "
        f"predictions are '{name}'"
    )


def _measured(content: Mapping[str, Any]) -> dict[str, Any] | None:
    """The decision and sentences from the shift sweep, or None when it cannot decide."""
    sweep = content.get("sweep")
    if not isinstance(sweep, Mapping) or not sweep.get("accuracy"):
        return None
    axis = content.get("axis")
    dims = int((content.get("structure") or {}).get("spatial_dims") or 1)
    tol = float(sweep.get("tolerance") or ACCURACY_TOLERANCE)
    shifts, acc = list(sweep["shifts"]), [float(a) for a in sweep["accuracy"]]
    i0 = min(range(len(shifts)), key=lambda i: (size(shifts[i]), i))
    a0, s0 = acc[i0], fmt_shift(shifts[i0], axis)
    k = (content.get("structure") or {}).get("num_classes") or 0
    chance = 1.0 / k if k else 0.0
    if a0 < chance + (1.0 - chance) / 2:
        if a0 <= chance:
            where = "at chance" if a0 == chance else "below chance"
        else:
            where = "less than halfway from chance to 100%"
        return {
            "undecided": (
                f"Accuracy at {s0} is only {pct(a0)} (chance is {pct(chance)}): the model does "
                "not solve the task on this data, so the sweep cannot show invariance."
            ),
            "basis": (
                f"measured on data, but accuracy at {s0} is {pct(a0)}, {where} ({pct(chance)} "
                f"for {k} classes), so the sweep cannot decide; decided from the architecture"
            ),
        }
    failing = [i for i, a in enumerate(acc) if abs(a - a0) > tol + 1e-12]
    worst = min(range(len(acc)), key=lambda i: (acc[i], size(shifts[i]), i))
    told = sweep.get("telling")  # the report's one telling shift (choose.telling_shift)
    if isinstance(told, Mapping) and told.get("chosen_as") == "lowest accuracy":
        worst = int(told["index"])
    span = (
        f"{len(shifts)} shifts from {fmt_shift(shifts[0], axis)} to {fmt_shift(shifts[-1], axis)}"
    )
    reasons, details, suggestions = [], [], []
    if failing:
        big = max(size(s) for s in shifts)
        ends = [i for i in range(len(shifts)) if size(shifts[i]) == big]
        at_ends = " and ".join(f"{pct(acc[i])} at {fmt_shift(shifts[i], axis)}" for i in ends[:2])
        reasons.append(
            f"Accuracy falls from {pct(a0)} at {s0} to {pct(acc[worst])} at "
            f"{fmt_shift(shifts[worst], axis)} ({span}); at the largest shifts it is {at_ends}."
        )
        first = min(failing, key=lambda i: (size(shifts[i]), i))
        reach = max(size(shifts[i]) for i in failing)
        train = _train_extent(sweep.get("train_range"))
        seen = (
            f", while training only saw offsets up to {fmt_extent(train, axis, dims)}"
            if train is not None
            else ""
        )
        suggestions.append(
            f"Augment training with random shifts over {fmt_extent(reach, axis, dims)} to cover "
            f"the failing range: accuracy is more than {tol * 100:g} points off its shift-0 "
            f"value at shifts as small as {fmt_shift(shifts[first], axis)}{seen}."
        )
        sentence = _range_sentence(sweep.get("invariance_range"), axis, dims, tol)
        if sentence:
            details.append(sentence)
    else:
        lowest = (
            f" (lowest {pct(acc[worst])} at {fmt_shift(shifts[worst], axis)})"
            if acc[worst] < a0
            else ""
        )
        reasons.append(
            f"Accuracy stays within {tol * 100:g} points of its {pct(a0)} at {s0} across "
            f"all {span}{lowest}."
        )
    consistency = sweep.get("consistency")
    if isinstance(consistency, (int, float)):
        details.append(
            f"Two different shifts of the same input get the same predicted class "
            f"{pct(consistency)} of the time (consistency, Zhang 2019; {sweep.get('n')} "
            f"samples, {sweep.get('mode')} mode)."
        )
    return {
        "invariant": not failing,
        "collapse": collapse_clause(sweep, axis, dims) if failing else None,
        "reasons": reasons,
        "details": details,
        "suggestions": suggestions,
    }


def verdict(content: Mapping[str, Any]) -> dict[str, Any]:
    """Decide translation invariance from a report dict; every sentence cites its numbers.

    Args:
        content: a report dict with ``structure`` and, when measured, ``sweep``,
            ``equivariance`` and ``axis``.

    Returns:
        ``{"translation_invariant": bool | None, "basis": "measured" | "structure",
        "basis_text": str, "headline": str, "reasons": [...], "suggestions": [...]}``;
        ``basis_text`` says what decided and whether a sweep ran (the verdict's
        parenthesis). "Measure it" is suggested only when no data was given.

    >>> verdict({"structure": {"head": {"kind": "positional"}}})["translation_invariant"]
    False
    """
    structure = content.get("structure") or {}
    kind = (structure.get("head") or {}).get("kind", "unknown")
    reasons: list[str] = []
    suggestions: list[str] = []
    measured = _measured(content)
    measured_invariant = (measured or {}).get("invariant")
    head = _head_reason(structure, measured_invariant)
    eq_reasons, eq_suggestions = _equivariance_reasons(
        content.get("equivariance"), measured_invariant
    )
    sweep = content.get("sweep")
    data = content.get("data")
    if measured is not None and "undecided" not in measured:
        invariant: bool | None = measured["invariant"]
        basis = "measured"
        basis_text = "measured on data"
        reasons += measured["reasons"]
    else:
        basis = "structure"
        invariant = {"positional": False, "pooled": True}.get(kind)
        if measured is not None:
            reasons.append(measured["undecided"])
            basis_text = measured["basis"]
        elif sweep is not None:  # a sweep without accuracies (no shifts): nothing to read
            basis_text = "decided from the architecture; the shift sweep recorded no accuracy"
        elif data is not None:  # data given, but the sweep failed (its section says why)
            n = data.get("n") if isinstance(data, Mapping) else None
            given = f"the {n} examples given" if n else "the data given"
            basis_text = (
                f"decided from the architecture; the shift sweep did not run on {given}"
            )
            reasons.append(
                f"The shift sweep did not run on {given} (the Shifts section says why), so the "
                "architecture decides."
            )
        else:
            basis_text = "decided from the architecture; no shift sweep ran"
    if head:
        reasons.append(head)
    reasons += eq_reasons
    if measured is not None:
        reasons += measured.get("details", [])
    if invariant is False and kind == "positional":
        suggestions.append(_pooling_suggestion(structure, structure.get("num_classes")))
    if measured is not None and "suggestions" in measured:
        suggestions += measured["suggestions"]
    suggestions += eq_suggestions
    if basis == "structure":
        if kind == "pooled":
            confirm = (
                "a shift sweep on data the model solves (accuracy at shift 0 well above chance) "
                "confirms it" if measured is not None else "a shift sweep on data confirms it"
            )
            reasons.append(
                "Pooled heads are invariant up to boundary effects and aliasing from strided "
                f"layers; {confirm}."
            )
        if kind == "unknown":
            reasons.append(
                "No Linear head reading a feature map through Flatten or global pooling was "
                "found, so the architecture alone cannot decide."
            )
        if sweep is None and data is None:  # only without data: with data, a sweep was tried
            suggestions.append(
                "Measure it: pass --data FILE (data=(x, y) in Python) with labelled examples "
                "to sweep accuracy over shifts."
            )
    collapse = (measured or {}).get("collapse")
    return {
        "translation_invariant": invariant,
        "basis": basis,
        "basis_text": basis_text,
        "headline": _headline(invariant, basis, collapse, swept=measured is not None),
        "reasons": reasons,
        "suggestions": suggestions,
    }


def _headline(
    invariant: bool | None, basis: str, collapse: str | None = None, swept: bool = False
) -> str:
    if invariant is None:
        return "Translation invariance could not be decided."
    if basis == "measured":
        if invariant:
            return "The model is translation invariant over the swept shifts."
        if collapse:  # the most telling fact: shifted inputs all go to one class
            return f"The model is not translation invariant: {collapse}."
        return "The model is not translation invariant."
    return (
        "The model is invariant by construction, up to boundary effects and aliasing "
        f"({'not confirmed by the sweep' if swept else 'not yet measured'})."
        if invariant
        else "The model is not translation invariant, by construction."
    )
