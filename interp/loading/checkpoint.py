"""The interp checkpoint: a plain dict that ``torch.load(weights_only=True)`` reads
with no allowlist at all.

``{"format": "interp.checkpoint/1", "arch": [...], "state_dict": {...},
"meta": {...}, "training": {module name: bool}, "frozen": [parameter names]}``.
``arch`` is data (see :mod:`interp.loading.arch`), ``meta`` is JSON-like data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from interp.errors import InterpError
from interp.loading import arch as _arch
from interp.loading.messages import few, one_line
from interp.loading.metadata import check_meta

FORMAT = "interp.checkpoint/1"
_MAX_META_DEPTH = 16


def plain_meta(value: Any, where: str = "meta", depth: int = 0) -> Any:
    """Return a copy of ``value`` as JSON-like data (tuples become lists).

    Raises:
        InterpError: a value is not str/int/float/bool/None/list/dict with str keys,
            or a float is NaN/Inf (reports are strict JSON).

    >>> plain_meta({"input_shape": (1, 64)})
    {'input_shape': [1, 64]}
    """
    if depth > _MAX_META_DEPTH:
        raise InterpError(f"`{where}` is nested deeper than {_MAX_META_DEPTH} levels")
    if value is None or isinstance(value, bool):
        return value
    # Subclasses (torch.__version__ is a TorchVersion, an IntEnum is an int) would be
    # pickled as their class, which a weights-only load refuses: store the plain value.
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InterpError(f"`{where}` is {value}; store only finite numbers in meta")
        return float(value)
    if isinstance(value, (list, tuple)):
        return [plain_meta(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for key, v in value.items():
            if not isinstance(key, str):
                raise InterpError(f"`{where}` has a non-string key {key!r}; use str keys")
            out[key] = plain_meta(v, f"{where}[{key!r}]", depth + 1)
        return out
    raise InterpError(
        f"`{where}` is a {type(value).__name__}; meta holds only str, int, float, bool, "
        "None, lists and dicts (convert tensors and arrays with .tolist())"
    )


def check_known_meta(meta: Mapping[str, Any], label: str = "interp.save") -> None:
    """Check the types and ranges of the metadata keys interp itself reads.

    Raises:
        InterpError: see :func:`interp.loading.metadata.check_meta`.
    """
    check_meta(meta, label)


def pack(model: nn.Module, meta: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return the checkpoint dict for ``model`` (which is not modified).

    A (nested) Sequential of torch.nn layers is stored as data (``arch``); any other
    module whose classes are importable is stored as a pickled ``module`` (its
    classes by import path), which loads only with trust.

    Raises:
        InterpError: a class cannot be imported by path (defined in ``__main__`` or
            inside a function), or ``meta`` is not plain data.
    """
    clean = plain_meta(dict(meta or {}))
    check_known_meta(clean)
    try:
        arch = _arch.describe(model)
    except InterpError as err:
        _check_importable(model, err)
        return {"format": FORMAT, "module": model, "meta": clean,
                "classes": sorted({_qualified(type(m)) for m in model.modules()})}  # fmt: skip
    return {
        "format": FORMAT,
        "arch": arch,
        "state_dict": model.state_dict(),
        "meta": clean,
        "training": {name: m.training for name, m in model.named_modules()},
        "frozen": [name for name, p in model.named_parameters() if not p.requires_grad],
    }


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _check_importable(model: nn.Module, why: InterpError) -> None:
    """Refuse classes that another process could not import by ``module.qualname``."""
    import importlib

    for cls in {type(m) for m in model.modules()}:
        where = _qualified(cls)
        found: Any = None
        if cls.__module__ != "__main__" and "<locals>" not in cls.__qualname__:
            try:
                found = importlib.import_module(cls.__module__)
                for part in cls.__qualname__.split("."):
                    found = getattr(found, part)
            except (ImportError, AttributeError):
                found = None
        if found is not cls:
            raise InterpError(
                f"cannot save {where}: it is not a Sequential of torch.nn layers ({why}), and "
                "its class cannot be imported by path; define it in a .py module (not the "
                "script you run or a function) so the checkpoint can name it"
            )


def is_checkpoint(obj: Any) -> bool:
    return isinstance(obj, Mapping) and obj.get("format") == FORMAT


def unpack(obj: Mapping[str, Any], label: str) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model and return it with its meta.

    Raises:
        InterpError: the arch, state dict or meta of the file ``label`` is malformed.
    """
    fix = "re-save it with interp.save(model, path)"
    if "module" in obj:  # an importable custom module: only reachable with trust
        module, meta = obj["module"], obj.get("meta", {})
        if not isinstance(module, nn.Module) or not isinstance(meta, Mapping):
            raise InterpError(f"{label} has a malformed module entry; {fix}")
        meta = plain_meta(meta)
        check_known_meta(meta, label)
        return module, meta
    try:
        model = _arch.build(obj.get("arch"))
    except InterpError as err:
        raise InterpError(f"{label} has a malformed architecture ({err}); {fix}") from None
    state = obj.get("state_dict")
    if not isinstance(state, Mapping):
        raise InterpError(f"{label} has no state dict; {fix}")
    meta = obj.get("meta", {})
    if not isinstance(meta, Mapping):
        raise InterpError(f"{label} has malformed meta; {fix}")
    try:
        meta = plain_meta(meta)
    except InterpError as err:
        raise InterpError(f"{label} has malformed meta ({err}); {fix}") from None
    check_known_meta(meta, label)
    assign_state(model, state, label)
    training = obj.get("training", {})
    modules = dict(model.named_modules())
    if isinstance(training, Mapping):
        for name, flag in training.items():
            if name in modules and isinstance(flag, bool):
                modules[name].training = flag
    frozen = obj.get("frozen", [])
    params = dict(model.named_parameters())
    if isinstance(frozen, (list, tuple)):
        for name in frozen:
            if isinstance(name, str) and name in params:
                params[name].requires_grad_(False)
    return model, meta


def assign_state(model: nn.Module, state: Mapping[str, Any], label: str) -> None:
    """Load ``state`` into a meta-device ``model`` by assignment, strictly.

    Raises:
        InterpError: keys or shapes differ, naming a few of them.
    """
    expected = model.state_dict()
    problems = key_problems(expected, state)
    if problems:
        raise InterpError(
            f"{label} does not match its own architecture ({problems}); "
            "re-save it with interp.save(model, path)"
        )
    try:
        model.load_state_dict(dict(state), strict=True, assign=True)
    except Exception as err:  # dtype or device oddities in a hand-made file
        raise InterpError(f"{label} has weights that cannot be loaded: {one_line(err)}") from None


def key_problems(expected: Mapping[str, torch.Tensor], given: Mapping[str, Any]) -> str:
    """Describe missing, unexpected and mis-shaped keys (a few each); '' if none."""
    missing = [k for k in expected if k not in given]
    unexpected = [str(k) for k in given if k not in expected]
    shapes = []
    for key, value in expected.items():
        if key not in given:
            continue
        got = given[key]
        if not isinstance(got, torch.Tensor):
            shapes.append(f"{key} is a {type(got).__name__}, not a tensor")
        elif not plain_tensor(got) or got.is_floating_point() != value.is_floating_point():
            shapes.append(f"{key} is {describe_tensor(got)}")
        elif tuple(got.shape) != tuple(value.shape):
            shapes.append(f"{key} is {tuple(got.shape)}, expected {tuple(value.shape)}")
    parts = []
    if missing:
        parts.append("missing keys: " + few(missing))
    if unexpected:
        parts.append("unexpected keys: " + few(unexpected))
    if shapes:
        parts.append("wrong shapes: " + few(shapes))
    return "; ".join(parts)


def describe_tensor(t: torch.Tensor) -> str:
    """``a quantized torch.qint8 tensor``: what kind of tensor ``t`` is, for messages."""
    dtype = str(t.dtype).removeprefix("torch.")
    if t.is_quantized:
        return f"a quantized {dtype} tensor (dequantize it with .dequantize() before saving)"
    if getattr(t, "is_nested", False):
        return f"a nested {dtype} tensor"
    if t.device.type != "cpu":
        return f"a {dtype} tensor on {t.device}"
    if t.layout != torch.strided:
        return f"a {str(t.layout).removeprefix('torch.')} {dtype} tensor (save it dense)"
    if type(t) not in (torch.Tensor, nn.Parameter):
        return f"a {type(t).__name__} (a tensor subclass)"
    return f"a {dtype} tensor"


def plain_tensor(t: torch.Tensor) -> bool:
    """A dense CPU tensor with values (not sparse, quantized, nested or on meta)."""
    return (
        t.layout == torch.strided
        and t.device.type == "cpu"
        and not t.is_quantized
        and not getattr(t, "is_nested", False)
        and type(t) in (torch.Tensor, nn.Parameter)
    )
