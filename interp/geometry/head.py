"""Where positions collapse, and how the classifier reads the feature map.

The head is classified from shapes and then checked numerically against the
tensors the Linear actually received in the probe pass, so functional
``torch.flatten`` or ``x.mean(-1)`` in a custom forward are recognised too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import nn

from interp.geometry.kinds import IDENTITY_IN_EVAL, is_spatial, pooling_of
from interp.geometry.probe import Event

HeadKind = Literal["positional", "pooled", "unknown"]


@dataclass(frozen=True)
class Head:
    """Where positions collapse and how the classifier reads the feature map.

    ``kind`` is ``positional`` when a Linear gives every (kernel, position) its own
    weight, ``pooled`` when positions are pooled away first, else ``unknown``.
    ``exact`` is True when the Linear's input is exactly ``flatten(feature map)``
    (positional) or ``reduce(feature map)`` (pooled) and its output is the logits,
    so logits can be decomposed over the feature map.
    """

    kind: HeadKind
    linear: str | None
    reads: str | None
    channels: int | None
    positions: tuple[int, ...] | None
    pooling: str | None  # "mean", "max" or None
    exact: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def classify_head(events: list[Event], out: torch.Tensor, dims: int) -> tuple[Head, str | None]:
    """Classify the head from the probe's events; also return where positions collapse."""
    unknown = Head("unknown", None, None, None, None, None, False)
    # The first layer whose output has no positions left.
    collapse = next(
        (ev.name for ev in events if not is_spatial(ev.output, dims)),
        None,
    )
    lin_idx = next(
        (
            i
            for i, ev in enumerate(events)
            if isinstance(ev.module, nn.Linear) and ev.inputs and ev.inputs[0].dim() == 2
        ),
        None,
    )
    if lin_idx is None:
        return unknown, collapse
    spatial_before = [i for i in range(lin_idx) if is_spatial(events[i].output, dims)]
    if not spatial_before:
        return unknown, collapse
    reads_idx = spatial_before[-1]
    # Skip back over layers that are the identity in eval (Dropout after a pooling...).
    while reads_idx > 0 and isinstance(events[reads_idx].module, IDENTITY_IN_EVAL[:-1]):
        prev = reads_idx - 1
        if not is_spatial(events[prev].output, dims) or not torch.equal(
            events[prev].output, events[reads_idx].output
        ):
            break
        reads_idx = prev
    reads, linear = events[reads_idx], events[lin_idx]
    fmap = reads.output[0]  # (C, *positions) of the first sample
    channels = int(fmap.shape[0])
    positions = tuple(int(v) for v in fmap.shape[1:])
    lin_in = linear.inputs[0][0]
    is_last = lin_idx == len(events) - 1 and linear.output.shape == out.shape
    is_last = is_last and torch.equal(linear.output, out)
    n_pos = 1
    for p in positions:
        n_pos *= p
    module = linear.module
    assert isinstance(module, nn.Linear)
    if module.in_features == channels * n_pos and n_pos > 1:
        exact = is_last and torch.equal(lin_in, fmap.reshape(-1))
        head = Head("positional", linear.name, reads.name, channels, positions, None, exact)
    elif module.in_features == channels:
        spatial_axes = tuple(range(1, fmap.dim()))
        pooling = None
        if n_pos == 1 and torch.equal(lin_in, fmap.reshape(-1)):
            pooling = pooling_of(reads.module)
        elif torch.allclose(lin_in, fmap.mean(spatial_axes), rtol=1e-5, atol=1e-6):
            pooling = "mean"
        elif torch.equal(lin_in, fmap.amax(spatial_axes)):
            pooling = "max"
        if n_pos == 1 and pooling is not None:
            # The pooling layer itself is the feature map; read the map before it.
            before = [i for i in range(reads_idx) if is_spatial(events[i].output, dims)]
            if before and events[reads_idx].inputs:
                src = events[before[-1]]
                if torch.equal(src.output, events[reads_idx].inputs[0]):
                    fmap = src.output[0]
                    channels = int(fmap.shape[0])
                    positions = tuple(int(v) for v in fmap.shape[1:])
                    reads = src
        head = Head(
            "pooled",
            linear.name,
            reads.name,
            channels,
            positions,
            pooling,
            is_last and pooling is not None,
        )
    else:
        return Head("unknown", linear.name, reads.name, channels, positions, None, False), collapse
    return head, collapse
