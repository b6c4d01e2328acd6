"""Per-layer equivariance results, and the sentences that explain them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from interp.errors import InterpError
from interp.geometry.core import Structure, strided_layers
from interp.shifts import Shift

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class LayerEquivariance:
    """Equivariance errors of one layer (None where no shift or position applies)."""

    name: str
    type: str
    role: str
    stride: tuple[int, ...] | None  # cumulative, in input positions; None without positions
    positions: bool
    error: float | None
    interior_error: float | None
    aliasing_error: float | None
    invariance_error: float | None
    breaks: bool | None
    aliasing: bool | None  # off-grid error above the tolerance and above the on-grid error
    module: str | None = None  # for a functional call site: the module whose forward made it

    @property
    def label(self) -> str:
        """The name sentences use: the owner module of a functional call site (``F.conv2d``
        inside a BlurPool is named by that BlurPool's path), else the call site's name."""
        return self.module or self.name

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["stride"] = list(self.stride) if self.stride is not None else None
        return out


@dataclass(frozen=True)
class Equivariance:
    """Per-layer equivariance of a model under a set of shifts.

    ``first_break`` names the first layer that breaks equivariance (None if none
    does); ``aliasing_layers`` the strided layers where shifts that are not
    multiples of the stride change the features; ``findings`` says it in sentences.
    """

    layers: tuple[LayerEquivariance, ...]
    shifts: tuple[Shift, ...]
    mode: str
    n: int
    tolerance: float
    first_break: str | None
    aliasing_layers: tuple[str, ...]
    findings: tuple[str, ...]

    def layer(self, name: str) -> LayerEquivariance:
        """The result for layer ``name``."""
        for lay in self.layers:
            if lay.name == name:
                return lay
        names = ", ".join(lay.name for lay in self.layers)
        raise InterpError(f"`layer` {name!r} not found; available: {names}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "n": self.n,
            "shifts": [list(s) if isinstance(s, tuple) else s for s in self.shifts],
            "tolerance": self.tolerance,
            "first_break": self.first_break,
            "aliasing_layers": list(self.aliasing_layers),
            "findings": list(self.findings),
            "layers": [lay.to_dict() for lay in self.layers],
        }

    def plot(self, ax: Any = None) -> Figure:
        """Per-layer errors as bars on a log scale, the first break marked."""
        from interp.plots.sweep import plot_equivariance

        return plot_equivariance(self, ax=ax)

    def sentences(self) -> list[str]:
        """Where equivariance breaks and what aliasing adds: the report's findings."""
        return list(self.findings)


def pct(v: float | None) -> str:
    """A relative error for people: 12.3% when large, 4.0e-07 when tiny."""
    if v is None:
        return "n/a"
    return f"{v:.1%}" if v >= 1e-3 else f"{v:.1e}"


def interior_clause(v: float | None) -> str:
    """The interior error as a clause; an exact 0 is said in words, not as 0.0e+00.

    >>> interior_clause(0.0)
    'no interior error: exactly equivariant away from the borders'
    >>> interior_clause(2e-7)
    'interior error at most 2.0e-07'
    """
    if v == 0:
        return "no interior error: exactly equivariant away from the borders"
    return f"interior error at most {pct(v)}"


def _max(values: Sequence[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return max(got) if got else None


def findings(
    results: Sequence[Any],
    geo: Structure,
    first: str | None,
    aliasing: Sequence[str],
    tolerance: float,
) -> list[str]:
    """Say where equivariance breaks, why, and what aliasing the strided layers add."""
    by_name = {r.name: r for r in results}
    out: list[str] = []
    output = results[-1] if results else None
    head = geo.head
    head_sites = {n for n in (head.linear, getattr(head, "breaks", None)) if n}
    if first is not None:
        r = by_name[first]
        before = _max([q.interior_error for q in results[: results.index(r)] if q.positions])
        if head.kind == "positional" and (r.name in head_sites or r.interior_error is None):
            change = r.invariance_error if r.invariance_error is not None else r.error
            what = (
                "gives each (kernel, position) its own weight"
                if r.name == head.linear
                else "reads positions individually (an index, a recurrence or a classifier "
                "whose kernel spans the map)"
            )
            out.append(
                f"Equivariance first breaks at layer {_label(r)!r} ({r.type}), the positional "
                f"head: every layer before it moves its features with the input ("
                f"{interior_clause(before)}), but {_label(r)!r} {what}, so its output changes "
                f"by {pct(change)} under shifts. Global pooling before the head, or training "
                "on shifted inputs, fixes it."
            )
        elif r.positions:
            out.append(
                f"Equivariance first breaks at layer {_label(r)!r} ({r.type}): away from padding "
                f"and wrap-around, its output for a shifted input differs from its shifted "
                f"output by {pct(r.interior_error)} (tolerance {tolerance:g})."
            )
        else:
            out.append(
                f"Equivariance first breaks at layer {_label(r)!r} ({r.type}): it weighs positions "
                f"individually and its output changes by {pct(r.invariance_error)} under shifts."
            )
    else:
        inner = _max([r.interior_error for r in results if r.positions])
        text = (
            "No layer breaks equivariance: every layer with positions moves its features with "
            f"the input away from padding and wrap-around ({interior_clause(inner)}; "
            f"tolerance {tolerance:g})."
        )
        if output is not None and not output.positions and output.invariance_error == 0:
            text += (
                " The output does not change at all under shifts that are multiples of the "
                "stride: exactly invariant there."
            )
        elif output is not None and not output.positions and output.invariance_error is not None:
            if head.kind == "positional":  # never blamed on the borders
                text += (
                    f" The output changes by {pct(output.invariance_error)} under shifts that "
                    "are multiples of the stride: the head is positional (each position has "
                    "its own weight), so that change is the head's."
                )
            else:
                text += (
                    f" The output changes by {pct(output.invariance_error)} under shifts that "
                    "are multiples of the stride: boundary effects (padding, wrap-around), "
                    "not the head."
                )
        out.append(text)
    subsampling = {lay.name for lay in strided_layers(geo)}
    # Strided layers whose off-grid change is no larger than their on-grid one: aliasing
    # is not what moves them (e.g. a BlurPool's strided conv, already low-pass filtered).
    held = [r for r in results if r.name in subsampling and r.positions and r.aliasing is False
            and r.aliasing_error is not None and r.aliasing_error > tolerance
            and r.error is not None]  # fmt: skip
    if aliasing:
        names = ", ".join(
            f"{_label(by_name[n])!r} ({by_name[n].type}, stride {_stride(by_name[n].stride)})"
            for n in aliasing
        )
        worst = _max([by_name[n].aliasing_error for n in aliasing])
        on_grid = _max([by_name[n].error for n in aliasing])
        than = (f", more than shifts by multiples of the stride change those layers (at most "
                f"{pct(on_grid)})") if on_grid is not None else ""  # fmt: skip
        tail = ""
        if output is not None and output.aliasing_error is not None:
            tail = f" and the output by {pct(output.aliasing_error)}"
        out.append(
            f"Aliasing: shifts that are not multiples of the stride change the features of "
            f"strided layers {names} by up to {pct(worst)}{tail}{than}: subsampling keeps "
            "frequencies above its Nyquist limit that nothing before it filtered out (Zhang "
            "2019). Anti-aliased pooling (blur before subsampling, e.g. BlurPool from "
            "antialiased-cnns; a wider blur where one is already there) reduces it."
        )
    if held:
        names = ", ".join(
            f"{_label(r)!r} ({r.type}, stride {_stride(r.stride)}: {pct(r.aliasing_error)} "
            f"off the grid, {pct(r.error)} on it)"
            for r in held
        )
        out.append(
            f"Not aliasing: shifts off the stride grid change strided layers {names} no more "
            "than shifts by multiples of the stride do, so subsampling is not what moves "
            "their features there and blur before subsampling is not indicated for them."
        )
    if not aliasing:
        untested = [r for r in results if r.positions and r.stride and max(r.stride) > 1]
        if untested and all(r.aliasing is None for r in untested):
            out.append(
                "The shifts tested are all multiples of the strides, so aliasing was not "
                "measured; add shifts that are not (odd shifts) to measure it."
            )
    return out


def _label(r: Any) -> str:
    """A layer's name in sentences: a functional call site's owner module, else its name."""
    return getattr(r, "module", None) or r.name


def _stride(stride: Sequence[int] | None) -> str:
    if not stride:
        return "-"
    return str(stride[0]) if len(set(stride)) == 1 else "x".join(map(str, stride))
