"""`interp attribute`: one sample's attribution across shifts from the command line."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import interp
from interp.attribution.core import attribution_across_shifts
from interp.cli.main import main
from interp.loading.examples import examples

pytestmark = pytest.mark.filterwarnings("ignore:integrated_gradients. the convergence delta")


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def files(tmp_path, positional_1d):
    model_path = tmp_path / "model.pt"
    axis = [{"name": "wavelength", "unit": "nm", "start": 400.0, "step": 0.5}]
    interp.save(positional_1d, model_path, meta={"classes": ["a", "b", "c"], "axis": axis,
                                                 "input_shape": [1, 64]})  # fmt: skip
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(5, 1, 64, generator=gen)
    y = torch.tensor([0, 1, 2, 0, 1])
    data_path = tmp_path / "data.npz"
    np.savez(data_path, x=x.numpy(), y=y.numpy())
    return model_path, data_path, x, y


def test_json_equals_the_library_on_that_sample(runner, files, positional_1d):
    model_path, data_path, x, y = files
    args = ["attribute", str(model_path), "--data", str(data_path), "--index", "3",
            "--shifts", "-8,0,8", "--method", "saliency", "--json"]  # fmt: skip
    result = runner.invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)["attribution"]
    expected = attribution_across_shifts(positional_1d, x[3:4], y[3:4], [-8, 0, 8],
                                         method="saliency").to_dict()  # fmt: skip
    assert data["method"] == "saliency" and data["shifts"] == [-8, 0, 8]
    assert data["target"] == [0]
    assert data["aligned_similarity"] == pytest.approx(expected["aligned_similarity"])
    assert data["axis"][0]["unit"] == "nm"


def test_text_table_and_png(runner, files, tmp_path):
    model_path, data_path, _, _ = files
    out = tmp_path / "fig" / "attr.png"
    args = ["attribute", str(model_path), "--data", str(data_path), "--index", "1", "--shifts",
            "-4:4:4", "--shift-mode", "zero", "--steps", "8", "--out", str(out)]  # fmt: skip
    result = runner.invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "integrated_gradients of" in lines[0] and "(label 1, target 1)" in lines[0]
    header = ["shift", "(nm)", "pearson", "cosine", "peak", "off", "by", "(nm)", "p(target)"]
    assert lines[1].split() == header
    assert [line.split()[0] for line in lines[2:5]] == ["-2", "0", "2"]  # 4 bins of 0.5 nm
    assert lines[3].split()[:3] == ["0", "1.00", "1.00"]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["attr.png"]  # no temporary left


def test_zoo_model_without_data_uses_its_recipe(runner, tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(2 * 8 * 8, 4))  # fmt: skip
    recipe = {"generator": "shapes", "params": {"size": 16}, "seed": 0}
    path = tmp_path / "zoo.pt"
    interp.save(model, path, meta={"recipe": recipe, "input_shape": [1, 16, 16]})
    args = ["attribute", str(path), "--index", "2", "--method", "layer_gradcam", "--json"]
    result = runner.invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["sample"]["source"] == "example 2 of 300 held-out examples from the shapes recipe"
    shifts = data["attribution"]["shifts"]
    # The report's choice with no sweep: +-the largest default shift (16 // 4 = 4), through 0.
    assert shifts == [[-4, -4], [-2, -2], [0, 0], [2, 2], [4, 4]]
    _, loaded_info = interp.load(path)
    _, y, _ = examples(loaded_info, None, 300, 0)  # the report's draw: its sample 2 is ours
    assert data["sample"]["label"] == int(y[2])
    zero = shifts.index([0, 0])
    assert data["attribution"]["pearson"][0][zero] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--index", "5"], "`--index` 5 is out of range: the examples are numbered 0..4"),
        (["--index", "-1"], "'--index': -1 is not in the range x>=0"),
        (["--index", "0", "--method", "saliency", "--steps", "5"], "`--steps` applies to path"),
        (["--index", "0", "--target", "7"], "`target` 7 is out of range .* 3 classes"),
        (["--index", "0", "--shifts", "a:b"], "`shifts` 'a:b' is not a shift spec"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(runner, files, extra, message):
    model_path, data_path, _, _ = files
    result = runner.invoke(main, ["attribute", str(model_path), "--data", str(data_path), *extra])
    assert result.exit_code == 2
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1
    assert re.search(message, error[0]), result.output


def test_model_without_recipe_needs_data(runner, files):
    model_path, _, _, _ = files
    result = runner.invoke(main, ["attribute", str(model_path), "--index", "0"])
    assert result.exit_code == 2
    assert "carries no dataset recipe" in result.output and "`--data FILE`" in result.output
