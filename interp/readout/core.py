"""Which (kernel, position) neurons each class is connected to, and where training put data.

An affine positional head (``Flatten -> Linear``, a conv classifier whose kernel
covers every position, an index at a fixed position...) has one weight per (class,
kernel, position), its exact Jacobian: :func:`connectivity` maps it onto the feature
map (:func:`head_weights`, :mod:`interp.readout.head_map`),
summarises each class (position profile, peak, centre of mass, the kernels it
relies on) and, given data, compares the weights with the class's training
footprint (:mod:`interp.readout.footprints`). Without data it flags positions whose
weights never left PyTorch's default initialisation range. A pooled head has
one weight per (class, kernel), shared by every position, and says so.

The logit decomposition and the shift explanation live in
:mod:`interp.readout.decomposition` and :mod:`interp.readout.shift_explanation`; their public names
are re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from interp._util import json_float as _num
from interp.geometry.core import Structure
from interp.geometry.core import structure as _structure
from interp.readout.class_summary import first_conv_kernels, pooled_classes, positional_class
from interp.readout.decomposition import Decomposition, all_shift_scores, decompose, head_weights
from interp.readout.footprints import Footprint, footprint
from interp.readout.grid import Grid, class_names, pos
from interp.readout.head_map import HeadMap, head_map
from interp.readout.shift_explanation import ShiftExplanation, explain_shift
from interp.readout.text import class_sentences

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FIRST_ORDER_SAMPLES = 64  # samples whose mean gradient is a non-affine head's first-order map

__all__ = [
    "ClassConnectivity",
    "Connectivity",
    "Decomposition",
    "Footprint",
    "HeadMap",
    "ShiftExplanation",
    "all_shift_scores",
    "connectivity",
    "decompose",
    "explain_shift",
    "footprint",
    "head_map",
    "head_weights",
]


@dataclass(frozen=True)
class ClassConnectivity:
    """One class's summary. Positions index the head's feature map (tuples, one per axis).

    Position fields are None for a pooled head; footprint fields are None without data.
    ``top_kernels`` are ranked by ``Connectivity.top_kernels_by``, scores alongside.
    """

    name: str
    index: int
    top_kernels: tuple[int, ...]
    kernel_scores: tuple[float, ...]
    peak_position: tuple[int, ...] | None = None
    centre_of_mass: tuple[float, ...] | None = None
    footprint: tuple[tuple[int, ...], tuple[int, ...]] | None = None
    mass_inside: float | None = None  # share of sum |W_k| inside the footprint
    area_inside: float | None = None  # share of positions inside the footprint
    outside_in_init: float | None = None  # share of weights outside it within +-init bound
    untrained: float | None = None  # share of positions with all weights within the bound
    untrained_runs: tuple[tuple[int, int], ...] = ()  # longest such runs (1D)


@dataclass(frozen=True, eq=False)
class Connectivity:
    """Head weights on the feature map, per class, with the training footprint if measured.

    Attributes:
        kind: "positional" (weight (K, C, *P)) or "pooled" (weight (K, C)).
        weight, bias: the head's weights on the map and its bias, float32 on the CPU: the
            exact Jacobian of an affine head (:func:`head_map`), the Linear's (K, C) weight
            of a pooled one, the mean gradient at the data when ``order`` is "first-order".
        grid: positions of the map ``reads`` -> input positions and units.
        init_bound: PyTorch's default init range ``1 / sqrt(fan_in)`` of the classifier
            (Linear or conv); 0 when it has none (first-order maps, functional heads).
        classifier_type: the classifier's type ("Linear", "Conv2d", ...).
        order: "exact" (affine head) or "first-order" (gradient x activation, labelled).
        logits_note: set when the logits explained are the affine ones before a LogSoftmax.
        kernels: (C, C_in, *k) first-conv weights when map channels are those kernels.
    """

    kind: str
    classes: tuple[str, ...]
    weight: torch.Tensor
    bias: torch.Tensor
    reads: str
    linear: str
    pooling: str | None
    grid: Grid
    init_bound: float
    per_class: tuple[ClassConnectivity, ...]
    top_kernels_by: str
    footprint: Footprint | None
    kernels: torch.Tensor | None
    kernels_note: str
    classifier_type: str = "Linear"
    order: str = "exact"  # "first-order": a non-affine head's mean gradient at the data
    logits_note: str | None = None  # set when the logits are taken before a LogSoftmax

    @property
    def profile(self) -> torch.Tensor:
        """(K, *P) weights summed over kernels (positional heads)."""
        self._need_positions()
        return self.weight.sum(1)

    @property
    def profile_abs(self) -> torch.Tensor:
        """(K, *P) absolute weights summed over kernels (positional heads)."""
        self._need_positions()
        return self.weight.abs().sum(1)

    def _need_positions(self) -> None:
        if self.kind != "positional":
            raise ValueError("a pooled head has one weight per kernel and no position profile")

    def sentences(self) -> list[str]:
        """Plain sentences from the measured numbers, for the report."""
        return class_sentences(self)

    def to_dict(self) -> dict[str, Any]:
        g = self.grid
        fp = self.footprint
        out: dict[str, Any] = {
            "kind": self.kind,
            "reads": self.reads,
            "linear": self.linear,
            "classifier_type": self.classifier_type,
            "order": self.order,
            "logits_note": self.logits_note,
            "channels": int(self.weight.shape[1]),
            "positions": None if self.kind == "pooled" else list(g.positions),
            "pooling": self.pooling,
            "bias": [_num(v) for v in self.bias.tolist()],
            "init_bound": _num(self.init_bound),
            "top_kernels_by": self.top_kernels_by,
            "kernels_are_first_conv": self.kernels is not None,
            "footprint_rule": fp.rule if fp is not None else None,
            "samples": list(fp.counts) if fp is not None else None,
            "per_class": [],
        }
        for c in self.per_class:
            entry: dict[str, Any] = {
                "class": c.name,
                "top_kernels": list(c.top_kernels),
                "top_kernel_scores": [_num(v) for v in c.kernel_scores],
            }
            if self.kind == "pooled":
                entry["weights"] = [_num(v) for v in self.weight[c.index].tolist()]
            else:
                assert c.peak_position is not None and c.centre_of_mass is not None
                entry["peak_position"] = pos(c.peak_position)
                entry["centre_of_mass"] = pos(list(c.centre_of_mass))
                entry["footprint"] = (
                    [pos(c.footprint[0]), pos(c.footprint[1])] if c.footprint else None
                )
                entry["peak_position_input"] = pos(_to_input(g, c.peak_position))
                entry["centre_of_mass_input"] = pos(_to_input(g, c.centre_of_mass))
                entry["footprint_input"] = (
                    [pos(_to_input(g, c.footprint[0])), pos(_to_input(g, c.footprint[1]))]
                    if c.footprint
                    else None
                )
                entry.update(
                    mass_inside=_num(c.mass_inside),
                    area_inside=_num(c.area_inside),
                    outside_in_init_range=_num(c.outside_in_init),
                    untrained_fraction=_num(c.untrained),
                    untrained_runs=[list(r) for r in c.untrained_runs],
                )
            out["per_class"].append(entry)
        return out

    def plot(self, ax: Axes | None = None) -> Figure:
        """Position profiles of every class (positional) or per-kernel weights (pooled)."""
        from interp.plots import connectivity as plots

        if self.kind == "pooled":
            return plots.plot_pooled_weights(self, ax=ax)
        return plots.plot_profiles(self, ax=ax)

    def plot_weights(self, cls: int = 0, ax: Axes | None = None) -> Figure:
        """Class ``cls``'s weight heatmap (kernel x position; (y, x) in 2D), footprint overlaid."""
        from interp.plots.connectivity import plot_weight_map

        return plot_weight_map(self, cls, ax=ax)

    def plot_kernels(self, cls: int = 0) -> Figure:
        """The first-conv kernels class ``cls`` relies on most: the pattern detectors."""
        from interp.plots.connectivity import plot_kernels

        return plot_kernels(self, cls)


def _to_input(g: Grid, position: Sequence[float]) -> list[float]:
    return [g.to_input(float(v), d) for d, v in enumerate(position)]


def connectivity(
    model: nn.Module,
    structure: Structure | None = None,
    *,
    x: Any = None,
    y: torch.Tensor | None = None,
    batch_size: int = 256,
    axis: Any = None,
    classes: Sequence[str] | None = None,
) -> Connectivity:
    """Map the head's weights onto the feature map and compare them with where data falls.

    Args:
        model: the classifier; left unchanged.
        structure: ``interp.structure(model, ...)``; computed when None.
        x, y: optional data (e.g. the training distribution) for the footprint,
            streamed ``batch_size`` samples at a time; or ``x`` alone, any data form
            of :func:`interp.shift_sweep` (a Dataset, a DataLoader, batches).
        axis: checkpoint ``axis`` metadata (name, unit, start, step), for units.
        classes: class names (default '0', '1', ...).

    Raises:
        InterpError: the head is neither positional nor pooled, or data does not fit.

    >>> conn = connectivity(model, geo, x=x, y=y)       # doctest: +SKIP
    >>> conn.weight.shape, conn.per_class[0].mass_inside   # doctest: +SKIP
    (torch.Size([4, 64, 4026]), 0.81)
    """
    if (isinstance(x, torch.Tensor) or x is None) and (x is None) != (y is None):
        raise ValueError("pass both `x` and `y` (data and labels) or neither")
    if x is not None and not isinstance(x, torch.Tensor):  # a data source: one first batch
        from interp._batches import as_source, peek

        first, x = peek(as_source(x, y))
        example = first[0][:1] if first is not None else None
    else:
        example = x[:1] if x is not None else None
    geo = structure if structure is not None else _structure(model, example)
    hm = head_map(model, geo)
    if not hm.exact and geo.head.kind == "positional":  # first-order: the gradient at the data
        hm = head_map(model, geo, x[:FIRST_ORDER_SAMPLES] if isinstance(x, torch.Tensor) else
                      (example if example is not None else None))  # fmt: skip
    weight, bias = hm.weight, hm.bias
    grid = Grid.of(geo, axis)
    names = class_names(classes, int(weight.shape[0]))
    fp = None
    if x is not None:
        fp = footprint(model, x, y, geo, batch_size=batch_size, classes=names, axis=axis)
    assert geo.head.reads is not None
    bound = 1.0 / hm.fan_in**0.5 if hm.fan_in and hm.exact else 0.0
    kernels, note = first_conv_kernels(model, geo)
    if geo.head.kind == "pooled":
        per_class = tuple(ClassConnectivity(**kw) for kw in pooled_classes(weight, names))
        by = "weight"
    else:
        by = "mean contribution" if fp is not None else "absolute weight"
        per_class = tuple(
            ClassConnectivity(**positional_class(weight, k, n, fp, bound))
            for k, n in enumerate(names)
        )
    return Connectivity(
        kind=geo.head.kind,
        classes=names,
        weight=weight,
        bias=bias,
        reads=geo.head.reads,
        linear=geo.head.linear or "",
        pooling=geo.head.pooling,
        classifier_type=hm.classifier_type or "classifier",
        order=hm.order,
        logits_note=hm.logits_note,
        grid=grid,
        init_bound=bound,
        per_class=per_class,
        top_kernels_by=by,
        footprint=fp,
        kernels=kernels,
        kernels_note=note,
    )
