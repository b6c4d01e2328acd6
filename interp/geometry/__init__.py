"""Per-layer geometry of a conv model (receptive fields, strides, offsets) and its head."""

from __future__ import annotations

from interp.geometry.core import (
    Head,
    HeadKind,
    Layer,
    Structure,
    canonical,
    explain,
    infer_input_shape,
    strided_layers,
    structure,
    uncanonical,
)

__all__ = [
    "Head",
    "HeadKind",
    "Layer",
    "Structure",
    "canonical",
    "explain",
    "infer_input_shape",
    "strided_layers",
    "structure",
    "uncanonical",
]
