"""One result protocol: every analysis result has to_dict(), plot(ax=None) and sentences().

Oracles: strict JSON (``allow_nan=False``); the report's own Markdown for the same model,
data and settings, which must contain every sentence a result says about itself (the
report is where those sentences are shown); the model's own logits for the numbers a
decomposition states; IPython's display formatter for what Jupyter shows.
"""

from __future__ import annotations

import dataclasses
import html
import json
import re
from typing import Any

import pytest
import torch
from conftest import _seeded
from matplotlib.figure import Figure
from torch import nn

import interp
from interp.reporting.choose import equivariance_shifts
from interp.reporting.sections_data import EQUIVARIANCE_SAMPLES

SHIFTS = [-8, -4, 0, 4, 8]
CLASSES = ["0", "1", "2"]


def _model() -> nn.Sequential:
    """conftest's positional_1d: Conv1d -> ReLU -> MaxPool -> Dropout -> Flatten -> Linear."""
    model = nn.Sequential(
        nn.Conv1d(1, 4, 7, padding=1), nn.ReLU(), nn.MaxPool1d(4, 2), nn.Dropout(0.25),
        nn.Flatten(), nn.Linear(4 * 29, 3),
    )  # fmt: skip
    return _seeded(model, 0)


def _plain(markdown: str) -> str:
    """Markdown text as a reader sees it: backslash escapes and HTML entities undone."""
    return html.unescape(re.sub(r"\\(.)", r"\1", markdown))


@pytest.fixture(scope="module")
def case() -> dict[str, Any]:
    """The model, its data, the report on them, and every result built the same way."""
    model = _model()
    x = torch.rand(12, 1, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        y = model(x).argmax(1)  # labels the model gets right unshifted
    rep = interp.report(model, None, data=(x, y), shifts=SHIFTS, samples=12, method="saliency")
    content = rep.to_dict()
    geo = interp.structure(model, x[:1])
    conn = interp.connectivity(model, geo, x=x, y=y, classes=CLASSES)
    expl = content["explanation"]
    attr = content["attribution"]
    index = attr["samples"]
    results = {
        "sweep": interp.shift_sweep(model, x, y, SHIFTS, structure=geo, classes=CLASSES),
        "equivariance": interp.equivariance(
            model, x[:EQUIVARIANCE_SAMPLES], equivariance_shifts(geo, SHIFTS), structure=geo
        ),
        "connectivity": conn,
        "footprint": conn.footprint,
        "decomposition": interp.decompose(model, x[:2], geo),
        "explanation": interp.explain_shift(
            model, x[expl["samples"][0] : expl["samples"][0] + 1], int(y[expl["samples"][0]]),
            expl["shift"], structure=geo, connectivity=conn,
        ),
        "attribution": interp.attribution_across_shifts(
            model, x[index], y[index], attr["shifts"], method="saliency", structure=geo
        ),
        "report": rep,
    }  # fmt: skip
    return {"model": model, "x": x, "md": _plain(rep.to_markdown()), "results": results}


NAMES = ["sweep", "equivariance", "connectivity", "footprint", "decomposition", "explanation",
         "attribution", "report"]  # fmt: skip
IN_REPORT = ["sweep", "equivariance", "connectivity", "explanation", "attribution", "report"]
HOLDS_TENSORS = ["connectivity", "footprint", "decomposition", "explanation", "attribution"]


@pytest.mark.parametrize("name", NAMES)
def test_to_dict_is_strict_json(case, name):
    out = case["results"][name].to_dict()
    assert isinstance(out, dict)
    assert json.loads(json.dumps(out, allow_nan=False)) == json.loads(json.dumps(out))


@pytest.mark.parametrize("name", NAMES)
def test_plot_returns_a_figure_and_draws_into_a_given_ax(case, name):
    result = case["results"][name]
    fig = result.plot()
    assert isinstance(fig, Figure) and fig.axes
    png = fig._repr_png_()  # what Jupyter shows for a returned Figure
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    mine = Figure()
    ax = mine.subplots()
    assert result.plot(ax=ax) is mine and ax.has_data()


@pytest.mark.parametrize("name", NAMES)
def test_sentences_are_plain_strings(case, name):
    sentences = case["results"][name].sentences()
    assert isinstance(sentences, list) and sentences
    assert all(isinstance(s, str) and s.strip() for s in sentences)


@pytest.mark.parametrize("name", IN_REPORT)
def test_sentences_are_the_reports_own(case, name):
    """Each sentence appears in the report made from the same model, data and settings."""
    missing = [s for s in case["results"][name].sentences() if s not in case["md"]]
    assert not missing, missing


def test_report_sentences_lead_with_the_verdict(case):
    rep = case["results"]["report"]
    verdict = rep.verdict
    sentences = rep.sentences()
    assert sentences[0].startswith(verdict["headline"].rstrip("."))
    assert set(verdict["reasons"]) <= set(sentences)
    assert set(verdict["suggestions"]) <= set(sentences)


def test_decomposition_sentences_state_the_models_own_logits(case):
    """The numbers come from model(x): the top logit, its class and the bias of the Linear."""
    model, x = case["model"], case["x"][:2]
    with torch.no_grad():
        logits = model(x)
    bias = model[-1].bias.detach()
    for n, sentence in enumerate(case["results"]["decomposition"].sentences()):
        k = int(logits[n].argmax())
        assert sentence.startswith(f"Sample {n}: the logit of class {k}, the highest, is "
                                   f"{float(logits[n, k]):.2f} = bias {float(bias[k]):+.2f} ")


def test_footprint_sentences_name_every_class_with_its_count(case):
    fp = case["results"]["footprint"]
    y = case["model"](case["x"]).argmax(1)
    for k, sentence in enumerate(fp.sentences()):
        assert f"'{CLASSES[k]}'" in sentence
        assert f"({int((y == k).sum())} samples)" in sentence


def _containers(value: Any) -> list[type]:
    """Types of lists/dicts anywhere inside ``value`` (tensors and dataclasses aside)."""
    if isinstance(value, (list, dict, set)):
        return [type(value)]
    if isinstance(value, tuple):
        return [t for v in value for t in _containers(v)]
    return []


@pytest.mark.parametrize("name", NAMES)
def test_frozen_fields_hold_tuples_not_lists_or_dicts(case, name):
    result = case["results"][name]
    for field in dataclasses.fields(result):
        value = getattr(result, field.name)
        assert not _containers(value), f"{name}.{field.name} holds {_containers(value)}"
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(result, dataclasses.fields(result)[0].name, None)


@pytest.mark.parametrize("name", HOLDS_TENSORS)
def test_results_with_tensors_compare_by_identity(case, name):
    """eq=False: == on tensors is elementwise, so a copy is a different result, and hash works."""
    result = case["results"][name]
    copy = dataclasses.replace(result)
    assert result == result and copy != result
    assert hash(result) == hash(result) and hash(copy) != hash(result)


@pytest.mark.parametrize("name", ["sweep", "equivariance", "report"])
def test_results_of_plain_values_compare_by_value(case, name):
    result = case["results"][name]
    copy = dataclasses.replace(result)
    assert copy == result and copy is not result and hash(copy) == hash(result)


def test_jupyter_shows_figures_and_the_report():
    """IPython's formatter (what a kernel runs on a cell's value) finds PNG and HTML."""
    from IPython.core.formatters import DisplayFormatter

    model = _model()
    x = torch.rand(4, 1, 64, generator=torch.Generator().manual_seed(1))
    sw = interp.shift_sweep(model, x, model(x).argmax(1), [-4, 0, 4])
    data, _ = DisplayFormatter().format(sw.plot())
    assert data["image/png"].startswith(b"\x89PNG")
    rep = interp.report(model, None)  # structure and connectivity only: no data
    data, _ = DisplayFormatter().format(rep)
    assert "translation invariant?" in data["text/html"]
    with pytest.raises(interp.InterpError, match="no shift sweep"):
        rep.plot()


def test_2d_results_plot_into_one_given_ax():
    """2D figures have a panel per class without ``ax``; with one, they draw into it."""
    model = _seeded(nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(3 * 6 * 6, 4)), 2)  # fmt: skip
    x = torch.rand(8, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    y = model(x).argmax(1)
    geo = interp.structure(model, x[:1])
    conn = interp.connectivity(model, geo, x=x, y=y)
    results = [
        conn, conn.footprint, interp.decompose(model, x[:2], geo),
        interp.shift_sweep(model, x, y, [(0, 0), (2, 0), (0, 2), (2, 2)], structure=geo),
        interp.explain_shift(model, x[:1], int(y[0]), (2, 2), structure=geo, connectivity=conn),
    ]  # fmt: skip
    for result in results:
        json.dumps(result.to_dict(), allow_nan=False)
        mine = Figure()
        ax = mine.subplots()
        assert result.plot(ax=ax) is mine and ax.get_images(), type(result).__name__
        assert isinstance(result.plot(), Figure) and result.sentences()
