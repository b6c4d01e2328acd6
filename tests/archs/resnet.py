"""A small torchvision-style ResNet-18 (BasicBlock, [2, 2, 2, 2]) at widths 8, 16, 16, 32."""

from __future__ import annotations

import torch
from torch import nn

from ._case import ArchCase, FeatureMap
from ._init import finish, keeps_global_rng

INPUT_SHAPE = (3, 64, 64)


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, ``out += identity``, ReLU, with ONE ``self.relu`` called twice.

    Args:
        inplanes: Input channels.
        planes: Output channels.
        stride: Stride of the first conv (and of ``downsample``).
        downsample: Strided 1x1 conv + BN on the identity branch, or ``None``.
    """

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x  # (N, inplanes, H, W)
        out = self.relu(self.bn1(self.conv1(x)))  # (N, planes, H/s, W/s)
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)  # (N, planes, H/s, W/s)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """torchvision's ResNet layout: stem, four stages, global average pool, fc.

    Args:
        layers: BasicBlocks per stage.
        widths: Channels per stage.
        num_classes: Logits.
    """

    def __init__(
        self,
        layers: tuple[int, int, int, int] = (2, 2, 2, 2),
        widths: tuple[int, int, int, int] = (8, 16, 16, 32),
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        self.inplanes = widths[0]
        self.conv1 = nn.Conv2d(3, self.inplanes, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(widths[0], layers[0], stride=1)
        self.layer2 = self._make_layer(widths[1], layers[1], stride=2)
        self.layer3 = self._make_layer(widths[2], layers[2], stride=2)
        self.layer4 = self._make_layer(widths[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[3] * BasicBlock.expansion, num_classes)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))  # (N, 8, 32, 32)
        x = self.maxpool(x)  # (N, 8, 16, 16)
        x = self.layer1(x)  # (N, 8, 16, 16)
        x = self.layer2(x)  # (N, 16, 8, 8)
        x = self.layer3(x)  # (N, 16, 4, 4)
        x = self.layer4(x)  # (N, 32, 2, 2)
        x = self.avgpool(x)  # (N, 32, 1, 1)
        x = torch.flatten(x, 1)  # (N, 32)
        return self.fc(x)  # (N, num_classes)


@keeps_global_rng
def resnet18_like(seed: int = 0, num_classes: int = 10) -> nn.Module:
    """torchvision-style ResNet-18 at widths 8/16/16/32; input (N, 3, 64, 64)."""
    return finish(ResNet((2, 2, 2, 2), (8, 16, 16, 32), num_classes), INPUT_SHAPE, seed)


# Geometry, per spatial axis (H and W are identical), by the recurrence over layers
#   rf += (k - 1) * jump;  start -= pad * jump;  jump *= stride
# (rf, jump, start) starts at (1, 1, 0):
#   conv1 7x7 s2 p3            rf  7  jump  2  start   -3   32x32
#   maxpool 3 s2 p1            rf 11  jump  4  start   -5   16x16   <- "maxpool"
#   layer1: 4 convs 3x3 @ j4   rf 43           start  -21   16x16   <- "layer1"
#   layer2.0.conv1 s2 @ j4     rf 51  jump  8  start  -25
#   layer2: 3 more convs @ j8  rf 99           start  -49    8x8    <- "layer2"
#   layer3.0.conv1 s2 @ j8     rf 115 jump 16  start  -57
#   layer3: 3 more @ j16       rf 211          start -105    4x4    <- "layer3"
#   layer4.0.conv1 s2 @ j16    rf 243 jump 32  start -121
#   layer4: 3 more @ j32       rf 435          start -217    2x2    <- "layer4"
# The 1x1 s2 downsample branch reads a subset of what the main branch reads, so it does not widen
# the receptive field. RF 435 / stride 32 are the textbook ResNet-18 numbers. At 64x64 every
# layer4 position's receptive field overhangs the input, so the geometry oracle probes at 480.
_AXES = (-2, -1)


def _fm(site: str, shape: tuple[int, ...], s: int, rf: int, start: int) -> FeatureMap:
    return FeatureMap(site, shape, _AXES, (s, s), (rf, rf), (start, start))


RESNET18 = ArchCase(
    name="resnet18_like",
    factory=resnet18_like,
    input_shape=INPUT_SHAPE,
    num_classes=10,
    family="resnet",
    shift_axes=_AXES,
    feature_map=_fm("layer4", (32, 2, 2), 32, 435, -217),
    stages=(
        _fm("maxpool", (8, 16, 16), 4, 11, -5),
        _fm("layer1", (8, 16, 16), 4, 43, -21),
        _fm("layer2", (16, 8, 8), 8, 99, -49),
        _fm("layer3", (16, 4, 4), 16, 211, -105),
    ),
    # AdaptiveAvgPool2d(1) -> torch.flatten -> fc: mean then linear, so affine and pooled.
    head_kind="pooled",
    head_affine=True,
    head_sites=("avgpool", "forward: torch.flatten(x, 1)", "fc"),
    break_layer="avgpool",
    collapse="avgpool",
    call_sites=tuple(
        (f"layer{stage}.{block}.relu", 2) for stage in range(1, 5) for block in range(2)
    ),
    probe_lengths=(480, 480),
    notes="Every BasicBlock reuses one inplace ReLU module (torchvision); a hook on "
    "'layerX.Y.relu' fires twice per forward, the first time inside the residual branch.",
)
