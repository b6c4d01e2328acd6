"""Accuracy of a model on inputs shifted circularly (roll mode): the zoo's acceptance measure.

Kept in one function, :func:`shift_accuracy`, so the model cards, the
training summary and the slow test all measure the same way, with
``interp.sweep.core.shift_sweep``. :func:`roll_accuracy` is the plain
``torch.roll`` loop it equals, cheap enough for the training summary's shift 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from interp._guard import inspecting

Shift = int | tuple[int, int]


def _roll(x: torch.Tensor, s: Shift) -> torch.Tensor:
    if isinstance(s, tuple):
        return torch.roll(x, shifts=s, dims=(-2, -1))  # (N, C, H, W)
    return torch.roll(x, shifts=s, dims=-1)  # (N, C, L)


def roll_accuracy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, shifts: Sequence[Shift], batch_size: int
) -> list[float]:
    """Accuracy at each shift from a plain loop: roll, forward, argmax."""
    out = []
    with inspecting(model) as m, torch.no_grad():
        for s in shifts:
            correct = 0
            for lo in range(0, len(x), batch_size):
                pred = m(_roll(x[lo : lo + batch_size], s)).argmax(dim=1)
                correct += int((pred == y[lo : lo + batch_size]).sum())
            out.append(correct / len(x))
    return out


def shift_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    shifts: Sequence[Shift],
    *,
    batch_size: int = 128,
) -> list[float]:
    """Accuracy of ``model`` on ``x`` rolled by each shift (int in 1D, (dy, dx) in 2D).

    >>> shift_accuracy(model, x, y, [-2000, 0, 2000])      # doctest: +SKIP
    [0.25, 1.0, 0.25]
    """
    from interp.sweep.core import shift_sweep

    shifts = list(shifts)
    sweep = shift_sweep(model, x, y, shifts, mode="roll", batch_size=batch_size)
    return [float(a) for a in sweep.accuracy]
