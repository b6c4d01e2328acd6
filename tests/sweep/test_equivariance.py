"""Per-layer equivariance: exact laws on circular stacks, the interior against brute force,
first breaks and aliasing on the shared tiny models."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import _seeded, no_hooks_left
from torch import nn

from interp.errors import InterpError
from interp.geometry.core import strided_layers, structure
from interp.shifts import shift
from interp.sweep.per_layer import equivariance, interior


def circular_1d() -> nn.Sequential:
    return _seeded(
        nn.Sequential(
            nn.Conv1d(1, 3, 5, padding=2, padding_mode="circular"),
            nn.ReLU(),
            nn.Conv1d(3, 2, 3, padding=1, padding_mode="circular"),
        ),
        5,
    )


def pooled_strided() -> nn.Sequential:
    """Conv -> ReLU -> MaxPool(2) -> Conv -> ReLU -> global average -> Linear."""
    return _seeded(
        nn.Sequential(
            nn.Conv1d(1, 4, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Conv1d(4, 4, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool1d(1),
            nn.Flatten(),
            nn.Linear(4, 3),
        ),
        6,
    )


def test_circular_stride_1_stack_is_exactly_equivariant_in_roll_mode():
    x = torch.randn(3, 1, 40, generator=torch.Generator().manual_seed(0))
    eq = equivariance(circular_1d(), x, [-17, -1, 0, 3, 22])
    for lay in eq.layers:
        assert lay.positions and lay.error < 1e-6 and lay.interior_error < 1e-6
        assert lay.aliasing_error is None  # stride 1: every shift is a multiple
    assert eq.first_break is None and eq.aliasing_layers == ()


def test_circular_2d_stack_is_exactly_equivariant():
    model = _seeded(
        nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="circular"), nn.Tanh()), 7
    )
    x = torch.randn(2, 1, 9, 11)
    eq = equivariance(model, x, [(0, 0), (2, -3), (-5, 6)])
    assert all(lay.error < 1e-6 for lay in eq.layers)


@pytest.mark.parametrize("mode", ["roll", "edge"])
def test_interior_is_where_equality_holds_for_a_generic_input(mode):
    # No ReLU or max: every position whose receptive field meets padding or wrapped
    # content differs for a random input, so equality marks exactly the interior.
    model = _seeded(
        nn.Sequential(
            nn.Conv1d(1, 2, 5, padding=2),
            nn.AvgPool1d(3, 2, padding=1),
            nn.Conv1d(2, 2, 3, padding=1, stride=2),
        ),
        8,
    )
    length = 41
    x = torch.randn(1, 1, length, generator=torch.Generator().manual_seed(1))
    geo = structure(model, x)
    for s in (-8, -4, 4, 12):  # (s = 0 is equal everywhere, trivially)
        with torch.no_grad():
            feats, moved = [x], [shift(x, s, mode)]
            for layer in model:
                feats.append(layer(feats[-1]))
                moved.append(layer(moved[-1]))
        for lay, a, b in zip(geo.layers, feats[1:], moved[1:], strict=True):
            q = s // lay.stride[0]
            p = a.shape[-1]
            equal = torch.zeros(p, dtype=torch.bool)
            for j in range(p):
                if 0 <= j - q < p:
                    equal[j] = torch.allclose(b[0, :, j], a[0, :, j - q], atol=1e-6)
            assert torch.equal(interior(lay, (length,), (s,), (q,)), equal), (s, lay.name)


def test_positional_model_breaks_at_its_linear(positional_1d):
    x = torch.randn(4, 1, 64, generator=torch.Generator().manual_seed(2))
    shifts = [-6, -2, 2, 4, 3]
    eq = equivariance(positional_1d, x, shifts)
    assert eq.first_break == "5"
    for name in ("0", "1", "2", "3", "4"):
        assert eq.layer(name).interior_error < 1e-6 and not eq.layer(name).breaks
    assert "positional head" in eq.findings[0]
    # oracle: the Linear's invariance error from plain torch.roll and the model
    with torch.no_grad():
        base = positional_1d.eval()(x).double()
        moved = [positional_1d(torch.roll(x, s, -1)).double() for s in shifts if s % 2 == 0]
    diff = sum(float(((m - base) ** 2).sum()) for m in moved)
    den = max(sum(float((m**2).sum()) for m in moved), len(moved) * float((base**2).sum()))
    assert eq.layer("5").invariance_error == pytest.approx((diff / den) ** 0.5, rel=1e-6)


def test_positional_2d_breaks_at_its_linear(positional_2d):
    x = torch.randn(3, 1, 12, 12)
    eq = equivariance(positional_2d, x, [(0, 2), (-2, 2), (1, 1)], mode="zero")
    assert eq.first_break == "4"
    assert eq.layer("0").interior_error < 1e-6 and eq.layer("2").aliasing


def test_strided_pooling_aliases_odd_shifts_only():
    model, x = pooled_strided(), torch.randn(4, 1, 48, generator=torch.Generator().manual_seed(3))
    even = equivariance(model, x, [-4, -2, 2, 6])
    assert even.first_break is None and even.aliasing_layers == ()
    assert all(lay.aliasing_error is None for lay in even.layers)
    assert all(lay.interior_error < 1e-6 for lay in even.layers if lay.positions)
    assert "not measured" in even.findings[-1]
    odd = equivariance(model, x, [-3, 1, 5])
    assert odd.layer("2").aliasing_error > 1e-2 and odd.aliasing_layers == ("2",)
    assert odd.layer("0").aliasing_error is None  # before the stride: no aliasing
    assert odd.first_break is None
    assert "Anti-aliased pooling" in odd.findings[-1]


def test_result_is_strict_json_and_model_is_unchanged(positional_1d):
    positional_1d.train()
    before = {k: v.clone() for k, v in positional_1d.state_dict().items()}
    eq = equivariance(positional_1d, torch.randn(2, 1, 64), [1, 2], batch_size=1)
    blob = json.loads(json.dumps(eq.to_dict(), allow_nan=False))
    assert blob["first_break"] == "5" and len(blob["layers"]) == 6
    assert positional_1d.training and no_hooks_left(positional_1d)
    assert all(torch.equal(v, before[k]) for k, v in positional_1d.state_dict().items())


def test_model_restored_when_the_forward_raises(positional_1d):
    calls = {"n": 0}

    def boom(_m, _inputs):
        calls["n"] += 1
        if calls["n"] > 2:
            raise RuntimeError("boom")

    handle = positional_1d[5].register_forward_pre_hook(boom)
    positional_1d.train()
    with pytest.raises((RuntimeError, InterpError), match="boom"):  # graph.run names the input
        equivariance(positional_1d, torch.randn(2, 1, 64), [1, 2])
    handle.remove()
    assert positional_1d.training and no_hooks_left(positional_1d)


def test_bad_inputs(positional_1d):
    with pytest.raises(InterpError, match="`x` must be"):
        equivariance(positional_1d, torch.randn(64), [1])
    with pytest.raises(InterpError, match="`mode`"):
        equivariance(positional_1d, torch.randn(1, 1, 64), [1], mode="wrap")
    with pytest.raises(InterpError, match="`layer` 'nope'"):
        equivariance(positional_1d, torch.randn(1, 1, 64), [1]).layer("nope")


def test_equivariance_chart_marks_the_first_break(positional_1d):
    eq = equivariance(positional_1d, torch.randn(2, 1, 64), [-2, 1, 2])
    fig = eq.plot()
    ticks = fig.axes[0].get_xticklabels()
    bold = [t.get_text() for t in ticks if t.get_fontweight() == "bold"]
    assert bold == ["5\nLinear"] and fig.axes[0].get_yscale() == "log"


# --- shipped models (trained/) -----------------------------------------------------------


@pytest.mark.slow
def test_seed_cnn_breaks_at_its_linear_and_seed_gap_only_aliases():
    from pathlib import Path

    from interp.loading.core import load

    trained = Path(__file__).resolve().parents[2] / "trained"
    model, info = load(trained / "seed_cnn.pt")
    x, _ = info.recipe.sample(8, seed=11)
    geo = structure(model, x)
    eq = equivariance(model, x, [-500, -250, 250, 500, 251], structure=geo)
    assert eq.first_break == geo.head.linear
    assert all(lay.interior_error < 1e-4 for lay in eq.layers if lay.positions)
    gap, _ = load(trained / "seed_gap.pt")
    eq = equivariance(gap, x, [-250, 250, -3, 251])
    assert eq.first_break is None
    assert eq.aliasing_layers == tuple(lay.name for lay in strided_layers(structure(gap, x)))


@pytest.mark.slow
def test_shapes_cnn_breaks_at_its_linear_and_shapes_gap_aliases_at_both_pools():
    from pathlib import Path

    from interp.loading.core import load

    trained = Path(__file__).resolve().parents[2] / "trained"
    shifts = [(0, 4), (4, -4), (1, 0), (2, 3)]
    model, info = load(trained / "shapes_cnn.pt")
    x, _ = info.recipe.sample(8, seed=13)
    eq = equivariance(model, x, shifts)
    assert eq.first_break == structure(model, x).head.linear
    gap, _ = load(trained / "shapes_gap.pt")
    eq = equivariance(gap, x, shifts)
    strided = tuple(lay.name for lay in strided_layers(structure(gap, x)))
    assert eq.first_break is None and len(strided) == 2 and eq.aliasing_layers == strided


def test_an_exact_zero_interior_error_is_said_in_words():
    """Integer weights and inputs: every sum is exact in float32, so a circular conv stack
    commutes with roll bit for bit (checked here by a plain loop), and the sentence says
    'no interior error' instead of printing 0.0e+00."""
    conv = nn.Conv1d(1, 2, 3, padding=1, padding_mode="circular", bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[1.0, -2.0, 1.0]], [[0.0, 3.0, -1.0]]]))
    model = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveMaxPool1d(1), nn.Flatten(), nn.Linear(2, 3))
    x = torch.randint(-4, 5, (3, 1, 24), generator=torch.Generator().manual_seed(1)).float()
    shifts = [-5, 0, 2, 7]
    with torch.no_grad():
        for s in shifts:  # the law, by hand: conv(roll(x)) == roll(conv(x)) exactly
            assert torch.equal(conv(torch.roll(x, s, -1)), torch.roll(conv(x), s, -1))
            assert torch.equal(model(torch.roll(x, s, -1)), model(x))  # max pool: invariant
    eq = equivariance(model, x, shifts)
    text = " ".join(eq.findings)
    assert "no interior error: exactly equivariant away from the borders" in text
    assert "0.0e+00" not in text and "does not change at all" in text
