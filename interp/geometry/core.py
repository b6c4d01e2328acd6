"""Per-call-site geometry of a model, and the head it ends in, read from its traced graph.

:func:`structure` traces the model (:func:`interp.geometry.graph.trace`: torch.fx, else
torch.export, else leaf hooks), gives every call site its receptive field, stride and offset
per input spatial axis (:func:`interp.geometry.graph.geometry`: the recurrence of Araujo et al.,
Distill 2019, along every path, axes followed through permutes and reshapes), and finds the
head by measurement (:mod:`interp.geometry.head`): the trunk is the longest shift-equivariant
prefix of the graph, and rolling its last map tells a pooled head from a positional one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from interp._guard import inspecting
from interp._util import model_device
from interp.errors import InterpError
from interp.geometry.graph import Graph, Node, NodeGeometry, collapse, first_break, geometry, trace
from interp.geometry.head import Head, HeadKind, canonical, measure, uncanonical
from interp.geometry.infer import infer_input_shape
from interp.geometry.kinds import IDENTITY_IN_EVAL, window

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "IDENTITY_IN_EVAL",
    "Head",
    "HeadKind",
    "Layer",
    "Structure",
    "canonical",
    "explain",
    "infer_input_shape",
    "strided_layers",
    "structure",
    "uncanonical",
    "window",
]


@dataclass(frozen=True)
class Layer:
    """Geometry of one call site of the traced graph.

    ``receptive_field``, ``stride`` and ``offset`` are per input spatial axis, in input
    positions: output position ``j`` of this layer reads input positions
    ``j * stride - offset ... j * stride - offset + receptive_field - 1``.
    They are None once positions have collapsed (``stride`` also for a non-uniform
    adaptive pool, whose bins have no single step).
    """

    name: str
    type: str
    output_shape: tuple[int, ...]  # without the batch axis
    receptive_field: tuple[int, ...] | None
    stride: tuple[int, ...] | None
    offset: tuple[int, ...] | None
    equivariant: bool | None  # None: acts on a vector with no positions left
    role: str  # "conv", "pool", "pointwise", "global pool", "reshape", "positional head", ...
    # The module whose forward makes this call, for a function or method call site
    # (torch.log in an Expression module 'pool_nonlin_exp'); None for a module's own call.
    module: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Structure:
    """Call sites, input shape and head of a model.

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
    collapse: str | None  # the call site where the input's positions are lost for good
    graph: Graph | None = field(default=None, compare=False, repr=False)
    method: str = "fx"  # how the graph was read: 'fx' | 'export' | 'hooks' | 'torchscript'
    fallback_reason: str | None = None
    unavailable: tuple[str, ...] = ()  # parts that could not be read (TorchScript), one line each

    def layer(self, name: str) -> Layer:
        """Return the layer called ``name`` (a call site: module path, ``path#2``, ``add_1``)."""
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
            "method": self.method,
            "fallback_reason": self.fallback_reason,
            "unavailable": list(self.unavailable),
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
                    "module": lay.module,
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
                "affine": self.head.affine,
                "breaks": self.head.breaks,
                "axes": list(self.head.axes),
                "measured": self.head.measured,
            },
        }

    def sentences(self) -> list[str]:
        """Plain sentences about shift invariance that follow from the architecture."""
        return explain(self)

    def plot(self, ax: Any = None) -> Figure:
        """Receptive field and stride per layer (input positions, log scale)."""
        from interp.plots.geometry import plot_geometry

        rows = [lay for lay in self.layers if lay.receptive_field is not None]
        return plot_geometry(
            [lay.name for lay in rows],
            [max(lay.receptive_field or (1,)) for lay in rows],
            [max(lay.stride) if lay.stride is not None else None for lay in rows],
            reads=self.head.reads,
            ax=ax,
        )


def _listify(value: tuple[int, ...] | None) -> list[int] | None:
    return None if value is None else list(value)


def structure(
    model: nn.Module,
    x: torch.Tensor | None = None,
    *,
    input_shape: Sequence[int] | None = None,
) -> Structure:
    """Trace ``model``, give every call site its geometry and measure its head.

    Args:
        model: a classifier taking (N, C, L) or (N, C, H, W).
        x: an example batch (its first two samples are used; a second, seeded random sample
            with x's mean and spread is added when it has one); or
        input_shape: the shape of one input without the batch axis. When neither
            is given the shape is inferred (see :func:`infer_input_shape`).

    Returns:
        A :class:`Structure`. The model is left unchanged.

    Raises:
        InterpError: when the input shape cannot be found or the model fails on it.

    >>> s = structure(model, torch.randn(4, 22, 1000))      # doctest: +SKIP
    >>> s.head.kind, s.head.reads, s.head.axes             # doctest: +SKIP
    ('positional', 'drop', (-2,))
    """
    xb = _examples(model, x, input_shape)
    if xb.dim() not in (3, 4):
        raise InterpError(
            f"input shape {tuple(xb.shape[1:])} is not (C, L) or (C, H, W); "
            "interp explains models of 1D signals and 2D images"
        )
    dims = xb.dim() - 2
    if isinstance(model, torch.jit.ScriptModule):
        return _scripted(model, xb, dims)
    graph, xb = _trace(model, xb, x)
    return _from_graph(graph, xb, dims)


def _from_graph(
    graph: Graph, xb: torch.Tensor, dims: int, *, method: str | None = None,
    reason: str | None = None, unavailable: tuple[str, ...] = (),
) -> Structure:  # fmt: skip
    geo = geometry(graph)
    out, _ = graph.run(xb)
    if not isinstance(out, torch.Tensor):
        raise InterpError(
            f"the model returned {type(out).__name__}, not a tensor of logits; "
            "wrap it so that forward returns (N, classes)"
        )
    head = _head(graph, geo, xb, dims)
    collapsed = collapse(graph, geo)
    layers = _layers(graph, geo, head, dims)
    return Structure(
        input_shape=tuple(int(v) for v in xb.shape[1:]),
        spatial_dims=dims,
        layers=tuple(layers),
        head=head,
        num_classes=int(out.shape[1]) if out.dim() == 2 else None,
        global_pooling=head.kind == "pooled",
        collapse=collapsed,
        graph=graph,
        method=method or graph.method,
        fallback_reason=reason or graph.fallback_reason,
        unavailable=unavailable,
    )


def _scripted(model: nn.Module, xb: torch.Tensor, dims: int) -> Structure:
    """A TorchScript model: its TorchScript graph is read where torch can convert it (see
    :func:`interp.geometry.graph.trace`); else say which parts are unavailable."""
    try:
        graph = trace(model, xb)
    except InterpError as err:  # no graph: the parts that need one are unavailable
        with inspecting(model), torch.no_grad():
            out = model(xb)
        return Structure(
            input_shape=tuple(int(v) for v in xb.shape[1:]), spatial_dims=dims, layers=(),
            head=Head("unknown", None, None, None, None, None, False, measured=(
                "not measured: the TorchScript graph could not be read")),
            num_classes=int(out.shape[1]) if out.dim() == 2 else None, global_pooling=False,
            collapse=None, graph=None, method="hooks", fallback_reason=str(err),
            unavailable=(
                "layer geometry, the head and interp.record: this TorchScript model's graph "
                "could not be read and ScriptModules take no hooks; shift sweeps, consistency "
                "and attributions still work (they only run the model)",
            ),
        )  # fmt: skip
    return _from_graph(
        graph, xb, dims,
        unavailable=("interp.record on module paths: ScriptModules take no hooks; call sites "
                     "have aten names (conv2d_1, relu__3); capture them with "
                     "structure.graph.run(x, capture=[...])",),
    )  # fmt: skip


def _examples(
    model: nn.Module, x: torch.Tensor | None, input_shape: Sequence[int] | None
) -> torch.Tensor:
    """Two samples: x's first two, or x's first and a seeded random one like it."""
    gen = torch.Generator().manual_seed(0)
    device = model_device(model)
    if x is None:
        shape = tuple(input_shape) if input_shape is not None else infer_input_shape(model)
        return torch.rand((2, *shape), generator=gen).to(device)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"`x` must be a torch.Tensor, got {type(x).__name__}")
    x = x.detach()
    if x.dim() < 2 or x.shape[0] == 0:
        raise InterpError(f"`x` of shape {tuple(x.shape)} is not a batch; pass x[None]")
    if x.shape[0] >= 2:
        return x[:2]
    spread = float(x.float().std()) if x.numel() > 1 else 1.0
    extra = torch.randn(x.shape, generator=gen) * (spread or 1.0) + float(x.float().mean())
    return torch.cat([x, extra.to(device=x.device, dtype=x.dtype)])


def _trace(
    model: nn.Module, xb: torch.Tensor, x: torch.Tensor | None
) -> tuple[Graph, torch.Tensor]:
    """Trace on two samples; else on one, else on all of x (a .pt2 with a fixed batch)."""
    tries = [xb, xb[:1]]
    if x is not None and x.shape[0] > 2:
        tries.append(x.detach())
    first: InterpError | None = None
    for batch in tries:
        try:
            return trace(model, batch), batch
        except InterpError as err:
            first = first or err
    assert first is not None
    form = "C,L" if xb.dim() == 3 else "C,H,W"
    raise InterpError(
        f"the model fails on an input of shape {tuple(xb.shape)} ({first}); pass the right "
        f"`--input-shape` (this input is {form}: {','.join(str(v) for v in xb.shape[1:])}) "
        "or `--data`"
    ) from first


def _reaching(graph: Graph) -> set[str]:
    by = {n.name: n for n in graph.nodes}
    seen, todo = {"output"}, ["output"]
    while todo:
        for name in by[todo.pop()].inputs:
            if name not in seen:
                seen.add(name)
                todo.append(name)
    return seen


def _cut_nodes(graph: Graph) -> set[str]:
    """Nodes every input -> output path passes through."""
    reach = _reaching(graph)
    consumers: dict[str, list[str]] = {n.name: [] for n in graph.nodes}
    for n in graph.nodes:
        for i in n.inputs:
            consumers[i].append(n.name)
    cuts = set()
    for n in graph.nodes:
        if n.op in ("input", "output") or n.name not in reach:
            continue
        seen, todo = {"input"}, ["input"]
        while todo:
            for c in consumers[todo.pop()]:
                if c != n.name and c not in seen and c in reach:
                    seen.add(c)
                    todo.append(c)
        if "output" not in seen:
            cuts.add(n.name)
    return cuts


def _moves_axes_only(node: Node, geo: Mapping[str, NodeGeometry], dims: int) -> bool:
    if node.kind != "reshape" or len(node.inputs) != 1:
        return False
    before, after = geo[node.inputs[0]], geo[node.name]
    return all(before.axes.get(i) is not None and after.axes.get(i) is not None
               for i in range(dims))  # fmt: skip


def _find_reads(graph: Graph, geo: Mapping[str, NodeGeometry], dims: int) -> str | None:
    """The last cut node, equivariant and carrying every spatial axis; before axis moves."""
    cuts = _cut_nodes(graph)
    reads = None
    for n in graph.nodes:
        g = geo[n.name]
        live = all(g.axes.get(i) is not None for i in range(dims))
        known = None not in (*g.stride, *g.offset, *g.receptive_field)
        if n.name in cuts and live and known and g.equivariant is True:
            reads = n.name
    if reads is None:
        return None
    by = {n.name: n for n in graph.nodes}
    while by[reads].inputs and by[reads].inputs[0] != "input" and (
        _moves_axes_only(by[reads], geo, dims) or _identity_in_eval(by[reads])
        or geo[reads].role == "global pool"  # over 1 position: the map is its input
    ):
        # (N, L, C) after a permute: read the map before it; a Dropout in eval returns its
        # input, so the map is the layer before it (today's convention: seed_cnn reads '2')
        reads = by[reads].inputs[0]
    return reads


_IDENTITY_NAMES = frozenset(
    "Identity Dropout Dropout1d Dropout2d Dropout3d AlphaDropout FeatureAlphaDropout".split()
)


def _identity_in_eval(node: Node) -> bool:
    return node.op == "module" and node.target in _IDENTITY_NAMES and len(node.inputs) == 1


def _after(graph: Graph, name: str) -> list[Node]:
    """Nodes downstream of ``name`` that reach the output, in topological order."""
    reach = _reaching(graph)
    down = {name}
    out = []
    for n in graph.nodes:
        if any(i in down for i in n.inputs):
            down.add(n.name)
            if n.name in reach and n.op != "output":
                out.append(n)
    return out


def _head(graph: Graph, geo: Mapping[str, NodeGeometry], xb: torch.Tensor, dims: int) -> Head:
    reads = _find_reads(graph, geo, dims)
    if reads is None:
        why = next(
            (f"{n.name!r} ({geo[n.name].role})" for n in graph.nodes
             if geo[n.name].equivariant is not True), "the first layer",
        )  # fmt: skip
        return Head("unknown", None, None, None, None, None, False, measured=(
            f"no shift-equivariant feature map carries every input axis: equivariance ends "
            f"at {why}"))  # fmt: skip
    g = geo[reads]
    axes = tuple(int(g.axes[i]) for i in range(dims))  # type: ignore[arg-type]
    _, caps = graph.run(xb, capture=[reads])
    a = caps[reads]
    positions = tuple(int(a.shape[ax]) for ax in axes)
    channels = math.prod(a.shape[1:]) // max(1, math.prod(positions))
    downstream = _after(graph, reads)
    classifier = [n.name for n in downstream if n.kind in ("linear", "conv")]
    linear = classifier[-1] if classifier else None
    h = graph.callable_from(reads, xb)
    h_grad = graph.callable_from(reads, xb, grad=True)
    m = measure(h, h_grad, a, axes)
    breaks = first_break(graph, geo)
    down_names = {n.name for n in downstream}
    if breaks not in down_names:
        breaks = next((n.name for n in downstream if geo[n.name].equivariant is not True), None)
    pooling, exact, measured = None, m.affine, m.sentence
    if m.kind == "pooled":
        pool = next((n for n in downstream if geo[n.name].role == "global pool"), None)
        mode = str(pool.params.get("mode", "")) if pool is not None else ""
        pooling = "mean" if mode in ("avg", "mean", "sum") else "max" if mode in (
            "max", "amax") else None  # fmt: skip
        if pool is not None and pooling is not None and not m.affine:
            # logits = b + sum_c W_c pool_c(A) is still exact when the rest is affine
            _, pcap = graph.run(xb, capture=[pool.name])
            pooled = pcap[pool.name]
            hp = graph.callable_from(pool.name, xb)
            after = measure(hp, graph.callable_from(pool.name, xb, grad=True), pooled, ())
            exact = after.affine
            measured += (
                f"; after the {pooling} pool {pool.name!r} the head is "
                f"{'affine' if after.affine else 'not affine'} (error {after.affine_error:.3g})"
            )
    confirm = _confirm_trunk(graph, reads, g, axes, xb)
    return Head(
        kind=m.kind, linear=linear, reads=reads, channels=int(channels), positions=positions,
        pooling=pooling, exact=exact, affine=m.affine, breaks=breaks, axes=axes,
        measured=f"{measured}; {confirm}",
    )  # fmt: skip


def _confirm_trunk(
    graph: Graph, reads: str, g: NodeGeometry, axes: tuple[int, ...], xb: torch.Tensor
) -> str:
    """Roll the input by the map's stride: the map rolls by one position in the interior."""
    worst, ref_max, checked = 0.0, 0.0, 0
    x_axes = tuple(range(-len(axes), 0))
    _, base = graph.run(xb, capture=[reads])
    a = base[reads]
    for i, (ax, xa) in enumerate(zip(axes, x_axes, strict=True)):
        s, off, rf = g.stride[i], g.offset[i], g.receptive_field[i]
        assert s is not None and off is not None and rf is not None
        n_in, n_out = int(xb.shape[xa]), int(a.shape[ax])
        lo = max(0, -(-off // s))
        hi = min(n_out - 2, (n_in - s - rf + off) // s)
        if hi < lo:
            continue
        _, moved = graph.run(torch.roll(xb, s, dims=xa), capture=[reads])
        b = moved[reads]
        u = torch.arange(lo, hi + 1, device=a.device)
        ref = a.index_select(ax, u)
        got = b.index_select(ax, u + 1)
        worst = max(worst, float((got - ref).abs().max()))
        ref_max = max(ref_max, float(ref.abs().max()))
        checked += 1
    if not checked:
        return f"trunk equivariance not checked numerically: {reads!r} has no interior positions"
    eps = torch.finfo(a.dtype).eps if a.is_floating_point() else 0.0
    rf_elems = math.prod(int(r) for r in g.receptive_field if r is not None)
    bound = 64 * eps * math.sqrt(rf_elems * int(xb.shape[1])) * (ref_max + 1e-30)
    if worst <= bound:
        return (
            f"trunk equivariance confirmed: rolling the input by the stride {tuple(g.stride)} "
            f"rolls {reads!r} by one position in the interior (error {worst:.3g})"
        )
    return (
        f"rolling the input by the stride {tuple(g.stride)} moves {reads!r} by one position "
        f"only up to {worst:.3g} in the interior (bound {bound:.3g}): something in the trunk "
        "sees beyond the receptive field (a global gate or a normalisation over positions)"
    )


_LEGACY_ROLES = {
    "flatten": "reshape", "non-uniform adaptive pool": "non-uniform",
}  # fmt: skip


def _layers(
    graph: Graph, geo: Mapping[str, NodeGeometry], head: Head, dims: int
) -> list[Layer]:
    """One Layer per call site (input and output excluded), in topological order."""
    layers = []
    kept = {"input"}  # nodes whose output still has its position axes (size 1 after a pool)
    for n in graph.nodes:
        if n.op in ("input", "output"):
            continue
        g = geo[n.name]
        spatial_in = any(i in kept for i in n.inputs)
        keeps = all(g.axes.get(k) is not None for k in range(dims))
        role = _LEGACY_ROLES.get(g.role, g.role)
        equivariant = g.equivariant
        rf, stride, offset = _ints(g.receptive_field), _ints(g.stride), _ints(g.offset)
        if g.role == "global pool" and n.output_shape is not None and n.inputs and (
            len(n.output_shape) == len(graph.node(n.inputs[0]).output_shape or ())
        ):
            # keepdim (N, C, 1): positions are pooled, the map keeps its (size-1) axes;
            # its stride is the input's (no subsampling step of its own)
            before = geo[n.inputs[0]]
            stride, offset, keeps = _ints(before.stride), _ints(before.offset), True
        if n.name == head.breaks and head.kind == "positional":
            # a Linear / full-kernel conv over every position; specific roles ('non-uniform',
            # 'reads fixed positions', 'recurrent over positions') say more and stay
            role = "positional head" if g.role == "mixes positions" else role
            equivariant = False
        elif not spatial_in and n.inputs:
            role, equivariant = "after collapse", None
        if keeps:
            kept.add(n.name)
        layers.append(
            Layer(
                name=n.name,
                type=n.target,
                output_shape=tuple(n.output_shape or ()),
                receptive_field=rf if keeps else None,
                stride=stride if keeps else None,
                offset=offset if keeps else None,
                equivariant=equivariant,
                role=role,
                module=n.module if n.op in ("function", "method") else None,
            )
        )
    return layers


def _ints(values: tuple[int | None, ...]) -> tuple[int, ...] | None:
    if any(v is None for v in values):
        return None
    return tuple(int(v) for v in values)  # type: ignore[arg-type]


def explain(geo: Structure) -> list[str]:
    """Plain sentences about shift invariance that follow from the architecture and the head.

    >>> explain(structure(seed_cnn, input_shape=(1, 8192)))[0]   # doctest: +SKIP
    "The head Linear '5' gives each of 64 kernels x 4026 positions its own weight..."
    """
    head = geo.head
    strided = strided_layers(geo)
    pos = "x".join(str(p) for p in head.positions or ())
    kinds = {n.name: n for n in geo.graph.nodes} if geo.graph is not None else {}
    brk = kinds.get(head.breaks or "")
    if head.kind == "positional":
        softmax = any(
            "softmax" in str(n.params.get("class", n.params.get("op", ""))).lower()
            for n in (geo.graph.nodes if geo.graph is not None else ())
        )
        if brk is not None and brk.kind == "conv":
            first = (
                f"The classifier conv {brk.name!r} covers all {pos} positions of "
                f"{head.reads!r}: it gives every (kernel, position) of its {head.channels} "
                f"kernels x {pos} positions its own weight, like Flatten -> Linear, so the "
                "model cannot be translation invariant by construction."
            )
        elif brk is not None and brk.kind == "index":
            first = (
                f"The head reads fixed positions of {head.reads!r} at {brk.name!r} (an index, "
                "not a pooling): the logits depend on where a pattern sits, so the model cannot "
                "be translation invariant by construction."
            )
        elif brk is not None and brk.kind in ("lstm", "rnn"):
            first = (
                f"The recurrent layer {brk.name!r} reads the {pos} positions of {head.reads!r} "
                "in order: rolling the map changes the logits, so the head is positional, not "
                "pooled, and the model cannot be translation invariant by construction."
            )
        else:
            what = f"Linear {head.linear!r}" if head.linear else "head"
            first = (
                f"The head {what} gives each of {head.channels} kernels x {pos} "
                f"positions of layer {head.reads!r} its own weight, with no global pooling before "
                "it: the model cannot be translation invariant by construction."
            )
        out = [
            first,
            "The convolutions are shift-equivariant, so a shifted pattern produces the same "
            "kernel activations, shifted; they then land on (kernel, position) neurons whose "
            "weights for the class were shaped only by what training put there.",
        ]
        if head.affine:
            out.append(
                f"The head is affine in the map of {head.reads!r} (measured), so the logits are "
                "exactly a bias plus a sum of per-(kernel, position) weights times activations."
            )
        elif softmax:
            out.append(
                "The model ends in a (log-)softmax, so its output is not affine in the map: "
                "the affine part is the logits before it."
            )
        else:
            out.append(
                f"The head is not affine in the map of {head.reads!r} (measured): per-position "
                "contributions are first-order (gradient x activation), not an exact sum."
            )
        return out
    if head.kind == "pooled":
        how = f"{head.pooling} over positions" if head.pooling else "pooling over positions"
        what = f"Linear {head.linear!r}" if head.linear else "head"
        out = [
            f"The head {what} reads {head.channels} kernels after {how} of layer "
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
    if geo.unavailable:
        return [
            "interp could not read this model's graph, so invariance cannot be decided from "
            "the architecture; a shift sweep with data measures it."
        ]
    return [
        "interp found no shift-equivariant feature map that every path to the output goes "
        "through, so invariance cannot be decided from the architecture; a shift sweep with "
        "data measures it."
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
