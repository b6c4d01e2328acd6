"""Read models and data files safely: formats sniffed from bytes, code never run without trust."""

from __future__ import annotations

from interp.loading.core import Dataset, ModelInfo, load, load_data, save

__all__ = ["Dataset", "ModelInfo", "load", "load_data", "save"]
