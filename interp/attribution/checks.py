"""Input and target checks shared by `attribute` and `attribution_across_shifts`."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from interp._util import model_device
from interp.attribution.methods import Method
from interp.errors import InterpError
from interp.geometry.core import Structure

DELTA_WARN = 0.05  # relative convergence delta above which more steps are suggested


def nanmean(t: torch.Tensor) -> torch.Tensor:
    return t.nanmean(0) if t.numel() else t.sum(0)


def check_inputs(model: nn.Module, x: Any) -> torch.Tensor:
    """A detached float copy of ``x`` on the model's device: the caller's tensor is never used."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"`x` must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() not in (3, 4) or x.shape[0] == 0:
        raise InterpError(
            f"`x` of shape {tuple(x.shape)} is not a batch (N, C, L) or (N, C, H, W); "
            "add the batch and channel axes, e.g. x[None, None] for one 1D signal"
        )
    device = model_device(model, default=x.device)
    dtype = x.dtype if x.is_floating_point() else torch.float32
    return x.detach().to(device=device, dtype=dtype, copy=True)


def check_targets(model: nn.Module, x: torch.Tensor, target: Any, geo: Structure) -> torch.Tensor:
    """(N,) int64 classes; None -> the model's prediction on ``x``."""
    n, k = x.shape[0], geo.num_classes
    if k is None:
        raise InterpError("the model does not return (N, classes) logits; attribution needs them")
    if target is None:
        with torch.no_grad():
            return model(x).argmax(1)
    if isinstance(target, bool) or isinstance(target, float):
        raise TypeError(f"`target` must be an int or a sequence of ints, got {target!r}")
    t = torch.as_tensor(target, device=x.device)
    if t.is_floating_point() or t.dtype == torch.bool:
        raise TypeError(f"`target` must hold integers, got dtype {t.dtype}")
    t = t.long().reshape(-1)
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise InterpError(f"`target` has {t.numel()} labels for {n} samples; give one per sample")
    if int(t.min()) < 0 or int(t.max()) >= k:
        bad = int(t[(t < 0) | (t >= k)][0])
        raise InterpError(
            f"`target` {bad} is out of range for a model with {k} classes (0..{k - 1})"
        )
    return t.clone()


def warn_delta(method: Method, relative: torch.Tensor, n_steps: int | None) -> None:
    worst = float(relative.nan_to_num(0).max()) if relative.numel() else 0.0
    if worst <= DELTA_WARN:
        return
    fix = (
        f"raise `n_steps` (now {n_steps}), e.g. to {4 * n_steps}"
        if n_steps is not None
        else "its rules do not sum exactly through this model's layers; read small "
        "differences with care"
    )
    warnings.warn(
        f"{method.name}: the convergence delta reaches {worst:.1%} of f(x) - f(baseline); {fix}",
        UserWarning,
        stacklevel=3,
    )


def relative_delta(attr: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """|delta| / |f(x) - f(baseline)|, using sum(attr) - delta = f(x) - f(baseline)."""
    gap = attr.flatten(1).sum(1).to(torch.float64) - delta.to(torch.float64)
    rel = delta.to(torch.float64).abs() / gap.abs()
    return torch.where(gap.abs() > 1e-6, rel, torch.nan)


def logits_of(model: nn.Module, x: torch.Tensor, chunk: int) -> torch.Tensor:
    """(B, K) logits of ``x`` (B, C, *S), ``chunk`` rows at a time, without autograd."""
    with torch.no_grad():
        return torch.cat([model(part) for part in x.split(max(1, chunk))])


def convergence_delta(
    model: nn.Module,
    attr: torch.Tensor,
    x_logits: torch.Tensor,
    target: torch.Tensor,
    baselines: Any,
    input_shape: tuple[int, ...],
    chunk: int,
) -> torch.Tensor:
    """``sum(attr) - (f(x) - f(baseline))`` per row, as Captum's ``compute_convergence_delta``.

    ``f`` is the target logit; ``f(x)`` comes from logits already computed, and a
    number or a single baseline is run once instead of once per row.

    Args:
        attr: (B, ...) attributions; x_logits: (B, K); target: (B,);
        baselines: a number or a (1 or B, C, *S) tensor; input_shape: (C, *S).

    Returns:
        (B,) in the dtype of ``attr``.
    """
    if not isinstance(baselines, torch.Tensor):
        baselines = torch.full((1, *input_shape), float(baselines), dtype=attr.dtype,
                               device=attr.device)  # fmt: skip
    base_logits = logits_of(model, baselines, chunk)  # (1 or B, K)
    f_b = base_logits.expand(len(target), -1).gather(1, target[:, None])[:, 0]
    f_x = x_logits.gather(1, target[:, None])[:, 0]
    return attr.flatten(1).sum(1) - (f_x - f_b)
