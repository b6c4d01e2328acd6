"""Deterministic seeded weights and BatchNorm calibration for the test architectures."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

P = ParamSpec("P")
R = TypeVar("R")
_CONV_LINEAR = (nn.Conv1d, nn.Conv2d, nn.Linear)


def seeded_init(model: nn.Module, seed: int, gains: dict[str, float] | None = None) -> None:
    """Draw every weight from a private generator; the global RNG is untouched.

    Conv and Linear weights are ``N(0, 1) * gain / sqrt(fan_in)`` (gain ``sqrt(2)`` unless
    ``gains`` names the module), biases ``N(0, 0.1^2)``, BatchNorm affine ``1 + N(0, 0.1^2)`` and
    ``N(0, 0.1^2)``, LSTM parameters ``U(-1/sqrt(H), 1/sqrt(H))`` like PyTorch's default.

    Args:
        model: Module to initialise in place (before any parametrization is registered).
        seed: Generator seed.
        gains: Per-module-name gain overrides.
    """
    gains = gains or {}
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, _CONV_LINEAR):
                weight = module.weight
                gain = gains.get(name, math.sqrt(2.0))
                fan_in = weight[0].numel()
                weight.copy_(torch.randn(weight.shape, generator=gen) * gain / math.sqrt(fan_in))
                if module.bias is not None:
                    module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=gen))
            elif isinstance(module, _BatchNorm) and module.affine:
                module.weight.copy_(1 + 0.1 * torch.randn(module.weight.shape, generator=gen))
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=gen))
            elif isinstance(module, nn.LSTM):
                bound = 1 / math.sqrt(module.hidden_size)
                for p in module.parameters():
                    p.copy_((torch.rand(p.shape, generator=gen) * 2 - 1) * bound)


def calibrate_batchnorm(model: nn.Module, input_shape: tuple[int, ...], seed: int) -> nn.Module:
    """Set BatchNorm running stats from one seeded random batch, then return the model in eval.

    Only the BatchNorm layers run in train mode (Dropout stays in eval, so the global RNG is not
    used); ``momentum=None`` makes the running stats exactly that batch's statistics, so eval-mode
    activations are O(1) however deep the net is.

    Args:
        model: The model, weights already set.
        input_shape: Input shape without the batch axis.
        seed: Seed for the calibration batch.

    Returns:
        ``model``, in eval mode.
    """
    model.eval()
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    if not norms:
        return model
    gen = torch.Generator().manual_seed(seed + 10_000)
    batch = torch.randn((16, *input_shape), generator=gen)  # (16, *input_shape)
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    with torch.no_grad():
        model(batch)
    for m, momentum in zip(norms, saved, strict=True):
        m.momentum = momentum
    return model.eval()


def finish(
    model: nn.Module,
    input_shape: tuple[int, ...],
    seed: int,
    gains: dict[str, float] | None = None,
) -> nn.Module:
    """Seed the weights, calibrate BatchNorm, return in eval mode."""
    seeded_init(model, seed, gains)
    return calibrate_batchnorm(model, input_shape, seed)


def keeps_global_rng(factory: Callable[P, R]) -> Callable[P, R]:
    """Restore the global RNG after ``factory`` runs (nn layer constructors draw from it).

    The seeded weights come from ``seeded_init``'s private generator, so the model does not
    depend on the global state either.
    """

    @functools.wraps(factory)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with torch.random.fork_rng(devices=[]):
            return factory(*args, **kwargs)

    return wrapper
