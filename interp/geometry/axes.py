"""What each call site of a traced model does to the input's positions.

:mod:`interp.geometry.graph` builds the dataflow graph; this module supplies the two things
that need to know what an op *means*:

* :func:`describe_module` / :func:`describe_function` name each call site's ``kind`` (a
  normalised op class), its ``params`` (window, padding, permutation, index...) and where
  every input axis lives in its output (an *axis map*);
* :func:`geometry`, :func:`collapse` and :func:`first_break` walk the graph with the
  receptive-field recurrence of Araujo et al., Distill 2019 ("Computing Receptive Fields of
  Convolutional Neural Networks"): for a window op with kernel ``k``, stride ``s``,
  dilation ``d`` and left padding ``p`` on an axis,
  ``offset += p * jump; rf += (k - 1) * d * jump; jump *= s``.

Axis maps are keyed by the input's spatial axes ``0 .. d-1`` (``d = x.dim() - 2``: the time
axis of an ``(N, C, L)`` input is spatial axis 0, an EEG ``(N, 22, 1000)`` input has its
electrodes on the channel axis) plus ``"batch"``. Each key is *live* at a tensor axis
(negative index), *mixed* into one (a reshape merged it with other axes: the positions are
still in the tensor but no longer an axis of their own) or *gone* (pooled, indexed or mixed
away). A reshape that only adds or removes singleton axes keeps a key live.

Offsets: the receptive field of output position ``u`` on an axis is the input interval
``[u * stride - offset, u * stride - offset + rf - 1]`` (before clipping to the input).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from torch import nn

if TYPE_CHECKING:
    from interp.geometry.graph import Graph

Key = int | str  # a spatial axis of the input (0..d-1) or "batch"


@dataclass(frozen=True)
class Loc:
    """Where one input axis lives: ``state`` 'live' | 'mixed' | 'gone', ``axis`` negative."""

    state: str
    axis: int | None


GONE = Loc("gone", None)
AxisMap = dict[Key, Loc]


@dataclass(frozen=True)
class Layout:
    """A node's full output shape (batch included; element 0 of a tuple) and its axis map."""

    shape: tuple[int, ...] | None
    amap: Mapping[Key, Loc] = field(hash=False)
    is_tuple: bool = False


@dataclass(frozen=True)
class TArg:
    """A tensor argument: its full shape, its public producer (None: a constant)."""

    shape: tuple[int, ...]
    producer: str | None
    layout: Layout | None


@dataclass(frozen=True)
class SeqArg:
    """A tuple/list-valued producer (an LSTM's ``(out, (h, c))``, a ``split``)."""

    producer: str
    layout: Layout


Described = tuple[str, dict[str, Any], AxisMap]


def input_layout(shape: tuple[int, ...]) -> Layout:
    """The input's layout: batch at axis 0, spatial axis ``i`` at ``-(d - i)``.

    >>> input_layout((2, 3, 8, 8)).amap[0]
    Loc(state='live', axis=-2)
    """
    nd = len(shape)
    d = max(nd - 2, 0)
    amap: AxisMap = {"batch": Loc("live", -nd)} if nd else {}
    for i in range(d):
        amap[i] = Loc("live", -(d - i))
    return Layout(tuple(shape), amap)


# --- axis-map algebra ---------------------------------------------------------


def _pos(axis: int, nd: int) -> int:
    return axis + nd if axis < 0 else axis


def _neg(axis: int, nd: int) -> int:
    return axis - nd if axis >= 0 else axis


def _keys_at(amap: Mapping[Key, Loc], axis: int, states: tuple[str, ...] = ("live",)) -> list[Key]:
    return [k for k, loc in amap.items() if loc.state in states and loc.axis == axis]


def _spatial_at(
    amap: Mapping[Key, Loc], axis: int, states: tuple[str, ...] = ("live",)
) -> list[int]:
    return [k for k in _keys_at(amap, axis, states) if isinstance(k, int)]


def _remap(amap: Mapping[Key, Loc], fn: Callable[[int], int | None]) -> AxisMap:
    out: AxisMap = {}
    for key, loc in amap.items():
        new = None if loc.axis is None else fn(loc.axis)
        out[key] = GONE if new is None else Loc(loc.state, new)
    return out


def _gone(amap: Mapping[Key, Loc], axes: Sequence[int], states=("live", "mixed")) -> AxisMap:
    return {
        k: (GONE if loc.state in states and loc.axis in axes else loc) for k, loc in amap.items()
    }


def _remove_axes(amap: Mapping[Key, Loc], removed: Sequence[int], nd_in: int) -> AxisMap:
    """Drop tensor axes ``removed`` (negative, of the input): keys there go, others shift."""
    gone = {_pos(a, nd_in) for a in removed}
    nd_out = nd_in - len(gone)

    def fn(axis: int) -> int | None:
        p = _pos(axis, nd_in)
        return None if p in gone else _neg(p - sum(g < p for g in gone), nd_out)

    return _remap(amap, fn)


def _permute_map(amap: Mapping[Key, Loc], perm: Sequence[int], nd: int) -> AxisMap:
    """Output axis ``j`` is input axis ``perm[j]``."""
    where = {_pos(p, nd): j for j, p in enumerate(perm)}
    return _remap(amap, lambda a: _neg(where[_pos(a, nd)], nd) if _pos(a, nd) in where else None)


def _reshape_map(
    amap: Mapping[Key, Loc], shape_in: tuple[int, ...], shape_out: tuple[int, ...]
) -> AxisMap | None:
    """Follow axes through a view/reshape/flatten by matching blocks of equal product.

    Singleton axes are ignored, so a reshape that only adds or removes them keeps every key
    live; an axis merged with other non-singleton axes becomes 'mixed'. None when the element
    counts differ (not a reshape).
    """
    if math.prod(shape_in) != math.prod(shape_out):
        return None
    ins = [i for i, s in enumerate(shape_in) if s != 1]
    outs = [j for j, s in enumerate(shape_out) if s != 1]
    dest: dict[int, Loc] = {}  # input position -> where it goes
    i = j = 0
    while i < len(ins) and j < len(outs):
        block_in, block_out = [ins[i]], [outs[j]]
        p_in, p_out = shape_in[ins[i]], shape_out[outs[j]]
        i, j = i + 1, j + 1
        while p_in != p_out:
            if p_in < p_out:
                block_in.append(ins[i])
                p_in *= shape_in[ins[i]]
                i += 1
            else:
                block_out.append(outs[j])
                p_out *= shape_out[outs[j]]
                j += 1
        one_to_one = len(block_in) == 1 and len(block_out) == 1
        for a in block_in:
            dest[a] = Loc("live" if one_to_one else "mixed", _neg(block_out[-1], len(shape_out)))
    nd_in = len(shape_in)
    out: AxisMap = {}
    for key, loc in amap.items():
        moved = dest.get(_pos(loc.axis, nd_in)) if loc.axis is not None else None
        if moved is None:
            out[key] = GONE
        else:
            out[key] = Loc("mixed" if loc.state == "mixed" else moved.state, moved.axis)
    return out


def _permutation_guess(
    amap: Mapping[Key, Loc], shape_in: tuple[int, ...], shape_out: tuple[int, ...]
) -> AxisMap | None:
    """Same sizes in another order: a permute; axes of a size that occurs once move along."""
    if len(shape_in) != len(shape_out) or sorted(shape_in) != sorted(shape_out):
        return None
    nd = len(shape_in)

    def fn(axis: int) -> int | None:
        size = shape_in[axis]
        if size == 1 or shape_in.count(size) != 1:
            return axis if shape_out[axis] == size else None
        return _neg(shape_out.index(size), nd)

    return _remap(amap, fn)


def guess_map(main: Layout | None, shape_out: tuple[int, ...] | None) -> AxisMap:
    """Best guess for an op we cannot see into: same shape, a permute, a reshape, equal sizes.

    >>> guess_map(input_layout((2, 3, 8)), (2, 3, 8))[0]
    Loc(state='live', axis=-1)
    """
    if main is None:
        return {}
    if main.shape is None or shape_out is None:
        return dict.fromkeys(main.amap, GONE)
    if tuple(main.shape) == tuple(shape_out):
        return dict(main.amap)
    permuted = _permutation_guess(main.amap, main.shape, shape_out)
    if permuted is not None:
        return permuted
    reshaped = _reshape_map(main.amap, main.shape, shape_out)
    if reshaped is not None:
        return reshaped
    shape_in, nd_in, nd_out = main.shape, len(main.shape), len(shape_out)

    def fn(axis: int) -> int | None:
        if -axis <= nd_out and shape_out[axis] == shape_in[axis]:
            return axis
        return None

    return _remap(main.amap, fn) if nd_in else {}


# --- module call sites --------------------------------------------------------

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_MAXPOOL = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
_AVGPOOL = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_LPPOOL = (nn.LPPool1d, nn.LPPool2d)
_ADAPTIVE = (
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)  # fmt: skip
_PADS = tuple(
    getattr(nn, name)
    for name in (
        "ConstantPad1d", "ConstantPad2d", "ConstantPad3d", "ZeroPad1d", "ZeroPad2d", "ZeroPad3d",
        "ReflectionPad1d", "ReflectionPad2d", "ReflectionPad3d", "ReplicationPad1d",
        "ReplicationPad2d", "ReplicationPad3d", "CircularPad1d", "CircularPad2d", "CircularPad3d",
    )
    if hasattr(nn, name)
)  # fmt: skip
_ELEMENTWISE = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Softsign, nn.Softshrink, nn.Hardshrink,
    nn.Tanhshrink, nn.Threshold, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.LogSigmoid,
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
    nn.FeatureAlphaDropout, nn.LocalResponseNorm, nn.ChannelShuffle,
)  # fmt: skip
_SOFTMAX = (nn.Softmax, nn.LogSoftmax, nn.Softmin)
_LAYERNORM: tuple[type, ...] = (nn.LayerNorm, *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()))


def _ntuple(value: Any, n: int) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * n
    out = tuple(int(v) for v in value)
    return out * n if len(out) == 1 and n > 1 else out


def _dims_of(module_or_name: Any) -> int:
    name = module_or_name if isinstance(module_or_name, str) else type(module_or_name).__name__
    for k in (3, 2, 1):
        if f"{k}d" in name:
            return k
    return 1


def _window(
    kind: str,
    nk: int,
    kernel: Any,
    stride: Any,
    dilation: Any,
    padding: Any,
    *,
    groups: int = 1,
    padding_mode: str = "zeros",
    **extra: Any,
) -> dict[str, Any]:
    """Window params on the last ``nk`` tensor axes; ``padding`` may be 'same' / 'valid'."""
    k = _ntuple(kernel, nk)
    s = _ntuple(stride if stride not in (None, [], ()) else kernel, nk)
    d = _ntuple(dilation, nk)
    if padding == "valid":
        padding = 0
    if padding == "same":  # PyTorch pads total // 2 on the left, the rest on the right
        total = [di * (ki - 1) for ki, di in zip(k, d, strict=True)]
        before = tuple(t // 2 for t in total)
        after = tuple(t - t // 2 for t in total)
    else:
        before = after = _ntuple(padding, nk)
    params: dict[str, Any] = {
        "axes": tuple(range(-nk, 0)), "kernel": k, "stride": s, "dilation": d,
        "padding": before, "padding_after": after,
    }  # fmt: skip
    if kind == "conv":
        params.update(groups=int(groups), padding_mode=padding_mode)
    params.update(extra)
    return params


def _window_map(kind: str, params: dict[str, Any], main: Layout, out: tuple[int, ...]) -> AxisMap:
    """A window op keeps axes in place; one whose window covers a whole axis (a full-kernel
    classifier conv, a global pool) leaves 1 position and the axis is gone. A strided window
    that happens to leave 1 position of a short input keeps the axis (a 1-position map)."""
    amap = dict(main.amap)
    shape = main.shape or ()
    for j, a in enumerate(params["axes"]):
        for key in _spatial_at(amap, a):
            if -a <= len(out) and out[a] == 1 and shape[a] > 1:
                if "kernel" not in params:  # an adaptive pool: its bins cover the axis
                    amap[key] = GONE
                    continue
                reach = (params["kernel"][j] - 1) * params["dilation"][j] + 1
                padded = shape[a] + params["padding"][j] + params["padding_after"][j]
                if reach >= padded:
                    amap[key] = GONE
    if kind == "conv":  # a key on the channel axis is mixed by the full channel connection
        amap = _gone(amap, [params["axes"][0] - 1])
    return amap


def _pad_params(pad: Sequence[int], mode: str, value: Any) -> dict[str, Any]:
    """F.pad order (last axis first: left, right, top, bottom...) to per-axis amounts."""
    n = len(pad) // 2
    axes = tuple(range(-n, 0))
    before = tuple(int(pad[2 * (-a - 1)]) for a in axes)
    after = tuple(int(pad[2 * (-a - 1) + 1]) for a in axes)
    return {"axes": axes, "before": before, "after": after, "mode": mode, "value": value}


def _adaptive(module_or_mode: str, nk: int, output_size: Any, main: Layout, out: tuple[int, ...]):
    shape = main.shape or ()
    sizes = _ntuple(
        [shape[-nk + j] if o is None else o for j, o in enumerate(_listify(output_size, nk))], nk
    )
    axes = tuple(range(-nk, 0))
    params: dict[str, Any] = {"axes": axes, "mode": module_or_mode}
    if all(o == 1 for o in sizes):
        return "global_pool", params, _gone(main.amap, [a for a in axes if shape[a] > 1])
    params.update(output_size=sizes, input_size=tuple(shape[a] for a in axes))
    return "adaptive_pool", params, _window_map("pool", params, main, out)


def _listify(value: Any, n: int) -> list[Any]:
    if value is None or isinstance(value, int):
        return [value] * n
    out = list(value)
    return out * n if len(out) == 1 and n > 1 else out


def _original_class(module: nn.Module) -> type:
    cls = type(module)
    if cls.__module__ == "torch.nn.utils.parametrize" and cls.__bases__:
        return cls.__bases__[0]  # ParametrizedConv2d -> Conv2d
    return cls


def describe_module(
    module: nn.Module, main: Layout | None, out: tuple[int, ...] | None, is_tuple: bool = False
) -> Described:
    """Kind, params and output axis map of one call of a module.

    Args:
        module: the module called.
        main: layout of its (first) tensor input; None when it had none.
        out: its full output shape (element 0 of a tuple output).
        is_tuple: it returned a tuple.

    >>> describe_module(nn.ReLU(), input_layout((2, 3, 8)), (2, 3, 8))[0]
    'pointwise'
    """
    cls = _original_class(module)
    if main is None or main.shape is None or out is None:
        return "opaque", {"class": cls.__name__}, guess_map(main, out)
    nd = len(main.shape)
    params: dict[str, Any]
    m: Any = module
    if isinstance(m, _CONV):
        nk = len(m.kernel_size)
        params = _window(
            "conv", nk, m.kernel_size, m.stride, m.dilation, m.padding,
            groups=m.groups, padding_mode=m.padding_mode,
        )  # fmt: skip
        return "conv", params, _window_map("conv", params, main, out)
    if isinstance(m, (*_MAXPOOL, *_AVGPOOL, *_LPPOOL)):
        nk = _dims_of(m)
        mode = "max" if isinstance(m, _MAXPOOL) else "avg" if isinstance(m, _AVGPOOL) else "lp"
        params = _window(
            "pool", nk, m.kernel_size, m.stride, getattr(m, "dilation", 1),
            getattr(m, "padding", 0), mode=mode, ceil_mode=bool(m.ceil_mode),
        )  # fmt: skip
        return "pool", params, _window_map("pool", params, main, out)
    if isinstance(m, _ADAPTIVE):
        mode = "avg" if "Avg" in cls.__name__ else "max"
        return _adaptive(mode, _dims_of(m), m.output_size, main, out)
    if isinstance(m, _PADS):
        mode = (
            "reflect" if "Reflection" in cls.__name__
            else "replicate" if "Replication" in cls.__name__
            else "circular" if "Circular" in cls.__name__
            else "constant"
        )  # fmt: skip
        return "pad", _pad_params(m.padding, mode, getattr(m, "value", 0.0)), dict(main.amap)
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        return "pointwise", {"class": cls.__name__, "per_channel_axis": 1 - nd}, dict(main.amap)
    if isinstance(m, (nn.modules.instancenorm._InstanceNorm, nn.GroupNorm)):
        params = {"class": cls.__name__, "statistics_over_positions": True}
        if getattr(m, "affine", False):
            params["per_channel_axis"] = 1 - nd
        return "pointwise", params, dict(main.amap)
    if isinstance(m, _LAYERNORM):
        norm: Any = m
        axes = tuple(range(-len(norm.normalized_shape), 0))
        params = {"class": cls.__name__, "normalized_axes": axes}
        if norm.elementwise_affine:
            params["affine_axes"] = axes
        return "pointwise", params, dict(main.amap)
    if isinstance(m, nn.PReLU):
        params = {"class": cls.__name__}
        if m.num_parameters > 1:
            params["per_channel_axis"] = 1 - nd
        return "pointwise", params, dict(main.amap)
    if isinstance(m, _SOFTMAX):
        dim = m.dim if m.dim is not None else (0 if nd in (0, 1, 3) else 1)
        return "pointwise", {"class": cls.__name__, "dim": _neg(dim, nd)}, dict(main.amap)
    if isinstance(m, nn.Softmax2d):
        return "pointwise", {"class": cls.__name__, "dim": -3}, dict(main.amap)
    if isinstance(m, nn.GLU):
        dim = _neg(m.dim, nd)
        if _keys_at(main.amap, dim, ("live", "mixed")):
            return "opaque", {"class": cls.__name__, "dim": dim}, guess_map(main, out)
        return "pointwise", {"class": cls.__name__, "dim": dim}, dict(main.amap)
    if isinstance(m, _ELEMENTWISE):
        return "pointwise", {"class": cls.__name__}, dict(main.amap)
    if isinstance(m, (nn.Flatten, nn.Unflatten)):
        amap = _reshape_map(main.amap, main.shape, out) or guess_map(main, out)
        return "reshape", {"op": cls.__name__.lower(), "shape": out[1:]}, amap
    if isinstance(m, nn.Linear):
        params = {"axis": -1, "in_features": m.in_features, "out_features": m.out_features}
        return "linear", params, _gone(main.amap, [-1])
    if isinstance(m, (nn.LSTM, nn.GRU, nn.RNN)):
        batched = nd == 3
        seq = -2 if (m.batch_first or not batched) else -3
        params = {
            "class": cls.__name__, "batch_first": bool(m.batch_first), "seq_axis": seq,
            "bidirectional": bool(m.bidirectional), "hidden_size": int(m.hidden_size),
        }  # fmt: skip
        return ("lstm" if isinstance(m, nn.LSTM) else "rnn"), params, _gone(main.amap, [-1])
    params = {"class": cls.__name__}
    if isinstance(m, _TRANSPOSED):
        params["reason"] = "transposed convolution"
    return "opaque", params, guess_map(main, out)


# --- functional / method call sites ------------------------------------------

_POINTWISE_FN = frozenset(
    """relu relu6 gelu silu sigmoid tanh elu selu celu leaky_relu hardtanh hardswish
    hardsigmoid softplus mish logsigmoid log_sigmoid softsign threshold exp expm1 log log1p
    log2 log10 sqrt rsqrt square abs neg negative sign sgn sin cos tan erf erfc floor ceil
    round trunc frac reciprocal clamp clamp_min clamp_max clip hardshrink softshrink
    tanhshrink rrelu dropout alpha_dropout feature_alpha_dropout dropout1d dropout2d
    dropout3d native_dropout contiguous clone detach to type float double half bfloat16
    alias lift_fresh_copy to_copy nan_to_num positive local_response_norm channel_shuffle
    logical_not bitwise_not isnan isfinite sigmoid_ silu_ relu_ identity""".split()
)
_BINARY_FN = frozenset(
    """add sub rsub mul div true_divide truediv floordiv floor_divide maximum minimum fmax
    fmin pow remainder mod fmod atan2 hypot eq ne lt le gt ge logical_and logical_or
    logical_xor bitwise_and bitwise_or and or xor where masked_fill addcmul addcdiv lerp
    copysign xlogy""".split()
)
_REDUCE_FN = frozenset(
    "mean sum amax amin max min logsumexp std var norm prod nansum nanmean median all any"
    " count_nonzero std_mean var_mean".split()
)
_SHAPE_FN = frozenset(
    "view reshape unsafe_view flatten unflatten squeeze unsqueeze view_as reshape_as ravel".split()
)
_PERMUTE_FN = frozenset("permute transpose swapaxes swapdims movedim moveaxis t".split())
_EXPAND_FN = frozenset("expand expand_as broadcast_to".split())
_SPLIT_FN = frozenset("split chunk unbind split_with_sizes tensor_split unsafe_split".split())
_NORM_FN = frozenset(
    "batch_norm native_batch_norm native_batch_norm_legit_no_training native_batch_norm_legit"
    " instance_norm group_norm native_group_norm layer_norm native_layer_norm rms_norm".split()
)


def _arg(args: Sequence[Any], kwargs: Mapping[str, Any], i: int, key: str, default: Any) -> Any:
    if key in kwargs:
        return kwargs[key]
    return args[i] if len(args) > i else default


def _dims_list(value: Any, nd: int) -> tuple[int, ...]:
    if value is None:
        return tuple(range(-nd, 0))
    if isinstance(value, int):
        return (_neg(value, nd),)
    return tuple(_neg(int(v), nd) for v in value)


def _tensors(values: Any) -> list[TArg]:
    found: list[TArg] = []

    def walk(v: Any) -> None:
        if isinstance(v, TArg):
            found.append(v)
        elif isinstance(v, (list, tuple)):
            for item in v:
                walk(item)
        elif isinstance(v, dict):
            for item in v.values():
                walk(item)

    walk(values)
    return found


def _has_positions(t: TArg, amap: Mapping[Key, Loc], out: tuple[int, ...]) -> bool:
    """Does operand ``t`` vary along any live spatial axis of the broadcast output?"""
    for key, loc in amap.items():
        if isinstance(key, int) and loc.state == "live" and loc.axis is not None:
            if -loc.axis <= len(t.shape) and t.shape[loc.axis] > 1 and out[loc.axis] > 1:
                return True
    return False


def _binary(name: str, args: Sequence[Any], out: tuple[int, ...]) -> Described:
    tensors = _tensors(args)
    public = [t for t in tensors if t.producer is not None and t.layout is not None]
    main = max(public, key=lambda t: len(t.shape))
    amap: AxisMap = dict(main.layout.amap) if main.layout is not None else {}
    for t in public:  # broadcasting aligns from the right: negative axes need no shift
        for key, loc in (t.layout.amap if t.layout is not None else {}).items():
            if amap.get(key, GONE).state == "gone" and loc.state != "gone" and loc.axis is not None:
                if -loc.axis <= len(out) and out[loc.axis] == t.shape[loc.axis]:
                    amap[key] = loc
    params: dict[str, Any] = {"op": name}
    constants = [t for t in tensors if t.producer is None]
    if len(public) == 1:
        if any(_has_positions(c, amap, out) for c in constants):
            params["constant_has_positions"] = True
            return "add", params, amap
        return "pointwise", params, amap
    if any(not _has_positions(t, amap, out) for t in public):
        return "mul_broadcast", params, amap
    return "add", params, amap


def _reduce(
    name: str, args: Sequence[Any], kwargs: Mapping[str, Any], main: Layout, out
) -> Described:
    nd = len(main.shape or ())
    if name == "norm":
        dim = _arg(args, kwargs, 2, "dim", None)
    else:
        dim = _arg(args, kwargs, 1, "dim", None)
        if isinstance(dim, bool):  # torch.std(x, True): unbiased, not a dim
            dim = None
    axes = _dims_list(dim, nd)
    keepdim = len(out) == nd
    amap = _gone(main.amap, axes) if keepdim else _remove_axes(main.amap, axes, nd)
    spatial = [k for a in axes for k in _spatial_at(main.amap, a, ("live", "mixed"))]
    kind = "global_pool" if spatial else "pointwise"
    return kind, {"axes": axes, "mode": name, "keepdim": keepdim}, amap


def _permute(name: str, args: Sequence[Any], kwargs: Mapping[str, Any], nd: int) -> tuple[int, ...]:
    if name == "permute":
        dims = _arg(args, kwargs, 1, "dims", None)
        if isinstance(dims, int):
            dims = args[1:]
        return tuple(_pos(int(d), nd) for d in dims)
    perm = list(range(nd))
    if name == "t":
        perm.reverse()
        return tuple(perm)
    if name in ("movedim", "moveaxis"):
        src = _listify(_arg(args, kwargs, 1, "source", 0), 1)
        dst = _listify(_arg(args, kwargs, 2, "destination", 0), 1)
        src = [_pos(int(s), nd) for s in src]
        dst = [_pos(int(d), nd) for d in dst]
        rest = iter([p for p in range(nd) if p not in src])
        placed = dict(zip(dst, src, strict=True))
        return tuple(placed[j] if j in placed else next(rest) for j in range(nd))
    d0 = _pos(int(_arg(args, kwargs, 1, "dim0", 0)), nd)
    d1 = _pos(int(_arg(args, kwargs, 2, "dim1", 1)), nd)
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return tuple(perm)


def _index_specs(
    index: Any, shape: tuple[int, ...]
) -> tuple[dict[int, tuple], dict[int, int]] | None:
    """Parse ``x[index]`` into per-input-axis specs and an input->output position map."""
    items = list(index) if isinstance(index, tuple) else [index]
    consuming = sum(1 for it in items if it is not None and it is not Ellipsis)
    nd = len(shape)
    expanded: list[Any] = []
    for it in items:
        if it is Ellipsis:
            expanded.extend([slice(None)] * (nd - consuming))
        else:
            expanded.append(it)
    specs: dict[int, tuple] = {}
    where: dict[int, int] = {}
    p = o = 0
    for it in expanded:
        if it is None:
            o += 1
            continue
        if p >= nd:
            return None
        if isinstance(it, bool) or not isinstance(it, (int, slice)):
            specs[p] = ("tensor",)
            where[p] = o
        elif isinstance(it, int):
            specs[p] = ("int", range(shape[p])[it])
            o -= 1
        else:
            r = range(shape[p])[it]
            if r.step < 0:
                specs[p] = ("reverse",)
            elif (r.start, len(r), r.step) != (0, shape[p], 1):
                specs[p] = ("slice", r.start, r.stop, r.step)
            where[p] = o
        p += 1
        o += 1
    for rest in range(p, nd):
        where[rest] = o + rest - p
    return specs, where


def _index(specs: dict[int, tuple], where: dict[int, int], main: Layout, out) -> Described:
    nd_in, nd_out = len(main.shape or ()), len(out)
    amap: AxisMap = {}
    for key, loc in main.amap.items():
        if loc.axis is None:
            amap[key] = loc
            continue
        p = _pos(loc.axis, nd_in)
        spec = specs.get(p)
        if p not in where or (spec is not None and spec[0] != "slice"):
            amap[key] = GONE
        else:
            amap[key] = Loc(loc.state, _neg(where[p], nd_out))
    index = tuple((_neg(p, nd_in), spec) for p, spec in sorted(specs.items()))
    params: dict[str, Any] = {"index": index}
    for axis, spec in index:
        if _keys_at(main.amap, axis, ("live", "mixed")) and any(
            isinstance(k, int) for k in _keys_at(main.amap, axis, ("live", "mixed"))
        ):
            params.update(axis=axis, indices=spec)
            return "index", params, amap
    return "pointwise", params, amap


def describe_function(
    name: str, args: Sequence[Any], kwargs: Mapping[str, Any], out: tuple[int, ...] | None
) -> Described:
    """Kind, params and output axis map of a functional/method/aten call site.

    Args:
        name: canonical op name (``conv2d``, ``add``, ``view``, ``getitem``, ``mean``...).
        args: arguments with tensors as :class:`TArg` and tuple producers as :class:`SeqArg`;
            for methods ``args[0]`` is ``self``.
        kwargs: keyword arguments, resolved the same way.
        out: the full output shape (element 0 of a tuple output).

    >>> lay = input_layout((2, 3, 8))
    >>> describe_function("mean", (TArg((2, 3, 8), "x", lay), -1), {}, (2, 3))[0]
    'global_pool'
    """
    first = args[0] if args else None
    if name == "getitem" and isinstance(first, SeqArg):
        which = args[1] if len(args) > 1 else 0
        lay = first.layout
        if out is not None and lay.shape is not None and tuple(lay.shape) == tuple(out):
            return "pointwise", {"item": which}, dict(lay.amap)
        return "opaque", {"item": which}, guess_map(lay, out)
    tensors = _tensors(list(args) + list(kwargs.values()))
    public = [t for t in tensors if t.producer is not None and t.layout is not None]
    main_t = public[0] if public else None
    main = main_t.layout if main_t is not None else None
    if main is None or main.shape is None or out is None:
        return "opaque", {"op": name}, guess_map(main, out)
    nd = len(main.shape)
    if name in ("max", "min") and len(args) > 1 and isinstance(args[1], TArg):
        name = "maximum" if name == "max" else "minimum"
    if name in _BINARY_FN or (name == "pow" and len(public) > 1):
        return _binary(name, args, out)
    if name in _POINTWISE_FN:
        return "pointwise", {"op": name}, dict(main.amap)
    if name in ("softmax", "log_softmax", "softmin"):
        dim = _arg(args, kwargs, 1, "dim", None)
        dim = dim if dim is not None else (0 if nd in (0, 1, 3) else 1)
        return "pointwise", {"op": name, "dim": _neg(int(dim), nd)}, dict(main.amap)
    if name in _NORM_FN:
        params: dict[str, Any] = {"op": name}
        if "layer_norm" in name or name == "rms_norm":
            axes = tuple(range(-len(_listify(_arg(args, kwargs, 1, "normalized_shape", 1), 1)), 0))
            params["normalized_axes"] = axes
            if isinstance(_arg(args, kwargs, 2, "weight", None), TArg):
                params["affine_axes"] = axes
        elif "group_norm" in name or "instance_norm" in name:
            params["statistics_over_positions"] = True
            params["per_channel_axis"] = 1 - nd
        else:
            params["per_channel_axis"] = 1 - nd
        return "pointwise", params, dict(main.amap)
    if name == "prelu":
        weight = _arg(args, kwargs, 1, "weight", None)
        params = {"op": name}
        if isinstance(weight, TArg) and math.prod(weight.shape) > 1:
            params["per_channel_axis"] = 1 - nd
        return "pointwise", params, dict(main.amap)
    if name in ("conv1d", "conv2d", "conv3d", "convolution", "_convolution"):
        weight = _arg(args, kwargs, 1, "weight", None)
        if not isinstance(weight, TArg) or (
            name.endswith("convolution") and _arg(args, kwargs, 6, "transposed", False)
        ):
            return "opaque", {"op": name, "reason": "transposed convolution"}, guess_map(main, out)
        nk = len(weight.shape) - 2
        groups = _arg(args, kwargs, 8 if name.endswith("convolution") else 6, "groups", 1)
        cparams = _window(
            "conv", nk, weight.shape[2:], _arg(args, kwargs, 3, "stride", 1),
            _arg(args, kwargs, 5, "dilation", 1), _arg(args, kwargs, 4, "padding", 0),
            groups=groups,
        )  # fmt: skip
        return "conv", cparams, _window_map("conv", cparams, main, out)
    if name.startswith(("max_pool", "avg_pool", "lp_pool")):
        nk = _dims_of(name)
        if name.startswith("lp_pool"):
            kernel, stride = (
                _arg(args, kwargs, 2, "kernel_size", 1),
                _arg(args, kwargs, 3, "stride", None),
            )
            padding, dilation, ceil = 0, 1, _arg(args, kwargs, 4, "ceil_mode", False)
        else:
            kernel = _arg(args, kwargs, 1, "kernel_size", 1)
            stride = _arg(args, kwargs, 2, "stride", None)
            padding = _arg(args, kwargs, 3, "padding", 0)
            is_max = name.startswith("max")
            dilation = _arg(args, kwargs, 4, "dilation", 1) if is_max else 1
            ceil = _arg(args, kwargs, 5 if is_max else 4, "ceil_mode", False)
        mode = name.split("_")[0]
        pparams = _window(
            "pool", nk, kernel, stride, dilation, padding, mode=mode, ceil_mode=bool(ceil)
        )
        return "pool", pparams, _window_map("pool", pparams, main, out)
    if name.startswith(("adaptive_avg_pool", "adaptive_max_pool")):
        mode = "avg" if "avg" in name else "max"
        return _adaptive(mode, _dims_of(name), _arg(args, kwargs, 1, "output_size", 1), main, out)
    if name in ("pad", "constant_pad_nd") or name.startswith(
        ("reflection_pad", "replication_pad", "pad_circular", "circular_pad")
    ):
        pad = _arg(args, kwargs, 1, "pad", None) or _arg(args, kwargs, 1, "padding", ())
        mode = _arg(args, kwargs, 2, "mode", "constant") if name == "pad" else (
            "reflect" if name.startswith("reflection") else "replicate"
            if name.startswith("replication") else "circular" if "circular" in name else "constant"
        )  # fmt: skip
        value = _arg(args, kwargs, 3 if name == "pad" else 2, "value", 0.0)
        return "pad", _pad_params(list(pad), str(mode), value), dict(main.amap)
    if name in _REDUCE_FN:
        return _reduce(name, args, kwargs, main, out)
    if name in _SHAPE_FN:
        amap = _reshape_map(main.amap, main.shape, out)
        return "reshape", {"op": name, "shape": out[1:]}, amap or guess_map(main, out)
    if name in _PERMUTE_FN:
        perm = _permute(name, args, kwargs, nd)
        return "reshape", {"op": name, "perm": perm}, _permute_map(main.amap, perm, nd)
    if name in _EXPAND_FN:
        return "reshape", {"op": name, "shape": out[1:]}, guess_map(main, out)
    if name in ("getitem", "select", "narrow", "slice", "index_select"):
        shape = main.shape
        if name == "getitem":
            index = args[1] if len(args) > 1 else None
        else:
            dim = _pos(int(_arg(args, kwargs, 1, "dim", 0)), nd)
            if name == "select":
                item: Any = int(_arg(args, kwargs, 2, "index", 0))
            elif name == "narrow":
                start = int(_arg(args, kwargs, 2, "start", 0))
                item = slice(start, start + int(_arg(args, kwargs, 3, "length", 0)))
            elif name == "slice":
                start, end = (
                    _arg(args, kwargs, 2, "start", None),
                    _arg(args, kwargs, 3, "end", None),
                )
                item = slice(start, end, _arg(args, kwargs, 4, "step", 1))
            else:
                item = main_t  # an index tensor: fixed positions
            index = (*([slice(None)] * dim), item)
        parsed = _index_specs(index, shape) if index is not None else None
        if parsed is None:
            return "opaque", {"op": name}, guess_map(main, out)
        return _index(*parsed, main, out)
    if name in _SPLIT_FN:
        dim = _neg(int(_arg(args, kwargs, 1 if name == "unbind" else 2, "dim", 0)), nd)
        params = {"op": name, "axis": dim}
        if _spatial_at(main.amap, dim, ("live", "mixed")):
            params["indices"] = ("split",)
            return "index", params, _gone(main.amap, [dim])
        if name == "unbind":
            return "pointwise", params, _remove_axes(main.amap, [dim], nd)
        return "pointwise", params, dict(main.amap)
    if name in ("cat", "concat", "concatenate", "stack"):
        dim = int(_arg(args, kwargs, 1, "dim", 0))
        if name == "stack":
            p = _pos(dim, len(out))
            amap = _remap(main.amap, lambda a: _neg(_pos(a, nd) + (_pos(a, nd) >= p), nd + 1))
            return "cat", {"axis": _neg(dim, len(out)), "new_axis": True}, amap
        return "cat", {"axis": _neg(dim, nd)}, dict(main.amap)
    if name == "linear" or (
        name in ("matmul", "mm")
        and len(args) > 1
        and isinstance(args[1], TArg)
        and args[1].producer is None
        and len(args[1].shape) == 2
    ):
        return "linear", {"axis": -1, "op": name}, _gone(main.amap, [-1])
    return "opaque", {"op": name}, guess_map(main, out)


# --- geometry over the graph --------------------------------------------------


@dataclass(frozen=True)
class NodeGeometry:
    """Where the input's spatial axes are at one node, and its receptive field there.

    Attributes:
        axes: input spatial axis -> tensor axis (negative) where it lives, None once
            collapsed (pooled, indexed, or merged into features by a flatten).
        receptive_field: per input spatial axis, input positions one output position sees.
        stride: per axis, input positions between neighbouring output positions (the jump).
        offset: per axis; output position ``u`` sees input ``[u*stride - offset, ... + rf - 1]``.
        equivariant: the map from the input to this node commutes with shifts by multiples of
            ``stride`` (up to the borders); once collapsed, True means *invariant*. None: an
            op we cannot see into. Cumulative over all paths from the input.
        role: what *this* node does to positions ('conv', 'pool', 'pad', 'global pool',
            'flatten', 'mixes positions', 'reads fixed positions', 'stride mismatch',
            'non-uniform adaptive pool', ...).
    """

    axes: dict[int, int | None] = field(hash=False)
    receptive_field: tuple[int | None, ...]
    stride: tuple[int | None, ...]
    offset: tuple[int | None, ...]
    equivariant: bool | None
    role: str


@dataclass(frozen=True)
class _St:
    rf: int | None
    jump: int | None
    off: int | None
    npos: int | None

    def window(self, k: int, s: int, d: int, p: int, npos: int | None) -> _St:
        if self.rf is None or self.jump is None or self.off is None:
            return _St(None, None, None, npos)
        return _St(self.rf + (k - 1) * d * self.jump, self.jump * s, self.off + p * self.jump, npos)

    def covers(self, npos: int | None) -> _St:
        """A layer that reads all ``npos`` positions at once (global pool, Linear)."""
        n = npos if npos is not None else self.npos
        if n is None:
            return _St(None, None, None, None)
        return self.window(n, n, 1, 0, 1)

    def unknown(self) -> _St:
        return _St(None, None, None, self.npos)


_BREAKS = (
    "mixes positions", "reads fixed positions", "stride mismatch", "non-uniform adaptive pool",
    "position-dependent weights", "position-dependent constant", "recurrent over positions",
    "concatenates positions", "splits positions",
)  # fmt: skip


def _combine(values: Sequence[bool | None]) -> bool | None:
    if any(v is False for v in values):
        return False
    return None if any(v is None for v in values) else True


def _local(
    node: Any,
    main: Layout | None,
    out: Layout,
    merged: list[tuple[Layout, dict[int, _St]]],
    st: dict[int, _St],
) -> tuple[dict[int, _St], list[str]]:
    """New per-axis states and the roles this node plays (see :class:`NodeGeometry`)."""
    kind, p = node.kind, node.params
    new = dict(st)
    roles: list[str] = []
    shape_in = main.shape if main is not None and main.shape is not None else ()
    shape_out = out.shape or ()
    amap_in = main.amap if main is not None else {}

    def npos(key: int) -> int | None:
        loc = out.amap.get(key, GONE)
        if loc.state == "live" and loc.axis is not None and -loc.axis <= len(shape_out):
            return shape_out[loc.axis]
        return new[key].npos if key in new else None

    if kind in ("conv", "pool"):
        for j, a in enumerate(p["axes"]):
            for key in _spatial_at(amap_in, a):
                k, s, d = p["kernel"][j], p["stride"][j], p["dilation"][j]
                pb, pe = p["padding"][j], p["padding_after"][j]
                new[key] = st[key].window(k, s, d, pb, npos(key))
                if out.amap.get(key, GONE).state == "gone":
                    covers = (k - 1) * d + 1 >= shape_in[a] + pb + pe
                    roles.append(
                        ("global pool" if kind == "pool" else "mixes positions")
                        if covers else "reads fixed positions"
                    )  # fmt: skip
        if kind == "conv":
            for key in _spatial_at(amap_in, p["axes"][0] - 1, ("live", "mixed")):
                new[key] = st[key].covers(st[key].npos)
                roles.append("mixes positions")
        roles.append(kind)
    elif kind == "adaptive_pool":
        for j, a in enumerate(p["axes"]):
            for key in _spatial_at(amap_in, a):
                n, o = p["input_size"][j], p["output_size"][j]
                if o == n:
                    continue
                if o == 1 or n % o == 0:
                    new[key] = st[key].window(n // o, n // o, 1, 0, npos(key))
                    roles.append("global pool" if o == 1 else "adaptive pool")
                else:  # windows [floor(i n / o), ceil((i + 1) n / o)) of unequal sizes
                    kmax = max(-(-(i + 1) * n // o) - (i * n // o) for i in range(o))
                    rf = st[key].window(kmax, 1, 1, 0, npos(key))
                    new[key] = _St(rf.rf, None, rf.off, npos(key))
                    roles.append("non-uniform adaptive pool")
        roles.append("adaptive pool")
    elif kind == "global_pool":
        for a in p["axes"]:
            for key in _spatial_at(amap_in, a, ("live", "mixed")):
                new[key] = st[key].covers(st[key].npos)
        roles.append("global pool")
    elif kind == "pad":
        for j, a in enumerate(p["axes"]):
            for key in _spatial_at(amap_in, a):
                new[key] = st[key].window(1, 1, 1, p["before"][j], npos(key))
        roles.append("pad")
    elif kind == "index":
        specs = dict(p.get("index", ()))
        for a, spec in specs.items():
            for key in _spatial_at(amap_in, a, ("live", "mixed")):
                s0 = st[key]
                if spec[0] == "slice" and s0.jump is not None and s0.off is not None:
                    new[key] = _St(s0.rf, s0.jump * spec[3], s0.off - spec[1] * s0.jump, npos(key))
                    roles.append("crop")
                elif spec[0] == "int" and s0.jump is not None and s0.off is not None:
                    new[key] = _St(s0.rf, s0.jump, s0.off - spec[1] * s0.jump, 1)
                    roles.append("reads fixed positions")
                else:
                    roles.append("reads fixed positions")
        if p.get("indices") == ("split",):
            roles.append("splits positions")
        roles.append("index")
    elif kind == "reshape":
        mixed = [
            k
            for k, loc in out.amap.items()
            if isinstance(k, int) and loc.state == "mixed" and amap_in.get(k, GONE).state == "live"
        ]
        merged_into_bigger = any(
            (out.amap[k].axis is not None and amap_in[k].axis is not None)
            and shape_out[out.amap[k].axis or 0] > shape_in[amap_in[k].axis or 0]
            for k in mixed
        )
        roles.append(
            ("flatten" if merged_into_bigger else "reshape splits positions")
            if mixed
            else "reshape"
        )
    elif kind == "linear":
        for key in _spatial_at(amap_in, -1, ("live", "mixed")):
            new[key] = st[key].covers(st[key].npos)
            roles.append("mixes positions")
        roles.append("linear")
    elif kind in ("lstm", "rnn"):
        for key in _spatial_at(amap_in, p["seq_axis"]):
            new[key] = _St(st[key].covers(st[key].npos).rf, st[key].jump, st[key].off, npos(key))
            roles.append("recurrent over positions")
        for key in _spatial_at(amap_in, -1, ("live", "mixed")):
            new[key] = st[key].covers(st[key].npos)
            roles.append("mixes positions")
        roles.append(kind)
    elif kind == "pointwise":
        axes = [a for a in (p.get("per_channel_axis"),) if a is not None]
        axes += list(p.get("affine_axes", ()))
        if any(_spatial_at(amap_in, a, ("live", "mixed")) for a in axes):
            roles.append("position-dependent weights")
        if "dim" in p and _spatial_at(amap_in, p["dim"]):
            roles.append("normalises over positions")
        roles.append("pointwise")
    elif kind in ("add", "mul_broadcast", "cat"):
        keys = {k for lay, _ in merged for k, loc in lay.amap.items()
                if isinstance(k, int) and loc.state != "gone"}  # fmt: skip
        for key in sorted(keys):
            sts = [s[key] for lay, s in merged if lay.amap.get(key, GONE).state != "gone"]
            if any(s.rf is None or s.jump is None or s.off is None for s in sts):
                new[key] = _St(None, None, None, npos(key))
                continue
            jumps = {s.jump for s in sts if s.jump is not None}
            off = max(s.off for s in sts if s.off is not None)
            if len(jumps) > 1:
                new[key] = _St(
                    max(s.rf for s in sts if s.rf is not None), max(jumps), off, npos(key)
                )
                roles.append("stride mismatch")
                continue
            # union of the windows [u*J - off_i, u*J - off_i + rf_i - 1] of all inputs
            end = max(s.rf - s.off for s in sts if s.rf is not None and s.off is not None)
            new[key] = _St(end + off, sts[0].jump, off, npos(key))
        if p.get("constant_has_positions"):
            roles.append("position-dependent constant")
        if kind == "cat" and _spatial_at(out.amap, p["axis"]):
            roles.append("concatenates positions")
        roles.append({"add": "add", "mul_broadcast": "global gate", "cat": "cat"}[kind])
    elif kind in ("input", "output"):
        roles.append(kind)
    else:
        for k2, loc in out.amap.items():
            before = amap_in.get(k2, GONE)
            same = (
                loc.state == before.state == "live"
                and loc.axis is not None
                and before.axis is not None
                and shape_out[loc.axis] == shape_in[before.axis]
            )
            if isinstance(k2, int) and loc.state != "gone" and k2 in new and not same:
                new[k2] = new[k2].unknown()
        roles.append(f"opaque ({node.target})")
    for key in new:  # positions left on each live axis
        if out.amap.get(key, GONE).state == "live":
            new[key] = _St(new[key].rf, new[key].jump, new[key].off, npos(key))
    return new, roles


def geometry(graph: Graph) -> dict[str, NodeGeometry]:
    """Receptive field, stride, offset and equivariance of every node of ``graph``.

    Merges (``add``, ``mul_broadcast``, ``cat``) take the inputs that still carry an axis:
    their strides must agree (else role 'stride mismatch', not equivariant, stride = the
    largest); the offset is the largest offset and the receptive field the extent of the
    union of the inputs' windows (equal to the largest rf when the windows nest, as in a
    centred residual branch). A global pool covers the whole remaining axis (``k = s = n``).

    Args:
        graph: from :func:`interp.geometry.graph.trace`.

    Returns:
        node name -> :class:`NodeGeometry`, in topological order.

    >>> geometry(trace(model, x))["layer1.0.conv1"].stride   # doctest: +SKIP
    (1, 1)
    """
    layouts = graph._layouts
    in_layouts = graph._in_layouts
    d = len(graph.input_shape) - 1 if graph.input_shape else 0
    states: dict[str, dict[int, _St]] = {}
    result: dict[str, NodeGeometry] = {}
    for node in graph.nodes:
        out = layouts[node.name]
        if node.op == "input":
            sizes = out.shape or ()
            st = {
                i: _St(1, 1, 0, sizes[out.amap[i].axis or 0] if sizes else None) for i in range(d)
            }
            new, roles = st, ["input"]
            eq_in: list[bool | None] = [True]
        else:
            main = in_layouts.get(node.name)
            first = (
                states[node.inputs[0]]
                if node.inputs
                else {i: _St(None, None, None, None) for i in range(d)}
            )
            merged = [(layouts[i], states[i]) for i in node.inputs]
            new, roles = _local(node, main, out, merged, first)
            eq_in = [result[i].equivariant for i in node.inputs]
        if node.params.get("unseen_ops_before") and node.inputs:
            # hooks: the input was changed by ops no hook saw; where positions went is a guess
            seen = layouts[node.inputs[0]].amap
            main_map = in_layouts[node.name].amap if node.name in in_layouts else {}
            if any(seen.get(i, GONE) != main_map.get(i, GONE) for i in range(d)):
                roles.insert(0, "unseen ops before")
        breaks = [r for r in roles if r in _BREAKS]
        unknown = roles[-1].startswith("opaque") or "unseen ops before" in roles
        local: bool | None = False if breaks else (None if unknown else True)
        role = (
            breaks[0] if breaks
            else "unseen ops before" if "unseen ops before" in roles
            else next((r for r in roles if r == "global pool"), roles[-1])
        )  # fmt: skip
        states[node.name] = new
        axes = {
            i: (out.amap[i].axis if out.amap.get(i, GONE).state == "live" else None)
            for i in range(d)
        }
        result[node.name] = NodeGeometry(
            axes=axes,
            receptive_field=tuple(new[i].rf for i in range(d)),
            stride=tuple(new[i].jump for i in range(d)),
            offset=tuple(new[i].off for i in range(d)),
            equivariant=_combine([local, *eq_in]),
            role=role,
        )
    return result


def _reaching_output(graph: Graph) -> set[str]:
    by_name = {n.name: n for n in graph.nodes}
    output = graph.nodes[-1].name
    seen, todo = {output}, [output]
    while todo:
        for name in by_name[todo.pop()].inputs:
            if name not in seen:
                seen.add(name)
                todo.append(name)
    return seen


def collapse(graph: Graph, geo: Mapping[str, NodeGeometry] | None = None) -> str | None:
    """First node (topological) where the input's positions are lost for good.

    That is the first node on the way to the output whose output lacks one of the input's
    spatial axes while no later node on the way to the output carries that axis again (so an
    SE gate's pooled branch, which is broadcast back onto positions, is not a collapse).

    Args:
        graph: from :func:`interp.geometry.graph.trace`.
        geo: :func:`geometry` of ``graph``, if already computed.

    Returns:
        the node's name, or None when the output still carries every spatial axis.

    >>> collapse(trace(model, x))   # doctest: +SKIP
    'avgpool'
    """
    geo = geo if geo is not None else geometry(graph)
    reach = _reaching_output(graph)
    d = len(graph.input_shape) - 1 if graph.input_shape else 0
    live_later: dict[str, set[int]] = {}
    consumers: dict[str, list[str]] = {n.name: [] for n in graph.nodes}
    for n in graph.nodes:
        for i in n.inputs:
            consumers[i].append(n.name)
    for n in reversed(graph.nodes):
        later: set[int] = set()
        for c in consumers[n.name]:
            if c in reach:
                later |= live_later[c] | {i for i, a in geo[c].axes.items() if a is not None}
        live_later[n.name] = later
    for n in graph.nodes:
        if n.name not in reach:
            continue
        lost = {i for i in range(d) if geo[n.name].axes.get(i) is None}
        if lost - live_later[n.name]:
            return n.name
    return None


def first_break(graph: Graph, geo: Mapping[str, NodeGeometry] | None = None) -> str | None:
    """First node (topological, on the way to the output) that mixes positions.

    That is the first node whose (cumulative) ``equivariant`` is not True (a Linear over
    flattened positions, an index, a non-uniform adaptive pool, an op we cannot see into),
    or the :func:`collapse` node when it is a global pool (invariant, but positions are
    mixed there). A Flatten is not a break (the Linear after it is); a squeeze-excite gate's
    pool, broadcast back onto positions, is not one either.

    >>> first_break(trace(model, x))   # doctest: +SKIP
    'fc'
    """
    geo = geo if geo is not None else geometry(graph)
    reach = _reaching_output(graph)
    pooled = collapse(graph, geo)
    if pooled is not None and geo[pooled].role != "global pool":
        pooled = None
    for n in graph.nodes:
        if n.name == pooled or (n.name in reach and geo[n.name].equivariant is not True):
            return n.name
    return None
