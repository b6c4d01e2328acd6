"""The head of a model, found by measurement on its traced graph.

The trunk is the longest prefix of the graph that is shift-equivariant; its last feature map
``A`` is what the head reads, and the head is the function ``h(A)`` from that map to the logits
(:meth:`interp.geometry.graph.Graph.callable_from`). Two measurements classify it:

* **kind**: ``h(roll(A, s)) == h(A)`` for several circular shifts ``s`` along every spatial axis
  and several samples -> ``pooled`` (any placement of a pattern gives the same logits),
  otherwise ``positional``;
* **affine**: ``h(a A1 + (1 - a) A2) == a h(A1) + (1 - a) h(A2)`` and
  ``h(2A) - h(0) == 2 (h(A) - h(0))`` on a real and a random map at the real map's scale, and
  again on two random maps at unit scale -> the per-(class, channel, position) weights are the
  exact Jacobian of ``h`` and ``logits = h(0) + sum W * A``. The unit-scale probe is what sees a
  nonlinearity the real map is too small to reach: a randomly initialised MobileNetV3's
  features can be ~1e-8, where the Hardswish between its head's Linears is linear to float32
  precision. (When every real feature is >= 0 the unit maps are too: the law is checked on the
  domain the features live in.)

Both compare float32 results against a bound from the magnitudes involved: for logit ``k``,
``sum |dh_k/dA * A| + |h_k|`` (the size of the terms its reductions add), times
``16 sqrt(n) eps`` for a map of ``n`` elements per sample.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch

HeadKind = Literal["positional", "pooled", "unknown"]

__all__ = ["Head", "HeadKind", "canonical", "measure", "uncanonical"]


@dataclass(frozen=True)
class Head:
    """How the classifier reads the last shift-equivariant feature map.

    Attributes:
        kind: ``positional`` when the logits change if the map is rolled along its positions
            (every (channel, position) has its own weight), ``pooled`` when they do not,
            ``unknown`` when no equivariant feature map exists.
        linear: the classifier node (the Linear or full-kernel conv whose output becomes the
            logits), or None.
        reads: the call site whose output is the feature map ``A`` (capture it with
            ``structure.graph.run(x, capture=[reads])`` or ``interp.record(model, [reads])``).
        channels: product of the map's non-spatial axes (kernels x remaining electrodes...).
        positions: sizes of the map's spatial axes, in input-axis order.
        pooling: ``mean`` / ``max`` when a global pool follows ``reads``, else None.
        exact: ``logits = b + sum W * A`` holds exactly (the head is affine), or, for a
            pooled head, ``logits = b + sum_c W_c pool_c(A)`` (the part after a max/mean pool
            is affine): the logits decompose exactly over kernels.
        affine: the head ``h(A)`` is affine in ``A`` (measured).
        breaks: the head's first position-mixing call site.
        axes: negative axes of the batched map holding the input's spatial axes, in input-axis
            order: ``(-2,)`` for an EEG map ``(N, C, T, 1)``, ``(-1,)`` for ``(N, C, L)``.
        measured: one line: how kind and affine were measured.
    """

    kind: HeadKind
    linear: str | None
    reads: str | None
    channels: int | None
    positions: tuple[int, ...] | None
    pooling: str | None  # "mean", "max" or None
    exact: bool
    affine: bool = False
    breaks: str | None = None
    axes: tuple[int, ...] = ()
    measured: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["positions"] = None if self.positions is None else list(self.positions)
        out["axes"] = list(self.axes)
        return out


def canonical(a: torch.Tensor, head: Head) -> torch.Tensor:
    """The feature map in the layout ``(N, channels, *positions)``.

    ``head.axes`` move to the end in input-axis order; every other non-batch axis is flattened
    (in its order) into the channel axis.

    >>> head = Head("positional", "fc", "drop", 8, (61,), None, True, axes=(-2,))
    >>> canonical(torch.zeros(5, 8, 61, 1), head).shape
    torch.Size([5, 8, 61])
    """
    perm, sizes = _perm(a.dim(), head)
    moved = a.permute(perm)
    return moved.reshape(a.shape[0], -1, *(a.shape[p] for p in perm[len(perm) - len(sizes) :]))


def uncanonical(ac: torch.Tensor, head: Head, shape: Sequence[int]) -> torch.Tensor:
    """Inverse of :func:`canonical`: ``(N, channels, *positions)`` back to the map's layout.

    Args:
        ac: canonical tensor ``(N, channels, *positions)``.
        head: the head whose ``axes`` defined the layout.
        shape: the feature map's shape WITHOUT the batch axis (``Layer.output_shape``).

    >>> head = Head("positional", "fc", "drop", 8, (61,), None, True, axes=(-2,))
    >>> uncanonical(torch.zeros(5, 8, 61), head, (8, 61, 1)).shape
    torch.Size([5, 8, 61, 1])
    """
    full = (int(ac.shape[0]), *(int(s) for s in shape))
    if math.prod(full) != ac.numel():
        raise ValueError(
            f"`shape` {tuple(shape)} (without the batch axis) does not hold the "
            f"{ac.numel()} elements of a canonical tensor of shape {tuple(ac.shape)}"
        )
    perm, _ = _perm(len(full), head)
    moved = ac.reshape(*(full[p] for p in perm))
    inverse = [0] * len(perm)
    for i, p in enumerate(perm):
        inverse[p] = i
    return moved.permute(inverse)


def _perm(nd: int, head: Head) -> tuple[list[int], list[int]]:
    if not head.axes:
        raise ValueError("`head` has no spatial axes (kind 'unknown'): no canonical layout")
    spatial = [a % nd for a in head.axes]
    if 0 in spatial or len(set(spatial)) != len(spatial):
        raise ValueError(f"`head.axes` {head.axes} do not fit a batched map of {nd} axes")
    others = [i for i in range(1, nd) if i not in spatial]
    return [0, *others, *spatial], spatial


# --- measurement ----------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    """What :func:`measure` found."""

    kind: HeadKind
    affine: bool
    roll_error: float  # max |h(roll(A)) - h(A)| over shifts, samples, classes
    affine_error: float  # max error of the two affine laws, at the map's scale and at unit scale
    bound: float  # the float32 bound of the roll and map-scale affine checks
    sentence: str
    unit_error: float = 0.0  # max error of the two affine laws on unit-scale random maps
    unit_bound: float = 0.0  # the float32 bound of that check


def _scale(h: Any, a: torch.Tensor, out: torch.Tensor) -> float:
    """max_k over samples of ``sum |dh_k/dA * A| + |h_k(A)|``: the terms logit k adds."""
    flat = out.reshape(out.shape[0], -1)
    k_total = flat.shape[1]
    worst = float(flat.abs().max()) if flat.numel() else 0.0
    classes = range(k_total) if k_total <= 32 else range(0, k_total, max(1, k_total // 32))
    for k in classes:
        leaf = a.detach().clone().requires_grad_(True)
        logits = h(leaf)
        if not isinstance(logits, torch.Tensor) or not logits.requires_grad:
            return worst
        (grad,) = torch.autograd.grad(logits.reshape(logits.shape[0], -1)[:, k].sum(), leaf)
        terms = (grad * a).abs().reshape(a.shape[0], -1).sum(1)
        total = terms + flat[:, k].abs()
        worst = max(worst, float(total.max()))
    return worst


def measure(
    h: Any, h_grad: Any, a: torch.Tensor, axes: Sequence[int], *, seed: int = 0
) -> Measured:
    """Classify ``h`` (logits of the feature map) as pooled/positional and affine or not.

    Args:
        h: ``h(A) -> logits`` (no autograd needed).
        h_grad: the same function with autograd enabled (for the magnitude bound).
        a: real feature maps ``(N, ...)`` (N >= 1), detached.
        axes: negative axes of ``a`` holding positions.
        seed: seed of the random comparison map.

    Returns:
        :class:`Measured`.
    """
    with torch.no_grad():
        base = h(a)
    gen = torch.Generator().manual_seed(seed)
    std = float(a.float().std()) if a.numel() > 1 else 1.0
    noise = (torch.randn(a.shape, generator=gen, dtype=torch.float32) * (std or 1.0)).to(
        device=a.device, dtype=a.dtype
    )
    # Unit-scale maps, with the sign domain of the real ones (>= 0 after a ReLU, say).
    nonneg = bool((a >= 0).all()) if a.numel() else False
    units = []
    for _ in range(2):
        u = torch.randn(a.shape, generator=gen, dtype=torch.float32)
        units.append((u.abs() if nonneg else u).to(device=a.device, dtype=a.dtype))
    eps = torch.finfo(a.dtype if a.is_floating_point() else torch.float32).eps
    n = math.prod(a.shape[1:]) or 1
    with torch.no_grad():
        at_units = [h(u) for u in units]
    with torch.enable_grad():
        scale = max(_scale(h_grad, a, base), _scale(h_grad, noise, h(noise).detach()))
        unit_scale = max(
            _scale(h_grad, u, hu.detach()) for u, hu in zip(units, at_units, strict=True)
        )
    bound = 16 * math.sqrt(n) * eps * (scale + 1e-30)
    unit_bound = 16 * math.sqrt(n) * eps * (unit_scale + 1e-30)
    sizes = [int(a.shape[ax]) for ax in axes]
    with torch.no_grad():
        roll_err = 0.0
        shifts_used = 0
        at_noise = h(noise)
        for ax, size in zip(axes, sizes, strict=True):
            for s in sorted({1, size // 2, size - 1} - {0, size}):
                shifts_used += 1
                for sample, ref in ((a, base), (noise, at_noise)):
                    diff = (h(torch.roll(sample, s, dims=ax)) - ref).abs().max()
                    roll_err = max(roll_err, float(diff))
        kind: HeadKind = "pooled" if roll_err <= bound else "positional"
        alpha = 0.3
        zero = h(torch.zeros_like(a))
        mix = h(alpha * a + (1 - alpha) * noise)
        mix_err = float((mix - (alpha * base + (1 - alpha) * at_noise)).abs().max())
        dbl_err = float(((h(2 * a) - zero) - 2 * (base - zero)).abs().max())
        aff_err = max(mix_err, dbl_err)
        (u1, u2), (h1, h2) = units, at_units
        unit_mix = float((h(alpha * u1 + (1 - alpha) * u2) - (alpha * h1 + (1 - alpha) * h2))
                         .abs().max())  # fmt: skip
        unit_dbl = float(((h(2 * u1) - zero) - 2 * (h1 - zero)).abs().max())
        unit_err = max(unit_mix, unit_dbl)
        # a NaN error (a head that overflows) fails both comparisons: not affine
        at_map = aff_err <= 3 * bound
        at_unit = unit_err <= 3 * unit_bound
        affine = at_map and at_unit
    if shifts_used == 0:
        how_kind = "one position per axis: rolling is trivial, so the head counts as pooled"
    else:
        how_kind = (
            f"rolling the map by {shifts_used} shift(s) per axis changes the logits by "
            f"{roll_err:.3g} (float32 bound {bound:.3g})"
        )
    laws = "the affine laws h(aA1 + (1-a)A2) = a h(A1) + (1-a) h(A2), h(2A) - h(0) = 2(h(A) - h(0))"
    at_map_s = f"{aff_err:.3g} at the map's scale (float32 bound {3 * bound:.3g})"
    at_unit_s = f"{unit_err:.3g} on unit-scale maps (float32 bound {3 * unit_bound:.3g})"
    if affine:
        how_aff = f"{laws} hold to {at_map_s} and to {at_unit_s}"
    elif at_map:
        how_aff = f"{laws} hold to {at_map_s} but fail by {at_unit_s}"
    elif at_unit:
        how_aff = f"{laws} fail by {at_map_s} and hold to {at_unit_s}"
    else:
        how_aff = f"{laws} fail by {at_map_s} and by {at_unit_s}"
    sentence = (
        f"measured on {int(a.shape[0])} sample(s) and a random map: {how_kind} -> {kind}; "
        f"{how_aff} -> {'affine' if affine else 'not affine'}"
    )
    return Measured(
        kind, affine, roll_err, max(aff_err, unit_err), bound, sentence, unit_err, unit_bound
    )
