"""`interp report` and `interp compare` end to end on tiny saved models.

Oracles: the strict interp.report/1 checker (test_report.check_schema), the
hand-set models whose shift behaviour is known exactly, and the files on disk.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result
from test_report import SECTION_IDS, check_schema, pooled_model, positional_model, templates
from torch import nn

import interp
from interp.cli.main import main
from interp.reporting.jsonio import without_volatile
from interp.zoo.datasets import Recipe

# A spectra recipe shrunk to 64 bins, so a zoo-like checkpoint regenerates its own data.
TINY_RECIPE = Recipe("spectra", {"length": 64, "shift_range": 4, "band_half_width": 8.0,
                                 "gaussian_sigma": 3.0, "tone_spacing": 5.0, "tone_sigma": 1.0,
                                 "triangle_half_width": 6.0}, seed=0)  # fmt: skip
FAST = ["--samples", "16", "--quiet"]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """zoo.pt (untrained, with a recipe), positional.pt / pooled.pt (hand-set), data.npz."""
    root = tmp_path_factory.mktemp("models")
    gen = torch.Generator().manual_seed(0)
    zoo = nn.Sequential(nn.Conv1d(1, 4, 7, padding=1), nn.ReLU(), nn.MaxPool1d(4, 2),
                        nn.Dropout(0.25), nn.Flatten(), nn.Linear(4 * 29, 4)).eval()  # fmt: skip
    with torch.no_grad():
        for p in zoo.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    meta = {"name": "tiny_zoo", "classes": list(TINY_RECIPE.classes), "input_shape": [1, 64],
            "axis": TINY_RECIPE.axis, "recipe": TINY_RECIPE.to_dict()}  # fmt: skip
    out = {"zoo": root / "zoo.pt", "positional": root / "positional.pt",
           "pooled": root / "pooled.pt", "data": root / "data.npz"}  # fmt: skip
    interp.save(zoo, out["zoo"], meta=meta)
    hand = {"input_shape": [1, 32], "classes": ["a", "b", "c", "d"]}
    interp.save(positional_model(), out["positional"], meta=hand)
    interp.save(pooled_model(), out["pooled"], meta=hand)
    x, y = templates(40)
    np.savez(out["data"], x=x.numpy(), y=y.numpy())
    return out


def run(args: list[object]) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def zoo_run(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("zoo") / "report"
    result = run(["report", files["zoo"], "--out", out, "--json", *FAST])
    return out, result


def test_zoo_model_needs_no_data_and_writes_every_file(zoo_run):
    out, result = zoo_run
    assert result.exit_code == 0, result.output
    text = (out / "report.json").read_text()
    d = check_schema(text)
    assert json.loads(result.stdout) == d  # --json prints the same report
    assert d["data"]["path"] == "recipe" and d["data"]["n"] == 16
    assert d["data"]["recipe"] == TINY_RECIPE.to_dict()
    assert d["settings"]["shifts"] == "-32:32:1"  # the default: the whole input
    assert [s["id"] for s in d["sections"]] == SECTION_IDS
    assert all(s["available"] for s in d["sections"])
    pngs = sorted(p.name for p in (out / "figures").iterdir())
    assert pngs and all(p.endswith(".png") for p in pngs)
    md, html = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert sorted(re.findall(r"\(figures/([^)]+\.png)\)", md)) == pngs
    assert html.count('src="data:image/png;base64,') == len(pngs)
    assert result.stderr == ""  # not a terminal: no progress bar


def test_same_seed_gives_identical_json_but_for_time(zoo_run, files, tmp_path):
    out, _ = zoo_run
    again = tmp_path / "again"
    assert run(["report", files["zoo"], "--out", again, *FAST]).exit_code == 0
    a, b = (json.loads((p / "report.json").read_text()) for p in (out, again))
    assert a["created"] and a["timings"]  # present, and the only things allowed to differ
    dump = [json.dumps(without_volatile(v), sort_keys=True).encode() for v in (a, b)]
    assert dump[0] == dump[1]


def test_user_model_with_data_file_is_measured(files, tmp_path):
    out = tmp_path / "r"
    result = run(["report", files["positional"], "--data", files["data"], "--out", out,
                  "--shifts", "-16:16:4", "--samples", "40"])  # fmt: skip
    assert result.exit_code == 0, result.output
    d = check_schema((out / "report.json").read_text())
    assert d["data"]["path"] == str(files["data"]) and d["data"]["n"] == 40
    assert d["verdict"]["translation_invariant"] is False and d["verdict"]["basis"] == "measured"
    assert "The model is not translation invariant" in result.stdout  # ":" + any collapse
    assert "from 100.0% at 0 samples to 25.0%" in (out / "report.md").read_text()


def test_user_model_without_data_says_what_data_would_add(files, tmp_path):
    out = tmp_path / "r"
    result = run(["report", files["positional"], "--out", out])
    assert result.exit_code == 0, result.output
    d = check_schema((out / "report.json").read_text())
    assert d["data"] is None and d["connectivity"] is not None
    available = {s["id"]: s["available"] for s in d["sections"]}
    assert not available["shifts"] and not available["attribution"]
    assert "no data: pass --data" in result.stdout
    assert "no data: pass --data FILE" in (out / "report.md").read_text()


def test_default_out_dir_is_a_new_folder_in_the_current_one(files, tmp_path, monkeypatch):
    """interp-report-<stem>/ beside the user, never the package's committed reports/."""
    monkeypatch.chdir(tmp_path)
    result = run(["report", files["pooled"], "--quiet"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["interp-report-pooled"]
    assert (tmp_path / "interp-report-pooled" / "report.html").is_file()
    assert "Wrote interp-report-pooled/report.html" in result.stdout
    again = run(["report", files["pooled"], "--quiet"])
    assert again.exit_code == 2
    assert again.output.startswith("Error: `--out` ") and "--force" in again.output
    assert run(["report", files["pooled"], "--quiet", "--force"]).exit_code == 0


def _bad(files: dict[str, Path], tmp_path: Path) -> dict[str, tuple[list[object], str]]:
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x=np.zeros((3, 1, 20), np.float32), y=np.zeros(3, np.int64))
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    m = files["pooled"]
    return {
        "missing model": (["report", tmp_path / "nope.pt"], "does not exist"),
        "bad shifts": (["report", m, "--shifts", "a:b"], "`shifts`"),
        "zero samples": (["report", m, "--samples", "0"], "--samples"),
        "data does not fit": (["report", m, "--data", wrong], str(wrong)),
        "unknown method": (["report", m, "--data", files["data"], "--method", "nope"],
                           "'--method': 'nope' is not one of"),
        "out is a file": (["report", m, "--out", a_file], "a_file"),
        "no cuda": (["report", m, "--device", "cuda"], "cuda"),
        "one model to compare": (["compare", m], "at least two"),
    }  # fmt: skip


@pytest.mark.parametrize("case", ["missing model", "bad shifts", "zero samples",
                                  "data does not fit", "unknown method", "out is a file",
                                  "no cuda", "one model to compare"])  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(files, tmp_path, monkeypatch, case):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args, needle = _bad(files, tmp_path)[case]
    result = run([*args, "--out", tmp_path / "out"] if "--out" not in args else args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("Error:") and needle in lines[-1], result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_compare_puts_models_side_by_side(files, tmp_path):
    out = tmp_path / "cmp"
    result = run(["compare", files["positional"], files["pooled"], "--data", files["data"],
                  "--out", out, "--shifts", "-16:16:4", "--samples", "40"])  # fmt: skip
    assert result.exit_code == 0, result.output
    d = json.loads((out / "report.json").read_text(), parse_constant=pytest.fail)
    assert d["schema"] == "interp.compare/1" and d["names"] == ["positional", "pooled"]
    for entry in d["models"]:
        check_schema(json.dumps(entry))
    assert [m["verdict"]["translation_invariant"] for m in d["models"]] == [False, True]
    assert d["models"][0]["data"] == d["models"][1]["data"]  # the same examples
    assert (out / "figures" / "compare_accuracy.png").is_file()
    md = (out / "report.md").read_text()
    assert "| positional | NO |" in md and "| pooled | yes |" in md
    assert "figures/compare_connectivity_0.png" in md and "figures/compare_connectivity_1.png" in md


def test_compare_takes_its_axis_from_the_data_file_as_report_does(files, tmp_path):
    """`units`/`sample_spacing` in --data set every model's axis (flags still win)."""
    with np.load(files["data"]) as f:
        np.savez(tmp_path / "hz.npz", x=f["x"], y=f["y"], units="Hz", sample_spacing=0.5)
    out = tmp_path / "cmp"
    result = run(["compare", files["positional"], files["pooled"], "--data", tmp_path / "hz.npz",
                  "--out", out, "--shifts", "0,4", "--samples", "8", "--method", "saliency",
                  "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    d = json.loads((out / "report.json").read_text())
    assert [m["axis"] for m in d["models"]] == [[{"unit": "Hz", "step": 0.5}]] * 2
    assert "+2 Hz" in (out / "report.md").read_text()  # shift 4 at 0.5 Hz a position
    result = run(["compare", files["positional"], files["pooled"], "--data", tmp_path / "hz.npz",
                  "--out", out, "--force", "--shifts", "0,4", "--samples", "8", "--method",
                  "saliency", "--quiet", "--unit", "ms"])  # fmt: skip
    assert result.exit_code == 0, result.output
    d = json.loads((out / "report.json").read_text())
    assert [m["axis"] for m in d["models"]] == [[{"unit": "ms", "step": 0.5}]] * 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_report_on_cuda(files, tmp_path):
    out = tmp_path / "r"
    result = run(["report", files["positional"], "--data", files["data"], "--out", out,
                  "--shifts", "-16:16:4", "--samples", "40", "--device", "cuda"])  # fmt: skip
    assert result.exit_code == 0, result.output
    d = check_schema((out / "report.json").read_text())
    assert d["settings"]["device"] == "cuda" and d["verdict"]["basis"] == "measured"


@pytest.mark.slow
def test_shipped_seed_models_side_by_side(tmp_path):
    root = Path(__file__).resolve().parents[2] / "trained"
    names = ["seed_cnn", "seed_gap", "seed_aug"]
    out = tmp_path / "cmp"
    # saliency: Integrated Gradients' 50 steps per map were half of this test's time
    result = run(["compare", *[root / f"{n}.pt" for n in names], "--out", out,
                  "--samples", "64", "--shifts=-4000:4000:500", "--quiet",
                  "--method", "saliency"])  # fmt: skip
    assert result.exit_code == 0, result.output
    d = json.loads((out / "report.json").read_text())
    verdicts = {n: m["verdict"] for n, m in zip(d["names"], d["models"], strict=True)}
    assert set(verdicts) == set(names)
    for m in d["models"]:
        check_schema(json.dumps(m))
        assert m["data"]["path"] == "recipe"  # the first model's recipe, for all three
    cnn, gap = verdicts["seed_cnn"], verdicts["seed_gap"]
    assert cnn["translation_invariant"] is False and cnn["basis"] == "measured"
    assert any("global pooling" in s for s in cnn["suggestions"])
    assert gap["translation_invariant"] is True and gap["basis"] == "measured"
    assert (out / "figures" / "compare_accuracy.png").is_file()
