"""The FFT correlations equal direct sums over channels and positions (float64 oracles)."""

from __future__ import annotations

import pytest
import torch

from interp import _xcorr
from interp._xcorr import channel_product, xcorr_circular, xcorr_periodic, xcorr_valid

GEN = torch.Generator().manual_seed(0)


def _randn(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=GEN, dtype=torch.float64)


@pytest.mark.parametrize("block", [1, 7, 1 << 30])  # one frequency, ragged blocks, one block
def test_channel_product_is_the_sum_over_channels(monkeypatch, block):
    s = torch.complex(_randn(3, 5, 4, 6), _randn(3, 5, 4, 6))
    t = torch.complex(_randn(2, 5, 4, 6), _randn(2, 5, 4, 6))
    # bytes per block: block frequencies of (3, 5) complex128 entries
    monkeypatch.setattr(_xcorr, "_BLOCK_BYTES", block * 3 * 5 * 16)
    want = torch.zeros(3, 2, 4, 6, dtype=torch.complex128)
    for c in range(5):
        want += s[:, None, c] * t[None, :, c]
    torch.testing.assert_close(channel_product(s, t), want, rtol=0, atol=1e-12)
    lazy, resolved = channel_product(s, t.conj()), channel_product(s, t.conj().resolve_conj())
    torch.testing.assert_close(lazy, resolved, rtol=0, atol=0)  # a lazy conjugate is honoured


def test_valid_and_periodic_correlations_equal_loops():
    signal, template = _randn(2, 3, 11), _randn(4, 3, 5)
    got = xcorr_valid(signal, template)
    want = torch.stack([torch.einsum("kcj,ncj->nk", template, signal[:, :, q : q + 5])
                        for q in range(7)], -1)  # fmt: skip
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    long = _randn(4, 3, 13)  # longer than the period: folded
    got = xcorr_periodic(signal, long)
    idx = lambda q: [(q + j) % 11 for j in range(13)]  # noqa: E731
    want = torch.stack([torch.einsum("kcj,ncj->nk", long, signal[:, :, idx(q)])
                        for q in range(11)], -1)  # fmt: skip
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_circular_2d_equals_rolled_sums():
    fmap, template = _randn(2, 3, 4, 5), _randn(2, 3, 4, 5)
    got = xcorr_circular(fmap, template)
    for dy in range(4):
        for dx in range(5):
            rolled = torch.roll(fmap, (dy, dx), (-2, -1))
            want = torch.einsum("kchw,nchw->nk", template, rolled)
            torch.testing.assert_close(got[..., dy, dx], want, rtol=0, atol=1e-12)
