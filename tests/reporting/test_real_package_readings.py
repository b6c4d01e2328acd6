"""Three readings that went wrong on real packages (antialiased-cnns, braindecode), on tiny
hand-built models.

1. Aliasing: a strided layer aliases only when shifts off its stride grid change it more
   than shifts on the grid do. The oracle is a brute-force loop of plain torch.roll over
   shifts and positions (on-grid: every position; off-grid: the interior positions, against
   the closer of the two whole-position shifts), written from the definitions in
   ``interp.sweep.per_layer``'s docstring, not from its code.
2. With data, a sweep that ran is never reported as "no shift sweep ran", also when accuracy
   at shift 0 is at chance and the sweep cannot decide.
3. "Measure it: pass --data" appears only when no data was given.
"""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

import interp
from interp.reporting.verdict import verdict
from interp.sweep.per_layer import equivariance

L = 32  # input length
TOL = 1e-4  # equivariance()'s default tolerance


class Blur(nn.Module):
    """A fixed binomial [1, 2, 1] / 4 low-pass filter, zero padding 1, stride 2, through a
    functional ``F.conv1d`` call (as antialiased-cnns' BlurPool does): the call site is
    ``conv1d``, its owner module ``blur``."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("filt", torch.tensor([[[1.0, 2.0, 1.0]]]) / 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(x, self.filt, stride=2, padding=1)  # (N, 1, L) -> (N, 1, L / 2)


def _head(model: nn.Sequential) -> nn.Sequential:
    lin = nn.Linear(1, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0], [-1.0]]))
        lin.bias.zero_()
    for name, mod in (("gap", nn.AdaptiveAvgPool1d(1)), ("flat", nn.Flatten()), ("fc", lin)):
        model.add_module(name, mod)
    return model.eval()


def blur_model() -> nn.Sequential:
    return _head(_seq(("blur", Blur())))


def subsample_model() -> nn.Sequential:
    """Plain subsampling: MaxPool1d(1, 2) keeps every other sample, no low-pass filter."""
    return _head(_seq(("sub", nn.MaxPool1d(1, 2))))


def _seq(*named: tuple[str, nn.Module]) -> nn.Sequential:
    model = nn.Sequential()
    for name, mod in named:
        model.add_module(name, mod)
    return model


# (receptive field, offset, stride) of the strided layer, by hand: the blur reads input
# positions 2j - 1 .. 2j + 1, the subsampling position 2j.
GEOMETRY = {"blur": (3, 1, 2), "sub": (1, 0, 2)}


def brute_errors(layer: nn.Module, x: torch.Tensor, shifts: list[int], geometry: tuple) -> dict:
    """On-grid and off-grid relative errors of one layer, by loops over shifts and positions,
    in float64: ``||a - b|| / max(||a||, ||b||)`` with sums over samples, shifts, positions."""
    rf, off, st = geometry
    xd = x.double()
    lay = layer.double()
    with torch.no_grad():
        base = lay(xd)  # (N, C, P)
        p = base.shape[-1]
        on = [0.0, 0.0, 0.0]
        alias = [0.0, 0.0, 0.0]
        for s in shifts:
            moved = lay(torch.roll(xd, s, -1))
            if s % st == 0:
                b = torch.roll(base, s // st, -1)
                on = [on[0] + float(((moved - b) ** 2).sum()), on[1] + float((moved**2).sum()),
                      on[2] + float((b**2).sum())]  # fmt: skip
                continue
            best = None
            for q in sorted({s // st, -(-s // st)}):
                d = a2 = b2 = 0.0
                used = False
                for j in range(p):
                    lo = j * st - off
                    hi = lo + rf - 1
                    inside = lo >= 0 and hi < L and lo - s >= 0 and hi - s < L
                    partner = 0 <= j - q < p and lo - q * st >= 0 and hi - q * st < L
                    if inside and partner:
                        u, v = moved[..., j], base[..., j - q]
                        d += float(((u - v) ** 2).sum())
                        a2 += float((u**2).sum())
                        b2 += float((v**2).sum())
                        used = True
                if not used:
                    continue
                err = math.sqrt(d / max(a2, b2)) if max(a2, b2) > 0 else 0.0
                if best is None or err < best[0]:
                    best = (err, d, a2, b2)
            if best is not None:
                alias = [alias[0] + best[1], alias[1] + best[2], alias[2] + best[3]]

    def rel(sums: list[float]) -> float:
        return math.sqrt(sums[0] / max(sums[1], sums[2])) if max(sums[1], sums[2]) > 0 else 0.0

    return {"on": rel(on), "off": rel(alias)}


SHIFTS = [-3, -2, 1, 2, 4, 5]


def smooth(n: int) -> torch.Tensor:
    """Slow, non-periodic ramps with a large offset: the blur barely changes off the grid in
    the interior, while the roll's wrap-around seam and the zero padding change it on it."""
    t = torch.arange(L, dtype=torch.float32)
    rows = [3.0 + 0.02 * (k + 1) * t + 0.3 * torch.sin(2 * math.pi * t / (L * (k + 2)))
            for k in range(n)]  # fmt: skip
    return torch.stack(rows)[:, None]


def noisy(n: int, seed: int) -> torch.Tensor:
    """White noise: most of its energy is above the Nyquist limit of a stride 2."""
    return torch.randn(n, 1, L, generator=torch.Generator().manual_seed(seed))


def _listed(model: nn.Sequential, x: torch.Tensor, key: str) -> tuple[bool, dict, object]:
    eq = equivariance(model, x, SHIFTS)
    name = "conv1d" if key == "blur" else key  # the blur's call site is its F.conv1d
    lay = eq.layer(name)
    oracle = brute_errors(getattr(model, key), x, SHIFTS, GEOMETRY[key])
    # The per-layer numbers are the brute-force ones (float32 forward: rel. error ~1e-6).
    assert lay.error == _approx(oracle["on"]) and lay.aliasing_error == _approx(oracle["off"])
    return name in eq.aliasing_layers, oracle, eq


def _approx(v: float):
    import pytest

    return pytest.approx(v, rel=1e-4, abs=1e-6)


def test_a_blur_that_changes_less_off_the_grid_than_on_it_is_not_aliasing():
    listed, oracle, eq = _listed(blur_model(), smooth(4), "blur")
    assert TOL < oracle["off"] <= oracle["on"]  # the case the rule is about
    assert not listed and eq.aliasing_layers == ()
    text = " ".join(eq.findings)
    assert "Anti-aliased pooling" not in text and "Aliasing:" not in text
    assert "Not aliasing" in text and "'blur'" in text and "'conv1d'" not in text


def test_plain_subsampling_of_high_frequencies_is_aliasing():
    listed, oracle, eq = _listed(subsample_model(), noisy(4, 0), "sub")
    assert oracle["off"] > max(oracle["on"], TOL)
    assert listed and eq.aliasing_layers == ("sub",)
    assert any(f.startswith("Aliasing:") and "'sub'" in f for f in eq.findings)


def test_a_blur_on_white_noise_aliases_and_is_named_by_its_module():
    """A [1, 2, 1] blur does not remove all of white noise's high frequencies: off the grid it
    changes more than on it, so it is listed, and every sentence names module 'blur', never
    the call site 'conv1d'."""
    model = blur_model()
    x = noisy(4, 1)
    listed, oracle, eq = _listed(model, x, "blur")
    assert (oracle["off"] > max(oracle["on"], TOL)) == listed
    assert listed
    text = " ".join(eq.findings)
    assert "'blur' (torch.conv1d, stride 2)" in text and "'conv1d'" not in text
    content = {"structure": {"head": {"kind": "pooled"}}, "equivariance": eq.to_dict()}
    v = verdict(content)
    said = " ".join(v["reasons"] + v["suggestions"])
    assert "Strided layer 'blur' (torch.conv1d, stride 2) aliases" in said
    assert "'conv1d'" not in said


# --- the verdict with data at chance, and without data ------------------------------------


def _data(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs the tiny model sends to class 0 (positive mean) and labels 1: accuracy 0 at
    every shift, below the 50% chance of 2 classes."""
    x = noisy(n, 2).abs() + 0.5
    return x, torch.ones(n, dtype=torch.long)


def _words(rep: interp.Report) -> str:
    return " ".join(rep.sentences()) + "\n" + rep.to_markdown()


def test_a_sweep_at_chance_is_reported_as_run_and_measure_it_is_not_suggested():
    model = subsample_model()
    x, y = _data()
    with torch.no_grad():
        acc0 = float((model(x).argmax(1) == y).float().mean())  # oracle: the plain forward
    rep = interp.report(model, None, data=(x, y), shifts=[-2, 0, 1, 2], method="saliency")
    d = rep.to_dict()
    assert d["sweep"] is not None
    i0 = d["sweep"]["shifts"].index(0)
    assert d["sweep"]["accuracy"][i0] == acc0 == 0.0
    k = d["structure"]["num_classes"]
    assert k == 2
    v = d["verdict"]
    assert v["basis"] == "structure"  # the sweep cannot decide; the architecture does
    words = _words(rep)
    assert "no shift sweep ran" not in words
    assert "Measure it" not in words and "pass --data" not in words
    # The basis sentence quotes report.json: accuracy at 0 and chance for k classes.
    basis = f"measured on data, but accuracy at 0 samples is {100 * acc0:.1f}%, below chance " \
            f"({100 / k:.1f}% for {k} classes), so the sweep cannot decide"  # fmt: skip
    assert basis in v["basis_text"] and basis in rep.sentences()[0]
    assert "not yet measured" not in words  # a pooled head: the sweep ran, it did not confirm


def test_without_data_measure_it_is_suggested_and_no_sweep_ran_is_said():
    info = SimpleNamespace(path=None, meta={}, recipe=None, classes=None, input_shape=(1, L))
    rep = interp.report(subsample_model(), info, method="saliency")
    d = rep.to_dict()
    assert d["sweep"] is None and d["data"] is None
    words = _words(rep)
    assert "no shift sweep ran" in rep.sentences()[0]
    assert any(s.startswith("Measure it: pass --data") for s in d["verdict"]["suggestions"])
    assert "Measure it" in words


def test_data_given_but_no_sweep_does_not_ask_for_data():
    """The sweep's section failed (its note says why): the verdict says the sweep did not
    run on the N examples given, and does not ask for data."""
    content = {"structure": {"head": {"kind": "positional", "linear": "fc", "reads": "0",
                                      "channels": 8, "positions": [61]}},
               "data": {"n": 8, "path": None}, "sweep": None}  # fmt: skip
    v = verdict(content)
    said = " ".join(v["reasons"] + v["suggestions"])
    assert "Measure it" not in said and "no shift sweep ran" not in v["basis_text"]
    assert re.search(r"did not run on the 8 examples given", v["basis_text"])
