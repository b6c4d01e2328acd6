"""The fast engine's view of a model: a chain of shift-equivariant ops, then a head.

:func:`make_plan` turns a :class:`~interp.geometry.core.Structure` into a list of
:class:`Op` (conv / max pool / avg pool with explicit per-side zero padding, or
a pointwise layer) and a :class:`HeadPlan` (positional or pooled Linear), and
raises :class:`Unsupported` for anything else. :func:`levels` computes, for an
input size, every map's size, cumulative stride, offset and how many positions
at each end are "dirty" (their windows reach some layer's padding).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from interp._util import ntuple
from interp.geometry.core import IDENTITY_IN_EVAL, Structure
from interp.geometry.kinds import ADAPTIVE, AVGPOOL, CONV, MAXPOOL, POINTWISE


class Unsupported(Exception):
    """The fast engine cannot compute this model exactly; the reason is the message."""


# The layer kinds of geometry/kinds.py, by spatial dims (1D, 2D).
_CONV = dict(enumerate(CONV, start=1))
_MAXPOOL = dict(enumerate(MAXPOOL, start=1))
_AVGPOOL = dict(enumerate(AVGPOOL, start=1))
_GLOBAL = ADAPTIVE
# Elementwise (per position, per channel) in eval mode: they commute with shifts and with
# cropping, so they act on the valid maps and on the boundary strips alike. The engine
# also computes three that geometry does not list (yet) as pointwise.
_POINTWISE = (*POINTWISE, nn.Softsign, nn.Tanhshrink, nn.LogSigmoid)


def ix(*parts: Any) -> tuple[Any, ...]:
    """An index tuple built from slices and tensors (typed for mypy)."""
    return parts


@dataclass(frozen=True)
class Op:
    """One trunk layer. Windowed ops read input ``j*stride - pad_lo + dilation*i``."""

    name: str
    module: nn.Module
    kind: str  # "conv" | "max" | "avg" | "point"
    kernel: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    pad_lo: tuple[int, ...] = ()
    pad_hi: tuple[int, ...] = ()

    @property
    def windowed(self) -> bool:
        return self.kind != "point"

    def reach(self, a: int) -> int:
        """Span of one window minus one, on axis ``a``."""
        return self.dilation[a] * (self.kernel[a] - 1)

    def out_size(self, size: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(
            (n + self.pad_lo[a] + self.pad_hi[a] - self.reach(a) - 1) // self.stride[a] + 1
            for a, n in enumerate(size)
        )

    def __call__(
        self, x: torch.Tensor, lo: tuple[int, ...] | None = None, hi: tuple[int, ...] | None = None
    ) -> torch.Tensor:
        """Apply to ``x`` (B, C, *n) with ``lo``/``hi`` padding per axis (default: none)."""
        if self.kind == "point":
            if getattr(self.module, "inplace", False):
                x = x.clone()  # the engine keeps some maps after the layer reads them
            return self.module.forward(x)  # type: ignore[no-any-return]  # no user hooks
        dims = len(self.kernel)
        lo = lo or (0,) * dims
        hi = hi or (0,) * dims
        pad = [p for a in reversed(range(dims)) for p in (lo[a], hi[a])]  # F.pad: last axis first
        padded = any(pad)
        m = self.module
        if self.kind == "conv":
            conv = F.conv1d if dims == 1 else F.conv2d
            xp = F.pad(x, pad) if padded else x
            return conv(xp, m.weight, m.bias, self.stride, 0, self.dilation, m.groups)  # type: ignore[call-overload,arg-type,no-any-return]
        if self.kind == "max":
            pool = F.max_pool1d if dims == 1 else F.max_pool2d
            xp = F.pad(x, pad, value=float("-inf")) if padded else x  # max pooling ignores padding
            return pool(xp, self.kernel, self.stride, 0, self.dilation)  # type: ignore[arg-type]
        xp = F.pad(x, pad) if padded else x
        if dims == 1:
            out = F.avg_pool1d(xp, self.kernel, self.stride, 0)  # type: ignore[arg-type]
        else:
            out = F.avg_pool2d(xp, self.kernel, self.stride, 0,  # type: ignore[arg-type]
                               divisor_override=m.divisor_override)  # type: ignore[arg-type]  # fmt: skip
        if padded and not m.count_include_pad and getattr(m, "divisor_override", None) is None:
            # Divide by the number of real (unpadded) inputs in each window instead of k.
            ones = F.pad(torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype, device=x.device), pad)
            if dims == 1:
                out = out / F.avg_pool1d(ones, self.kernel, self.stride, 0)  # type: ignore[arg-type]
            else:
                out = out / F.avg_pool2d(ones, self.kernel, self.stride, 0)  # type: ignore[arg-type]
        return out


@dataclass(frozen=True)
class HeadPlan:
    """``positional``: weight (K, C, *M); ``max``/``mean``: weight (K, C) after pooling.

    ``after``: for a pooled head whose part after the pool is more than one Linear (an MLP,
    a LogSoftmax), the call site of the pool; the engine runs the model's own layers from
    there (the traced graph) on every shift's pooled vector, and ``weight`` is None.
    """

    kind: str
    weight: torch.Tensor | None
    bias: torch.Tensor | None
    after: str | None = None


@dataclass(frozen=True)
class Level:
    """Geometry of one map of the chain (level 0 is the input).

    Position ``j`` reads the input window of ``field`` positions starting at
    ``j*stride - offset``; the first ``lo`` and last ``hi`` positions (per axis) touch
    padding somewhere in the chain.
    """

    size: tuple[int, ...]
    stride: tuple[int, ...]
    offset: tuple[int, ...]
    field: tuple[int, ...]
    lo: tuple[int, ...]
    hi: tuple[int, ...]
    channels: int

    @property
    def core(self) -> tuple[tuple[int, int], ...]:
        """(start, stop) per axis of the clean positions (may be empty)."""
        return tuple((lo, n - hi) for lo, n, hi in zip(self.lo, self.size, self.hi, strict=True))


def _op(name: str, module: nn.Module, dims: int) -> Op:
    what = f"layer {name!r} ({type(module).__name__})"
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d,
                           nn.AvgPool2d)):  # fmt: skip
        if not isinstance(module, (_CONV[dims], _MAXPOOL[dims], _AVGPOOL[dims])):
            raise Unsupported(f"{what} does not match the {dims}D input")
        kernel = ntuple(module.kernel_size, dims)
        stride = ntuple(module.stride or module.kernel_size, dims)
        dilation = ntuple(getattr(module, "dilation", 1), dims)
        if getattr(module, "ceil_mode", False):
            raise Unsupported(f"{what} uses ceil_mode=True")
        if getattr(module, "return_indices", False):
            raise Unsupported(f"{what} returns indices")
        if isinstance(module, _CONV[dims]):
            if module.padding_mode != "zeros":
                raise Unsupported(f"{what} pads with {module.padding_mode!r}; only zeros is exact")
            kind = "conv"
        else:
            kind = "max" if isinstance(module, _MAXPOOL[dims]) else "avg"
        padding = module.padding
        if padding == "valid":
            lo = hi = (0,) * dims
        elif padding == "same":  # PyTorch puts the odd extra zero on the right
            total = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
            lo = tuple(t // 2 for t in total)
            hi = tuple(t - t // 2 for t in total)
        else:
            lo = hi = ntuple(padding, dims)
        return Op(name, module, kind, kernel, stride, dilation, lo, hi)
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)) and module.running_mean is None:
        raise Unsupported(f"{what} normalises with batch statistics (no running stats)")
    if isinstance(module, _POINTWISE):
        return Op(name, module, "point")
    raise Unsupported(f"{what} is not a conv, pooling or pointwise layer")


def make_plan(model: nn.Module, geo: Structure) -> tuple[list[Op], HeadPlan]:
    """The chain of trunk ops up to ``geo.head.reads`` and the head, or Unsupported."""
    head = geo.head
    kind = head.kind
    # A global max/mean pool followed by any layers: pooled values per shift, then the
    # model's own layers after the pool (exact whatever they are).
    after = kind == "pooled" and not head.exact and head.pooling in ("max", "mean")
    if kind == "pooled" and head.pooling is None and set(head.positions or ()) == {1}:
        # Flatten of a one-position map: structure cannot tell a pooling from a
        # positional read here, and both are the same; the spot check confirms it.
        kind = "positional"
    elif kind == "unknown" or head.reads is None or head.linear is None or not (
        head.exact or after
    ):
        raise Unsupported(
            f"the head is {head.kind!r}, not an exact Flatten -> Linear or global pooling "
            "(-> any layers) reading a feature map"
        )
    names = [lay.name for lay in geo.layers]
    modules = dict(model.named_modules())
    assert head.reads is not None and head.linear is not None
    i_reads = names.index(head.reads)
    dims = geo.spatial_dims
    if kind == "pooled" and head.pooling in ("max", "mean") and not after:
        # Exact, but more than one pool and one Linear after the map (Linear -> Linear)
        i_linear = len(names) - 1 - names[::-1].index(head.linear)
        rest = [modules.get(n) for n in names[i_reads + 1 : i_linear]]
        after = i_linear != len(names) - 1 or sum(
            not isinstance(m, IDENTITY_IN_EVAL) for m in rest) > 1  # fmt: skip
    if after:
        shapes = [tuple(lay.output_shape) for lay in geo.layers]
        return _pooled_then_layers(names, modules, shapes, i_reads, head.pooling, dims)
    i_linear = len(names) - 1 - names[::-1].index(head.linear)
    classifier = modules.get(head.linear)
    if not isinstance(classifier, nn.Linear):
        what = type(classifier).__name__ if classifier is not None else "functional op"
        raise Unsupported(f"the head's classifier {head.linear!r} is a {what} (a conv whose "
                          "kernel spans the map?), not the nn.Linear this engine's head needs")
    if i_linear != len(names) - 1 or i_reads > i_linear:
        raise Unsupported(f"the head classifier {head.linear!r} is not the last layer")
    functional = [n for n in names[: i_linear + 1] if n not in modules]
    if functional:  # call sites of the traced graph that are not module calls
        raise Unsupported(f"call site {functional[0]!r} is a functional op, not a module")
    ops = fold_batchnorm([_op(n, modules[n], dims) for n in names[: i_reads + 1]])
    between = [modules[n] for n in names[i_reads + 1 : i_linear]]
    pools = [m for m in between if isinstance(m, _POOLS)]
    others = [m for m in between if not isinstance(m, IDENTITY_IN_EVAL) and m not in pools]
    expected_pools = 0 if kind == "positional" else 1
    if others or len(pools) > expected_pools:
        kinds = ", ".join(type(m).__name__ for m in [*others, *pools])
        raise Unsupported(f"layers between the feature map and the head classifier: {kinds}")
    linear = modules[head.linear]
    assert isinstance(linear, nn.Linear)  # structure found it as the head Linear
    weight = linear.weight.detach()
    bias = None if linear.bias is None else linear.bias.detach()
    if kind == "positional":
        assert head.channels is not None and head.positions is not None
        return ops, HeadPlan("positional", weight.reshape(-1, head.channels, *head.positions),
                             bias)  # fmt: skip
    if head.pooling not in ("max", "mean"):
        raise Unsupported(f"the pooled head's reduction {head.pooling!r} is not max or mean")
    return ops, HeadPlan(head.pooling, weight, bias)


_POOLS = (*_GLOBAL, *_MAXPOOL.values(), *_AVGPOOL.values())


def _pooled_then_layers(names: list[str], modules: dict[str, nn.Module],
                        shapes: list[tuple[int, ...]], i_reads: int, pooling: str,
                        dims: int) -> tuple[list[Op], HeadPlan]:  # fmt: skip
    """Trunk ops and a head that pools, then runs the model's layers after the pool."""
    functional = [n for n in names[: i_reads + 1] if n not in modules]
    if functional:
        raise Unsupported(f"call site {functional[0]!r} is a functional op, not a module")
    i_pool = next((i for i in range(i_reads + 1, len(names)) if names[i] in modules
                   and isinstance(modules[names[i]], _POOLS)), None)  # fmt: skip
    if i_pool is None or len(shapes[i_pool]) < dims or set(shapes[i_pool][-dims:]) != {1}:
        raise Unsupported("the pooled head's pooling is not a global pooling module")
    between = [names[i] for i in range(i_reads + 1, i_pool)
               if not isinstance(modules.get(names[i]), IDENTITY_IN_EVAL)]  # fmt: skip
    if between:
        raise Unsupported(f"call site {between[0]!r} runs between the feature map and the pool")
    ops = fold_batchnorm([_op(n, modules[n], dims) for n in names[: i_reads + 1]])
    return ops, HeadPlan(pooling, None, None, after=names[i_pool])


def fold_batchnorm(ops: list[Op]) -> list[Op]:
    """Every eval BatchNorm right after a conv folded into that conv's weight and bias.

    ``bn(conv(x)) = conv'(x)`` with ``w' = w * g``, ``b' = (b - mean) * g + beta`` and
    ``g = gamma / sqrt(var + eps)`` per output channel: one op fewer on the trunk and on
    every band (rounding differs by a few ulps; the spot check bounds it). The user's
    modules are not touched: the folded conv is a new module with detached tensors.
    """
    out: list[Op] = []
    for op in ops:
        prev = out[-1] if out else None
        m = op.module
        if (prev is not None and prev.kind == "conv" and isinstance(m, _BATCHNORM)
                and m.running_mean is not None and m.running_var is not None):  # fmt: skip
            conv = prev.module
            w, b = conv.weight.detach(), conv.bias  # type: ignore[union-attr]
            g = (m.running_var + m.eps).rsqrt()
            if m.weight is not None:
                g = g * m.weight.detach()
            shift = -m.running_mean if b is None else b.detach() - m.running_mean
            bias = shift * g + (0.0 if m.bias is None else m.bias.detach())
            folded = copy.copy(conv)  # a shallow copy: its own parameter dict, same config
            folded._parameters = {
                "weight": nn.Parameter(w * g.view(-1, *(1,) * (w.dim() - 1)), False),
                "bias": nn.Parameter(bias.to(w.dtype), False),
            }
            out[-1] = replace(prev, module=folded)
            continue
        out.append(op)
    return out


_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d)


def levels(ops: list[Op], size: tuple[int, ...], channels: int) -> list[Level]:
    """Geometry of the input (level 0) and of every op's output, for input ``size``."""
    dims = len(size)
    ones, zeros = (1,) * dims, (0,) * dims
    out = [Level(size, ones, zeros, ones, zeros, zeros, channels)]
    for op in ops:
        prev = out[-1]
        if not op.windowed:
            out.append(prev)
            continue
        new = op.out_size(prev.size)
        if min(new) < 1:
            raise Unsupported(f"layer {op.name!r} has no output positions")
        lo, hi = [], []
        for a in range(dims):
            s, n_in, n_out = op.stride[a], prev.size[a], new[a]
            # Output j is dirty on the left when its window starts before the clean inputs.
            d_lo = min(n_out, -(-(prev.lo[a] + op.pad_lo[a]) // s))
            # ... and on the right when its window ends after them.
            last_clean = (n_in - 1 - prev.hi[a] + op.pad_lo[a] - op.reach(a)) // s
            d_hi = n_out - max(0, min(n_out, last_clean + 1))
            if d_lo + d_hi >= n_out:  # every position dirty on this axis
                d_lo, d_hi = n_out, 0
            lo.append(d_lo)
            hi.append(d_hi)
        stride = tuple(j * s for j, s in zip(prev.stride, op.stride, strict=True))
        offset = tuple(o + p * j for o, p, j in zip(prev.offset, op.pad_lo, prev.stride,
                                                    strict=True))  # fmt: skip
        field = tuple(f + op.reach(a) * j for a, (f, j) in enumerate(zip(prev.field, prev.stride,
                                                                        strict=True)))  # fmt: skip
        conv_out = getattr(op.module, "out_channels", None)
        out.append(Level(new, stride, offset, field, tuple(lo), tuple(hi),
                         conv_out or prev.channels))  # fmt: skip
    return out


def margins(ops: list[Op], geo: list[Level]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Input positions needed beyond each end so every map position, and every padding
    position a layer reads, has a window inside the extended input (per axis)."""
    dims = len(geo[0].size)
    lo, hi = [0] * dims, [0] * dims
    for i, lv in enumerate(geo):
        op = ops[i] if i < len(ops) else None
        for a in range(dims):
            before = op.pad_lo[a] if op is not None and op.windowed else 0
            after = op.pad_hi[a] if op is not None and op.windowed else 0
            lo[a] = max(lo[a], lv.offset[a] + before * lv.stride[a])
            end = (lv.size[a] - 1 + after) * lv.stride[a] - lv.offset[a] + lv.field[a]
            hi[a] = max(hi[a], end - geo[0].size[a])
    return tuple(lo), tuple(hi)


def band_boxes(level: Level) -> list[tuple[tuple[int, int], ...]]:
    """Boxes that, with the core, partition the map: a low and a high band per axis.

    The bands of axis ``a`` span the core on earlier axes and everything on later ones
    (in 2D: full-width top and bottom bands, then left and right bands between them).
    """
    boxes = []
    core = level.core
    dims = len(level.size)
    for a in range(dims):
        for rng in ((0, level.lo[a]), (level.size[a] - level.hi[a], level.size[a])):
            box = tuple(
                core[b] if b < a else rng if b == a else (0, level.size[b]) for b in range(dims)
            )
            if all(stop > start for start, stop in box):
                boxes.append(box)
    return boxes
