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


def fft_factor(period: int, channels: int) -> float:
    """Units of float32 roundoff in one float32 FFT correlation, per unit of its norms.

    ``xcorr_periodic(..., dtype=float32)``: each output is off by at most
    ``fft_factor * U32 * sum_c (|a_c|_2 |w_c|_1 + |a_c|_1 |w_c|_2)``. Forward and inverse
    FFTs: ~``log2 T`` butterfly levels of a few roundings each (Higham 2002, Thm 24.2, with
    the twiddles' own error), one more level for the real packing; the sum over channels
    at each frequency: the Higham & Mary bound; the pointwise complex products: a few ``u``.
    """
    return 8.0 * (math.log2(max(2, period)) + 1) + LAMBDA * channels**0.5 + 4


def periodic_head_bound(model: nn.Module, x: torch.Tensor) -> torch.Tensor | float:
    """Bound (K,) on the fast engine's float32 periodic head rounding (roll, 1D), else 0.

    The engine correlates one period ``T <= L`` of the valid feature map ``a`` with the
    head's template ``w`` (K, C, M), in float32 spectra. Every valid map value is bounded by
    the magnitude model's map on a constant input ``max |x|`` (monotone, no padding
    inside a valid window), ``M_c`` per channel; so ``|a_c|_1 <= L M_c``,
    ``|a_c|_2 <= sqrt(L) M_c``, and the folded template's norms are at most ``|w_kc|_1``.
    """
    from interp.geometry.core import structure

    geo = structure(model, x)
    if x.dim() != 3 or geo.head.kind != "positional" or geo.head.linear is None:
        return 0.0
    modules = dict(model.named_modules())
    if geo.head.reads not in modules or geo.head.linear not in modules:
        return 0.0
    weight = modules[geo.head.linear].weight.detach().double()
    if weight.dim() != 2:  # a full-kernel conv classifier: the engines run it per shift
        return 0.0
    mag, _ = magnitude_model(model, x)
    # The map the Linear's template lies on: what its Flatten reads, else the head's map.
    flat = [m for m in mag.modules() if isinstance(m, nn.Flatten)]
    site = flat[-1] if flat else dict(mag.named_modules())[geo.head.reads]
    seen: list[torch.Tensor] = []
    handle = (site.register_forward_pre_hook(lambda m, i: seen.append(i[0])) if flat else
              site.register_forward_hook(lambda m, i, o: seen.append(o)))  # fmt: skip
    try:
        with torch.no_grad():
            peak = x.detach().double().abs().amax((0, 2), keepdim=True)[:1]
            mag(peak.expand(1, *x.shape[1:]).contiguous())
    finally:
        handle.remove()
    if seen[-1].dim() != 3 or seen[-1][0].numel() != weight.shape[1]:
        raise AssertionError(f"no (C, M) map under the head's Linear {tuple(weight.shape)}")
    fmap = seen[-1]  # (1, C, M)
    channels, length = fmap.shape[1], x.shape[-1]
    per_channel = fmap.flatten(2).amax(-1)[0]  # (C,)
    w1 = weight.reshape(weight.shape[0], channels, -1).abs().sum(-1)  # (K, C)
    norms = (length + length**0.5) * (w1 * per_channel).sum(-1)
    return fft_factor(length, channels) * U32 * norms
