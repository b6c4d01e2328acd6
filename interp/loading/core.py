"""Model and data files -> ``(nn.Module, ModelInfo)`` and :class:`Dataset`.

The format is sniffed from the bytes, never the extension. Every ``torch.load``
passes ``weights_only`` and ``map_location`` explicitly. Whether a pickle may run
code is decided *before* loading, from the globals it names (walked opcode by
opcode, nothing executed); a safe load that fails is never retried unsafely,
because an attacker controls that failure. See docs/SECURITY.md.

>>> interp.save(model, "m.pt", meta={"classes": ["a", "b"]})   # doctest: +SKIP
>>> model, info = interp.load("m.pt")                          # doctest: +SKIP
>>> info.format, info.classes                                  # doctest: +SKIP
('interp-checkpoint', ('a', 'b'))
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from interp._write import write_file
from interp.errors import InterpError
from interp.loading import budget as _budget
from interp.loading import checkpoint as _checkpoint
from interp.loading import formats as _formats
from interp.loading import weights as _weights
from interp.loading.code_archives import load_code_archive
from interp.loading.data import Dataset, load_data
from interp.loading.messages import one_line
from interp.loading.metadata import check_meta, check_recipe
from interp.loading.pickles import load_pickle
from interp.loading.weights import (
    apply_arch,
    describe_content,
    is_state_dict,
    rebuild_safe,
    unwrap,
)

__all__ = ["Dataset", "ModelInfo", "load", "load_data", "save"]

@dataclass(frozen=True)
class ModelInfo:
    """What :func:`load` found: file identity, format, and the metadata it carried.

    ``format`` is one of "interp-checkpoint", "pickle", "state-dict",
    "safetensors", "torchscript", "export". ``recipe`` is the zoo ``Recipe``
    from ``meta["recipe"]`` or None. ``notes`` says what loading adjusted
    (a stripped ``module.`` prefix, a rebuilt TorchScript model, ...).
    """

    path: str
    format: str
    sha256: str
    parameters: int
    classes: tuple[str, ...] | None = None
    input_shape: tuple[int, ...] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    recipe: object | None = None
    notes: tuple[str, ...] = ()
    exported: Any = None  # the torch.export ExportedProgram of a .pt2, for its graph
    batch_size: int | None = None  # a batch size fixed at export time, if any

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe identity of the model file (the report's ``model`` section)."""
        return {
            "path": self.path,
            "format": self.format,
            "sha256": self.sha256,
            "parameters": self.parameters,
        }


def save(model: nn.Module, path: str | os.PathLike[str], *, meta: Mapping[str, Any] | None = None,
         force: bool = True) -> None:  # fmt: skip
    """Write ``model`` as an interp checkpoint that loads without trusting the file.

    The model must be a (nested) ``nn.Sequential`` of torch.nn layers; its
    architecture is stored as data, its training flags and frozen parameters are
    kept. The file is written to a temporary name beside ``path``, then renamed.

    Args:
        model: the model; not modified.
        path: destination file.
        meta: JSON-like metadata: ``classes``, ``input_shape`` (no batch axis),
            ``axis``, ``recipe``, ``training``, ``name``, or anything else plain.
        force: replace an existing file (the default, like ``torch.save``); False
            refuses instead. Written through interp's one writer: atomic, with the
            user's umask, nothing else touched.

    Raises:
        InterpError: a layer is not a torch.nn layer, or ``meta`` is not plain data.

    >>> save(nn.Sequential(nn.Conv1d(1, 4, 5), nn.ReLU()), "m.pt")   # doctest: +SKIP
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be an nn.Module, got {type(model).__name__}")
    payload = _checkpoint.pack(model, meta)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_file(path, buffer.getvalue(), force=force, what="the checkpoint")


def load(
    path: str | os.PathLike[str],
    *,
    trust: bool = False,
    arch: str | Callable[..., nn.Module] | None = None,
    arch_kwargs: Mapping[str, Any] | None = None,
    input_shape: tuple[int, ...] | None = None,
    max_memory: int | str | None = None,
) -> tuple[nn.Module, ModelInfo]:
    """Load a model file of any supported format; refuse files that could run code.

    Args:
        path: an interp checkpoint, a ``torch.save`` of a torch.nn model or of a
            state dict, a ``.safetensors`` file, or (with ``trust``) a pickle with
            custom classes, a TorchScript archive or a ``torch.export`` ``.pt2``.
        trust: allow formats that run code from the file while loading.
        arch: for weights-only files: ``"package.module:factory"`` (or
            ``"path/to/file.py:factory"``) imported and called with
            ``arch_kwargs``, or a callable; the weights are loaded into the model
            it returns, strictly.
        arch_kwargs: keyword arguments for the factory, literals only (see
            :func:`parse_arch_kwargs` for the CLI's ``num_classes=10`` form).
        input_shape: input shape without the batch axis, overriding the file's.
        max_memory: bytes (or a size such as ``"8G"``) loading may allocate; the
            default is :func:`~interp.loading.budget.default_budget` of the file
            size. Declared sizes over it are refused before anything is allocated.

    Returns:
        ``(model, info)``; the model is on the CPU with the training flags it was
        saved with.

    Raises:
        InterpError: the file is missing, empty, corrupt, not a model, unsafe
            without ``trust``, over the memory budget, or its weights do not fit
            ``arch``.

    >>> model, info = load("trained/seed_cnn.pt")        # doctest: +SKIP
    >>> info.format, info.parameters                     # doctest: +SKIP
    ('interp-checkpoint', 516227)
    """
    shape = _check_shape(input_shape)
    label = str(path)
    factory = _factory(arch, arch_kwargs)
    data = _read(Path(path), label)
    budget = _budget.Budget(label, _limit(max_memory, len(data)))
    digest = hashlib.sha256(data).hexdigest()
    extra: dict[str, Any] = {}
    model, fmt, meta, notes = _load_model(data, label, trust=trust, arch=factory,
                                          budget=budget, extra=extra)  # fmt: skip
    _check_materialised(model, label)
    check_meta(meta, label)
    if shape is None and meta.get("input_shape") is not None:
        shape = tuple(meta["input_shape"])
        budget.sample(shape, "its metadata's `input_shape`")
    classes = meta.get("classes")
    info = ModelInfo(
        path=label,
        format=fmt,
        sha256=digest,
        parameters=sum(p.numel() for p in model.parameters()),
        classes=tuple(classes) if classes is not None else None,
        input_shape=shape,
        meta=meta,
        recipe=_recipe(meta, label, budget),
        notes=tuple(notes),
        exported=extra.get("exported"),
        batch_size=extra.get("batch_size"),
    )
    return model, info


def _limit(max_memory: int | str | None, size: int) -> int:
    if max_memory is None:
        return _budget.default_budget(size)
    return _budget.parse_memory(max_memory)


def _factory(arch: Any, kwargs: Mapping[str, Any] | None) -> Any:
    """``arch`` with ``arch_kwargs`` bound (a string spec is imported later, on demand)."""
    if kwargs is None:
        return arch
    if arch is None:
        raise InterpError("`arch_kwargs` needs `arch`; pass --arch package.module:factory too")
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise TypeError(f"`arch_kwargs` must be a dict with str keys, got {kwargs!r}")
    return _weights.Factory(arch, dict(kwargs))


def _check_shape(shape: Any) -> tuple[int, ...] | None:
    if shape is None:
        return None
    if not isinstance(shape, (tuple, list)) or not shape or not all(
        isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape
    ):
        raise ValueError(
            f"`input_shape` must be a tuple of positive ints without the batch axis, such "
            f"as (1, 64); got {shape!r}"
        )
    return tuple(shape)


def _read(path: Path, label: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InterpError(f"{label} does not exist; check the path") from None
    except IsADirectoryError:
        raise InterpError(f"{label} is a directory; pass the model file inside it") from None
    except OSError as err:
        raise InterpError(f"cannot read {label} ({err.strerror}); check its permissions") from None


def _load_model(
    data: bytes, label: str, *, trust: bool, arch: Any, budget: _budget.Budget,
    extra: dict[str, Any],
) -> tuple[nn.Module, str, dict[str, Any], list[str]]:  # fmt: skip
    kind = _formats.sniff(data)
    notes: list[str] = []
    if kind == "empty":
        raise InterpError(f"{label} is empty (0 bytes); save the model again")
    if data[:2] == b"PK":
        _budget.check_zip(data, budget)
    if kind in ("torchscript", "export"):
        if arch is not None:
            raise InterpError(
                f"`arch` is for weights-only files, but {label} is a "
                f"{'TorchScript archive' if kind == 'torchscript' else 'torch.export program'}; "
                "drop --arch"
            )
        return load_code_archive(data, label, kind, trust=trust, notes=notes, extra=extra)
    if kind == "safetensors":
        state = _load_safetensors(data, label)
        model = apply_arch(state, arch, label, notes, fmt="safetensors")
        return model, "safetensors", {}, notes
    if kind in ("torch-zip", "legacy-pickle", "pickle"):
        obj = load_pickle(data, label, kind, trust=trust, budget=budget)
        return _from_object(obj, label, trust=trust, arch=arch, notes=notes)
    raise InterpError(_formats.not_a_model(data, label, kind))


def _load_safetensors(data: bytes, label: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load as st_load

    try:
        return st_load(data)
    except Exception:  # untrusted bytes: SafetensorError, but also others
        raise InterpError(f"{label} is a truncated or corrupt safetensors file") from None


def _from_object(
    obj: Any, label: str, *, trust: bool, arch: str | Callable[[], nn.Module] | None,
    notes: list[str],
) -> tuple[nn.Module, str, dict[str, Any], list[str]]:  # fmt: skip
    if _checkpoint.is_checkpoint(obj):
        saved, meta = _checkpoint.unpack(obj, label)
        if arch is None:
            return saved, "interp-checkpoint", meta, notes
        model = apply_arch(saved.state_dict(), arch, label, notes, fmt="interp-checkpoint")
        return model, "interp-checkpoint", meta, notes
    obj = unwrap(obj, label, notes)
    if isinstance(obj, nn.Module):
        if arch is not None:
            model = apply_arch(obj.state_dict(), arch, label, notes, fmt="pickle")
            return model, "pickle", {}, notes
        return (obj if trust else rebuild_safe(obj, label)), "pickle", {}, notes
    if is_state_dict(obj):
        return apply_arch(obj, arch, label, notes, fmt="state-dict"), "state-dict", {}, notes
    raise InterpError(
        f"{label} is not a model: it holds {describe_content(obj)}; pass a saved model, "
        "a state dict with --arch, or an interp checkpoint"
    )


def _check_materialised(model: nn.Module, label: str) -> None:
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.device.type == "meta":
            raise InterpError(f"{label} has no values for `{name}`; save the model again")


def _recipe(meta: Mapping[str, Any], label: str, budget: _budget.Budget) -> object | None:
    if "recipe" not in meta:
        return None
    from interp.zoo import recipe_from_meta
    from interp.zoo.datasets import GENERATORS

    check_recipe(meta["recipe"], label, {k: m.DEFAULTS for k, m in GENERATORS.items()})
    try:
        recipe = recipe_from_meta(dict(meta))
    except (InterpError, ValueError, TypeError, KeyError) as err:  # the file's meta is untrusted
        raise InterpError(f"{label} has a malformed dataset recipe: {one_line(err)}") from None
    if recipe is not None:
        budget.sample(tuple(recipe.input_shape), "its recipe's input shape")
    return recipe
