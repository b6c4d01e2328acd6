"""Brute force runs 2D models on channels_last inputs where that works, and falls back."""

from __future__ import annotations

import torch
from torch import nn

from interp.shifts import shift
from interp.sweep.core import sweep_logits
from interp.sweep.logits import brute_logits


class _Viewing(nn.Module):
    """A forward that ``view``s its map: fails on a channels_last map."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.fc = nn.Linear(3 * 6 * 6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x))
        return self.fc(h.view(h.shape[0], -1))


def _oracle(model: nn.Module, x: torch.Tensor, shifts: list) -> torch.Tensor:
    """The model on each shifted input, one shift at a time, default layout, float64."""
    with torch.no_grad():
        return torch.stack([model(shift(x, s, "roll")) for s in shifts], 1)


def test_channels_last_brute_force_equals_the_plain_forward():
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 3 * 3, 3))  # fmt: skip
    model = model.double().eval()
    x = torch.randn(3, 2, 6, 6, generator=gen, dtype=torch.float64)
    shifts = [(0, 0), (1, -2), (3, 3), (-5, 1)]
    got = brute_logits(model, x, shifts, "roll", rows=8, channels_last=True)
    torch.testing.assert_close(got, _oracle(model, x, shifts), rtol=0, atol=1e-12)


def test_a_forward_that_views_its_map_falls_back_to_the_default_layout():
    torch.manual_seed(0)
    model = _Viewing().double().eval()
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64)
    shifts = [(0, 0), (2, 1), (-1, 3)]
    try:  # the premise: channels_last really breaks this forward
        brute_logits(model, x, shifts, "roll", rows=8, channels_last=True)
        raise AssertionError("expected the view to fail on a channels_last map")
    except RuntimeError:
        pass
    logits, engine, _ = sweep_logits(model, x, shifts, mode="roll", engine="brute")
    assert engine == "brute"
    want = _oracle(model, x, shifts)
    torch.testing.assert_close(logits.double(), want, rtol=0,
                               atol=1e-6 * (1 + want.abs().max().item()))  # fmt: skip
