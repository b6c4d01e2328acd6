"""Numbers for people: percentages, relative errors and shifts in the input's units."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from interp._util import default_unit, fmt_shift

__all__ = ["fmt_extent", "fmt_shift", "pct", "rel", "size"]


def pct(value: float) -> str:
    """0.985 -> '98.5%'."""
    return f"{100 * value:.1f}%"


def fmt_extent(extent: float, axis: Sequence[Mapping[str, Any]] | None, dims: int) -> str:
    """A symmetric range in the input's units: ``±3000 Hz`` (2D: on both axes)."""
    axes = list(axis or [])
    step = float(axes[0].get("step", 1.0)) if axes else 1.0
    unit = (axes[0].get("unit") if axes else None) or default_unit(dims)
    return f"±{extent * step:g} {unit}" + (" on both axes" if dims == 2 else "")


def size(shift: Any) -> int:
    """|s| for 1D, max(|dy|, |dx|) for 2D."""
    if isinstance(shift, (list, tuple)):
        return max(abs(int(v)) for v in shift)
    return abs(int(shift))


def rel(value: float | None) -> str:
    """A relative error for people: '12.3%' when large, '4.0e-07' when tiny."""
    if value is None:
        return "n/a"
    if value == 0:
        return "0"
    return f"{100 * value:.1f}%" if value >= 1e-3 else f"{value:.1e}"
