"""An antialiased-cnns-style ResNet: each stride-2 step is a [1, 2, 1] blur, then subsampling."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._case import ArchCase, FeatureMap
from ._init import finish, keeps_global_rng

INPUT_SHAPE = (3, 64, 64)


class BlurPool(nn.Module):
    """Reflection pad, then a depthwise stride-2 conv with the fixed [1,2,1]x[1,2,1]/16 filter.

    Args:
        channels: Channels of the input (the filter is repeated per channel).
        stride: Subsampling factor.
    """

    def __init__(self, channels: int, stride: int = 2) -> None:
        super().__init__()
        self.channels = channels
        self.stride = stride
        self.pad = nn.ReflectionPad2d(1)
        taps = torch.tensor([1.0, 2.0, 1.0])
        kernel = taps[:, None] * taps[None, :]
        kernel = kernel / kernel.sum()  # (3, 3), sums to 1
        self.register_buffer("filt", kernel[None, None].repeat(channels, 1, 1, 1))  # (C, 1, 3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (N, C, H, W) -> (N, C, ceil(H / 2), ceil(W / 2))
        return F.conv2d(self.pad(x), self.filt, stride=self.stride, groups=x.shape[1])


class AABasicBlock(nn.Module):
    """antialiased-cnns BasicBlock: conv1 at stride 1; a stride-2 conv2 becomes BlurPool + conv.

    Args:
        inplanes: Input channels.
        planes: Output channels.
        stride: 1 or 2.
        downsample: BlurPool + 1x1 conv + BN on the identity branch, or ``None``.
    """

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        if stride == 1:
            self.conv2: nn.Module = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        else:
            self.conv2 = nn.Sequential(
                BlurPool(planes, stride=stride), nn.Conv2d(planes, planes, 3, padding=1, bias=False)
            )
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))  # (N, planes, H, W)
        out = self.bn2(self.conv2(out))  # (N, planes, H/s, W/s)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class AAResNet(nn.Module):
    """Stem conv s2 -> MaxPool(2, s1) + BlurPool -> 4 stages -> global average pool -> fc.

    Args:
        layers: Blocks per stage.
        widths: Channels per stage.
        num_classes: Logits.
    """

    def __init__(
        self,
        layers: tuple[int, int, int, int] = (1, 1, 1, 1),
        widths: tuple[int, int, int, int] = (8, 16, 16, 32),
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        self.inplanes = widths[0]
        self.conv1 = nn.Conv2d(3, self.inplanes, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        # pool_only=True: the stem conv keeps its stride; the max pool is antialiased.
        self.maxpool = nn.Sequential(
            nn.MaxPool2d(kernel_size=2, stride=1), BlurPool(self.inplanes, stride=2)
        )
        self.layer1 = self._make_layer(widths[0], layers[0], 1)
        self.layer2 = self._make_layer(widths[1], layers[1], 2)
        self.layer3 = self._make_layer(widths[2], layers[2], 2)
        self.layer4 = self._make_layer(widths[3], layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[3], num_classes)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            parts: list[nn.Module] = [BlurPool(self.inplanes, stride)] if stride != 1 else []
            parts += [nn.Conv2d(self.inplanes, planes, 1, bias=False), nn.BatchNorm2d(planes)]
            downsample = nn.Sequential(*parts)
        layers = [AABasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [AABasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))  # (N, 8, 32, 32)
        x = self.maxpool(x)  # (N, 8, 31, 31) -> (N, 8, 16, 16)
        x = self.layer1(x)  # (N, 8, 16, 16)
        x = self.layer2(x)  # (N, 16, 8, 8)
        x = self.layer3(x)  # (N, 16, 4, 4)
        x = self.layer4(x)  # (N, 32, 2, 2)
        x = self.avgpool(x)  # (N, 32, 1, 1)
        x = x.view(x.size(0), -1)  # (N, 32)
        return self.fc(x)


@keeps_global_rng
def blurpool_resnet_like(seed: int = 0, num_classes: int = 10) -> nn.Module:
    """antialiased-cnns ResNet (one block per stage, filter size 3); input (N, 3, 64, 64)."""
    return finish(AAResNet((1, 1, 1, 1), (8, 16, 16, 32), num_classes), INPUT_SHAPE, seed)


# Geometry per spatial axis, (rf, jump, start) from (1, 1, 0); BlurPool = pad 1, k3, s2:
#   conv1 7x7 s2 p3                rf   7  jump  2  start   -3   32
#   maxpool.0 MaxPool 2 s1 p0      rf   9           start   -3   31   (k2 widens to the right)
#   maxpool.1 BlurPool @ j2        rf  13  jump  4  start   -5   16   <- "maxpool"
#   layer1.0 conv1, conv2 @ j4     rf  29           start  -13   16   <- "layer1"
#   layer2.0.conv1 @ j4            rf  37           start  -17
#   layer2.0.conv2.0 BlurPool @ j4 rf  45  jump  8  start  -21
#   layer2.0.conv2.1 3x3 @ j8      rf  61           start  -29    8   <- "layer2"
#   layer3.0 conv1 @ j8 / blur / 3x3 @ j16: 77 / 93 / 125, start -37 / -45 / -61,  4  <- "layer3"
#   layer4.0 conv1 @ j16 / blur / 3x3 @ j32: 157 / 189 / 253, start -77 / -93 / -125, 2
# The receptive field of layer4 position j is [32j - 125, 32j + 127]: centred on 32j + 1, not
# 32j, because of the even-sized MaxPool(2, s1). The downsample branch (BlurPool, 1x1) reads a
# subset of the main branch, e.g. stage 2: [8j - 17, 8j + 19] inside [8j - 29, 8j + 31].
_AXES = (-2, -1)


def _fm(site: str, shape: tuple[int, ...], s: int, rf: int, start: int) -> FeatureMap:
    return FeatureMap(site, shape, _AXES, (s, s), (rf, rf), (start, start))


BLURPOOL_RESNET = ArchCase(
    name="blurpool_resnet_like",
    factory=blurpool_resnet_like,
    input_shape=INPUT_SHAPE,
    num_classes=10,
    family="blurpool",
    shift_axes=_AXES,
    feature_map=_fm("layer4", (32, 2, 2), 32, 253, -125),
    stages=(
        _fm("maxpool.0", (8, 31, 31), 2, 9, -3),
        _fm("maxpool", (8, 16, 16), 4, 13, -5),
        _fm("layer1", (8, 16, 16), 4, 29, -13),
        _fm("layer2", (16, 8, 8), 8, 61, -29),
        _fm("layer3", (16, 4, 4), 16, 125, -61),
    ),
    head_kind="pooled",
    head_affine=True,
    head_sites=("avgpool", "forward: x.view(x.size(0), -1)", "fc"),
    break_layer="avgpool",
    collapse="avgpool",
    call_sites=tuple((f"layer{stage}.0.relu", 2) for stage in range(1, 5)),
    probe_lengths=(320, 320),
    notes="Blurring before subsampling does not change the stride (still 32) and widens the "
    "receptive field; the shift equivariance it buys is only approximate. BlurPool's forward "
    "reads x.shape[1] for groups.",
)
