"""A small torchvision-style MobileNetV3: depthwise convs, Hardswish, squeeze-excite, residuals."""

from __future__ import annotations

import torch
from torch import nn

from ._case import ArchCase, FeatureMap
from ._init import finish, keeps_global_rng

INPUT_SHAPE = (3, 64, 64)


class ConvBNAct(nn.Sequential):
    """Conv2d (padding (k - 1) // 2) -> BatchNorm2d -> optional activation (Conv2dNormActivation).

    Args:
        cin: Input channels.
        cout: Output channels.
        kernel: Kernel size.
        stride: Stride.
        groups: Conv groups (``cin`` for depthwise).
        act: Activation class, or ``None``.
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int = 3,
        stride: int = 1,
        groups: int = 1,
        act: type[nn.Module] | None = nn.Hardswish,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if act is not None:
            layers.append(act())
        super().__init__(*layers)


class SqueezeExcitation(nn.Module):
    """AdaptiveAvgPool -> 1x1 conv -> ReLU -> 1x1 conv -> Hardsigmoid, multiplied onto the map.

    Args:
        channels: Channels of the map.
        squeeze: Channels of the bottleneck.
    """

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = nn.ReLU()
        self.scale_activation = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.avgpool(x)  # (N, C, 1, 1): every position of x
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(scale))))
        return scale * x  # (N, C, H, W)


class InvertedResidual(nn.Module):
    """[1x1 expand] -> depthwise kxk (stride) -> [SE] -> 1x1 project; residual add if it fits.

    Args:
        cin: Input channels.
        kernel: Depthwise kernel size.
        expanded: Channels after the expansion.
        cout: Output channels.
        use_se: Whether to squeeze-excite after the depthwise conv.
        act: Activation class of the expand and depthwise convs.
        stride: Depthwise stride.
    """

    def __init__(
        self,
        cin: int,
        kernel: int,
        expanded: int,
        cout: int,
        use_se: bool,
        act: type[nn.Module],
        stride: int,
    ) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expanded != cin:
            layers.append(ConvBNAct(cin, expanded, 1, act=act))
        layers.append(ConvBNAct(expanded, expanded, kernel, stride, groups=expanded, act=act))
        if use_se:
            layers.append(SqueezeExcitation(expanded, max(4, expanded // 4)))
        layers.append(ConvBNAct(expanded, cout, 1, act=None))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.block(x)
        if self.use_res_connect:
            result += x
        return result


RE, HS = nn.ReLU, nn.Hardswish
# (in, kernel, expanded, out, SE, activation, stride), a shrunk mobilenet_v3_small.
BLOCKS = (
    (8, 3, 8, 8, True, RE, 2),  # features.1: no expand conv (expanded == in)
    (8, 3, 24, 12, False, RE, 2),  # features.2
    (12, 3, 32, 12, False, RE, 1),  # features.3: residual
    (12, 5, 48, 16, True, HS, 2),  # features.4
    (16, 5, 48, 16, True, HS, 1),  # features.5: residual
    (16, 5, 64, 24, True, HS, 2),  # features.6
    (24, 5, 64, 24, True, HS, 1),  # features.7: residual
)


class MobileNetV3(nn.Module):
    """features -> AdaptiveAvgPool2d(1) -> flatten -> Linear -> Hardswish -> Dropout -> Linear.

    Args:
        num_classes: Logits.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvBNAct(3, 8, 3, stride=2, act=HS)]
        layers += [InvertedResidual(*cfg) for cfg in BLOCKS]
        layers.append(ConvBNAct(24, 72, 1, act=HS))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(72, 64), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(64, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (N, 72, 2, 2)
        x = self.avgpool(x)  # (N, 72, 1, 1)
        x = torch.flatten(x, 1)  # (N, 72)
        return self.classifier(x)  # (N, num_classes)


@keeps_global_rng
def mobilenetv3_like(seed: int = 0, num_classes: int = 10) -> nn.Module:
    """Shrunk torchvision MobileNetV3 (total stride 32); input (N, 3, 64, 64)."""
    return finish(MobileNetV3(num_classes), INPUT_SHAPE, seed)


# Local geometry per spatial axis (only the depthwise convs and the stem have k > 1):
#   features.0 stem 3x3 s2 p1        rf   3  jump  2  start   -1  32
#   features.1 dw 3x3 s2 p1 @ j2     rf   7  jump  4  start   -3  16
#   features.2 dw 3x3 s2 p1 @ j4     rf  15  jump  8  start   -7   8
#   features.3 dw 3x3 s1 p1 @ j8     rf  31           start  -15   8
#   features.4 dw 5x5 s2 p2 @ j8     rf  63  jump 16  start  -31   4
#   features.5 dw 5x5 s1 p2 @ j16    rf 127           start  -63   4
#   features.6 dw 5x5 s2 p2 @ j16    rf 191  jump 32  start  -95   2
#   features.7 dw 5x5 s1 p2 @ j32    rf 319           start -159   2
#   features.8 1x1                   unchanged                     2   <- "features"
# The squeeze-excite blocks average over ALL positions, so from features.1 on every position
# truly depends on the whole input; the numbers above are the conv-path (local) geometry, and
# the oracle checks them with the SE blocks removed.
_AXES = (-2, -1)
SE_SITES = (
    "features.1.block.1",
    "features.4.block.2",
    "features.5.block.2",
    "features.6.block.2",
    "features.7.block.2",
)


def _fm(site: str, shape: tuple[int, ...], s: int, rf: int, start: int) -> FeatureMap:
    return FeatureMap(site, shape, _AXES, (s, s), (rf, rf), (start, start))


MOBILENETV3 = ArchCase(
    name="mobilenetv3_like",
    factory=mobilenetv3_like,
    input_shape=INPUT_SHAPE,
    num_classes=10,
    family="mobilenet",
    shift_axes=_AXES,
    feature_map=_fm("features", (72, 2, 2), 32, 319, -159),
    stages=(
        _fm("features.0", (8, 32, 32), 2, 3, -1),
        _fm("features.1", (8, 16, 16), 4, 7, -3),
        _fm("features.2", (12, 8, 8), 8, 15, -7),
        _fm("features.3", (12, 8, 8), 8, 31, -15),
        _fm("features.4", (16, 4, 4), 16, 63, -31),
        _fm("features.5", (16, 4, 4), 16, 127, -63),
        _fm("features.6", (24, 2, 2), 32, 191, -95),
        _fm("features.7", (24, 2, 2), 32, 319, -159),
    ),
    # Pooled (global average first) but not affine: Hardswish between the two Linears.
    head_kind="pooled",
    head_affine=False,
    head_sites=(
        "avgpool",
        "forward: torch.flatten(x, 1)",
        "classifier.0",
        "classifier.1",
        "classifier.2",
        "classifier.3",
    ),
    break_layer="avgpool",
    collapse="avgpool",
    global_sites=SE_SITES,
    probe_lengths=(384, 384),
    notes="Squeeze-excite makes every feature map after features.1 depend on the whole input "
    "(global context), and its pooled gate sees the zero-padded borders, so even interior "
    "positions are not exactly shift-equivariant under a circular roll of the input.",
)
