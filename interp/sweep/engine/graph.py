"""The fast engine over the traced graph: the trunk once per sample, the head per shift.

For any model whose traced graph (:func:`interp.geometry.graph.trace`) has a *trunk end*:
a node that is shift-equivariant (stride ``S``, offset ``O``, receptive field ``R`` per
input axis, from :func:`interp.geometry.graph.geometry`), still carries every input axis,
and that everything after it depends on alone (a cut of the graph: residual adds, channel
cats, depthwise convs, padding layers, blur-pools before it are all fine):

1. Build the extended input ``E`` once per sample: every shifted input is a window of it,
   ``x_s[i] = E[i + t]`` (``t = max(shifts) - s``; roll tiles, zero pads, edge repeats).
2. Run the model's own trunk (its padding and all) on ``E[r:]`` for each stride phase ``r``
   of the offsets ``t``. Map position ``u`` of a shifted input reads input
   ``[u*S - O, u*S - O + R)``; where that window lies inside the input, no layer read padding
   for it, so it equals position ``u + (t - r) / S`` of the phase map.
3. The other positions (bands at the ends of each axis, whose windows reach the border) are
   recomputed per shift by running the trunk on crops of the shifted input that reach from
   the border just far enough, batched over all shifts.
4. Run the head (everything after the trunk end, whatever it is: a pooled or positional
   Linear, a full-kernel conv classifier, LogSoftmax, an MLP or an LSTM) on every shift's
   assembled map with :meth:`Graph.callable_from`.

The result equals ``model(shift(x, s, mode))`` up to float rounding, and a spot check
against brute force on sample 0 confirms it; models out of reach raise
:class:`~interp.sweep.engine.plan.Unsupported` with the node and the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from interp._guard import inspecting
from interp.errors import InterpError
from interp.shifts import check_mode, normalize_shifts, shift_many
from interp.sweep.engine.bands import gather
from interp.sweep.engine.core import _extend, _normalise, _spot_check, unique_rows
from interp.sweep.engine.plan import Unsupported

__all__ = ["graph_logits"]

_BUDGET = 256 * 2**20  # bytes of trunk activations per streamed batch, roughly
Box = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class _End:
    """The trunk end: its name, geometry per input axis, and its layout.

    ``label`` is what messages call it: the name :func:`interp.geometry.structure` gives the
    same map (``Structure.head.reads``, the node the report shows), which differs from
    ``name`` when the engine's node is a Dropout in eval, an axis move or a one-position
    global pool after it.
    """

    name: str
    stride: tuple[int, ...]
    offset: tuple[int, ...]
    field: tuple[int, ...]
    axes: tuple[int, ...]  # tensor axis (positive, batched) of each input spatial axis
    shape: tuple[int, ...]  # output shape, batched with batch 1
    peak: int  # largest activation of one forward, elements
    label: str = ""  # the structure's name for the map (``name`` when none differs)

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", self.name)


def _trunk_end(graph: Any, dims: int) -> _End:
    """The last equivariant node carrying every input axis that cuts the graph."""
    from interp.geometry.graph import geometry

    geo = geometry(graph)
    nodes = list(graph.nodes)
    for n in nodes:  # circular padding reads the far end of the map: crops cannot see it
        if "circular" in (n.params.get("padding_mode"), n.params.get("mode")):
            raise Unsupported(f"node {n.name!r} pads circularly, so its border positions read "
                              "the far end of the map; the engine recomputes borders from "
                              "crops and cannot see it")  # fmt: skip
    order = {n.name: i for i, n in enumerate(nodes)}
    peak = max((_numel(n.output_shape) for n in nodes if n.output_shape), default=1)
    # An adaptive pool with output > 1 changes its bins with the input length, so the trunk
    # run on a longer input or a crop would not be the same function past it.
    adaptive = min((i for i, n in enumerate(nodes) if n.kind == "adaptive_pool"),
                   default=len(nodes))  # fmt: skip
    # Cut: no node after i reads a node before i.
    earliest_after = len(nodes)
    best, why = None, "no node after the input"
    for i in range(len(nodes) - 1, 0, -1):
        n = nodes[i]
        g = geo[n.name]
        cut = earliest_after >= i
        reads = [order[p] for p in n.inputs if p in order]
        earliest_after = min([earliest_after, *reads])
        if n.op in ("output",) or not cut or i >= adaptive:
            continue
        if n.op != "module" and any(c.output_shape is None for c in graph.consumers(n.name)):
            continue  # read through Graph.run, whose replaced consumers must be tensors
        live = [g.axes.get(a) for a in range(dims)]
        known = None not in (*g.stride, *g.offset, *g.receptive_field)
        if g.equivariant is True and None not in live and known and n.output_shape:
            best = n
            break
        if g.equivariant is not True:
            why = f"node {n.name!r} ({g.role}) is not shift-equivariant"
    if best is None:
        raise Unsupported(f"the traced graph has no shift-equivariant trunk that everything "
                          f"after it depends on ({why})")  # fmt: skip
    g = geo[best.name]
    nd = len(best.output_shape) + 1
    axes = tuple(int(g.axes[a]) % nd for a in range(dims))
    return _End(best.name, tuple(g.stride), tuple(g.offset), tuple(g.receptive_field), axes,
                (1, *best.output_shape), peak, _map_name(graph, geo, best.name, dims))  # fmt: skip


def _map_name(graph: Any, geo: Any, name: str, dims: int) -> str:
    """The node :func:`interp.geometry.structure` names as the map that ``name`` outputs.

    The structure reads the map before a Dropout/Identity in eval, an axis move or a global
    pool over one position (the same values); walking back over those from the engine's
    trunk end gives the name the report shows for it.
    """
    from interp.geometry.core import _identity_in_eval, _moves_axes_only

    by = {n.name: n for n in graph.nodes}
    while by[name].inputs and by[name].inputs[0] != "input" and by[name].inputs[0] in by and (
        _moves_axes_only(by[name], geo, dims) or _identity_in_eval(by[name])
        or geo[name].role == "global pool"
    ):  # fmt: skip
        name = by[name].inputs[0]
    return name


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [""])[0][:160]


def _numel(shape: Iterable[int]) -> int:
    out = 1
    for v in shape:
        out *= int(v)
    return out


class _Stop(Exception):
    """Raised by the trunk-end hook: the rest of the forward is not needed."""


class _Trunk:
    """The model's own forward up to the trunk end, on inputs of any length.

    A module call site is read with a forward hook that stops the forward there (so the
    head never runs, and forwards that torch.export specialised to one length still run);
    a functional trunk end goes through :meth:`Graph.run`, with the end's consumers replaced.
    """

    def __init__(self, model: nn.Module, graph: Any, end: _End) -> None:
        self.model, self.graph, self.end = model, graph, end
        node = graph.node(end.name)
        self.site = node.module if node.op == "module" else None
        self.call = int(end.name.rsplit("#", 1)[1]) if "#" in end.name else 1
        self.after = [c.name for c in graph.consumers(end.name)]
        self.dims = dims = len(end.axes)
        self.perm = [0, *(a for a in range(1, len(end.shape)) if a not in end.axes), *end.axes]
        self.inverse = [self.perm.index(a) for a in range(len(self.perm))]
        del dims

    def _hooked(self, z: torch.Tensor) -> torch.Tensor:
        module = dict(self.model.named_modules())[self.site]  # type: ignore[index]
        seen: list[torch.Tensor] = []

        def hook(_m: nn.Module, _i: Any, out: Any) -> None:
            seen.append(out)
            if len(seen) == self.call:
                raise _Stop

        handle = module.register_forward_hook(hook)
        try:
            self.model(z)
        except _Stop:
            pass
        except (RuntimeError, ValueError, IndexError, AssertionError) as exc:
            raise Unsupported(f"the trunk up to {self.end.label!r} does not run on a longer or "
                              f"cropped input ({_first_line(exc)})") from exc  # fmt: skip
        finally:
            handle.remove()
        if len(seen) < self.call or not isinstance(seen[-1], torch.Tensor):
            raise Unsupported(f"the trunk end {self.end.label!r} was not reached by a forward")
        return seen[-1].detach()

    def _graphed(self, z: torch.Tensor) -> torch.Tensor:
        b = z.shape[0]
        shapes = [self.graph.node(c).output_shape for c in self.after]
        if None in shapes:
            raise Unsupported(f"a node after the trunk end {self.end.label!r} returns a tuple")
        repl = {c: z.new_zeros((b, *s)) for c, s in zip(self.after, shapes, strict=True)}
        try:
            _, cap = self.graph.run(z, capture=[self.end.name], replace=repl)
        except (InterpError, AssertionError) as exc:
            raise Unsupported(f"the trunk up to {self.end.label!r} does not run on a longer or "
                              f"cropped input ({_first_line(exc)})") from exc  # fmt: skip
        return cap[self.end.name]  # type: ignore[no-any-return]

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        """(B, C, *n) -> trunk-end map in canonical layout (B, F, *m)."""
        out = self._hooked(z) if self.site is not None else self._graphed(z)
        out = out.permute(self.perm)
        if out.dim() == self.dims + 1:  # no channel axis
            return out.unsqueeze(1)
        return out.flatten(1, out.dim() - self.dims - 1)

    def native(self, canon: torch.Tensor) -> torch.Tensor:
        """Canonical (B, F, *m) back to the node's layout."""
        others = [self.end.shape[a] for a in self.perm[1 : len(self.perm) - self.dims]]
        full = canon.unflatten(1, others) if others else canon.squeeze(1)
        return full.permute(self.inverse)


def graph_logits(
    model: nn.Module,
    x: torch.Tensor,
    shifts: Iterable[object],
    mode: str,
    *,
    max_bytes: int = _BUDGET,
    require_gain: bool = True,
    graph: Any = None,
) -> torch.Tensor:
    """Logits of ``model(shift(x, s, mode))`` for every sample and shift, via the graph.

    ``graph`` is the model's traced graph when the caller has one (``Structure.graph``):
    the model is then not traced again for every batch.

    Args:
        model: any traceable model with an equivariant trunk; left unchanged.
        x: (N, C, L) with int shifts, or (N, C, H, W) with ``(dy, dx)`` shifts.
        shifts: S shifts; mode: ``roll``, ``zero`` or ``edge``.
        max_bytes: working memory per streamed batch.
        require_gain: raise Unsupported when the estimated cost is over half of brute
            force's (False: run anyway, e.g. to test exactness on a few shifts).

    Returns:
        (N, S, K) logits in the model's dtype.

    Raises:
        Unsupported: no usable trunk, a speed-up out of reach, or a failed spot check.

    >>> graph_logits(model, x, range(-3, 4), "zero").shape  # doctest: +SKIP
    torch.Size([8, 7, 3])                                   # x: (8, 22, 1000)
    """
    from interp.geometry.graph import trace

    if not isinstance(x, torch.Tensor) or x.dim() not in (3, 4):
        raise TypeError("`x` must be a (N, C, L) or (N, C, H, W) tensor")
    check_mode(mode)
    dims = x.dim() - 2
    table = torch.tensor(normalize_shifts(shifts, dims), dtype=torch.long).reshape(-1, dims)
    sizes = tuple(int(v) for v in x.shape[2:])
    unique, inverse = unique_rows(_normalise(table, sizes, mode))
    probe = x[:2] if x.shape[0] > 1 else x[:1].expand(2, *x.shape[1:])
    if graph is None:
        with inspecting(model):
            graph = trace(model, probe.detach())
    end = _trunk_end(graph, dims)
    plan = _Plan(end, sizes, unique)
    if require_gain:
        plan.check_worth_it()
    trunk = _Trunk(model, graph, end)
    head = graph.callable_from(end.name, probe.detach())
    picks = sorted({0, len(unique) // 2, len(unique) - 1})
    as_list = [tuple(r) if dims > 1 else r[0] for r in unique[picks].tolist()]
    with inspecting(model):
        expected = model(shift_many(x[:1], as_list, mode)[0]).detach()
    per_sample = max(1, int(6 * end.peak * x.element_size() * (1 + plan.extended_ratio)))
    n_batch = max(1, min(x.shape[0], max_bytes // per_sample))
    parts = []
    unique = unique.to(x.device)
    with inspecting(model):
        for start in range(0, x.shape[0], n_batch):
            xb = x[start : start + n_batch].detach()
            parts.append(_batch(plan, trunk, head, xb, unique, mode, max_bytes))
            if start == 0:
                _spot_check(parts[0][0, picks], expected, unique[picks])
    return torch.cat(parts)[:, inverse.to(x.device)]


class _Plan:
    """Clean box and border bands of the trunk-end map for this input size and these shifts."""

    def __init__(self, end: _End, sizes: tuple[int, ...], unique: torch.Tensor) -> None:
        self.end, self.sizes = end, sizes
        self.m = tuple(end.shape[a] for a in end.axes)
        self.lo = unique.min(0).values.tolist()
        self.hi = unique.max(0).values.tolist()
        clean = []
        for a, (n, s, o, r, m) in enumerate(zip(sizes, end.stride, end.offset, end.field, self.m,
                                                strict=True)):  # fmt: skip
            c0 = min(m, max(0, -(-o // s)))
            c1 = max(c0, min(m, (n - r + o) // s + 1))
            clean.append((c0, c1))
            del a
        self.clean: Box = tuple(clean)
        self.bands: list[Box] = []
        for a in range(len(sizes)):
            for rng in ((0, self.clean[a][0]), (self.clean[a][1], self.m[a])):
                box = tuple(self.clean[b] if b < a else rng if b == a else (0, self.m[b])
                            for b in range(len(sizes)))  # fmt: skip
                if all(hi > lo for lo, hi in box):
                    self.bands.append(box)
        t = torch.tensor(self.hi) - unique  # (U, d): x_s[i] = E[i + t]
        self.t = t
        self.phases = sorted({tuple(int(v) for v in row) for row in
                              t.remainder(torch.tensor(end.stride))})  # fmt: skip
        extended = _numel(n + h - lo for n, h, lo in zip(sizes, self.hi, self.lo, strict=True))
        self.extended_ratio = extended / _numel(sizes)

    def crop(self, box: Box) -> Box:
        """Input window per axis that gives the map positions in ``box`` exactly."""
        out = []
        for (p0, p1), n, s, o, r in zip(box, self.sizes, self.end.stride, self.end.offset,
                                        self.end.field, strict=True):  # fmt: skip
            a = max(0, s * ((p0 * s - o) // s))
            e = min(n, (p1 - 1) * s - o + r)
            if e < n:  # room for the stride: the crop's own last positions are not read
                e = min(n, e + s)
            # A band position whose field lies wholly in the padding (a right band past the
            # input, or a left one before it) leaves a window shorter than one field, even
            # empty, and the trunk would not run on it: widen it away from the border, the
            # start by whole strides so the crop's positions stay on the map's grid.
            if e - a < r:
                if e == n:
                    a = max(0, a - s * -(-(r - (e - a)) // s))
                e = min(n, max(e, a + r))
            out.append((a, e))
        return tuple(out)

    def cost(self) -> float:
        """Estimated cost in brute-force forwards per shift, for the shifts of one batch."""
        u = self.t.shape[0]
        trunk = len(self.phases) * self.extended_ratio
        bands = sum(_numel(e - a for a, e in self.crop(b)) for b in self.bands) / _numel(self.sizes)
        return (trunk + u * bands) / u

    def check_worth_it(self) -> None:
        cost = self.cost()
        if cost > 0.5:
            area = _numel(hi - lo for lo, hi in self.clean) / _numel(self.m)
            raise Unsupported(
                f"at trunk end {self.end.label!r} (stride {self.end.stride}, receptive field "
                f"{self.end.field}, offset {self.end.offset}) {len(self.phases)} stride phases "
                f"for {self.t.shape[0]} shifts and {100 * (1 - area):.0f}% of the map's "
                f"positions reaching the border would cost {cost:.2f} forwards per shift; "
                "brute force is as fast"
            )


def _windows(e: torch.Tensor, t: torch.Tensor, box: Box) -> torch.Tensor:
    """Crops ``x_s[box]`` of every shift from E: (n, S, C, *box) -> flattened (n*S, C, *box)."""
    out = gather(e, t, box)
    return out.flatten(0, 1)


def _batch(plan: _Plan, trunk: _Trunk, head: Callable[[torch.Tensor], Any], xb: torch.Tensor,
           unique: torch.Tensor, mode: str, max_bytes: int) -> torch.Tensor:  # fmt: skip
    n, dims = xb.shape[0], xb.dim() - 2
    zeros = (0,) * dims
    e = _extend(xb, plan.lo, plan.hi, mode, (zeros, zeros))  # (n, C, *(L + span))
    t = plan.t.to(xb.device)
    stride = torch.tensor(plan.end.stride, device=xb.device)
    residue = t.remainder(stride)
    maps: dict[tuple[int, ...], torch.Tensor] = {}
    if all(hi > lo for lo, hi in plan.clean):
        for r in plan.phases:
            maps[r] = trunk(e[(..., *(slice(v, None) for v in r))])  # (n, F, *Lb)
    feat = None
    # Per (sample, shift): the assembled map and its head, and the crops' trunk activations.
    crops = sum(_numel(e_ - a for a, e_ in plan.crop(b)) for b in plan.bands) / _numel(plan.sizes)
    pair = xb.element_size() * (3 * _numel(plan.end.shape) + 4 * plan.end.peak * crops)
    rows = max(1, int(max_bytes // max(1.0, n * pair)))
    out = []
    for c0 in range(0, t.shape[0], rows):
        tc, rc = t[c0 : c0 + rows], residue[c0 : c0 + rows]
        k = tc.shape[0]
        fmap: torch.Tensor | None = None
        if maps:
            for r, node in maps.items():
                sel = (rc == torch.tensor(r, device=xb.device)).all(1).nonzero().squeeze(1)
                if sel.numel() == 0:
                    continue
                q = (tc[sel] - torch.tensor(r, device=xb.device)) // stride
                part = gather(node, q, plan.clean)  # (n, k_r, F, *clean)
                if fmap is None:
                    feat = node.shape[1]
                    fmap = node.new_empty((n, k, feat, *plan.m))
                fmap[(slice(None), sel, slice(None), *(slice(a, b) for a, b in plan.clean))] = part
        for box in plan.bands:
            window = plan.crop(box)
            crop = _windows(e, tc + torch.tensor([a for a, _ in window], device=xb.device),
                            tuple((0, b - a) for a, b in window))  # fmt: skip
            values = trunk(crop)  # (n*k, F, *crop map)
            s_ = plan.end.stride
            inner = tuple(slice(p0 - a // s, p1 - a // s)
                          for (p0, p1), (a, _), s in zip(box, window, s_, strict=True))  # fmt: skip
            if any(sl.stop > values.shape[2 + i] for i, sl in enumerate(inner)):
                raise Unsupported(f"a crop of the input gives too few positions at "
                                  f"{plan.end.label!r}; the trunk's length rule is not "
                                  "the usual one")  # fmt: skip
            values = values[(..., *inner)].unflatten(0, (n, k))
            if fmap is None:
                feat = values.shape[2]
                fmap = values.new_empty((n, k, feat, *plan.m))
            fmap[(slice(None), slice(None), slice(None), *(slice(a, b) for a, b in box))] = values
        assert fmap is not None
        logits = head(trunk.native(fmap.flatten(0, 1)))
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
            raise Unsupported("the model does not return (N, classes) logits")
        out.append(logits.detach().unflatten(0, (n, k)))
    return torch.cat(out, 1)
