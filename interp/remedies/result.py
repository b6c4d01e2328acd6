"""What each remedy did: its shift sweep beside the original's, and the recommendation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from matplotlib.figure import Figure
from torch import nn

from interp._util import default_unit
from interp.shifts import Shift
from interp.sweep import Sweep

HOLD_AT_ZERO = 0.03  # a remedy may cost at most 3 points at shift 0 ...
HOLD_SHIFTED = 0.10  # ... and stay within 10 points of the original's unshifted accuracy


@dataclass(frozen=True)
class Remedy:
    """One remedy applied to a copy of the model and measured on held-out data.

    ``worst_accuracy`` is the lowest accuracy over the shifts of the failing range
    (see :class:`FixResult`); ``seconds`` is the time to build and fit the fixed model;
    ``path`` is where it was saved (None: not saved, ``notes`` say why).
    """

    name: str  # "pool-head" | "augment" | "blur"
    detail: str
    sweep: Sweep
    accuracy_at_0: float | None
    worst_accuracy: float | None
    consistency: float | None
    seconds: float
    path: str | None
    notes: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)
    model: nn.Module | None = field(default=None, repr=False, compare=False)

    def row(self) -> dict[str, Any]:
        return {
            "remedy": self.name,
            "detail": self.detail,
            "accuracy_at_0": self.accuracy_at_0,
            "worst_accuracy": self.worst_accuracy,
            "consistency": self.consistency,
            "seconds": round(self.seconds, 3),
            "path": self.path,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.row(),
            "notes": list(self.notes),
            "extra": dict(self.extra),
            "sweep": _curve(self.sweep),
        }


@dataclass(frozen=True)
class Skipped:
    """A requested remedy that does not apply to the model, and why, in one line."""

    name: str  # "pool-head" | "augment" | "blur"
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"remedy": self.name, "reason": self.reason}

    def sentence(self) -> str:
        return f"{self.name} was skipped: {self.reason}."


def _curve(sw: Sweep) -> dict[str, Any]:
    return {
        "shifts": [list(s) if isinstance(s, tuple) else s for s in sw.shifts],
        "accuracy": list(sw.accuracy),
        "mean_true_probability": list(sw.mean_true_probability),
        "consistency": sw.consistency,
        "engine": sw.engine,
    }


def in_box(s: Shift, box: Sequence[tuple[int, int]]) -> bool:
    vals = s if isinstance(s, tuple) else (s,)
    return all(lo <= v <= hi for v, (lo, hi) in zip(vals, box, strict=True))


def worst_in(sw: Sweep, box: Sequence[tuple[int, int]] | None) -> float | None:
    """Lowest accuracy of ``sw`` over the shifts inside ``box`` (all shifts when None)."""
    accs = [a for s, a in zip(sw.shifts, sw.accuracy, strict=True) if box is None or in_box(s, box)]
    return min(accs) if accs else None


@dataclass(frozen=True)
class FixResult:
    """The original model and every remedy, swept over the same held-out examples.

    ``failing_range`` is, per spatial axis, ``(lo, hi)``: the span of swept shifts at
    which the original's accuracy fell more than the sweep tolerance below its
    unshifted accuracy (None when it never did: then the worst accuracy is over
    every swept shift). ``recommendation`` is one sentence derived from the table, over
    the remedies that ran; ``skipped`` holds each requested remedy that does not apply to
    the model, with its reason (it has no row, curve or fixed model).

    >>> res = fix(model, x_train, y_train)         # doctest: +SKIP
    >>> [r.name for r in res.remedies], res.recommendation  # doctest: +SKIP
    """

    original: Sweep
    original_worst: float | None
    failing_range: tuple[tuple[int, int], ...] | None
    remedies: tuple[Remedy, ...]
    mode: str
    n_train: int
    n_test: int
    data: str
    recommendation: str
    skipped: tuple[Skipped, ...] = ()

    @property
    def original_at_0(self) -> float | None:
        return self.original.unshifted_accuracy

    @property
    def recommended(self) -> str | None:
        """Name of the cheapest remedy that holds accuracy (None if none does)."""
        best = choose(self.remedies, self.original_at_0)
        return best.name if best is not None else None

    def remedy(self, name: str) -> Remedy:
        for r in self.remedies:
            if r.name == name:
                return r
        for s in self.skipped:
            if s.name == name:
                raise KeyError(f"{name} was skipped: {s.reason}")
        raise KeyError(f"{name!r} was not run; ran: {', '.join(r.name for r in self.remedies)}")

    def table(self) -> list[dict[str, Any]]:
        """One row per model: the original, then each remedy."""
        first = {
            "remedy": "original",
            "detail": "as trained",
            "accuracy_at_0": self.original_at_0,
            "worst_accuracy": self.original_worst,
            "consistency": self.original.consistency,
            "seconds": 0.0,
            "path": None,
        }
        return [first, *(r.row() for r in self.remedies)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "data": self.data,
            "failing_range": [list(b) for b in self.failing_range] if self.failing_range else None,
            "failing_range_units": self._range_units(),
            "table": self.table(),
            "original": _curve(self.original),
            "remedies": [r.to_dict() for r in self.remedies],
            "skipped": [s.to_dict() for s in self.skipped],
            "recommendation": self.recommendation,
            "recommended": self.recommended,
            "sentences": self.sentences(),
        }

    def _range_units(self) -> list[list[float]] | None:
        if not self.failing_range:
            return None
        return [
            [_units(self.original, lo, i), _units(self.original, hi, i)]
            for i, (lo, hi) in enumerate(self.failing_range)
        ]

    def sentences(self) -> list[str]:
        """The table in words: one sentence per remedy, one per skipped remedy with its
        reason, then the recommendation."""
        out = [
            _row_sentence(
                "the original", self.original_at_0, self.original_worst, self.range_text()
            )
        ]
        for r in self.remedies:
            text = _row_sentence(
                f"{r.name} ({r.detail})", r.accuracy_at_0, r.worst_accuracy, self.range_text()
            )
            out.append(f"{text[:-1]}, built in {r.seconds:.1f} s.")
            out.extend(r.notes)
        out.extend(s.sentence() for s in self.skipped)
        out.append(self.recommendation)
        return out

    def range_text(self) -> str:
        if not self.failing_range:
            return "every swept shift"
        parts = []
        unit = _unit(self.original)
        for i, (lo, hi) in enumerate(self.failing_range):
            name = ("dy " if i == 0 else "dx ") if len(self.failing_range) == 2 else ""
            parts.append(
                f"{name}{_num(_units(self.original, lo, i))} to "
                f"{_num(_units(self.original, hi, i))} {unit}"
            )
        return "shifts of " + " and ".join(parts)

    def plot(self, ax: Any = None) -> Figure:
        """Accuracy (left) and true-class probability (right) versus shift, original and
        every remedy; for 2D, along dx with dy = 0. With ``ax``, accuracy only."""
        from interp.plots._style import class_colour, figure_for, new_figure, shift_label

        if ax is None:
            fig, axes = new_figure(1, 2, height=3.4)
            panels = [(axes[0, 0], "accuracy"), (axes[0, 1], "mean_true_probability")]
        else:
            fig, one = figure_for(ax)
            panels = [(one, "accuracy")]
        axis = dict(self.original.axis[-1]) if self.original.axis else None
        models = [("original", self.original, "k")]
        models += [(r.name, r.sweep, class_colour(i)) for i, r in enumerate(self.remedies)]
        for panel, key in panels:
            for name, sw, colour in models:
                xs, ys = _line(sw, key)
                panel.plot(
                    xs,
                    [100 * v for v in ys],
                    color=colour,
                    lw=1.6,
                    label=name,
                    ls="--" if name == "original" else "-",
                )
            if self.failing_range:
                lo, hi = self.failing_range[-1]
                panel.axvspan(
                    _units(self.original, lo, -1),
                    _units(self.original, hi, -1),
                    color="0.9",
                    zorder=0,
                    label="failing range",
                )
            panel.set_xlabel(
                shift_label(axis) + (" (dy = 0)" if self.original.spatial_dims == 2 else "")
            )
            panel.set_ylabel("accuracy (%)" if key == "accuracy" else "true-class probability (%)")
            panel.set_ylim(-2, 102)
            panel.grid(alpha=0.3)
        panels[0][0].legend(loc="lower center", fontsize="small", frameon=False)
        return fig


def _line(sw: Sweep, key: str) -> tuple[list[float], list[float]]:
    values = getattr(sw, key)
    pairs = []
    for s, v in zip(sw.shifts, values, strict=True):
        if isinstance(s, tuple):
            if s[0] != 0:
                continue
            s = s[1]
        pairs.append((_units(sw, s, -1), float(v)))
    pairs.sort()
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _units(sw: Sweep, s: int, axis_index: int) -> float:
    step = float(dict(sw.axis[axis_index]).get("step", 1.0)) if sw.axis else 1.0
    return s * step


def _unit(sw: Sweep) -> str:
    return str(dict(sw.axis[0]).get("unit") or default_unit(1)) if sw.axis else default_unit(1)


def _num(v: float) -> str:
    return f"{v:g}"


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _row_sentence(name: str, at0: float | None, worst: float | None, where: str) -> str:
    return (
        f"{name[0].upper()}{name[1:]}: {_pct(at0)} at shift 0, at least {_pct(worst)} over {where}."
    )


def holds(r: Remedy, original_at_0: float | None) -> bool:
    """A remedy holds accuracy when it loses at most 3 points at shift 0 and stays within
    10 points of the original's unshifted accuracy over the whole failing range."""
    if r.accuracy_at_0 is None or r.worst_accuracy is None or original_at_0 is None:
        return False
    return (
        r.accuracy_at_0 >= original_at_0 - HOLD_AT_ZERO
        and r.worst_accuracy >= original_at_0 - HOLD_SHIFTED
    )


def choose(remedies: Sequence[Remedy], original_at_0: float | None) -> Remedy | None:
    """The cheapest remedy (fewest seconds) that holds accuracy, or None."""
    good = [r for r in remedies if holds(r, original_at_0)]
    return min(good, key=lambda r: r.seconds) if good else None


def recommend(remedies: Sequence[Remedy], original_at_0: float | None, where: str) -> str:
    """One sentence: the cheapest remedy (fewest seconds) that holds accuracy, or the best."""
    if not remedies:
        return "No remedy was run."
    good = [r for r in remedies if holds(r, original_at_0)]
    if good:
        best = min(good, key=lambda r: r.seconds)
        others = [r.name for r in good if r is not best]
        also = f"; {', '.join(others)} also held, at more cost" if others else ""
        return (
            f"Use {best.name} ({best.detail}): the cheapest remedy that holds accuracy, "
            f"{_pct(best.accuracy_at_0)} at shift 0 (original {_pct(original_at_0)}) and at "
            f"least {_pct(best.worst_accuracy)} over {where}, in {best.seconds:.1f} s{also}."
        )
    best = max(remedies, key=lambda r: (r.worst_accuracy or 0.0, -r.seconds))
    return (
        f"No remedy held accuracy (at most 3 points lost at shift 0, within 10 points of "
        f"{_pct(original_at_0)} over {where}); the best was {best.name} ({best.detail}), "
        f"at least {_pct(best.worst_accuracy)}: retrain with global pooling and shift "
        "augmentation from the start."
    )
