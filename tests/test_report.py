"""interp.reporting: the verdict from measured numbers, every section, escaping, determinism.

Oracles: two models with hand-set weights whose behaviour under shifts is known
exactly (a matched-filter trunk read by a positional window, or by global max
pooling), hand-written report dicts for the verdict rules, and the model's own
state before/after.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from conftest import no_hooks_left
from torch import nn

import interp
from interp.errors import InterpError
from interp.reporting.choose import attribution_shifts, pick_samples, telling
from interp.reporting.jsonio import without_volatile
from interp.reporting.render_md import escape
from interp.reporting.verdict import fmt_shift, verdict

L, K, CENTRE, JITTER, WINDOW = 32, 4, 14, 2, (10, 26)
SECTION_IDS = ["verdict", "architecture", "connectivity", "explanation", "shifts",
               "attribution", "reproducibility"]  # fmt: skip


# --- hand-set models -------------------------------------------------------------------


def _trunk() -> nn.Conv1d:
    """Kernel k is the template of class k: spikes at offsets 0 and k + 1 (a matched filter).

    Its response to its own template is 2 at one position, to anything else at most 1;
    the bias -1 and the ReLU leave exactly one active neuron (value 1) per sample.
    """
    conv = nn.Conv1d(1, K, 5, padding=2, padding_mode="circular")
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.fill_(-1.0)
        for k in range(K):
            conv.weight[k, 0, 0] = 1.0
            conv.weight[k, 0, k + 1] = 1.0
    return conv


def positional_model() -> nn.Sequential:
    """Flatten -> Linear reads kernel k only at positions WINDOW of class k; bias favours 0.

    Unshifted, the active neuron (position p + 2 in 14..18) is inside the window: the true
    logit is 1, the others their bias. Shifted by 16 it leaves the window (circularly too),
    every logit is its bias, and class 0 wins: accuracy 1 / K.
    """
    lin = nn.Linear(K * L, K)
    with torch.no_grad():
        lin.weight.zero_()
        for k in range(K):
            lin.weight[k, k * L + WINDOW[0] : k * L + WINDOW[1] + 1] = 1.0
        lin.bias.copy_(torch.tensor([0.5, 0.0, 0.0, 0.0]))
    return nn.Sequential(_trunk(), nn.ReLU(), nn.Flatten(), lin).eval()


def pooled_model() -> nn.Sequential:
    """Global max pooling then the identity: exactly invariant to circular shifts."""
    lin = nn.Linear(K, K)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(K))
        lin.bias.zero_()
    return nn.Sequential(_trunk(), nn.ReLU(), nn.AdaptiveMaxPool1d(1), nn.Flatten(), lin).eval()


def templates(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Class k: spikes at p and p + k + 1, p = CENTRE + uniform jitter in [-2, 2]."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % K
    p = CENTRE + torch.randint(-JITTER, JITTER + 1, (n,), generator=gen)
    x = torch.zeros(n, 1, L)
    x[torch.arange(n), 0, p] = 1.0
    x[torch.arange(n), 0, p + y + 1] = 1.0
    return x, y


def info(**fields: Any) -> SimpleNamespace:
    """A stand-in for ModelInfo of an in-memory model: its input shape, no file, no recipe."""
    return SimpleNamespace(**{"path": None, "meta": {}, "recipe": None, "classes": None,
                              "input_shape": (1, L), **fields})  # fmt: skip


# --- a strict checker for schema interp.report/1 ---------------------------------------


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _shift(v: Any) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or (
        isinstance(v, list) and len(v) == 2 and all(isinstance(e, int) for e in v))  # fmt: skip


def _need(cond: bool, where: str) -> None:
    if not cond:
        raise AssertionError(f"schema: {where}")


def check_schema(text: str) -> dict[str, Any]:
    """Parse report.json strictly (no NaN/Infinity) and check interp.report/1; return the dict."""

    def no_constants(name: str) -> None:
        raise AssertionError(f"schema: {name} in JSON")

    d = json.loads(text, parse_constant=no_constants)
    _need(d["schema"] == "interp.report/1", "schema")
    _need(isinstance(d["interp_version"], str) and isinstance(d["created"], str), "version")
    m = d["model"]
    _need(isinstance(m["format"], str) and isinstance(m["parameters"], int), "model")
    _need(m["sha256"] is None or len(m["sha256"]) == 64, "model.sha256")
    if d["data"] is not None:
        data = d["data"]
        _need(data["path"] is None or isinstance(data["path"], str), "data.path")
        _need(isinstance(data["n"], int) and data["n"] > 0, "data.n")
        _need(all(isinstance(c, str) for c in data["classes"]), "data.classes")
        _need(all(isinstance(v, int) for v in data["input_shape"]), "data.input_shape")
    s = d["structure"]
    _need(s["spatial_dims"] in (1, 2) and isinstance(s["global_pooling"], bool), "structure")
    for lay in s["layers"]:
        _need(isinstance(lay["name"], str) and isinstance(lay["type"], str), "layer")
        _need(all(isinstance(v, int) for v in lay["output_shape"]), "layer.output_shape")
        for key in ("receptive_field", "stride"):
            _need(lay[key] is None or all(isinstance(v, int) for v in lay[key]), f"layer.{key}")
        _need(lay["equivariant"] in (True, False, None), "layer.equivariant")
    _need(s["head"]["kind"] in ("positional", "pooled", "unknown"), "head.kind")
    if d["connectivity"] is not None:
        for entry in d["connectivity"]["per_class"]:
            _need(isinstance(entry["class"], str), "connectivity.class")
            if d["connectivity"]["kind"] == "positional":
                for key in ("peak_position", "centre_of_mass", "footprint"):
                    _need(key in entry and f"{key}_input" in entry, f"connectivity.{key}")
    if d["sweep"] is not None:
        sw = d["sweep"]
        n = len(sw["shifts"])
        _need(n > 0 and all(_shift(v) for v in sw["shifts"]), "sweep.shifts")
        _need(sw["mode"] in ("roll", "zero", "edge"), "sweep.mode")
        for key in ("accuracy", "mean_true_probability"):
            _need(len(sw[key]) == n and all(_num(v) and 0 <= v <= 1 for v in sw[key]), key)
        _need(sw["consistency"] is None or _num(sw["consistency"]), "sweep.consistency")
    if d["attribution"] is not None:
        at = d["attribution"]
        _need(isinstance(at["method"], str) and all(_shift(v) for v in at["shifts"]), "attr")
        sim = at["aligned_similarity"]
        _need(len(sim) == len(at["shifts"]) and all(v is None or _num(v) for v in sim), "sim")
    v = d["verdict"]
    _need(v["translation_invariant"] in (True, False, None), "verdict.translation_invariant")
    for key in ("reasons", "suggestions"):
        _need(all(isinstance(t, str) and t for t in v[key]), f"verdict.{key}")
    return d


# --- reports built once per module -----------------------------------------------------


def _report(model: nn.Module, **kw: Any) -> interp.Report:
    x, y = templates(24)
    return interp.report(model, None, data=(x, y), shifts="-16:16:4", samples=24, **kw)


@pytest.fixture(scope="module")
def positional_report() -> interp.Report:
    return _report(positional_model())


@pytest.fixture(scope="module")
def pooled_report() -> interp.Report:
    return _report(pooled_model())


def test_positional_model_is_measured_not_invariant(positional_report):
    d = check_schema(positional_report.to_json())
    v = d["verdict"]
    assert v["translation_invariant"] is False and v["basis"] == "measured"
    acc = dict(zip(d["sweep"]["shifts"], d["sweep"]["accuracy"], strict=True))
    # Oracle: every unshifted template is right; shifted by 16 all leave the window -> class 0.
    assert acc[0] == 1.0 and acc[16] == acc[-16] == 1 / K
    assert any("from 100.0% at 0 samples to 25.0%" in r for r in v["reasons"])
    assert any("global pooling" in s for s in v["suggestions"])
    assert any("Augment training" in s for s in v["suggestions"])


def test_verdict_is_a_function_of_the_json_alone(positional_report, pooled_report):
    for rep in (positional_report, pooled_report):
        d = rep.to_dict()
        assert verdict({k: v for k, v in d.items() if k != "verdict"}) == d["verdict"]


def test_pooled_model_is_measured_invariant(pooled_report):
    d = check_schema(pooled_report.to_json())
    v = d["verdict"]
    assert v["translation_invariant"] is True and v["basis"] == "measured"
    assert d["sweep"]["accuracy"] == [1.0] * len(d["sweep"]["shifts"])
    assert not any("global pooling" in s for s in v["suggestions"])


def test_every_section_present_in_order(positional_report):
    assert [s.id for s in positional_report.sections] == SECTION_IDS
    assert all(s.available for s in positional_report.sections[:5])
    ids = [s["id"] for s in positional_report.to_dict()["sections"]]
    assert ids == SECTION_IDS


def test_explanation_shows_samples_that_fail_at_the_telling_shift(positional_report):
    d = positional_report.to_dict()["explanation"]
    assert d["shift"] == -12  # lowest accuracy (25%) first reached at -12: smallest such shift
    x, y = templates(24)
    for i, entry in zip(d["samples"], d["per_sample"], strict=True):
        model = positional_model()
        with torch.no_grad():
            before = model(x[i : i + 1]).argmax(1).item()
            after = model(torch.roll(x[i : i + 1], d["shift"], -1)).argmax(1).item()
        assert before == y[i] and after != y[i]  # right unshifted, wrong shifted
        assert entry["winner"] == str(after)


def test_no_data_gives_structure_verdict_and_notes():
    rep = interp.report(positional_model(), info(), samples=8)
    d = check_schema(rep.to_json())
    assert d["data"] is None and d["sweep"] is None
    assert d["verdict"]["translation_invariant"] is False and d["verdict"]["basis"] == "structure"
    for sid in ("shifts", "explanation", "attribution"):
        section = rep.section(sid)
        assert not section.available
        assert "no data" in section.blocks[0].text or "sweep" in section.blocks[0].text
    assert rep.section("connectivity").available
    # The note a left-out section prints is in report.json too, word for word.
    md = rep.to_markdown()
    left_out = [s for s in d["sections"] if not s["available"]]
    assert {s["id"] for s in left_out} >= {"shifts", "explanation", "attribution"}
    for entry in left_out:
        assert entry["why"] == rep.section(entry["id"]).blocks[0].text
        assert escape(entry["why"]) in md
    assert all("why" not in s for s in d["sections"] if s["available"])
    pooled = interp.report(pooled_model(), info()).to_dict()["verdict"]
    assert pooled["translation_invariant"] is True and pooled["basis"] == "structure"


def test_model_and_global_state_unchanged_even_on_error():
    model = positional_model().train()
    model[0].weight.requires_grad_(True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng, grad = torch.get_rng_state(), torch.is_grad_enabled()
    _report(model)
    with pytest.raises(InterpError, match="`data` has labels"):
        interp.report(model, None, data=(templates(8)[0], torch.full((8,), 7)))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training and all(m.training for m in model.modules())
    assert model[0].weight.requires_grad and model[0].weight.grad is None
    assert no_hooks_left(model)
    assert torch.equal(torch.get_rng_state(), rng) and torch.is_grad_enabled() == grad


def test_bad_options_are_user_errors():
    x, y = templates(8)
    with pytest.raises(InterpError, match="`method` 'nope'"):
        interp.report(pooled_model(), None, data=(x, y), method="nope")
    with pytest.raises(InterpError, match="`mode`"):
        interp.report(pooled_model(), None, data=(x, y), mode="wrap")
    with pytest.raises(InterpError, match="`samples`"):
        interp.report(pooled_model(), None, data=(x, y), samples=0)
    with pytest.raises(InterpError, match="shape"):
        interp.report(positional_model(), None, data=(torch.zeros(4, 1, 20), y[:4]))


def test_same_seed_same_json_and_seed_matters():
    x, y = templates(40)
    runs = [interp.report(pooled_model(), None, data=(x, y), shifts="-4:4:2", samples=16,
                          seed=s).to_dict() for s in (3, 3, 4)]  # fmt: skip
    texts = [json.dumps(without_volatile(r), sort_keys=True) for r in runs]
    assert texts[0] == texts[1]
    assert texts[0] != texts[2]  # a different seed picks other examples


def test_model_strings_are_escaped_in_html_and_markdown():
    evil = "<script>alert(1)</script>"
    trunk = positional_model()
    model = nn.Sequential(OrderedDict([("conv", trunk[0]), (evil, trunk[1]),
                                       ("flat", trunk[2]), ("head", trunk[3])])).eval()  # fmt: skip
    rep = interp.report(model, info(path=evil, classes=(evil, "b", "c", "d")))
    html, md = rep.to_html(), rep.to_markdown()
    assert evil not in html and "&lt;script&gt;" in html
    assert evil not in md and "&lt;script>" in md
    assert "<script" not in rep._repr_html_()
    assert escape("a|b_c") == "a\\|b\\_c"


def test_html_is_self_contained_and_markdown_links_figures(positional_report):
    html, md = positional_report.to_html(), positional_report.to_markdown()
    figures = [f for s in positional_report.sections for f in s.figures]
    assert figures, "a report with data has figures"
    assert html.count('src="data:image/png;base64,') == len(figures)
    assert "figures/" not in html
    for fig in figures:
        assert f"(figures/{fig.name}.png)" in md
        assert fig.png[:8] == b"\x89PNG\r\n\x1a\n" and fig.width > 0
    files = positional_report.files()
    assert {f"figures/{f.name}.png" for f in figures} <= set(files)
    fragment = positional_report._repr_html_()
    assert "<html" not in fragment and 'class="interp-report"' in fragment


# --- verdict rules on hand-written dicts -----------------------------------------------


def _content(acc: list[float], kind: str = "positional", **sweep: Any) -> dict[str, Any]:
    head = {"kind": kind, "linear": "5", "reads": "3", "channels": 64, "positions": [4026],
            "pooling": "max" if kind == "pooled" else None}  # fmt: skip
    shifts = list(range(-(len(acc) // 2) * 1000, (len(acc) // 2) * 1000 + 1, 1000))
    return {
        "structure": {"spatial_dims": 1, "num_classes": 4, "head": head},
        "axis": [{"name": "frequency", "unit": "Hz", "start": -4096.0, "step": 1.0}],
        "sweep": {"shifts": shifts, "accuracy": acc, "tolerance": 0.05, "n": 400,
                  "mode": "roll", "consistency": 0.5, "train_range": [-300.0, 300.0],
                  "invariance_range": [-1000, 1000], **sweep},
    }  # fmt: skip


def test_verdict_cites_the_numbers_it_was_given():
    v = verdict(_content([0.24, 0.60, 0.985, 0.97, 0.30]))
    assert v["translation_invariant"] is False
    assert "falls from 98.5% at 0 Hz to 24.0% at -2000 Hz" in v["reasons"][0]
    assert "24.0% at -2000 Hz and 30.0% at +2000 Hz" in v["reasons"][0]
    assert any("±2000 Hz" in s and "±300 Hz" in s for s in v["suggestions"])
    assert any("-1000 Hz to +1000 Hz" in r for r in v["reasons"])
    changed = verdict(_content([0.25, 0.60, 0.90, 0.97, 0.30]))
    assert "from 90.0% at 0 Hz to 25.0%" in changed["reasons"][0]


def test_verdict_tolerance_and_chance_rules():
    assert verdict(_content([0.95, 0.97, 0.99, 0.96, 0.95]))["translation_invariant"] is True
    assert verdict(_content([0.93, 0.97, 0.99, 0.96, 0.95]))["translation_invariant"] is False
    near_chance = verdict(_content([0.3, 0.3, 0.5, 0.3, 0.3]))
    assert near_chance["basis"] == "structure"  # 50% at 0 is below (1 + 0.25) / 2
    assert any("only 50.0%" in r for r in near_chance["reasons"])
    unknown = verdict({"structure": {"head": {"kind": "unknown"}}, "sweep": None})
    assert unknown["translation_invariant"] is None


def test_verdict_names_aliasing_layers():
    content = _content([0.95, 0.97, 0.99, 0.96, 0.95], kind="pooled")
    content["equivariance"] = {"first_break": "4", "aliasing_layers": ["2"], "layers": [
        {"name": "0", "type": "Conv1d", "stride": [1], "positions": True, "error": 0.0,
         "interior_error": 2e-7, "aliasing_error": None},
        {"name": "2", "type": "MaxPool1d", "stride": [2], "positions": True, "error": 0.001,
         "interior_error": 3e-7, "aliasing_error": 0.12},
        {"name": "4", "type": "Linear", "stride": None, "positions": False, "error": None,
         "interior_error": None, "invariance_error": 0.85},
    ]}  # fmt: skip
    v = verdict(content)
    assert any("breaks at layer '4' (Linear)" in r and "3.0e-07" in r and "85.0%" in r
               for r in v["reasons"])  # fmt: skip
    assert any("'2' (MaxPool1d, stride 2) aliases" in r and "12.0%" in r and "0.1%" in r
               for r in v["reasons"])  # fmt: skip
    assert any(s.startswith("If exact invariance matters, use anti-aliased") and "'2'" in s
               for s in v["suggestions"])  # accuracy held: optional  # fmt: skip
    content["sweep"]["accuracy"] = [0.5, 0.97, 0.99, 0.96, 0.95]
    assert any(s.startswith("Use anti-aliased pooling") for s in verdict(content)["suggestions"])


def test_shift_formatting_and_choices():
    assert fmt_shift([2, -3], [{"unit": "px", "step": 1.0}] * 2) == "(dy, dx) = (+2, -3) px"
    sweep = {"shifts": [-4, -2, 0, 2, 4], "accuracy": [0.2, 0.5, 1.0, 0.5, 0.2], "tolerance": 0.05}
    assert telling(sweep) == -4
    flat = {"shifts": [-4, 0, 4], "accuracy": [1.0, 1.0, 1.0], "tolerance": 0.05}
    assert telling(flat) == -4  # nothing drops: the largest shift
    assert attribution_shifts((4, -2), []) == [(-4, 2), (-2, 1), (0, 0), (2, -1), (4, -2)]
    pred = torch.tensor([[0, 1], [0, 0], [1, 2], [1, 1], [2, 2]])
    assert pick_samples(pred, torch.tensor([0, 0, 1, 1, 2]), 3) == [0, 2, 4]


def test_2d_models_compare_on_one_plot(positional_2d, pooled_2d):
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(12, 1, 12, 12, generator=gen), torch.arange(12) % 4
    shape = info(input_shape=(1, 12, 12))
    rep = interp.compare([(positional_2d, shape), (pooled_2d, shape)], data=(x, y),
                         shifts="-2:2:2", samples=12)  # fmt: skip
    d = rep.to_dict()
    assert d["schema"] == "interp.compare/1" and len(d["models"]) == 2
    for entry in d["models"]:
        sweep = check_schema(json.dumps(entry))["sweep"]
        assert sweep["shifts"] == [[dy, dx] for dy in (-2, 0, 2) for dx in (-2, 0, 2)]
    assert [m["structure"]["head"]["kind"] for m in d["models"]] == ["positional", "pooled"]
    fig = rep.section("accuracy").figures[0]
    assert fig.name == "compare_accuracy" and fig.width > fig.height  # dy and dx panels
    assert "(dy, dx)" in rep.to_markdown()
