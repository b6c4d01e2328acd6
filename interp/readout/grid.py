"""Feature-map positions: input positions, units, intervals and masks.

Shared by the footprint, the connectivity summary, the shift explanation and
their figures, so every position they report is converted the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from interp._util import default_unit
from interp.errors import InterpError
from interp.geometry.core import Structure

FRACTION = 0.95  # share of the above-background activation mass inside the footprint
FLOOR = 0.10  # positions / cells below this share of the peak are not footprint
AxisPairs = tuple[tuple[str, Any], ...]  # one axis's metadata (name, unit, start, step)


@dataclass(frozen=True)
class Grid:
    """How positions of the head's feature map relate to input positions and units.

    Feature-map position ``j`` covers input positions ``j * stride - offset`` to
    ``j * stride - offset + receptive_field - 1`` (per axis); its centre is the
    input position interp reports. ``axis`` (per spatial axis: name, unit, start,
    step, as ``(key, value)`` pairs so the grid stays immutable; :meth:`meta` gives
    a dict) converts input positions to physical units.
    """

    positions: tuple[int, ...]
    stride: tuple[int, ...]
    offset: tuple[int, ...]
    receptive_field: tuple[int, ...]
    axis: tuple[AxisPairs, ...] | None = None

    @property
    def dims(self) -> int:
        return len(self.positions)

    def axis_meta(self, dim: int = 0) -> dict[str, Any] | None:
        """Axis ``dim``'s metadata as a dict (name, unit, start, step), None without any."""
        return dict(self.axis[dim]) if self.axis else None

    def to_input(self, j: float, dim: int = 0) -> float:
        """Centre (input position) of the receptive field of feature-map position ``j``."""
        return j * self.stride[dim] - self.offset[dim] + (self.receptive_field[dim] - 1) / 2

    def to_unit(self, i: float, dim: int = 0) -> float:
        """Input position ``i`` in the axis unit (``start + i * step``), or ``i`` itself."""
        ax = self.axis_meta(dim)
        if ax is None:
            return float(i)
        return float(ax.get("start", 0.0)) + float(i) * float(ax.get("step", 1.0))

    def unit(self, dim: int = 0) -> str:
        """The unit of axis ``dim``: 'Hz', 'px', or 'samples' when unknown."""
        ax = self.axis_meta(dim)
        if ax and ax.get("unit"):
            return str(ax["unit"])
        return default_unit(self.dims)

    def at(self, position: Sequence[float]) -> str:
        """'position 12 (input 30 Hz)', or '(y 3, x 4) (input y 14, x 18 px)' in 2D."""
        units = [self.to_unit(self.to_input(float(v), d), d) for d, v in enumerate(position)]
        if self.dims == 1:
            return f"position {_fmt(position[0])} (input {units[0]:.0f} {self.unit()})"
        return (
            f"position (y {_fmt(position[0])}, x {_fmt(position[1])}) "
            f"(input y {units[0]:.0f}, x {units[1]:.0f} {self.unit(1)})"
        )

    def span(self, lo: Sequence[float], hi: Sequence[float]) -> str:
        """'positions 10-20 (input 15 to 45 Hz)', or rows x columns in 2D."""
        parts = []
        for d, (a, b) in enumerate(zip(lo, hi, strict=True)):
            ua = self.to_unit(self.to_input(float(a), d), d)
            ub = self.to_unit(self.to_input(float(b), d), d)
            parts.append((f"{_fmt(a)}-{_fmt(b)}", f"{ua:.0f} to {ub:.0f} {self.unit(d)}"))
        if self.dims == 1:
            return f"positions {parts[0][0]} (input {parts[0][1]})"
        return (
            f"rows {parts[0][0]} x columns {parts[1][0]} (input y {parts[0][1]}, x {parts[1][1]})"
        )

    @classmethod
    def of(cls, geo: Structure, axis: Any = None) -> Grid:
        """The grid of the layer ``geo.head.reads``; ``axis`` as in checkpoint metadata."""
        layer = geo.feature_map
        if layer is None or layer.stride is None or geo.head.positions is None:
            raise InterpError(
                "the model's head does not read a spatial feature map, so there are no "
                "positions to map; connectivity needs a Flatten -> Linear or pooled head"
            )
        assert layer.offset is not None and layer.receptive_field is not None
        return cls(
            positions=tuple(geo.head.positions),
            stride=tuple(layer.stride),
            offset=tuple(layer.offset),
            receptive_field=tuple(layer.receptive_field),
            axis=_pairs(axis_list(axis, geo.spatial_dims)),
        )


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.1f}"


def _pairs(axis: tuple[Mapping[str, Any], ...] | None) -> tuple[AxisPairs, ...] | None:
    return None if axis is None else tuple(tuple(a.items()) for a in axis)


def axis_list(axis: Any, dims: int) -> tuple[Mapping[str, Any], ...] | None:
    """Normalise ``axis``: None, one dict (1D) or one dict per spatial axis."""
    if axis is None:
        return None
    if isinstance(axis, Mapping):
        axis = [axis]
    axis = tuple(axis)
    if len(axis) != dims or not all(isinstance(a, Mapping) for a in axis):
        raise InterpError(
            f"`axis` must hold one dict (name, unit, start, step) per spatial axis ({dims}); "
            f"got {axis!r}"
        )
    return axis


def signal(profile: torch.Tensor, floor: float = FLOOR) -> torch.Tensor:
    """The part of a (*P) profile that stands out: above its median, and >= ``floor`` of the peak.

    The median removes the level that noise gives every position (a single sample's
    activity is never zero off the pattern); the floor removes scattered noise peaks.

    >>> signal(torch.tensor([1.0, 1.0, 1.0, 5.0, 1.2]))
    tensor([0., 0., 0., 4., 0.])
    """
    above = (profile - profile.median()).clamp(min=0)
    peak = above.max()
    if peak <= 0:
        return torch.zeros_like(profile)
    return torch.where(above >= floor * peak, above, torch.zeros_like(above))


def mass_interval(
    profile: torch.Tensor, fraction: float = FRACTION
) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """Central interval holding ``fraction`` of a non-negative profile's mass, per axis.

    Args:
        profile: (*P) non-negative masses (1 or 2 axes).
        fraction: share of the mass inside; the rest is split evenly between the tails.

    Returns:
        ``(lo, hi)`` inclusive index tuples (one entry per axis), or None without mass.

    >>> mass_interval(torch.tensor([0.0, 1.0, 2.0, 1.0, 0.0]), 0.9)
    ((1,), (3,))
    """
    total = float(profile.sum())
    if not total > 0:
        return None
    tail = (1.0 - fraction) / 2
    lo, hi = [], []
    for dim in range(profile.dim()):
        other = [d for d in range(profile.dim()) if d != dim]
        marginal = profile.sum(other) if other else profile  # (P_dim,)
        cum = marginal.to(torch.float64).cumsum(0) / total
        lo.append(int(torch.searchsorted(cum, torch.tensor([tail], dtype=torch.float64),
                                         right=True)[0]))  # fmt: skip
        top = torch.tensor([1.0 - tail - 1e-12], dtype=torch.float64)
        hi.append(min(int(torch.searchsorted(cum, top)[0]), marginal.numel() - 1))
    return tuple(lo), tuple(hi)


def box_mask(shape: Sequence[int], lo: Sequence[int], hi: Sequence[int]) -> torch.Tensor:
    """Boolean (*shape) mask, True inside the inclusive box ``lo..hi``."""
    mask = torch.ones(tuple(shape), dtype=torch.bool)
    for dim, (a, b) in enumerate(zip(lo, hi, strict=True)):
        idx = torch.arange(shape[dim])
        inside = (idx >= a) & (idx <= b)
        view = [1] * len(shape)
        view[dim] = shape[dim]
        mask = mask & inside.view(view)
    return mask


def deviation(act: torch.Tensor, dims: int) -> torch.Tensor:
    """|activation - its per-kernel median over positions|; (..., C, *P) -> same shape.

    >>> deviation(torch.tensor([[1.0, 1.0, 5.0]]), 1)
    tensor([[0., 0., 4.]])
    """
    background = act.flatten(-dims).median(-1).values  # (..., C)
    return (act - background.view(*background.shape, *(1,) * dims)).abs()


def pos(index: Sequence[float]) -> Any:
    """A position for JSON: a number in 1D, a [y, x] list in 2D."""
    return index[0] if len(index) == 1 else list(index)


def check_data(x: Any, y: Any, geo: Structure) -> None:
    """Refuse data that does not fit the model, naming the shapes."""
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(
            f"`x` and `y` must be tensors, got {type(x).__name__} and {type(y).__name__}"
        )
    if tuple(x.shape[1:]) != tuple(geo.input_shape) or x.dim() != len(geo.input_shape) + 1:
        raise InterpError(
            f"`x` has shape {tuple(x.shape)} but the model takes (N, "
            f"{', '.join(map(str, geo.input_shape))}); pass inputs of that shape"
        )
    if y.shape != (x.shape[0],) or y.dtype.is_floating_point:
        raise InterpError(
            f"`y` must be integer labels of shape ({x.shape[0]},), got {tuple(y.shape)} "
            f"{y.dtype}; pass one class index per row of `x`"
        )
    k = geo.num_classes or 0
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= k):
        raise InterpError(
            f"`y` holds labels {int(y.min())}..{int(y.max())} but the model has {k} classes; "
            f"labels must lie in 0..{k - 1}"
        )


def class_names(classes: Sequence[str] | None, k: int) -> tuple[str, ...]:
    """``classes`` checked against the number of logits, or '0'..'k-1'."""
    if classes is None:
        return tuple(str(i) for i in range(k))
    names = tuple(str(c) for c in classes)
    if len(names) != k:
        raise InterpError(f"`classes` names {len(names)} classes but the model has {k} logits")
    return names
