"""Prove the remedy on the person's own model: pool-head, augment and blur, measured."""

from __future__ import annotations

from interp.fix.core import STRATEGIES, fix
from interp.fix.result import FixResult, Remedy

__all__ = ["STRATEGIES", "FixResult", "Remedy", "fix"]
