"""Deterministic choices a report makes: the telling shift, the samples shown, extra shifts.

No randomness: every choice is a rule over measured values, so the same
inputs give the same report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from interp._util import ACCURACY_TOLERANCE
from interp.geometry.core import Structure
from interp.reporting.formatting import size


def _as_shift(shift: Any) -> Any:
    return tuple(int(v) for v in shift) if isinstance(shift, (list, tuple)) else int(shift)


def dropped(sweep: Mapping[str, Any]) -> bool:
    """True when accuracy falls more than the tolerance below its shift-0 value somewhere."""
    shifts, acc = list(sweep["shifts"]), [float(a) for a in sweep["accuracy"]]
    i0 = min(range(len(shifts)), key=lambda i: (size(shifts[i]), i))
    return min(acc) < acc[i0] - float(sweep.get("tolerance") or ACCURACY_TOLERANCE)


TELLING_RULE = (
    "the shift with the lowest accuracy; where several shifts tie at that accuracy, the "
    "smallest of them in size, and of a tied -s and +s the negative one"
)
LARGEST_RULE = "the largest swept shift (accuracy stays within the tolerance of shift 0)"


def lowest(values: Sequence[float], shifts: Sequence[Any]) -> int:
    """Index of the lowest value; ties go to the smallest |shift|, then the negative one.

    The one tie rule of a report: every sentence, caption and figure that names "the
    shift where X is lowest" uses it, so they all name the same shift.

    >>> lowest([0.25, 1.0, 0.25, 0.25], [-4, 0, 2, -2])
    3
    """
    return min(range(len(values)), key=lambda i: (float(values[i]), size(shifts[i]),
                                                 _signed_key(shifts[i]), i))  # fmt: skip


def _signed_key(shift: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in shift) if isinstance(shift, (list, tuple)) else (int(shift),)


def telling_shift(sweep: Mapping[str, Any]) -> dict[str, Any]:
    """The telling shift of a sweep, as ``report.json``'s ``sweep.telling`` stores it.

    Every section (verdict, explanation, sweep text and captions, attribution) quotes
    this one field. ``rule`` is the sentence the report prints to say how it was chosen;
    ``tied`` counts the shifts that share its accuracy.

    >>> t = telling_shift({"shifts": [-2, 0, 2], "accuracy": [0.4, 1.0, 0.4], "tolerance": 0.05})
    >>> t["shift"], t["accuracy"], t["tied"], t["chosen_as"]
    (-2, 0.4, 2, 'lowest accuracy')
    """
    shifts, acc = list(sweep["shifts"]), [float(a) for a in sweep["accuracy"]]
    if dropped(sweep):
        best, chosen_as, rule = lowest(acc, shifts), "lowest accuracy", TELLING_RULE
    else:
        best = min(range(len(acc)), key=lambda i: (-size(shifts[i]), _signed_key(shifts[i]), i))
        chosen_as, rule = "largest shift", LARGEST_RULE
    shift = _as_shift(shifts[best])
    tied = [i for i, a in enumerate(acc) if a == acc[best]]
    return {
        "shift": list(shift) if isinstance(shift, tuple) else shift,
        "index": best,
        "accuracy": acc[best],
        "chosen_as": chosen_as,
        "rule": rule,
        "tied": len(tied) if chosen_as == "lowest accuracy" else 1,
    }


def telling(sweep: Mapping[str, Any]) -> Any:
    """The shift to explain (:func:`telling_shift`): read from ``sweep["telling"]`` when
    the report stored it, else chosen by the same rule.

    >>> telling({"shifts": [-2, 0, 2], "accuracy": [0.4, 1.0, 0.4], "tolerance": 0.05})
    -2
    """
    entry = sweep.get("telling") or telling_shift(sweep)
    return _as_shift(entry["shift"])


COLLAPSE_SHARE = 0.5  # "most": more than half the predictions at the failing shifts


def collapse(sweep: Mapping[str, Any]) -> dict[str, Any] | None:
    """Whether the shifts where accuracy drops send most samples to one class.

    From the sweep's confusion (``[shift][true][predicted]`` counts): the class predicted
    most often over the failing shifts (accuracy more than the tolerance below shift 0),
    its share of those predictions, the share at every shift, and ``all_from``: the
    smallest |shift| from which every swept shift at least that large sends every sample
    to it (None when no such tail exists). ``consistency_floor`` is the part of the
    consistency the collapse alone forces: over ordered pairs of distinct shifts s, s',
    at least ``max(0, f_s + f_s' - 1)`` of the samples are predicted the class at both
    (Frechet's bound), averaged exactly over the same pairs the consistency counts. A
    constant predictor scores a consistency of 1 on any shifts.

    Returns None without a confusion, without a drop, or when no class has most of the
    failing predictions.

    >>> c = collapse({"shifts": [-1, 0, 1], "accuracy": [0.5, 1.0, 0.5], "tolerance": 0.05,
    ...     "classes": ["a", "b"], "confusion": [[[0, 1], [0, 1]], [[1, 0], [0, 1]],
    ...                                          [[0, 1], [0, 1]]]})
    >>> c["class"], c["share"], c["all_from"], round(c["consistency_floor"], 4)
    ('b', 1.0, 1, 0.6667)
    """
    confusion = sweep.get("confusion")
    if not confusion or not dropped(sweep):
        return None
    shifts, acc = list(sweep["shifts"]), [float(a) for a in sweep["accuracy"]]
    i0 = min(range(len(shifts)), key=lambda i: (size(shifts[i]), i))
    tol = float(sweep.get("tolerance") or ACCURACY_TOLERANCE)
    failing = [i for i, a in enumerate(acc) if a < acc[i0] - tol]
    counts = torch.tensor(confusion, dtype=torch.float64)  # (S, K, K) [shift][true][pred]
    n = counts[0].sum()
    predicted = counts.sum(1)  # (S, K) samples predicted each class, per shift
    over_failing = predicted[failing].sum(0)  # (K,)
    c = int(over_failing.argmax())
    share = float(over_failing[c] / over_failing.sum())
    if share <= COLLAPSE_SHARE:
        return None
    f = predicted[:, c] / n  # (S,) share of samples predicted c at each shift
    sizes = [size(v) for v in shifts]
    all_from = None
    for m in sorted({v for v in sizes if v > 0}, reverse=True):
        if all(float(f[i]) == 1.0 for i, v in enumerate(sizes) if v >= m):
            all_from = m
        else:
            break
    s_n = len(shifts)
    pair = (f[:, None] + f[None, :] - 1).clamp(min=0)  # (S, S) forced agreement on c
    floor = float((pair.sum() - pair.diagonal().sum()) / (s_n * (s_n - 1))) if s_n > 1 else None
    classes = list(sweep.get("classes") or [])
    return {
        "class": classes[c] if c < len(classes) else str(c),
        "class_index": c,
        "share": share,
        "failing_shifts": len(failing),
        "share_by_shift": [float(v) for v in f],
        "all_from": all_from,
        "constant_consistency": 1.0,
        "consistency_floor": floor,
    }


def pick_samples(pred: torch.Tensor, y: torch.Tensor, n: int) -> list[int]:
    """Up to ``n`` sample indices that show the failure, one class at a time.

    Args:
        pred: (N, 2) predicted classes unshifted and at the telling shift.
        y: (N,) labels.

    Preference: right unshifted and wrong shifted, then right unshifted, then any;
    within each tier, classes in label order before a second sample of a class.

    >>> pick_samples(torch.tensor([[0, 1], [1, 1], [0, 0]]), torch.tensor([0, 1, 0]), 2)
    [0, 1]
    """
    y = y.cpu()
    pred = pred.cpu()
    right = pred[:, 0] == y
    tiers = [right & (pred[:, 1] != y), right, torch.ones_like(right)]
    chosen: list[int] = []
    for tier in tiers:
        candidates = [int(i) for i in tier.nonzero().flatten() if int(i) not in chosen]
        seen = {int(y[i]) for i in chosen}
        # First one per class not yet shown, then the rest, in index order.
        firsts = []
        for i in candidates:
            if int(y[i]) not in seen:
                firsts.append(i)
                seen.add(int(y[i]))
        for i in [*firsts, *[c for c in candidates if c not in firsts]]:
            if len(chosen) == n:
                return chosen
            chosen.append(i)
    return chosen


def _stride(geo: Structure) -> int:
    strides = [max(lay.stride) for lay in geo.layers if lay.stride is not None]
    return max(strides, default=1)


def equivariance_shifts(geo: Structure, sweep_shifts: Sequence[Any]) -> list[Any]:
    """Shifts on and off the stride grid, plus the smallest swept one (at most 8).

    Multiples of the cumulative stride measure equivariance; the others measure
    aliasing (DESIGN.md, equivariance.py).

    >>> from types import SimpleNamespace as N
    >>> geo = N(spatial_dims=1, layers=[N(stride=(2,))])
    >>> equivariance_shifts(geo, [-64, 0, 64])
    [1, 2, 3, 4, 64]
    """
    s = _stride(geo)
    positive = [size(v) for v in sweep_shifts if size(v) > 0]
    q = min(positive) if positive else None
    if geo.spatial_dims == 1:
        values = {1, 2, 3, s, s + 1, 2 * s}
        if q is not None:
            values.add(q)
        return sorted(values)[:8]
    pairs = {(0, 1), (1, 0), (1, 1), (s, s), (s + 1, s), (0, s)}
    if q is not None:
        pairs.add((q, q))
    return sorted(pairs)[:8]


def attribution_shifts(shift: Any, sweep_shifts: Sequence[Any]) -> list[Any]:
    """Five shifts from ``-shift`` to ``+shift`` through 0 (largest swept shift if None/0).

    >>> attribution_shifts(-3000, [])
    [-3000, -1500, 0, 1500, 3000]
    """
    if shift is None or size(shift) == 0:
        shift = max(sweep_shifts, key=size) if sweep_shifts else 0
    shift = _as_shift(shift)
    if isinstance(shift, tuple):
        dy, dx = shift
        hy, hx = int(dy / 2), int(dx / 2)  # truncation: symmetric about 0
        return sorted({(-dy, -dx), (-hy, -hx), (0, 0), (hy, hx), (dy, dx)})
    t = abs(shift)
    return sorted({-t, -(t // 2), 0, t // 2, t})
