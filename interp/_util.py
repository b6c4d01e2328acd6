"""The one copy of small helpers that several concepts share.

Cheap to import (no torch at import time), so the command line can read the
defaults below for ``--help`` without loading any analysis.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

# Examples an analysis uses by default (report, compare, sweep, attribute): several
# hundred, a seeded random subset of larger data. The shipped reports were made with it.
DEFAULT_SAMPLES = 300

# The unit of an input position when the data file and checkpoint name none: a 1D signal
# counts samples, an image pixels. "bins" only when a file says so (axis unit "bins").
DEFAULT_UNITS: tuple[str, str] = ("samples", "px")


def default_unit(dims: int) -> str:
    """The unit of positions without axis metadata: 'samples' (1D) or 'px' (2D)."""
    return DEFAULT_UNITS[0] if dims == 1 else DEFAULT_UNITS[1]


# How vacated positions are filled when an input is shifted (interp.shifts).
MODES: tuple[str, ...] = ("roll", "zero", "edge")

# Attribution methods by name, in interp.attribution.METHODS order: the command line
# lists them without importing captum; attribution/methods.py checks it holds the same.
METHOD_NAMES: tuple[str, ...] = (
    "integrated_gradients", "saliency", "input_x_gradient", "deeplift", "gradient_shap",
    "occlusion", "guided_backprop", "layer_gradcam", "layer_integrated_gradients",
    "layer_conductance", "neuron_conductance",
)  # fmt: skip

# Accuracy points below the shift-0 accuracy that still count as "invariant": the
# sweep's invariance range, the report's verdict and its choice of the telling shift.
ACCURACY_TOLERANCE = 0.05


def model_device(model: nn.Module, default: torch.device | str = "cpu") -> torch.device:
    """The device of the model's first parameter; ``default`` for a model without any."""
    import torch

    param = next(iter(model.parameters()), None)
    return param.device if param is not None else torch.device(default)


def ntuple(value: Any, n: int) -> tuple[int, ...]:
    """A layer argument (``3``, ``(3,)`` or ``(3, 5)``) as ``n`` ints, as torch expands it.

    >>> ntuple(3, 2), ntuple((3,), 2), ntuple((3, 5), 2)
    ((3, 3), (3, 3), (3, 5))
    """
    if isinstance(value, int):
        return (value,) * n
    out = tuple(int(v) for v in value)
    return out * n if len(out) == 1 and n > 1 else out


def json_float(value: Any) -> float | None:
    """A number as strict JSON allows it: None for None, NaN and infinities.

    >>> json_float(2), json_float(float("nan")), json_float(None)
    (2.0, None, None)
    """
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _signed(value: float) -> str:
    return f"{value:+g}" if value else "0"


def fmt_shift(
    shift: Any, axis: Sequence[Mapping[str, Any]] | None, *, signed: bool = True
) -> str:
    """A shift (positions) in the input's units: ``+3000 Hz``, ``(dy, dx) = (+8, -8) px``.

    Each axis scales by its ``step``; the unit is the first axis's ``unit``, else
    ``samples`` (1D) or ``px`` (2D). ``signed=False`` drops the plus sign.

    >>> fmt_shift(-3, [{"unit": "Hz", "step": 1000.0}])
    '-3000 Hz'
    >>> fmt_shift((8, -8), None, signed=False)
    '(dy, dx) = (8, -8) px'
    """
    axes = [dict(a) for a in axis or []]  # mappings, or frozen (key, value) pairs
    num = _signed if signed else (lambda v: f"{v:g}")
    if isinstance(shift, (list, tuple)):
        steps = [float(axes[i].get("step", 1.0)) if i < len(axes) else 1.0 for i in range(2)]
        unit = (axes[0].get("unit") if axes else None) or "px"
        values = ", ".join(num(float(v) * st) for v, st in zip(shift, steps, strict=True))
        return f"(dy, dx) = ({values}) {unit}"
    step = float(axes[0].get("step", 1.0)) if axes else 1.0
    unit = (axes[0].get("unit") if axes else None) or default_unit(1)
    return f"{num(float(shift) * step)} {unit}"
