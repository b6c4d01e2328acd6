"""Which torch.nn layers interp understands, and their window geometry."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from interp._util import ntuple

CONV = (nn.Conv1d, nn.Conv2d)


MAXPOOL = (nn.MaxPool1d, nn.MaxPool2d)


AVGPOOL = (nn.AvgPool1d, nn.AvgPool2d)


ADAPTIVE = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)

POINTWISE = (
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


def window(module: nn.Module, dims: int) -> tuple[tuple[int, ...], ...] | None:
    """(kernel, stride, dilation, left padding) per axis of a windowed layer, else None.

    Conv padding ``'same'`` pads ``dilation * (k - 1) // 2`` on the left, as PyTorch does.
    """
    if not isinstance(module, (*CONV, *MAXPOOL, *AVGPOOL)):
        return None
    kernel = ntuple(module.kernel_size, dims)
    stride = ntuple(module.stride if module.stride is not None else module.kernel_size, dims)
    dilation = ntuple(getattr(module, "dilation", 1), dims)
    padding: Any = module.padding
    if padding == "valid":
        padding = 0
    if padding == "same":
        padding = tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation, strict=True))
    return kernel, stride, dilation, ntuple(padding, dims)


def is_spatial(t: Any, dims: int) -> bool:
    return isinstance(t, torch.Tensor) and t.dim() == dims + 2


def pooling_of(module: nn.Module) -> str | None:
    if isinstance(module, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, *AVGPOOL)):
        return "mean"
    if isinstance(module, (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, *MAXPOOL)):
        return "max"
    return None
