"""Prove the remedy on the person's own model: pool-head, augment and blur, measured."""

from __future__ import annotations

from interp.remedies.core import STRATEGIES, fix
from interp.remedies.result import FixResult, Remedy

__all__ = ["STRATEGIES", "FixResult", "Remedy", "fix"]
