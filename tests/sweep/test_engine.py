"""The exact fast sweep engine against brute force: one model call per shift.

The oracle shifts with ``torch.roll`` (roll) or a per-index Python loop (zero, edge),
following DESIGN.md, and calls the model on each shifted batch.
"""

from __future__ import annotations

import copy
import itertools
from pathlib import Path

import pytest
import torch
from _rounding import U32, U64, fft_factor, magnitude_model, periodic_head_bound
from conftest import no_hooks_left
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn

import interp
from interp._xcorr import xcorr_periodic
from interp.geometry.core import structure
from interp.sweep.engine.core import Unsupported, fast_logits, periodic_length
from interp.sweep.engine.plan import levels, make_plan, margins

MODES = ("roll", "zero", "edge")
TRAINED = Path(__file__).resolve().parents[2] / "trained"


def _shift_axis(x: torch.Tensor, s: int, mode: str, axis: int) -> torch.Tensor:
    if mode == "roll":
        return torch.roll(x, s, axis)
    n = x.shape[axis]
    out = torch.zeros_like(x)
    for i in range(n):  # out[i] = x[i - s], vacated positions 0 (zero) or the edge (edge)
        j = i - s
        if mode == "edge":
            j = min(max(j, 0), n - 1)
        if 0 <= j < n:
            out.select(axis, i).copy_(x.select(axis, j))
    return out


def brute(model: nn.Module, x: torch.Tensor, shifts: list, mode: str) -> torch.Tensor:
    """(N, S, K): the model on every shifted copy of ``x``, one call per shift."""
    rows = []
    with torch.no_grad():
        for s in shifts:
            xs = x
            for axis, v in enumerate(s if isinstance(s, tuple) else (s,)):
                xs = _shift_axis(xs, v, mode, 2 + axis)
            rows.append(model(xs))
    return torch.stack(rows, 1)


def assert_exact(fast: torch.Tensor, model: nn.Module, x: torch.Tensor, shifts: list,
                 mode: str) -> None:  # fmt: skip
    """``fast`` and float32 brute force both within the float32 rounding bound of float64."""
    slow = brute(model, x, shifts, mode)
    assert fast.shape == slow.shape and fast.dtype == torch.float32
    scale = float(slow.abs().max())
    assert float((fast - slow).abs().max()) <= 1e-4 * scale + 1e-6, (fast - slow).abs().max()
    exact = brute(copy.deepcopy(model).double(), x.double(), shifts, mode)
    mag_model, factor = magnitude_model(model, x)
    mag = brute(mag_model, x.double().abs(), shifts, mode)  # (N, S, K) sum|terms|
    # The fast head sums in float64 from cumulative sums over the whole map: its rounding
    # is relative to the largest magnitude times the map length, not to this logit's terms.
    bound = factor * (U32 * mag + U64 * x[0].numel() * float(mag.max()) if mag.numel() else 0.0)
    # Roll on 1D: the fast head correlates one period in float32 spectra (a bound of norms,
    # not of this logit's terms).
    spectra = periodic_head_bound(model, x) if mode == "roll" else 0.0
    for name, got, extra in (("fast", fast, spectra), ("brute force", slow, 0.0)):
        err = (got.double() - exact).abs()
        assert bool((err <= bound + extra).all()), (name, float(err.max()), float(bound.max()))
    # Same predicted class, except between classes tied to within the rounding bound.
    top2 = slow.topk(min(2, slow.shape[-1]), -1).values
    clear = (top2[..., 0] - top2[..., -1]).double() > 2 * (bound + spectra).amax(-1)
    assert torch.equal(fast.argmax(-1)[clear], slow.argmax(-1)[clear])


def _seeded(model: nn.Module, x: torch.Tensor, seed: int) -> nn.Module:
    """Random weights and BatchNorm statistics (so BatchNorm is not the identity)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model(x)  # materialise LazyLinear
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.4)
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model.eval()


def _check(model: nn.Module, x: torch.Tensor, shifts: list, mode: str) -> None:
    fast = fast_logits(model, structure(model, x), x, shifts, mode)
    assert_exact(fast, model, x, shifts, mode)


def _check_some_engine(model: nn.Module, x: torch.Tensor, shifts: list, mode: str) -> None:
    """The chain engine, or where it does not apply the graph engine, equals brute force.

    A random stack whose last conv covers the whole remaining axis has a positional head that
    is that conv (like an EEG classifier), which the chain plan leaves to the graph engine.
    """
    from interp.sweep.engine.graph import graph_logits

    geo = structure(model, x)
    # A first conv as tall as a short map collapses that axis: no equivariant trunk, no
    # engine (the sweep runs brute force); such a draw tests nothing here.
    assume(geo.head.kind != "unknown")
    try:
        fast = fast_logits(model, geo, x, shifts, mode)
    except Unsupported:
        fast = graph_logits(model, x, shifts, mode, require_gain=False)
    assert_exact(fast, model, x, shifts, mode)


MODELS_1D = {
    "strided_bn_avg": lambda: nn.Sequential(
        nn.Conv1d(2, 4, 5, stride=2, padding=2), nn.BatchNorm1d(4), nn.ReLU(),
        nn.Conv1d(4, 3, 3, padding=1, dilation=2),
        nn.AvgPool1d(3, 2, padding=1, count_include_pad=False), nn.Flatten(), nn.LazyLinear(3),
    ),
    "same_groups_dilated_max": lambda: nn.Sequential(
        nn.Conv1d(2, 4, 4, padding="same"), nn.GELU(), nn.Conv1d(4, 4, 3, groups=2, padding=2),
        nn.MaxPool1d(3, 2, padding=1, dilation=2), nn.Dropout(0.3), nn.Flatten(), nn.LazyLinear(3),
    ),
    "avg_include_pad": lambda: nn.Sequential(
        nn.Conv1d(2, 3, 3, padding=4), nn.AvgPool1d(4, 2, padding=2), nn.Tanh(), nn.Flatten(),
        nn.LazyLinear(2),
    ),
    "pooled_mean_stride3": lambda: nn.Sequential(
        nn.Conv1d(2, 4, 5, padding=2, stride=3), nn.ReLU(), nn.Conv1d(4, 4, 3, padding=1),
        nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(4, 3),
    ),
}  # fmt: skip
SHIFTS_1D = [0, 1, -1, 7, -13, 31, 64, 100, -150, 641]  # beyond the length of 64 too


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(MODELS_1D))
def test_1d_stacks_equal_brute_force(name: str, mode: str) -> None:
    x = torch.randn(3, 2, 64, generator=torch.Generator().manual_seed(1))
    _check(_seeded(MODELS_1D[name](), x, 7), x, SHIFTS_1D, mode)


# Global pools (max and mean) followed by more than one Linear: the engine pools every
# shift's map, then runs the model's own layers after the pool.
POOLED_NOT_LAST = {
    "mean_mlp": lambda: nn.Sequential(
        nn.Conv1d(2, 6, 5, padding=2), nn.BatchNorm1d(6), nn.ReLU(), nn.Conv1d(6, 4, 3, padding=1),
        nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(4, 5), nn.ReLU(),
        nn.Linear(5, 3),
    ),
    "max_tanh_mlp": lambda: nn.Sequential(
        nn.Conv1d(2, 4, 4, padding="same"), nn.ReLU(), nn.MaxPool1d(3, 2, padding=1),
        nn.AdaptiveMaxPool1d(1), nn.Flatten(), nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3),
    ),
    "mean_linear_linear": lambda: nn.Sequential(
        nn.Conv1d(2, 4, 5, stride=2, padding=2), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
        nn.Linear(4, 6), nn.Linear(6, 3),
    ),
    "max_2d_mlp": lambda: nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten(),
        nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3),
    ),
    "mean_2d_mlp": lambda: nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, stride=2), nn.BatchNorm2d(4), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3),
    ),
}  # fmt: skip


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(POOLED_NOT_LAST))
def test_pooled_heads_before_more_layers_equal_brute_force(name: str, mode: str) -> None:
    two_d = "2d" in name
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(3, 2, *((9, 10) if two_d else (40,)), generator=gen)
    shifts = [(0, 0), (1, -2), (4, 7), (-9, 3), (12, -11)] if two_d else SHIFTS_1D
    model = _seeded(POOLED_NOT_LAST[name](), x, 7)
    assert make_plan(model, structure(model, x))[1].after is not None  # the path under test
    _check(model, x, shifts, mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("how", ["strips", "taps", "taps_then_strips", "strips_then_taps"])
@pytest.mark.parametrize("name", sorted(MODELS_1D))
def test_1d_bands_by_strips_and_by_taps_equal_brute_force(name: str, how: str, mode: str,
                                                          monkeypatch) -> None:  # fmt: skip
    # The cost estimate picks one per layer; each way alone, and the two alternating
    # (a tap layer computes only the band outputs its reader needs), must be exact.
    import interp.sweep.engine.core as engine_core

    def pick(ops, geo, plans):
        windowed = [i for i, op in enumerate(ops) if op.windowed]
        first = {"strips": True, "taps": False, "taps_then_strips": False,
                 "strips_then_taps": True}[how]  # fmt: skip
        alternate = "then" in how
        return [i in windowed and (first if not alternate or windowed.index(i) % 2 == 0
                                   else not first) for i in range(len(ops))]  # fmt: skip

    monkeypatch.setattr(engine_core, "strip_layers", pick)
    x = torch.randn(3, 2, 64, generator=torch.Generator().manual_seed(11))
    model = _seeded(MODELS_1D[name](), x, 2)
    _check(model, x, SHIFTS_1D, mode)
    pooled = _seeded(POOLED_NOT_LAST["mean_mlp"](), x, 4)
    _check(pooled, x, SHIFTS_1D, mode)


@pytest.mark.parametrize("mode", MODES)
def test_shared_1d_models_equal_brute_force(positional_1d, pooled_1d, hand_set_1d, mode) -> None:
    x = torch.randn(4, 1, 64, generator=torch.Generator().manual_seed(2))
    _check(positional_1d, x, SHIFTS_1D, mode)
    _check(pooled_1d, x, SHIFTS_1D, mode)
    _check(hand_set_1d, x[:, :, :6], [-7, -2, 0, 1, 3, 5, 12], mode)


def test_hand_set_model_gives_the_hand_computed_scores(hand_set_1d) -> None:
    # Class 0 reads x[0] + x[1], class 1 reads x[4] + x[5] of the shifted input.
    x = torch.arange(1.0, 7.0).view(1, 1, 6)
    out = fast_logits(hand_set_1d, structure(hand_set_1d, x), x, [0, 1, -2], "zero")
    expected = torch.tensor([[[3.0, 11.0], [1.0, 9.0], [7.0, 0.0]]])
    assert torch.allclose(out, expected, rtol=0, atol=1e-6)  # FFT rounding only


MODELS_2D = {
    "strided_same_max": lambda: nn.Sequential(
        nn.Conv2d(2, 4, (3, 5), stride=(2, 1), padding=(1, 2)), nn.ReLU(),
        nn.Conv2d(4, 3, 3, padding="same"), nn.MaxPool2d(2, padding=1), nn.Flatten(),
        nn.LazyLinear(3),
    ),
    "dilated_avg": lambda: nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=2, dilation=2), nn.BatchNorm2d(3), nn.SiLU(),
        nn.AvgPool2d(3, 2, padding=1, count_include_pad=False), nn.Flatten(), nn.LazyLinear(2),
    ),
    "pooled_max": lambda: nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, stride=2), nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten(),
        nn.Linear(4, 3),
    ),
}  # fmt: skip
SHIFTS_2D = [(0, 0), (1, -1), (-3, 5), (13, 0), (0, -20), (7, 7), (-2, 29)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(MODELS_2D))
def test_2d_stacks_equal_brute_force(name: str, mode: str) -> None:
    x = torch.randn(2, 2, 12, 14, generator=torch.Generator().manual_seed(3))
    _check(_seeded(MODELS_2D[name](), x, 8), x, SHIFTS_2D, mode)


@pytest.mark.parametrize("mode", MODES)
def test_shared_2d_models_equal_brute_force(positional_2d, pooled_2d, mode) -> None:
    x = torch.randn(3, 1, 12, 12, generator=torch.Generator().manual_seed(4))
    _check(positional_2d, x, SHIFTS_2D, mode)
    _check(_seeded(pooled_2d, x, 5), x, SHIFTS_2D, mode)


# Every shift of a span wider than the length (and far beyond it, both signs): in roll mode
# the chain engine then computes one period of the input, not the span.
WIDE_SHIFTS_1D = [*range(-70, 71, 3), 129, -200, 1000, -1001]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(MODELS_1D))
def test_wide_shift_spans_equal_brute_force(name: str, mode: str) -> None:
    x = torch.randn(2, 2, 64, generator=torch.Generator().manual_seed(11))
    model = _seeded(MODELS_1D[name](), x, 12)
    geo = structure(model, x)
    ops, _ = make_plan(model, geo)
    lv = levels(ops, (64,), 2)
    # roll reduces these shifts modulo 64; one period is shorter than their span whenever
    # the stride divides 64 (all but the stride-3 model), else the span is computed
    path = periodic_length(lv, mode, [0], [63], margins(ops, lv))
    assert (path is not None) == (mode == "roll" and 64 % lv[-1].stride[0] == 0)
    if name == "avg_include_pad":  # the map (36) is longer than its period (32): a folded head
        assert lv[-1].size[0] > 64 // lv[-1].stride[0]
    assert_exact(fast_logits(model, geo, x, WIDE_SHIFTS_1D, mode), model, x, WIDE_SHIFTS_1D, mode)


def test_order_duplicates_and_small_memory_budget(positional_1d) -> None:
    # A 1-byte budget streams one sample and one shift at a time.
    x = torch.randn(3, 1, 64, generator=torch.Generator().manual_seed(5))
    shifts = [5, -3, 5, 0, 200, -3]
    geo = structure(positional_1d, x)
    out = fast_logits(positional_1d, geo, x, shifts, "roll", max_bytes=1)
    assert_exact(out, positional_1d, x, shifts, "roll")
    # Batches of other sizes may round differently (conv kernels block by batch): each
    # budget is held to the same bound, not to the other's bits.
    assert_exact(fast_logits(positional_1d, geo, x, shifts, "roll"), positional_1d, x, shifts,
                 "roll")  # fmt: skip
    assert torch.equal(out[:, 0], out[:, 2])


@st.composite
def stacks_1d(draw):
    """A random chain of 1-3 conv (+ activation, + pooling) blocks and a head."""
    layers: list[nn.Module] = []
    channels = draw(st.integers(1, 2))
    first = channels
    for _ in range(draw(st.integers(1, 3))):
        out = draw(st.integers(1, 3))
        k, d = draw(st.integers(1, 5)), draw(st.integers(1, 2))
        layers.append(nn.Conv1d(channels, out, k, stride=draw(st.integers(1, 3)),
                                padding=draw(st.integers(0, k + 1)), dilation=d))  # fmt: skip
        channels = out
        layers.append(draw(st.sampled_from([nn.ReLU(), nn.Tanh(), nn.Identity()])))
        if draw(st.booleans()):
            pk = draw(st.integers(1, 4))
            pool = draw(st.sampled_from([nn.MaxPool1d, nn.AvgPool1d]))
            extra = {} if pool is nn.MaxPool1d else {"count_include_pad": draw(st.booleans())}
            layers.append(pool(pk, draw(st.integers(1, 3)), padding=draw(st.integers(0, pk // 2)),
                               **extra))  # fmt: skip
    head = draw(st.sampled_from(["flatten", "max", "mean"]))
    if head == "max":
        layers += [nn.AdaptiveMaxPool1d(1), nn.Flatten(), nn.Linear(channels, 3)]
    elif head == "mean":
        layers += [nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(channels, 3)]
    else:
        layers += [nn.Flatten(), nn.LazyLinear(3)]
    length = draw(st.integers(8, 40))
    shifts = draw(st.lists(st.integers(-2 * length, 2 * length), min_size=1, max_size=5))
    return nn.Sequential(*layers), first, length, shifts, draw(st.sampled_from(MODES))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stacks_1d(), st.integers(0, 2**16))
def test_random_1d_stacks_equal_brute_force(case, seed: int) -> None:
    model, channels, length, shifts, mode = case
    x = torch.randn(2, channels, length, generator=torch.Generator().manual_seed(seed))
    try:
        model = _seeded(model, x, seed)
    except RuntimeError:  # the input is too short for this stack
        assume(False)
    _check_some_engine(model, x, shifts, mode)


def test_band_position_reading_only_padding() -> None:
    # The last map position of the stride-3 trunk reads input 10 of 9 (pure padding): its
    # crop window was empty and the trunk did not run on it (a draw the random stacks found).
    model = nn.Sequential(
        nn.Conv1d(1, 1, 1, padding=2), nn.ReLU(), nn.Conv1d(1, 1, 1, stride=3), nn.ReLU(),
        nn.Conv1d(1, 1, 3, dilation=2), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3),
    )  # fmt: skip
    x = torch.randn(2, 1, 9, generator=torch.Generator().manual_seed(0))
    model = _seeded(model, x, 0)
    from interp.sweep.engine.graph import graph_logits

    for mode in MODES:
        shifts = [0, 1, -4, 7]
        fast = graph_logits(model, x, shifts, mode, require_gain=False)
        assert_exact(fast, model, x, shifts, mode)


@st.composite
def stacks_2d(draw):
    """A random chain of 1-2 Conv2d (+ pooling) blocks with per-axis geometry, and a head."""
    pair = lambda lo, hi: (draw(st.integers(lo, hi)), draw(st.integers(lo, hi)))  # noqa: E731
    layers: list[nn.Module] = []
    channels = 1
    for _ in range(draw(st.integers(1, 2))):
        k = pair(1, 3)
        layers += [nn.Conv2d(channels, 2, k, stride=pair(1, 2), padding=pair(0, 2),
                             dilation=pair(1, 2)), nn.ReLU()]  # fmt: skip
        channels = 2
        if draw(st.booleans()):
            pk = pair(1, 3)
            pool = draw(st.sampled_from([nn.MaxPool2d, nn.AvgPool2d]))
            pad = (draw(st.integers(0, pk[0] // 2)), draw(st.integers(0, pk[1] // 2)))
            layers.append(pool(pk, pair(1, 2), padding=pad))
    if draw(st.booleans()):
        layers += [nn.Flatten(), nn.LazyLinear(3)]
    else:
        layers += [nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(channels, 3)]
    size = pair(5, 12)
    shifts = draw(st.lists(st.tuples(st.integers(-15, 15), st.integers(-15, 15)), min_size=1,
                           max_size=4))  # fmt: skip
    return nn.Sequential(*layers), size, shifts, draw(st.sampled_from(MODES))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stacks_2d(), st.integers(0, 2**16))
def test_random_2d_stacks_equal_brute_force(case, seed: int) -> None:
    model, size, shifts, mode = case
    x = torch.randn(2, 1, *size, generator=torch.Generator().manual_seed(seed))
    try:
        model = _seeded(model, x, seed)
    except RuntimeError:  # the input is too small for this stack
        assume(False)
    _check_some_engine(model, x, shifts, mode)


class _Residual(nn.Module):
    """An exact Flatten -> Linear head (structure says so) over a trunk with a skip."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv1d(1, 2, 3, padding=1), nn.Conv1d(2, 2, 3, padding=1)
        self.pool, self.flat, self.fc = nn.MaxPool1d(2), nn.Flatten(), nn.Linear(2 * 8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(x))
        return self.fc(self.flat(self.pool(h + self.b(h))))


class _Functional(nn.Module):
    """An exact head over a trunk with a functional op between two layers."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.pool = nn.Conv1d(1, 2, 3), nn.MaxPool1d(2)
        self.flat, self.fc = nn.Flatten(), nn.Linear(2 * 7, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flat(self.pool(torch.tanh(self.conv(x)) * 2)))


def _mlp_head() -> nn.Module:
    return nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten(), nn.Linear(28, 5), nn.ReLU(),
                         nn.Linear(5, 2))  # fmt: skip


def _circular() -> nn.Module:
    conv = nn.Conv1d(1, 2, 3, padding=1, padding_mode="circular")
    return nn.Sequential(conv, nn.Flatten(), nn.Linear(32, 2))


def _ceil_mode() -> nn.Module:
    pool = nn.MaxPool1d(3, 2, ceil_mode=True)
    return nn.Sequential(nn.Conv1d(1, 2, 3), pool, nn.Flatten(), nn.Linear(14, 2))


def _layer_norm() -> nn.Module:
    return nn.Sequential(nn.Conv1d(1, 2, 3), nn.LayerNorm(14), nn.Flatten(), nn.Linear(28, 2))


UNSUPPORTED = {
    "mlp head": (_mlp_head, "head"),
    "circular padding": (_circular, "circular"),
    "ceil mode": (_ceil_mode, "ceil_mode"),
    "layer norm": (_layer_norm, "positional"),
    "residual": (_Residual, "functional op"),
    "functional op": (_Functional, "functional op"),
}


@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_out_of_reach_models_raise_unsupported_and_stay_unchanged(name: str) -> None:
    build, reason = UNSUPPORTED[name]
    x = torch.randn(2, 1, 16, generator=torch.Generator().manual_seed(6))
    model = build().train()
    geo = structure(model, x)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(Unsupported, match=reason):
        fast_logits(model, geo, x, [0, 3], "roll")
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    assert no_hooks_left(model)


def test_user_hook_that_changes_an_output_sends_the_sweep_to_brute_force(positional_1d) -> None:
    x = torch.randn(2, 1, 64, generator=torch.Generator().manual_seed(7))
    geo = structure(positional_1d, x)
    handle = positional_1d[0].register_forward_hook(lambda m, i, o: o + 1.0)
    try:
        with pytest.raises(Unsupported, match="does not reproduce"):
            fast_logits(positional_1d, geo, x, [0, 5], "roll")
        assert list(positional_1d[0]._forward_hooks) == [handle.id]  # the user's hook stays
    finally:
        handle.remove()


def test_model_and_input_unchanged_after_a_sweep(positional_1d) -> None:
    model = positional_1d.train()
    model[0].weight.grad = torch.ones_like(model[0].weight)
    x = torch.randn(2, 1, 64, generator=torch.Generator().manual_seed(8))
    x_before = x.clone()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    out = fast_logits(model, structure(model, x), x, [-3, 0, 9], "edge")
    assert_exact(out, model.eval(), x, [-3, 0, 9], "edge")
    model.train()
    assert torch.equal(x, x_before) and torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(model[0].weight.grad, torch.ones_like(model[0].weight))
    assert all(p.requires_grad for p in model.parameters()) and no_hooks_left(model)


def test_no_samples_give_no_rows(pooled_1d) -> None:
    x = torch.zeros(0, 1, 64)
    out = fast_logits(pooled_1d, structure(pooled_1d, input_shape=(1, 64)), x, [0, 1], "roll")
    assert out.shape == (0, 2, 3)


def test_bad_arguments_are_programming_errors(positional_1d) -> None:
    x = torch.randn(2, 1, 64)
    geo = structure(positional_1d, x)
    with pytest.raises(ValueError, match="does not match"):
        fast_logits(positional_1d, geo, x[:, :, :32], [0], "roll")
    with pytest.raises(TypeError, match="1D shift"):
        fast_logits(positional_1d, geo, x, [(1, 2)], "roll")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["seed_cnn", "seed_gap", "seed_aug", "shapes_cnn", "shapes_gap"])
def test_trained_models_equal_brute_force(name: str) -> None:
    model, info = interp.load(TRAINED / f"{name}.pt")
    x, _ = info.recipe.sample(2, seed=3)
    dims = x.dim() - 2
    shifts = [0, -2000, -37, 1, 999, 3001] if dims == 1 else [(0, 0), (-5, 3), (1, 12), (9, -9)]
    for mode in MODES:
        _check(model, x, shifts, mode)


@pytest.mark.parametrize(("period", "length"), [((7,), (5,)), ((6,), (15,)), ((4, 5), (6, 3))])
def test_periodic_correlation_equals_the_circular_sum(period, length) -> None:
    # The oracle: out[q] = sum_j w[j] s[(q + j) mod T], looped in float64; templates both
    # shorter than the period and longer (wrapping more than once).
    gen = torch.Generator().manual_seed(13)
    signal = torch.randn(2, 3, *period, generator=gen, dtype=torch.float64)
    template = torch.randn(4, 3, *length, generator=gen, dtype=torch.float64)
    want = torch.zeros(2, 4, *period, dtype=torch.float64)
    for q in itertools.product(*(range(t) for t in period)):
        for j in itertools.product(*(range(p) for p in length)):
            at = tuple((a + b) % t for a, b, t in zip(q, j, period, strict=True))
            want[(..., *q)] += signal[(..., *at)] @ template[(..., *j)].T
    got = xcorr_periodic(signal, template)
    terms = template.abs().sum() * signal.abs().max()
    assert got.shape == want.shape and float((got - want).abs().max()) <= 64 * U64 * float(terms)


@pytest.mark.parametrize(("period", "length", "channels"), [(4096, 4026, 64), (64, 100, 3)])
def test_float32_periodic_correlation_within_its_bound(period, length, channels) -> None:
    # The float32-spectra correlation against the float64 circular sum (itself checked
    # above) within the bound of xcorr_periodic's docstring, from the inputs' own norms;
    # signals with the seed's shape (non-negative, a ReLU map) and a signed one.
    gen = torch.Generator().manual_seed(21)
    for signal in (torch.randn(3, channels, period, generator=gen).relu() * 5,
                   torch.randn(3, channels, period, generator=gen)):
        template = torch.randn(4, channels, length, generator=gen) * 1e-2
        exact = xcorr_periodic(signal.double(), template.double())
        got = xcorr_periodic(signal, template, dtype=torch.float32)
        assert got.dtype == torch.float32 and got.shape == exact.shape
        folded = exact.new_zeros(4, channels, period)
        for j in range(length):  # the template folded onto the period, by a loop
            folded[..., j % period] += template[..., j].double()
        a1, a2 = signal.double().abs().sum(-1), signal.double().norm(dim=-1)  # (N, C)
        w1, w2 = folded.abs().sum(-1), folded.norm(dim=-1)  # (K, C)
        bound = fft_factor(period, channels) * U32 * (a2 @ w1.T + a1 @ w2.T)  # (N, K)
        err = (got.double() - exact).abs().amax(-1)
        assert bool((err <= bound).all()), (float(err.max()), float(bound.min()))
        assert float(err.max()) > 0  # float32 spectra really ran


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("dims", [1, 2])
def test_batchnorm_folded_into_its_conv_equals_the_two_layers(affine: bool, dims: int):
    """fold_batchnorm against the model's own conv -> BatchNorm in float64 (a few ulps of
    ~1 apart), with the user's modules left as they were."""
    from interp.sweep.engine.plan import Op, fold_batchnorm

    conv_cls, bn_cls = (nn.Conv1d, nn.BatchNorm1d) if dims == 1 else (nn.Conv2d, nn.BatchNorm2d)
    gen = torch.Generator().manual_seed(4)
    conv = conv_cls(3, 5, 3, padding=1, bias=affine).double()
    bn = bn_cls(5, affine=affine).double().eval()
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(5, generator=gen, dtype=torch.float64))
        bn.running_var.copy_(0.1 + torch.rand(5, generator=gen, dtype=torch.float64))
        if affine:
            bn.weight.copy_(torch.randn(5, generator=gen, dtype=torch.float64))
            bn.bias.copy_(torch.randn(5, generator=gen, dtype=torch.float64))
    before = [t.clone() for t in (*conv.parameters(), *bn.parameters(), *bn.buffers())]
    ones = (1,) * dims
    ops = fold_batchnorm([Op("c", conv, "conv", (3,) * dims, ones, ones, ones, ones),
                          Op("b", bn, "point")])  # fmt: skip
    assert [op.name for op in ops] == ["c"]
    x = torch.randn(2, 3, *(9,) * dims, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        want = bn(conv(x))
        got = ops[0](x, ones, ones)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12 * (1 + want.abs().max().item()))
    after = [t for t in (*conv.parameters(), *bn.parameters(), *bn.buffers())]
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert ops[0].module is not conv and conv.weight.requires_grad


def test_pooled_chain_goes_to_the_chain_engine_when_its_bands_cost_less():
    """FCN (a plain chain, GAP head): layer-by-layer bands are cheaper than whole-trunk
    crops, so the sweep runs the chain engine, and its logits are brute force's."""
    from interp.sweep.core import sweep_logits
    from interp.sweep.engine.core import band_costs
    from interp.sweep.logits import brute_logits
    from tests.archs import ARCHS

    case = ARCHS["fcn_like"]
    model = case.factory(seed=0).double()
    x = torch.randn(3, *case.input_shape, generator=torch.Generator().manual_seed(1),
                    dtype=torch.float64)  # fmt: skip
    geo = structure(model, x)
    chain, crops = band_costs(model, geo)
    assert 0 < chain <= crops
    shifts = [-9, -1, 0, 3, 17]
    logits, engine, why = sweep_logits(model, x, shifts, mode="zero", structure=geo)
    assert engine == "fast" and "border bands layer by layer" in why
    want = brute_logits(model, x, shifts, "zero", rows=64)
    torch.testing.assert_close(logits.double(), want.double(), rtol=0,
                               atol=1e-5 * (1 + want.abs().max().item()))  # fmt: skip
