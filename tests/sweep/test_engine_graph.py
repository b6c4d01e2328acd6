"""The graph engine equals brute force on every architecture family, in all three modes.

Oracle: ``interp.sweep.logits.brute_logits`` (the model run on every shifted input), both
in float64 so that the tolerance is float64 rounding of a few thousand-term sums, not a
figure tuned to one CPU.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from interp.sweep.engine import Unsupported
from interp.sweep.engine.graph import graph_logits
from interp.sweep.logits import brute_logits
from tests.archs import ARCHS

# One or two per family: residual (ResNet, blur-pool), depthwise + squeeze-excite
# (MobileNetV3), EEG nets (export-traced, full-kernel conv classifier, LogSoftmax),
# channel cat + residual (InceptionTime), a plain chain (FCN), heads that are not a Linear
# (index, LSTM) and an adaptive pool in the head.
CASES = [
    "resnet18_like", "blurpool_resnet_like", "mobilenetv3_like", "shallow_fbcsp_like",
    "eegnet_like", "deep4_like", "inception_time_like", "fcn_like", "index_head_model",
    "lstm_head_model", "adaptive_pool8_model", "positional_seed_like",
]  # fmt: skip
MODES = ("roll", "zero", "edge")


def _shifts(case) -> list:
    if len(case.shift_axes) == 2:
        return [(0, 0), (1, -2), (3, 5), (-4, -1), (7, 0)]
    n = case.input_shape[-1]
    return [-n // 3, -7, -1, 0, 2, 5, 16, n // 2 + 1]


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("mode", MODES)
def test_graph_engine_equals_brute_force(name: str, mode: str) -> None:
    case = ARCHS[name]
    model = case.factory(seed=0).double()
    x = torch.randn((3, *case.input_shape), generator=torch.Generator().manual_seed(1),
                    dtype=torch.float64)  # fmt: skip
    shifts = _shifts(case)
    fast = graph_logits(model, x, shifts, mode, require_gain=False)
    brute = brute_logits(model, x, shifts, mode, rows=4096)
    assert fast.shape == brute.shape
    scale = float(brute.abs().max())
    assert float((fast - brute).abs().max()) <= 1e-9 * max(scale, 1.0)


def test_circular_padding_is_refused_with_the_node() -> None:
    case = ARCHS["constant_pad_model"]
    x = torch.randn((2, *case.input_shape))
    with pytest.raises(Unsupported, match="pads circularly"):
        graph_logits(case.factory(seed=0), x, [-3, 0, 3], "roll", require_gain=False)


def test_no_gain_is_refused_with_the_geometry() -> None:
    """Every layer4 position of the 64x64 ResNet reads the border: nothing to share."""
    case = ARCHS["resnet18_like"]
    x = torch.randn((2, *case.input_shape))
    with pytest.raises(Unsupported, match="receptive field"):
        graph_logits(case.factory(seed=0), x, [(0, 0), (1, 1)], "roll")


def test_model_left_unchanged() -> None:
    case = ARCHS["inception_time_like"]
    model = case.factory(seed=0)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    graph_logits(model, torch.randn((2, *case.input_shape)), [-2, 0, 2], "zero",
                 require_gain=False)  # fmt: skip
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(m._forward_hooks for m in model.modules())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_graph_engine_on_cuda() -> None:
    case = ARCHS["fcn_like"]
    model = case.factory(seed=0).double().cuda()
    x = torch.randn((3, *case.input_shape), dtype=torch.float64, device="cuda")
    fast = graph_logits(model, x, [-5, 0, 9], "zero", require_gain=False)
    brute = brute_logits(model, x, [-5, 0, 9], "zero", rows=4096)
    assert float((fast - brute).abs().max()) <= 1e-9 * max(float(brute.abs().max()), 1.0)


def test_tiny_chain_stride_two() -> None:
    """A strided chain: two stride phases, borders on both sides."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(2, 3, 5, padding=2), nn.ReLU(), nn.MaxPool1d(3, 2, 1),
                          nn.Conv1d(3, 4, 3, padding=1), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
                          nn.Linear(4, 2)).double().eval()  # fmt: skip
    x = torch.randn(4, 2, 40, dtype=torch.float64)
    shifts = list(range(-9, 10))
    for mode in MODES:
        fast = graph_logits(model, x, shifts, mode, require_gain=False)
        brute = brute_logits(model, x, shifts, mode, rows=4096)
        assert float((fast - brute).abs().max()) <= 1e-9 * max(float(brute.abs().max()), 1.0)
