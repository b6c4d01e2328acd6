"""JSON and plain sentences for an :class:`~interp.attribution.core.AttributionComparison`.

Every sentence is generated from measured numbers; the thresholds that pick a
wording are the constants below.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from interp._util import default_unit, fmt_shift, json_float
from interp.plots._style import shift_to_units

if TYPE_CHECKING:
    from interp.attribution.core import AttributionComparison

FOLLOWS = 0.9  # worst mean Pearson at or above which the explanation "moves with the input"
IGNORES = 0.5  # mean Pearson below which it "does not move with the input"
COMPLETE = 0.05  # relative convergence delta up to which a path method counts as complete

_LABELS = {
    "integrated_gradients": "Integrated-gradients",
    "saliency": "Saliency",
    "input_x_gradient": "Input x gradient",
    "deeplift": "DeepLift",
    "gradient_shap": "Gradient SHAP",
    "occlusion": "Occlusion",
    "guided_backprop": "Guided-backprop",
    "layer_gradcam": "Grad-CAM",
    "layer_integrated_gradients": "Layer integrated-gradients",
    "layer_conductance": "Layer conductance",
    "neuron_conductance": "Neuron conductance",
}


def _grid(t: torch.Tensor | None) -> Any:
    if t is None:
        return None
    if t.dim() == 0:
        return json_float(t.item()) if t.is_floating_point() else int(t.item())
    return [_grid(row) for row in t]


def _ints(t: torch.Tensor) -> Any:
    """Whole-number float tensor -> nested ints, NaN -> None."""
    if t.dim() == 0:
        return None if math.isnan(float(t)) else int(t)
    return [_ints(row) for row in t]


def _defined(c: AttributionComparison) -> torch.Tensor:
    """(N, S) bool: both maps have a peak."""
    d = c.peak_displacement
    return ~torch.isnan(d if d.dim() == 2 else d[..., 0])


def _follow_rate(c: AttributionComparison) -> torch.Tensor:
    """Per shift: share of samples (with a peak) whose peak follows the shift; NaN if none."""
    ok = _defined(c)
    return c.follows().double().sum(0) / ok.double().sum(0)


def _shift_json(s: Any) -> Any:
    return list(s) if isinstance(s, tuple) else s


def to_dict(c: AttributionComparison) -> dict[str, Any]:
    """Summary numbers of ``c``, JSON-safe (NaN -> None); the maps are left out."""
    return {
        "method": c.method,
        "output": c.output,
        "mode": c.mode,
        "shifts": [_shift_json(s) for s in c.shifts],
        "aligned_similarity": _grid(c.similarity),
        "aligned_cosine": _grid(c.cosine.nanmean(0)),
        "pearson": _grid(c.pearson),
        "cosine": _grid(c.cosine),
        "peak_displacement": _ints(c.peak_displacement),
        "peak_tolerance": c.peak_tolerance,
        "peak_follows": _grid(_follow_rate(c)),
        "target": [int(v) for v in c.target],
        "target_probability": _grid(c.target_probability.double()),
        "reference_probability": _grid(c.reference_probability.double()),
        "total": _grid(c.total),
        "reference_total": _grid(c.reference_total),
        "convergence_delta": _grid(c.convergence_delta),
        "relative_convergence_delta": _grid(c.relative_delta),
        "layer": c.layer,
        "neuron": list(c.neuron) if c.neuron is not None else None,
        "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in c.settings},
        "axis": _axes(c),
        "agreement": agreement(c),
        "sentences": sentences(c),
    }


def _axes(c: AttributionComparison) -> list[dict[str, Any]] | None:
    """Axis metadata per spatial axis as dicts (the comparison keeps them as pairs)."""
    return [dict(a) for a in c.axis] if c.axis else None


def _unit(c: AttributionComparison) -> str:
    axis = c.axis_meta(0)
    return (axis or {}).get("unit") or default_unit(c.inputs.dim() - 2)


def _fmt_shift(c: AttributionComparison, s: Any) -> str:
    """'+1000 bins' or '+50 nm' (through the axis step); '(dy, dx) = (+2, -3) px' in 2D."""
    return fmt_shift(s, _axes(c))


def _moved(c: AttributionComparison) -> list[int]:
    """Indices of the shifts that are not 0."""
    return [i for i, s in enumerate(c.shifts) if s not in (0, (0, 0))]


def _f2(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.2f}"


def agreement(c: AttributionComparison) -> dict[str, Any] | None:
    """Mean Pearson and cosine over the non-zero shifts, and the worst shift: the numbers the
    agreement sentence quotes (one source for the sentence and report.json)."""
    moved = _moved(c)
    if not moved:
        return None
    sim = c.similarity[moved]
    if torch.isnan(sim).all():
        return None
    worst = int(torch.nan_to_num(sim, nan=2.0).argmin())
    cos = c.cosine[:, moved].nanmean(0)
    return {
        "mean_pearson": json_float(float(sim.nanmean())),
        "mean_cosine": json_float(float(cos.nanmean())),
        "worst_pearson": json_float(float(sim[worst])),
        "worst_shift": _shift_json(c.shifts[moved[worst]]),
    }


def sentences(c: AttributionComparison) -> list[str]:
    """What the numbers say, in order: setup, agreement, verdict, peak, confidence, deltas."""
    label = _LABELS.get(c.method, c.method)
    n = int(c.inputs.shape[0])
    moved = _moved(c)
    shifts = [c.shifts[i] for i in moved]
    out = []
    where = f" on layer {c.layer!r}" if c.output == "feature map" else ""
    out.append(
        f"{label} maps{where} of {n} sample{'s' if n != 1 else ''} at {len(c.shifts)} shifts "
        f"({c.mode} mode) were shifted back to the unshifted frame and compared with the map of "
        "the unshifted input."
    )
    if not moved:
        return out
    sim = c.similarity[moved]
    if torch.isnan(sim).all():
        out.append("The maps are constant, so their correlation is undefined at every shift.")
        return out
    worst = int(torch.nan_to_num(sim, nan=2.0).argmin())
    agree = agreement(c)
    assert agree is not None
    out.append(
        f"Aligned maps correlate with the unshifted map at {_f2(agree['mean_pearson'])} on "
        f"average (Pearson; cosine {_f2(agree['mean_cosine'])}) and "
        f"{_f2(agree['worst_pearson'])} at worst, at shift {_fmt_shift(c, shifts[worst])}."
    )
    low = float(sim.nan_to_num(nan=0.0).min())
    if low >= FOLLOWS:
        out.append("The explanation moves with the input: the model uses the same evidence "
                   "wherever the pattern appears, as a shift-invariant model does.")  # fmt: skip
    elif float(sim.nanmean()) < IGNORES:
        out.append("The explanation does not move with the input: after a shift the model weighs "
                   "the same pattern differently, as a position-specific head does.")  # fmt: skip
    else:
        out.append("The explanation moves with the input only in part: some shifts change which "
                   "evidence the model uses.")  # fmt: skip
    follows, defined = c.follows()[:, moved], _defined(c)[:, moved]
    far = c.peak_displacement[:, moved].abs()
    far = (far if far.dim() == 2 else far.amax(-1))[defined]
    axis0 = c.axis_meta(0)
    if far.numel():
        tol = shift_to_units([c.peak_tolerance], axis0)[0]
        worst_far = shift_to_units([int(far.max())], axis0)[0]
        zero = int((~defined).sum())
        out.append(
            f"The attribution peak lands where the shift puts it (within {tol:g} {_unit(c)}) in "
            f"{int(follows.sum())} of {int(defined.sum())} shifted maps; at worst it is "
            f"{worst_far:g} {_unit(c)} away"
            + (f" ({zero} all-zero maps have no peak)." if zero else ".")
        )
    p_ref = float(c.reference_probability.double().mean())
    p = c.target_probability[:, moved].double().mean(0)
    low_p = int(p.argmin())
    out.append(
        f"The target-class probability is {p_ref:.2f} unshifted (mean over samples) and "
        f"{float(p[low_p]):.2f} at shift {_fmt_shift(c, shifts[low_p])}."
    )
    if c.method == "layer_gradcam":
        out.append("Grad-CAM weighs each kernel by its gradient averaged over positions, so its "
                   "map follows the activations even when the head weighs positions differently; "
                   "integrated gradients show what the head does with them.")  # fmt: skip
    if c.relative_delta is not None:
        rel = float(c.relative_delta.nan_to_num(0).max())
        steps = dict(c.settings).get("n_steps")
        if rel <= COMPLETE:
            out.append(f"{label} is complete to within {rel:.1%} of f(x) - f(baseline)"
                       + (f" with {steps} steps." if steps else "."))  # fmt: skip
        else:
            fix = f"use more steps than {steps}" if steps else "read small differences with care"
            out.append(f"{label} misses f(x) - f(baseline) by up to {rel:.1%} (convergence "
                       f"delta); {fix}.")  # fmt: skip
    return out
