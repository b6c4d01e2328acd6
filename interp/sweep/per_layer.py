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
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from interp.sweep.per_layer_result import Equivariance, LayerEquivariance, findings
from interp._guard import inspecting
from interp._util import model_device
from interp.errors import InterpError
from interp.hooks import record
from interp.shifts import Shift, check_mode, normalize_shifts, shift
from interp.geometry.core import Layer, Structure, strided_layers
from interp.geometry.core import structure as _structure

__all__ = ["Equivariance", "LayerEquivariance", "equivariance"]


@dataclass
class _Sums:
    """Running sums of ||a - b||^2, ||a||^2, ||b||^2 for one kind of error."""

    diff: float = 0.0
    a: float = 0.0
    b: float = 0.0
    used: bool = False

    def add(self, a: torch.Tensor, b: torch.Tensor) -> None:
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


def interior(lay: Layer, size: Sequence[int], s: Sequence[int], q: Sequence[int]) -> torch.Tensor:
    """Bool mask (*P) of positions ``j`` of ``lay`` where ``f(T_s x)[j] = f(x)[j - q]`` must
    hold for an equivariant stack: the receptive field of ``j`` is inside the input
    (length ``size``) before and after the shift, and so is that of ``j - q``."""
    if lay.stride is None or lay.offset is None or lay.receptive_field is None:
        raise ValueError(f"layer {lay.name!r} has no positions, so no interior")
    masks = []
    for p, n, st, off, rf, sa, qa in zip(
        lay.output_shape[1:], size, lay.stride, lay.offset, lay.receptive_field, s, q, strict=True
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


def _plan(geo: Structure) -> list[tuple[Layer, Layer | None]]:
    """Each layer with the layer whose geometry its output has (None: no positions)."""
    plan: list[tuple[Layer, Layer | None]] = []
    last: Layer | None = None
    for lay in geo.layers:
        if not lay.name or any(lay.name == p[0].name for p in plan):
            continue  # an unnamed model root, or a module called twice: not recordable
        many = lay.stride is not None and _numel(lay.output_shape[1:]) > 1
        geom = lay if many else None
        if lay.role == "reshape" and last is not None:
            geom = last if _numel(lay.output_shape) == _numel(last.output_shape) else None
        plan.append((lay, geom))
        last = lay if many else last
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
    names = [lay.name for lay, _ in plan]
    size = tuple(int(v) for v in x.shape[2:])
    sums = {n: {k: _Sums() for k in ("full", "inner", "alias", "inv")} for n in names}
    last_stride = (1,) * len(size)
    flat_stride = {}
    for lay, geom in plan:
        flat_stride[lay.name] = last_stride if geom is None else geom.stride
        last_stride = geom.stride if geom is not None and geom.stride else last_stride
    with inspecting(model):
        for start in range(0, x.shape[0], batch_size):
            xb = x[start : start + batch_size]
            base = _record(model, names, xb)
            for s in shift_list:
                moved = _record(model, names, shift(xb, s, mode))
                for lay, geom in plan:
                    _compare(
                        sums[lay.name],
                        base[lay.name],
                        moved[lay.name],
                        lay,
                        geom,
                        s,
                        mode,
                        size,
                        flat_stride[lay.name],
                    )
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


def _record(model: nn.Module, names: list[str], x: torch.Tensor) -> dict[str, torch.Tensor]:
    with record(model, names, device=x.device) as rec:
        model(x)
    return {n: rec[n] for n in names}


def _compare(
    sums: dict[str, _Sums],
    base: torch.Tensor,
    moved: torch.Tensor,
    lay: Layer,
    geom: Layer | None,
    s: Shift,
    mode: str,
    size: tuple[int, ...],
    stride: tuple[int, ...] | None,
) -> None:
    """Add one shift's errors for one layer: base/moved are its outputs (N, ...)."""
    s_t = s if isinstance(s, tuple) else (s,)
    if geom is None:
        multiple = stride is None or all(a % st == 0 for a, st in zip(s_t, stride, strict=True))
        sums["inv" if multiple else "alias"].add(moved, base)
        return
    assert geom.stride is not None
    shape = (base.shape[0], *geom.output_shape)
    base, moved = base.reshape(shape), moved.reshape(shape)  # (N, C, *P)
    cands = _candidates(s_t, geom.stride)
    if len(cands) == 1:
        q = cands[0]
        q_shift: Shift = (q[0], q[1]) if len(q) == 2 else q[0]
        sums["full"].add(moved, shift(base, q_shift, mode))
        mask = interior(geom, size, s_t, q)
        sums["inner"].add(moved[..., mask], base.roll(q, tuple(range(2, base.dim())))[..., mask])
        return
    best: _Sums | None = None
    for q in cands:
        mask = interior(geom, size, s_t, q)
        trial = _Sums()
        trial.add(moved[..., mask], base.roll(q, tuple(range(2, base.dim())))[..., mask])
        if best is None or (trial.value() or 0.0) < (best.value() or 0.0):
            best = trial
    assert best is not None
    target = sums["alias"]
    target.diff, target.a, target.b = target.diff + best.diff, target.a + best.a, target.b + best.b
    target.used = True


def _results(
    plan: list[tuple[Layer, Layer | None]],
    sums: dict[str, dict[str, _Sums]],
    geo: Structure,
    tolerance: float,
) -> tuple[LayerEquivariance, ...]:
    out = []
    for lay, geom in plan:
        s = sums[lay.name]
        inner, alias, inv = s["inner"].value(), s["alias"].value(), s["inv"].value()
        if geom is not None:
            breaks = None if inner is None else inner > tolerance
        else:
            position_specific = lay.equivariant is False
            breaks = None if inv is None else (inv > tolerance and position_specific)
        out.append(
            LayerEquivariance(
                name=lay.name,
                type=lay.type,
                role=lay.role,
                stride=geom.stride if geom is not None else None,
                positions=geom is not None,
                error=s["full"].value(),
                interior_error=inner,
                aliasing_error=alias,
                invariance_error=inv,
                breaks=breaks,
                aliasing=None if alias is None else alias > tolerance,
            )
        )
    return tuple(out)
