"""The exact fast sweep engine: a model's logits under every shift, without a forward per shift.

For a chain of shift-equivariant layers (conv, pooling, pointwise; any stride) read
by a positional or globally pooled Linear head:

1. Build an extended input ``E`` once per sample, so that every shifted input is a
   window of it: ``x_s[i] = E[i + t]`` with ``t = max(shifts) - s`` (roll: periodic
   tiling; zero: zeros around; edge: repeated edge values).
2. Run an unpadded ("valid") copy of the trunk on ``E``, one phase per residue of
   ``t`` modulo the cumulative stride, sharing work down a tree of phases: each
   strided layer splits a map into its ``stride`` phases (like an a-trous pass).
   Position ``j`` of a shifted feature map is then position ``j + q`` of the valid
   map of its phase, wherever its window never touched padding.
3. Recompute, per shift, only the few boundary positions whose windows reach some
   layer's padding (bands at the ends of each axis, see :mod:`interp.sweep.engine.plan`),
   layer by layer with the real padding, batched over all shifts.
4. Evaluate the head for every shift at once (:mod:`interp.sweep.engine.head`).

Results equal ``model(shift(x, s, mode))`` up to float rounding. Models out of reach
raise :class:`Unsupported`, and :mod:`interp.sweep.core` falls back to brute force.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from interp._guard import inspecting
from interp.errors import InterpError
from interp.geometry.core import Structure
from interp.shifts import check_mode, normalize_shifts, shift_many
from interp.sweep.engine.bands import (
    Box,
    Phase,
    bands_1d,
    bands_nd,
    needed_only,
    phase,
    strip_layers,
    tap_plan,
)
from interp.sweep.engine.head import head_cores, head_finish
from interp.sweep.engine.plan import (
    HeadPlan,
    Level,
    Op,
    Unsupported,
    band_boxes,
    ix,
    levels,
    make_plan,
    margins,
)  # fmt: skip

__all__ = ["Unsupported", "band_costs", "fast_logits"]

_BUDGET = 256 * 2**20  # bytes of working memory per streamed batch, roughly


def fast_logits(
    model: nn.Module,
    structure: Structure,
    x: torch.Tensor,
    shifts: Iterable[object],
    mode: str,
    *,
    max_bytes: int = _BUDGET,
) -> torch.Tensor:
    """Logits of ``model(shift(x, s, mode))`` for every sample and shift.

    Args:
        model: a chain of conv / pooling / pointwise layers and a positional or pooled
            Linear head; left unchanged.
        structure: ``interp.structure(model, x)``.
        x: (N, C, L) with int shifts, or (N, C, H, W) with ``(dy, dx)`` shifts.
        shifts: S shifts; mode: ``roll``, ``zero`` or ``edge``.
        max_bytes: working memory per streamed batch of samples and shifts.

    Returns:
        (N, S, K) float32 logits.

    Raises:
        Unsupported: the model is not such a chain, or a spot check against brute
            force disagrees; the message says why.

    >>> fast_logits(model, structure(model, x), x, range(-3, 4), "roll").shape  # doctest: +SKIP
    torch.Size([8, 7, 3])                                                     # x: (8, 1, 64)
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"`x` must be a torch.Tensor, got {type(x).__name__}")
    dims = structure.spatial_dims
    if x.dim() != dims + 2 or tuple(x.shape[1:]) != tuple(structure.input_shape):
        raise ValueError(f"`x` {tuple(x.shape)} does not match `structure` input shape "
                         f"{structure.input_shape}")  # fmt: skip
    check_mode(mode)
    table = torch.tensor(normalize_shifts(shifts, dims), dtype=torch.long).reshape(-1, dims)
    ops, head = make_plan(model, structure)
    if x.shape[0] == 0:
        return x.new_zeros((0, table.shape[0], structure.num_classes), dtype=torch.float32)
    param = next(iter(model.parameters()), None)
    dtype = param.dtype if param is not None else x.dtype
    if x.dtype != dtype or dtype not in (torch.float32, torch.float64):
        raise Unsupported(f"input {x.dtype} and parameters {dtype} must both be float32/float64")
    sizes = tuple(int(v) for v in x.shape[2:])
    geo = levels(ops, sizes, int(x.shape[1]))
    unique, inverse = unique_rows(_normalise(table, sizes, mode))
    unique = unique.to(x.device)
    picks = sorted({0, len(unique) - 1})  # the spot check: extreme shifts of sample 0
    n_batch = _samples_per_batch(geo, unique, max_bytes, mode)
    parts = []
    with inspecting(model):
        expected = _replay_check(model, structure, ops, x[:1], unique[picks], mode)
        after = None if head.after is None else _after(structure, head.after, x[:1].detach())
        for start in range(0, x.shape[0], n_batch):
            xb = x[start : start + n_batch].detach()
            logits = _batch(ops, head, geo, xb, unique, mode, max_bytes, after)
            parts.append(logits.to(torch.float32))
            if start == 0:
                _spot_check(parts[0][0, picks], expected, unique[picks])
    return torch.cat(parts)[:, inverse.to(x.device)]


def band_costs(model: nn.Module, structure: Structure) -> tuple[int, int]:
    """Estimated multiply-adds per (sample, shift) of the border work, two ways.

    ``chain``: this engine's bands, layer by layer (each layer recomputes only its own
    band positions, from the true map of the layer below). ``crops``: the same final
    border positions recomputed through the whole trunk from input crops (their windows
    widen by every layer's reach on the way down), the graph engine's way. Both count
    full windows; pointwise layers are free. A cost estimate for choosing an engine,
    not a timing.

    Raises:
        Unsupported: the chain engine does not apply (its plan fails).
    """
    ops, _ = make_plan(model, structure)
    geo = levels(ops, tuple(int(v) for v in structure.input_shape[1:]),
                 int(structure.input_shape[0]))  # fmt: skip
    chain = sum(_box_cost(op, geo[i], box) for i, op in enumerate(ops) if op.windowed
                for box in band_boxes(geo[i + 1]))  # fmt: skip
    crops = 0
    for box in band_boxes(geo[-1]):
        for i in reversed(range(len(ops))):
            op = ops[i]
            if not op.windowed:
                continue
            crops += _box_cost(op, geo[i], box)
            box = tuple((max(0, b0 * op.stride[a] - op.pad_lo[a]),
                         min(geo[i].size[a], (b1 - 1) * op.stride[a] - op.pad_lo[a]
                             + op.reach(a) + 1))
                        for a, (b0, b1) in enumerate(box))  # fmt: skip
    return chain, crops


def _box_cost(op: Op, src: Level, box: Box) -> int:
    """Multiply-adds of ``op`` on the outputs in ``box`` (src: its input level)."""
    window = 1
    for k in op.kernel:
        window *= k
    c_out = getattr(op.module, "out_channels", src.channels)
    groups = getattr(op.module, "groups", src.channels) if op.kind == "conv" else src.channels
    return _numel(box) * window * src.channels * c_out // max(1, groups)


def _after(geo: Structure, name: str, x: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model's layers from the pool ``name`` on, as pooled (n, S, C) -> logits (n, S, K)."""
    if geo.graph is None:
        raise Unsupported("no traced graph to run the layers after the pool with")
    shape = next(lay.output_shape for lay in geo.layers if lay.name == name)  # (C, 1, ...)
    try:
        h = geo.graph.callable_from(name, x)
    except InterpError as exc:
        raise Unsupported(f"the layers after the pool {name!r} cannot run alone: {exc}") from exc
    dtype = x.dtype

    def run(pooled: torch.Tensor) -> torch.Tensor:
        n, s = pooled.shape[:2]
        out = h(pooled.to(dtype).reshape(n * s, *shape))
        if not isinstance(out, torch.Tensor) or out.dim() != 2:
            raise Unsupported("the layers after the pool do not return (N, classes) logits")
        return out.unflatten(0, (n, s))

    return run


def unique_rows(table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.unique(table, dim=0, return_inverse=True)`` for (S, d) integer shifts.

    Each row becomes one integer (mixed radix, so their order is the rows' lexicographic
    order) for the flat ``torch.unique``: ``unique(dim=0)`` took ~15 ms on 4001 shifts
    against 0.5 ms, once per sweep and once per batch of samples.
    """
    if table.shape[0] == 0:
        return table, table.new_zeros(0)
    low = table.min(0).values
    span = (table.max(0).values - low + 1).tolist()
    key = torch.zeros(table.shape[0], dtype=torch.long, device=table.device)
    for a, n in enumerate(span):  # mixed radix: row order = lexicographic order
        key = key * n + (table[:, a] - low[a])
    flat, inverse = torch.unique(key, return_inverse=True)
    rows = []
    for n in reversed(span):
        rows.append(flat.remainder(n))
        flat = flat.div(n, rounding_mode="floor")
    return torch.stack(rows[::-1], 1) + low, inverse


def _normalise(table: torch.Tensor, sizes: tuple[int, ...], mode: str) -> torch.Tensor:
    """Equivalent shifts with a span of at most 2L per axis (same shifted input)."""
    cols = []
    for a, n in enumerate(sizes):
        s = table[:, a]
        if mode == "roll":
            s = s.remainder(n) if int(s.max() - s.min()) >= n else s
        else:  # beyond these every position is padding (zero) or the edge value (edge)
            s = s.clamp(-n, n) if mode == "zero" else s.clamp(-(n - 1), n - 1)
        cols.append(s)
    return torch.stack(cols, 1)


def _extend(x: torch.Tensor, lo: list[int], hi: list[int], mode: str,
            margin: tuple[tuple[int, ...], tuple[int, ...]],
            length: list[int] | None = None) -> torch.Tensor:  # fmt: skip
    """E (n, C, *(m_lo + L + hi - lo + m_hi)) with ``shift(x, s)[i] = E[i + m_lo + hi - s]``.

    For lo <= s <= hi; the margins ``m_lo``, ``m_hi`` continue the same rule. ``length``
    (roll only): E's length per axis instead, E still starting at the same place.
    """
    for a, n in enumerate(x.shape[2:]):
        before, after = margin[0][a] + hi[a], margin[1][a] - lo[a]
        stop = n + after if length is None else length[a] - before
        src = torch.arange(-before, stop, device=x.device)  # E index -> x index
        idx = src.remainder(n) if mode == "roll" else src.clamp(0, n - 1)
        x = x.index_select(2 + a, idx)
        if mode == "zero":
            keep = ((src >= 0) & (src < n)).to(x.dtype)
            x = x * keep.view(-1, *(1,) * (len(x.shape) - 3 - a))
    return x


def _trunk(ops: list[Op], geo: list[Level], e: torch.Tensor, finals: list[Phase]):
    """Valid maps per level and phase; kept only where a band or the head reads them."""
    cur: dict[Phase, torch.Tensor] = {tuple(0 for _ in finals[0]): e}
    # Bands read the valid maps before and after each windowed layer, the head the last.
    keep = [i == len(ops) or ops[i].windowed or (i > 0 and ops[i - 1].windowed)
            for i in range(len(ops) + 1)]  # fmt: skip
    kept: list[dict[Phase, torch.Tensor] | None] = [cur if keep[0] else None]
    for i, op in enumerate(ops):
        if op.windowed:
            s_in, s_out = geo[i].stride, geo[i + 1].stride
            wanted = {tuple(g % s for g, s in zip(f, s_out, strict=True)) for f in finals}
            new = {}
            for parent in sorted({tuple(v % s for v, s in zip(r, s_in, strict=True))
                                  for r in wanted}):  # fmt: skip
                kids = {r: tuple((v - p) // s for v, p, s in zip(r, parent, s_in, strict=True))
                        for r in wanted if all(v % s == p for v, s, p in
                                               zip(r, s_in, parent, strict=True))}  # fmt: skip
                new.update(_children(op, cur[parent], kids, geo[i + 1].channels))
            cur = new
        else:
            cur = {r: op(t) for r, t in cur.items()}
        kept.append(cur if keep[i + 1] else None)
    return kept


def _children(op: Op, parent: torch.Tensor, kids: dict[Phase, tuple[int, ...]],
              channels: int) -> dict[Phase, torch.Tensor]:  # fmt: skip
    """Valid ``op`` on ``parent[start:]`` for each child phase's start offsets.

    When every phase is wanted, one stride-1 pass sliced per phase costs the same as
    the separate strided passes, and fewer calls.
    """
    every = 1
    for s in op.stride:
        every *= s
    if every > 1 and len(kids) == every:
        full = _valid(replace(op, stride=(1,) * len(op.stride)), parent, channels)
        return {r: full[ix(..., *(slice(v, None, s) for v, s in zip(start, op.stride,
                                                                  strict=True)))]
                for r, start in kids.items()}  # fmt: skip
    return {r: _valid(op, parent[ix(..., *(slice(v, None) for v in start))], channels)
            for r, start in kids.items()}  # fmt: skip


def _valid(op: Op, src: torch.Tensor, channels: int) -> torch.Tensor:
    """``op`` without padding; an empty map when a window does not fit."""
    sizes = [(n - op.reach(a) - 1) // op.stride[a] + 1 for a, n in enumerate(src.shape[2:])]
    if min(sizes) < 1:
        return src.new_zeros((src.shape[0], channels, *(max(0, v) for v in sizes)))
    return op(src)


def _batch(ops: list[Op], head: HeadPlan, geo: list[Level], xb: torch.Tensor,
           unique: torch.Tensor, mode: str, max_bytes: int,
           after: Callable[[torch.Tensor], torch.Tensor] | None = None,
           ) -> torch.Tensor:  # fmt: skip
    """Logits (n, U, K) for a batch of samples and every unique shift."""
    n, dims = xb.shape[0], xb.dim() - 2
    lo, hi = unique.min(0).values.tolist(), unique.max(0).values.tolist()
    margin = margins(ops, geo)
    t = torch.tensor(hi, device=xb.device) + torch.tensor(margin[0], device=xb.device) - unique
    final = geo[-1]  # t (U, d): x_s[i] = E[i + t]
    phases = (t - torch.tensor(final.offset, device=t.device)).remainder(
        torch.tensor(final.stride, device=t.device))  # fmt: skip
    groups = sorted({tuple(r) for r in phases.tolist()})
    length = periodic_length(geo, mode, lo, hi, margin)
    kept = _trunk(ops, geo, _extend(xb, lo, hi, mode, margin, length), groups)
    # One period of the input: every valid map repeats every L / stride positions.
    periods = None if length is None else [geo[0].size[0] // lv.stride[0] for lv in geo]
    plans = tap_plan(ops, geo) if dims == 1 else []
    strips = strip_layers(ops, geo, plans) if dims == 1 else []
    plans = needed_only(ops, geo, plans, strips) if dims == 1 else []
    chunk = max(1, max_bytes // (n * _pair_bytes(ops, geo, xb.element_size(), plans)))
    members, items = [], []
    for g in groups:
        idx = (phases == torch.tensor(g, device=t.device)).all(1).nonzero().squeeze(1)
        idx = idx.flip(0)  # increasing offsets: evenly spaced lags become strided views
        key, q = phase(final, t[idx])
        members.append(idx)
        items.append((kept[-1][key], q))
    out, rows = [], []
    cores = head_cores(head, final, items, None if periods is None else (periods[-1],))
    for idx, core in zip(members, cores, strict=True):
        for c0 in range(0, len(idx), chunk):
            tc = t[idx[c0 : c0 + chunk]]
            if dims == 1:
                bands = bands_1d(ops, geo, plans, kept, tc, n, periods, strips)
            else:
                bands = bands_nd(ops, geo, kept, tc, n)
            part = None if core is None else core[:, c0 : c0 + chunk]
            out.append(head_finish(head, final, part, bands, after))
            rows.append(idx[c0 : c0 + chunk])
    logits = torch.cat(out, 1)
    return logits[:, torch.argsort(torch.cat(rows))]


Margin = tuple[tuple[int, ...], tuple[int, ...]]


def periodic_length(geo: list[Level], mode: str, lo: list[int], hi: list[int],
                    margin: Margin) -> list[int] | None:  # fmt: skip
    """Length of an extended input holding one period (roll, 1D), or None.

    A rolled input is a window of the periodic extension, so every valid map repeats
    every ``L / stride`` positions when the stride divides L: the trunk needs one period
    plus the widest receptive field (``L + field - 1``), not the whole span of shifts.
    None where that is not shorter, or the stride does not divide L, or in 2D.
    """
    if mode != "roll" or len(geo[0].size) != 1:
        return None
    n = geo[0].size[0]
    if n % geo[-1].stride[0]:
        return None
    need = n + max(lv.field[0] for lv in geo) - 1
    full = n + margin[0][0] + hi[0] + margin[1][0] - lo[0]
    return [need] if need < full else None


def _pair_bytes(ops: list[Op], geo: list[Level], itemsize: int, plans: list[Any]) -> int:
    """Working bytes per (sample, shift) of the band recompute."""
    if plans:  # 1D: a few vectors per band position
        total = sum(geo[i + 1].channels + geo[i].channels * (len(tap.other) + 1)
                    for i, taps in enumerate(plans) for tap in taps)  # fmt: skip
        return 4 * itemsize * max(1, total)
    most = 1
    for i, op in enumerate(ops):
        boxes = band_boxes(geo[i + 1])
        area = sum(_numel(b) for b in boxes)
        # Strips are at most (stride * box + reach) wide per axis.
        read = sum(_numel(_strip(op, box)) for box in boxes)
        most = max(most, geo[i].channels * read + geo[i + 1].channels * area)
    return 3 * itemsize * most


def _strip(op: Op, box: Box) -> Box:
    if not op.windowed:
        return box
    return tuple((0, (b1 - b0) * op.stride[a] + op.reach(a)) for a, (b0, b1) in enumerate(box))


def _numel(box: Box) -> int:
    out = 1
    for a, b in box:
        out *= max(0, b - a)
    return out


def _samples_per_batch(geo: list[Level], unique: torch.Tensor, max_bytes: int,
                       mode: str) -> int:  # fmt: skip
    span = (unique.max(0).values - unique.min(0).values).tolist()
    extended = 1
    for n, s in zip(geo[0].size, span, strict=True):
        extended *= n + s
    lo, hi = unique.min(0).values.tolist(), unique.max(0).values.tolist()
    length = periodic_length(geo, mode, lo, hi, ((0,), (0,)))
    if length is not None:
        extended = min(extended, length[0])
    # Every level's valid maps (all phases together ~ one full-resolution map), and the
    # head's float64 spectra of the final map.
    per_sample = sum(4 * lv.channels * extended for lv in geo)
    per_sample += 16 * geo[-1].channels * extended
    # Capped: CPU contractions over very large batches get slower per sample, not faster.
    return max(1, min(64, max_bytes // max(1, per_sample)))


def _replay_check(model: nn.Module, geo: Structure, ops: list[Op], x: torch.Tensor,
                  shifts: torch.Tensor, mode: str) -> torch.Tensor:  # fmt: skip
    """Brute-force logits of a few shifted copies of ``x``, checking the chain on the way.

    Runs ``model`` on them with a hook on the feature map, and the ops in order with
    their padding: a forward that is more than that chain (a skip connection, an
    extra functional op) gives a different map and raises :class:`Unsupported`.
    """
    as_list = [tuple(r) if len(r) > 1 else r[0] for r in shifts.tolist()]
    rows = shift_many(x, as_list, mode)[0]  # (P, C, *L)
    seen: list[torch.Tensor] = []
    module = dict(model.named_modules())[geo.head.reads]  # type: ignore[index]
    handle = module.register_forward_hook(lambda m, i, o: seen.append(o.detach().clone()))
    try:
        logits = model(rows)
    finally:
        handle.remove()
    replay = rows
    for op in ops:
        replay = op(replay, op.pad_lo, op.pad_hi)
    fmap = seen[-1]
    scale = float(fmap.abs().max()) if fmap.numel() else 0.0
    # (torch.allclose is slow on CPU; one max of differences is enough)
    if replay.shape != fmap.shape or float((replay - fmap).abs().max()) > 1e-5 * max(scale, 1e-3):
        names = ", ".join(op.name for op in ops)
        raise Unsupported(f"running layers {names} in order does not reproduce the feature map "
                          f"{geo.head.reads!r}: the forward does more than chain them (a skip "
                          "connection or a functional op?)")  # fmt: skip
    return logits.detach()


def _spot_check(fast: torch.Tensor, brute: torch.Tensor, shifts: torch.Tensor) -> None:
    """Raise Unsupported unless fast logits (P, K) equal brute force to 1e-4 relative."""
    scale = float(brute.abs().max())
    err = float((fast.to(brute.dtype) - brute).abs().max())
    if err > 1e-4 * max(scale, 1e-3):
        raise Unsupported(f"fast logits differ from brute force by {err:.3g} (scale {scale:.3g}) "
                          f"at shifts {shifts.tolist()}")  # fmt: skip
