"""Why a shift is missed: hand-computed numbers on the hand-set model, laws, and figures.

``hand_set_1d``: feature map A[i] = x[i] + x[i+1] (5 positions); class 0 reads
A[0], class 1 reads A[4], no bias. A pattern [1, 1] at the left edge gives
A = [2, 1, 0, 0, 0] and logits (2, 0); rolled by 4 it sits at the right edge:
A = [0, 0, 0, 1, 2], logits (0, 2).
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import no_hooks_left
from matplotlib.figure import Figure

from interp.errors import InterpError
from interp.geometry.core import structure
from interp.plots._style import new_figure
from interp.readout.core import connectivity, explain_shift

LEFT = torch.tensor([[[1.0, 1.0, 0.0, 0.0, 0.0, 0.0]]])  # (1, 1, 6)


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    """Training data: class 0 on the left edge, class 1 on the right, varying heights."""
    h = torch.tensor([1.0, 2.0, 3.0])
    left = h[:, None, None] * LEFT
    right = torch.flip(left, (-1,))
    return torch.cat([left, right]), torch.tensor([0, 0, 0, 1, 1, 1])


def test_hand_set_shift_by_hand(hand_set_1d):
    x, y = _data()
    conn = connectivity(hand_set_1d, x=x, y=y, classes=["left", "right"])
    assert conn.per_class[0].footprint == ((0,), (1,))  # mean map [4, 2, 0, 0, 0]
    e = explain_shift(hand_set_1d, LEFT, 0, 4, connectivity=conn)
    torch.testing.assert_close(e.logits_before, torch.tensor([2.0, 0.0]))
    torch.testing.assert_close(e.logits_after, torch.tensor([0.0, 2.0]))
    torch.testing.assert_close(e.contributions_before[0].float(), torch.tensor([2.0, 0, 0, 0, 0]))
    torch.testing.assert_close(e.contributions_after[1].float(), torch.tensor([0, 0, 0, 0, 2.0]))
    assert e.logit_drop == pytest.approx(2.0) and e.fraction_lost == pytest.approx(1.0)
    assert e.mass_inside_before == pytest.approx(1.0) and e.mass_inside_after == 0.0
    assert e.winner == 1 and e.winner_span == ((4,), (4,))
    assert e.activity_span_after == ((3,), (4,))
    assert e.fmap_shift == (4.0,)
    text = e.sentence()
    assert "falls from 2.00 to 0.00 (100% of its evidence, the logit minus the bias, lost)" in text
    assert "0% of their mass lies inside the training footprint of 'left' (100% before)" in text
    assert "'right' wins instead (logit 0.00 -> 2.00): of its +2.00 gain, +0.00 comes from " in text
    assert "the activations left and +2.00 from those they moved to" in text
    assert "'left' collected +2.00 before the shift and +0.00 after" in text
    d = e.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["winner"] == "right" and d["footprint"] == [0, 1] and d["fraction_lost"] == 1.0


def test_kept_range_from_every_map_shift(hand_set_1d):
    # Circular map shifts s of A = [2, 1, 0, 0, 0]: class 0 scores A[-s], class 1 A[4 - s] - 0.5.
    # s = 0, 1, 2: class 0 wins (2 > -0.5, 0 > -0.5, 0 > -0.5); s = 3: 0 < 0.5; s = -1: 1 < 1.5.
    with torch.no_grad():
        hand_set_1d[-1].bias.copy_(torch.tensor([0.0, -0.5]))
    e = explain_shift(hand_set_1d, LEFT, 0, 1, structure=structure(hand_set_1d, LEFT))
    assert e.fmap_shift_scores is not None
    a = torch.tensor([2.0, 1, 0, 0, 0], dtype=torch.float64)
    for s in range(5):
        rolled = torch.roll(a, s)
        expected = torch.stack([rolled[0], rolled[4] - 0.5])
        torch.testing.assert_close(e.fmap_shift_scores[:, s], expected)
    assert e.kept_range == (0, 2)
    assert "only for map shifts 0 to 2" in e.sentence()


def test_shift_by_zero_changes_nothing(positional_1d):
    x = torch.rand(1, 1, 64)
    e = explain_shift(positional_1d, x, 2, 0)
    torch.testing.assert_close(e.logits_before, e.logits_after)
    torch.testing.assert_close(e.contributions_before, e.contributions_after)
    assert e.logit_drop == 0.0
    assert "Pass `connectivity` computed with data" in e.sentence()


def test_2d_and_pooled_explanations(positional_2d, pooled_1d):
    x2 = torch.rand(4, 1, 12, 12)
    conn = connectivity(positional_2d, x=x2, y=torch.arange(4))
    e = explain_shift(positional_2d, x2[:1], 0, (2, -4), connectivity=conn)
    assert e.contributions_after.shape == (4, 6, 6) and e.fmap_shift == (1.0, -2.0)
    with torch.no_grad():
        expected = positional_2d(torch.roll(x2[:1], (2, -4), (2, 3)))[0]
    torch.testing.assert_close(e.logits_after, expected)
    assert "2 px x -4 px" in e.sentence()
    json.dumps(e.to_dict(), allow_nan=False)
    x1 = torch.rand(1, 1, 64)
    p = explain_shift(pooled_1d, x1, 0, 5, structure=structure(pooled_1d, x1))
    assert p.kind == "pooled" and p.fmap_shift_scores is None and p.weight_profile is None
    assert "one weight per kernel at every position" in p.sentence()
    assert no_hooks_left(pooled_1d) and no_hooks_left(positional_2d)


def test_explain_shift_refuses_bad_arguments(positional_1d, positional_2d):
    with pytest.raises(InterpError, match="one sample"):
        explain_shift(positional_1d, torch.rand(2, 1, 64), 0, 3)
    with pytest.raises(InterpError, match=r"\(dy, dx\)"):
        explain_shift(positional_2d, torch.rand(1, 1, 12, 12), 0, 3)
    with pytest.raises(InterpError, match="not a class index"):
        explain_shift(positional_1d, torch.rand(1, 1, 64), 7, 3)


AXIS = {"name": "frequency", "unit": "Hz", "start": -32.0, "step": 0.5}


def test_figures_have_unit_axes_and_honour_ax(positional_1d, pooled_1d, positional_2d):
    x, y = torch.rand(6, 1, 64), torch.arange(6) % 3
    conn = connectivity(positional_1d, x=x, y=y, axis=AXIS)
    figs = [conn.plot(), conn.plot_weights(1), conn.plot_kernels(0), conn.footprint.plot()]
    e = explain_shift(positional_1d, x[:1], int(y[0]), 10, connectivity=conn)
    figs += [e.plot()]
    assert all(isinstance(f, Figure) for f in figs)
    assert figs[0].axes[-1].get_xlabel() == "frequency (Hz)"
    assert "frequency (Hz)" in {a.get_xlabel() for a in figs[4].axes}
    # A map position's centre converts through the receptive field and the axis.
    centre = conn.grid.to_input(3)  # 3 * 2 - 1 + (10 - 1) / 2
    assert centre == pytest.approx(9.5)
    assert conn.grid.to_unit(centre) == pytest.approx(-32 + 9.5 * 0.5)
    fig, axes = new_figure()
    assert conn.plot(ax=axes[0, 0]) is fig
    pooled = connectivity(pooled_1d, structure(pooled_1d, input_shape=(1, 64)))
    assert isinstance(pooled.plot(), Figure) and isinstance(pooled.plot_weights(0), Figure)
    conn2 = connectivity(positional_2d, x=torch.rand(4, 1, 12, 12), y=torch.arange(4))
    assert isinstance(conn2.plot(), Figure) and isinstance(conn2.plot_weights(0), Figure)
    assert conn2.plot(ax=axes[0, 0]) is fig  # one panel: |weight| over all classes
