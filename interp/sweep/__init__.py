"""Accuracy, confidence and consistency over shifts, exact; per-layer equivariance."""

from __future__ import annotations

from interp.sweep.core import Sweep, shift_sweep, shift_sweep_stream, sweep_logits
from interp.sweep.per_layer import Equivariance, LayerEquivariance, equivariance

__all__ = [
    "Equivariance",
    "LayerEquivariance",
    "Sweep",
    "equivariance",
    "shift_sweep",
    "shift_sweep_stream",
    "sweep_logits",
]
