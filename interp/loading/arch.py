"""Architecture specs: a torch.nn Sequential as plain data, and back.

An interp checkpoint stores its architecture as a list of
``{"type": "Conv1d", "args": {...}}`` entries (``{"type": "Sequential",
"children": [...]}`` for nesting), never as pickled classes. Rebuilding looks
each type up in :data:`LAYERS`, a fixed table of torch.nn classes, so a file can
only ever name one of them; it never reaches ``getattr`` on an arbitrary name.

Constructor arguments are read back from module attributes. :func:`describe`
proves each entry by rebuilding the layer and comparing its ``extra_repr`` and
parameter shapes, so an attribute this table does not know about is refused at
save time instead of being silently dropped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from interp.errors import InterpError
from interp.loading.messages import one_line

_CONV = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation",
         "groups", "bias", "padding_mode")  # fmt: skip
_MAXPOOL = ("kernel_size", "stride", "padding", "dilation", "return_indices", "ceil_mode")
_BATCHNORM = ("num_features", "eps", "momentum", "affine", "track_running_stats")
_DROPOUT = ("p", "inplace")
_INPLACE = ("inplace",)
_NONE: tuple[str, ...] = ()

# type name -> (class, constructor arguments read from attributes of the same name).
# "bias" means "has a bias parameter" and is read as ``module.bias is not None``.
LAYERS: dict[str, tuple[type[nn.Module], tuple[str, ...]]] = {
    "Conv1d": (nn.Conv1d, _CONV),
    "Conv2d": (nn.Conv2d, _CONV),
    "Linear": (nn.Linear, ("in_features", "out_features", "bias")),
    "MaxPool1d": (nn.MaxPool1d, _MAXPOOL),
    "MaxPool2d": (nn.MaxPool2d, _MAXPOOL),
    "AvgPool1d": (nn.AvgPool1d, ("kernel_size", "stride", "padding", "ceil_mode",
                                 "count_include_pad")),
    "AvgPool2d": (nn.AvgPool2d, ("kernel_size", "stride", "padding", "ceil_mode",
                                 "count_include_pad", "divisor_override")),
    "AdaptiveAvgPool1d": (nn.AdaptiveAvgPool1d, ("output_size",)),
    "AdaptiveAvgPool2d": (nn.AdaptiveAvgPool2d, ("output_size",)),
    "AdaptiveMaxPool1d": (nn.AdaptiveMaxPool1d, ("output_size", "return_indices")),
    "AdaptiveMaxPool2d": (nn.AdaptiveMaxPool2d, ("output_size", "return_indices")),
    "ReLU": (nn.ReLU, _INPLACE),
    "ReLU6": (nn.ReLU6, _INPLACE),
    "LeakyReLU": (nn.LeakyReLU, ("negative_slope", "inplace")),
    "PReLU": (nn.PReLU, ("num_parameters",)),
    "ELU": (nn.ELU, ("alpha", "inplace")),
    "CELU": (nn.CELU, ("alpha", "inplace")),
    "SELU": (nn.SELU, _INPLACE),
    "GELU": (nn.GELU, ("approximate",)),
    "SiLU": (nn.SiLU, _INPLACE),
    "Mish": (nn.Mish, _INPLACE),
    "Hardswish": (nn.Hardswish, _INPLACE),
    "Hardsigmoid": (nn.Hardsigmoid, _INPLACE),
    "Hardtanh": (nn.Hardtanh, ("min_val", "max_val", "inplace")),
    "Softplus": (nn.Softplus, ("beta", "threshold")),
    "Softsign": (nn.Softsign, _NONE),
    "Tanh": (nn.Tanh, _NONE),
    "Sigmoid": (nn.Sigmoid, _NONE),
    "Identity": (nn.Identity, _NONE),
    "Softmax": (nn.Softmax, ("dim",)),
    "LogSoftmax": (nn.LogSoftmax, ("dim",)),
    "Softmin": (nn.Softmin, ("dim",)),
    "Dropout": (nn.Dropout, _DROPOUT),
    "Dropout1d": (nn.Dropout1d, _DROPOUT),
    "Dropout2d": (nn.Dropout2d, _DROPOUT),
    "AlphaDropout": (nn.AlphaDropout, _DROPOUT),
    "BatchNorm1d": (nn.BatchNorm1d, _BATCHNORM),
    "BatchNorm2d": (nn.BatchNorm2d, _BATCHNORM),
    "InstanceNorm1d": (nn.InstanceNorm1d, _BATCHNORM),
    "InstanceNorm2d": (nn.InstanceNorm2d, _BATCHNORM),
    "LayerNorm": (nn.LayerNorm, ("normalized_shape", "eps", "elementwise_affine", "bias")),
    "GroupNorm": (nn.GroupNorm, ("num_groups", "num_channels", "eps", "affine")),
    "Flatten": (nn.Flatten, ("start_dim", "end_dim")),
    "Unflatten": (nn.Unflatten, ("dim", "unflattened_size")),
    "ZeroPad1d": (nn.ZeroPad1d, ("padding",)),
    "ZeroPad2d": (nn.ZeroPad2d, ("padding",)),
    "ConstantPad1d": (nn.ConstantPad1d, ("padding", "value")),
    "ConstantPad2d": (nn.ConstantPad2d, ("padding", "value")),
    "ReflectionPad1d": (nn.ReflectionPad1d, ("padding",)),
    "ReflectionPad2d": (nn.ReflectionPad2d, ("padding",)),
    "ReplicationPad1d": (nn.ReplicationPad1d, ("padding",)),
    "ReplicationPad2d": (nn.ReplicationPad2d, ("padding",)),
    "CircularPad1d": (nn.CircularPad1d, ("padding",)),
    "CircularPad2d": (nn.CircularPad2d, ("padding",)),
    "Upsample": (nn.Upsample, ("size", "scale_factor", "mode", "align_corners",
                               "recompute_scale_factor")),
}  # fmt: skip

# Classes a full pickle of a torch.nn-only model may name (for `safe_globals`).
ALLOWED_CLASSES: tuple[type[nn.Module], ...] = (
    nn.Sequential, *(cls for cls, _ in LAYERS.values())
)
_MAX_DEPTH = 32  # nested Sequentials; a deeper spec is refused, not recursed into
_MAX_INT = 2**31


def _plain(value: Any) -> Any:
    """Return ``value`` as spec data: tuples become lists, torch.Size a list."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def _read_arg(module: nn.Module, name: str) -> Any:
    if name == "bias":
        return getattr(module, "bias", None) is not None
    return _plain(getattr(module, name))


def _layer_name(name: str, module: nn.Module) -> str:
    return f"layer '{name}' ({type(module).__name__})" if name else type(module).__name__


def describe(model: nn.Module, *, _prefix: str = "") -> list[dict[str, Any]]:
    """Return the arch spec of a (nested) ``nn.Sequential`` of torch.nn layers.

    Raises:
        InterpError: a layer is not a plain torch.nn layer from :data:`LAYERS`,
            or its arguments cannot be recovered from its attributes.

    >>> describe(nn.Sequential(nn.ReLU()))
    [{'type': 'ReLU', 'name': '0', 'args': {'inplace': False}}]
    """
    if type(model) is not nn.Sequential:
        raise InterpError(
            f"interp.save needs an nn.Sequential of torch.nn layers, got "
            f"{_layer_name(_prefix, model)}; save its state dict with torch.save(model."
            "state_dict(), path) and load it with `arch='module:factory'` instead"
        )
    spec: list[dict[str, Any]] = []
    for child_name, child in model.named_children():
        name = f"{_prefix}.{child_name}" if _prefix else child_name
        if type(child) is nn.Sequential:
            children = describe(child, _prefix=name)
            spec.append({"type": "Sequential", "name": child_name, "children": children})
            continue
        entry = LAYERS.get(type(child).__name__)
        if entry is None or type(child) is not entry[0]:
            raise InterpError(
                f"cannot save {_layer_name(name, child)}: interp checkpoints hold only "
                f"torch.nn layers ({', '.join(sorted(LAYERS))}); save its state dict "
                "and load it with `arch='module:factory'` instead"
            )
        args = {arg: _read_arg(child, arg) for arg in entry[1]}
        if getattr(child, "affine", False) and child.bias is None:  # torch >= 2.13 norms
            args["bias"] = False
        item = {"type": type(child).__name__, "name": child_name, "args": args}
        rebuilt = _build_layer(item, name)
        if rebuilt.extra_repr() != child.extra_repr() or _shapes(rebuilt) != _shapes(child):
            raise InterpError(
                f"cannot save {_layer_name(name, child)}: its settings "
                f"({child.extra_repr()}) are not all constructor arguments; save its state "
                "dict and load it with `arch='module:factory'` instead"
            )
        spec.append(item)
    return spec


def _data(obj: Any) -> dict[str, Any]:
    """The instance dict of an unpickled object, read without calling any of its methods."""
    try:
        found = object.__getattribute__(obj, "__dict__")
    except AttributeError:
        found = None
    if type(found) is not dict:
        raise InterpError(f"{type(obj).__name__} has no plain attribute dict")
    return found


def _entries(obj: Any, key: str) -> dict[str, Any]:
    table = _data(obj).get(key)
    if table is None:
        return {}
    if not isinstance(table, dict) or not all(type(k) is str for k in table):
        raise InterpError(f"{type(obj).__name__} has a malformed {key}")
    return dict(table)


def describe_data(
    obj: Any, *, _prefix: str = "", _depth: int = 0
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, bool]]:
    """Spec, tensors and training flags of an *unpickled* Sequential, read as data only.

    Unlike :func:`describe`, no method or property of ``obj`` (or of its children) is
    called: constructor arguments, tensors and flags are read from each instance's
    ``__dict__`` and its ``_parameters`` / ``_buffers`` / ``_modules`` dicts; hook
    dicts are never read. The caller builds a fresh model from the spec with trusted
    code and assigns the tensors (see :func:`interp.loading.weights.rebuild_safe`).

    Returns:
        ``(spec, {state key: tensor}, {module name: training flag})``.

    Raises:
        InterpError: a module is not a plain torch.nn layer from :data:`LAYERS`, or an
            argument is missing or not plain data.
    """
    if _depth > _MAX_DEPTH:
        raise InterpError(f"architecture is nested deeper than {_MAX_DEPTH} Sequentials")
    if type(obj) is not nn.Sequential:
        raise InterpError(f"{_layer_name(_prefix, obj)} is not an nn.Sequential")
    spec: list[dict[str, Any]] = []
    state: dict[str, Any] = {}
    flags: dict[str, bool] = {_prefix: _data(obj).get("training") is True}
    for child_name, child in _entries(obj, "_modules").items():
        name = f"{_prefix}.{child_name}" if _prefix else child_name
        if type(child) is nn.Sequential:
            children, sub_state, sub_flags = describe_data(child, _prefix=name,
                                                           _depth=_depth + 1)  # fmt: skip
            spec.append({"type": "Sequential", "name": child_name, "children": children})
            state.update(sub_state)
            flags.update(sub_flags)
            continue
        entry = LAYERS.get(type(child).__name__)
        if entry is None or type(child) is not entry[0]:
            raise InterpError(f"{_layer_name(name, child)} is not a torch.nn layer interp knows")
        attrs = _data(child)
        params = _entries(child, "_parameters")
        args: dict[str, Any] = {}
        for arg in entry[1]:
            if arg == "bias":
                args["bias"] = params.get("bias") is not None
            elif arg in attrs:
                args[arg] = _plain(attrs[arg])
        if attrs.get("affine") is True and "bias" in params and params["bias"] is None:
            args["bias"] = False  # torch >= 2.13 norms without a bias
        spec.append({"type": type(child).__name__, "name": child_name, "args": args})
        flags[name] = attrs.get("training") is True
        for key, tensor in [*params.items(), *_entries(child, "_buffers").items()]:
            if tensor is not None:
                state[f"{name}.{key}"] = tensor
    return spec, state, flags


def _shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _check_value(value: Any, where: str, depth: int = 0) -> Any:
    """Return ``value`` with lists turned into tuples; refuse anything but plain data."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        if abs(value) > _MAX_INT:
            raise InterpError(f"{where} is out of range ({value})")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InterpError(f"{where} is not finite ({value})")
        return value
    if isinstance(value, (list, tuple)) and depth < 2:
        return tuple(_check_value(v, where, depth + 1) for v in value)
    raise InterpError(f"{where} holds {type(value).__name__}, not plain data")


def _build_layer(item: Mapping[str, Any], where: str) -> nn.Module:
    type_name = item.get("type")
    entry = LAYERS.get(type_name) if isinstance(type_name, str) else None
    if entry is None:
        raise InterpError(f"layer '{where}' has unknown type {type_name!r}")
    cls, known = entry
    raw = item.get("args", {})
    if not isinstance(raw, Mapping) or not all(isinstance(k, str) for k in raw):
        raise InterpError(f"layer '{where}' ({type_name}) has malformed args")
    unknown = sorted(set(raw) - set(known) - {"bias"})  # BatchNorm `bias`: torch >= 2.13
    if unknown:
        raise InterpError(f"layer '{where}' ({type_name}) has unknown args {unknown}")
    args = {k: _check_value(v, f"layer '{where}' arg `{k}`") for k, v in raw.items()}
    try:
        with torch.device("meta"):  # no memory for weights until the state dict is assigned
            return cls(**args)
    except Exception as err:  # constructor checks of torch.nn: bad values in the file
        why = one_line(err)
        raise InterpError(f"layer '{where}' ({type_name}) cannot be built: {why}") from None


def build(spec: Any, *, _prefix: str = "", _depth: int = 0) -> nn.Sequential:
    """Return an ``nn.Sequential`` on the meta device built from an arch spec.

    Raises:
        InterpError: the spec names a type outside :data:`LAYERS` or bad arguments.
    """
    if _depth > _MAX_DEPTH:
        raise InterpError(f"architecture is nested deeper than {_MAX_DEPTH} Sequentials")
    if not isinstance(spec, (list, tuple)):
        raise InterpError("architecture is not a list of layers")
    model = nn.Sequential()
    for i, item in enumerate(spec):
        if not isinstance(item, Mapping):
            raise InterpError(f"layer {i} of '{_prefix}' is not a mapping")
        name = item.get("name", str(i))
        if not isinstance(name, str) or not name or "." in name or name in model._modules:
            raise InterpError(f"layer {i} of '{_prefix}' has a bad name {name!r}")
        where = f"{_prefix}.{name}" if _prefix else name
        if item.get("type") == "Sequential":
            child: nn.Module = build(item.get("children"), _prefix=where, _depth=_depth + 1)
        else:
            child = _build_layer(item, where)
        try:
            model.add_module(name, child)
        except (KeyError, TypeError) as err:
            raise InterpError(f"layer '{where}' has a bad name: {one_line(err)}") from None
    return model
