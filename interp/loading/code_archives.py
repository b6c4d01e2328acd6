"""Archives that carry code (TorchScript, ``torch.export`` ``.pt2``): refused without
trust; with trust, loaded so that interp's layer hooks can still fire.

TorchScript modules accept no forward hooks, so a scripted ``nn.Sequential`` of
torch.nn layers is rebuilt as eager layers, each checked against the compiled
code of the torch.nn layer it claims to be. A ``.pt2`` is unflattened
(``torch.export.unflatten``) into submodules named as in the original model.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import torch
from torch import nn

from interp.errors import InterpError
from interp.loading import arch as _arch
from interp.loading import formats as _formats
from interp.loading.messages import few, one_line
from interp.loading.pickles import TRUST_FIX


def load_code_archive(
    data: bytes, label: str, kind: str, *, trust: bool, notes: list[str],
    extra: dict[str, Any] | None = None,
) -> tuple[nn.Module, str, dict[str, Any], list[str]]:  # fmt: skip
    """Load a TorchScript archive or ``.pt2`` (trust only); ``extra`` receives, for a
    ``.pt2``, the ExportedProgram (``"exported"``) and its fixed batch size (``"batch_size"``).
    """
    extra = {} if extra is None else extra
    if kind == "torchscript":
        if not trust:
            code = ", ".join(_formats.torchscript_code(data)) or "unknown modules"
            raise InterpError(
                f"{label} is a TorchScript archive, which runs its own code when loaded "
                f"(code for {code}); {TRUST_FIX}"
            )
        try:
            with warnings.catch_warnings():  # deprecated in torch >= 2.10, still the loader
                warnings.simplefilter("ignore", DeprecationWarning)
                scripted = torch.jit.load(io.BytesIO(data), map_location="cpu")
        except Exception as err:
            why = one_line(err)
            raise InterpError(f"{label} is a damaged TorchScript archive ({why})") from None
        return eager_from_script(scripted, notes), "torchscript", {}, notes
    if not trust:
        raise InterpError(
            f"{label} is a torch.export program (.pt2), which unpickles content when loaded; "
            f"{TRUST_FIX}"
        )
    try:
        with warnings.catch_warnings():  # torch-internal pytree FutureWarning (torch 2.13)
            warnings.simplefilter("ignore", FutureWarning)
            program = torch.export.load(io.BytesIO(data))
            module = torch.export.unflatten(program)
    except Exception as err:
        raise InterpError(f"{label} is a damaged torch.export program ({one_line(err)})") from None
    extra["exported"] = program
    batch = fixed_batch_size(program)
    extra["batch_size"] = batch
    fixed = f"its batch size is fixed at {batch}" if batch else "its batch size is dynamic"
    notes.append(
        "torch.export program unflattened so layer hooks fire; its layers are "
        f"InterpreterModules, and {fixed}"
    )
    return module, "export", {}, notes


def fixed_batch_size(program: Any) -> int | None:
    """The batch size a torch.export program was exported with, when it is static.

    Read from the first user input's example value (``node.meta["val"]``); None when
    the batch axis is symbolic (exported with ``dynamic_shapes``) or unknown.
    """
    try:
        names = set(program.graph_signature.user_inputs)
        for node in program.graph_module.graph.nodes:
            if node.op == "placeholder" and node.name in names:
                val = node.meta.get("val")
                size = val.shape[0] if val is not None and val.dim() else None
                return size if isinstance(size, int) else None
    except Exception:  # torch internals differ between versions: no claim then
        return None
    return None


def eager_from_script(scripted: Any, notes: list[str]) -> nn.Module:
    """Turn a scripted Sequential of torch.nn layers back into eager layers.

    TorchScript modules accept no forward hooks, so interp could not record
    their layers. Each child whose compiled code equals that of the torch.nn layer
    rebuilt from its attributes is replaced by that eager layer, with the same
    weights; other children stay scripted (their insides cannot be recorded).
    """
    if getattr(scripted, "original_name", None) != "Sequential":
        notes.append(
            "TorchScript model is not a Sequential: forward hooks are unavailable, so "
            "per-layer recording is not possible"
        )
        return scripted  # type: ignore[no-any-return]
    kept: list[str] = []
    model = _eager_sequential(scripted, "", kept)
    notes.append("TorchScript Sequential rebuilt as eager torch.nn layers so hooks fire")
    if kept:
        notes.append(f"layers kept as TorchScript (no hooks inside): {few(kept)}")
    return model


def _eager_sequential(scripted: Any, prefix: str, kept: list[str]) -> nn.Sequential:
    out = nn.Sequential()
    for name, child in scripted.named_children():
        where = f"{prefix}.{name}" if prefix else name
        kind = getattr(child, "original_name", "")
        if kind == "Sequential":
            out.add_module(name, _eager_sequential(child, where, kept))
            continue
        layer = _eager_layer(child, kind)
        if layer is None:
            kept.append(where)
            layer = child
        out.add_module(name, layer)
    out.train(bool(scripted.training))
    return out


def _eager_layer(child: Any, kind: str) -> nn.Module | None:
    entry = _arch.LAYERS.get(kind)
    if entry is None:
        return None
    cls, names = entry
    try:
        args = {n: _arch._read_arg(child, n) for n in names}
        args = {k: tuple(v) if isinstance(v, list) else v for k, v in args.items()}
        layer = cls(**args)
        layer.load_state_dict(child.state_dict(), strict=True)
        with warnings.catch_warnings():  # torch >= 2.10 deprecates TorchScript; we only read it
            warnings.simplefilter("ignore", DeprecationWarning)
            code = torch.jit.script(layer).code
        if code != child.code:  # a custom class that happens to share the name
            return None
    except Exception:  # attribute missing or different: keep the scripted layer
        return None
    layer.train(bool(child.training))
    return layer
