"""pool-head: keep the trained trunk, replace the positional head by global pooling + Linear.

The new Linear(C, K) is fitted on the trunk's pooled training features by
multinomial logistic regression (:mod:`interp.remedies.logistic`), once with global
max pooling and once with global average pooling. A head with layers after its
first Linear (an MLP head) keeps them: the first Linear becomes Linear(C, hidden),
started from the least-squares fit of the original's hidden pre-activations on the
pooled features and refined by L-BFGS on the cross-entropy through the kept
layers, which stay frozen.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
from torch import nn

from interp.errors import InterpError
from interp.geometry.core import Structure
from interp.remedies.logistic import DEFAULT_L2, fit_logistic, linear_from, standardise
from interp.remedies.trunk import PooledHeadModel, batches, capture, sequential_index

_POOLS = {
    ("max", 1): nn.AdaptiveMaxPool1d,
    ("max", 2): nn.AdaptiveMaxPool2d,
    ("mean", 1): nn.AdaptiveAvgPool1d,
    ("mean", 2): nn.AdaptiveAvgPool2d,
}
# Layers after a non-Linear classifier (a full-kernel conv) that act on logits alone.
_LOGIT_LAYERS = (nn.Softmax, nn.LogSoftmax, nn.Identity)


@dataclass(frozen=True)
class Candidate:
    """One fitted pooled model: ``variant`` is "max" or "mean"."""

    variant: str
    model: nn.Module
    seconds: float
    note: str


def check_positional(geo: Structure, label: str) -> None:
    """Refuse a head that is already pooled or that is not positional, in one line."""
    head = geo.head
    if head.kind == "pooled":
        raise InterpError(
            f"nothing to pool: the head of {label} already pools positions "
            f"({head.pooling or 'global'} pooling of {head.reads!r} before {head.linear!r}); "
            "use the augment or blur remedy instead"
        )
    if head.kind != "positional" or head.reads is None or head.linear is None:
        raise InterpError(
            f"pool-head needs a positional head, but the head of {label} is {head.kind}; "
            "use the augment remedy instead"
        )


def pooled_features(
    body: nn.Module, reads: str, x: torch.Tensor, batch_size: int = 64
) -> dict[str, torch.Tensor]:
    """Global max and mean of the feature map ``reads`` for every sample: (N, C) float64 each."""
    out: dict[str, list[torch.Tensor]] = {"max": [], "mean": []}
    with torch.no_grad():
        for xb in batches(x, batch_size):
            fmap = capture(body, reads, xb)  # (B, C, *P)
            flat = fmap.flatten(2).to(torch.float64)
            out["max"].append(flat.amax(-1))
            out["mean"].append(flat.mean(-1))
    return {k: torch.cat(v) for k, v in out.items()}


def _frozen_copy(module: nn.Module) -> nn.Module:
    body = copy.deepcopy(module)
    body.eval()
    for p in body.parameters():
        p.requires_grad_(False)
    return body


def _rest(model: nn.Module, geo: Structure) -> tuple[list[nn.Module], str]:
    """Layers kept after the new Linear, and a note on what was dropped (or '')."""
    head = geo.head
    at = sequential_index(model, head.linear or "")
    if at is None:
        return [], ""
    children = list(model.children())
    after = children[at + 1 :]
    if isinstance(children[at], nn.Linear):
        return [_frozen_copy(m) for m in after], ""
    kept = [_frozen_copy(m) for m in after if isinstance(m, _LOGIT_LAYERS)]
    dropped = [type(m).__name__ for m in after if not isinstance(m, _LOGIT_LAYERS)]
    note = (
        (
            f"dropped the reshaping layers after the {type(children[at]).__name__} classifier "
            f"({', '.join(dropped)}): the pooled Linear outputs (N, classes) already"
        )
        if dropped
        else ""
    )
    return kept, note


def _check_logits_are_linear_output(model: nn.Module, geo: Structure, x: torch.Tensor) -> None:
    """For a non-Sequential model, the head's Linear must give the logits (nothing after it)."""
    head = geo.head
    with torch.no_grad():
        out = model(x)
        lin = capture(model, head.linear or "", x)
    if lin.shape != out.shape or not torch.equal(lin, out):
        raise InterpError(
            f"pool-head keeps the layers after the head's {head.linear!r} only in an "
            "nn.Sequential model; here they cannot be separated; use the augment remedy, "
            "or rebuild the model as an nn.Sequential"
        )


def _fit_through_rest(
    feats: torch.Tensor,
    y: torch.Tensor,
    hidden_target: torch.Tensor,
    rest: nn.Sequential,
    l2: float,
) -> nn.Linear:
    """First Linear of an MLP head on pooled ``feats`` (N, C): least squares to the original
    hidden pre-activations (N, H), then L-BFGS cross-entropy through the frozen ``rest``."""
    mean, std = standardise(feats)
    z = torch.cat([(feats - mean) / std, torch.ones(len(feats), 1, dtype=torch.float64)], 1)
    ridge = l2 * torch.eye(z.shape[1], dtype=torch.float64)
    ridge[-1, -1] = 0
    sol = torch.linalg.solve(z.T @ z / len(z) + ridge, z.T @ hidden_target.double() / len(z))
    w = sol[:-1].T.clone().requires_grad_(True)  # (H, C)
    b = sol[-1].clone().requires_grad_(True)
    rest64 = copy.deepcopy(rest).double().eval()
    zc = z[:, :-1]
    opt = torch.optim.LBFGS(
        [w, b],
        max_iter=300,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(rest64(zc @ w.T + b), y) + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    w_raw = w.detach() / std
    return linear_from(w_raw, b.detach() - w_raw @ mean)


def pool_head(
    model: nn.Module,
    geo: Structure,
    x: torch.Tensor,
    y: torch.Tensor,
    classes: int,
    *,
    label: str = "the model",
    l2: float = DEFAULT_L2,
) -> list[Candidate]:
    """Fit the max-pooled and the mean-pooled head on ``(x, y)``; ``model`` is not changed."""
    check_positional(geo, label)
    head = geo.head
    reads = head.reads or ""
    start = time.perf_counter()
    body = _frozen_copy(model)
    with torch.no_grad():
        probe = capture(body, reads, x[:1])
    spatial = probe.dim() - 2
    if spatial not in (1, 2):
        raise InterpError(
            f"the head of {label} reads {reads!r} of shape {tuple(probe.shape[1:])}; "
            "pool-head pools 1 or 2 spatial axes"
        )
    seq_at = sequential_index(model, reads)
    if seq_at is None:
        _check_logits_are_linear_output(body, geo, x[:2])
    rest, note = _rest(model, geo)
    has_params = any(True for m in rest for _ in m.parameters())
    feats = pooled_features(body, reads, x)
    shared = time.perf_counter() - start
    out = []
    for variant in ("max", "mean"):
        t0 = time.perf_counter()
        f = feats[variant]
        if has_params:
            lin_module = dict(body.named_modules())[head.linear or ""]
            hidden = _hidden_target(body, lin_module, x)
            linear = _fit_through_rest(f, y, hidden, nn.Sequential(*rest), l2)
        else:
            linear = linear_from(*fit_logistic(f, y, classes, l2=l2))
        pool = _POOLS[(variant, spatial)](1)
        tail = [pool, nn.Flatten(), linear, *copy.deepcopy(rest)]
        fixed: nn.Module
        if seq_at is not None:
            trunk = [_frozen_copy(m) for m in list(model.children())[: seq_at + 1]]
            fixed = nn.Sequential(*trunk, *tail)
        else:
            fixed = PooledHeadModel(_frozen_copy(model), reads, nn.Sequential(*tail))
        fixed.eval()
        out.append(Candidate(variant, fixed, shared + time.perf_counter() - t0, note))
    return out


def _hidden_target(body: nn.Module, linear: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The original first Linear's outputs (N, H) on ``x``: what the kept layers expect."""
    outs = []
    with torch.no_grad():
        for xb in batches(x, 64):
            got: list[torch.Tensor] = []
            handle = linear.register_forward_hook(lambda _m, _i, o, got=got: got.append(o.detach()))
            try:
                body(xb)
            finally:
                handle.remove()
            outs.append(got[0].double())
    return torch.cat(outs)
