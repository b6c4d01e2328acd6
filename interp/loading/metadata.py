"""Checkpoint metadata is untrusted: every field interp reads is checked for type and range.

``input_shape``, ``classes``, ``axis`` (name, unit, start, step per spatial axis)
and ``recipe`` (generator, params, seed) come from the file. A value of the wrong
type (``half_size=5`` where a pair is expected, ``length="abc"``) or out of range
(``length=-5``, ``2**31-1``, ``3e8``) is a one-line :class:`InterpError` naming
the field, never a TypeError or an allocation later on.

>>> check_meta({"input_shape": [1, 64], "classes": ["a", "b"]}, "m.pt")
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from interp.errors import InterpError

MAX_DIM = 2**31 - 1  # one axis of an input (the memory budget bounds their product)
MAX_CLASSES = 100_000
MAX_NAME = 200  # characters in a class name or an axis name/unit
MAX_SEED = 2**63 - 1
# Ranges of the zoo recipe parameters whose size drives an allocation: (lo, hi).
_INT_RANGES = {
    "length": (8, 2**20),  # bins per spectrum: 300 samples x 2**20 x 4 B = 1.2 GB at most
    "size": (4, 2048),  # pixels per side
    "shift_range": (0, 2**20),
    "welch_segments": (1, 10_000),
}
_NON_NEGATIVE = {
    "noise", "width_jitter", "stroke", "band_edge", "tone_sigma", "gaussian_sigma",
    "band_half_width", "triangle_half_width", "tone_spacing",
}  # fmt: skip
_POSITIVE = {"bin_hz"}
_MAX_FLOAT = 1e12


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return (_int(value) or isinstance(value, float)) and math.isfinite(value)


def check_meta(meta: Mapping[str, Any], label: str) -> None:
    """Check ``input_shape``, ``classes`` and ``axis`` of a checkpoint's metadata.

    Raises:
        InterpError: a field has the wrong type or is out of range, naming it.
    """
    where = f"{label}: `meta"
    shape = meta.get("input_shape")
    if shape is not None:
        if (not isinstance(shape, (list, tuple)) or len(shape) not in (2, 3)
                or not all(_int(s) and 1 <= s <= MAX_DIM for s in shape)):  # fmt: skip
            raise InterpError(
                f"{where}['input_shape']` must be [C, L] or [C, H, W] of ints in 1..{MAX_DIM} "
                f"(no batch axis), got {_short(shape)}; re-save it with a correct input_shape"
            )
    classes = meta.get("classes")
    if classes is not None and (
        not isinstance(classes, (list, tuple)) or not 1 <= len(classes) <= MAX_CLASSES
        or not all(isinstance(c, str) and len(c) <= MAX_NAME for c in classes)
    ):  # fmt: skip
        raise InterpError(
            f"{where}['classes']` must be a list of class names (str, at most {MAX_NAME} "
            f"characters), got {_short(classes)}"
        )
    axis = meta.get("axis")
    if axis is not None:
        _check_axis(axis, where, shape)


def _check_axis(axis: Any, where: str, shape: Any) -> None:
    spatial = len(shape) - 1 if isinstance(shape, (list, tuple)) else None
    if not isinstance(axis, (list, tuple)) or not 1 <= len(axis) <= 2 or (
        spatial is not None and len(axis) != spatial
    ):
        raise InterpError(
            f"{where}['axis']` must be a list with one entry per spatial axis "
            f"({spatial or '1 or 2'}), got {_short(axis)}"
        )
    for i, entry in enumerate(axis):
        if not isinstance(entry, Mapping):
            raise InterpError(f"{where}['axis'][{i}]` must be a dict, got {_short(entry)}")
        for key in ("name", "unit"):
            value = entry.get(key)
            if value is not None and (not isinstance(value, str) or len(value) > MAX_NAME):
                raise InterpError(f"{where}['axis'][{i}]['{key}']` must be a short str, "
                                  f"got {_short(value)}")  # fmt: skip
        for key in ("start", "step"):
            value = entry.get(key)
            if value is not None and (not _number(value) or abs(value) > _MAX_FLOAT):
                raise InterpError(f"{where}['axis'][{i}]['{key}']` must be a finite number, "
                                  f"got {_short(value)}")  # fmt: skip
        if entry.get("step") == 0:
            raise InterpError(f"{where}['axis'][{i}]['step']` must not be 0")


def check_recipe(recipe: Any, label: str, defaults: Mapping[str, Mapping[str, Any]]) -> None:
    """Check a ``meta["recipe"]`` against the zoo generators' defaults.

    Each parameter must have the kind of its default (an int, a number, a pair
    ``[lo, hi]`` with ``lo <= hi``) and, where it sizes an allocation, lie in range.

    Args:
        recipe: the untrusted ``meta["recipe"]``.
        label: the file, for messages.
        defaults: generator name -> its ``DEFAULTS``.

    Raises:
        InterpError: naming the field, its value and the allowed kind or range.
    """
    where = f"{label}: `meta['recipe']"
    if not isinstance(recipe, Mapping):
        raise InterpError(f"{where}` must be a dict with generator, params and seed, "
                          f"got {_short(recipe)}")  # fmt: skip
    generator = recipe.get("generator")
    if not isinstance(generator, str) or generator not in defaults:
        raise InterpError(
            f"{where}['generator']` must be one of {', '.join(sorted(defaults))}, "
            f"got {_short(generator)}"
        )
    seed = recipe.get("seed", 0)
    if not _int(seed) or not 0 <= seed <= MAX_SEED:
        raise InterpError(f"{where}['seed']` must be an int in 0..2**63-1, got {_short(seed)}")
    params = recipe.get("params") or {}
    if not isinstance(params, Mapping):
        raise InterpError(f"{where}['params']` must be a dict, got {_short(params)}")
    known = defaults[generator]
    for key, value in params.items():
        if key not in known:
            raise InterpError(
                f"{where}['params']` has unknown {_short(key)} for {generator}; known: "
                f"{', '.join(known)}"
            )
        _check_param(f"{where}['params']['{key}']`", key, value, known[key])


def _check_param(where: str, key: str, value: Any, default: Any) -> None:
    if _int(default) or key in _INT_RANGES:
        lo, hi = _INT_RANGES.get(key, (0, 2**31 - 1))
        if not _int(value) or not lo <= value <= hi:
            raise InterpError(f"{where} must be an int in {lo}..{hi}, got {_short(value)}")
        return
    if isinstance(default, float):
        if not _number(value) or abs(value) > _MAX_FLOAT:
            raise InterpError(f"{where} must be a finite number, got {_short(value)}")
        if (key in _POSITIVE and value <= 0) or (key in _NON_NEGATIVE and value < 0):
            sign = "> 0" if key in _POSITIVE else ">= 0"
            raise InterpError(f"{where} must be {sign}, got {_short(value)}")
        if key == "width_jitter" and value >= 1:
            raise InterpError(f"{where} must be below 1, got {_short(value)}")
        return
    if isinstance(default, (list, tuple)):
        if (not isinstance(value, (list, tuple)) or len(value) != len(default)
                or not all(_number(v) and abs(v) <= _MAX_FLOAT for v in value)):  # fmt: skip
            raise InterpError(
                f"{where} must be a pair [lo, hi] of finite numbers like {list(default)}, "
                f"got {_short(value)}"
            )
        if len(value) == 2 and value[0] > value[1]:
            raise InterpError(f"{where} must have lo <= hi, got {_short(value)}")
        return
    if type(value) is not type(default):
        raise InterpError(f"{where} must be a {type(default).__name__}, got {_short(value)}")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
