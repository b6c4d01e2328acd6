"""Shift sweep against a brute-force loop of plain PyTorch and a hand-computed model."""

from __future__ import annotations

import itertools
import json
import math
import sys
import types

import pytest
import torch
import torch.nn.functional as F
from conftest import no_hooks_left
from torch import nn

from interp.errors import InterpError
from interp.sweep.core import shift_sweep, shift_sweep_stream, sweep_logits


def oracle_shift(x: torch.Tensor, s, mode: str) -> torch.Tensor:
    """torch.roll, or F.pad + slice (constant / replicate), per spatial axis."""
    shifts = (s,) if isinstance(s, int) else tuple(s)
    for axis, d in zip(range(-len(shifts), 0), shifts, strict=True):
        if mode == "roll":
            x = torch.roll(x, d, axis)
            continue
        moved = x.movedim(axis, -1)
        n = moved.shape[-1]
        flat = moved.reshape(-1, 1, n)
        pad = F.pad(
            flat, (max(d, 0), max(-d, 0)), mode="constant" if mode == "zero" else "replicate"
        )
        flat = pad[..., max(-d, 0) : max(-d, 0) + n]
        x = flat.reshape(moved.shape).movedim(-1, axis)
    return x


def oracle(model: nn.Module, x: torch.Tensor, y: torch.Tensor, shifts, mode: str) -> dict:
    """One sample, one shift at a time: accuracy, probabilities, confusion, consistency."""
    model.eval()
    k = None
    preds, probs = [], []
    with torch.no_grad():
        for i in range(x.shape[0]):
            row_p, row_q = [], []
            for s in shifts:
                logits = model(oracle_shift(x[i : i + 1], s, mode))[0].double()
                k = logits.shape[0]
                row_p.append(int(torch.argmax(logits)))
                row_q.append(float(torch.softmax(logits, 0)[int(y[i])]))
            preds.append(row_p)
            probs.append(row_q)
    n, nshift = x.shape[0], len(shifts)
    acc = [sum(preds[i][j] == int(y[i]) for i in range(n)) / n for j in range(nshift)]
    prob = [sum(probs[i][j] for i in range(n)) / n for j in range(nshift)]
    confusion = [[[0] * k for _ in range(k)] for _ in range(nshift)]
    for i, j in itertools.product(range(n), range(nshift)):
        confusion[j][int(y[i])][preds[i][j]] += 1
    pairs = list(itertools.permutations(range(nshift), 2))
    agree = [sum(preds[i][a] == preds[i][b] for a, b in pairs) / len(pairs) for i in range(n)]
    per_class = []
    for c in range(k):
        rows = [i for i in range(n) if int(y[i]) == c]
        per_class.append(
            [
                sum(preds[i][j] == c for i in rows) / len(rows) if rows else None
                for j in range(nshift)
            ]
        )
    return {
        "accuracy": acc,
        "prob": prob,
        "confusion": confusion,
        "consistency": sum(agree) / n,
        "per_class": per_class,
    }


def check(sw, expected) -> None:
    assert sw.accuracy == pytest.approx(expected["accuracy"], abs=1e-12)
    assert sw.mean_true_probability == pytest.approx(expected["prob"], abs=1e-6)
    assert [list(map(list, m)) for m in sw.confusion] == expected["confusion"]
    assert sw.consistency == pytest.approx(expected["consistency"], abs=1e-12)
    for got, want in zip(sw.per_class_accuracy, expected["per_class"], strict=True):
        assert list(got) == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("mode", ["roll", "zero", "edge"])
def test_1d_sweep_equals_a_brute_force_loop(positional_1d, mode):
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(9, 1, 64, generator=gen), torch.randint(0, 3, (9,), generator=gen)
    shifts = [-20, -3, 0, 1, 2, 9, 33]
    expected = oracle(positional_1d, x, y, shifts, mode)
    for batch_size in (1, 7, None):
        sw = shift_sweep(
            positional_1d, x, y, shifts, mode=mode, batch_size=batch_size, engine="brute"
        )
        check(sw, expected)
        assert sw.n == 9 and sw.engine == "brute" and sw.mode == mode


@pytest.mark.parametrize("mode", ["roll", "zero"])
def test_2d_sweep_equals_a_brute_force_loop(pooled_2d, mode):
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(6, 1, 12, 12, generator=gen), torch.tensor([0, 1, 2, 3, 3, 0])
    shifts = [(0, 0), (1, -2), (-3, 0), (5, 5)]
    sw = shift_sweep(pooled_2d, x, y, shifts, mode=mode, batch_size=5)
    check(sw, oracle(pooled_2d, x, y, shifts, mode))
    assert sw.shifts == tuple(shifts)


def test_sweep_logits_equal_the_model_on_shifted_inputs(positional_2d):
    x = torch.randn(3, 1, 12, 12, generator=torch.Generator().manual_seed(2))
    shifts = [(0, 0), (2, -1), (-4, 4)]
    logits, engine, reason = sweep_logits(positional_2d, x, shifts, mode="edge", batch_size=2)
    assert logits.shape == (3, 3, 4) and engine in ("fast", "brute") and reason
    with torch.no_grad():
        for j, s in enumerate(shifts):
            torch.testing.assert_close(logits[:, j], positional_2d(oracle_shift(x, s, "edge")))


@pytest.mark.parametrize("engine", ["auto", "brute"])
def test_hand_set_model_consistency_and_invariance_range(hand_set_1d, engine):
    # class 0 reads x0 + x1, class 1 reads x4 + x5; an impulse at q predicts 1 iff q in {4, 5}
    # (ties -> class 0). A: impulse at 0, label 0; B: impulse at 5, label 1.
    x = torch.zeros(2, 1, 6)
    x[0, 0, 0] = x[1, 0, 5] = 1.0
    y = torch.tensor([0, 1])
    sw = shift_sweep(hand_set_1d, x, y, [-2, -1, 0, 1, 2], classes=["left", "right"], engine=engine)
    # A lands on 4, 5, 0, 1, 2 -> predictions 1, 1, 0, 0, 0; B on 3, 4, 5, 0, 1 -> 0, 1, 1, 0, 0
    assert sw.accuracy == (0.0, 0.5, 1.0, 0.5, 0.5)
    assert sw.per_class_accuracy == ((0.0, 0.0, 1.0, 1.0, 1.0), (0.0, 1.0, 1.0, 0.0, 0.0))
    # each sample: 3 shifts say one class, 2 the other -> (3*2 + 2*1) / (5*4) agreeing pairs
    assert sw.consistency == pytest.approx(0.4)
    assert sw.invariance_range == (0, 0)  # every neighbour of 0 is 50 points off
    sig = 1 / (1 + math.exp(-1))  # softmax of logits (1, 0)
    assert sw.mean_true_probability == pytest.approx(
        [(1 - sig + 0.5) / 2, (1 - sig + sig) / 2, sig, (sig + 1 - sig) / 2, (0.5 + 1 - sig) / 2]
    )
    assert sw.confusion[0] == ((0, 1), (1, 0))
    wide = shift_sweep(hand_set_1d, x, y, [-2, -1, 0, 1, 2], tolerance=0.5)
    assert wide.invariance_range == (-1, 2)
    assert shift_sweep(hand_set_1d, x, y, [1, 2]).invariance_range is None  # 0 not swept


def test_invariance_range_in_units_and_2d_axes(pooled_2d):
    x = torch.randn(4, 1, 12, 12, generator=torch.Generator().manual_seed(3))
    y = torch.tensor([0, 1, 2, 3])
    axis = [{"name": "y", "unit": "mm", "start": 0, "step": 0.5}] * 2
    sw = shift_sweep(
        pooled_2d, x, y, [(0, 0), (1, 0), (0, 2)], mode="roll", axis=axis, tolerance=1.0
    )
    assert sw.invariance_range == ((0, 0), (1, 2))
    assert sw.invariance_range_units == ((0.0, 0.0), (0.5, 1.0))
    blob = sw.to_dict()
    json.dumps(blob, allow_nan=False)
    assert blob["shifts"] == [[0, 0], [1, 0], [0, 2]]


def test_streamed_batches_equal_one_batch(positional_1d):
    gen = torch.Generator().manual_seed(4)
    x, y = torch.randn(20, 1, 64, generator=gen), torch.randint(0, 3, (20,), generator=gen)
    whole = shift_sweep(positional_1d, x, y, [-4, 0, 4])
    parts = shift_sweep_stream(
        positional_1d, ((x[i : i + 3], y[i : i + 3]) for i in range(0, 20, 3)), [-4, 0, 4], total=20
    )
    a, b = parts.to_dict(), whole.to_dict()
    assert a.pop("mean_true_probability") == pytest.approx(b.pop("mean_true_probability"))
    for got, want in zip(
        a.pop("per_class_true_probability"), b.pop("per_class_true_probability"), strict=True
    ):
        assert got == pytest.approx(want)
    assert a == b  # counts, accuracy, confusion and consistency are exact


def test_to_dict_is_strict_json_with_none_for_empty_classes(positional_1d):
    x = torch.randn(4, 1, 64)
    sw = shift_sweep(positional_1d, x, torch.tensor([0, 0, 1, 1]), [0], train_range=5)
    blob = json.loads(json.dumps(sw.to_dict(), allow_nan=False))
    assert blob["per_class_accuracy"][2] == [None]  # class 2 has no samples
    assert blob["consistency"] is None  # one shift: no pairs
    assert blob["train_range"] == [-5.0, 5.0]


def _fake_engine(monkeypatch, fast_logits):
    mod = types.ModuleType("interp.sweep.engine.core")

    class Unsupported(Exception):
        pass

    mod.Unsupported = Unsupported
    mod.fast_logits = lambda *a: fast_logits(Unsupported, *a)
    monkeypatch.setitem(sys.modules, "interp.sweep.engine.core", mod)
    graph = types.ModuleType("interp.sweep.engine.graph")  # the graph engine refuses
    graph.Unsupported = Unsupported

    def refuse(*_a, **_k):
        raise Unsupported("stand-in graph engine")

    graph.graph_logits = refuse
    monkeypatch.setitem(sys.modules, "interp.sweep.engine.graph", graph)


def test_engine_fast_is_used_and_falls_back_with_the_reason(positional_1d, monkeypatch):
    x, y = torch.randn(5, 1, 64), torch.tensor([0, 1, 2, 0, 1])

    def brute_stand_in(_unsupported, model, geo, xb, shifts, mode):
        assert geo.head.kind == "positional"
        return sweep_logits(model, xb, shifts, mode=mode, engine="brute")[0]

    _fake_engine(monkeypatch, brute_stand_in)
    sw = shift_sweep(positional_1d, x, y, [0, 5])
    assert sw.engine == "fast" and "fast engine" in sw.engine_reason

    def refuse(unsupported, *_a):
        raise unsupported("max pooling with ceil_mode")

    _fake_engine(monkeypatch, refuse)
    sw = shift_sweep(positional_1d, x, y, [0, 5], engine="fast")
    assert sw.engine == "brute" and "ceil_mode" in sw.engine_reason
    monkeypatch.setitem(sys.modules, "interp.sweep.engine.core", None)  # a broken install
    with pytest.raises(ImportError):  # fails loudly, never a silent fallback
        shift_sweep(positional_1d, x, y, [0, 5])
    assert shift_sweep(positional_1d, x, y, [0], engine="brute").engine_reason.startswith("brute")


def test_model_unchanged_and_no_hooks_left(positional_1d):
    positional_1d.train()
    positional_1d[0].weight.requires_grad_(True)
    positional_1d[0].weight.grad = torch.ones_like(positional_1d[0].weight)
    before = {k: v.clone() for k, v in positional_1d.state_dict().items()}
    shift_sweep(positional_1d, torch.randn(4, 1, 64), torch.tensor([0, 1, 2, 0]), [-1, 0, 1])
    assert positional_1d.training and positional_1d[3].training
    assert positional_1d[0].weight.requires_grad
    assert torch.equal(positional_1d[0].weight.grad, torch.ones_like(positional_1d[0].weight))
    for k, v in positional_1d.state_dict().items():
        assert torch.equal(v, before[k])
    assert no_hooks_left(positional_1d)


def test_model_restored_when_the_forward_raises(positional_1d):
    calls = {"n": 0}

    def boom(_m, _inputs):
        calls["n"] += 1
        if calls["n"] > 1:  # the structure probe passes, the sweep's forward fails
            raise RuntimeError("boom")

    handle = positional_1d[2].register_forward_pre_hook(boom)
    positional_1d.train()
    with pytest.raises(RuntimeError, match="boom"):
        shift_sweep(positional_1d, torch.randn(2, 1, 64), torch.tensor([0, 1]), [0, 1])
    handle.remove()
    assert positional_1d.training and no_hooks_left(positional_1d)


def test_progress_bar_goes_to_stderr(positional_1d, capsys):
    shift_sweep(positional_1d, torch.randn(2, 1, 64), torch.tensor([0, 1]), [0, 1], progress=True)
    captured = capsys.readouterr()
    assert "shift sweep" in captured.err and captured.out == ""


@pytest.mark.parametrize(
    ("y", "shifts", "message"),
    [
        (torch.tensor([0, 5]), [0], "label 5 at row 1"),
        (torch.tensor([0]), [0], "`y` has shape"),
        (torch.tensor([0.0, 1.0]), [0], "integer class labels"),
        (torch.tensor([0, 1]), [], "empty"),
    ],
)
def test_bad_inputs_say_the_fix(positional_1d, y, shifts, message):
    with pytest.raises(InterpError, match=message):
        shift_sweep(positional_1d, torch.randn(2, 1, 64), y, shifts)


def test_bad_options_are_programming_errors(positional_1d):
    x, y = torch.randn(2, 1, 64), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="`engine`"):
        shift_sweep(positional_1d, x, y, [0], engine="gpu")
    with pytest.raises(ValueError, match="`batch_size`"):
        shift_sweep(positional_1d, x, y, [0], batch_size=0)
    with pytest.raises(InterpError, match="`classes` has 2 names"):
        shift_sweep(positional_1d, x, y, [0], classes=["a", "b"])
    with pytest.raises(TypeError, match="2D shift"):
        shift_sweep(positional_1d, torch.randn(2, 1, 8, 8), y, [1])


def test_figures_label_shifts_in_units(positional_1d, pooled_2d):
    from matplotlib.figure import Figure

    from interp.plots._style import new_figure

    x, y = torch.randn(6, 1, 64), torch.tensor([0, 1, 2, 0, 1, 2])
    axis = [{"name": "frequency", "unit": "Hz", "start": 100.0, "step": 2.5}]
    sw = shift_sweep(positional_1d, x, y, [-4, 0, 4], axis=axis, train_range=2)
    fig = sw.plot()
    assert isinstance(fig, Figure) and fig.axes[0].get_xlabel() == "shift (Hz)"
    assert list(fig.axes[0].lines[0].get_xdata()) == [-10.0, 0.0, 10.0]  # s * step
    assert len(sw.plot_per_class().axes[0].lines) == 3
    sw2 = shift_sweep(
        pooled_2d,
        torch.randn(4, 1, 12, 12),
        torch.tensor([0, 1, 2, 3]),
        [(dy, dx) for dy in (-1, 0, 1) for dx in (0, 2)],
    )
    assert len(sw2.plot().axes) == 4  # two heatmaps and their colour bars
    fig, axes = new_figure(1, 2)
    assert sw2.plot(ax=axes[0, 0]) is fig and sw2.plot_per_class(ax=axes[0, 1]) is fig


# --- `interp sweep` -----------------------------------------------------------------------


@pytest.fixture
def runner():
    from click.testing import CliRunner

    return CliRunner()


def test_cli_sweep_with_data_matches_a_plain_loop(positional_1d, runner, tmp_path):
    import numpy as np

    from interp.cli.main import main
    from interp.loading.core import save

    axis = [{"name": "frequency", "unit": "Hz", "start": 0.0, "step": 2.0}]
    save(
        positional_1d,
        tmp_path / "m.pt",
        meta={"classes": ["a", "b", "c"], "axis": axis, "input_shape": [1, 64]},
    )
    gen = torch.Generator().manual_seed(5)
    x, y = torch.randn(12, 1, 64, generator=gen), torch.randint(0, 3, (12,), generator=gen)
    np.savez(tmp_path / "d.npz", x=x.numpy(), y=y.numpy())
    args = [
        "sweep",
        str(tmp_path / "m.pt"),
        "--data",
        str(tmp_path / "d.npz"),
        "--shifts",
        "-4:4:4",
        "--quiet",
    ]
    result = runner.invoke(main, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    sweep = json.loads(result.stdout)["sweep"]
    with torch.no_grad():
        expected = [
            float((positional_1d(torch.roll(x, s, -1)).argmax(1) == y).double().mean())
            for s in (-4, 0, 4)
        ]
    assert sweep["accuracy"] == pytest.approx(expected) and sweep["classes"] == ["a", "b", "c"]
    assert sweep["shifts_units"] == [-8.0, 0.0, 8.0]
    text = runner.invoke(main, args, catch_exceptions=False)
    assert text.exit_code == 0 and "in units" in text.output and "-8 Hz" in text.output
    assert "unshifted accuracy" in text.output and "consistency" in text.output


def test_cli_sweep_draws_from_the_recipe_and_needs_data_otherwise(positional_2d, runner, tmp_path):
    from interp.cli.main import main
    from interp.loading.core import save

    recipe = {
        "generator": "shapes",
        "params": {"size": 12, "half_size": [2.0, 3.0], "shift_range": 1},
        "seed": 3,
    }
    save(positional_2d, tmp_path / "zoo.pt", meta={"recipe": recipe, "input_shape": [1, 12, 12]})
    result = runner.invoke(
        main,
        ["sweep", str(tmp_path / "zoo.pt"), "--samples", "8", "--quiet"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "held-out examples from the shapes recipe" in result.output
    assert "dy\\dx" in result.output  # default: a (dy, dx) grid within +-size/4
    one_axis = runner.invoke(
        main,
        ["sweep", str(tmp_path / "zoo.pt"), "--samples", "4", "--shifts", "x:-2:2", "--json"],
        catch_exceptions=False,
    )
    assert json.loads(one_axis.stdout)["sweep"]["shifts"][0] == [0, -2]
    save(positional_2d, tmp_path / "bare.pt", meta={"input_shape": [1, 12, 12]})
    bare = runner.invoke(main, ["sweep", str(tmp_path / "bare.pt")], catch_exceptions=False)
    assert bare.exit_code == 2 and "pass `--data FILE`" in bare.output
    bad = runner.invoke(
        main, ["sweep", str(tmp_path / "zoo.pt"), "--shifts", "1:2:0"], catch_exceptions=False
    )
    assert bad.exit_code == 2 and "never reaches" in bad.output


@pytest.mark.slow
def test_seed_cnn_loses_shifted_patterns_that_seed_gap_keeps():
    from pathlib import Path

    from interp.loading.core import load

    trained = Path(__file__).resolve().parents[1] / "trained"
    shifts = [-2000, -1000, 0, 1000, 2000]
    ranges = {}
    for name in ("seed_cnn", "seed_gap"):
        model, info = load(trained / f"{name}.pt")
        x, y = info.recipe.sample(64, seed=12)
        sw = shift_sweep(model, x, y, shifts, train_range=info.recipe.train_shift_range)
        assert sw.unshifted_accuracy >= 0.9, name
        ranges[name] = sw.invariance_range
        if name == "seed_cnn":  # the pattern lands on positions never trained for it
            assert max(sw.accuracy[0], sw.accuracy[-1]) < 0.6
    assert ranges["seed_gap"] == (-2000, 2000)
    assert ranges["seed_cnn"][1] - ranges["seed_cnn"][0] < 4000
