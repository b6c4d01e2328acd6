"""blur: anti-alias every strided max or average pooling, then refit the head.

Zhang (ICML 2019, "Making Convolutional Networks Shift-Invariant Again",
https://arxiv.org/abs/1904.11486): a pooling of stride ``s`` becomes the same
pooling with stride 1, then a depthwise binomial blur (filter ``[1, 3, 3, 1] / 8``
per axis) applied with stride ``s`` after reflect padding. Every piece is a
torch.nn layer (MaxPool/AvgPool, ReflectionPad, a grouped Conv with fixed weights),
so a fixed Sequential is still a plain interp checkpoint. With ``f - 1`` padding in
total the output length is the one of the original pooling, so the head keeps its
shape; it is then fine-tuned (head only, unshifted training data) to the blurred
features.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from interp._guard import inspecting
from interp.errors import InterpError
from interp.geometry.core import Structure
from interp.remedies.augment import tune
from interp.remedies.trunk import split_site

FILTER = 4
_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d)


def binomial(size: int) -> torch.Tensor:
    """Row ``size - 1`` of Pascal's triangle, normalised to sum 1: ``[1, 3, 3, 1] / 8`` for 4."""
    row = torch.tensor([math.comb(size - 1, k) for k in range(size)], dtype=torch.float64)
    return row / row.sum()


def _pair(v: object, dims: int) -> tuple[int, ...]:
    return tuple(v) if isinstance(v, (tuple, list)) else (int(v),) * dims  # type: ignore[arg-type]


def blur_pool(pool: nn.Module, channels: int, size: int = FILTER) -> nn.Sequential:
    """The anti-aliased version of a strided ``pool`` (MaxPool/AvgPool 1d or 2d)."""
    dims = 2 if isinstance(pool, (nn.MaxPool2d, nn.AvgPool2d)) else 1
    stride = _pair(pool.stride, dims)
    dense = copy.deepcopy(pool)
    dense.stride = (1,) * dims if dims == 2 else 1
    lo, hi = (size - 1) // 2, size // 2  # total padding size - 1 keeps the output length
    taps = binomial(size)
    if dims == 1:
        pad: nn.Module = nn.ReflectionPad1d((lo, hi))
        conv: nn.Module = nn.Conv1d(
            channels, channels, size, stride=stride[0], groups=channels, bias=False
        )
        kernel = taps
    else:
        pad = nn.ReflectionPad2d((lo, hi, lo, hi))
        conv = nn.Conv2d(channels, channels, size, stride=stride, groups=channels, bias=False)
        kernel = taps[:, None] * taps[None, :]
    with torch.no_grad():
        conv.weight.copy_(kernel.to(torch.float32).expand_as(conv.weight))
    conv.weight.requires_grad_(False)
    return nn.Sequential(dense, pad, conv)


def strided_pools(model: nn.Module) -> list[str]:
    """Names of the max/average pooling layers with a stride above 1."""
    out = []
    for name, m in model.named_modules():
        if isinstance(m, _POOLS):
            dims = 2 if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) else 1
            if max(_pair(m.stride, dims)) > 1:
                out.append(name)
    return out


def not_blurrable(model: nn.Module, label: str = "the model") -> str | None:
    """Why blur does not apply to ``model`` (one line, no advice), or None when it does."""
    if strided_pools(model):
        return None
    return (
        f"nothing to blur: {label} has no strided max or average pooling layer "
        "(strided convolutions are not anti-aliased here)"
    )


def check_blurrable(model: nn.Module, label: str) -> list[str]:
    """The strided pooling layers of ``model``; refuses in one line when there are none."""
    why = not_blurrable(model, label)
    if why is not None:
        raise InterpError(f"{why}; use pool-head or augment")
    return strided_pools(model)


def _set(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def blur(
    model: nn.Module,
    geo: Structure,
    x: torch.Tensor,
    y: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    *,
    label: str = "the model",
    seed: int = 0,
    progress: bool = False,
) -> tuple[nn.Module, float, list[str], list[dict[str, Any]]]:
    """An anti-aliased copy with a refitted head; returns (model, seconds, notes, fits)
    (``fits``: the head refit's numbers, as :func:`interp.remedies.augment.tune`)."""
    names = check_blurrable(model, label)
    start = time.perf_counter()
    work = copy.deepcopy(model)
    channels = _channels(work, names, x[:1])
    for name in names:
        _set(work, name, blur_pool(work.get_submodule(name), channels[name]))
    _check_shapes(model, work, geo, x[:1], label)
    fixed, notes, fits = tune(
        work,
        geo,
        x,
        y,
        x_val,
        y_val,
        None,
        mode="roll",
        seed=seed,
        progress=progress,
        label="blur head refit",
        head_epochs=3,
    )
    layers = ", ".join(f"{n!r} ({type(model.get_submodule(n)).__name__})" for n in names)
    notes.insert(0, f"anti-aliased {len(names)} strided pooling layer(s): {layers}")
    return fixed, time.perf_counter() - start, notes, fits


def _channels(model: nn.Module, names: Sequence[str], x: torch.Tensor) -> dict[str, int]:
    """Channels of each named layer's output (a probe forward on a copy)."""
    out: dict[str, int] = {}

    def hook_for(name: str) -> Any:
        def hook(_m: nn.Module, _i: Any, o: torch.Tensor) -> None:
            out.setdefault(name, int(o.shape[1]))

        return hook

    handles = [model.get_submodule(n).register_forward_hook(hook_for(n)) for n in names]
    try:
        with inspecting(model):
            model(x)
    finally:
        for h in handles:
            h.remove()
    return out


def _check_shapes(
    model: nn.Module, work: nn.Module, geo: Structure, x: torch.Tensor, label: str
) -> None:
    """The head's feature map must keep its shape, or the head could not be refitted."""
    site = geo.head.reads
    if not site:
        return
    name = split_site(site)[0]
    shapes = []
    for m in (model, work):
        got: list[tuple[int, ...]] = []
        h = m.get_submodule(name).register_forward_hook(
            lambda _m, _i, o, got=got: got.append(tuple(o.shape))
        )
        try:
            with inspecting(m):
                m(x)
        finally:
            h.remove()
        shapes.append(got[0] if got else None)
    if shapes[0] != shapes[1]:
        raise InterpError(
            f"blur changes the feature map of {label} at {site!r} from {shapes[0]} to "
            f"{shapes[1]} (padding or ceil_mode in a pooling layer); refit is not possible here"
        )
