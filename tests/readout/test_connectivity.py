"""Connectivity: weight maps, training footprint, untrained positions, pooled heads.

Oracles: Linear weights that encode their own (kernel, position) index; an
identity conv whose feature map is the input, so the class-mean activation and
the footprint can be computed by hand; PyTorch's own init range.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import no_hooks_left
from torch import nn

from interp.errors import InterpError
from interp.geometry.core import structure
from interp.readout.core import connectivity, decompose, footprint


def _indexed(model: nn.Sequential) -> nn.Sequential:
    """Give the last Linear weights W[k, i] = i + 1000 k: each knows its flat index."""
    lin = model[-1]
    with torch.no_grad():
        k, f = lin.weight.shape
        lin.weight.copy_(torch.arange(f).float()[None] + 1000.0 * torch.arange(k).float()[:, None])
    return model


def test_weight_map_follows_flatten_order_1d(positional_1d):
    model = _indexed(positional_1d)
    conn = connectivity(model, structure(model, input_shape=(1, 64)))
    c_n, p_n = 4, 29
    assert conn.weight.shape == (3, c_n, p_n)
    for k, c, p in [(0, 0, 0), (0, 1, 0), (1, 0, 28), (2, 3, 17)]:
        assert conn.weight[k, c, p] == c * p_n + p + 1000 * k


def test_weight_map_follows_flatten_order_2d(positional_2d):
    model = _indexed(positional_2d)
    conn = connectivity(model, structure(model, input_shape=(1, 12, 12)))
    assert conn.weight.shape == (4, 3, 6, 6)
    for k, c, yy, xx in [(0, 0, 0, 1), (1, 2, 5, 0), (3, 1, 3, 4)]:
        assert conn.weight[k, c, yy, xx] == (c * 6 + yy) * 6 + xx + 1000 * k


class _Transposed(nn.Module):
    """Flattens (N, L, C) instead of (N, C, L): the Linear does not read Flatten order."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 3, 5)
        self.fc = nn.Linear(3 * 12, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).transpose(1, 2).flatten(1))


def test_head_that_flattens_positions_first_is_mapped_by_its_jacobian():
    # The Linear reads (position, kernel) order: weight (k, c, j) is fc.weight[k, j * 3 + c].
    model = _Transposed().eval()
    geo = structure(model, input_shape=(1, 16))
    conn = connectivity(model, geo)
    w = model.fc.weight.detach()
    assert conn.order == "exact" and conn.weight.shape == (2, 3, 12)
    for k, c, j in [(0, 0, 0), (1, 2, 11), (0, 1, 5)]:
        assert conn.weight[k, c, j] == w[k, j * 3 + c]


def _identity_model(length: int, classes: int = 2) -> nn.Sequential:
    """Conv1d(1, 1, 1) with weight 1 and no bias: the feature map is the input."""
    conv = nn.Conv1d(1, 1, 1, bias=False)
    lin = nn.Linear(length, classes)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        lin.bias.zero_()
    return nn.Sequential(conv, nn.Flatten(), lin).eval()


def _bump_data(length: int, n: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 0: a flat bump at 10..19, class 1 at 40..49, with varying heights; zero floor."""
    y = torch.arange(n) % 2
    x = torch.zeros(n, 1, length)
    height = torch.linspace(1.0, 2.0, n)
    for i in range(n):
        lo = 10 if y[i] == 0 else 40
        x[i, 0, lo : lo + 10] = height[i]
    return x, y


def test_footprint_by_hand_and_streamed_in_bounded_batches():
    model = _identity_model(64)
    x, y = _bump_data(64)
    geo = structure(model, x[:1])
    seen: list[int] = []
    model[0].register_forward_pre_hook(lambda _m, a: seen.append(a[0].shape[0]))
    fp = footprint(model, x, y, geo, batch_size=4)
    model[0]._forward_pre_hooks.clear()
    assert max(seen) <= 4 and sum(seen) == len(x)
    for k in range(2):  # the map is the input: the class mean is the data mean
        torch.testing.assert_close(fp.mean[k, 0], x[y == k, 0].mean(0))
    # Equal mass on 10 positions: the central 95% runs from the first to the last.
    assert fp.lo == ((10,), (40,)) and fp.hi == ((19,), (49,))
    assert fp.mask[0].nonzero().flatten().tolist() == list(range(10, 20))
    assert fp.counts == (6, 6)
    again = footprint(model, x, y, structure(model, x[:1]), batch_size=100)
    torch.testing.assert_close(again.mean, fp.mean)


def test_footprint_mass_inside_by_hand():
    model = _identity_model(64)
    with torch.no_grad():
        model[2].weight.fill_(0.1)
        model[2].weight[0, 10:20] = 1.0  # class 0 listens on its bump
    x, y = _bump_data(64)
    conn = connectivity(model, x=x, y=y, classes=["left", "right"])
    c0, c1 = conn.per_class
    assert c0.footprint == ((10,), (19,))
    assert c0.mass_inside == pytest.approx(10 * 1.0 / (10 * 1.0 + 54 * 0.1))
    assert c1.mass_inside == pytest.approx(10 / 64)
    assert c0.area_inside == pytest.approx(10 / 64)
    bound = 1 / 64**0.5  # PyTorch's default init range for fan_in 64
    assert conn.init_bound == pytest.approx(bound)
    assert c0.outside_in_init == 1.0  # 0.1 < 0.125
    assert c0.peak_position == (10,)
    assert c0.centre_of_mass == pytest.approx((14.5,))
    d = conn.to_dict()
    assert d["per_class"][0]["footprint"] == [10, 19]
    assert d["per_class"][0]["mass_inside"] == pytest.approx(c0.mass_inside)
    text = " ".join(conn.sentences())
    assert f"holds {c0.mass_inside:.0%} of its weight mass" in text
    assert "shaped only by background" in text


def test_footprint_2d_is_a_box(positional_2d):
    x = torch.zeros(8, 1, 12, 12)
    y = torch.tensor([0, 1, 2, 3] * 2)
    x[y == 0, :, 2:6, 2:6] = 1.0  # top-left square -> map rows/cols around 1..3
    fp = footprint(positional_2d, x, y, structure(positional_2d, x[:1]))
    lo, hi = fp.lo[0], fp.hi[0]
    assert lo is not None and hi is not None and len(lo) == 2
    assert 0 <= lo[0] <= hi[0] <= 3 and 0 <= lo[1] <= hi[1] <= 3
    assert fp.mask[0].sum() == (hi[0] - lo[0] + 1) * (hi[1] - lo[1] + 1)
    conn = connectivity(positional_2d, x=x, y=y)
    entry = conn.to_dict()["per_class"][0]
    assert len(entry["footprint"][0]) == 2 and len(entry["peak_position"]) == 2
    json.dumps(conn.to_dict(), allow_nan=False)


def test_class_without_samples_has_no_footprint(positional_1d):
    x = torch.rand(6, 1, 64)
    y = torch.tensor([0, 1, 0, 1, 0, 1])  # class 2 absent
    conn = connectivity(positional_1d, x=x, y=y)
    assert conn.footprint is not None and conn.footprint.counts[2] == 0
    assert conn.per_class[2].footprint is None and conn.per_class[2].mass_inside is None
    assert conn.to_dict()["per_class"][2]["footprint"] is None


def test_untrained_positions_without_data():
    model = _identity_model(40, classes=1)
    bound = 1 / 40**0.5
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)
        w = (torch.rand(1, 40, generator=gen) * 2 - 1) * bound * 0.99  # inside init range
        w[0, 10:25] = 3 * bound  # trained positions
        model[2].weight.copy_(w)
    conn = connectivity(model, structure(model, input_shape=(1, 40)))
    c = conn.per_class[0]
    assert c.untrained == pytest.approx(25 / 40)
    assert c.untrained_runs == ((0, 9), (25, 39))
    assert c.footprint is None and c.mass_inside is None
    assert "look untrained" in " ".join(conn.sentences())


def test_first_conv_kernels_and_mean_contribution_ranking(positional_1d):
    x = torch.rand(10, 1, 64)
    y = torch.arange(10) % 3
    conn = connectivity(positional_1d, x=x, y=y)
    torch.testing.assert_close(conn.kernels, positional_1d[0].weight.detach())
    assert conn.top_kernels_by == "mean contribution"
    # Oracle: average each class's per-kernel contributions over its samples.
    dec = decompose(positional_1d, x)
    for k in range(3):
        mean_c = dec.per_kernel[y == k, k].mean(0)  # (C,)
        c = conn.per_class[k]
        assert list(c.top_kernels) == torch.argsort(mean_c, descending=True).tolist()
        expected = mean_c[list(c.top_kernels)].float()
        torch.testing.assert_close(torch.tensor(c.kernel_scores), expected, rtol=1e-5, atol=1e-6)


def test_kernels_are_not_claimed_after_two_convs():
    model = nn.Sequential(
        nn.Conv1d(1, 2, 3), nn.ReLU(), nn.Conv1d(2, 3, 3), nn.Flatten(), nn.Linear(3 * 12, 2)
    ).eval()  # fmt: skip
    conn = connectivity(model, structure(model, input_shape=(1, 16)))
    assert conn.kernels is None and "2 conv layers" in conn.kernels_note
    assert conn.plot_kernels(0) is not None


def test_pooled_head_has_one_weight_per_kernel(pooled_1d):
    conn = connectivity(pooled_1d, structure(pooled_1d, input_shape=(1, 64)))
    assert conn.kind == "pooled" and conn.weight.shape == (3, 4)
    torch.testing.assert_close(conn.weight, pooled_1d[-1].weight.detach())
    d = conn.to_dict()
    assert d["kind"] == "pooled" and d["positions"] is None
    assert "peak_position" not in d["per_class"][0]
    assert d["per_class"][0]["weights"] == pytest.approx(pooled_1d[-1].weight[0].tolist())
    assert "one weight per kernel, shared by every position" in conn.sentences()[0]
    best = int(pooled_1d[-1].weight[1].argmax())
    assert conn.per_class[1].top_kernels[0] == best
    json.dumps(d, allow_nan=False)
    with pytest.raises(ValueError, match="pooled"):
        _ = conn.profile


def test_model_unchanged_even_when_the_forward_fails(positional_1d):
    model = positional_1d.train()
    model[-1].weight.grad = torch.ones_like(model[-1].weight)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.rand(6, 1, 64), torch.arange(6) % 3
    connectivity(model, x=x, y=y, batch_size=2)

    def boom(_m, a):
        if torch.isnan(a[0]).any():
            raise RuntimeError("nan")

    model[2].register_forward_pre_hook(boom)
    x[5, 0, 3] = float("nan")
    with pytest.raises((RuntimeError, InterpError), match="nan"):  # graph.run names the input
        footprint(model, x, y, structure(model, x[:1]), batch_size=2)
    model[2]._forward_pre_hooks.clear()
    assert no_hooks_left(model) and model.training and all(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(model[-1].weight.grad, torch.ones_like(model[-1].weight))
    assert all(p.requires_grad for p in model.parameters())


def test_bad_data_is_refused_with_shapes(positional_1d):
    geo = structure(positional_1d, input_shape=(1, 64))
    with pytest.raises(InterpError, match=r"`x` has shape \(4, 1, 32\)"):
        connectivity(positional_1d, geo, x=torch.rand(4, 1, 32), y=torch.zeros(4, dtype=torch.long))
    with pytest.raises(InterpError, match=r"labels 0\.\.5"):
        connectivity(positional_1d, geo, x=torch.rand(4, 1, 64), y=torch.tensor([0, 1, 2, 5]))
    with pytest.raises(ValueError, match="both"):
        connectivity(positional_1d, geo, x=torch.rand(4, 1, 64))
