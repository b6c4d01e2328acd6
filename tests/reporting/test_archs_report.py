"""The faithful re-implementations of real architectures (tests/archs), end to end.

Every number is checked against an oracle: the sweep against a brute-force loop of plain
PyTorch, the decomposition against a float64 copy of the model, the head's weights against
the Linear they come from; the report against the hand-computed head kind of each case
(``tests.archs.ARCHS``) and against itself (no two sentences disagree about the head).
"""

from __future__ import annotations

import copy
import re

import pytest
import torch

import interp
from interp.errors import InterpError
from interp.readout.core import connectivity, decompose, explain_shift
from interp.readout.head_map import head_map
from interp.shifts import shift
from tests.archs import ARCHS

REPORTED = ("shallow_fbcsp_like", "index_head_model", "lstm_head_model", "constant_pad_model",
            "adaptive_pool8_model")  # fmt: skip
SLOW_REPORTED = ("resnet18_like", "blurpool_resnet_like", "eegnet_like_no_logsoftmax")
AFFINE = ("shallow_fbcsp_like", "eegnet_like_no_logsoftmax", "index_head_model",
          "adaptive_pool8_model", "positional_seed_like")  # fmt: skip


def _data(name: str, n: int = 8) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """The case's model, seeded inputs and the model's own predictions as labels (so the
    model solves its 'task' at shift 0 and the sweep can decide)."""
    case = ARCHS[name]
    model = case.factory(seed=0)
    x = torch.randn((n, *case.input_shape), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


def _shifts(name: str) -> list:
    case = ARCHS[name]
    if len(case.input_shape) == 3:
        return [(0, 0), (0, 3), (8, 0)]
    return [-300, 0, 7, 450] if case.family == "eeg" else [-8, 0, 3, 16]


@pytest.mark.parametrize("name", ["shallow_fbcsp_like", "index_head_model", "lstm_head_model",
                                  "constant_pad_model", "adaptive_pool8_model"])  # fmt: skip
def test_sweep_equals_a_brute_force_loop(name):
    model, x, y = _data(name)
    shifts = _shifts(name)
    sw = interp.shift_sweep(model, x, y, shifts, mode="roll")
    with torch.no_grad():
        brute = [float((model(shift(x, s, "roll")).argmax(1) == y).float().mean()) for s in shifts]
    assert list(sw.accuracy) == pytest.approx(brute, abs=1e-12)


def test_jacobian_of_flatten_linear_is_its_reshaped_weight_exactly_in_float64():
    model, x, _ = _data("positional_seed_like")
    geo = interp.structure(model, x[:1])
    hm = head_map(model, geo)
    lin = model[-1]
    assert hm.exact and hm.dtype == "float64"
    assert torch.equal(hm.weight64, lin.weight.detach().double().reshape(3, 8, 247))
    assert torch.equal(hm.bias64, lin.bias.detach().double())


@pytest.mark.parametrize("name", AFFINE)
def test_decomposition_of_an_affine_head_equals_the_float64_logits(name):
    model, x, _ = _data(name, n=4)
    geo = interp.structure(model, x[:1])
    d = decompose(model, x, geo)
    total = d.per_kernel.sum(-1) + d.bias.double()  # (N, K), float64
    m64 = copy.deepcopy(model).double()
    with torch.no_grad():
        ref = m64(x.double())
    if d.logits_note:  # a LogSoftmax model: the decomposed logits are the ones before it
        assert "LogSoftmax" in d.logits_note
        total = torch.log_softmax(total, 1)
    # The trunk runs in float32 exactly as in the model's own forward, the head in float64: what
    # differs from the float64 model is the trunk's rounding, which the model's own float32
    # output shows, plus the head's float64 sum (u64 per term).
    with torch.no_grad():
        own = model(x).double()
    tol = 2 * (own - ref).abs().max() + 64 * 2.0**-24 * (1 + ref.abs())
    assert bool(((total - ref).abs() <= tol).all()), float((total - ref).abs().max())


def test_non_affine_heads_get_a_first_order_map_and_decompose_refuses():
    model, x, y = _data("lstm_head_model")
    geo = interp.structure(model, x[:1])
    conn = connectivity(model, geo, x=x, y=y)
    assert conn.order == "first-order" and conn.to_dict()["order"] == "first-order"
    assert "first-order" in conn.sentences()[0]
    assert conn.weight.shape == (3, 8, 124)
    with pytest.raises(InterpError, match="not affine"):
        decompose(model, x, geo)


def test_explain_shift_runs_on_the_eeg_net_before_its_logsoftmax():
    model, x, y = _data("shallow_fbcsp_like", n=4)
    geo = interp.structure(model, x[:1])
    conn = connectivity(model, geo, x=x, y=y)
    assert conn.classifier_type == "Conv2d" and conn.weight.shape == (4, 8, 61)
    assert conn.logits_note and "LogSoftmax" in conn.logits_note
    e = explain_shift(model, x[:1], int(y[0]), 150, structure=geo, connectivity=conn)
    assert e.kind == "positional" and e.fmap_shift == (10.0,)
    # The logits explained differ from the model's log-probabilities by one constant per row.
    with torch.no_grad():
        out = model(torch.cat([x[:1], shift(x[:1], 150, "roll")]))
    both = torch.stack([e.logits_before, e.logits_after])
    assert torch.allclose(torch.log_softmax(both.double(), 1), out.double(), atol=1e-5)


# --- full reports ---------------------------------------------------------------------


def _report(name: str) -> dict:
    model, x, y = _data(name)
    rep = interp.report(model, None, data=(x, y), shifts=_shifts(name), samples=8,
                        method="saliency")  # fmt: skip
    return {"case": ARCHS[name], "json": rep.to_dict(), "md": " ".join(rep.sentences())}


@pytest.fixture(scope="module")
def reports() -> dict[str, dict]:
    return {name: _report(name) for name in REPORTED}


_POOLED_CLAIMS = ("invariant by construction", "one weight per kernel", "boundary effects, not "
                  "the head", "pooled, translation invariant")  # fmt: skip
_POSITIONAL_CLAIMS = ("the positional head", "cannot be translation invariant")


def _check(entry: dict) -> None:
    case, content, md = entry["case"], entry["json"], entry["md"]
    assert content["structure"]["head"]["kind"] == case.head_kind
    v = content["verdict"]
    sweep = content["sweep"]
    acc, shifts = sweep["accuracy"], sweep["shifts"]
    a0 = acc[next(i for i, s in enumerate(shifts) if s in (0, [0, 0]))]
    if v["basis"] == "measured":  # the sweep's rule on its accuracies (= a brute-force loop)
        held = all(abs(a - a0) <= sweep["tolerance"] + 1e-12 for a in acc)
        assert v["translation_invariant"] is held, v
    else:  # undecided by data: the structure decides, and a positional head is never invariant
        assert v["translation_invariant"] is (case.head_kind == "pooled"), v
    text = " ".join([v["headline"], *v["reasons"], md])
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", text)
                 if s and not s.startswith("Put global pooling")]  # a suggestion, not a claim
    if case.head_kind == "positional":
        assert "the head is positional" in " ".join(v["reasons"]) or any(
            "positional" in r for r in v["reasons"]
        )
        bad = [s for s in sentences if any(c in s for c in _POOLED_CLAIMS)
               and "cannot" not in s and "not translation invariant" not in s]  # fmt: skip
        assert not bad, bad
    else:
        bad = [s for s in sentences if any(c in s for c in _POSITIONAL_CLAIMS)]
        assert not bad, bad


@pytest.mark.parametrize("name", REPORTED)
def test_report_verdict_is_right_and_never_contradicts_the_head(reports, name):
    _check(reports[name])


def test_report_quotes_the_eeg_classifier_conv_and_decomposes_it(reports):
    content = reports["shallow_fbcsp_like"]["json"]
    assert any("classifier conv" in r for r in content["verdict"]["reasons"])
    assert content["connectivity"]["classifier_type"] == "Conv2d"
    assert content["explanation"] is not None and content["explanation"]["per_sample"]
    # The map the head reads is torch.log inside the Expression module 'pool_nonlin_exp'
    # (tests/archs/eeg.py): the sentence names that module, not only the graph's 'log'.
    layers = {lay["name"]: lay for lay in content["structure"]["layers"]}
    reads = content["structure"]["head"]["reads"]
    assert layers[reads]["module"] == "pool_nonlin_exp" and layers["conv_time"]["module"] is None
    clause = next(r for r in content["verdict"]["reasons"] if "classifier conv" in r)
    assert f"of layer {reads!r} (in module 'pool_nonlin_exp')" in clause


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW_REPORTED)
def test_report_on_resnets_and_eegnet(name):
    _check(_report(name))
