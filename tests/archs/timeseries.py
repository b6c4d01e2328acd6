"""1D time-series classifiers: InceptionTime (tsai layout) and the FCN of Wang et al. (2017)."""

from __future__ import annotations

import torch
from torch import nn

from ._case import ArchCase, FeatureMap
from ._init import finish, keeps_global_rng

INPUT_SHAPE = (1, 256)


class InceptionModule(nn.Module):
    """[1x1 bottleneck] -> convs k 39/19/9 ('same') || MaxPool(3, 1, 1) -> 1x1; cat, BN, ReLU.

    Args:
        ni: Input channels (no bottleneck when 1, as in InceptionTime).
        nf: Filters per branch; the output has ``4 * nf`` channels.
        kernels: Kernel sizes of the three conv branches.
    """

    def __init__(self, ni: int, nf: int = 4, kernels: tuple[int, ...] = (39, 19, 9)) -> None:
        super().__init__()
        self.bottleneck: nn.Module = nn.Conv1d(ni, nf, 1, bias=False) if ni > 1 else nn.Identity()
        width = nf if ni > 1 else ni
        self.convs = nn.ModuleList(
            nn.Conv1d(width, nf, k, padding=k // 2, bias=False) for k in kernels
        )
        self.maxconvpool = nn.Sequential(
            nn.MaxPool1d(3, stride=1, padding=1), nn.Conv1d(ni, nf, 1, bias=False)
        )
        self.bn = nn.BatchNorm1d(nf * (len(kernels) + 1))
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        input_tensor = x  # (N, ni, L)
        x = self.bottleneck(x)
        branches = [conv(x) for conv in self.convs] + [self.maxconvpool(input_tensor)]
        return self.act(self.bn(torch.cat(branches, dim=1)))  # (N, 4 nf, L)


class Add(nn.Module):
    """``x + y`` as a module (tsai's ``Add``)."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x.add(y)


class InceptionBlock(nn.Module):
    """``depth`` inception modules; every third one adds a shortcut (1x1 conv + BN, or BN).

    Args:
        ni: Input channels.
        nf: Filters per branch.
        depth: Number of modules (a multiple of 3).
    """

    def __init__(self, ni: int, nf: int = 4, depth: int = 6) -> None:
        super().__init__()
        self.inception = nn.ModuleList(
            InceptionModule(ni if d == 0 else nf * 4, nf) for d in range(depth)
        )
        shortcuts: list[nn.Module] = []
        for d in range(depth // 3):
            n_in = ni if d == 0 else nf * 4
            if n_in == nf * 4:
                shortcuts.append(nn.BatchNorm1d(n_in))
            else:
                shortcuts.append(
                    nn.Sequential(nn.Conv1d(n_in, nf * 4, 1, bias=False), nn.BatchNorm1d(nf * 4))
                )
        self.shortcut = nn.ModuleList(shortcuts)
        self.add = Add()  # called depth // 3 times
        self.act = nn.ReLU()  # called depth // 3 times

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = x
        for d, module in enumerate(self.inception):
            x = module(x)
            if d % 3 == 2:
                res = x = self.act(self.add(x, self.shortcut[d // 3](res)))
        return x


class InceptionTime(nn.Module):
    """InceptionBlock -> global average pool ``x.mean(-1)`` -> Linear.

    Args:
        ni: Input channels.
        num_classes: Logits.
        nf: Filters per branch.
        depth: Inception modules.
    """

    def __init__(self, ni: int = 1, num_classes: int = 3, nf: int = 4, depth: int = 6) -> None:
        super().__init__()
        self.inceptionblock = InceptionBlock(ni, nf, depth)
        self.fc = nn.Linear(nf * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inceptionblock(x)  # (N, 16, 256)
        x = x.mean(-1)  # (N, 16)
        return self.fc(x)


@keeps_global_rng
def inception_time_like(seed: int = 0, num_classes: int = 3) -> nn.Module:
    """InceptionTime with 4 filters per branch and depth 6; input (N, 1, 256)."""
    return finish(InceptionTime(1, num_classes, nf=4, depth=6), INPUT_SHAPE, seed)


class FCN(nn.Module):
    """Three conv blocks (k 8, 5, 3, padding 'same') + BN + ReLU -> global average pool -> Linear.

    Args:
        ni: Input channels.
        num_classes: Logits.
        widths: Channels of the three blocks (Wang et al.: 128, 256, 128).
    """

    def __init__(
        self, ni: int = 1, num_classes: int = 3, widths: tuple[int, int, int] = (8, 16, 8)
    ) -> None:
        super().__init__()
        chans = (ni, *widths)
        blocks = []
        for cin, cout, k in zip(chans[:-1], chans[1:], (8, 5, 3), strict=True):
            blocks.append(
                nn.Sequential(
                    nn.Conv1d(cin, cout, k, padding="same"), nn.BatchNorm1d(cout), nn.ReLU()
                )
            )
        self.convblock1, self.convblock2, self.convblock3 = blocks
        self.gap = nn.AdaptiveAvgPool1d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(widths[2], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convblock3(self.convblock2(self.convblock1(x)))  # (N, 8, 256)
        return self.fc(self.flatten(self.gap(x)))  # (N, num_classes)


@keeps_global_rng
def fcn_like(seed: int = 0, num_classes: int = 3) -> nn.Module:
    """Wang et al. FCN at widths 8/16/8; input (N, 1, 256)."""
    return finish(FCN(1, num_classes), INPUT_SHAPE, seed)


# InceptionTime: each module's widest branch is the k=39 conv (padding 19): rf += 38,
# start -= 19 per module, stride 1 throughout (the k=3 max-pool branch adds only 2).
#   inception.0            rf  39  start  -19
#   after 3 modules (act call 0, first residual)  rf 115  start -57
#   after 6 modules (= "inceptionblock")          rf 229  start -114   (16, 256)
# x.mean(-1) then Linear: pooled and affine.
INCEPTION_TIME = ArchCase(
    name="inception_time_like",
    factory=inception_time_like,
    input_shape=INPUT_SHAPE,
    num_classes=3,
    family="timeseries",
    shift_axes=(-1,),
    feature_map=FeatureMap("inceptionblock", (16, 256), (-1,), (1,), (229,), (-114,)),
    stages=(
        FeatureMap("inceptionblock.inception.0", (16, 256), (-1,), (1,), (39,), (-19,)),
        FeatureMap("inceptionblock.act", (16, 256), (-1,), (1,), (115,), (-57,), call=0),
        FeatureMap("inceptionblock.act", (16, 256), (-1,), (1,), (229,), (-114,), call=1),
    ),
    head_kind="pooled",
    head_affine=True,
    head_sites=("forward: x.mean(-1)", "fc"),
    break_layer="forward: x.mean(-1)",
    collapse="forward: x.mean(-1)",
    call_sites=(("inceptionblock.add", 2), ("inceptionblock.act", 2)),
    notes="The residual Add and ReLU are single modules called once per residual connection.",
)

# FCN: PyTorch's padding='same' for an even kernel pads (k - 1) // 2 = 3 left and 4 right.
#   convblock1 k8  rf  8  start -3
#   convblock2 k5  rf 12  start -5
#   convblock3 k3  rf 14  start -6   (8, 256)
FCN_CASE = ArchCase(
    name="fcn_like",
    factory=fcn_like,
    input_shape=INPUT_SHAPE,
    num_classes=3,
    family="timeseries",
    shift_axes=(-1,),
    feature_map=FeatureMap("convblock3", (8, 256), (-1,), (1,), (14,), (-6,)),
    stages=(
        FeatureMap("convblock1", (8, 256), (-1,), (1,), (8,), (-3,)),
        FeatureMap("convblock2", (16, 256), (-1,), (1,), (12,), (-5,)),
    ),
    head_kind="pooled",
    head_affine=True,
    head_sites=("gap", "flatten", "fc"),
    break_layer="gap",
    collapse="gap",
)

TIMESERIES_CASES = (INCEPTION_TIME, FCN_CASE)
