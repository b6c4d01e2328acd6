"""Plain sentences from the readout's measured numbers: connectivity (the report's
connectivity section), footprints, decompositions and shift explanations."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from interp.readout.core import ClassConnectivity, Connectivity
    from interp.readout.decomposition import Decomposition
    from interp.readout.footprints import Footprint
    from interp.readout.grid import Grid
    from interp.readout.shift_explanation import ShiftExplanation


def _kernels(c: ClassConnectivity, signed: bool = True) -> str:
    pairs = list(zip(c.top_kernels[:3], c.kernel_scores[:3], strict=True))
    names = ", ".join(str(k) for k, _ in pairs)
    values = ", ".join(f"{v:+.3g}" if signed else f"{v:.3g}" for _, v in pairs)
    return f"kernels {names} ({values})"


def _footprint(g: Grid, lo: tuple[int, ...], hi: tuple[int, ...], area: float) -> str:
    return f"training footprint, {g.span(lo, hi)}, covers {area:.0%} of the map"


def class_sentences(conn: Connectivity) -> list[str]:
    """Sentences for every class of ``conn``, generated from its numbers."""
    g = conn.grid
    channels = int(conn.weight.shape[1])
    n_pos = "x".join(str(p) for p in g.positions)
    if conn.kind == "pooled":
        how = f"{conn.pooling} pooling" if conn.pooling else "pooling"
        out = [
            f"The head Linear {conn.linear!r} reads the {channels} kernels of layer "
            f"{conn.reads!r} after {how} over all {n_pos} positions: each class has one weight "
            "per kernel, shared by every position, so a pattern scores the same wherever it "
            "appears (up to boundary effects and the stride of pooling layers)."
        ]
        out += [
            f"Class {c.name!r} relies most on {_kernels(c)}, by weight." for c in conn.per_class
        ]
        return out
    what = "head Linear" if conn.classifier_type == "Linear" else (
        "classifier conv" if "Conv" in conn.classifier_type else "head classifier"
    )
    if conn.order == "exact":
        out = [
            f"The {what} {conn.linear!r} gives each class its own weight for each of the "
            f"{channels} kernels x {n_pos} positions of layer {conn.reads!r} (the exact "
            "Jacobian of the head, which is affine in that map)."
        ]
    else:
        out = [
            f"The head from layer {conn.reads!r} to the logits is positional but not affine "
            f"(classifier {conn.linear!r}), so these weights are first-order: the head's "
            f"gradient for each of the {channels} kernels x {n_pos} positions, averaged over "
            "the samples given; gradient x activation per position approximates each "
            "class's evidence, not exactly."
        ]
    if conn.logits_note:
        out.append(f"The logits explained are {conn.logits_note}.")
    bound = f"+-{conn.init_bound:.2g}"
    for c in conn.per_class:
        assert c.peak_position is not None and c.centre_of_mass is not None
        s = (
            f"Class {c.name!r} weighs {g.at(c.peak_position)} most (centre of mass "
            f"{g.at(c.centre_of_mass)}) and relies most on "
            f"{_kernels(c, conn.top_kernels_by != 'absolute weight')} by {conn.top_kernels_by}"
        )
        if c.footprint is not None and c.mass_inside is not None and c.area_inside is not None:
            s += (
                f". Its {_footprint(g, *c.footprint, c.area_inside)} and holds "
                f"{c.mass_inside:.0%} of its weight mass"
            )
            ratio = inside_ratio(c)
            if ratio is not None:
                s += f": its weights are {ratio:.1f}x larger inside than outside, on average"
            out.append(s + ".")
            if c.outside_in_init is not None and conn.order == "exact" and conn.init_bound > 0:
                out.append(
                    f"Outside the footprint the training data of {c.name!r} left the activations "
                    "at background level, so those weights were shaped only by background; "
                    f"{c.outside_in_init:.0%} of them are still within PyTorch's default "
                    f"initialisation range ({bound}). A pattern shifted there meets them."
                )
        elif conn.footprint is not None:
            out.append(s + f"; no data of class {c.name!r} rose above background.")
        elif conn.order != "exact" or conn.init_bound <= 0:
            out.append(s + "; pass data to measure the training footprint.")
        else:
            untrained = c.untrained or 0.0
            where = ", ".join(g.span((a,), (b,)) for a, b in c.untrained_runs)
            if untrained > 0:
                s += (
                    f". Without data: {untrained:.0%} of the positions"
                    + (f" (longest runs: {where})" if where else "")
                    + f" have all {channels} of its weights within PyTorch's default "
                    f"initialisation range ({bound}), so they look untrained"
                )
            else:
                s += (
                    f". Without data: no position has all its weights within PyTorch's default "
                    f"initialisation range ({bound})"
                )
            out.append(s + "; pass data to measure the training footprint.")
    return out


def footprint_sentences(fp: Footprint) -> list[str]:
    """One sentence per class: where its data activates the map, in the connectivity's words."""
    out = []
    for k, name in enumerate(fp.classes):
        lo, hi = fp.lo[k], fp.hi[k]
        if lo is None or hi is None:
            out.append(f"No data of class {name!r} rose above background ({fp.counts[k]} samples).")
        else:
            area = float(fp.mask[k].float().mean())
            out.append(f"Class {name!r}: its {_footprint(fp.grid, lo, hi, area)} "
                       f"({fp.counts[k]} samples).")  # fmt: skip
    return out


def decomposition_sentences(d: Decomposition) -> list[str]:
    """Per sample: the winning logit as bias plus feature-map evidence, and where it peaks."""
    out = []
    for n in range(d.logits.shape[0]):
        k = int(d.logits[n].argmax())
        logit, bias = float(d.logits[n, k]), float(d.bias[k])
        per_pos = d.per_position[n, k]  # (*P)
        peak = [int(v) for v in torch.unravel_index(per_pos.argmax(), per_pos.shape)]
        out.append(
            f"Sample {n}: the logit of class {k}, the highest, is {logit:.2f} = bias {bias:+.2f} "
            f"{logit - bias:+.2f} from the {d.kind} head's feature map (relative residual at "
            f"most {d.residual:.1e}); its largest contribution comes from {d.grid.at(peak)}."
            + (f" The logits are {d.logits_note}." if d.logits_note else "")
        )
    return out


def _shift_units(e: ShiftExplanation) -> str:
    s = e.shift if isinstance(e.shift, tuple) else (e.shift,)
    g = e.grid
    parts = []
    for d, v in enumerate(s):
        step = float((g.axis_meta(d) or {}).get("step", 1.0))
        parts.append(f"{v * step:g} {g.unit(d)}")
    return " x ".join(parts) if len(parts) > 1 else parts[0]


def shift_sentence(e: ShiftExplanation) -> str:
    """One paragraph on what the shift did to the true class, from ``e``'s numbers."""
    return " ".join(shift_sentences(e))


def shift_sentences(e: ShiftExplanation) -> list[str]:
    """The sentences of :func:`shift_sentence`, one by one."""
    g, t = e.grid, e.true_class
    name = repr(e.classes[t])
    before, after = float(e.logits_before[t]), float(e.logits_after[t])
    fm = ", ".join(f"{v:g}" for v in e.fmap_shift)
    out = [f"Shifted by {_shift_units(e)} ({fm} feature-map positions, {e.mode} mode)"]
    if e.activity_span_before and e.activity_span_after:
        out[0] += (
            f", the {name} example's activations move from {g.span(*e.activity_span_before)} "
            f"to {g.span(*e.activity_span_after)}"
        )
    inside_b, inside_a = e.mass_inside_before, e.mass_inside_after
    if inside_b is not None and inside_a is not None:
        out[0] += (
            f"; {inside_a:.0%} of their mass lies inside the training footprint of {name} "
            f"({inside_b:.0%} before)"
        )
    out[0] += "."
    lost = e.fraction_lost
    if abs(after - before) < 0.005 * max(1.0, abs(before)):
        s = f"The {name} logit stays at {after:.2f}"
    else:
        verb = "falls" if after < before else "rises"
        s = f"The {name} logit {verb} from {before:.2f} to {after:.2f}"
    if lost is not None and after < before:
        s += (
            f" ({lost:.0%} of its evidence, the logit minus the bias, lost)"
            if lost <= 1
            else f" (its evidence, the logit minus the bias, turns negative: {lost:.0%} lost)"
        )
    if e.kind == "pooled":
        s += (
            ": the pooled head has one weight per kernel at every position, so only boundary "
            "effects and strided layers can change it."
        )
    elif after < before:
        s += (
            f": the weights of {name} at the new positions were shaped only by background "
            "during training."
            if inside_a is not None and inside_b is not None and inside_a < inside_b
            else "."
        )
    else:
        s += "."
    out.append(s)
    at_b, at_a = e.true_at_pattern_before, e.true_at_pattern_after
    if at_b is not None and at_a is not None and e.kind == "positional":
        out.append(
            f"Where its activations lie, {name} collected {at_b:+.2f} before the shift and "
            f"{at_a:+.2f} after."
        )
    if e.winner != t:
        w = e.winner
        s = (
            f"{e.classes[w]!r} wins instead (logit {float(e.logits_before[w]):.2f} -> "
            f"{float(e.logits_after[w]):.2f})"
        )
        moved, left = e.winner_gain_at_pattern, e.winner_gain_at_origin
        if moved is not None and left is not None and e.winner_gain > 0:
            s += (
                f": of its {e.winner_gain:+.2f} gain, {left:+.2f} comes from the positions the "
                f"activations left and {moved:+.2f} from those they moved to"
            )
        out.append(s + ".")
    else:
        out.append(f"The model still predicts {name}.")
    if e.kept_range is not None:
        lo, hi = e.kept_range
        out.append(
            f"Over every circular shift of this example's feature map, {name} scores highest "
            f"only for map shifts {lo} to {hi}."
        )
    if e.footprint is None and e.kind == "positional":
        out.append("Pass `connectivity` computed with data to compare with the training footprint.")
    return out


def inside_ratio(c: Any) -> float | None:
    """Mean |weight| inside a class's footprint over the mean outside (report.json
    ``connectivity.per_class[].inside_ratio``; the connectivity sentence quotes it)."""
    mass, area = c.mass_inside, c.area_inside
    if mass is None or area is None or not (0 < area < 1 and mass < 1):
        return None
    return float((mass / area) / ((1 - mass) / (1 - area)))
