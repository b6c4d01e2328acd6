"""Per-layer geometry of a conv model (receptive fields, strides, offsets) and its head."""

from __future__ import annotations

from interp.geometry.core import (
    Head,
    HeadKind,
    Layer,
    Structure,
    explain,
    infer_input_shape,
    strided_layers,
    structure,
)

__all__ = [
    "Head",
    "HeadKind",
    "Layer",
    "Structure",
    "explain",
    "infer_input_shape",
    "strided_layers",
    "structure",
]
