"""Boundary bands: the few feature-map positions whose windows reach some layer's padding.

Every position of a shifted map equals the valid map of its phase at lag ``q`` (the
extended input has margins, so this holds even for padding positions) except where
padding or an earlier band changed it. Bands hold the true values (n, S, C, *box),
recomputed layer by layer for every shift:

- 1D (:func:`bands_1d`), tap by tap: a conv or average output is the valid value plus
  the taps that read padding or a band times ``(true - valid)`` input; a max output is
  the max of the band taps and of a sliding max of the clean taps on the valid map.
  The cost per shift is a few taps, not a window.
- 2D (:func:`bands_nd`): the real op runs on strips assembled from the valid map and
  the previous bands, with that layer's padding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from interp.sweep.engine.head import take
from interp.sweep.engine.plan import Level, Op, band_boxes, ix

Box = tuple[tuple[int, int], ...]
Bands = dict[Box, torch.Tensor]
Phase = tuple[int, ...]


def phase(level: Level, t: torch.Tensor) -> tuple[Phase, torch.Tensor]:
    """Phase key and index ``q`` (S, d) of map position 0 in that phase's valid map."""
    t = t - torch.tensor(level.offset, device=t.device)
    stride = torch.tensor(level.stride, device=t.device)
    r = t.remainder(stride)
    return tuple(int(v) for v in r[0]), (t - r) // stride


def pointwise(op: Op, bands: Bands, n: int, s: int) -> Bands:
    return {b: op(v.flatten(0, 1)).unflatten(0, (n, s)) for b, v in bands.items()}


def _at(node: torch.Tensor, index: torch.Tensor, period: int | None = None) -> torch.Tensor:
    """node (n, C, Lb), index (S, m) -> (n, S, C, m); ``period``: node is periodic."""
    if period is not None:
        index = fold_index(index, period, node.shape[-1])
    if index.shape[1] == 1:
        return take(node, index[:, 0]).unsqueeze(-1)
    n, c = node.shape[:2]
    return node.index_select(2, index.flatten()).view(n, c, *index.shape).permute(0, 2, 1, 3)


def fold_index(index: torch.Tensor, period: int, size: int) -> torch.Tensor:
    """Indices into a map of ``size >= period`` positions that repeats every ``period``:
    moved by whole periods as one block when it fits (evenly spaced indices stay evenly
    spaced, so :func:`take` returns a view), else each reduced modulo the period."""
    index = index - int(index.min()) // period * period
    if int(index.max()) < size:
        return index
    return index.remainder(period)


@dataclass(frozen=True)
class _Tap:
    """One band output of a 1D windowed layer: which taps read clean / other inputs."""

    out: int  # output position
    pos: tuple[int, ...]  # input position read by each tap
    clean: tuple[int, ...]  # taps on clean inputs (contiguous)
    other: tuple[int, ...]  # taps on padding or band inputs


def tap_plan(ops: list[Op], geo: list[Level]) -> list[list[_Tap]]:
    """Per windowed layer, every band output of its map with the taps it reads.

    Every band position is computed (not only those a later layer reads): a layer that
    recomputes its bands from strips reads whole band boxes.
    """
    plans: list[list[_Tap]] = [[] for _ in ops]
    for i, op in enumerate(ops):
        if not op.windowed:
            continue
        (c0, c1), = geo[i].core  # fmt: skip
        (d0, d1), = geo[i + 1].core  # fmt: skip
        taps = []
        for o in [*range(0, d0), *range(max(d0, d1), geo[i + 1].size[0])]:
            pos = tuple(o * op.stride[0] - op.pad_lo[0] + op.dilation[0] * k
                        for k in range(op.kernel[0]))  # fmt: skip
            clean = tuple(k for k, p in enumerate(pos) if c0 <= p < c1)
            other = tuple(k for k, p in enumerate(pos) if not c0 <= p < c1)
            taps.append(_Tap(o, pos, clean, other))
        plans[i] = taps
    return plans


def needed_only(ops: list[Op], geo: list[Level], plans: list[list[_Tap]],
                strips: list[bool]) -> list[list[_Tap]]:  # fmt: skip
    """``plans`` cut to the band outputs something reads: the head reads every band
    position of the last map, a strip layer every band position of its input, a tap
    layer only the inputs its kept outputs' padding-or-band taps read. (Seed-like
    chains: a 128-tap conv has ~127 band outputs, of which the pooling reads a few.)"""
    out = [list(p) for p in plans]
    needed: set[int] | None = None  # None: every band position
    for i in reversed(range(len(ops))):
        if not ops[i].windowed:
            continue
        if needed is not None:
            out[i] = [t for t in plans[i] if t.out in needed]
        if strips[i]:
            needed = None
        else:
            size = geo[i].size[0]
            needed = {t.pos[k] for t in out[i] for k in t.other if 0 <= t.pos[k] < size}
    return out


def _runs(positions: list[int]) -> list[tuple[int, int]]:
    """Sorted positions as maximal runs ``(start, stop)`` of consecutive ones."""
    runs: list[tuple[int, int]] = []
    for p in sorted(positions):
        if runs and runs[-1][1] == p:
            runs[-1] = (runs[-1][0], p + 1)
        else:
            runs.append((p, p + 1))
    return runs


def strip_layers(ops: list[Op], geo: list[Level], plans: list[list[_Tap]]) -> list[bool]:
    """Per layer: recompute its bands from padded strips (True) or tap by tap (False).

    A cost estimate per (sample, shift), in multiply-adds plus ``_MOVE`` per element
    moved. Taps multiply only the taps on padding or bands, but each band output is its
    own small contraction over gathered differences (``_TAP_RATE`` times slower per
    multiply-add); a strip runs the real op over whole windows, one call per band.
    Seed-like layers (one input channel, a 128-tap kernel) go tap by tap, wide convs
    with short kernels (FCN: 128 -> 256, k 5) by strips.
    """
    out = []
    for i, op in enumerate(ops):
        if not op.windowed or not plans[i]:
            out.append(False)
            continue
        c_in, c_out = geo[i].channels, geo[i + 1].channels
        groups = op.module.groups if op.kind == "conv" else c_in  # type: ignore[union-attr]
        per_tap = c_in * c_out // groups  # type: ignore[operator]
        others = sum(len(t.other) for t in plans[i])
        outputs = len(plans[i])
        taps = _TAP_RATE * others * per_tap + _MOVE * 3 * (outputs * c_out + others * c_in)
        width = sum(_strip_width(op, box) for box in band_boxes(geo[i + 1]))
        strip = outputs * op.kernel[0] * per_tap + _MOVE * 2 * (width * c_in + outputs * c_out)
        out.append(strip < taps)
    return out


_MOVE = 4  # multiply-adds that one moved element costs, roughly
_TAP_RATE = 2  # a contraction per band output against one conv call per band


def _strip_width(op: Op, box: tuple[tuple[int, int], ...]) -> int:
    (o0, o1), = box  # fmt: skip
    return (o1 - o0 - 1) * op.stride[0] + op.reach(0) + 1


def _true(bands: Bands, pos: list[int], like: torch.Tensor) -> torch.Tensor:
    """True input values at map positions ``pos`` (0 at padding): (n, S, C, len(pos))."""
    cols = []
    for p in pos:
        for ((b0, b1),), values in bands.items():
            if b0 <= p < b1:
                cols.append(values[..., p - b0])
                break
        else:
            cols.append(like.new_zeros(like.shape[:3]))
    return torch.stack(cols, -1)


def bands_1d(ops: list[Op], geo: list[Level], plans: list[list[_Tap]], kept: list[Any],
             t: torch.Tensor, n: int, periods: list[int] | None = None,
             strips: list[bool] | None = None) -> Bands:  # fmt: skip
    """Bands of the last map for shifts with offsets ``t`` (S, 1).

    Layer by layer, tap by tap or (where ``strips`` says so) from padded strips as in
    :func:`bands_nd`. ``periods``: per level, the period of its valid maps when they hold
    one period of a periodic input (roll mode); their indices then wrap.
    """
    s = t.shape[0]
    per = periods or [None] * (len(ops) + 1)
    strips = strips or [False] * len(ops)
    bands: Bands = {}  # box -> (n, S, C, width)
    for i, op in enumerate(ops):
        if not op.windowed:
            bands = pointwise(op, bands, n, s)
            continue
        if strips[i]:
            bands = _strip_step(op, geo[i], geo[i + 1], kept[i], t, bands, n, per[i])
            continue
        key_in, q_in = phase(geo[i], t)
        key_out, q_out = phase(geo[i + 1], t)
        node_in, node_out = kept[i][key_in], kept[i + 1][key_out]
        like = node_in.new_empty((n, s, node_in.shape[1], 0))
        new = {}
        for tap in plans[i]:
            if op.kind == "max":
                new[tap.out] = _max(op, tap, node_in, q_in, node_out, q_out, bands,
                                    geo[i].size[0], (per[i], per[i + 1]))  # fmt: skip
                continue
            base = _at(node_out, tap.out + q_out, per[i + 1])[..., 0]  # (n, S, C_out): valid
            if tap.other:
                where = [tap.pos[k] for k in tap.other]
                idx = torch.tensor(where, device=t.device)
                delta = _true(bands, where, like) - _at(node_in, idx[None, :] + q_in, per[i])
                base = _linear(op, base, delta, tap.other, where, geo[i].size[0])
            new[tap.out] = base
        # (every band position when a strip or the head reads them, else the few read)
        bands = {((a, b),): torch.stack([new[p] for p in range(a, b)], -1)
                 for a, b in _runs(list(new))}  # fmt: skip
    return bands


def _linear(op: Op, base: torch.Tensor, delta: torch.Tensor, taps: tuple[int, ...],
            where: list[int], size: int) -> torch.Tensor:  # fmt: skip
    """Valid output ``base`` (n, S, C) plus the taps' ``(true - valid)`` inputs ``delta``."""
    m = op.module
    if op.kind == "conv":
        groups = m.groups
        w = m.weight[:, :, list(taps)]  # type: ignore[index]  # (C_out, C_in / groups, taps)
        if groups == 1:  # (n, S, C_in * taps) @ (C_in * taps, C_out)
            d, w = delta.flatten(-2), w.permute(1, 2, 0).flatten(0, 1)
            if d.shape[-1] > 8:
                return base + d @ w
            for j in range(d.shape[-1]):  # a matmul with a tiny inner size is slow on CPU
                base = base + d[..., j : j + 1] * w[j]
            return base
        d = delta.unflatten(2, (groups, -1))  # (n, S, G, C_in/G, taps)
        w = w.unflatten(0, (groups, -1))  # (G, C_out/G, C_in/G, taps)
        return base + torch.einsum("nsgct,goct->nsgo", d, w).flatten(2)
    k = op.kernel[0]
    total = delta.sum(-1)
    if m.count_include_pad:
        return base + total / k
    real = k - sum(1 for p in where if not 0 <= p < size)  # average over non-padding inputs
    return (base * k + total) / real


def _max(op: Op, tap: _Tap, node: torch.Tensor, q: torch.Tensor, out_node: torch.Tensor,
         q_out: torch.Tensor, bands: Bands, size: int,
         periods: tuple[int | None, int | None] = (None, None)) -> torch.Tensor:  # fmt: skip
    """Max over the window from the valid max, the other taps, and few explicit windows.

    With ``v`` the valid max of the window (the valid output map), ``v_o`` the valid and
    ``t_o`` the true max of the taps on padding or bands (padding never wins: ``-inf``)
    and ``r`` the max of the clean taps: ``v = max(v_o, r)`` and the answer is
    ``max(t_o, r)``. That is ``max(t_o, v)`` unless ``t_o < v_o`` and ``v == v_o`` (the
    valid max came from an other tap); only those entries read their clean taps.
    """
    valid = _at(out_node, tap.out + q_out, periods[1])[..., 0]  # (n, S, C)
    if not tap.other:
        return valid
    real = [_true(bands, [tap.pos[k]], valid[..., None])[..., 0] for k in tap.other
            if 0 <= tap.pos[k] < size]  # fmt: skip
    true_other = real[0] if real else torch.full_like(valid, float("-inf"))
    for r in real[1:]:
        true_other = torch.maximum(true_other, r)
    if not tap.clean:
        return true_other
    where = torch.tensor([tap.pos[k] for k in tap.other], device=q.device)
    valid_other = _at(node, where[None, :] + q, periods[0]).amax(-1)
    out = torch.maximum(true_other, valid)
    # (valid >= valid_other always; equal where the valid max came from an other tap)
    hit = ((true_other < valid_other) & (valid <= valid_other)).nonzero()  # (M, 3): n, s, c
    if hit.shape[0]:  # ~1% of entries on the seed: index them, no full-size masks
        clean = torch.tensor([tap.pos[k] for k in tap.clean], device=q.device)
        cols = q[hit[:, 1], 0][:, None] + clean[None, :]  # (M, clean taps)
        if periods[0] is not None:
            cols = cols.remainder(periods[0])
        rest = node[hit[:, :1], hit[:, 2:], cols].amax(-1)
        at = (hit[:, 0], hit[:, 1], hit[:, 2])
        out[at] = torch.maximum(true_other[at], rest)
    return out


def bands_nd(ops: list[Op], geo: list[Level], kept: list[Any], t: torch.Tensor,
             n: int) -> Bands:  # fmt: skip
    """Bands of the last map for shifts with offsets ``t`` (S, d), from padded strips."""
    s = t.shape[0]
    bands: Bands = {}
    for i, op in enumerate(ops):
        if not op.windowed:
            bands = pointwise(op, bands, n, s)
            continue
        bands = _strip_step(op, geo[i], geo[i + 1], kept[i], t, bands, n)
    return bands


def _strip_step(op: Op, src: Level, dst: Level, kept: dict[Phase, torch.Tensor],
                t: torch.Tensor, bands: Bands, n: int,
                period: int | None = None) -> Bands:  # fmt: skip
    """The bands of ``dst``: the real op, with its padding, on strips of ``src``'s true map."""
    s = t.shape[0]
    key, q = phase(src, t)
    node = kept[key]
    new = {}
    for box in band_boxes(dst):
        read, lo, hi = [], [], []
        for a, (o0, o1) in enumerate(box):  # input window of outputs o0..o1-1
            start = o0 * op.stride[a] - op.pad_lo[a]
            stop = (o1 - 1) * op.stride[a] - op.pad_lo[a] + op.reach(a) + 1
            size = src.size[a]
            lo.append(max(0, min(stop, 0) - start))
            hi.append(max(0, stop - max(start, size)))
            read.append((min(max(start, 0), size), min(max(stop, 0), size)))
        fill = _FILL.get(op.kind) if len(box) == 1 else None
        if op.kind == "avg" and not getattr(op.module, "count_include_pad", True):
            fill = None  # its divisor counts the real inputs: F.pad's path handles that
        if fill is None:
            strip = materialize(node, q, src, bands, tuple(read), n, period)  # (n, S, C, *read)
            new[box] = op(strip.flatten(0, 1), tuple(lo), tuple(hi)).unflatten(0, (n, s))
        else:  # the padding written in place: one gather, no F.pad copy of the strip
            strip = _padded(node, q, src, bands, read[0], lo[0], hi[0], period, fill)
            new[box] = op(strip.flatten(0, 1)).unflatten(0, (n, s))
    return new


_FILL = {"conv": 0.0, "avg": 0.0, "max": float("-inf")}  # what each op's padding reads


def _padded(node: torch.Tensor, q: torch.Tensor, level: Level, bands: Bands,
            read: tuple[int, int], lo: int, hi: int, period: int | None,
            fill: float) -> torch.Tensor:  # fmt: skip
    """1D: the true map of every shift on ``read`` with ``lo``/``hi`` padding positions
    around it, (n, S, C, lo + width + hi), ready for the op without padding.

    One gather of the valid map over the whole span (it holds a value at every position
    a layer's padding reads, see :func:`~interp.sweep.engine.plan.margins`), then the
    band positions overwritten with their true values and the padding with ``fill``.
    """
    r0, r1 = read
    out = gather(node, q, ((r0 - lo, r1 + hi),), period)
    for ((b0, b1),), values in bands.items():
        a, b = max(b0, r0), min(b1, r1)
        if a < b:
            out[..., a - r0 + lo : b - r0 + lo] = values[..., a - b0 : b - b0]
    if lo:
        out[..., :lo] = fill
    if hi:
        out[..., out.shape[-1] - hi :] = fill
    return out


def materialize(node: torch.Tensor, q: torch.Tensor, level: Level, bands: Bands, box: Box,
                n: int, period: int | None = None) -> torch.Tensor:  # fmt: skip
    """The true map of every shift inside ``box``: (n, S, C, *box).

    ``period`` (1D): ``node`` is periodic with it, and its indices wrap.
    """
    sizes = [b - a for a, b in box]
    out = node.new_empty((n, q.shape[0], node.shape[1], *sizes))
    if min(sizes) == 0:
        return out
    for src_box, values in [(level.core, None), *bands.items()]:
        inter = tuple((max(a, c), min(b, d)) for (a, b), (c, d) in zip(box, src_box, strict=True))
        if any(b <= a for a, b in inter):
            continue
        dst = ix(..., *(slice(a - b0, b - b0) for (a, b), (b0, _) in zip(inter, box, strict=True)))
        if values is None:  # clean positions: a window of the valid map at lag q
            out[dst] = gather(node, q, inter, period)
        else:
            out[dst] = values[ix(..., *(slice(a - c, b - c) for (a, b), (c, _) in
                                      zip(inter, src_box, strict=True)))]  # fmt: skip
    return out


def gather(node: torch.Tensor, q: torch.Tensor, box: Box,
           period: int | None = None) -> torch.Tensor:  # fmt: skip
    """node (n, C, *Lb) -> (n, S, C, *box) with shift k's box read at offset ``q[k]``.

    ``period`` (1D only): ``node`` repeats every ``period`` positions, so a window that
    starts beyond what it holds is read from the same place one or more periods earlier.
    """
    if period is not None:
        (lo, hi), = box  # fmt: skip
        starts = node.shape[-1] - (hi - lo) + 1
        first = q[:, 0] + lo
        first = first - int(first.min()) // period * period
        if int(first.max()) >= starts:
            if period > starts:  # windows wrap inside the map: read index by index
                idx = (first[:, None] + torch.arange(hi - lo, device=q.device)).remainder(period)
                return _at(node, idx)
            first = first.remainder(period)
        # (n, starts, C, w) view indexed on its starts: the copy comes out (n, S, C, w)
        # contiguous, as the op's batch wants it, reading runs of w contiguous values.
        return node.unfold(2, hi - lo, 1).transpose(1, 2)[:, first]
    view = node
    for a, (lo, hi) in enumerate(box):
        view = view.unfold(2 + a, hi - lo, 1)  # (n, C, *starts, *widths)
    dims = len(box)
    view = view.movedim(1, 1 + dims)  # (n, *starts, C, *widths): the same contiguous copy
    index = tuple(q[:, a] + box[a][0] for a in range(q.shape[1]))
    return view[ix(slice(None), *index)]
