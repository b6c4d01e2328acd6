"""Deterministic choices a report makes: the telling shift, the samples shown, extra shifts.

No randomness: every choice is a rule over measured values, so the same
inputs give the same report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from interp._util import ACCURACY_TOLERANCE
from interp.reporting.formatting import size
from interp.geometry.core import Structure


def _as_shift(shift: Any) -> Any:
    return tuple(int(v) for v in shift) if isinstance(shift, (list, tuple)) else int(shift)


def dropped(sweep: Mapping[str, Any]) -> bool:
    """True when accuracy falls more than the tolerance below its shift-0 value somewhere."""
    shifts, acc = list(sweep["shifts"]), [float(a) for a in sweep["accuracy"]]
    i0 = min(range(len(shifts)), key=lambda i: (size(shifts[i]), i))
    return min(acc) < acc[i0] - float(sweep.get("tolerance") or ACCURACY_TOLERANCE)


def telling(sweep: Mapping[str, Any]) -> Any:
    """The shift to explain: where accuracy is lowest (smallest such shift), if it drops.

    When accuracy never leaves the tolerance of shift 0 the largest swept shift
    is used instead: it shows what keeps the prediction.

    >>> telling({"shifts": [-2, 0, 2], "accuracy": [0.4, 1.0, 0.4], "tolerance": 0.05})
    -2
    """
    shifts, acc = list(sweep["shifts"]), [float(a) for a in sweep["accuracy"]]
    if dropped(sweep):
        best = min(range(len(acc)), key=lambda i: (acc[i], size(shifts[i]), i))
    else:
        best = min(range(len(acc)), key=lambda i: (-size(shifts[i]), i))
    return _as_shift(shifts[best])


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
