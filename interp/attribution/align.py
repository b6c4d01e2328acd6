"""Align attribution maps of shifted inputs back to the unshifted frame, and compare them.

A map of the input shifted by ``s`` is shifted back by ``-s`` (circularly) and
compared with the unshifted map. In ``zero``/``edge`` mode, and always on a
feature map, only positions whose content is present in both frames count
(the overlap). Feature-map maps move by ``round(s / stride)`` positions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

Shift = int | tuple[int, int]


def as_tuple(s: Shift) -> tuple[int, ...]:
    return (s,) if isinstance(s, int) else tuple(s)


def frame_shifts(shifts: Sequence[Shift], stride: tuple[int, ...] | None) -> list[tuple[int, ...]]:
    """Shifts in the map's own positions: the input shift, or ``round(s / stride)`` per axis."""
    out = []
    for s in shifts:
        t = as_tuple(s)
        out.append(
            t if stride is None else tuple(round(v / d) for v, d in zip(t, stride, strict=True))
        )
    return out


def align(
    maps: torch.Tensor, shifts: Sequence[tuple[int, ...]], *, overlap: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift each map back into the unshifted frame.

    Args:
        maps: (N, S, C, *P) maps of the shifted inputs.
        shifts: S shifts in map positions, one int per spatial axis.
        overlap: mark only positions whose content is in both frames as valid
            (for ``zero``/``edge`` shifts and feature maps); else all are valid.

    Returns:
        aligned (N, S, C, *P) and the valid mask (S, *P) bool.

    >>> a, v = align(torch.arange(5.0).view(1, 1, 1, 5), [(2,)], overlap=True)
    >>> a.flatten().tolist(), v.flatten().tolist()
    ([2.0, 3.0, 4.0, 0.0, 1.0], [True, True, True, False, False])
    """
    sizes = tuple(int(v) for v in maps.shape[3:])
    dims = tuple(range(-len(sizes), 0))
    aligned = torch.stack(
        [torch.roll(maps[:, i], tuple(-v for v in s), dims) for i, s in enumerate(shifts)], dim=1
    )
    valid = torch.ones((len(shifts), *sizes), dtype=torch.bool, device=maps.device)
    if overlap:
        for i, s in enumerate(shifts):
            for axis, (v, n) in enumerate(zip(s, sizes, strict=True)):
                pos = torch.arange(n, device=maps.device)
                keep = (pos + v >= 0) & (pos + v < n)  # content at pos moved to pos + v
                view = [1] * len(sizes)
                view[axis] = n
                valid[i] &= keep.view(view)
    return aligned, valid


def similarity(
    aligned: torch.Tensor, reference: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pearson correlation and cosine similarity of each aligned map with the reference.

    Args:
        aligned: (N, S, C, *P); reference: (N, C, *P); valid: (S, *P).

    Returns:
        pearson (N, S) and cosine (N, S), float64, NaN where a map is constant
        (Pearson) or zero (cosine) on the valid positions.
    """
    w = valid[None, :, None].to(torch.float64)  # (1, S, 1, *P)
    a = aligned.to(torch.float64) * w
    r = reference.to(torch.float64)[:, None] * w
    dims = tuple(range(2, a.dim()))
    count = (w * torch.ones_like(a)).sum(dims).clamp(min=1)  # (N, S)
    dot = (a * r).sum(dims)
    na, nr = (a * a).sum(dims), (r * r).sum(dims)
    cosine = dot / (na * nr).sqrt()
    ma, mr = a.sum(dims) / count, r.sum(dims) / count
    cov = dot / count - ma * mr
    va, vr = (na / count - ma * ma).clamp(min=0), (nr / count - mr * mr).clamp(min=0)
    pearson = cov / (va * vr).sqrt()
    tiny = torch.finfo(torch.float64).tiny
    pearson = torch.where((va > tiny) & (vr > tiny), pearson, torch.nan).clamp(-1, 1)
    cosine = torch.where((na > tiny) & (nr > tiny), cosine, torch.nan).clamp(-1, 1)
    return pearson, cosine


def peaks(maps: torch.Tensor, dims: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Position of the largest |sum over channels| of each map, and whether it exists.

    Args:
        maps: (..., C, *P) with ``dims`` spatial axes.

    Returns:
        (..., dims) int64 positions and (...) bool: False for an all-zero map (no peak).
    """
    profile = maps.sum(-dims - 1).abs()  # (..., *P)
    flat = profile.flatten(-dims)
    index = flat.argmax(-1)
    width = profile.shape[-1]
    coords = [index] if dims == 1 else [index // width, index % width]
    return torch.stack(coords, dim=-1), flat.amax(-1) > 0


def displacement(
    peak: torch.Tensor,
    peak_ref: torch.Tensor,
    shifts: Sequence[Shift],
    stride: tuple[int, ...],
    period: tuple[int, ...] | None,
) -> torch.Tensor:
    """How far each peak lands from where the shift should put it, in input positions.

    Args:
        peak: (N, S, dims) peaks of the shifted maps, in map positions.
        peak_ref: (N, dims) peaks of the unshifted maps.
        shifts: S input shifts.
        stride: input positions per map position, per axis (1 for input maps).
        period: input sizes for circular (``roll``) shifts, wrapped into
            ``[-size/2, size/2)``; None otherwise.

    Returns:
        (N, S, dims) int64: ``(peak - peak_ref) * stride - shift``.
    """
    s = torch.tensor([as_tuple(v) for v in shifts], dtype=torch.long, device=peak.device)
    step = torch.tensor(stride, dtype=torch.long, device=peak.device)
    out = (peak - peak_ref[:, None]) * step - s[None]
    if period is not None:
        size = torch.tensor(period, dtype=torch.long, device=peak.device)
        out = torch.remainder(out + size // 2, size) - size // 2
    return out
