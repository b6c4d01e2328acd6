"""The verdict's headline quotes the collapse onto one class, from sweep.collapse."""

from __future__ import annotations

import torch
from torch import nn

from interp.geometry.core import structure
from interp.reporting.choose import collapse
from interp.reporting.verdict import verdict
from interp.sweep.core import shift_sweep

L = 16


def _model() -> nn.Module:
    """Class 0 reads position 4, class 1 position 10, class 2 ('rest') only a bias of 0.5."""
    lin = nn.Linear(L, 3)
    with torch.no_grad():
        lin.weight.zero_()
        lin.weight[0, 4] = 1.0
        lin.weight[1, 10] = 1.0
        lin.bias.copy_(torch.tensor([0.0, 0.0, 0.5]))
    return nn.Sequential(nn.Flatten(), lin).eval()


def test_the_headline_says_where_every_sample_goes_to_one_class():
    model = _model()
    y = torch.tensor([0, 1] * 5)
    x = torch.zeros(10, 1, L)
    x[y == 0, 0, 4] = 1.0
    x[y == 1, 0, 10] = 1.0
    shifts = [-3, -2, -1, 0, 1, 2, 3]
    # Oracle: a plain loop. Predictions per shift, the class all shifted samples take, and
    # the smallest |s| from which every swept shift at least that large sends all to it.
    with torch.no_grad():
        preds = {s: model(torch.roll(x, s, -1)).argmax(1) for s in shifts}
    assert bool((preds[0] == y).all())
    tail = [s for s in shifts if s != 0]
    assert all(bool((preds[s] == 2).all()) for s in tail)
    start = min(abs(s) for s in tail)
    sw = shift_sweep(model, x, y, shifts, mode="roll", classes=["left", "right", "rest"])
    data = sw.to_dict()
    data["collapse"] = collapse(data)
    content = {"structure": structure(model, x[:1]).to_dict(), "sweep": data}
    headline = verdict(content)["headline"]
    assert headline == (
        f"The model is not translation invariant: at ±{start} samples and beyond, 100.0% of "
        f"the {len(y)} samples are predicted 'rest'."
    )


def test_no_collapse_no_clause():
    model = _model()
    y = torch.tensor([0, 1])
    x = torch.zeros(2, 1, L)
    x[0, 0, 4] = x[1, 0, 10] = 1.0
    sw = shift_sweep(model, x, y, [0, 6], mode="roll", classes=["left", "right", "rest"])
    data = sw.to_dict()  # +6 moves 4 onto 10: half right, half wrong, no one class
    data["collapse"] = collapse(data)
    content = {"structure": structure(model, x[:1]).to_dict(), "sweep": data}
    assert verdict(content)["headline"] == "The model is not translation invariant."
