"""Multinomial logistic regression on pooled features, fitted by L-BFGS in float64.

The objective, on features standardised per column (``z = (f - mean) / std``,
population std, a constant column left at std 1), is

    mean_i CE(softmax(W z_i + b), y_i) + l2 / 2 * ||W||^2

(strictly convex in ``W``; ``b`` is unpenalised and returned centred, since adding a
constant to every class's bias changes nothing). The solution is folded back into
a Linear on the raw features: ``W / std`` and ``b - (W / std) @ mean``.
"""

from __future__ import annotations

import torch
from torch import nn

DEFAULT_L2 = 1e-3
TOLERANCE_GRAD = 1e-11  # L-BFGS stops when every gradient component is below this


def standardise(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Column mean and std (population) of ``features`` (N, C) in float64; std 1 where constant."""
    f = features.to(torch.float64)
    mean = f.mean(0)
    std = f.std(0, unbiased=False)
    std = torch.where(std > 1e-12 * (1 + mean.abs()), std, torch.ones_like(std))
    return mean, std


def fit_logistic(
    features: torch.Tensor,
    labels: torch.Tensor,
    classes: int,
    *,
    l2: float = DEFAULT_L2,
    max_iter: int = 500,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit ``classes``-way logistic regression; return ``(weight (K, C), bias (K))`` in float64
    for the raw (unstandardised) features.

    >>> w, b = fit_logistic(torch.randn(20, 3), torch.arange(20) % 2, 2)
    >>> w.shape, b.shape
    (torch.Size([2, 3]), torch.Size([2]))
    """
    mean, std = standardise(features)
    z = (features.to(torch.float64) - mean) / std  # (N, C)
    y = labels.to(torch.long)
    w = torch.zeros(classes, z.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w, b],
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=TOLERANCE_GRAD,
        tolerance_change=1e-16,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(z @ w.T + b, y) + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    w_raw = w.detach() / std  # (K, C)
    b_raw = b.detach() - w_raw @ mean
    return w_raw, b_raw - b_raw.mean()


def linear_from(weight: torch.Tensor, bias: torch.Tensor) -> nn.Linear:
    """A float32 ``nn.Linear`` holding ``weight`` (K, C) and ``bias`` (K)."""
    lin = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        lin.weight.copy_(weight.to(torch.float32))
        lin.bias.copy_(bias.to(torch.float32))
    return lin
