"""One forward pass with a hook on every leaf module, recorded in firing order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from interp._guard import inspecting
from interp.errors import InterpError


@dataclass
class Event:
    name: str
    module: nn.Module
    inputs: tuple[torch.Tensor, ...]
    output: Any


def probe(model: nn.Module, x: torch.Tensor) -> tuple[list[Event], torch.Tensor]:
    """Run ``model(x)`` once, recording every leaf call in firing order."""
    events: list[Event] = []
    leaves = [(n, m) for n, m in model.named_modules() if not list(m.children()) and n]
    if not leaves:  # a bare layer passed as the model
        leaves = [("", model)]
    handles = []

    def make_hook(name: str):
        def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            tensors = tuple(t.detach().clone() for t in inputs if isinstance(t, torch.Tensor))
            out = output.detach().clone() if isinstance(output, torch.Tensor) else None
            events.append(Event(name, module, tensors, out))

        return hook

    with inspecting(model):
        try:
            for name, module in leaves:
                handles.append(module.register_forward_hook(make_hook(name)))
            with torch.no_grad():
                out = model(x)
        except InterpError:
            raise
        except Exception as exc:
            shape = tuple(x.shape)
            raise InterpError(
                f"the model fails on an input of shape {shape}: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}; pass the right `--input-shape`"
            ) from exc
        finally:
            for handle in handles:
                handle.remove()
    if not isinstance(out, torch.Tensor):
        raise InterpError(
            f"the model returned {type(out).__name__}, not a tensor of logits; "
            "wrap it so that forward returns (N, classes)"
        )
    return events, out.detach()
