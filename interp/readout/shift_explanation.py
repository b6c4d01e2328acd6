"""Why a shifted pattern is missed: the logit decomposition before and after a shift.

For one sample and one shift, :func:`explain_shift` decomposes every logit
over the head's feature map for the original and the shifted input, measures
where the sample's activity (deviation from its per-kernel background) sits
relative to the true class's training footprint, and names the class that
wins instead and the positions its evidence comes from. For a positional head
it also scores every circular shift of the sample's feature map at once
(:func:`interp.readout.decomposition.all_shift_scores`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from interp._util import json_float
from interp.errors import InterpError
from interp.geometry.core import Structure
from interp.geometry.core import structure as _structure
from interp.readout.decomposition import all_shift_scores, decompose
from interp.readout.grid import Grid, box_mask, deviation, mass_interval, pos, signal

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from interp.readout.core import Connectivity

Span = tuple[tuple[int, ...], tuple[int, ...]]


@dataclass(frozen=True, eq=False)
class ShiftExplanation:
    """One sample, one shift: contributions and activity before and after.

    Tensors over positions are (*P), over classes and positions (K, *P); positions
    index the feature map ``grid`` describes. ``footprint`` fields are None when the
    connectivity has no footprint (no data given).
    """

    shift: int | tuple[int, ...]
    mode: str
    kind: str
    classes: tuple[str, ...]
    true_class: int
    grid: Grid
    bias: torch.Tensor
    logits_before: torch.Tensor
    logits_after: torch.Tensor
    contributions_before: torch.Tensor  # (K, *P) summed over kernels
    contributions_after: torch.Tensor
    activity_before: torch.Tensor  # (*P) deviation from background, summed over kernels
    activity_after: torch.Tensor
    activity_span_before: Span | None
    activity_span_after: Span | None
    weight_profile: torch.Tensor | None  # (*P) true class's weights summed over kernels
    footprint: Span | None
    footprint_mask: torch.Tensor | None
    winner: int
    winner_span: Span | None  # where the winner's logit grew most (central 90% of its gain)
    fmap_shift_scores: torch.Tensor | None  # (K, *P) score of every circular map shift
    kept_range: tuple[int, int] | None  # map shifts around 0 where the true class wins (1D)

    @property
    def fmap_shift(self) -> tuple[float, ...]:
        """The shift in feature-map positions (input shift / cumulative stride)."""
        s = self.shift if isinstance(self.shift, tuple) else (self.shift,)
        return tuple(v / st for v, st in zip(s, self.grid.stride, strict=True))

    def _box_sum(self, values: torch.Tensor, span: Span | None) -> float | None:
        if span is None:
            return None
        return float((values * box_mask(self.grid.positions, *span)).sum())

    @property
    def true_at_pattern_before(self) -> float | None:
        """The true class's contributions from where the sample's activity lies, unshifted."""
        return self._box_sum(self.contributions_before[self.true_class], self.activity_span_before)

    @property
    def true_at_pattern_after(self) -> float | None:
        """The same, after the shift: from where the activity moved to."""
        return self._box_sum(self.contributions_after[self.true_class], self.activity_span_after)

    @property
    def winner_gain(self) -> float:
        """How much the winning class's logit grew with the shift."""
        return float(self.logits_after[self.winner] - self.logits_before[self.winner])

    @property
    def winner_gain_at_pattern(self) -> float | None:
        """The winner's contribution change at the positions the activity moved to."""
        gain = self.contributions_after[self.winner] - self.contributions_before[self.winner]
        return self._box_sum(gain, self.activity_span_after)

    @property
    def winner_gain_at_origin(self) -> float | None:
        """The winner's contribution change at the positions the activity left."""
        gain = self.contributions_after[self.winner] - self.contributions_before[self.winner]
        return self._box_sum(gain, self.activity_span_before)

    @property
    def logit_drop(self) -> float:
        t = self.true_class
        return float(self.logits_before[t] - self.logits_after[t])

    @property
    def fraction_lost(self) -> float | None:
        """Share of the true class's evidence (logit minus bias) lost; None if it had none."""
        evidence = float(self.logits_before[self.true_class] - self.bias[self.true_class])
        return self.logit_drop / evidence if evidence > 0 else None

    def _inside(self, activity: torch.Tensor) -> float | None:
        total = float(activity.sum())
        if self.footprint_mask is None or total <= 0:
            return None
        return float((activity * self.footprint_mask).sum()) / total

    @property
    def mass_inside_before(self) -> float | None:
        """Share of the sample's activity inside the true class's footprint, unshifted."""
        return self._inside(self.activity_before)

    @property
    def mass_inside_after(self) -> float | None:
        return self._inside(self.activity_after)

    def sentence(self) -> str:
        """What happened, in plain words, from the measured numbers (one paragraph)."""
        from interp.readout.text import shift_sentence

        return shift_sentence(self)

    def sentences(self) -> list[str]:
        """The sentences of :meth:`sentence`, one by one (the report's paragraph)."""
        from interp.readout.text import shift_sentences

        return shift_sentences(self)

    def to_dict(self) -> dict[str, Any]:
        def span(s: Span | None) -> list[Any] | None:
            return None if s is None else [pos(s[0]), pos(s[1])]

        def span_input(s: Span | None) -> list[Any] | None:
            """A span in input units (the receptive-field centres the sentence quotes)."""
            if s is None:
                return None
            g = self.grid
            ends = [[g.to_unit(g.to_input(float(v), d), d) for d, v in enumerate(p)] for p in s]
            return [e[0] if len(e) == 1 else e for e in ends]

        num = json_float

        return {
            "shift": list(self.shift) if isinstance(self.shift, tuple) else self.shift,
            "mode": self.mode,
            "kind": self.kind,
            "true_class": self.classes[self.true_class],
            "logits_before": [num(v) for v in self.logits_before.tolist()],
            "logits_after": [num(v) for v in self.logits_after.tolist()],
            "logit_drop": num(self.logit_drop),
            "fraction_lost": num(self.fraction_lost),
            "mass_inside_before": num(self.mass_inside_before),
            "mass_inside_after": num(self.mass_inside_after),
            "activity_span_before": span(self.activity_span_before),
            "activity_span_after": span(self.activity_span_after),
            "activity_span_before_input": span_input(self.activity_span_before),
            "activity_span_after_input": span_input(self.activity_span_after),
            "footprint": span(self.footprint),
            "winner": self.classes[self.winner],
            "winner_span": span(self.winner_span),
            "winner_gain": num(self.winner_gain),
            "winner_gain_at_pattern": num(self.winner_gain_at_pattern),
            "winner_gain_at_origin": num(self.winner_gain_at_origin),
            "true_at_pattern_before": num(self.true_at_pattern_before),
            "true_at_pattern_after": num(self.true_at_pattern_after),
            "kept_range": list(self.kept_range) if self.kept_range else None,
            "sentence": self.sentence(),
        }

    def plot(self, ax: Axes | None = None) -> Figure:
        """Activity and contributions before/after the shift on aligned position axes
        (with ``ax``: the true class's contributions before and after, on that one)."""
        from interp.plots.shift_explanation import plot_shift_explanation

        return plot_shift_explanation(self, ax=ax)


def explain_shift(
    model: nn.Module,
    x: torch.Tensor,
    y: int | torch.Tensor,
    s: int | tuple[int, int],
    *,
    mode: str = "roll",
    structure: Structure | None = None,
    connectivity: Connectivity | None = None,
) -> ShiftExplanation:
    """Explain how shifting one sample by ``s`` changes its logits, position by position.

    Args:
        model: the classifier; left unchanged.
        x: one sample, (1, C, L) or (1, C, H, W).
        y: its true class index.
        s: shift in input positions (int, or (dy, dx) in 2D); positive moves content
            towards higher indices.
        mode: "roll", "zero" or "edge" (see ``interp.shift``).
        structure: ``interp.structure(model, x)``; computed when None.
        connectivity: ``interp.connectivity(model, ..., x=data, y=labels)``; with data it
            carries the training footprint the activity is compared with.

    Raises:
        InterpError: ``x`` is not one sample, or the head cannot be decomposed.

    >>> e = explain_shift(model, x[:1], int(y[0]), 2000, connectivity=conn)  # doctest: +SKIP
    >>> e.contributions_after.shape, e.fraction_lost      # doctest: +SKIP
    (torch.Size([4, 4026]), 1.07)
    """
    from interp.readout.core import connectivity as _connectivity
    from interp.shifts import shift as _shift

    if not isinstance(x, torch.Tensor):
        raise TypeError(f"`x` must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() not in (3, 4) or x.shape[0] != 1:
        raise InterpError(f"`x` must be one sample (1, C, *L), got {tuple(x.shape)}; pass x[i:i+1]")
    t = int(y.reshape(-1)[0]) if isinstance(y, torch.Tensor) else int(y)
    geo = structure if structure is not None else _structure(model, x)
    conn = connectivity if connectivity is not None else _connectivity(model, geo)
    if not 0 <= t < len(conn.classes):
        raise InterpError(
            f"`y` {t} is not a class index; the model has {len(conn.classes)} classes"
        )
    dims = x.dim() - 2
    if (dims == 1) != isinstance(s, int):
        raise InterpError(f"`s` {s!r} must be an int for 1D inputs and a (dy, dx) pair for 2D")
    shifted = _shift(x, s, mode=mode)  # (1, C, *L)
    dec = decompose(model, torch.cat([x, shifted]), geo)
    per_pos = dec.per_position  # (2, K, *P)
    activity = deviation(dec.activations.to(torch.float64), dims).sum(1)  # (2, *P)
    act = [signal(activity[0]), signal(activity[1])]
    fp = conn.footprint
    has_fp = fp is not None and fp.lo[t] is not None and fp.hi[t] is not None
    logits_after = dec.logits[1]
    winner = int(logits_after.argmax())
    scores, kept = None, None
    if conn.kind == "positional":
        scores = all_shift_scores(dec.activations[:1], conn.weight, conn.bias)[0]  # (K, *P)
        kept = _kept_range(scores, t) if dims == 1 else None
    return ShiftExplanation(
        shift=s if isinstance(s, int) else tuple(int(v) for v in s),
        mode=mode,
        kind=conn.kind,
        classes=conn.classes,
        true_class=t,
        grid=conn.grid,
        bias=dec.bias,
        logits_before=dec.logits[0],
        logits_after=logits_after,
        contributions_before=per_pos[0],
        contributions_after=per_pos[1],
        activity_before=act[0],
        activity_after=act[1],
        activity_span_before=mass_interval(act[0]),
        activity_span_after=mass_interval(act[1]),
        weight_profile=conn.profile[t] if conn.kind == "positional" else None,
        footprint=(fp.lo[t], fp.hi[t]) if has_fp else None,  # type: ignore[arg-type,union-attr]
        footprint_mask=fp.mask[t] if has_fp else None,  # type: ignore[union-attr]
        winner=winner,
        winner_span=mass_interval(
            signal((per_pos[1, winner] - per_pos[0, winner]).clamp(min=0)), 0.9
        ),
        fmap_shift_scores=scores,
        kept_range=kept,
    )


def _kept_range(scores: torch.Tensor, t: int) -> tuple[int, int] | None:
    """Largest run of circular map shifts around 0 where class ``t`` scores highest."""
    wins = scores.argmax(0) == t  # (P,)
    n = wins.numel()
    if not bool(wins[0]):
        return None
    if bool(wins.all()):
        return (-(n // 2), n - 1 - n // 2)
    hi = 0
    while hi + 1 < n and bool(wins[hi + 1]):
        hi += 1
    lo = 0
    while -lo + 1 < n and bool(wins[(lo - 1) % n]):
        lo -= 1
    return lo, hi
