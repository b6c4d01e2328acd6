"""Attribution maps with Captum, by method name, and how they move when the input shifts.

For a shift-invariant model the explanation of a shifted input is the shifted
explanation: aligned back to the unshifted frame it agrees with the original
map. A position-specific head breaks that, and the aligned maps show where.

>>> cmp = attribution_across_shifts(model, x[:1], y[:1], [-1000, 0, 1000])  # doctest: +SKIP
>>> cmp.pearson.shape, cmp.similarity                                       # doctest: +SKIP
(torch.Size([1, 3]), tensor([0.21, 1.00, 0.17]))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from interp._guard import inspecting
from interp.attribution.align import align, displacement, frame_shifts, peaks, similarity
from interp.attribution.checks import (
    check_inputs,
    check_targets,
    convergence_delta,
    logits_of,
    nanmean,
    relative_delta,
    warn_delta,
)
from interp.attribution.methods import METHODS, Method, captum_safe, get_method, run
from interp.attribution.options import head_weights, resolve, settings
from interp.geometry.core import Structure
from interp.geometry.core import structure as _structure
from interp.shifts import check_mode, normalize_shifts, shift_many

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["METHODS", "AttributionComparison", "Method", "attribute", "attribution_across_shifts"]


@dataclass(frozen=True, eq=False)
class AttributionComparison:
    """Attribution maps of shifted copies of samples, aligned and compared with the unshifted map.

    Shapes: N samples, S shifts, maps ``(N, S, C, *P)`` (input-shaped, or the
    feature map for layer methods). ``pearson``/``cosine`` are NaN where a map is
    constant. ``peak_displacement`` is ``(N, S)`` (1D) or ``(N, S, 2)`` (2D), in input
    positions: where the attribution peak landed minus where the shift should put it
    (NaN where a map is all zero and has no peak).
    ``relative_delta`` is ``|convergence_delta| / |f(x) - f(baseline)|``.
    """

    method: str
    output: str
    mode: str
    shifts: tuple[Any, ...]
    target: torch.Tensor  # (N,)
    inputs: torch.Tensor  # (N, C, *spatial), unshifted
    maps: torch.Tensor  # (N, S, C, *P)
    reference: torch.Tensor  # (N, C, *P): map of the unshifted input
    aligned: torch.Tensor  # (N, S, C, *P)
    valid: torch.Tensor  # (S, *P) positions compared
    pearson: torch.Tensor  # (N, S) float64
    cosine: torch.Tensor  # (N, S) float64
    peak_displacement: torch.Tensor  # (N, S) or (N, S, 2) float64, NaN: an all-zero map
    peak_tolerance: int
    convergence_delta: torch.Tensor | None  # (N, S)
    relative_delta: torch.Tensor | None  # (N, S)
    target_probability: torch.Tensor  # (N, S)
    reference_probability: torch.Tensor  # (N,)
    total: torch.Tensor  # (N, S): sum of each map
    reference_total: torch.Tensor  # (N,)
    layer: str | None
    neuron: tuple[int, ...] | None
    geometry: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None  # rf, stride, offset
    weights: torch.Tensor | None  # (N, C, *P): head weights of each sample's target class
    axis: tuple[tuple[tuple[str, Any], ...], ...] | None  # per axis: metadata as (key, value)
    settings: tuple[tuple[str, Any], ...]  # the resolved options, JSON-safe, as (key, value)

    def axis_meta(self, dim: int = 0) -> dict[str, Any] | None:
        """Axis ``dim``'s metadata as a dict (name, unit, start, step), None without any."""
        return dict(self.axis[dim]) if self.axis and dim < len(self.axis) else None

    @property
    def similarity(self) -> torch.Tensor:
        """Mean Pearson correlation over samples, per shift: (S,) (NaN where undefined)."""
        return nanmean(self.pearson)

    def follows(self) -> torch.Tensor:
        """(N, S) bool: the attribution peak lands within ``peak_tolerance`` of the shift."""
        d = self.peak_displacement.abs()
        return (d if d.dim() == 2 else d.amax(-1)) <= self.peak_tolerance  # NaN -> False

    def sentences(self) -> list[str]:
        """Plain sentences about what the measured numbers say."""
        from interp.attribution.text import sentences

        return sentences(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (the report's ``attribution`` section); no maps, no NaN."""
        from interp.attribution.text import to_dict

        return to_dict(self)

    def plot(self, ax: Any = None) -> Figure:
        """Similarity of the aligned maps with the unshifted map, versus shift."""
        from interp.plots.attribution import plot_similarity

        return plot_similarity(self, ax=ax)

    def plot_maps(self, sample: int = 0, *, aligned: bool = True, fig: Any = None) -> Figure:
        """The input with its attribution overlaid, one row per shift (a grid for 2D)."""
        from interp.plots.attribution import plot_maps

        return plot_maps(self, sample, aligned=aligned, fig=fig)

    def plot_neurons(self, sample: int = 0, *, fig: Any = None) -> Figure:
        """Feature-map neurons carrying the decision at each shift, next to the class weights."""
        from interp.plots.attribution import plot_neurons

        return plot_neurons(self, sample, fig=fig)


def attribute(
    model: nn.Module,
    x: torch.Tensor,
    target: Any = None,
    *,
    method: str = "integrated_gradients",
    structure: Structure | None = None,
    **options: Any,
) -> torch.Tensor:
    """Attribution map of ``x`` for ``target`` with a Captum method chosen by name.

    Args:
        model: a classifier returning (N, K) logits; run in eval mode, left unchanged.
        x: (N, C, L) or (N, C, H, W); not modified.
        target: class per sample (int, sequence or (N,) tensor); None: the prediction.
        method: a key of :data:`METHODS`.
        structure: ``structure(model, x)``, if already computed.
        **options: the method's options (``Method.options``): ``baselines`` (0),
            ``n_steps`` (50), ``noise_tunnel`` ("smoothgrad"...), ``layer``, ``neuron``...

    Returns:
        Shaped like ``x``; ``(N, 1, *spatial)`` for layer_gradcam; ``(N, C', *P)`` on the
        feature map for layer_integrated_gradients and layer_conductance.

    Warns:
        UserWarning: the convergence delta exceeds 5% of f(x) - f(baseline).

    >>> attribute(model, x, y, method="saliency").shape      # doctest: +SKIP
    torch.Size([8, 1, 8192])
    """
    spec = get_method(method)
    x0 = check_inputs(model, x)
    geo = structure if structure is not None else _structure(model, x0)
    with inspecting(model, grad=True), captum_safe(model):
        t = check_targets(model, x0, target, geo)
        opts = resolve(spec, model, x0, t, geo, options)
        attr = run(spec, model, x0, t, opts)
        if spec.complete and not opts.get("noise_tunnel"):
            logits = logits_of(model, x0, opts["chunk"])
            delta = convergence_delta(model, attr, logits, t, opts["baselines"],
                                      tuple(x0.shape[1:]), opts["chunk"])  # fmt: skip
            warn_delta(spec, relative_delta(attr, delta), opts.get("n_steps"))
    return attr


def attribution_across_shifts(
    model: nn.Module,
    x: Any,
    target: Any = None,
    shifts: Sequence[Any] | None = None,
    *,
    method: str = "integrated_gradients",
    mode: str = "roll",
    structure: Structure | None = None,
    axis: list[dict[str, Any]] | None = None,
    **options: Any,
) -> AttributionComparison:
    """Attribute shifted copies of ``x`` in one batched Captum call, align and compare the maps.

    Args:
        model: a classifier returning (N, K) logits; left unchanged.
        x: (N, C, L) or (N, C, H, W) samples; not modified. Or any data form of
            :func:`interp.shift_sweep` (a Dataset, a DataLoader, an iterable of
            batches), read into memory: pass the few samples to explain.
        target: class per sample (usually the true label); None: the prediction on ``x``,
            or, for a data form, its labels.
        shifts: ints (1D) or ``(dy, dx)`` (2D); positive moves content to higher indices.
            The unshifted map is always computed as the reference.
        method: a key of :data:`METHODS`.
        mode: ``roll``, ``zero`` or ``edge`` (see :func:`interp.shifts.shift`).
        structure: ``structure(model, x)``, if already computed.
        axis: axis metadata per spatial axis (name, unit, start, step) for figures.
        **options: as for :func:`attribute`. Tensor ``baselines`` move with the input.

    Returns:
        An :class:`AttributionComparison`.

    >>> cmp = attribution_across_shifts(model, x[:2], y[:2], [-500, 0, 500])  # doctest: +SKIP
    >>> cmp.maps.shape, cmp.pearson.shape                                     # doctest: +SKIP
    (torch.Size([2, 3, 1, 8192]), torch.Size([2, 3]))
    """
    if shifts is None:
        raise TypeError("`shifts` is missing; pass the shifts to compare, e.g. [-4, 0, 4]")
    if not isinstance(x, torch.Tensor):  # a data source: its samples, and its labels
        from interp._batches import as_source

        x, labels = as_source(x, name="x").tensors()
        target = labels if target is None else target
    spec = get_method(method)
    check_mode(mode)
    x0 = check_inputs(model, x)
    dims = x0.dim() - 2
    shifts = normalize_shifts(shifts, dims)
    geo = structure if structure is not None else _structure(model, x0)
    zero: Any = 0 if dims == 1 else (0, 0)
    run_shifts = shifts if zero in shifts else [*shifts, zero]
    n, s_run = x0.shape[0], len(run_shifts)
    batch = shift_many(x0, run_shifts, mode).flatten(0, 1)  # (N*S', C, *spatial)
    with inspecting(model, grad=True), captum_safe(model):
        t = check_targets(model, x0, target, geo)
        opts = resolve(spec, model, x0, t, geo, options)
        base = opts.get("baselines")
        if isinstance(base, torch.Tensor) and spec.name != "gradient_shap":
            opts["baselines"] = shift_many(base.expand_as(x0), run_shifts, mode).flatten(0, 1)
        t_run = t.repeat_interleave(s_run)  # (N*S',)
        attr = run(spec, model, batch, t_run, opts)
        logits = logits_of(model, batch, opts["chunk"])  # (N*S', K)
        delta = None
        if spec.complete and not opts.get("noise_tunnel"):
            delta = convergence_delta(model, attr, logits, t_run, opts["baselines"],
                                      tuple(x0.shape[1:]), opts["chunk"])  # fmt: skip
    probs = logits.softmax(1).gather(1, t_run[:, None])[:, 0]
    ref, kept = run_shifts.index(zero), len(shifts)

    def split(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N*S', ...) -> the requested shifts (N, S, ...) and the unshifted (N, ...)."""
        v = v.unflatten(0, (n, s_run))
        return v[:, :kept], v[:, ref]

    maps, reference = split(attr)  # (N, S, C, *P), (N, C, *P)
    feature = spec.output == "feature map"
    geometry = opts.get("geometry")
    stride = geometry[1] if feature and geometry else (1,) * dims
    # A rolled input rolls a map that tiles it ("same" padding, L = P * stride); any other
    # feature map is compared only where both frames hold content.
    tiles = tuple(maps.shape[3:]) == tuple(
        n // d for n, d in zip(x0.shape[2:], stride, strict=True)
    )
    tiles = tiles and all(n % d == 0 for n, d in zip(x0.shape[2:], stride, strict=True))
    overlap = mode != "roll" or (feature and not tiles)
    aligned, valid = align(maps, frame_shifts(shifts, stride if feature else None), overlap=overlap)
    pearson, cosine = similarity(aligned, reference, valid)
    (peak, has), (peak_ref, has_ref) = peaks(maps, dims), peaks(reference, dims)
    period = tuple(x0.shape[2:]) if mode == "roll" else None
    disp = displacement(peak, peak_ref, shifts, stride, period).to(torch.float64)
    disp[~(has & has_ref[:, None])] = torch.nan  # an all-zero map has no peak
    relative = None
    if delta is not None:
        relative = relative_delta(attr, delta)
        warn_delta(spec, relative, opts.get("n_steps"))
    fmap = geo.feature_map
    total, total_ref = split(attr.flatten(1).sum(1).to(torch.float64))
    prob, prob_ref = split(probs)
    weights = head_weights(model, geo) if feature and opts["layer"] == geo.head.reads else None
    return AttributionComparison(
        method=spec.name,
        output=spec.output,
        mode=mode,
        shifts=tuple(shifts),
        target=t.cpu(),
        inputs=x0.cpu(),
        maps=maps.cpu(),
        reference=reference.cpu(),
        aligned=aligned.cpu(),
        valid=valid.cpu(),
        pearson=pearson.cpu(),
        cosine=cosine.cpu(),
        peak_displacement=(disp[..., 0] if dims == 1 else disp).cpu(),
        peak_tolerance=max(fmap.stride) if fmap is not None and fmap.stride else 1,
        convergence_delta=None if delta is None else split(delta)[0].cpu(),
        relative_delta=None if relative is None else split(relative)[0].cpu(),
        target_probability=prob.cpu(),
        reference_probability=prob_ref.cpu(),
        total=total.cpu(),
        reference_total=total_ref.cpu(),
        layer=opts.get("layer"),
        neuron=opts.get("neuron"),
        geometry=geometry,
        weights=None if weights is None else weights[t].cpu(),
        axis=None if axis is None else tuple(tuple(dict(a).items()) for a in axis),
        settings=tuple(
            (k, tuple(v) if isinstance(v, list) else v) for k, v in settings(spec, opts).items()
        ),
    )
