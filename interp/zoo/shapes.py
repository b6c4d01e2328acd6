"""Synthetic 32x32 images of four shapes: the 2D version of the spectra task.

Each image holds one shape (square, cross, ring or triangle) of random size
and brightness, centred at ``(16 + dy, 16 + dx)`` pixels with integer offsets
uniform in ``[-shift_range, shift_range]`` per axis, with a soft one-pixel
edge and Gaussian pixel noise, clipped to [0, 1].
"""

from __future__ import annotations

from typing import Any

import numpy as np

CLASSES = ("square", "cross", "ring", "triangle")

DEFAULTS: dict[str, Any] = {
    "size": 32,  # pixels per side
    "shift_range": 2,  # training offsets are uniform in [-2, 2] pixels per axis
    "half_size": [4.5, 6.5],  # shape half-extent in pixels, uniform
    "brightness": [0.7, 1.0],  # shape intensity, uniform
    "noise": 0.1,  # std of additive Gaussian pixel noise
    "stroke": 1.25,  # half-thickness of the cross arms and the ring, pixels
}


def _shape(kind: int, dy: np.ndarray, dx: np.ndarray, h: np.ndarray, t: float) -> np.ndarray:
    """Signed inside-ness (> 0 inside, in pixels) of one shape; dy, dx (b, S, S), h (b, 1, 1)."""
    name = CLASSES[kind]
    if name == "square":
        return h - np.maximum(np.abs(dy), np.abs(dx))
    if name == "cross":
        bar_h = np.minimum(t - np.abs(dy), h - np.abs(dx))
        bar_v = np.minimum(t - np.abs(dx), h - np.abs(dy))
        return np.maximum(bar_h, bar_v)
    if name == "ring":
        r = np.hypot(dy, dx)
        return t - np.abs(r - (h - t))
    # triangle, apex up: rows from -h to h, half-width growing from 0 to h
    return np.minimum(np.minimum(h - dy, dy + h), (dy + h) / 2.0 - np.abs(dx))


def generate(
    y: np.ndarray, rng: np.random.Generator, params: dict[str, Any], shift_range: int
) -> np.ndarray:
    """Draw one image per label in ``y``; return float32 (n, 1, size, size) in [0, 1].

    >>> rng = np.random.default_rng(0)
    >>> generate(np.array([0, 1, 2, 3]), rng, DEFAULTS, 2).shape
    (4, 1, 32, 32)
    """
    p = {**DEFAULTS, **params}
    size = int(p["size"])
    n = len(y)
    off = rng.integers(-shift_range, shift_range, size=(n, 2), endpoint=True)
    h_lo, h_hi = p["half_size"]
    b_lo, b_hi = p["brightness"]
    h = rng.uniform(h_lo, h_hi, size=n)[:, None, None]
    bright = rng.uniform(b_lo, b_hi, size=n)[:, None, None]
    noise = rng.normal(0.0, p["noise"], size=(n, size, size))
    grid = np.arange(size) - size // 2
    dy = grid[None, :, None] - off[:, 0, None, None]  # (n, S, 1)
    dx = grid[None, None, :] - off[:, 1, None, None]  # (n, 1, S)
    dy, dx = np.broadcast_arrays(dy, dx)
    inside = np.empty((n, size, size))
    for k in range(len(CLASSES)):
        rows = y == k
        if rows.any():
            inside[rows] = _shape(k, dy[rows], dx[rows], h[rows], float(p["stroke"]))
    img = bright * np.clip(inside + 0.5, 0.0, 1.0) + noise  # one-pixel soft edge
    return np.clip(img, 0.0, 1.0).astype(np.float32)[:, None]


def axis(params: dict[str, Any]) -> list[dict[str, Any]]:
    """The checkpoint ``axis`` entry: rows then columns, in pixels."""
    return [
        {"name": "y", "unit": "px", "start": 0.0, "step": 1.0},
        {"name": "x", "unit": "px", "start": 0.0, "step": 1.0},
    ]
