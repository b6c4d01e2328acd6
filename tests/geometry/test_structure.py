"""Structure: receptive fields, strides and head kinds against hand-computed values."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from interp.errors import InterpError
from interp.geometry.core import explain, infer_input_shape, structure


def _empirical_rf_1d(model: nn.Module, length: int, j: int) -> tuple[int, int]:
    """Oracle: input positions that reach output position j, found by backprop."""
    x = torch.zeros(1, 1, length, requires_grad=True)
    out = model(x)
    out[0, :, j].sum().backward()
    assert x.grad is not None
    idx = torch.nonzero(x.grad[0, 0]).flatten()
    return int(idx.min()), int(idx.max())


def _positive(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.5)
    return model


def test_receptive_field_matches_backprop_oracle_1d():
    model = _positive(
        nn.Sequential(
            nn.Conv1d(1, 2, 5, padding=2),
            nn.AvgPool1d(2, 2),
            nn.Conv1d(2, 2, 3, dilation=2, padding=2),
            nn.AvgPool1d(3, 3, padding=1),
        )
    )
    geo = structure(model, input_shape=(1, 120))
    last = geo.layers[-1]
    # Hand-computed: rf 5 -> 6 -> 6+(3-1)*2*2=14 -> 14+(3-1)*2=18; stride 1,2,2,6;
    # offset 2 -> 2 -> 2+2*2=6 -> 6+1*2=8.
    assert [lay.receptive_field for lay in geo.layers] == [(5,), (6,), (14,), (18,)]
    assert [lay.stride for lay in geo.layers] == [(1,), (2,), (2,), (6,)]
    assert [lay.offset for lay in geo.layers] == [(2,), (2,), (6,), (8,)]
    for j in (3, 7):  # interior positions, away from padding
        lo, hi = _empirical_rf_1d(model, 120, j)
        assert lo == j * last.stride[0] - last.offset[0]
        assert hi - lo + 1 == last.receptive_field[0]


def test_receptive_field_2d_with_stride_and_padding():
    model = nn.Sequential(
        nn.Conv2d(1, 2, (3, 5), stride=(1, 2), padding=(1, 2)),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )
    geo = structure(model, input_shape=(1, 16, 20))
    conv, _, pool = geo.layers
    assert conv.receptive_field == (3, 5) and conv.stride == (1, 2) and conv.offset == (1, 2)
    # pool k=2 s=2 on jumps (1, 2): rf (3+1, 5+2), stride (2, 4), offset unchanged
    assert pool.receptive_field == (4, 7) and pool.stride == (2, 4) and pool.offset == (1, 2)
    assert pool.output_shape == (2, 8, 5)


def test_seed_case_positional_head_and_inferred_length():
    model = nn.Sequential(
        nn.Conv1d(1, 64, kernel_size=128, padding=1), nn.ReLU(), nn.MaxPool1d(16, 2),
        nn.Dropout(0.25), nn.Flatten(), nn.Linear(257664, 4),
    )  # fmt: skip
    shape = infer_input_shape(model)
    assert shape in ((1, 8192), (1, 8191))
    geo = structure(model, input_shape=shape)
    assert geo.head.kind == "positional"
    assert (geo.head.channels, geo.head.positions) == (64, (4026,))
    assert geo.head.linear == "5" and geo.head.reads == "2" and geo.head.exact
    assert geo.first_break() is not None and geo.first_break().name == "5"
    assert "cannot be translation invariant" in explain(geo)[0]


def test_pooled_heads_avg_and_max(pooled_1d):
    geo = structure(pooled_1d, input_shape=(1, 64))
    assert geo.head.kind == "pooled" and geo.head.pooling == "max" and geo.head.exact
    assert geo.head.reads == "1" and geo.head.positions == (64,)
    avg = nn.Sequential(nn.Conv1d(1, 3, 3), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
                        nn.Linear(3, 2))  # fmt: skip
    geo = structure(avg, input_shape=(1, 30))
    assert geo.head.kind == "pooled" and geo.head.pooling == "mean"
    assert geo.global_pooling and "invariant by construction" in explain(geo)[0]


class _FunctionalMean(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 5)
        self.act = nn.ReLU()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act(self.conv(x)).mean(-1))


class _FunctionalFlatten(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.fc = nn.Linear(2 * 6 * 6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.conv(x), 1))


def test_functional_mean_in_custom_forward_is_pooled():
    geo = structure(_FunctionalMean(), input_shape=(1, 40))
    assert geo.head.kind == "pooled" and geo.head.pooling == "mean" and geo.head.reads == "act"


def test_functional_flatten_2d_is_positional():
    geo = structure(_FunctionalFlatten(), input_shape=(1, 8, 8))
    assert geo.head.kind == "positional" and geo.head.positions == (6, 6) and geo.head.exact
    assert infer_input_shape(_FunctionalFlatten()) == (1, 8, 8)


def test_mlp_head_is_positional_but_not_exact():
    model = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 18, 5), nn.ReLU(),
                          nn.Linear(5, 2))  # fmt: skip
    geo = structure(model, input_shape=(1, 20))
    # the classifier is the Linear whose output becomes the logits; the break is the first
    assert geo.head.kind == "positional" and geo.head.linear == "4" and not geo.head.exact
    assert geo.head.breaks == "2" and not geo.head.affine


def test_structure_leaves_model_unchanged(positional_1d):
    positional_1d.train()
    before = {k: v.clone() for k, v in positional_1d.state_dict().items()}
    structure(positional_1d, input_shape=(1, 64))
    assert positional_1d.training
    assert all(torch.equal(before[k], v) for k, v in positional_1d.state_dict().items())
    assert all(not m._forward_hooks for m in positional_1d.modules())


def test_wrong_input_shape_is_a_clear_error(positional_1d):
    with pytest.raises(InterpError, match="fails on an input of shape"):
        structure(positional_1d, input_shape=(1, 50))


def test_no_conv_cannot_infer():
    with pytest.raises(InterpError, match="input-shape"):
        infer_input_shape(nn.Sequential(nn.Linear(3, 2)))


def test_pooled_head_length_cannot_be_inferred(pooled_1d):
    with pytest.raises(InterpError, match="pools positions away"):
        infer_input_shape(pooled_1d)
