"""Per-layer shift equivariance: where a model stops moving its features with the input.

For every layer with positions, compare its output for the shifted input,
``f(T_s x)``, with its output for the original input shifted in the layer's own
positions, ``T_q f(x)`` with ``q = s / stride`` (cumulative stride, per axis):

- ``error``: over all positions, for shifts that are multiples of the stride;
- ``interior_error``: the same over *interior* positions only: those whose receptive
  field lies inside the input both before and after the shift (and whose partner
  ``j - q`` exists). Only there is ``f(T_s x)[j] = f(x)[j - q]`` a law for exactly
  equivariant layers: elsewhere zero padding or the roll's wrap-around enter;
- ``aliasing_error``: interior error for shifts that are not multiples of the stride,
  against the closest whole-position shift (floor or ceil of ``s / stride``): what
  subsampling loses (Zhang 2019, https://arxiv.org/abs/1904.11486).

Layers without positions (after Flatten -> Linear, or a global pool) get an
``invariance_error`` ``f(T_s x)`` against ``f(x)`` instead (and ``aliasing_error``
for the shifts that are not multiples of the last stride). A Flatten right after a
layer with positions is viewed back onto that layer's map.

Errors are relative, ``||a - b|| / max(||a||, ||b||)`` over all samples, shifts
and positions of a kind (0 when both are 0). A layer **breaks** equivariance when
its interior error exceeds ``tolerance`` (default 1e-4: float32 rounding is ~1e-7);
a layer without positions breaks when its invariance error exceeds ``tolerance``
and it weighs positions individually (a positional head), since boundary effects
alone also move a pooled output a little.

A layer **aliases** when shifts off its stride grid change it more than shifts on the
grid do: its ``aliasing_error`` exceeds both ``tolerance`` and its on-grid error
(``error`` with positions, ``invariance_error`` without; when no on-grid shift was
tested, ``tolerance`` alone decides). Shifts by whole strides already change a map
through padding and wrap-around; an off-grid change no larger than that is not what
a low-pass filter before subsampling removes (an anti-aliased BlurPool layer still
changes a little off the grid, but less than on it).

Functional call sites (``F.conv2d`` inside a module's forward) carry ``module``, the
path of the module whose forward made the call, so sentences name that module.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from interp._guard import inspecting
from interp._util import model_device
from interp.errors import InterpError
from interp.geometry.core import Layer, Structure, strided_layers
from interp.geometry.core import structure as _structure
from interp.geometry.graph import geometry
from interp.shifts import Shift, check_mode, normalize_shifts, shift
from interp.sweep.per_layer_result import Equivariance, LayerEquivariance, findings

__all__ = ["Equivariance", "LayerEquivariance", "equivariance"]


@dataclass
class _Sums:
    """Running sums of ||a - b||^2, ||a||^2, ||b||^2 for one kind of error."""

    diff: float = 0.0
    a: float = 0.0
    b: float = 0.0
    used: bool = False

    def add(self, a: torch.Tensor, b: torch.Tensor) -> None:
        if a.numel() == 0:  # no interior position: nothing measured
            return
        a, b = a.double(), b.double()
        self.diff += float(((a - b) ** 2).sum())
        self.a += float((a**2).sum())
        self.b += float((b**2).sum())
        self.used = True

    def value(self) -> float | None:
        if not self.used:
            return None
        den = max(self.a, self.b)
        return (self.diff / den) ** 0.5 if den > 0 else 0.0


def interior(
    lay: Layer,
    size: Sequence[int],
    s: Sequence[int],
    q: Sequence[int],
    positions: Sequence[int] | None = None,
) -> torch.Tensor:
    """Bool mask (*P) of positions ``j`` of ``lay`` where ``f(T_s x)[j] = f(x)[j - q]`` must
    hold for an equivariant stack: the receptive field of ``j`` is inside the input
    (length ``size``) before and after the shift, and so is that of ``j - q``.
    ``positions``: the map's sizes along the input's spatial axes (default: the output
    shape after its channel axis)."""
    if lay.stride is None or lay.offset is None or lay.receptive_field is None:
        raise ValueError(f"layer {lay.name!r} has no positions, so no interior")
    masks = []
    sizes = lay.output_shape[1:] if positions is None else positions
    for p, n, st, off, rf, sa, qa in zip(
        sizes, size, lay.stride, lay.offset, lay.receptive_field, s, q, strict=True
    ):
        j = torch.arange(p)
        a = j * st - off  # first input position read by j
        b = a + rf - 1
        ok = (a >= 0) & (b < n) & (a - sa >= 0) & (b - sa < n)
        ok &= (j - qa >= 0) & (j - qa < p) & (a - qa * st >= 0) & (b - qa * st < n)
        masks.append(ok)
    mask = masks[0]
    for m in masks[1:]:
        mask = mask[..., None] & m
    return mask


def _candidates(s: tuple[int, ...], stride: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Whole-position shifts closest to ``s / stride``: one if a multiple, else floor/ceil."""
    per_axis = [sorted({a // st, -(-a // st)}) for a, st in zip(s, stride, strict=True)]
    out: list[tuple[int, ...]] = [()]
    for options in per_axis:
        out = [(*c, v) for c in out for v in options]
    return out


@dataclass(frozen=True)
class _Site:
    """One call site to measure: its layer, the layer whose positions its output has
    (None: none left), and where those positions are in its batched output."""

    lay: Layer
    geom: Layer | None
    axes: tuple[int, ...] | None  # tensor axes of the input's spatial axes, input-axis order
    view: tuple[int, ...] | None  # reshape a flat output to this (batch-free) shape first
    label: str = ""  # the name reported: the site's, or the tuple-output layer it unpacks


def _plan(geo: Structure) -> list[_Site]:
    """Each call site with a tensor output, with the geometry its output has.

    Positions are found by the graph's axis mapping (an EEG map ``(N, C, T, 1)`` has time
    on tensor axis -2), so reshapes that only add an axis, permutes and padding layers
    are measured in their own layout; a Flatten right after a map is viewed back onto it.
    """
    if geo.graph is None:
        raise InterpError(
            "per-layer equivariance needs the traced graph of the model "
            "(`structure.graph`), and this structure has none; pass a model interp can trace"
        )
    node_geo = geometry(geo.graph)
    dims = geo.spatial_dims
    plan: list[_Site] = []
    last: _Site | None = None
    for lay in geo.layers:
        ng = node_geo.get(lay.name)
        node = geo.graph.node(lay.name) if ng is not None else None
        if ng is None or node is None or node.output_shape is None or not lay.output_shape:
            continue  # a tuple output (an LSTM's (out, (h, c))), or no node to capture
        axes = tuple(ng.axes.get(d) for d in range(dims))
        many = lay.stride is not None and all(a is not None for a in axes)
        many = many and _numel([lay.output_shape[a] for a in axes if a is not None]) > 1
        if many:
            # An LSTM returns (out, (h, c)): its output is measured at the getitem unpacking it.
            producer = geo.graph.node(node.inputs[0]) if node.inputs else None
            label = lay.name
            if producer is not None and producer.output_shape is None and lay.type.endswith(
                "getitem"
            ):
                label = producer.name
            site = _Site(lay, lay, tuple(a for a in axes if a is not None), None, label)
            last = site
        elif lay.role in ("reshape", "flatten") and last is not None and _numel(
            lay.output_shape
        ) == _numel(last.lay.output_shape) and len(lay.output_shape) == 1:
            site = _Site(lay, last.geom, last.axes, tuple(last.lay.output_shape), lay.name)
        else:
            site = _Site(lay, None, None, None, lay.name)
        plan.append(site)
    return plan


def _numel(shape: Sequence[int]) -> int:
    out = 1
    for v in shape:
        out *= int(v)
    return out


def equivariance(
    model: nn.Module,
    x: torch.Tensor,
    shifts: Iterable[Shift],
    *,
    mode: str = "roll",
    structure: Structure | None = None,
    tolerance: float = 1e-4,
    batch_size: int = 16,
) -> Equivariance:
    """Measure, layer by layer, how far features move with a shifted input.

    Args:
        model: the model; left unchanged, run in eval mode.
        x: a few samples, (N, C, L) with int shifts or (N, C, H, W) with (dy, dx).
        shifts: shifts to test; mix multiples of the model's strides with others to
            separate equivariance from aliasing.
        mode: ``roll``, ``zero`` or ``edge``; the same shift is applied to layer maps.
        structure: the model's Structure, if already computed.
        tolerance: relative error above which a layer breaks equivariance.
        batch_size: samples per forward.

    >>> eq = equivariance(seed_cnn, x, [-500, -250, 250, 500])   # doctest: +SKIP
    >>> eq.first_break, eq.layer("0").interior_error            # x: (8, 1, 8192)
    ('5', 0.0)
    """
    if not isinstance(x, torch.Tensor) or x.dim() not in (3, 4) or x.shape[0] == 0:
        raise InterpError(
            f"`x` must be a non-empty batch (N, C, L) or (N, C, H, W), got "
            f"{tuple(getattr(x, 'shape', ()))}"
        )
    check_mode(mode)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int, got {batch_size!r}")
    shift_list = normalize_shifts(shifts, x.dim() - 2)
    x = x.to(model_device(model))
    geo = structure if structure is not None else _structure(model, x[:1])
    plan = _plan(geo)
    names = [site.lay.name for site in plan]
    size = tuple(int(v) for v in x.shape[2:])
    sums = {n: {k: _Sums() for k in ("full", "inner", "alias", "inv")} for n in names}
    last_stride = (1,) * len(size)
    flat_stride = {}
    for site in plan:
        geom = site.geom
        flat_stride[site.lay.name] = last_stride if geom is None else geom.stride
        last_stride = geom.stride if geom is not None and geom.stride else last_stride
    with inspecting(model):
        for start in range(0, x.shape[0], batch_size):
            xb = x[start : start + batch_size]
            base = _record(geo, plan, xb)
            for s in shift_list:
                moved = _record(geo, plan, shift(xb, s, mode))
                for site in plan:
                    name = site.lay.name
                    _compare(sums[name], base[name], moved[name], site, s, mode, size,
                             flat_stride[name])  # fmt: skip
    results = _results(plan, sums, geo, tolerance)
    first = next((r.name for r in results if r.breaks), None)
    strided = {lay.name for lay in strided_layers(geo)}
    aliasing = tuple(r.name for r in results if r.aliasing and r.name in strided)
    return Equivariance(
        layers=results,
        shifts=tuple(shift_list),
        mode=mode,
        n=int(x.shape[0]),
        tolerance=tolerance,
        first_break=first,
        aliasing_layers=aliasing,
        findings=tuple(findings(results, geo, first, aliasing, tolerance)),
    )


def _record(geo: Structure, plan: list[_Site], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each site's output on ``x``, by call site (two calls of a module are two sites):
    (N, C, *P) with positions last for sites with positions, (N, F) otherwise."""
    assert geo.graph is not None
    _, caps = geo.graph.run(x, capture=[site.lay.name for site in plan])
    out = {}
    for site in plan:
        t = caps[site.lay.name]
        if site.view is not None:
            t = t.reshape(t.shape[0], *site.view)
        if site.axes is not None:
            nd = t.dim()
            spatial = [a % nd for a in site.axes]
            others = [d for d in range(1, nd) if d not in spatial]
            t = t.permute(0, *others, *spatial)
            t = t.reshape(t.shape[0], -1, *t.shape[t.dim() - len(spatial) :])
        else:
            t = t.reshape(t.shape[0], -1)
        out[site.lay.name] = t
    return out


def _compare(
    sums: dict[str, _Sums],
    base: torch.Tensor,
    moved: torch.Tensor,
    site: _Site,
    s: Shift,
    mode: str,
    size: tuple[int, ...],
    stride: tuple[int, ...] | None,
) -> None:
    """Add one shift's errors for one site: base/moved are its outputs, (N, C, *P) or (N, F)."""
    geom = site.geom
    s_t = s if isinstance(s, tuple) else (s,)
    if geom is None:
        multiple = stride is None or all(a % st == 0 for a, st in zip(s_t, stride, strict=True))
        sums["inv" if multiple else "alias"].add(moved, base)
        return
    assert geom.stride is not None
    cands = _candidates(s_t, geom.stride)
    if len(cands) == 1:
        q = cands[0]
        q_shift: Shift = (q[0], q[1]) if len(q) == 2 else q[0]
        sums["full"].add(moved, shift(base, q_shift, mode))
        mask = interior(geom, size, s_t, q, base.shape[2:])
        sums["inner"].add(moved[..., mask], base.roll(q, tuple(range(2, base.dim())))[..., mask])
        return
    best: _Sums | None = None
    for q in cands:
        mask = interior(geom, size, s_t, q, base.shape[2:])
        trial = _Sums()
        trial.add(moved[..., mask], base.roll(q, tuple(range(2, base.dim())))[..., mask])
        if not trial.used:  # no interior position for this candidate: nothing measured
            continue
        if best is None or (trial.value() or 0.0) < (best.value() or 0.0):
            best = trial
    if best is None:  # no candidate has interior positions: aliasing stays unmeasured
        return
    target = sums["alias"]
    target.diff, target.a, target.b = target.diff + best.diff, target.a + best.a, target.b + best.b
    target.used = True


def _results(
    plan: list[_Site],
    sums: dict[str, dict[str, _Sums]],
    geo: Structure,
    tolerance: float,
) -> tuple[LayerEquivariance, ...]:
    out = []
    assert geo.graph is not None
    for site in plan:
        lay, geom = site.lay, site.geom
        s = sums[lay.name]
        inner, alias, inv = s["inner"].value(), s["alias"].value(), s["inv"].value()
        node = geo.graph.node(site.label or lay.name)
        owner = node.module if node.op in ("function", "method") else None
        if geom is not None:
            breaks = None if inner is None else inner > tolerance
            if inner is None and lay.equivariant is False:
                # No interior (a recurrent layer sees every earlier position): its own
                # full error decides, as the graph already says it mixes positions.
                full = s["full"].value()
                breaks = None if full is None else full > tolerance
        else:
            position_specific = lay.equivariant is False
            breaks = None if inv is None else (inv > tolerance and position_specific)
        out.append(
            LayerEquivariance(
                name=site.label or lay.name,
                type=geo.graph.node(site.label).target if site.label != lay.name else lay.type,
                role=lay.role,
                stride=geom.stride if geom is not None else None,
                positions=geom is not None,
                error=s["full"].value(),
                interior_error=inner,
                aliasing_error=alias,
                invariance_error=inv,
                breaks=breaks,
                aliasing=_aliases(alias, s["full"].value() if geom is not None else inv,
                                  tolerance),
                module=owner,
            )
        )
    return tuple(out)


def _aliases(off_grid: float | None, on_grid: float | None, tolerance: float) -> bool | None:
    """Whether shifts off the stride grid change a layer more than shifts on it do.

    >>> _aliases(0.112, 0.192, 1e-4), _aliases(0.3, 0.0, 1e-4), _aliases(None, 0.1, 1e-4)
    (False, True, None)
    """
    if off_grid is None:
        return None
    if on_grid is None:  # no shift on the grid was tested: only the tolerance can decide
        return off_grid > tolerance
    return off_grid > tolerance and off_grid > on_grid
