"""interp: why is (or isn't) your convolutional classifier translation invariant?

>>> import interp
>>> model, info = interp.load("trained/seed_cnn.pt")          # doctest: +SKIP
>>> with interp.record(model, ["0"]) as rec:                  # doctest: +SKIP
...     model(x)
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

import torch as _torch

from interp._version import __version__, check_torch
from interp.errors import InterpError

check_torch(_torch.__version__)

# Public name -> module that defines it. Imported on first use so that
# `import interp` stays cheap and a notebook never pulls in click.
_EXPORTS = {
    "load": "interp.loading",
    "save": "interp.loading",
    "load_data": "interp.loading",
    "ModelInfo": "interp.loading",
    "Dataset": "interp.loading",
    "structure": "interp.structure",
    "Structure": "interp.structure",
    "Layer": "interp.structure",
    "Head": "interp.structure",
    "record": "interp.hooks",
    "Recording": "interp.hooks",
    "shift": "interp.shifts",
    "parse_shifts": "interp.shifts",
    "shift_sweep": "interp.sweep",
    "Sweep": "interp.sweep",
    "equivariance": "interp.equivariance",
    "Equivariance": "interp.equivariance",
    "connectivity": "interp.connectivity",
    "Connectivity": "interp.connectivity",
    "decompose": "interp.connectivity",
    "Decomposition": "interp.connectivity",
    "footprint": "interp.connectivity",
    "explain_shift": "interp.connectivity",
    "ShiftExplanation": "interp.connectivity",
    "attribute": "interp.attribution",
    "attribution_across_shifts": "interp.attribution",
    "AttributionComparison": "interp.attribution",
    "METHODS": "interp.attribution",
    "report": "interp.report",
    "Report": "interp.report",
    "compare": "interp.report",
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


class _PublicAPI(types.ModuleType):
    """Keeps a public function visible after its same-named submodule is imported.

    Importing ``interp.structure`` (the module) makes Python set the attribute
    ``interp.structure`` on the package, which would hide the function
    ``interp.structure``. The submodule stays reachable through ``sys.modules``
    and ``from interp.structure import ...``.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if (
            isinstance(value, types.ModuleType)
            and name in _EXPORTS
            and value.__name__ == f"{__name__}.{name}"
        ):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _PublicAPI

