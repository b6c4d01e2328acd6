"""Strict JSON for reports: sorted keys, no NaN, nothing that json cannot write."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from interp._util import json_float

SCHEMA = "interp.report/1"
COMPARE_SCHEMA = "interp.compare/1"
# Keys that change from run to run by nature; everything else is a function of the inputs.
VOLATILE = ("created", "timings")


def jsonable(value: Any) -> Any:
    """Return ``value`` as plain JSON data: NaN/Inf -> None, tuples -> lists, tensors -> lists.

    >>> jsonable({"a": (1, float("nan")), "b": 2.5})
    {'a': [1, None], 'b': 2.5}
    """
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return json_float(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    tolist = getattr(value, "tolist", None)  # torch tensors, numpy arrays and scalars
    if callable(tolist):
        return jsonable(tolist())
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return jsonable(to_dict())
    raise TypeError(f"cannot write {type(value).__name__} to report JSON")


def dumps(data: Mapping[str, Any]) -> str:
    """Strict, sorted, indented JSON text (raises ValueError on NaN)."""
    return json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n"


def without_volatile(data: Any) -> Any:
    """``data`` with every ``created`` and ``timings`` key removed, at any depth."""
    if isinstance(data, Mapping):
        return {k: without_volatile(v) for k, v in data.items() if k not in VOLATILE}
    if isinstance(data, list):
        return [without_volatile(v) for v in data]
    return data
