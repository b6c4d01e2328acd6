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
from typing import Any, Literal

import torch
from torch import nn

from interp._guard import inspecting
from interp.errors import InterpError

HeadKind = Literal["positional", "pooled", "unknown"]

_CONV = (nn.Conv1d, nn.Conv2d)
_MAXPOOL = (nn.MaxPool1d, nn.MaxPool2d)
_AVGPOOL = (nn.AvgPool1d, nn.AvgPool2d)
_ADAPTIVE = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)
_POINTWISE = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid,
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout,
    nn.BatchNorm1d, nn.BatchNorm2d,
)  # fmt: skip
# Layers that are the identity in eval mode: allowed between a feature map and its head.
IDENTITY_IN_EVAL = (
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.AlphaDropout,
    nn.Flatten,
)


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


def _ntuple(value: Any, n: int) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * n
    out = tuple(int(v) for v in value)
    return out * n if len(out) == 1 and n > 1 else out


def window(module: nn.Module, dims: int) -> tuple[tuple[int, ...], ...] | None:
    """(kernel, stride, dilation, left padding) per axis of a windowed layer, else None.

    Conv padding ``'same'`` pads ``dilation * (k - 1) // 2`` on the left, as PyTorch does.
    """
    if not isinstance(module, (*_CONV, *_MAXPOOL, *_AVGPOOL)):
        return None
    kernel = _ntuple(module.kernel_size, dims)
    stride = _ntuple(module.stride if module.stride is not None else module.kernel_size, dims)
    dilation = _ntuple(getattr(module, "dilation", 1), dims)
    padding: Any = module.padding
    if padding == "valid":
        padding = 0
    if padding == "same":
        padding = tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation, strict=True))
    return kernel, stride, dilation, _ntuple(padding, dims)


@dataclass
class _Event:
    name: str
    module: nn.Module
    inputs: tuple[torch.Tensor, ...]
    output: Any


def _probe(model: nn.Module, x: torch.Tensor) -> tuple[list[_Event], torch.Tensor]:
    """Run ``model(x)`` once, recording every leaf call in firing order."""
    events: list[_Event] = []
    leaves = [(n, m) for n, m in model.named_modules() if not list(m.children()) and n]
    if not leaves:  # a bare layer passed as the model
        leaves = [("", model)]
    handles = []

    def make_hook(name: str):
        def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            tensors = tuple(t.detach().clone() for t in inputs if isinstance(t, torch.Tensor))
            out = output.detach().clone() if isinstance(output, torch.Tensor) else None
            events.append(_Event(name, module, tensors, out))

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
        device = _device_of(model)
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
    events, out = _probe(model, x)
    layers = _geometry(events, dims)
    head, collapse = _classify_head(events, layers, out, dims)
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


def _device_of(model: nn.Module) -> torch.device:
    param = next(iter(model.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


def _is_spatial(t: Any, dims: int) -> bool:
    return isinstance(t, torch.Tensor) and t.dim() == dims + 2


def _geometry(events: list[_Event], dims: int) -> list[Layer]:
    """Receptive field / stride / offset per layer, following the firing order."""
    rf = (1,) * dims
    jump = (1,) * dims
    offset = (0,) * dims
    spatial = True
    layers = []
    for event in events:
        module = event.module
        out = event.output
        out_spatial = _is_spatial(out, dims)
        in_spatial = bool(event.inputs) and _is_spatial(event.inputs[0], dims)
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
            role = "conv" if isinstance(module, _CONV) else "pool"
            equivariant = True
        elif isinstance(module, _ADAPTIVE) and out_spatial and all(v == 1 for v in out.shape[2:]):
            role, equivariant = "global pool", True
            n_in = tuple(int(v) for v in event.inputs[0].shape[2:])
            rf = tuple(r + (n - 1) * j for r, n, j in zip(rf, n_in, jump, strict=True))
        elif isinstance(module, _POINTWISE) and out_spatial and out.shape == event.inputs[0].shape:
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


def _classify_head(
    events: list[_Event], layers: list[Layer], out: torch.Tensor, dims: int
) -> tuple[Head, str | None]:
    unknown = Head("unknown", None, None, None, None, None, False)
    # The first layer whose output has no positions left.
    collapse = next(
        (
            lay.name
            for lay, ev in zip(layers, events, strict=True)
            if not _is_spatial(ev.output, dims)
        ),
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
    spatial_before = [i for i in range(lin_idx) if _is_spatial(events[i].output, dims)]
    if not spatial_before:
        return unknown, collapse
    reads_idx = spatial_before[-1]
    # Skip back over layers that are the identity in eval (Dropout after a pooling...).
    while reads_idx > 0 and isinstance(events[reads_idx].module, IDENTITY_IN_EVAL[:-1]):
        prev = reads_idx - 1
        if not _is_spatial(events[prev].output, dims) or not torch.equal(
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
            pooling = _pooling_of(reads.module)
        elif torch.allclose(lin_in, fmap.mean(spatial_axes), rtol=1e-5, atol=1e-6):
            pooling = "mean"
        elif torch.equal(lin_in, fmap.amax(spatial_axes)):
            pooling = "max"
        if n_pos == 1 and pooling is not None:
            # The pooling layer itself is the feature map; read the map before it.
            before = [i for i in range(reads_idx) if _is_spatial(events[i].output, dims)]
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


def _pooling_of(module: nn.Module) -> str | None:
    if isinstance(module, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, *_AVGPOOL)):
        return "mean"
    if isinstance(module, (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, *_MAXPOOL)):
        return "max"
    return None


class _Stop(Exception):
    """Raised inside a pre-hook to end a probe forward early."""


def infer_input_shape(model: nn.Module) -> tuple[int, ...]:
    """Infer (C, L) or (C, H, W) from the first conv and, if any, the head Linear.

    The channel count comes from the first Conv1d/Conv2d. For a positional head,
    the length is the largest L (square H = W for 2D) whose flattened feature map
    equals the Linear's ``in_features``, found by bisection on probe passes that
    stop at the Linear.

    Raises:
        InterpError: when there is no conv layer or no length fits.
    """
    conv = next((m for m in model.modules() if isinstance(m, _CONV)), None)
    if conv is None:
        raise InterpError(
            "cannot infer the input shape: the model has no Conv1d/Conv2d layer; "
            "pass `--input-shape C,L` (or C,H,W)"
        )
    dims = 1 if isinstance(conv, nn.Conv1d) else 2
    linear = next((m for m in model.modules() if isinstance(m, nn.Linear)), None)
    hint = "pass `--input-shape " + ("C,L`" if dims == 1 else "C,H,W`")
    if linear is None:
        raise InterpError(f"cannot infer the input length: the model has no Linear head; {hint}")
    device = _device_of(model)

    def features(n: int) -> int | None:
        seen: list[int] = []

        def pre(_m: nn.Module, inputs: tuple[Any, ...]) -> None:
            seen.append(int(inputs[0].shape[-1]))
            raise _Stop

        x = torch.zeros((1, conv.in_channels, *(n,) * dims), device=device)
        with inspecting(model):
            handle = linear.register_forward_pre_hook(pre)
            try:
                model(x)
            except _Stop:
                pass
            except Exception:
                return None
            finally:
                handle.remove()
        return seen[0] if seen else None

    target = linear.in_features
    # Smallest n with features(n) >= target (doubling, then bisection), then walk up
    # while it still equals target: the largest length that fits.
    hi, cap = 1, 1 << (22 if dims == 1 else 13)
    while hi < cap and ((f := features(hi)) is None or f < target):
        hi *= 2
    lo = hi // 2 + 1 if hi > 1 else 1
    while lo < hi:
        mid = (lo + hi) // 2
        f = features(mid)
        if f is None or f < target:
            lo = mid + 1
        else:
            hi = mid
    if features(lo) != target:
        raise InterpError(
            f"cannot infer the input length: no input size gives the {target} features "
            f"the head Linear expects; {hint}"
        )
    while features(lo + 1) == target:
        lo += 1
    return (conv.in_channels, *(lo,) * dims)


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
