"""Class scores of a positional head under every shift, as one cross-correlation.

A positional head computes ``logit_k = b_k + sum_{c,j} W[k, c, j] * A[c, j]``.
Shifting the feature map ``A`` by ``s`` therefore gives a score that is the
cross-correlation of ``A`` with the weight template ``W[k]`` at lag ``s``: all
shifts at once cost a few FFTs instead of one forward pass each. This is the
single implementation shared by ``connectivity`` (circular shifts of a feature
map) and the fast sweep engine (valid-mode correlation over an extended map).
Computed in float64 so that sums over 10^5-10^6 terms stay exact to ~1e-12, except
where a caller asks for float32 spectra (:func:`xcorr_periodic`, the fast engine's roll
head on a float32 model; its rounding bound is in that function's docstring).
"""

from __future__ import annotations

import torch


def _axes(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(range(2, t.dim()))


def xcorr_valid(signal: torch.Tensor, template: torch.Tensor) -> torch.Tensor:
    """Valid-mode cross-correlation summed over channels.

    ``out[n, k, q] = sum_{c, j} template[k, c, j] * signal[n, c, q + j]`` for every
    lag ``q`` with the template inside the signal (per spatial axis).

    Args:
        signal: (N, C, *L) feature maps (1 or 2 spatial axes).
        template: (K, C, *P) weights, P <= L per axis.

    Returns:
        (N, K, *(L - P + 1)) float64.

    >>> xcorr_valid(torch.ones(2, 3, 10), torch.ones(4, 3, 4)).shape
    torch.Size([2, 4, 7])
    """
    if signal.dim() != template.dim() or signal.shape[1] != template.shape[1]:
        raise ValueError(
            f"`signal` {tuple(signal.shape)} and `template` {tuple(template.shape)} "
            "must both be (batch, channels, *positions) with the same channels"
        )
    sizes = tuple(int(v) for v in signal.shape[2:])
    lags = tuple(n - p + 1 for n, p in zip(sizes, template.shape[2:], strict=True))
    if min(lags) < 1:
        raise ValueError(f"`template` {tuple(template.shape)} is longer than `signal` {sizes}")
    axes = _axes(signal)
    spec_s = torch.fft.rfftn(signal.to(torch.float64), s=sizes, dim=axes)  # (N, C, *F)
    spec_t = torch.fft.rfftn(template.to(torch.float64), s=sizes, dim=axes)  # (K, C, *F)
    # Correlation theorem: F(out) = F(signal) * conj(F(template)), summed over channels.
    prod = channel_product(spec_s, spec_t.conj())
    full = torch.fft.irfftn(prod, s=sizes, dim=axes)  # (N, K, *L), circular lags
    index = tuple(slice(0, q) for q in lags)
    return full[(..., *index)]


def xcorr_periodic(signal: torch.Tensor, template: torch.Tensor,
                   dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Cross-correlation of one period of a periodic signal with a template of any size.

    ``out[n, k, q] = sum_{c, j} template[k, c, j] * signal[n, c, (q + j) mod T]`` for every
    lag ``q`` in one period ``T`` (per spatial axis): the template is folded onto the
    period first (``sum`` of its entries ``T`` apart), so every FFT is one period long.

    Args:
        signal: (N, C, *T) one period of periodic feature maps.
        template: (K, C, *P) weights; P may exceed T.
        dtype: float64, or float32 for single-precision spectra: each output then carries
            at most ``8 (log2 T + 1) + 6 sqrt(C) + 4`` units of float32 roundoff times
            ``sum_c (|a_c|_2 |w_c|_1 + |a_c|_1 |w_c|_2)`` (FFT: Higham 2002, sec. 24.1;
            the channel sum: Higham & Mary 2019), the norms over one period.

    Returns:
        (N, K, *T) in ``dtype``.

    >>> s, w = torch.randn(1, 2, 5), torch.randn(3, 2, 7)
    >>> ref = sum(w[..., j] @ s[0, :, (2 + j) % 5] for j in range(7))
    >>> torch.allclose(xcorr_periodic(s, w)[0, :, 2], ref.double(), atol=1e-5)
    True
    """
    if signal.dim() != template.dim() or signal.shape[1] != template.shape[1]:
        raise ValueError(
            f"`signal` {tuple(signal.shape)} and `template` {tuple(template.shape)} "
            "must both be (batch, channels, *positions) with the same channels"
        )
    sizes = tuple(int(v) for v in signal.shape[2:])
    axes = _axes(signal)
    spec_s = torch.fft.rfftn(signal.to(dtype), s=sizes, dim=axes)  # (N, C, *F)
    spec_t = torch.fft.rfftn(fold(template.to(dtype), sizes), dim=axes)  # (K, C, *F)
    prod = channel_product(spec_s, spec_t.conj())
    return torch.fft.irfftn(prod, s=sizes, dim=axes)


# Bytes of spectrum one block of frequencies holds: blocks stay in cache while transposed.
_BLOCK_BYTES = 8 << 20


def channel_product(spec_s: torch.Tensor, spec_t: torch.Tensor) -> torch.Tensor:
    """``out[n, k, *f] = sum_c spec_s[n, c, *f] * spec_t[k, c, *f]``: (N, K, *F).

    Per frequency this is an (N, C) @ (C, K) product: one batched matmul per block of
    frequencies, each block transposed to (f, N, C) in cache. ``torch.einsum`` transposed
    the whole spectrum in memory first, ~3x slower on the seed sweep's (32, 64, 2049) blocks.

    >>> s, t = torch.randn(2, 3, 5, dtype=torch.cfloat), torch.randn(4, 3, 5, dtype=torch.cfloat)
    >>> torch.allclose(channel_product(s, t), (s[:, None] * t[None]).sum(2), atol=1e-5)
    True
    """
    shape = spec_s.shape[2:]
    s, t = spec_s.flatten(2), spec_t.flatten(2).resolve_conj()
    n, c, f = s.shape
    by_freq = t.permute(2, 1, 0).contiguous()  # (F, C, K)
    out = s.new_empty((n, t.shape[0], f))
    block = max(1, min(f, _BLOCK_BYTES // max(1, n * c * s.element_size())))
    for f0 in range(0, f, block):
        part = s[:, :, f0 : f0 + block].permute(2, 0, 1).contiguous()  # (f, N, C)
        out[:, :, f0 : f0 + block] = torch.bmm(part, by_freq[f0 : f0 + block]).permute(1, 2, 0)
    return out.unflatten(2, shape)


def fold(template: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
    """``template`` (K, C, *P) summed onto (K, C, *sizes): entry ``j`` lands on ``j mod T``."""
    out = template
    for a, period in enumerate(sizes):
        dim = 2 + a
        length = out.shape[dim]
        if length == period:
            continue
        padded = torch.nn.functional.pad(out.movedim(dim, -1), (0, -length % period))
        out = padded.unflatten(-1, (-1, period)).sum(-2).movedim(-1, dim)
    return out


def xcorr_circular(fmap: torch.Tensor, template: torch.Tensor) -> torch.Tensor:
    """Scores of a positional head for every circular shift of the feature map.

    ``out[n, k, s] = sum_{c, j} template[k, c, j] * roll(fmap, s)[n, c, j]``, where
    ``roll`` moves content towards higher indices (``torch.roll`` convention);
    for 2D, ``s`` is ``(dy, dx)`` and the output is (N, K, H, W).

    Args:
        fmap: (N, C, *P) feature maps.
        template: (K, C, *P) head weights reshaped onto the map.

    Returns:
        (N, K, *P) float64; add the bias for logits.

    >>> a, w = torch.randn(1, 2, 5), torch.randn(3, 2, 5)
    >>> s = xcorr_circular(a, w)
    >>> torch.allclose(s[0, :, 2], (w * torch.roll(a, 2, -1)).sum((1, 2)).double())
    True
    """
    if fmap.shape[1:] != template.shape[1:]:
        raise ValueError(
            f"`fmap` {tuple(fmap.shape)} and `template` {tuple(template.shape)} must share "
            "(channels, *positions)"
        )
    sizes = tuple(int(v) for v in fmap.shape[2:])
    axes = _axes(fmap)
    spec_a = torch.fft.rfftn(fmap.to(torch.float64), dim=axes)
    spec_w = torch.fft.rfftn(template.to(torch.float64), dim=axes)
    # out[s] = sum_m a[m] w[m + s]  =>  F(out) = conj(F(a)) * F(w)
    prod = channel_product(spec_a.conj(), spec_w)
    return torch.fft.irfftn(prod, s=sizes, dim=axes)
