"""The exact fast sweep engine: the trunk once per sample, only boundary positions per shift."""

from __future__ import annotations

from interp.sweep.engine.core import Unsupported, fast_logits

__all__ = ["Unsupported", "fast_logits"]
