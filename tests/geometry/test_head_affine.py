"""The head's "affine" verdict does not depend on the scale of the features.

A randomly initialised MobileNetV3 can have features ~1e-8, where the Hardswish between its
head's two Linears (x * relu6(x + 3) / 6, slope 1/2 and curvature 1/3 at 0) is linear to far
below float32 rounding: the affine laws checked at the features' own scale pass. The oracle
here is the affine law itself, ``h(a u + b v) == a h(u) + b h(v)`` with ``a + b = 1``,
evaluated in float64 on the model's own head modules at unit scale (where Hardswish bends)
and at the features' scale (where it does not), so each test shows which regime it is in.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from functools import cache

import pytest
import torch
from torch import nn

from interp.geometry import structure
from tests.archs.mobilenet import mobilenetv3_like

A, B = 0.3, 0.7  # a + b = 1: the law holds for affine maps, not only linear ones


def _law_error(head: Callable[[torch.Tensor], torch.Tensor], shape: tuple[int, ...],
               scale: float) -> tuple[float, float]:  # fmt: skip
    """(max |h(a u + b v) - a h(u) - b h(v)|, max |h|) for float64 u, v ~ scale * N(0, 1)."""
    gen = torch.Generator().manual_seed(5)
    u = scale * torch.randn(shape, generator=gen, dtype=torch.float64)
    v = scale * torch.randn(shape, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        hu, hv = head(u), head(v)
        err = (head(A * u + B * v) - (A * hu + B * hv)).abs().max()
    return float(err), float(torch.cat([hu, hv]).abs().max())


def _tiny_mobilenet(hardswish: bool) -> nn.Module:
    """mobilenetv3_like with its last trunk layer's BatchNorm scaled down: features ~1e-8."""
    model = mobilenetv3_like(seed=0)
    bn = model.features[-1][1]  # ConvBNAct(24, 72, 1): conv, BatchNorm, Hardswish
    with torch.no_grad():
        bn.weight.mul_(1e-8)
        bn.bias.mul_(1e-8)
    if not hardswish:
        model.classifier[1] = nn.Identity()  # Linear -> Dropout -> Linear: affine
    return model.eval()


def _mobilenet_head(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model's forward after ``features`` (MobileNetV3.forward), in float64."""
    m = copy.deepcopy(model).double()
    return lambda f: m.classifier(torch.flatten(m.avgpool(f), 1))


@cache
def _mobilenet_case(hardswish: bool) -> tuple[nn.Module, torch.Tensor, object]:
    model = _tiny_mobilenet(hardswish)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    return model, x, structure(model, x)


@pytest.mark.parametrize("hardswish", [True, False], ids=["hardswish", "identity"])
def test_mobilenet_head_at_tiny_feature_scale(hardswish: bool) -> None:
    model, x, geo = _mobilenet_case(hardswish)
    with torch.no_grad():
        feats = model.features(x)
    peak = float(feats.abs().max())
    assert 0 < peak < 1e-6  # the regime of the bug: features far below unit scale
    head = _mobilenet_head(model)
    shape = tuple(feats.shape)
    # At the features' scale both heads pass the law (to float64 rounding of O(1) logits):
    # a probe there alone cannot tell Hardswish from a straight line.
    small_err, small_size = _law_error(head, shape, peak)
    assert small_err <= 1e-9 * small_size
    unit_err, unit_size = _law_error(head, shape, 1.0)
    h = geo.head
    assert h.reads == "features.8.2" and h.kind == "pooled"
    if hardswish:
        assert unit_err > 1e-3 * unit_size  # the oracle: not affine at unit scale
        assert h.affine is False
        assert h.exact is False  # the part after the mean pool is Linear->Hardswish->Linear
        assert "not affine" in h.measured
    else:
        assert unit_err <= 1e-12 * unit_size  # the oracle: affine at every scale
        assert h.affine is True
        assert h.exact is True


class _Chain(nn.Module):
    """Conv1d trunk whose last conv is scaled by ``scale``, then ``head``."""

    def __init__(self, head: nn.Module, scale: float) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.trunk = nn.Sequential(nn.Conv1d(2, 4, 5), nn.ReLU(), nn.Conv1d(4, 4, 3))
        self.head = head
        with torch.no_grad():
            for p in [*self.trunk.parameters(), *self.head.parameters()]:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5)
            self.trunk[2].weight.mul_(scale)
            self.trunk[2].bias.mul_(scale)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))


L_IN = 32
L_MAP = L_IN - 4 - 2  # two valid convs, kernels 5 and 3

HEADS: dict[str, Callable[[], nn.Module]] = {
    "flatten-linear": lambda: nn.Sequential(nn.Flatten(), nn.Linear(4 * L_MAP, 3)),
    "linear-dropout-linear": lambda: nn.Sequential(
        nn.Flatten(), nn.Linear(4 * L_MAP, 8), nn.Dropout(0.5), nn.Linear(8, 3)
    ),
    "mean-pool-linear": lambda: nn.Sequential(
        nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(4, 3)
    ),
}


@pytest.mark.parametrize("scale", [1e-8, 1.0, 1e4])
@pytest.mark.parametrize("name", sorted(HEADS))
def test_affine_heads_stay_affine_at_any_feature_scale(name: str, scale: float) -> None:
    model = _Chain(HEADS[name](), scale)
    x = torch.randn(3, 2, L_IN, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        feats = model.trunk(x)
    peak = float(feats.abs().max())
    assert 0.01 * scale < peak < 100 * scale
    head = copy.deepcopy(model.head).double()
    for probe in (peak, 1.0):
        err, size = _law_error(head, tuple(feats.shape), probe)
        assert err <= 1e-12 * size  # the oracle: affine at the features' and at unit scale
    geo = structure(model, x)
    assert geo.head.reads == "trunk.2"
    assert geo.head.affine is True, geo.head.measured
    assert geo.head.exact is True


def test_relu_between_linears_is_not_affine_even_on_nonnegative_features() -> None:
    """Features >= 0 (the trunk ends in a ReLU) and tiny: Linear -> ReLU -> Linear still bends
    on the features' domain at unit scale, since the first Linear's outputs take both signs."""
    head = nn.Sequential(nn.Flatten(), nn.Linear(4 * L_MAP, 8), nn.ReLU(), nn.Linear(8, 3))
    model = _Chain(head, 1e-8)
    model.trunk.append(nn.ReLU())
    x = torch.randn(3, 2, L_IN, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        feats = model.trunk(x)
    assert float(feats.min()) >= 0 and 0 < float(feats.max()) < 1e-6
    # The oracle on the features' domain: unit-scale maps >= 0.
    ref = copy.deepcopy(head).double()
    gen = torch.Generator().manual_seed(5)
    u, v = (torch.randn(tuple(feats.shape), generator=gen, dtype=torch.float64).abs()
            for _ in range(2))  # fmt: skip
    with torch.no_grad():
        err = float((ref(A * u + B * v) - (A * ref(u) + B * ref(v))).abs().max())
        size = float(ref(u).abs().max())
    assert err > 1e-3 * size
    geo = structure(model, x)
    assert geo.head.affine is False, geo.head.measured
