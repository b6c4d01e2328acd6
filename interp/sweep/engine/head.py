"""Head of the fast engine: every shift's logits from the valid map plus boundary bands.

The clean core of a shifted feature map is a window of the valid map at a lag that
depends on the shift, so the head's share of the core is a sliding-window reduction
of the valid map, evaluated once for every lag: a valid cross-correlation with the
weight template for a positional head (:func:`interp._xcorr.xcorr_valid`), a
sliding max (van Herk / Gil-Werman, O(length)) or a sliding sum (cumulative sums)
for a pooled one. The boundary bands, recomputed per shift, are added on top.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from interp._xcorr import xcorr_periodic, xcorr_valid
from interp.sweep.engine.plan import HeadPlan, Level, ix

Box = tuple[tuple[int, int], ...]


def _slices(box: Box) -> tuple[slice, ...]:
    return tuple(slice(a, b) for a, b in box)


def sliding_max(x: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    """``out[i] = max(x[i : i + width])`` along ``dim``, in O(length) (van Herk 1992).

    >>> sliding_max(torch.tensor([1.0, 3, 2, 0, 5]), 2, 0)
    tensor([3., 3., 2., 5.])
    """
    if width == 1:
        return x
    x = x.movedim(dim, -1)
    n = x.shape[-1]
    blocks = -(-n // width)
    padded = F.pad(x, (0, blocks * width - n), value=float("-inf"))
    chunks = padded.unflatten(-1, (blocks, width))  # (..., blocks, width)
    prefix = chunks.cummax(-1).values.flatten(-2)  # max from the block start to i
    suffix = chunks.flip(-1).cummax(-1).values.flip(-1).flatten(-2)  # max from i to block end
    # A window of `width` spans the end of one block and the start of the next.
    out = torch.maximum(suffix[..., : n - width + 1], prefix[..., width - 1 : n])
    return out.movedim(-1, dim)


def sliding_sum(x: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    """``out[i] = sum(x[i : i + width])`` along ``dim``, in float64 from cumulative sums."""
    c = x.to(torch.float64).cumsum(dim)
    zero = torch.zeros_like(c.narrow(dim, 0, 1))
    c = torch.cat([zero, c], dim)
    n = c.shape[dim]
    return c.narrow(dim, width, n - width) - c.narrow(dim, 0, n - width)


def take(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (n, X, L), index (S,) -> (n, S, X); a strided view when ``index`` is evenly spaced.

    Dense shift ranges give evenly spaced indices, and a view costs nothing where a
    gather along the last axis of a large map is slow.
    """
    s = index.shape[0]
    if s == 1 or (s > 1 and int(index[1] - index[0]) > 0):
        first, step = int(index[0]), int(index[1] - index[0]) if s > 1 else 1
        if s == 1 or bool((index.diff() == step).all()):
            return x[..., first : first + step * (s - 1) + 1 : step].transpose(1, 2)
    return x.index_select(-1, index).transpose(1, 2)


def _pick(scores: torch.Tensor, lag: torch.Tensor) -> torch.Tensor:
    """scores (n, X, *lags), lag (S, d) -> (n, S, X)."""
    if lag.shape[1] == 1:
        return take(scores, lag[:, 0])
    index = tuple(lag[:, a] for a in range(lag.shape[1]))
    return scores[ix(slice(None), slice(None), *index)].transpose(1, 2)


def head_cores(head: HeadPlan, level: Level, groups: list[tuple[torch.Tensor, torch.Tensor]],
               period: tuple[int, ...] | None = None):  # fmt: skip
    """The head's share of the clean core for every shift, one entry per phase group.

    Args:
        groups: per phase group, its valid map (n, C, *Lb) and ``q`` (S, d): the index
            in that map of each shifted map's position 0.
        period: when the valid maps are periodic (roll mode computing one period of the
            input), their period per axis; every map holds at least one period, and an
            index ``i`` stands for ``i mod period``.

    Returns:
        Per group: (n, S, K) scores (positional: float64, or the map's float32 on periodic
        maps), (n, S, C) maxima or float64 sums (pooled); or None when the core is empty.
    """
    core = level.core
    if any(b <= a for a, b in core):
        return [None for _ in groups]
    if period is not None and head.kind == "positional":
        return _periodic_cores(head, core, groups, period)
    crops, lags = [], []
    for node, q in groups:  # only the lags these shifts need: crop the map to them
        lag = q + torch.tensor([a for a, _ in core], device=q.device)  # (S, d)
        first, last = lag.min(0).values.tolist(), lag.max(0).values.tolist()
        crop = [slice(f, e + hi - lo) for f, e, (lo, hi) in zip(first, last, core, strict=True)]
        crops.append(node[ix(..., *crop)] if period is None else window(node, crop, period))
        lags.append(lag - torch.tensor(first, device=q.device))
    if head.kind == "positional":
        template = head.weight[ix(slice(None), slice(None), *_slices(core))]  # (K, C, *core)
        # One correlation for all groups (the template's spectrum once); zeros at the end
        # leave the valid lags unchanged and give an FFT-friendly size.
        size = [_smooth(max(c.shape[2 + a] for c in crops)) for a in range(len(core))]
        n = crops[0].shape[0]
        signal = crops[0].new_zeros((n * len(crops), crops[0].shape[1], *size),
                                    dtype=torch.float64)  # fmt: skip
        for g, c in enumerate(crops):  # one copy: crop, pad and convert at once
            inside = (slice(0, v) for v in c.shape[2:])
            signal[ix(slice(g * n, (g + 1) * n), slice(None), *inside)] = c
        scores = xcorr_valid(signal, template).split(n)
        return [_pick(sc, lag) for sc, lag in zip(scores, lags, strict=True)]
    out = []
    for scores, lag in zip(crops, lags, strict=True):
        for a, (lo, hi) in enumerate(core):
            if head.kind == "max":
                scores = sliding_max(scores, hi - lo, 2 + a)
            else:
                scores = sliding_sum(scores, hi - lo, 2 + a)
        out.append(_pick(scores, lag))
    return out


def _periodic_cores(head: HeadPlan, core: Box, groups: list[tuple[torch.Tensor, torch.Tensor]],
                    period: tuple[int, ...]) -> list[torch.Tensor]:  # fmt: skip
    """Positional head on periodic valid maps: one circular correlation per period.

    Each group's map repeats every ``period`` positions, so the score at lag ``q`` is the
    circular correlation of one period with the core's template folded onto it; every
    FFT is one period long however many shifts there are.
    """
    template = head.weight[ix(slice(None), slice(None), *_slices(core))]  # (K, C, *core)
    one = ix(..., *(slice(0, t) for t in period))
    start = torch.tensor([a for a, _ in core], device=groups[0][1].device)
    size = torch.tensor(period, device=start.device)
    out = []
    for node, q in groups:
        # Spectra in the map's precision, read straight from the view of one period (a
        # float64 copy of every map cost as much as the FFTs). Bound: xcorr_periodic; on
        # the seed 2.5e-5 from float64, where a float32 forward is off by 1.2e-4.
        scores = xcorr_periodic(node[one], template, dtype=node.dtype)
        out.append(_pick(scores, (q + start).remainder(size)))
    return out


def window(node: torch.Tensor, box: list[slice], period: tuple[int, ...]) -> torch.Tensor:
    """``node[..., box]`` of a map periodic with ``period`` per axis (``node`` holds at least
    one period; indices beyond what it holds wrap)."""
    for a, (sl, t) in enumerate(zip(box, period, strict=True)):
        dim = 2 + a
        start = sl.start % t  # the same positions, moved by whole periods
        stop = sl.stop - (sl.start - start)
        if stop <= node.shape[dim]:
            node = node.narrow(dim, start, stop - start)
        else:
            idx = torch.arange(start, stop, device=node.device).remainder(t)
            node = node.index_select(dim, idx)
    return node


def _smooth(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n (FFTs of lengths with large prime factors are slow)."""
    best = 1 << max(0, (n - 1).bit_length())
    p3 = 1
    while p3 < best:
        p35 = p3
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 5
        p3 *= 3
    return best


def head_finish(
    head: HeadPlan,
    level: Level,
    core: torch.Tensor | None,
    bands: dict[Box, torch.Tensor],
    after: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Logits (n, S, K) from the core's share and the bands (n, S, C, *box).

    ``after``: for ``head.after``, the model's layers from the pool on, called with the
    pooled values (n, S, C) and returning (n, S, K).
    """
    spatial = tuple(range(3, 3 + len(level.size)))
    if head.kind == "positional":
        parts = [] if core is None else [core]
        for box, t in bands.items():
            wb = head.weight[ix(slice(None), slice(None), *_slices(box))]  # (K, C, *box)
            # (K, C * box) @ (n, C * box, S): few terms, float32 is exact enough
            cols = t.flatten(2).transpose(1, 2)  # bands are stored shift-fastest
            parts.append((wb.flatten(1).contiguous() @ cols).transpose(1, 2).to(torch.float64))
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        if head.bias is not None:
            total = total + head.bias.to(torch.float64)
        return total
    if head.kind == "max":
        parts = [] if core is None else [core]
        parts += [t.amax(spatial) for t in bands.values()]
        pooled = torch.stack(parts).amax(0)
    else:
        parts = [] if core is None else [core]
        parts += [t.to(torch.float64).sum(spatial) for t in bands.values()]
        count = 1
        for n in level.size:
            count *= n
        pooled = torch.stack(parts).sum(0) / count
    if head.after is not None:
        assert after is not None
        return after(pooled)
    assert head.weight is not None
    return F.linear(pooled.to(head.weight.dtype), head.weight, head.bias)
