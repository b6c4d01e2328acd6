"""What each shipped model must show, measured on fresh held-out examples in roll mode.

The model cards (``interp.zoo.cards``) and the slow test both call
:func:`check`, so the numbers in ``trained/README.md`` and the test agree on
what is measured. ``full=False`` measures fewer shifts, for the test.

>>> results = check("seed_gap", model, n=64, full=False)    # doctest: +SKIP
>>> all(r.passed for r in results)                          # doctest: +SKIP
True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from torch import nn

from interp.zoo.evaluate import Shift, shift_accuracy
from interp.zoo.models import get


@dataclass(frozen=True)
class Criterion:
    """Accuracy at every shift in ``shifts`` (``full``) must be >= ``minimum`` / <= ``maximum``."""

    label: str
    shifts: tuple[Shift, ...]
    quick: tuple[Shift, ...]  # the subset the slow test measures
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True)
class Result:
    """One criterion measured: accuracy per shift, the worst one, and whether it passed."""

    label: str
    rule: str
    shifts: list[Any]
    accuracy: list[float]
    worst: float
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _grid(values: range) -> tuple[tuple[int, int], ...]:
    return tuple((dy, dx) for dy in values for dx in values)


_FAR_1D = (-3000, -2750, -2500, -2250, -2000, 2000, 2250, 2500, 2750, 3000)
_ALL_1D = tuple(range(-3000, 3001, 250))
_QUICK_1D = (-3000, -2250, -1500, -750, -125, 0, 375, 1000, 1750, 2500, 3000)
_FAR_2D = tuple(s for s in _grid(range(-12, 13, 4)) if max(abs(s[0]), abs(s[1])) >= 8)
_NEAR_2D = _grid(range(-8, 9, 2))

CRITERIA: dict[str, tuple[Criterion, ...]] = {
    "seed_cnn": (
        Criterion("no shift", (0,), (0,), minimum=0.95),
        Criterion(
            "shifts of 2000+ bins either way", _FAR_1D, (-3000, -2000, 2000, 3000),
            maximum=0.40,
        ),
    ),
    "seed_gap": (Criterion("every shift in +-3000 bins", _ALL_1D, _QUICK_1D, minimum=0.95),),
    "seed_aug": (Criterion("every shift in +-3000 bins", _ALL_1D, _QUICK_1D, minimum=0.90),),
    "shapes_cnn": (
        Criterion("centred", ((0, 0),), ((0, 0),), minimum=0.95),
        Criterion(
            "shifts of 8+ px (dy, dx on a 4 px grid to 12)", _FAR_2D,
            ((8, 0), (0, 8), (-8, -8), (12, 4)), maximum=0.50,
        ),
    ),
    "shapes_gap": (
        Criterion(
            "every shift within +-8 px (2 px grid)", _NEAR_2D,
            ((0, 0), (8, 8), (-8, 2), (3, -5), (-7, 0)), minimum=0.90,
        ),
    ),
}  # fmt: skip


def check(
    name: str, model: nn.Module, *, n: int = 256, seed: int | None = None, full: bool = True
) -> list[Result]:
    """Measure ``model`` against the acceptance criteria of zoo model ``name``.

    Args:
        name: a zoo name; its recipe generates ``n`` held-out examples.
        model: the trained model (left unchanged).
        n: examples per shift.
        seed: data seed; None uses the recipe's held-out default.
        full: all shifts of each criterion, or the quick subset.
    """
    x, y = get(name).recipe.sample(n, seed=seed)
    results = []
    for c in CRITERIA[name]:
        shifts = list(c.shifts if full else c.quick)
        acc = shift_accuracy(model, x, y, shifts)
        if c.maximum is None:
            bound = c.minimum or 0.0
            worst, passed, rule = min(acc), min(acc) >= bound, f">= {bound:.0%}"
        else:
            worst, passed, rule = max(acc), max(acc) <= c.maximum, f"<= {c.maximum:.0%}"
        results.append(
            Result(c.label, rule, [list(s) if isinstance(s, tuple) else s for s in shifts],
                   acc, worst, passed)
        )  # fmt: skip
    return results
