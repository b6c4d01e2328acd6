"""Per-class summaries of a head's weights, and the first-conv kernels behind its channels."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from interp.geometry.core import Structure
from interp.readout.footprints import Footprint

TOP_KERNELS = 5


def pooled_classes(weight: torch.Tensor, names: tuple[str, ...]) -> list[dict[str, Any]]:
    out = []
    for k, name in enumerate(names):
        top = torch.argsort(weight[k], descending=True)[:TOP_KERNELS]
        out.append(
            {"name": name, "index": k, "top_kernels": tuple(top.tolist()),
             "kernel_scores": tuple(weight[k, top].tolist())}
        )  # fmt: skip
    return out


def positional_class(
    weight: torch.Tensor, k: int, name: str, fp: Footprint | None, bound: float
) -> dict[str, Any]:
    w = weight[k]  # (C, *P)
    dims = w.dim() - 1
    spatial = tuple(range(1, 1 + dims))
    absolute = w.abs().sum(0)  # (*P)
    peak = tuple(int(v) for v in torch.unravel_index(absolute.argmax(), absolute.shape))
    # Centre of mass of the profile above its median: init noise is flat, so it cancels.
    excess = (absolute - absolute.median()).clamp(min=0).to(torch.float64)
    if excess.sum() > 0:
        grids = torch.meshgrid(*[torch.arange(n, dtype=torch.float64) for n in absolute.shape],
                               indexing="ij")  # fmt: skip
        com = tuple(float((g * excess).sum() / excess.sum()) for g in grids)
    else:
        com = tuple(float(v) for v in peak)
    untrained_pos = w.abs().amax(0) <= bound  # (*P)
    runs = _runs(untrained_pos) if dims == 1 else ()
    fields: dict[str, Any] = {}
    if fp is not None and fp.counts[k] > 0:
        # Mean contribution of kernel c to this class's logit over its data (exact, linear).
        scores = (w * fp.mean[k]).sum(spatial)  # (C,)
        lo, hi = fp.lo[k], fp.hi[k]
        if lo is not None and hi is not None:
            mask = fp.mask[k]  # (*P)
            total = float(w.abs().sum())
            inside = float((w.abs() * mask).sum())
            outside = w.abs()[:, ~mask]  # (C, n_outside)
            fields.update(
                footprint=(lo, hi),
                mass_inside=inside / total if total > 0 else None,
                area_inside=float(mask.float().mean()),
                outside_in_init=float((outside <= bound).float().mean())
                if outside.numel()
                else None,
            )
    else:
        scores = w.abs().sum(spatial)
    top = torch.argsort(scores, descending=True)[:TOP_KERNELS]
    return dict(
        name=name,
        index=k,
        top_kernels=tuple(top.tolist()),
        kernel_scores=tuple(float(v) for v in scores[top]),
        peak_position=peak,
        centre_of_mass=com,
        untrained=float(untrained_pos.float().mean()),
        untrained_runs=runs,
        **fields,
    )


def _runs(mask: torch.Tensor, keep: int = 2) -> tuple[tuple[int, int], ...]:
    """The ``keep`` longest runs of True in a 1D mask, as inclusive (lo, hi), in order."""
    m = mask.to(torch.int8)
    edges = torch.diff(
        torch.cat([torch.zeros(1, dtype=torch.int8), m, torch.zeros(1, dtype=torch.int8)])
    )
    starts = (edges == 1).nonzero().flatten().tolist()
    ends = (edges == -1).nonzero().flatten().tolist()
    runs = sorted(zip(starts, ends, strict=True), key=lambda r: r[0] - r[1])[:keep]
    return tuple(sorted((a, b - 1) for a, b in runs))


def first_conv_kernels(model: nn.Module, geo: Structure) -> tuple[torch.Tensor | None, str]:
    """First-conv weights when each map channel is one first-conv kernel, else a reason."""
    names = [lay.name for lay in geo.layers]
    upto = geo.layers[: names.index(geo.head.reads) + 1] if geo.head.reads in names else ()
    convs = [lay for lay in upto if lay.role == "conv"]
    others = [lay for lay in upto if lay.role not in ("conv", "pool", "pointwise")]
    if len(convs) != 1 or others:
        return None, (
            f"the feature map {geo.head.reads!r} comes after {len(convs)} conv layers"
            + (f" and {', '.join(repr(o.name) for o in others)}" if others else "")
            + ", so its channels are not single first-layer kernels"
        )
    conv = dict(model.named_modules())[convs[0].name]
    assert isinstance(conv, (nn.Conv1d, nn.Conv2d))
    if conv.out_channels != geo.head.channels:
        return (
            None,
            f"conv {convs[0].name!r} has {conv.out_channels} kernels, the map {geo.head.channels}",
        )
    return conv.weight.detach().to("cpu", torch.float32, copy=True), (
        f"map channel c is kernel c of conv {convs[0].name!r}"
    )
