"""braindecode-style EEG nets: ShallowFBCSPNet, Deep4Net and EEGNet v4 on (N, 22, 1000) input.

Input axes: (N, electrodes, time). Only time (input axis -1) is a shift axis; the electrodes are
mixed by a spatial conv whose kernel spans all 22 of them, so they leave a size-1 axis behind.
Like braindecode's, these forwards defeat ``torch.fx.symbolic_trace``: ``Ensure4d`` branches on
``len(x.shape)`` and ``squeeze_final_output`` asserts on a size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from ._case import ArchCase, FeatureMap
from ._init import calibrate_batchnorm, keeps_global_rng, seeded_init

N_CHANS, N_TIMES, N_CLASSES = 22, 1000, 4
INPUT_SHAPE = (N_CHANS, N_TIMES)


def square(x: torch.Tensor) -> torch.Tensor:
    """Elementwise square (ShallowFBCSPNet's conv nonlinearity)."""
    return x * x


def safe_log(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Log of ``x`` clamped below at ``eps``."""
    return torch.log(torch.clamp(x, min=eps))


def identity(x: torch.Tensor) -> torch.Tensor:
    """Return ``x`` (Deep4Net's pool nonlinearity)."""
    return x


def squeeze_final_output(x: torch.Tensor) -> torch.Tensor:
    """(N, K, 1, 1) -> (N, K); (N, K, T, 1) -> (N, K, T) when T > 1."""
    assert x.size()[3] == 1
    x = x[:, :, :, 0]
    if x.size()[2] == 1:
        x = x[:, :, 0]
    return x


class Expression(nn.Module):
    """Wrap a function as a module.

    Args:
        fn: The function applied in ``forward``.
    """

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return getattr(self.fn, "__name__", repr(self.fn))


class Ensure4d(nn.Module):
    """Append trailing singleton axes until the input is 4D: (N, C, T) -> (N, C, T, 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        while len(x.shape) < 4:  # a Python len() on a shape: symbolic tracing fails here
            x = x.unsqueeze(-1)
        return x


class Permute(nn.Module):
    """A fixed axis permutation (braindecode uses an einops ``Rearrange`` here).

    Args:
        dims: The permutation, as for ``Tensor.permute``.
    """

    def __init__(self, *dims: int) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(*self.dims)

    def extra_repr(self) -> str:
        return f"dims={self.dims}"


class MaxNorm(nn.Module):
    """Weight parametrization: rescale each output filter's weights to L2 norm at most ``max_norm``.

    Args:
        max_norm: Largest allowed norm of ``weight[i].flatten()``.
        eps: Guard against division by zero.
    """

    def __init__(self, max_norm: float = 2.0, eps: float = 1e-8) -> None:
        super().__init__()
        self.max_norm = max_norm
        self.eps = eps

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        norms = weight.flatten(1).norm(dim=1).clamp(min=self.eps)  # (out,)
        scale = (self.max_norm / norms).clamp(max=1.0)
        return weight * scale.view(-1, *([1] * (weight.dim() - 1)))


class CombinedConv(nn.Module):
    """Temporal then spatial conv, fused into one kernel (braindecode's ``CombinedConv``).

    ``conv_time`` and ``conv_spat`` hold the parameters but are never *called*: the forward
    builds the (F_spat, 1, K, C) kernel from both weights and runs one ``F.conv2d``, so hooks on
    the two submodules never fire.

    Args:
        in_chans: Electrodes C.
        n_filters_time: Temporal filters F_time.
        n_filters_spat: Spatial filters F_spat.
        filter_time_length: Temporal kernel length K.
        bias_time: Whether the temporal conv has a bias.
        bias_spat: Whether the spatial conv has a bias.
    """

    def __init__(
        self,
        in_chans: int,
        n_filters_time: int,
        n_filters_spat: int,
        filter_time_length: int,
        bias_time: bool = True,
        bias_spat: bool = False,
    ) -> None:
        super().__init__()
        self.conv_time = nn.Conv2d(1, n_filters_time, (filter_time_length, 1), bias=bias_time)
        self.conv_spat = nn.Conv2d(n_filters_time, n_filters_spat, (1, in_chans), bias=bias_spat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, 1, T, C) -> (N, F_spat, T - K + 1, 1)
        w_time = self.conv_time.weight[:, 0, :, 0]  # (F_time, K)
        w_spat = self.conv_spat.weight[:, :, 0, :]  # (F_spat, F_time, C)
        kernel = torch.einsum("sfc,fk->skc", w_spat, w_time).unsqueeze(1)  # (F_spat, 1, K, C)
        bias = None
        if self.conv_time.bias is not None:
            bias = torch.einsum("sfc,f->s", w_spat, self.conv_time.bias)  # (F_spat,)
        if self.conv_spat.bias is not None:
            bias = self.conv_spat.bias if bias is None else bias + self.conv_spat.bias
        return F.conv2d(x, kernel, bias)


def _final_layer(
    n_filters: int,
    kernel: tuple[int, int],
    n_classes: int,
    log_softmax: bool,
    permute_back: bool = False,
) -> nn.Sequential:
    """conv_classifier (a kernel over every remaining position) [-> LogSoftmax] -> squeeze."""
    final = nn.Sequential()
    final.add_module("conv_classifier", nn.Conv2d(n_filters, n_classes, kernel))
    if log_softmax:
        final.add_module("logsoftmax", nn.LogSoftmax(dim=1))
    if permute_back:
        final.add_module("permute_back", Permute(0, 1, 3, 2))
    final.add_module("squeeze", Expression(squeeze_final_output))
    return final


@keeps_global_rng
def shallow_fbcsp_like(
    seed: int = 0,
    n_classes: int = N_CLASSES,
    n_filters: int = 8,
    log_softmax: bool = True,
    combined: bool = False,
) -> nn.Module:
    """ShallowFBCSPNet: conv_time, conv_spat, BN, square, mean pool, safe log, full-kernel conv.

    Args:
        seed: Weight seed.
        n_classes: Logits.
        n_filters: Temporal and spatial filters (braindecode: 40).
        log_softmax: End with LogSoftmax (the output is then log-probabilities).
        combined: Use one fused ``conv_time_spat`` module instead of two convs.

    Returns:
        The eval-mode model, (N, 22, 1000) -> (N, n_classes).
    """
    model = nn.Sequential()
    model.add_module("ensuredims", Ensure4d())  # (N, 22, 1000, 1)
    model.add_module("dimshuffle", Permute(0, 3, 2, 1))  # (N, 1, 1000, 22)
    if combined:
        model.add_module("conv_time_spat", CombinedConv(N_CHANS, n_filters, n_filters, 25))
    else:
        model.add_module("conv_time", nn.Conv2d(1, n_filters, (25, 1)))  # (N, F, 976, 22)
        model.add_module("conv_spat", nn.Conv2d(n_filters, n_filters, (1, N_CHANS), bias=False))
    model.add_module("bnorm", nn.BatchNorm2d(n_filters))  # (N, F, 976, 1)
    model.add_module("conv_nonlin_exp", Expression(square))
    model.add_module("pool", nn.AvgPool2d((75, 1), stride=(15, 1)))  # (N, F, 61, 1)
    model.add_module("pool_nonlin_exp", Expression(safe_log))
    model.add_module("drop", nn.Dropout(0.5))
    n_out = (N_TIMES - 25 + 1 - 75) // 15 + 1  # 61: the classifier kernel covers every position
    model.add_module("final_layer", _final_layer(n_filters, (n_out, 1), n_classes, log_softmax))
    seeded_init(model, seed)
    return calibrate_batchnorm(model, INPUT_SHAPE, seed)


@keeps_global_rng
def deep4_like(
    seed: int = 0,
    n_classes: int = N_CLASSES,
    n_filters: tuple[int, int, int, int] = (4, 6, 8, 10),
    log_softmax: bool = True,
) -> nn.Module:
    """Deep4Net: fused conv_time_spat + three conv-pool blocks, ELU, max pool 3/3, full-kernel conv.

    ``conv_time_spat.conv_spat.weight`` carries a ``MaxNorm(2.0)`` parametrization.

    Args:
        seed: Weight seed.
        n_classes: Logits.
        n_filters: Filters per block (braindecode: 25, 50, 100, 200).
        log_softmax: End with LogSoftmax.

    Returns:
        The eval-mode model, (N, 22, 1000) -> (N, n_classes).
    """
    model = nn.Sequential()
    model.add_module("ensuredims", Ensure4d())  # (N, 22, 1000, 1)
    model.add_module("dimshuffle", Permute(0, 3, 2, 1))  # (N, 1, 1000, 22)
    model.add_module(
        "conv_time_spat", CombinedConv(N_CHANS, n_filters[0], n_filters[0], 10, True, False)
    )  # (N, 4, 991, 1)
    model.add_module("bnorm", nn.BatchNorm2d(n_filters[0]))
    model.add_module("conv_nonlin", nn.ELU())
    model.add_module("pool", nn.MaxPool2d((3, 1), stride=(3, 1)))  # (N, 4, 330, 1)
    model.add_module("pool_nonlin", Expression(identity))
    for i in range(1, 4):
        b = i + 1  # braindecode numbers the later blocks 2, 3, 4
        model.add_module(f"drop_{b}", nn.Dropout(0.5))
        model.add_module(
            f"conv_{b}", nn.Conv2d(n_filters[i - 1], n_filters[i], (10, 1), bias=False)
        )
        model.add_module(f"bnorm_{b}", nn.BatchNorm2d(n_filters[i]))
        model.add_module(f"nonlin_{b}", nn.ELU())
        model.add_module(f"pool_{b}", nn.MaxPool2d((3, 1), stride=(3, 1)))
        model.add_module(f"pool_nonlin_{b}", Expression(identity))
    # time: 991 -> 330 -> 321 -> 107 -> 98 -> 32 -> 23 -> 7; the classifier kernel is (7, 1).
    model.add_module("final_layer", _final_layer(n_filters[3], (7, 1), n_classes, log_softmax))
    # Gain 3 makes the spatial rows' norms ~3 > 2, so the max-norm actually rescales them.
    seeded_init(model, seed, gains={"conv_time_spat.conv_spat": 3.0})
    parametrize.register_parametrization(model.conv_time_spat.conv_spat, "weight", MaxNorm(2.0))
    return calibrate_batchnorm(model, INPUT_SHAPE, seed)


@keeps_global_rng
def eegnet_like(
    seed: int = 0,
    n_classes: int = N_CLASSES,
    f1: int = 4,
    d: int = 2,
    f2: int = 8,
    log_softmax: bool = True,
) -> nn.Module:
    """EEGNet v4: temporal conv, depthwise spatial conv (max norm 1), separable conv, pools 4 and 8.

    Args:
        seed: Weight seed.
        n_classes: Logits.
        f1: Temporal filters (braindecode: 8).
        d: Spatial filters per temporal filter (braindecode: 2).
        f2: Separable-conv filters (braindecode: 16).
        log_softmax: End with LogSoftmax.

    Returns:
        The eval-mode model, (N, 22, 1000) -> (N, n_classes).
    """
    fd = f1 * d
    model = nn.Sequential()
    model.add_module("ensuredims", Ensure4d())  # (N, 22, 1000, 1)
    model.add_module("dimshuffle", Permute(0, 3, 1, 2))  # (N, 1, 22, 1000)
    # braindecode pads k // 2 = 32 on both sides of an even kernel: 1000 -> 1001 positions.
    model.add_module("conv_temporal", nn.Conv2d(1, f1, (1, 64), padding=(0, 32), bias=False))
    model.add_module("bnorm_temporal", nn.BatchNorm2d(f1))  # (N, 4, 22, 1001)
    model.add_module(
        "conv_spatial", nn.Conv2d(f1, fd, (N_CHANS, 1), groups=f1, bias=False)
    )  # (N, 8, 1, 1001)
    model.add_module("bnorm_1", nn.BatchNorm2d(fd))
    model.add_module("elu_1", nn.ELU())
    model.add_module("pool_1", nn.AvgPool2d((1, 4), stride=(1, 4)))  # (N, 8, 1, 250)
    model.add_module("drop_1", nn.Dropout(0.25))
    model.add_module(
        "conv_separable_depth",
        nn.Conv2d(fd, fd, (1, 16), padding=(0, 8), groups=fd, bias=False),
    )  # (N, 8, 1, 251)
    model.add_module("conv_separable_point", nn.Conv2d(fd, f2, 1, bias=False))
    model.add_module("bnorm_2", nn.BatchNorm2d(f2))
    model.add_module("elu_2", nn.ELU())
    model.add_module("pool_2", nn.AvgPool2d((1, 8), stride=(1, 8)))  # (N, 8, 1, 31)
    model.add_module("drop_2", nn.Dropout(0.25))
    model.add_module(
        "final_layer", _final_layer(f2, (1, 31), n_classes, log_softmax, permute_back=True)
    )
    seeded_init(model, seed)  # rows of conv_spatial have norm ~sqrt(2) > 1: max norm bites
    parametrize.register_parametrization(model.conv_spatial, "weight", MaxNorm(1.0))
    return calibrate_batchnorm(model, INPUT_SHAPE, seed)


def _without_logsoftmax(case: ArchCase, factory: Callable[..., nn.Module]) -> ArchCase:
    """The same case with LogSoftmax dropped: the head becomes affine."""
    return dataclasses.replace(
        case,
        name=f"{case.name}_no_logsoftmax",
        factory=partial(factory, log_softmax=False),
        head_affine=True,
        head_sites=tuple(s for s in case.head_sites if not s.endswith("logsoftmax")),
        notes="LogSoftmax removed: the logits are the classifier conv's output.",
    )


# --- ShallowFBCSPNet, time axis (fmap axis -2 of (N, F, T, 1)); (rf, jump, start):
#   conv_time (25, 1)                     rf 25  jump  1  start 0   T 976
#   conv_spat (1, 22): electrodes -> 1    unchanged
#   pool avg (75, 1) s (15, 1)            rf 25 + 74 = 99, jump 15  T (976 - 75) // 15 + 1 = 61
#   safe log, dropout: pointwise          "drop": (8, 61, 1), stride 15, RF 99
# Head: conv_classifier (61, 1) reads all 61 positions with its own weight each: positional,
# collapses time to 1; with LogSoftmax the head is log_softmax(affine(A)) -> not affine.
_SHALLOW_HEAD = ("final_layer.conv_classifier", "final_layer.logsoftmax", "final_layer.squeeze")
SHALLOW = ArchCase(
    name="shallow_fbcsp_like",
    factory=shallow_fbcsp_like,
    input_shape=INPUT_SHAPE,
    num_classes=N_CLASSES,
    family="eeg",
    shift_axes=(-1,),
    feature_map=FeatureMap("drop", (8, 61, 1), (-2,), (15,), (99,), (0,)),
    stages=(
        FeatureMap("conv_time", (8, 976, 22), (-2,), (1,), (25,), (0,)),
        FeatureMap("conv_spat", (8, 976, 1), (-2,), (1,), (25,), (0,)),
        FeatureMap("pool", (8, 61, 1), (-2,), (15,), (99,), (0,)),
    ),
    head_kind="positional",
    head_affine=False,
    head_sites=_SHALLOW_HEAD,
    break_layer="final_layer.conv_classifier",
    collapse="final_layer.conv_classifier",
    nonshift_axes=((-2, -1),),
    fx_traceable=False,
    notes="Time is input axis -1 and feature-map axis -2 (after the (0, 3, 2, 1) permute); "
    "electrodes end as the size-1 axis -1. Output is log-probabilities.",
)
SHALLOW_COMBINED = dataclasses.replace(
    SHALLOW,
    name="shallow_fbcsp_combined_like",
    factory=partial(shallow_fbcsp_like, combined=True),
    stages=(
        FeatureMap("conv_time_spat", (8, 976, 1), (-2,), (1,), (25,), (0,)),
        FeatureMap("pool", (8, 61, 1), (-2,), (15,), (99,), (0,)),
    ),
    uncalled=("conv_time_spat.conv_time", "conv_time_spat.conv_spat"),
    notes="braindecode's current layout: one CombinedConv whose conv_time / conv_spat are never "
    "called (fused kernel). Output is log-probabilities.",
)

# --- Deep4Net, time axis (fmap axis -2); conv k10 adds 9 * jump, max pool 3/3 adds 2 * jump:
#   conv_time_spat (10, 1)  rf  10  jump  1   T 991
#   pool (3, 1) s3          rf  12  jump  3   T 330
#   conv_2 / pool_2         rf  39 / 45,   jump 9    T 321 / 107
#   conv_3 / pool_3         rf 126 / 144,  jump 27   T  98 / 32
#   conv_4 / pool_4         rf 387 / 441,  jump 81   T  23 / 7
# No padding anywhere: start 0. The classifier kernel (7, 1) covers all 7 positions.
_d4 = partial(FeatureMap, axes=(-2,), start=(0,))
DEEP4 = ArchCase(
    name="deep4_like",
    factory=deep4_like,
    input_shape=INPUT_SHAPE,
    num_classes=N_CLASSES,
    family="eeg",
    shift_axes=(-1,),
    feature_map=_d4("pool_nonlin_4", (10, 7, 1), stride=(81,), receptive_field=(441,)),
    stages=(
        _d4("conv_time_spat", (4, 991, 1), stride=(1,), receptive_field=(10,)),
        _d4("pool_nonlin", (4, 330, 1), stride=(3,), receptive_field=(12,)),
        _d4("conv_2", (6, 321, 1), stride=(3,), receptive_field=(39,)),
        _d4("pool_nonlin_2", (6, 107, 1), stride=(9,), receptive_field=(45,)),
        _d4("pool_nonlin_3", (8, 32, 1), stride=(27,), receptive_field=(144,)),
        _d4("conv_4", (10, 23, 1), stride=(27,), receptive_field=(387,)),
    ),
    head_kind="positional",
    head_affine=False,
    head_sites=_SHALLOW_HEAD,
    break_layer="final_layer.conv_classifier",
    collapse="final_layer.conv_classifier",
    nonshift_axes=((-2, -1),),
    uncalled=("conv_time_spat.conv_time", "conv_time_spat.conv_spat"),
    fx_traceable=False,
    notes="conv_time_spat is fused (its convs are never called); conv_spat's weight goes "
    "through a MaxNorm(2) parametrization. Output is log-probabilities.",
)

# --- EEGNet v4, time axis (fmap axis -1 of (N, F, 1, T)):
#   conv_temporal (1, 64) pad 32     rf  64  jump 1  start -32   T 1001 (even kernel: T + 1)
#   conv_spatial (22, 1): electrodes -> 1
#   pool_1 avg (1, 4) s4             rf  67  jump 4              T 250 (1001 // 4, one dropped)
#   conv_separable_depth (1, 16) p8  rf 127         start -64    T 251
#   conv_separable_point 1x1
#   pool_2 avg (1, 8) s8             rf 155  jump 32             T 31 (251 // 8, three dropped)
# 1000 samples work as is (no need to shrink to 512). Classifier kernel (1, 31) covers all.
_en = partial(FeatureMap, axes=(-1,))
EEGNET = ArchCase(
    name="eegnet_like",
    factory=eegnet_like,
    input_shape=INPUT_SHAPE,
    num_classes=N_CLASSES,
    family="eeg",
    shift_axes=(-1,),
    feature_map=_en("drop_2", (8, 1, 31), stride=(32,), receptive_field=(155,), start=(-64,)),
    stages=(
        _en("conv_temporal", (4, 22, 1001), stride=(1,), receptive_field=(64,), start=(-32,)),
        _en("conv_spatial", (8, 1, 1001), stride=(1,), receptive_field=(64,), start=(-32,)),
        _en("drop_1", (8, 1, 250), stride=(4,), receptive_field=(67,), start=(-32,)),
        _en("conv_separable_point", (8, 1, 251), stride=(4,), receptive_field=(127,), start=(-64,)),
    ),
    head_kind="positional",
    head_affine=False,
    head_sites=(
        "final_layer.conv_classifier",
        "final_layer.logsoftmax",
        "final_layer.permute_back",
        "final_layer.squeeze",
    ),
    break_layer="final_layer.conv_classifier",
    collapse="final_layer.conv_classifier",
    nonshift_axes=((-2, -2),),
    fx_traceable=False,
    notes="Time is input axis -1 and feature-map axis -1 (permute (0, 3, 1, 2)); electrodes "
    "are axis -2, size 22 until conv_spatial, then 1. conv_spatial's weight goes through "
    "MaxNorm(1). Output is log-probabilities.",
)

EEG_CASES = (
    SHALLOW,
    _without_logsoftmax(SHALLOW, shallow_fbcsp_like),
    SHALLOW_COMBINED,
    DEEP4,
    _without_logsoftmax(DEEP4, deep4_like),
    EEGNET,
    _without_logsoftmax(EEGNET, eegnet_like),
)
