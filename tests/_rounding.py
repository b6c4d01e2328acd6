"""Float32 rounding bounds derived from the computation, for tests that compare with float64.

A tolerance tuned on one CPU fails on another (float32 sums round differently with the
BLAS kernel's blocking); these bounds come from the magnitudes and reduction lengths.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

U32, U64 = 2.0**-24, 2.0**-53  # float32 and float64 unit roundoff
LAMBDA = 6.0  # Higham & Mary (2019): |err| <= LAMBDA sqrt(K) u sum|terms| w.p. >= 1 - 2 exp(-18)
_IDENTITY_BOUNDED = (nn.ReLU, nn.Tanh, nn.GELU, nn.SiLU, nn.Identity, nn.Dropout)  # |f(a)| <= |a|


def magnitude_model(model: nn.Module, x: torch.Tensor) -> tuple[nn.Module, float]:
    """A float64 copy that computes sum|terms| at every layer, and its rounding factor.

    Every weight and bias becomes its absolute value, BatchNorm becomes ``|scale| a + |shift|``,
    and 1-Lipschitz activations with ``|f(a)| <= |a|`` become the identity, so on ``|x|`` the
    copy bounds every intermediate's sum of absolute terms, and errors reaching a layer are
    propagated by no more than its ``|W|``. Each reduction of ``K`` float32 terms adds at most
    ``LAMBDA sqrt(K) u`` (probabilistic bound, Higham & Mary, SIAM J. Sci. Comput. 2019) times
    that sum, and every elementwise op one ``u``: the factor is the sum over layers.
    """
    mag = copy.deepcopy(model).double().eval()
    factor = 0.0
    windows: list[int] = []
    sizes: list = []

    def _window(m: nn.Module, args: tuple) -> None:  # the largest adaptive window, K
        sizes_in = args[0].shape[2:]
        out = _pair(m.output_size) * (len(sizes_in) if not isinstance(m.output_size, tuple) else 1)
        windows.append(math.prod(-(-n // (o or n)) + 1 for n, o in zip(sizes_in, out, strict=True)))

    with torch.no_grad():
        for name, m in list(mag.named_modules()):
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
                m.weight.abs_()
                if m.bias is not None:
                    m.bias.abs_()
                factor += LAMBDA * float(m.weight[0].numel()) ** 0.5 + 1
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                scale = m.weight / (m.running_var + m.eps).sqrt()
                m.bias.copy_((m.bias - m.running_mean * scale).abs())
                m.weight.copy_(scale.abs() * (m.running_var + m.eps).sqrt())
                m.running_mean.zero_()
                factor += 3
            elif isinstance(m, (nn.AvgPool1d, nn.AvgPool2d)):
                factor += LAMBDA * math.prod(_pair(m.kernel_size)) ** 0.5 + 1
            elif isinstance(m, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)):
                sizes.append(m.register_forward_pre_hook(_window))
            elif isinstance(m, _IDENTITY_BOUNDED) and name:
                parent, _, leaf = name.rpartition(".")
                setattr(mag.get_submodule(parent), leaf, nn.Identity())
                factor += 2  # GELU/SiLU's Lipschitz constant ~1.1 and their own rounding
        mag(x[:1].double())
    for handle in sizes:
        handle.remove()
    return mag, factor + sum(LAMBDA * k**0.5 + 1 for k in windows)


def _pair(value: object) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (int(value),)


def float32_bound(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(float64 logits, per-logit bound on a float32 forward's error) for ``model(x)``.

    >>> exact, bound = float32_bound(model, x)  # both (N, K)
    """
    with torch.no_grad():
        exact = copy.deepcopy(model).double().eval()(x.double())
        mag_model, factor = magnitude_model(model, x)
        return exact, factor * U32 * mag_model(x.double().abs())
