"""Synthetic power spectral densities: four band shapes on a Welch noise floor.

Modelled on the case interp was written for: a 1D CNN trained on PSDs whose
pattern always sat near the same frequency, then shown the same pattern
elsewhere. Each example is 8192 bins on a frequency axis centred on 0
(``bin_hz`` Hz per bin, position i at ``(i - 4096) * bin_hz`` Hz).

A class pattern is a profile ``g`` in [0, 1] centred at offset ``f0`` bins,
drawn as it appears on a dB plot: the level is ``peak_db * g`` dB above a
flat noise floor. The floor is a Welch estimate, so each bin is the true PSD
times ``chi2(2K) / 2K`` for ``K`` averaged non-overlapping segments (Welch 1967:
an average of K periodograms). The result is converted to dB and min-max
normalised to [0, 1] per example, as the original user did.
"""

from __future__ import annotations

from typing import Any

import numpy as np

CLASSES = ("band", "gaussian", "tones", "triangle")

DEFAULTS: dict[str, Any] = {
    "length": 8192,  # bins
    "bin_hz": 1.0,  # Hz per bin: the axis runs from -4096 Hz to 4095 Hz
    "shift_range": 300,  # training offsets f0 are uniform in [-300, 300] bins
    "peak_db": [20.0, 30.0],  # pattern height above the floor, uniform
    "width_jitter": 0.1,  # every width is scaled by U[1 - j, 1 + j]
    "welch_segments": 8,  # K: floor noise is chi2(2K) / 2K
    "band_half_width": 1000.0,  # bins: flat band with steep edges at about +-1000 Hz
    "band_edge": 3.0,  # bins: logistic edge scale
    "gaussian_sigma": 200.0,  # bins
    "tone_spacing": 500.0,  # bins: tones at f0 +- 500
    "tone_sigma": 4.0,  # bins
    "triangle_half_width": 1000.0,  # bins
}

_CHUNK = 256  # examples per vectorised block: bounds memory, fixes the draw order


def _profile(kind: np.ndarray, x: np.ndarray, scale: np.ndarray, p: dict[str, Any]) -> np.ndarray:
    """Class profiles in [0, 1]; x is the distance from f0 in bins, (n, L); kind, scale (n, 1)."""
    out = np.empty_like(x)
    for k, name in enumerate(CLASSES):
        rows = kind[:, 0] == k
        if not rows.any():
            continue
        d, s = x[rows], scale[rows]
        if name == "band":
            z = (p["band_half_width"] * s - np.abs(d)) / p["band_edge"]
            g = 0.5 * (1.0 + np.tanh(0.5 * z))  # logistic, without overflow
        elif name == "gaussian":
            g = np.exp(-0.5 * (d / (p["gaussian_sigma"] * s)) ** 2)
        elif name == "tones":
            t = p["tone_spacing"] * s
            g = np.exp(-0.5 * ((np.abs(d) - t) / p["tone_sigma"]) ** 2)
        else:  # triangle
            g = np.clip(1.0 - np.abs(d) / (p["triangle_half_width"] * s), 0.0, None)
        out[rows] = g
    return out


def generate(
    y: np.ndarray, rng: np.random.Generator, params: dict[str, Any], shift_range: int
) -> np.ndarray:
    """Draw one spectrum per label in ``y``; return float32 (n, 1, length) in [0, 1].

    >>> rng = np.random.default_rng(0)
    >>> generate(np.array([0, 1, 2, 3]), rng, DEFAULTS, 300).shape
    (4, 1, 8192)
    """
    p = {**DEFAULTS, **params}
    length = int(p["length"])
    n = len(y)
    # Per-example draws first, so the floor noise below is the only blockwise draw.
    f0 = rng.integers(-shift_range, shift_range, size=n, endpoint=True)
    peak_lo, peak_hi = p["peak_db"]
    peak = rng.uniform(peak_lo, peak_hi, size=n)
    jitter = p["width_jitter"]
    scale = rng.uniform(1.0 - jitter, 1.0 + jitter, size=n)
    k = int(p["welch_segments"])
    bins = np.arange(length) - length // 2  # centred axis, in bins
    x = np.empty((n, 1, length), dtype=np.float32)
    for lo in range(0, n, _CHUNK):
        hi = min(lo + _CHUNK, n)
        d = bins[None, :] - f0[lo:hi, None]  # (b, L) distance from the pattern centre
        g = _profile(y[lo:hi, None], d.astype(np.float64), scale[lo:hi, None], p)
        noise = rng.standard_gamma(k, size=(hi - lo, length)) / k  # chi2(2K) / 2K
        db = peak[lo:hi, None] * g + 10.0 * np.log10(noise)  # (b, L) in dB above the floor
        db -= db.min(axis=1, keepdims=True)
        db /= db.max(axis=1, keepdims=True)
        x[lo:hi, 0] = db
    return x


def axis(params: dict[str, Any]) -> list[dict[str, Any]]:
    """The checkpoint ``axis`` entry: frequency in Hz, centred on 0."""
    p = {**DEFAULTS, **params}
    step = float(p["bin_hz"])
    return [{"name": "frequency", "unit": "Hz", "start": -(int(p["length"]) // 2) * step,
             "step": step}]  # fmt: skip
