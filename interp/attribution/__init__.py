"""Captum attribution methods by name, and attribution maps compared across shifts."""

from __future__ import annotations

from interp.attribution.core import (
    METHODS,
    AttributionComparison,
    Method,
    attribute,
    attribution_across_shifts,
)

__all__ = ["METHODS", "AttributionComparison", "Method", "attribute", "attribution_across_shifts"]
