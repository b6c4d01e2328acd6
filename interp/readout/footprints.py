"""Where each class's training data activates the feature map the head reads.

The footprint of class k is measured from data, streamed one class at a time
from the traced graph (:func:`interp.readout.head_map.capture_map`: any call site, in
the canonical (C, *P) layout), so 20,000 samples cost the memory of one batch:

1. ``mean[k]`` (C, *P): the class-mean activation of every (kernel, position).
2. ``background[k]`` (C,): per kernel, the median of ``mean[k]`` over positions.
   Class patterns occupy a minority of positions, so the median is the
   activation the background (noise floor, empty image) produces everywhere.
3. ``deviation[k] = |mean[k] - background[k]|``: how much the class's data
   moves each neuron away from background. Absolute, because a pattern that
   silences a kernel informs the weights as much as one that excites it.
4. ``profile[k]`` (*P): deviation summed over kernels, less its median over
   positions, keeping positions at >= ``floor`` (10%) of its peak, so diffuse
   noise cannot widen step 5 (:func:`interp.readout.grid.signal`).
5. The footprint ``[lo, hi]`` (per axis; a rectangle in 2D, from the
   marginals) is the central interval holding ``fraction`` (95%) of that
   profile's mass. ``kernel_mask`` marks the (kernel, position) cells whose
   deviation is >= ``floor`` of the class's peak, for heatmap overlays.

Outside the footprint, a class's head weights received gradients only from
background activations during training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from interp._guard import inspecting
from interp._util import model_device
from interp.errors import InterpError
from interp.geometry.core import Structure
from interp.geometry.core import structure as _structure
from interp.readout.grid import (
    FLOOR,
    FRACTION,
    Grid,
    box_mask,
    check_data,
    class_names,
    deviation,
    mass_interval,
    pos,
    signal,
)
from interp.readout.head_map import capture_map

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


@dataclass(frozen=True, eq=False)
class Footprint:
    """Where each class's data activates the head's feature map (see module docstring).

    Attributes:
        classes: class names, in label order.
        counts: samples seen per class.
        mean: (K, C, *P) class-mean activation per (kernel, position).
        deviation: (K, C, *P) |mean - per-kernel median over positions|.
        profile: (K, *P) deviation summed over kernels, below-floor positions zeroed.
        lo, hi: per class, the inclusive footprint box (one index per axis) or None
            when the class had no samples or no activity above background.
        mask: (K, *P) bool, inside the footprint box.
        kernel_mask: (K, C, *P) bool, cells at >= ``floor`` of the class's peak deviation.
        grid: feature-map -> input positions and units.
    """

    classes: tuple[str, ...]
    counts: tuple[int, ...]
    mean: torch.Tensor
    deviation: torch.Tensor
    profile: torch.Tensor
    lo: tuple[tuple[int, ...] | None, ...]
    hi: tuple[tuple[int, ...] | None, ...]
    mask: torch.Tensor
    kernel_mask: torch.Tensor
    grid: Grid
    fraction: float = FRACTION
    floor: float = FLOOR

    @property
    def rule(self) -> str:
        return (
            f"central {self.fraction:.0%} of the class-mean activation's deviation from its "
            f"per-kernel median over positions, summed over kernels, counting positions above "
            f"the median and at >= {self.floor:.0%} of the peak"
        )

    def to_dict(self) -> dict[str, Any]:
        per_class = []
        for k, name in enumerate(self.classes):
            lo, hi = self.lo[k], self.hi[k]
            entry: dict[str, Any] = {"class": name, "samples": self.counts[k]}
            if lo is None or hi is None:
                entry.update(footprint=None, footprint_input=None, area=None)
            else:
                entry["footprint"] = [pos(lo), pos(hi)]
                entry["footprint_input"] = [
                    pos([self.grid.to_input(v, d) for d, v in enumerate(lo)]),
                    pos([self.grid.to_input(v, d) for d, v in enumerate(hi)]),
                ]
                entry["area"] = float(self.mask[k].float().mean())
            per_class.append(entry)
        return {"rule": self.rule, "per_class": per_class}

    def plot(self, ax: Axes | None = None) -> Figure:
        """Each class's activation profile and footprint over input positions."""
        from interp.plots.connectivity import plot_footprint

        return plot_footprint(self, ax=ax)

    def sentences(self) -> list[str]:
        """Per class: where its data activates the map, and from how many samples."""
        from interp.readout.text import footprint_sentences

        return footprint_sentences(self)


def footprint(
    model: nn.Module,
    x: Any,
    y: torch.Tensor | None = None,
    structure: Structure | None = None,
    *,
    batch_size: int = 256,
    classes: Sequence[str] | None = None,
    axis: Any = None,
) -> Footprint:
    """Measure each class's training footprint on the feature map the head reads.

    Batches of one class at a time go through the model with a running mean
    recorder, so memory is bounded by ``batch_size`` whatever ``len(x)``.

    Args:
        model: the classifier; left unchanged (run in eval mode inside ``inspecting``).
        x: (N, C, L) or (N, C, H, W) inputs, e.g. the recipe's training distribution;
            or, without ``y``, any data form of :func:`interp.shift_sweep` (a Dataset,
            a DataLoader, an iterable of batches), streamed in one pass.
        y: (N,) integer labels.
        structure: ``interp.structure(model, x)``; computed when None.
        batch_size: samples per forward pass.
        classes: class names (default '0', '1', ...).
        axis: checkpoint ``axis`` metadata, for units.

    Returns:
        A :class:`Footprint`.

    >>> fp = footprint(model, x, y, geo)        # doctest: +SKIP
    >>> fp.mean.shape, fp.mask.shape            # doctest: +SKIP
    (torch.Size([4, 64, 4026]), torch.Size([4, 4026]))
    """
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1, got {batch_size}")
    if not isinstance(x, torch.Tensor):
        return _streamed(model, x, y, structure, classes, axis)
    geo = structure if structure is not None else _structure(model, x[:1])
    check_data(x, y, geo)
    grid = Grid.of(geo, axis)
    assert geo.head.reads is not None and geo.head.channels is not None
    k_total = geo.num_classes or 0
    names = class_names(classes, k_total)
    shape = (geo.head.channels, *grid.positions)
    device = model_device(model)
    means, counts = [], []
    with inspecting(model), torch.no_grad():
        for k in range(k_total):
            rows = (y == k).nonzero().flatten()
            counts.append(len(rows))
            total = torch.zeros(shape, dtype=torch.float64)
            for start in range(0, len(rows), batch_size):
                xb = x[rows[start : start + batch_size]].to(device)  # (B, C, *L)
                total += capture_map(geo, xb)["map"].to("cpu", torch.float64).sum(0)  # (C, *P)
            means.append((total / max(len(rows), 1)).float())
    mean = torch.stack(means)  # (K, C, *P)
    return _from_mean(mean, tuple(counts), names, grid)


def _streamed(
    model: nn.Module, data: Any, y: Any, structure: Structure | None,
    classes: Sequence[str] | None, axis: Any,
) -> Footprint:  # fmt: skip
    """:func:`footprint` over any data form in one pass: float64 sums per class."""
    from interp._batches import as_source, peek

    first, source = peek(as_source(data, y))
    if first is None:
        raise InterpError("`data` holds no samples; pass at least one")
    geo = structure if structure is not None else _structure(model, first[0][:1])
    grid = Grid.of(geo, axis)
    assert geo.head.reads is not None and geo.head.channels is not None
    k_total = geo.num_classes or 0
    names = class_names(classes, k_total)
    sums = torch.zeros(k_total, geo.head.channels, *grid.positions, dtype=torch.float64)
    counts = torch.zeros(k_total, dtype=torch.long)
    device = model_device(model)
    with inspecting(model), torch.no_grad():
        for xb, yb in source.batches():  # (B, C, *L), (B,)
            check_data(xb, yb, geo)
            if len(yb) and (int(yb.min()) < 0 or int(yb.max()) >= k_total):
                raise InterpError(
                    f"`data` has labels {int(yb.min())}..{int(yb.max())} but the model has "
                    f"{k_total} classes; labels must be class indices 0..{k_total - 1}"
                )
            fmap = capture_map(geo, xb.to(device))["map"]  # (B, C, *P)
            sums.index_add_(0, yb.cpu(), fmap.to(torch.float64).cpu())  # (K, C, *P)
            counts += torch.bincount(yb.cpu(), minlength=k_total)
    shape = (-1,) + (1,) * (sums.dim() - 1)
    mean = (sums / counts.clamp(min=1).view(shape)).float()  # (K, C, *P)
    return _from_mean(mean, tuple(int(c) for c in counts), names, grid)


def _from_mean(
    mean: torch.Tensor, counts: tuple[int, ...], names: tuple[str, ...], grid: Grid
) -> Footprint:
    dims = grid.dims
    dev = deviation(mean, dims)  # (K, C, *P)
    dev[torch.tensor(counts) == 0] = 0.0
    profiles, los, his, masks, kmasks = [], [], [], [], []
    for k in range(len(names)):
        prof = signal(dev[k].sum(0))  # (*P)
        box = mass_interval(prof)
        profiles.append(prof)
        los.append(box[0] if box else None)
        his.append(box[1] if box else None)
        masks.append(
            box_mask(grid.positions, *box) if box else torch.zeros(grid.positions, dtype=torch.bool)
        )
        peak = dev[k].max()
        kmasks.append(
            dev[k] >= FLOOR * peak if peak > 0 else torch.zeros_like(dev[k], dtype=torch.bool)
        )
    return Footprint(
        classes=names,
        counts=counts,
        mean=mean,
        deviation=dev,
        profile=torch.stack(profiles),
        lo=tuple(los),
        hi=tuple(his),
        mask=torch.stack(masks),
        kernel_mask=torch.stack(kmasks),
        grid=grid,
    )
