"""Exact decomposition of each logit over the (kernel, position) neurons the head reads.

A positional head computes ``logit_k = b_k + sum_{c, j} W[k, c, j] * A[c, j]``
(``A`` the feature map the head flattens), so the terms ``W[k, c, j] * A[c, j]``
are the contributions of every neuron and they sum, with the bias, to the
model's own logit. A pooled head shares one weight per kernel across
positions: mean pooling spreads ``W[k, c] * A[c, j] / P`` over positions, max
pooling puts ``W[k, c] * max_j A[c, j]`` on the position that wins the max.
Under a circular shift of the feature map the positional score is the
cross-correlation of ``A`` with ``W[k]`` (:func:`all_shift_scores`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from interp._util import model_device
from interp._xcorr import xcorr_circular
from interp.errors import InterpError
from interp.geometry.core import Structure
from interp.geometry.core import structure as _structure
from interp.readout.grid import Grid
from interp.readout.head_map import capture_map, head_map

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def head_weights(model: nn.Module, geo: Structure) -> tuple[torch.Tensor, torch.Tensor]:
    """The head's weights on the feature map it reads, and its bias.

    For an affine head these are its exact Jacobian and ``h(0)``
    (:func:`interp.readout.head_map.head_map`): for ``Flatten -> Linear`` exactly the
    Linear's weight reshaped onto (kernel, position); for a pooled head the Linear's
    (K, C) weight.

    Returns:
        ``weight`` (K, C, *P) for a positional head or (K, C) for a pooled one, and
        ``bias`` (K,); float32 copies on the CPU.

    Raises:
        InterpError: the head reads no spatial feature map, or a pooled head's classifier
            is not a Linear producing the logits.
    """
    hm = head_map(model, geo)
    return hm.weight, hm.bias


@dataclass(frozen=True, eq=False)
class Decomposition:
    """Every logit split over the neurons of the feature map the head reads.

    ``bias[k] + contributions[n, k].sum() == logits[n, k]`` (to float rounding).

    Attributes:
        kind: "positional" or "pooled"; pooling: "mean", "max" or None.
        logits: (N, K) the model's own output.
        bias: (K,).
        activations: (N, C, *P) the feature map the head read.
        contributions: (N, K, C, *P) float32 per-neuron terms.
        per_position: (N, K, *P) float64, summed over kernels.
        per_kernel: (N, K, C) float64, summed over positions.
        residual: largest |bias + sum - logit| / max(1, |logit|) over the batch.
        grid: positions of the map -> input positions (for figures).
    """

    kind: str
    pooling: str | None
    logits: torch.Tensor
    bias: torch.Tensor
    activations: torch.Tensor
    contributions: torch.Tensor
    per_position: torch.Tensor
    per_kernel: torch.Tensor
    residual: float
    grid: Grid
    logits_note: str | None = None  # set when the logits are taken before a LogSoftmax

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "pooling": self.pooling,
            "logits": self.logits.tolist(),
            "bias": self.bias.tolist(),
            "per_kernel": self.per_kernel.tolist(),
            "per_position": self.per_position.tolist(),
            "residual": self.residual,
            "logits_note": self.logits_note,
        }

    def plot(self, ax: Axes | None = None, *, index: int = 0) -> Figure:
        """Per-position contributions of every class for sample ``index``."""
        from interp.plots.shift_explanation import plot_decomposition

        return plot_decomposition(self, index=index, ax=ax)

    def sentences(self) -> list[str]:
        """Per sample: the top logit as bias plus evidence, and where the evidence peaks."""
        from interp.readout.text import decomposition_sentences

        return decomposition_sentences(self)


def decompose(
    model: nn.Module, x: torch.Tensor, structure: Structure | None = None
) -> Decomposition:
    """Split every logit of ``model(x)`` into per-(kernel, position) contributions.

    Exact through layers that are the identity in eval mode (Dropout, Flatten);
    refused when the head is not a plain Linear reading the flattened or pooled map.

    Args:
        model: the classifier; left unchanged.
        x: (N, C, L) or (N, C, H, W).
        structure: ``interp.structure(model, x)``; computed when None.

    Raises:
        InterpError: the head cannot be decomposed exactly (``structure.head.exact``).

    >>> d = decompose(seed_cnn, x)      # x: (2, 1, 8192)  # doctest: +SKIP
    >>> d.contributions.shape, d.per_position.shape   # doctest: +SKIP
    (torch.Size([2, 4, 64, 4026]), torch.Size([2, 4, 4026]))
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"`x` must be a torch.Tensor, got {type(x).__name__}")
    geo = structure if structure is not None else _structure(model, x[:1])
    if tuple(x.shape[1:]) != tuple(geo.input_shape):
        raise InterpError(
            f"`x` has shape {tuple(x.shape)} but the model takes (N, "
            f"{', '.join(map(str, geo.input_shape))}); pass inputs of that shape"
        )
    hm = head_map(model, geo)
    head = geo.head
    if not hm.exact:
        raise InterpError(
            f"the head from {head.reads!r} to the logits is not affine (e.g. an MLP or an LSTM "
            f"after the feature map, or a max pool feeding more than a Linear), so logits "
            "cannot be split exactly over positions; `interp.connectivity` gives its "
            "first-order (gradient x activation) map instead"
        )
    weight, bias = hm.weight64, hm.bias64
    caps = capture_map(geo, x.to(model_device(model)), (hm.logits,))
    logits = caps[hm.logits].detach().reshape(x.shape[0], -1).cpu()  # (N, K)
    fmap = caps["map"].detach().cpu()  # (N, C, *P)
    dims = fmap.dim() - 2
    a = fmap.to(torch.float64)
    if head.kind == "positional":
        terms = weight.to(torch.float64)[None] * a[:, None]  # (N, K, C, *P)
    else:
        w = weight.to(torch.float64).view(*weight.shape, *(1,) * dims)[None]  # (1, K, C, 1..)
        if head.pooling == "mean":
            n_pos = int(torch.tensor(fmap.shape[2:]).prod())
            terms = w * a[:, None] / n_pos
        else:  # max: the whole term sits on the (first) position that wins the max
            flat = a.flatten(2)  # (N, C, P)
            onehot = torch.zeros_like(flat).scatter_(2, flat.argmax(2, keepdim=True), 1.0)
            peak = (flat * onehot).view_as(a)  # (N, C, *P): max at argmax, 0 elsewhere
            terms = w * peak[:, None]
    spatial = tuple(range(3, 3 + dims))
    per_kernel = terms.sum(spatial)  # (N, K, C)
    per_position = terms.sum(2)  # (N, K, *P)
    total = per_kernel.sum(2) + bias  # (N, K)
    err = (total - logits.to(torch.float64)).abs() / logits.to(torch.float64).abs().clamp(min=1)
    return Decomposition(
        kind=head.kind,
        pooling=head.pooling,
        logits=logits,
        bias=hm.bias,
        activations=fmap,
        contributions=terms.float(),
        per_position=per_position,
        per_kernel=per_kernel,
        residual=float(err.max()) if err.numel() else 0.0,
        grid=Grid.of(geo),
        logits_note=hm.logits_note,
    )


def all_shift_scores(fmap: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Class scores of a positional head for every circular shift of the feature map.

    ``out[n, k, s] = bias[k] + sum_{c, j} weight[k, c, j] * roll(fmap, s)[n, c, j]``
    (``s`` a ``(dy, dx)`` index in 2D; a negative shift ``s`` is at index ``s % P``),
    computed in one pass by :func:`interp._xcorr.xcorr_circular`.

    Args:
        fmap: (N, C, *P) feature maps.
        weight: (K, C, *P) head weights on the map.
        bias: (K,).

    Returns:
        (N, K, *P) float64.

    >>> all_shift_scores(torch.rand(2, 64, 4026), torch.randn(4, 64, 4026), torch.zeros(4)).shape
    torch.Size([2, 4, 4026])
    """
    if weight.dim() != fmap.dim() or bias.shape != (weight.shape[0],):
        raise ValueError(
            f"`fmap` {tuple(fmap.shape)}, `weight` {tuple(weight.shape)} and `bias` "
            f"{tuple(bias.shape)} must be (N, C, *P), (K, C, *P) and (K,)"
        )
    scores = xcorr_circular(fmap, weight)  # (N, K, *P)
    return scores + bias.to(torch.float64).view(1, -1, *(1,) * (fmap.dim() - 2))
