"""The head as a function of the feature map it reads, and its weights on that map.

The head is ``h(A)``: the logits as a function of the feature map ``A`` of node
``structure.head.reads`` (``structure.graph`` replaces that node's value and runs the
rest). When ``h`` is affine (a Flatten -> Linear, a conv classifier whose kernel covers
every position, AdaptiveAvgPool(k) -> Flatten -> Linear, an index at a fixed position,
any composition of linear ops) ``h(A) = b + sum W * A`` exactly, with ``W`` its
Jacobian and ``b = h(0)``: :func:`head_map` computes both once per model state, by one
backward pass per class on a float64 copy of the model (float32 when the model cannot
be copied), in the canonical layout ``(K, channels, *positions)``
(:func:`interp.geometry.canonical`). For a head ending in ``LogSoftmax`` (braindecode's
EEG nets) ``h`` is ``log_softmax`` of an affine map; the weights are those of the
affine logits before it (same argmax).

A head that is not affine (an MLP after Flatten, an LSTM) has no such weights: the
mean gradient of ``h`` over the data is its first-order (local linear) map, and
gradient x activation per position its first-order contributions, labelled so.
A pooled head keeps one weight per (class, kernel): its Linear's.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from interp._guard import bare_copy
from interp._util import model_device
from interp.errors import InterpError
from interp.geometry.core import Structure
from interp.geometry.head import canonical

__all__ = ["HeadMap", "capture_map", "head_map", "logits_node"]

_LOG_SOFTMAX = ("LogSoftmax", "log_softmax")
_CACHE: weakref.WeakKeyDictionary[Any, tuple[Any, HeadMap]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True, eq=False)
class HeadMap:
    """The head's weights on the feature map it reads (canonical layout).

    Attributes:
        kind: "positional" (weight (K, C, *P)) or "pooled" (weight (K, C)).
        weight, bias: float32 on the CPU; ``weight64`` / ``bias64`` the float64 values
            the decomposition uses (the float32 ones rounded from them).
        exact: True when ``logits = bias + sum(weight * A)`` holds exactly (affine head).
        order: "exact" (the Jacobian of an affine head) or "first-order" (the mean
            gradient of a non-affine head over the samples it was measured on).
        logits: the node whose value the weights give: "output", or the input of a final
            LogSoftmax (``logits_note`` then says so).
        classifier: the classifier node (``structure.head.linear``) and its type.
        fan_in: inputs per output of the classifier module (PyTorch's init bound is
            ``1 / sqrt(fan_in)``), None when it is not a Linear or conv module.
        dtype: "float64" or "float32": the precision the weights were computed in.
    """

    kind: str
    weight: torch.Tensor
    bias: torch.Tensor
    weight64: torch.Tensor
    bias64: torch.Tensor
    exact: bool
    order: str
    logits: str
    logits_note: str | None
    classifier: str | None
    classifier_type: str | None
    fan_in: int | None
    dtype: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "exact": self.exact, "order": self.order, "logits": self.logits,
            "logits_note": self.logits_note, "classifier": self.classifier,
            "classifier_type": self.classifier_type, "fan_in": self.fan_in, "dtype": self.dtype,
        }  # fmt: skip


def logits_node(geo: Structure) -> tuple[str, str | None]:
    """The node holding the logits the head's weights explain, and a note when it is not
    the model's output: the input of a final ``LogSoftmax`` (followed only by reshapes that
    keep every value, e.g. braindecode's ``squeeze_final_output``).

    >>> logits_node(structure(shallow_fbcsp))      # doctest: +SKIP
    ('final_layer.conv_classifier', 'the affine logits before LogSoftmax ...')
    """
    graph = geo.graph
    node = graph.node("output")
    size = _numel(node.output_shape)
    while len(node.inputs) == 1:
        prev = graph.node(node.inputs[0])
        if prev.output_shape is None or _numel(prev.output_shape) != size:
            break
        if any(t in prev.target for t in _LOG_SOFTMAX) and len(prev.inputs) == 1:
            return prev.inputs[0], (
                f"the affine logits before LogSoftmax ({prev.name!r}), which keeps every "
                "argmax: the model outputs their log-softmax"
            )
        node = prev
    return "output", None


def capture_map(geo: Structure, x: torch.Tensor, also: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run ``geo.graph`` on ``x``; the head's feature map in canonical layout (N, C, *P)
    under ``"map"``, the model output under ``"output"``, and each node of ``also``."""
    reads = geo.head.reads
    if reads is None:
        raise InterpError(
            "the model's head does not read a spatial feature map, so there is no map to "
            "capture; `interp inspect` shows the layers interp found"
        )
    names = tuple(dict.fromkeys((reads, *(a for a in also if a != "output"))))
    out, caps = geo.graph.run(x, capture=names)
    got = {n: caps[n] for n in names}
    got["output"] = out
    got["map"] = canonical(caps[reads], geo.head)
    return got


def _numel(shape: Any) -> int:
    n = 1
    for v in shape or ():
        n *= int(v)
    return n


def _fan_in(module: nn.Module | None) -> int | None:
    if isinstance(module, nn.Linear):
        return int(module.in_features)
    if isinstance(module, nn.modules.conv._ConvNd):
        return int(module.weight[0].numel())
    return None


def _versions(model: nn.Module) -> tuple[int, ...]:
    return tuple(int(p._version) for p in model.parameters()) + tuple(
        int(b._version) for b in model.buffers()
    )


def head_map(model: nn.Module, geo: Structure, x: torch.Tensor | None = None) -> HeadMap:
    """The head's weights on its feature map: exact for affine heads, else first-order.

    Args:
        model: the classifier; left unchanged.
        geo: ``interp.structure(model, ...)``.
        x: samples (N, C, *L) for a non-affine positional head's mean gradient; the
            structure's probe input (seeded uniform noise) when None. Affine and pooled
            heads do not depend on it.

    Raises:
        InterpError: the head reads no spatial feature map, or a pooled head's classifier
            is not a Linear giving the logits.

    >>> hm = head_map(model, interp.structure(model, x))   # doctest: +SKIP
    >>> hm.weight.shape, hm.exact                          # doctest: +SKIP
    (torch.Size([4, 8, 61]), True)
    """
    head = geo.head
    if head.kind not in ("positional", "pooled") or head.reads is None:
        raise InterpError(
            "interp found no shift-equivariant feature map that the head reads, so the head's "
            "weights cannot be mapped onto (kernel, position); `interp inspect` shows the "
            "layers it found"
        )
    cached = _CACHE.get(geo.graph)
    key = _versions(model)
    if cached is not None and cached[0] == key and (x is None or cached[1].exact):
        return cached[1]
    modules = dict(model.named_modules())
    module = modules.get(head.linear) if head.linear else None
    target, note = logits_node(geo)
    if head.kind == "pooled":
        hm = _pooled(module, geo)
    else:
        hm = _positional(model, geo, target, x)
    hm = HeadMap(
        kind=head.kind, weight=hm[0].float(), bias=hm[1].float(), weight64=hm[0], bias64=hm[1],
        exact=hm[2], order="exact" if hm[2] else "first-order", logits=target,
        logits_note=note, classifier=head.linear,
        classifier_type=type(module).__name__ if module is not None else _node_type(geo),
        fan_in=_fan_in(module), dtype=hm[3],
    )  # fmt: skip
    if hm.exact or x is None:
        _CACHE[geo.graph] = (key, hm)
    return hm


def _node_type(geo: Structure) -> str | None:
    if geo.head.linear is None:
        return None
    try:
        return geo.graph.node(geo.head.linear).target
    except InterpError:
        return None


def _pooled(
    module: nn.Module | None, geo: Structure
) -> tuple[torch.Tensor, torch.Tensor, bool, str]:
    head = geo.head
    if not isinstance(module, nn.Linear):
        raise InterpError(
            f"the pooled head's classifier {head.linear!r} is not an nn.Linear, so its weights "
            "per (class, kernel) cannot be read; `interp inspect` shows the head interp found"
        )
    if geo.num_classes is not None and module.out_features != geo.num_classes:
        raise InterpError(
            f"the head Linear {head.linear!r} has {module.out_features} outputs but the model "
            f"returns {geo.num_classes} logits; interp maps the weights of the Linear that "
            "produces the logits"
        )
    w = module.weight.detach().to("cpu", torch.float64, copy=True)  # (K, C)
    b = (
        module.bias.detach().to("cpu", torch.float64, copy=True)
        if module.bias is not None
        else torch.zeros(w.shape[0], dtype=torch.float64)
    )
    if head.channels is not None and w.shape[1] != head.channels:
        raise InterpError(
            f"the head Linear {head.linear!r} reads {w.shape[1]} features but the pooled map "
            f"{head.reads!r} has {head.channels} channels; interp maps a Linear reading the "
            "pooled kernels directly"
        )
    return w, b, _pooled_exact(geo, w, b, model_device(module)), "float64"


def _pooled_exact(
    geo: Structure, w: torch.Tensor, b: torch.Tensor, device: torch.device
) -> bool:
    """Whether ``logits = b + W @ pool(A)`` on a probe input (to a float32 bound)."""
    pool = geo.head.pooling
    if pool not in ("mean", "max"):
        return False
    target, _ = logits_node(geo)
    caps = capture_map(geo, _probe(geo, device, torch.float32), (target,))
    a = caps["map"].to(torch.float64).flatten(2)  # (1, C, P)
    v = a.mean(-1) if pool == "mean" else a.amax(-1)  # (1, C)
    got = caps[target].reshape(1, -1).to("cpu", torch.float64)
    pred = b + v.cpu() @ w.T
    scale = v.cpu().abs() @ w.abs().T + b.abs() + got.abs()
    bound = 16 * torch.finfo(torch.float32).eps * (a.shape[-1] * a.shape[1]) ** 0.5 * scale
    return got.shape == pred.shape and bool(((got - pred).abs() <= bound).all())



def _probe(geo: Structure, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.rand((1, *geo.input_shape), generator=gen).to(device, dtype)


def _graph64(model: nn.Module, geo: Structure, device: torch.device) -> Any:
    """A float64 copy of the model traced the way ``geo.graph`` was, or None."""
    from interp.geometry.graph import trace

    try:
        m64 = bare_copy(model).double()
        return trace(m64, _probe(geo, device, torch.float64), methods=(geo.graph.method,))
    except Exception:  # a model that cannot be copied or run in float64: float32 weights
        return None


def _head_fn(graph: Any, geo: Structure, target: str, x: torch.Tensor) -> Any:
    """``f(A)`` -> (N, K) logits at ``target`` with the head's map replaced by ``A`` (native)."""
    reads = geo.head.reads
    assert reads is not None

    def f(a: torch.Tensor) -> torch.Tensor:
        xb = x if x.shape[0] == a.shape[0] else x[:1].expand(a.shape[0], *x.shape[1:])
        names = () if target == "output" else (target,)
        out, caps = graph.run(xb, capture=names, replace={reads: a}, grad=True, detach=False)
        value = out if target == "output" else caps[target]
        return value.reshape(a.shape[0], -1)  # (N, K)

    return f


def _jacobian(f: Any, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample gradients of the K outputs of ``f`` at ``a`` (N, *S): (N, K, *S); and f(a)."""
    a = a.detach().requires_grad_(True)
    grads = []
    with torch.enable_grad():  # the caller may be under no_grad; the grad mode is restored
        out = f(a)  # (N, K)
        for k in range(out.shape[1]):
            (g,) = torch.autograd.grad(out[:, k].sum(), a, retain_graph=k + 1 < out.shape[1],
                                       allow_unused=True)  # fmt: skip
            grads.append(torch.zeros_like(a) if g is None else g)
    return torch.stack(grads, 1).detach(), out.detach()


def _positional(
    model: nn.Module, geo: Structure, target: str, x: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, bool, str]:
    head = geo.head
    assert head.reads is not None
    device = model_device(model)
    _, caps = geo.graph.run(_probe(geo, device, torch.float32), capture=[head.reads])
    if not isinstance(caps[head.reads], torch.Tensor):
        raise InterpError(f"the head's feature map {head.reads!r} is not one tensor")
    graph64 = _graph64(model, geo, device)
    graph, dtype = (graph64, torch.float64) if graph64 is not None else (geo.graph, torch.float32)
    probe = _probe(geo, device, dtype)
    f = _head_fn(graph, geo, target, probe)
    zero = torch.zeros_like(caps[head.reads], dtype=dtype)  # (1, *S)
    jac, b = _jacobian(f, zero)  # (1, K, *S), (1, K)
    w = jac[0]  # (K, *S) native layout
    # Affine? h(A) must equal b + <W, A> at maps of the model's own scale.
    a1 = caps[head.reads].to(dtype)
    gen = torch.Generator().manual_seed(1)
    a2 = a1 + torch.randn(a1.shape, generator=gen).to(device, dtype) * (a1.abs().mean() + 1)
    trial = torch.cat([a1, a2])  # (2, *S)
    with torch.no_grad():
        got = f(trial).detach()
    lin = b + (w.flatten(1)[None] * trial.flatten(1)[:, None]).sum(-1)  # (2, K)
    scale = (w.flatten(1).abs()[None] * trial.flatten(1).abs()[:, None]).sum(-1) + b.abs()
    eps = torch.finfo(dtype).eps
    n_terms = w[0].numel()
    affine = bool(((got - lin).abs() <= 8 * eps * n_terms**0.5 * scale + 1e-30).all())
    if affine:
        return _canon_w(w, head).cpu(), b[0].cpu(), True, "float64" if graph64 else "float32"
    samples = x if x is not None else _probe(geo, device, torch.float32)
    _, caps = geo.graph.run(samples.to(device), capture=[head.reads])
    f32 = _head_fn(geo.graph, geo, target, samples.to(device))
    grads, out = _jacobian(f32, caps[head.reads])  # (N, K, *S), (N, K)
    a = caps[head.reads]
    first = (grads * a[:, None]).flatten(2).sum(-1)  # (N, K)
    w_mean = grads.to(torch.float64).mean(0)  # (K, *S)
    b_mean = (out - first).to(torch.float64).mean(0)  # (K,)
    return _canon_w(w_mean, head).cpu(), b_mean.cpu(), False, "float32"


def _canon_w(w: torch.Tensor, head: Any) -> torch.Tensor:
    """(K, *S) native weights -> (K, C, *P) canonical, as the map itself is laid out."""
    return canonical(w, head)
