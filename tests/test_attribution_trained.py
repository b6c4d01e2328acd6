"""Attribution across shifts on the shipped models: the positional head loses the explanation."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

import interp
from interp.attribution.core import attribution_across_shifts
from interp.cli.main import main

pytestmark = pytest.mark.slow
TRAINED = Path(__file__).resolve().parents[1] / "trained"
SHIFTS = [(0, 0), (4, 0), (0, -4), (8, 8)]  # multiples of the trunk's stride 4


def _load(name: str):
    path = TRAINED / f"{name}.pt"
    if not path.exists():
        pytest.skip(f"{path} is not trained yet")
    return interp.load(path)


@pytest.mark.parametrize(("name", "follows"), [("shapes_cnn", False), ("shapes_gap", True)])
def test_integrated_gradients_follow_the_shift_only_with_global_pooling(name, follows):
    model, info = _load(name)
    x, y = info.recipe.sample(8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cmp = attribution_across_shifts(model, x, y, SHIFTS, axis=info.meta.get("axis"))
    worst = float(cmp.similarity[1:].min())
    assert (worst > 0.9) if follows else (worst < 0.5), cmp.similarity
    verdict = "moves with the input:" if follows else "does not move with the input"
    assert verdict in " ".join(cmp.sentences())


def test_cli_on_a_zoo_model_without_data():
    path = TRAINED / "shapes_cnn.pt"
    if not path.exists():
        pytest.skip(f"{path} is not trained yet")
    args = ["attribute", str(path), "--index", "0", "--shifts", "y:0,8;x:0", "--json"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)["attribution"]
    assert data["shifts"] == [[0, 0], [8, 0]] and data["aligned_similarity"][0] == 1.0
