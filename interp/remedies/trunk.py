"""The trained trunk of a model: everything up to the feature map its head reads.

The trunk is read by running the model with a forward hook on the layer the
structure analysis names in ``head.reads`` (a ``named_modules()`` path, or a call
site ``path#k`` for the k-th call of a module used twice). That works for any
architecture; when the model is an ``nn.Sequential`` whose child is that layer, the
trunk is also available as plain layers (its children up to it), so a fixed model
can be a plain Sequential that :func:`interp.save` stores as data.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from interp.errors import InterpError


class _Captured(Exception):
    """Raised by the capture hook to stop the forward once the feature map is known."""

    def __init__(self, value: torch.Tensor) -> None:
        super().__init__("captured")
        self.value = value


def split_site(site: str) -> tuple[str, int]:
    """``"layer1.0.relu#2"`` -> ``("layer1.0.relu", 2)``; a plain path is call 1."""
    name, _, count = site.partition("#")
    return name, int(count) if count.isdigit() else 1


def capture(model: nn.Module, site: str, x: torch.Tensor) -> torch.Tensor:
    """The output of call site ``site`` when ``model`` runs on ``x`` (the rest is not run).

    The caller chooses the mode and grad setting; the hook is always removed.
    """
    name, call = split_site(site)
    modules = dict(model.named_modules())
    if name not in modules:  # a functional call site (F.relu in a forward): read the graph
        from interp.geometry.graph import trace

        graph = trace(model, x[:2] if x.shape[0] > 1 else x)
        if site not in graph.names:
            raise InterpError(f"the head reads {site!r}, which is not a call site of the model")
        _, caps = graph.run(x, capture=[site], grad=torch.is_grad_enabled(), detach=False)
        return caps[site]
    seen = 0

    def hook(_m: nn.Module, _i: Any, out: Any) -> None:
        nonlocal seen
        seen += 1
        if seen == call:
            raise _Captured(out[0] if isinstance(out, (tuple, list)) else out)

    handle = modules[name].register_forward_hook(hook)
    try:
        model(x)
    except _Captured as got:
        return got.value
    finally:
        handle.remove()
    raise InterpError(f"layer {site!r} did not run in the forward pass; the head cannot be read")


def batches(x: torch.Tensor, size: int) -> Iterator[torch.Tensor]:
    for i in range(0, x.shape[0], size):
        yield x[i : i + size]


def sequential_index(model: nn.Module, site: str) -> int | None:
    """Index of the child named ``site`` when ``model`` is an ``nn.Sequential``, else None."""
    if not isinstance(model, nn.Sequential) or "#" in site:
        return None
    names = [n for n, _ in model.named_children()]
    return names.index(site) if site in names else None


class PooledHeadModel(nn.Module):
    """A model's trunk (up to call site ``reads``) followed by a new pooled head.

    Used for models that are not a Sequential: ``forward`` runs ``body`` (a frozen
    copy of the original) until ``reads`` has produced the feature map, then
    ``head`` (global pooling, Flatten, Linear, and any layers kept after it).
    """

    def __init__(self, body: nn.Module, reads: str, head: nn.Sequential) -> None:
        super().__init__()
        self.body = body
        self.reads = reads
        self.head = head

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return capture(self.body, self.reads, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
