"""interp: why is (or isn't) your convolutional classifier translation invariant?

>>> import interp
>>> model, info = interp.load("trained/seed_cnn.pt")          # doctest: +SKIP
>>> with interp.record(model, ["0"]) as rec:                  # doctest: +SKIP
...     model(x)
"""

from __future__ import annotations

# First, before any other import: Ctrl-C while the `interp` command starts up is one
# line `Interrupted.` (interp/_startup.py; nothing changes for `import interp` elsewhere).
from interp import _startup  # noqa: F401  # isort: skip

import importlib
import importlib.metadata
from typing import Any

from interp._version import __version__, check_torch
from interp.errors import InterpError


def _torch_version() -> str:
    """Torch's version from its installed metadata: `import interp` does not import torch,
    so the command line can catch Ctrl-C before torch's seconds of start-up."""
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:  # e.g. a source build without metadata
        import torch

        return str(torch.__version__)


check_torch(_torch_version())

# Public name -> the concept package that exports it. Imported on first use so that
# `import interp` stays cheap and a notebook never pulls in click.
_EXPORTS = {
    "load": "interp.loading",
    "save": "interp.loading",
    "load_data": "interp.loading",
    "ModelInfo": "interp.loading",
    "Dataset": "interp.loading",
    "structure": "interp.geometry",
    "Structure": "interp.geometry",
    "Layer": "interp.geometry",
    "Head": "interp.geometry",
    "record": "interp.hooks",
    "Recording": "interp.hooks",
    "shift": "interp.shifts",
    "parse_shifts": "interp.shifts",
    "shift_sweep": "interp.sweep",
    "Sweep": "interp.sweep",
    "equivariance": "interp.sweep",
    "Equivariance": "interp.sweep",
    "connectivity": "interp.readout",
    "Connectivity": "interp.readout",
    "decompose": "interp.readout",
    "Decomposition": "interp.readout",
    "footprint": "interp.readout",
    "explain_shift": "interp.readout",
    "ShiftExplanation": "interp.readout",
    "attribute": "interp.attribution",
    "attribution_across_shifts": "interp.attribution",
    "AttributionComparison": "interp.attribution",
    "METHODS": "interp.attribution",
    "report": "interp.reporting",
    "Report": "interp.reporting",
    "compare": "interp.reporting",
    "fix": "interp.remedies",
}

__all__ = ["InterpError", "__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'interp' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
