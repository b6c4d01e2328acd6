"""The :class:`Sweep` result: running sums over sample batches -> accuracy, confusion,
consistency and the invariance range.

The invariance range is the largest interval of shifts around 0, contiguous in
the sorted set of swept shifts, over which accuracy stays within ``tolerance``
(default 5 points) of the unshifted accuracy, in either direction. For 2D it is
found per axis along the lines through the origin (``dx = 0`` for rows, ``dy = 0``
for columns) and given as ``((lo_y, lo_x), (hi_y, hi_x))``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from interp.errors import InterpError
from interp.shifts import Shift
from interp.sweep.stats import SweepStats

if TYPE_CHECKING:
    from matplotlib.figure import Figure

TrainRange = int | tuple[float, float]
AxisPairs = tuple[tuple[str, Any], ...]  # one axis's metadata (name, unit, start, step) as pairs
_EPS = 1e-12  # accuracies are ratios of counts: compare with this slack


@dataclass(frozen=True)
class Sweep:
    """A classifier's accuracy and confidence over input shifts.

    Per-shift sequences follow ``shifts`` (in the order given). ``per_class_*`` are
    (K, S), None for a class with no samples; ``confusion`` is (S, K, K) counts,
    ``[shift][true][predicted]``. ``consistency`` is exact over all pairs of distinct
    shifts (see :mod:`interp.sweep.core`); None with one shift. ``invariance_range`` is
    ``(lo, hi)`` in shifts (input positions), None when 0 was not swept. ``axis`` holds
    each spatial axis's metadata as ``(key, value)`` pairs (``dict(sw.axis[0])``).
    """

    shifts: tuple[Shift, ...]
    mode: str
    n: int
    classes: tuple[str, ...]
    class_counts: tuple[int, ...]
    accuracy: tuple[float, ...]
    mean_true_probability: tuple[float, ...]
    per_class_accuracy: tuple[tuple[float | None, ...], ...]
    per_class_true_probability: tuple[tuple[float | None, ...], ...]
    confusion: tuple[tuple[tuple[int, ...], ...], ...]
    consistency: float | None
    invariance_range: tuple[Shift, Shift] | None
    tolerance: float
    engine: str
    engine_reason: str
    axis: tuple[AxisPairs, ...] | None
    train_range: tuple[float, float] | None

    @property
    def spatial_dims(self) -> int:
        return 2 if isinstance(self.shifts[0], tuple) else 1

    @property
    def unshifted_accuracy(self) -> float | None:
        """Accuracy at shift 0 (or (0, 0)), None if it was not swept."""
        zero = (0, 0) if self.spatial_dims == 2 else 0
        return self.accuracy[self.shifts.index(zero)] if zero in self.shifts else None

    def axis_meta(self, dim: int = 0) -> dict[str, Any] | None:
        """Axis ``dim``'s metadata as a dict (name, unit, start, step), None without any."""
        return dict(self.axis[dim]) if self.axis and dim < len(self.axis) else None

    def shift_units(self, s: Shift) -> float | tuple[float, float]:
        """A shift in input units (``s * step`` per axis: bins, Hz, pixels...)."""
        steps = [float(dict(a).get("step", 1.0)) for a in self.axis] if self.axis else [1.0, 1.0]
        if isinstance(s, tuple):
            return (s[0] * steps[0], s[1] * steps[-1])
        return s * steps[0]

    @property
    def invariance_range_units(self) -> tuple[Any, Any] | None:
        if self.invariance_range is None:
            return None
        lo, hi = self.invariance_range
        return (self.shift_units(lo), self.shift_units(hi))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict; 2D shifts are ``[dy, dx]`` lists."""

        def j(v: Any) -> Any:
            return [j(e) for e in v] if isinstance(v, (tuple, list)) else v

        return {
            "mode": self.mode,
            "n": self.n,
            "shifts": j(self.shifts),
            "shifts_units": j([self.shift_units(s) for s in self.shifts]),
            "classes": list(self.classes),
            "class_counts": list(self.class_counts),
            "accuracy": list(self.accuracy),
            "unshifted_accuracy": self.unshifted_accuracy,
            "mean_true_probability": list(self.mean_true_probability),
            "per_class_accuracy": j(self.per_class_accuracy),
            "per_class_true_probability": j(self.per_class_true_probability),
            "confusion": j(self.confusion),
            "consistency": self.consistency,
            "invariance_range": j(self.invariance_range),
            "invariance_range_units": j(self.invariance_range_units),
            "tolerance": self.tolerance,
            "engine": self.engine,
            "engine_reason": self.engine_reason,
            "axis": [dict(a) for a in self.axis] if self.axis else None,
            "train_range": j(self.train_range),
        }

    def plot(self, ax: Any = None) -> Figure:
        """Accuracy and true-class probability versus shift (2D: heatmaps over (dy, dx))."""
        from interp.plots.sweep import plot_sweep

        return plot_sweep(self, ax=ax)

    def plot_per_class(self, ax: Any = None) -> Figure:
        """Per-class accuracy versus shift."""
        from interp.plots.sweep import plot_sweep_per_class

        return plot_sweep_per_class(self, ax=ax)

    def sentences(self) -> list[str]:
        """What the sweep measured, in the words of the report's shifts section."""
        from interp.reporting.captions import sweep_sentences

        axis = [dict(a) for a in self.axis] if self.axis else None
        return sweep_sentences(self.to_dict(), axis)


def _run(keys: Sequence[int], ok: dict[int, bool]) -> tuple[int, int]:
    """Contiguous run of ``ok`` shifts around 0 in the sorted ``keys``."""
    order = sorted(set(keys))
    i = order.index(0)
    lo = hi = i
    while lo > 0 and ok[order[lo - 1]]:
        lo -= 1
    while hi < len(order) - 1 and ok[order[hi + 1]]:
        hi += 1
    return order[lo], order[hi]


def invariance_range(
    shifts: Sequence[Shift], accuracy: Sequence[float], tolerance: float
) -> tuple[Shift, Shift] | None:
    """Largest run of shifts around 0 with accuracy within ``tolerance`` of shift 0."""
    first: dict[Shift, float] = {}
    for s, a in zip(shifts, accuracy, strict=True):
        first.setdefault(s, a)
    two = isinstance(shifts[0], tuple)
    zero: Shift = (0, 0) if two else 0
    if zero not in first:
        return None
    base = first[zero]
    ok = {s: abs(a - base) <= tolerance + _EPS for s, a in first.items()}
    if not two:
        ints = {s: v for s, v in ok.items() if isinstance(s, int)}
        return _run(list(ints), ints)
    pairs = [s for s in first if isinstance(s, tuple)]
    ys = {s[0]: ok[s] for s in pairs if s[1] == 0}
    xs = {s[1]: ok[s] for s in pairs if s[0] == 0}
    (ly, hy), (lx, hx) = _run(list(ys), ys), _run(list(xs), xs)
    return (ly, lx), (hy, hx)


def _ratio(num: torch.Tensor, den: torch.Tensor) -> tuple[float | None, ...]:
    return tuple(float(a) / int(d) if int(d) else None for a, d in zip(num, den, strict=True))


def build_sweep(
    acc: SweepStats,
    shifts: list[Shift],
    *,
    mode: str,
    engine: str,
    reason: str,
    tolerance: float,
    classes: Sequence[str] | None,
    axis: Sequence[dict[str, Any]] | None,
    train_range: TrainRange | None,
) -> Sweep:
    """Turn the sums of a :class:`~interp.sweep.stats.SweepStats` into a :class:`Sweep`."""
    n, k = acc.n, acc.count.shape[0]
    s_total = len(shifts)
    tolerance = float(tolerance)
    accuracy = tuple(float(v) / n for v in acc.correct.sum(0))
    names = tuple(str(c) for c in classes) if classes is not None else tuple(map(str, range(k)))
    if len(names) != k:
        raise InterpError(
            f"`classes` has {len(names)} names but the model has {k} classes; "
            "pass one name per class"
        )
    dims = 2 if isinstance(shifts[0], tuple) else 1
    if axis is not None and len(axis) != dims:
        raise ValueError(f"`axis` must have one dict per spatial axis ({dims}), got {len(axis)}")
    train = None
    if isinstance(train_range, (int, float)):
        train = (-float(train_range), float(train_range))
    elif train_range is not None:
        train = (float(train_range[0]), float(train_range[1]))
    count = acc.count
    return Sweep(
        shifts=tuple(shifts),
        mode=mode,
        n=n,
        classes=names,
        class_counts=tuple(int(c) for c in count),
        accuracy=accuracy,
        mean_true_probability=tuple(float(v) / n for v in acc.prob.sum(0)),
        per_class_accuracy=tuple(
            _ratio(acc.correct[c], count[c].expand(s_total)) for c in range(k)
        ),
        per_class_true_probability=tuple(
            _ratio(acc.prob[c], count[c].expand(s_total)) for c in range(k)
        ),
        confusion=tuple(
            tuple(tuple(int(v) for v in row) for row in m) for m in acc.confusion.tolist()
        ),
        consistency=acc.agree / (n * s_total * (s_total - 1)) if s_total > 1 else None,
        invariance_range=invariance_range(shifts, accuracy, tolerance),
        tolerance=tolerance,
        engine=engine,
        engine_reason=reason,
        axis=tuple(tuple(dict(a).items()) for a in axis) if axis is not None else None,
        train_range=train,
    )
