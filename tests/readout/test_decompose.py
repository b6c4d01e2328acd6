"""Exact logit decomposition and every-shift scores, against the model and brute force.

Oracles: the model's own forward (logits), a manual forward through the trunk
(feature map, so each contribution is W * A by hand), and a Python loop over
circular shifts of the feature map.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import no_hooks_left
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from interp.errors import InterpError
from interp.geometry.core import structure
from interp.readout.core import all_shift_scores, decompose


def _no_dropout_1d(positional_1d: nn.Sequential) -> nn.Sequential:
    return nn.Sequential(*[m for m in positional_1d if not isinstance(m, nn.Dropout)]).eval()


def _check_sums(model: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        logits = model.eval()(x).double()  # (N, K): the oracle
    d = decompose(model, x)
    spatial = tuple(range(2, d.per_position.dim()))
    torch.testing.assert_close(d.per_position.sum(spatial) + d.bias.double(), logits,
                               rtol=1e-5, atol=1e-6)  # fmt: skip
    torch.testing.assert_close(d.per_kernel.sum(2) + d.bias.double(), logits, rtol=1e-5, atol=1e-6)
    flat = d.contributions.double().flatten(2).sum(2) + d.bias.double()
    torch.testing.assert_close(flat, logits, rtol=1e-5, atol=1e-5)
    assert d.residual < 1e-5


@pytest.mark.parametrize("name", ["positional_1d", "pooled_1d", "positional_2d", "pooled_2d"])
def test_decomposition_sums_to_the_logits(name, request):
    model = request.getfixturevalue(name)
    shape = (5, 1, 64) if name.endswith("1d") else (5, 1, 12, 12)
    _check_sums(model, torch.rand(shape, generator=torch.Generator().manual_seed(1)))


def test_decomposition_sums_without_dropout(positional_1d):
    _check_sums(_no_dropout_1d(positional_1d), torch.rand(4, 1, 64))


def test_contributions_are_weight_times_activation(positional_1d, positional_2d):
    for model, x, trunk in [
        (positional_1d, torch.rand(3, 1, 64), positional_1d[:3]),
        (positional_2d, torch.rand(3, 1, 12, 12), positional_2d[:3]),
    ]:
        with torch.no_grad():
            fmap = trunk(x)  # (N, C, *P) by hand
        w = model[-1].weight.detach().reshape(-1, *fmap.shape[1:])  # Flatten order
        d = decompose(model, x)
        torch.testing.assert_close(d.activations, fmap)
        torch.testing.assert_close(d.contributions, w[None] * fmap[:, None])


def test_train_mode_model_decomposes_in_eval_and_is_restored(positional_1d):
    model = positional_1d.train()  # Dropout active if interp forgot eval()
    x = torch.rand(4, 1, 64)
    d = decompose(model, x)
    with torch.no_grad():
        expected = positional_1d.eval()(x)
    model.train()
    torch.testing.assert_close(d.logits, expected)
    assert all(m.training for m in model.modules()) and no_hooks_left(model)


def test_max_pooled_contribution_sits_on_the_argmax(pooled_1d):
    x = torch.rand(2, 1, 64)
    d = decompose(pooled_1d, x)
    with torch.no_grad():
        fmap = pooled_1d[:2](x)  # (N, C, L) before the global max pool
    w = pooled_1d[-1].weight.detach()
    for n in range(2):
        for c in range(4):
            j = int(fmap[n, c].argmax())
            expected = w[:, c] * fmap[n, c, j]
            torch.testing.assert_close(d.contributions[n, :, c, j], expected)
            assert int((d.contributions[n, :, c] != 0).sum(-1).max()) <= 1


def test_mean_pooled_contribution_is_spread_evenly(pooled_2d):
    x = torch.rand(2, 1, 12, 12)
    d = decompose(pooled_2d, x)
    with torch.no_grad():
        fmap = pooled_2d[:3](x)  # (N, C, H, W) before AdaptiveAvgPool2d
    w = pooled_2d[-1].weight.detach()
    expected = w[None, :, :, None, None] * fmap[:, None] / 144
    torch.testing.assert_close(d.contributions, expected)


def test_heads_that_are_not_decomposable_are_refused():
    softmax = nn.Sequential(
        nn.Conv1d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 14, 3), nn.Softmax(-1)
    ).eval()  # fmt: skip
    with pytest.raises(InterpError, match="cannot be split exactly"):
        decompose(softmax, torch.rand(2, 1, 16))
    mlp = nn.Sequential(
        nn.Conv1d(1, 2, 3), nn.Flatten(), nn.Linear(28, 5), nn.ReLU(), nn.Linear(5, 3)
    ).eval()  # fmt: skip
    with pytest.raises(InterpError, match="not affine"):  # an MLP head: first-order only
        decompose(mlp, torch.rand(2, 1, 16))
    no_head = nn.Sequential(nn.Conv1d(1, 2, 3), nn.AdaptiveAvgPool1d(1), nn.Flatten()).eval()
    with pytest.raises(InterpError):
        decompose(no_head, torch.rand(2, 1, 16))


def test_wrong_input_shape_is_refused(positional_1d):
    geo = structure(positional_1d, input_shape=(1, 64))
    with pytest.raises(InterpError, match=r"\(N, 1, 64\)"):
        decompose(positional_1d, torch.rand(2, 1, 60), geo)


def test_to_dict_is_strict_json(positional_1d):
    d = decompose(positional_1d, torch.rand(2, 1, 64)).to_dict()
    json.dumps(d, allow_nan=False)
    assert len(d["per_position"][0][0]) == 29 and len(d["per_kernel"][0][0]) == 4


def _brute_force(fmap: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    dims = tuple(range(2, fmap.dim()))
    out = torch.zeros(fmap.shape[0], w.shape[0], *fmap.shape[2:], dtype=torch.float64)
    for idx in torch.cartesian_prod(*[torch.arange(n) for n in fmap.shape[2:]]).reshape(
        -1, len(dims)
    ):
        s = tuple(int(v) for v in idx)
        rolled = torch.roll(fmap.double(), s, dims)  # content moves towards higher indices
        score = (w.double()[None] * rolled[:, None]).flatten(2).sum(2) + b.double()
        out[(slice(None), slice(None), *s)] = score
    return out


@pytest.mark.parametrize("shape", [(2, 3, 17), (1, 2, 5, 7)])
def test_all_shift_scores_equal_brute_force(shape):
    gen = torch.Generator().manual_seed(0)
    fmap = torch.rand(shape, generator=gen)
    w = torch.randn(4, *shape[1:], generator=gen)
    b = torch.randn(4, generator=gen)
    fast = all_shift_scores(fmap, w, b)
    torch.testing.assert_close(fast, _brute_force(fmap, w, b), rtol=1e-10, atol=1e-10)
    # Shift 0 is the head itself; a negative shift -s sits at index P - s.
    head = (w.double()[None] * fmap.double()[:, None]).flatten(2).sum(2) + b.double()
    torch.testing.assert_close(fast[(..., *(0,) * (len(shape) - 2))], head)
    dims = tuple(range(2, len(shape)))
    back = torch.roll(fmap.double(), (-3,) * len(dims), dims)
    head_back = (w.double()[None] * back[:, None]).flatten(2).sum(2) + b.double()
    torch.testing.assert_close(fast[(..., *(s - 3 for s in shape[2:]))], head_back)


def test_all_shift_scores_at_zero_are_the_model_logits(positional_1d):
    x = torch.rand(3, 1, 64)
    d = decompose(positional_1d, x)
    w = positional_1d[-1].weight.detach().reshape(3, 4, 29)
    scores = all_shift_scores(d.activations, w, positional_1d[-1].bias.detach())
    torch.testing.assert_close(scores[..., 0], d.logits.double(), rtol=1e-5, atol=1e-6)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 2), c=st.integers(1, 3), p=st.integers(1, 12), k=st.integers(1, 3),
       seed=st.integers(0, 1000))  # fmt: skip
def test_all_shift_scores_property(n, c, p, k, seed):
    gen = torch.Generator().manual_seed(seed)
    fmap, w, b = (torch.randn(n, c, p, generator=gen), torch.randn(k, c, p, generator=gen),
                  torch.randn(k, generator=gen))  # fmt: skip
    torch.testing.assert_close(all_shift_scores(fmap, w, b), _brute_force(fmap, w, b),
                               rtol=1e-9, atol=1e-9)  # fmt: skip


def test_all_shift_scores_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="must be"):
        all_shift_scores(torch.rand(1, 2, 5), torch.rand(3, 2, 5), torch.rand(2))
