"""record(): activations equal a manual forward; hooks always removed; model unchanged."""

from __future__ import annotations

import pytest
import torch
from conftest import no_hooks_left
from torch import nn

import interp
from interp.errors import InterpError


def test_recorded_equals_manual_forward(positional_1d):
    x = torch.randn(5, 1, 64, generator=torch.Generator().manual_seed(0))
    with interp.record(positional_1d, ["0", "2"]) as rec:
        positional_1d(x)
    conv, relu, pool = positional_1d[0], positional_1d[1], positional_1d[2]
    with torch.no_grad():
        a0 = conv(x)
        a2 = pool(relu(conv(x)))
    assert rec["0"].shape == (5, 4, 60)
    assert torch.equal(rec["0"], a0) and torch.equal(rec["2"], a2)
    assert not rec["0"].requires_grad
    assert no_hooks_left(positional_1d)


def test_inplace_relu_after_recorded_layer_does_not_corrupt():
    model = nn.Sequential(nn.Conv1d(1, 2, 3), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(36, 2))
    x = torch.randn(3, 1, 20)
    with interp.record(model, ["0"]) as rec, torch.no_grad():
        model(x)
    with torch.no_grad():
        expected = model[0](x)
    assert (rec["0"] < 0).any(), "the pre-ReLU values must survive the in-place ReLU"
    assert torch.equal(rec["0"], expected)


def test_batches_concatenate_and_reduce_matches_manual(positional_1d):
    gen = torch.Generator().manual_seed(1)
    batches = [torch.randn(n, 1, 64, generator=gen) for n in (3, 4, 2)]
    with torch.no_grad():
        full = torch.cat([positional_1d[0](b) for b in batches])
    with interp.record(positional_1d, ["0"]) as rec:
        for b in batches:
            positional_1d(b)
    assert torch.equal(rec["0"], full)
    for how, expected in (
        ("mean", full.double().mean(0)),
        ("max", full.amax(0)),
        ("min", full.amin(0)),
        ("sum", full.double().sum(0)),
    ):
        with interp.record(positional_1d, ["0"], reduce=how) as red:
            for b in batches:
                positional_1d(b)
        assert red.count == 9
        assert torch.allclose(red["0"].double(), expected.double(), atol=1e-5), how


def test_hooks_removed_when_forward_raises(positional_1d):
    with pytest.raises(RuntimeError), interp.record(positional_1d, ["0", "4"]):
        positional_1d(torch.randn(2, 1, 50))  # wrong length: the Linear raises
    assert no_hooks_left(positional_1d)


def test_hooks_removed_when_block_raises(positional_1d):
    with pytest.raises(KeyError), interp.record(positional_1d, ["0"]):
        raise KeyError("user code failed")
    assert no_hooks_left(positional_1d)


def test_unknown_layer_lists_valid_names(positional_1d):
    with pytest.raises(InterpError, match=r"'fc9' not found; available: 0, 1, 2, 3, 4, 5"):
        interp.record(positional_1d, ["fc9"])
    with pytest.raises(TypeError, match="list of names"):
        interp.record(positional_1d, "0")  # type: ignore[arg-type]
    assert no_hooks_left(positional_1d)


def test_user_hooks_and_mode_kept(positional_1d):
    seen = []
    handle = positional_1d[0].register_forward_hook(lambda m, i, o: seen.append(1))
    positional_1d.train()
    with interp.record(positional_1d, ["0"]):
        positional_1d(torch.randn(1, 1, 64))
    assert positional_1d.training and seen == [1]
    assert len(positional_1d[0]._forward_hooks) == 1
    handle.remove()
