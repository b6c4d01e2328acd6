"""Per-layer geometry of a conv model, and the kind of head it ends in.

One probe forward pass with hooks on every leaf module gives each layer's
output shape; the receptive field, cumulative stride and offset come from the
standard recurrence over windowed layers (Araujo et al., Distill 2019,
"Computing Receptive Fields of Convolutional Neural Networks"). Where spatial
positions collapse is found from shapes and checked numerically against the
tensors the head Linear actually received, so functional ``torch.flatten`` or
``x.mean(-1)`` in a custom forward are recognised too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import nn

from interp._util import model_device
from interp.geometry.head import Head, HeadKind, classify_head
from interp.geometry.infer import infer_input_shape
from interp.geometry.kinds import (
    ADAPTIVE,
    CONV,
    IDENTITY_IN_EVAL,
    POINTWISE,
    is_spatial,
    window,
)
from interp.geometry.probe import Event, probe
from interp.errors import InterpError

__all__ = [
    "IDENTITY_IN_EVAL",
    "Head",
    "HeadKind",
    "Layer",
    "Structure",
    "explain",
    "infer_input_shape",
    "strided_layers",
    "structure",
    "window",
]


@dataclass(frozen=True)
class Layer:
    """Geometry of one leaf layer, as seen in the probe forward pass.

    ``receptive_field``, ``stride`` and ``offset`` are per spatial axis, in input
    positions: output position ``j`` of this layer reads input positions
    ``j * stride - offset ... j * stride - offset + receptive_field - 1``.
    They are None once positions have collapsed.
    """

    name: str
    type: str
    output_shape: tuple[int, ...]  # without the batch axis
    receptive_field: tuple[int, ...] | None
    stride: tuple[int, ...] | None
    offset: tuple[int, ...] | None
    equivariant: bool | None  # None: acts on a vector with no positions left
    role: str  # "conv", "pool", "pointwise", "global pool", "reshape", "mixes positions", ...

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Structure:
    """Layers, input shape and head of a model.

    >>> s = structure(model, input_shape=(1, 8192))        # doctest: +SKIP
    >>> s.head.kind, s.head.channels, s.head.positions     # doctest: +SKIP
    ('positional', 64, (4026,))
    """

    input_shape: tuple[int, ...]  # (C, L) or (C, H, W)
    spatial_dims: int
    layers: tuple[Layer, ...]
    head: Head
    num_classes: int | None
    global_pooling: bool
    collapse: str | None  # name of the first layer without positions

    def layer(self, name: str) -> Layer:
        """Return the layer called ``name`` (its ``named_modules()`` path)."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        names = ", ".join(lay.name for lay in self.layers)
        raise InterpError(f"`layer` {name!r} not found; available: {names}")

    @property
    def feature_map(self) -> Layer | None:
        """The layer whose output the head reads, if known."""
        return self.layer(self.head.reads) if self.head.reads else None

    def first_break(self) -> Layer | None:
        """The first layer that is not shift-equivariant (None if all are)."""
        return next((lay for lay in self.layers if lay.equivariant is False), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_shape": list(self.input_shape),
            "spatial_dims": self.spatial_dims,
            "layers": [
                {
                    "name": lay.name,
                    "type": lay.type,
                    "output_shape": list(lay.output_shape),
                    "receptive_field": _listify(lay.receptive_field),
                    "stride": _listify(lay.stride),
                    "offset": _listify(lay.offset),
                    "equivariant": lay.equivariant,
                    "role": lay.role,
                }
                for lay in self.layers
            ],
            "global_pooling": self.global_pooling,
            "collapse": self.collapse,
            "num_classes": self.num_classes,
            "head": {
                "kind": self.head.kind,
                "linear": self.head.linear,
                "reads": self.head.reads,
                "channels": self.head.channels,
                "positions": _listify(self.head.positions),
                "pooling": self.head.pooling,
                "exact": self.head.exact,
            },
        }


def _listify(value: tuple[int, ...] | None) -> list[int] | None:
    return None if value is None else list(value)


def structure(
    model: nn.Module,
    x: torch.Tensor | None = None,
    *,
    input_shape: Sequence[int] | None = None,
) -> Structure:
    """Describe every leaf layer of ``model`` and classify its head.

    Args:
        model: a conv classifier taking (N, C, L) or (N, C, H, W).
        x: an example batch (only its first sample is used); or
        input_shape: the shape of one input without the batch axis. When neither
            is given the shape is inferred (see :func:`infer_input_shape`).

    Returns:
        A :class:`Structure`. The model is left unchanged.

    Raises:
        InterpError: when the input shape cannot be found or the model fails on it.
    """
    if x is None:
        shape = tuple(input_shape) if input_shape is not None else infer_input_shape(model)
        gen = torch.Generator().manual_seed(0)
        device = model_device(model)
        x = torch.rand((1, *shape), generator=gen).to(device)
    else:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"`x` must be a torch.Tensor, got {type(x).__name__}")
        x = x[:1].detach()
    if x.dim() not in (3, 4):
        raise InterpError(
            f"input shape {tuple(x.shape[1:])} is not (C, L) or (C, H, W); "
            "interp explains Conv1d and Conv2d models"
        )
    dims = x.dim() - 2
    events, out = probe(model, x)
    layers = _geometry(events, dims)
    head, collapse = classify_head(events, out, dims)
    if head.kind == "positional":
        # The Linear that gives every (kernel, position) its own weight is where
        # equivariance breaks, even though its input is already a flat vector.
        layers = [
            replace(lay, equivariant=False, role="positional head")
            if lay.name == head.linear
            else lay
            for lay in layers
        ]
    global_pooling = head.kind == "pooled"
    num_classes = int(out.shape[1]) if out.dim() == 2 else None
    return Structure(
        input_shape=tuple(int(v) for v in x.shape[1:]),
        spatial_dims=dims,
        layers=tuple(layers),
        head=head,
        num_classes=num_classes,
        global_pooling=global_pooling,
        collapse=collapse,
    )


def _geometry(events: list[Event], dims: int) -> list[Layer]:
    """Receptive field / stride / offset per layer, following the firing order."""
    rf = (1,) * dims
    jump = (1,) * dims
    offset = (0,) * dims
    spatial = True
    layers = []
    for event in events:
        module = event.module
        out = event.output
        out_spatial = is_spatial(out, dims)
        in_spatial = bool(event.inputs) and is_spatial(event.inputs[0], dims)
        role, equivariant = "unknown", None
        win = window(module, dims)
        if not spatial or not in_spatial:
            spatial = spatial and out_spatial
            role = "after collapse" if not in_spatial else "unknown"
            equivariant = None
        elif win is not None:
            kernel, stride, dilation, padding = win
            offset = tuple(o + p * j for o, p, j in zip(offset, padding, jump, strict=True))
            rf = tuple(
                r + (k - 1) * d * j for r, k, d, j in zip(rf, kernel, dilation, jump, strict=True)
            )
            jump = tuple(j * s for j, s in zip(jump, stride, strict=True))
            role = "conv" if isinstance(module, CONV) else "pool"
            equivariant = True
        elif isinstance(module, ADAPTIVE) and out_spatial and all(v == 1 for v in out.shape[2:]):
            role, equivariant = "global pool", True
            n_in = tuple(int(v) for v in event.inputs[0].shape[2:])
            rf = tuple(r + (n - 1) * j for r, n, j in zip(rf, n_in, jump, strict=True))
        elif isinstance(module, POINTWISE) and out_spatial and out.shape == event.inputs[0].shape:
            role, equivariant = "pointwise", True
        elif isinstance(module, nn.Flatten) and not out_spatial:
            role, equivariant = "reshape", True
        elif isinstance(module, nn.Linear):
            role, equivariant = "mixes positions", False
        elif out_spatial and out.shape[2:] == event.inputs[0].shape[2:]:
            role, equivariant = "unknown (keeps positions)", None
        else:
            role, equivariant = "mixes positions", False
        keeps = spatial and out_spatial
        layers.append(
            Layer(
                name=event.name,
                type=type(module).__name__,
                output_shape=tuple(int(v) for v in out.shape[1:]) if out is not None else (),
                receptive_field=rf if keeps else None,
                stride=jump if keeps else None,
                offset=offset if keeps else None,
                equivariant=equivariant,
                role=role,
            )
        )
        spatial = keeps
    return layers


def explain(geo: Structure) -> list[str]:
    """Plain sentences about shift invariance that follow from the architecture alone.

    >>> explain(structure(seed_cnn, input_shape=(1, 8192)))[0]   # doctest: +SKIP
    "The head Linear '5' gives each of 64 kernels x 4026 positions its own weight..."
    """
    head = geo.head
    strided = strided_layers(geo)
    pos = "x".join(str(p) for p in head.positions or ())
    if head.kind == "positional":
        return [
            f"The head Linear {head.linear!r} gives each of {head.channels} kernels x {pos} "
            f"positions of layer {head.reads!r} its own weight, with no global pooling before "
            "it: the model cannot be translation invariant by construction.",
            "The convolutions are shift-equivariant, so a shifted pattern produces the same "
            "kernel activations, shifted; they then land on (kernel, position) neurons whose "
            "weights for the class were shaped only by what training put there.",
        ]
    if head.kind == "pooled":
        how = f"{head.pooling} over positions" if head.pooling else "pooling over positions"
        out = [
            f"The head Linear {head.linear!r} reads {head.channels} kernels after {how} of layer "
            f"{head.reads!r}: every position shares one weight per kernel, so the head is "
            "translation invariant by construction, up to boundary effects."
        ]
        if strided:
            names = ", ".join(f"{lay.name!r} ({lay.type})" for lay in strided)
            out.append(
                f"Strided layers {names} subsample positions, so shifts that are not multiples "
                "of their stride can change the output (aliasing, Zhang 2019)."
            )
        return out
    return [
        "interp could not find a Linear head that reads a spatial feature map through Flatten or "
        "global pooling, so invariance cannot be decided from the architecture; a shift sweep "
        "with data measures it."
    ]


def strided_layers(geo: Structure) -> list[Layer]:
    """Layers whose own stride is above 1 (their cumulative stride grows)."""
    out, previous = [], (1,) * geo.spatial_dims
    for lay in geo.layers:
        if lay.stride is None:
            continue
        if lay.stride != previous and lay.role in ("conv", "pool"):
            out.append(lay)
        previous = lay.stride
    return out
