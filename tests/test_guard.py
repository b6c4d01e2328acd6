"""inspecting(): everything about the model is restored, even after an error."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from interp._guard import inspecting


def _model() -> nn.Sequential:
    model = nn.Sequential(nn.Conv1d(1, 2, 3), nn.BatchNorm1d(2), nn.ReLU(inplace=True),
                          nn.Flatten(), nn.Linear(2 * 8, 2))  # fmt: skip
    model.train()
    model[0].weight.requires_grad_(False)  # a frozen parameter
    model(torch.randn(4, 1, 10)).sum().backward()  # existing .grad on the others
    return model


def _state(model: nn.Module):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
        [None if p.grad is None else p.grad.clone() for p in model.parameters()],
    )


@pytest.mark.parametrize("fail", [False, True])
def test_everything_restored(fail):
    model = _model()
    user_hook = model[0].register_forward_hook(lambda *a: None)
    sd, modes, req, grads = _state(model)
    grad_mode, rng = torch.is_grad_enabled(), torch.get_rng_state()
    try:
        with inspecting(model, grad=True) as m:
            assert not m.training and not any(p.requires_grad for p in m.parameters())
            m[2].register_forward_hook(lambda *a: None)
            m[4].register_forward_pre_hook(lambda *a: None)
            torch.randn(3)  # consumes global RNG
            m(torch.randn(2, 1, 10))
            if fail:
                raise RuntimeError("injected failure mid-analysis")
    except RuntimeError:
        assert fail
    sd2, modes2, req2, grads2 = _state(model)
    assert all(torch.equal(sd[k], sd2[k]) for k in sd)  # BN running stats included
    assert modes == modes2 and req == req2
    assert all(
        (a is None and b is None) or torch.equal(a, b) for a, b in zip(grads, grads2, strict=True)
    )
    assert torch.is_grad_enabled() == grad_mode and torch.equal(torch.get_rng_state(), rng)
    assert list(model[0]._forward_hooks) == [user_hook.id]
    assert not model[2]._forward_hooks and not model[4]._forward_pre_hooks
