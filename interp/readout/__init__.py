"""What the head reads: weights per (class, kernel, position), footprints, logit decomposition."""

from __future__ import annotations

from interp.readout.core import (
    ClassConnectivity,
    Connectivity,
    Decomposition,
    Footprint,
    ShiftExplanation,
    all_shift_scores,
    connectivity,
    decompose,
    explain_shift,
    footprint,
    head_weights,
)

__all__ = [
    "ClassConnectivity",
    "Connectivity",
    "Decomposition",
    "Footprint",
    "ShiftExplanation",
    "all_shift_scores",
    "connectivity",
    "decompose",
    "explain_shift",
    "footprint",
    "head_weights",
]
