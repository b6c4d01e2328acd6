"""From a loaded object to a module: unwrap training checkpoints, load weights into
a user's architecture strictly, rebuild safe pickles and TorchScript Sequentials
as eager torch.nn layers.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from interp.errors import InterpError
from interp.loading import arch as _arch
from interp.loading.checkpoint import assign_state, key_problems
from interp.loading.messages import few, one_line

# Keys under which training scripts commonly nest the weights, most specific first.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "module")
# Prefixes that wrappers add to every key: DataParallel, torch.compile, Lightning.
_PREFIXES = ("module.", "_orig_mod.", "model.")


def is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and bool(obj)
        and all(isinstance(k, str) for k in obj)
        and all(isinstance(v, torch.Tensor) for v in obj.values())
    )


def unwrap(obj: Any, label: str, notes: list[str]) -> Any:
    """Return the unique state dict or module inside a training-checkpoint dict.

    A dict that is itself a state dict, or holds no candidate, is returned as is.

    Raises:
        InterpError: several candidates and none under a usual key.
    """
    if not isinstance(obj, Mapping) or is_state_dict(obj):
        return obj
    found = [k for k, v in obj.items() if is_state_dict(v) or isinstance(v, nn.Module)]
    if not found:
        return obj
    known = [k for k in _WRAPPER_KEYS if k in found]
    if len(found) == 1 or len(known) == 1:
        key = found[0] if len(found) == 1 else known[0]
        notes.append(f"took the weights from the file's {key!r} entry")
        return obj[key]
    raise InterpError(
        f"{label} holds several models or state dicts ({few([str(k) for k in found])}); "
        "save the one to analyse on its own"
    )


def describe_content(obj: Any) -> str:
    """A few words on what a non-model object is, for error messages."""
    if isinstance(obj, torch.Tensor):
        return f"a single tensor of shape {tuple(obj.shape)}"
    if isinstance(obj, Mapping):
        if not obj:
            return "an empty dict"
        keys = [str(k) for k in list(obj)[:4]]
        return f"a dict of non-tensor values (keys: {', '.join(keys)})"
    return f"a {type(obj).__name__}"


def _import_factory(spec: str, label: str) -> Callable[[], Any]:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise InterpError(
            f"`arch` {spec!r} must look like 'package.module:factory' or 'file.py:factory'"
        )
    try:
        if module_name.endswith(".py"):
            file = Path(module_name)
            if not file.is_file():
                raise InterpError(f"`arch` file {module_name} does not exist; check the path")
            loader_spec = importlib.util.spec_from_file_location(file.stem, file)
            if loader_spec is None or loader_spec.loader is None:
                raise InterpError(f"`arch` file {module_name} cannot be imported")
            module = importlib.util.module_from_spec(loader_spec)
            loader_spec.loader.exec_module(module)
        else:
            module = _import_module(module_name)
    except ModuleNotFoundError as err:
        raise InterpError(
            f"`arch` module {module_name!r} not found ({err}); run from the directory that "
            "contains it, install it, or pass 'path/to/file.py:factory'"
        ) from None
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise InterpError(f"`arch` {spec!r}: {module_name} has no attribute {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise InterpError(f"`arch` {spec!r} is not callable; name a class or a function")
    return target  # type: ignore[no-any-return]


def _import_module(name: str) -> Any:
    """Import ``name``, looking in the working directory too (as ``python -m`` would)."""
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


class Factory:
    """An ``arch`` (spec string or callable) with keyword arguments bound to it."""

    def __init__(self, arch: str | Callable[..., Any], kwargs: dict[str, Any]) -> None:
        self.arch, self.kwargs = arch, kwargs

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"{self.arch!r} with {args}" if args else repr(self.arch)


_LITERAL = (int, float, complex, str, bytes, bool, type(None))


def parse_arch_kwargs(text: str) -> dict[str, Any]:
    """``"num_classes=10,in_chans=1"`` -> ``{"num_classes": 10, "in_chans": 1}``, literals only.

    Each value goes through :func:`ast.literal_eval` (numbers, strings, True/False/None,
    tuples and lists of them); anything else is kept as a plain string only when it
    is a bare word (``mode=fast``). Nothing is evaluated as code.

    Raises:
        InterpError: an item is not ``name=value`` or a name is not an identifier.

    >>> parse_arch_kwargs("num_classes=10,in_chans=1,name=resnet,sizes=(3, 4)")
    {'num_classes': 10, 'in_chans': 1, 'name': 'resnet', 'sizes': (3, 4)}
    """
    import ast

    out: dict[str, Any] = {}
    for item in _split_top_level(text):
        if not item.strip():
            continue
        key, sep, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or not key.isidentifier():
            raise InterpError(
                f"`arch_kwargs` item {item.strip()!r} must look like name=value, as in "
                "num_classes=10,in_chans=1"
            )
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            if not raw.replace("_", "").replace("-", "").replace(".", "").isalnum():
                raise InterpError(
                    f"`arch_kwargs` value {raw!r} for {key!r} is not a literal; use numbers, "
                    "quoted strings, True/False/None, or tuples of them"
                ) from None
            value = raw
        if not _is_literal(value):
            raise InterpError(f"`arch_kwargs` value for {key!r} is not plain data: {raw!r}")
        out[key] = value
    return out


def _is_literal(value: Any, depth: int = 0) -> bool:
    if isinstance(value, _LITERAL):
        return True
    if isinstance(value, (tuple, list, set)) and depth < 4:
        return all(_is_literal(v, depth + 1) for v in value)
    if isinstance(value, dict) and depth < 4:
        return all(_is_literal(k, depth + 1) and _is_literal(v, depth + 1)
                   for k, v in value.items())  # fmt: skip
    return False


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def split_model_arch(text: str) -> tuple[str, str | None]:
    """``"MODEL::module:factory"`` -> ``("MODEL", "module:factory")``; else ``(text, None)``.

    For ``interp compare``, where each model may carry its own architecture.

    >>> split_model_arch("weights.pt::mypkg.nets:small")
    ('weights.pt', 'mypkg.nets:small')
    >>> split_model_arch("model.pt")
    ('model.pt', None)
    """
    model, sep, arch = str(text).rpartition("::")
    if not sep:
        return str(text), None
    if not model or not arch:
        raise InterpError(
            f"{text!r} must look like MODEL::package.module:factory (both parts non-empty)"
        )
    return model, arch


def _call_factory(arch: Any, label: str) -> nn.Module:
    kwargs: dict[str, Any] = {}
    if isinstance(arch, Factory):
        arch, kwargs = arch.arch, arch.kwargs
    factory = _import_factory(arch, label) if isinstance(arch, str) else arch
    if not callable(factory):
        raise TypeError(f"`arch` must be 'module:factory' or a callable, got {arch!r}")
    try:
        required = [
            p.name for p in inspect.signature(factory).parameters.values()
            if p.default is p.empty and p.name not in kwargs
            and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]  # fmt: skip
    except (TypeError, ValueError):  # builtins without a signature
        required = []
    if required:
        raise InterpError(
            f"`arch` {arch!r} needs arguments ({', '.join(required)}); pass them with "
            f"--arch-kwargs {required[0]}=... (arch_kwargs= in Python)"
        )
    try:
        model = factory(**kwargs)
    except TypeError as err:
        if not kwargs:
            raise
        raise InterpError(f"`arch` {arch!r} refused `arch_kwargs` {kwargs}: {one_line(err)}"
                          ) from None  # fmt: skip
    if not isinstance(model, nn.Module):
        raise InterpError(f"`arch` {arch!r} returned a {type(model).__name__}, not an nn.Module")
    return model


def apply_arch(
    state: Mapping[str, Any], arch: Any, label: str,
    notes: list[str], *, fmt: str,
) -> nn.Module:  # fmt: skip
    """Build the model from ``arch`` and load ``state`` into it strictly.

    A prefix such as ``module.`` is stripped automatically when that alone makes
    the keys match (and a note says so).

    Raises:
        InterpError: no ``arch``, or keys/shapes that do not match (a few listed).
    """
    if arch is None:
        kind = "a safetensors file" if fmt == "safetensors" else "a state dict (weights only)"
        raise InterpError(
            f"{label} is {kind} and needs its architecture: pass --arch "
            "package.module:factory (arch= in Python) naming a function that builds the model"
        )
    model = _call_factory(arch, label)
    expected = model.state_dict()
    state = dict(state)
    problems = key_problems(expected, state)
    if problems:
        for prefix in _PREFIXES:
            if all(k.startswith(prefix) for k in state):
                stripped = {k[len(prefix):]: v for k, v in state.items()}
                if not key_problems(expected, stripped):
                    state = stripped
                    notes.append(f"stripped the {prefix!r} prefix from every weight name")
                    problems = ""
                    break
    if problems:
        hint = ""
        if any(k.startswith(_PREFIXES) for k in state):
            hint = " (keys start with a wrapper prefix such as 'module.'; strip it)"
        raise InterpError(
            f"{label} does not fit `arch` {arch!r}: {problems}{hint}; check that --arch builds "
            "the model these weights were trained with"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise InterpError(f"{label} does not fit `arch` {arch!r}: {one_line(err)}") from None
    return model


def rebuild_safe(obj: nn.Module, label: str) -> nn.Module:
    """Rebuild a safely unpickled torch.nn model from data only, dropping any extra state.

    The unpickled object contributes its constructor arguments, tensors and training
    flags, read from instance dicts (:func:`interp.loading.arch.describe_data`); no
    method of it runs (``state_dict`` would call its ``_state_dict_pre_hooks``, which
    the file chooses). The model is built fresh by trusted code, the tensors assigned
    strictly by name and shape; hooks and every other attribute are dropped.

    Raises:
        InterpError: the model is not an nn.Sequential of known torch.nn layers.
    """
    try:
        spec, state, flags = _arch.describe_data(obj)
        model = _arch.build(spec)
    except InterpError as err:
        raise InterpError(f"{label} holds a model interp cannot rebuild: {err}") from None
    expected = model.state_dict()
    state = {k: v for k, v in state.items() if k in expected or not _non_persistent(model, k)}
    assign_state(model, state, label)
    for name, module in model.named_modules():
        module.training = bool(flags.get(name, False))
    for name, param in model.named_parameters():
        param.requires_grad_(bool(state[name].requires_grad))
    return model


def _non_persistent(model: nn.Module, key: str) -> bool:
    """``key`` names a buffer the fresh model keeps out of its state dict."""
    owner, _, leaf = key.rpartition(".")
    try:
        module = model.get_submodule(owner)
    except AttributeError:
        return False
    return leaf in module._non_persistent_buffers_set
