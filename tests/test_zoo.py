"""The zoo: dataset generators, recipes through checkpoints, the training loop, the CLI,
and (slow) the acceptance numbers of the shipped models in trained/."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import interp
from interp.errors import InterpError
from interp.zoo import NAMES, ZOO, Recipe, ZooModel, build, recipe_from_meta, train
from interp.zoo.acceptance import check

TRAINED = Path(__file__).resolve().parent.parent / "trained"

# A small version of the spectra task: 512 bins, patterns a tenth of the size.
TINY_SPECTRA = Recipe(
    "spectra",
    {"length": 512, "shift_range": 10, "band_half_width": 60.0, "band_edge": 1.0,
     "gaussian_sigma": 12.0, "tone_spacing": 30.0, "tone_sigma": 1.5,
     "triangle_half_width": 60.0},
    seed=7,
)  # fmt: skip


def _tiny_cnn() -> nn.Sequential:
    # (N, 1, 512) -> conv (N, 8, 506) -> pool (N, 8, 252) -> (N, 4)
    return nn.Sequential(
        nn.Conv1d(1, 8, 9, padding=1), nn.ReLU(), nn.MaxPool1d(4, 2), nn.Flatten(),
        nn.Linear(8 * 252, 4),
    )  # fmt: skip


TINY = ZooModel("tiny", "tiny spectra CNN", _tiny_cnn, TINY_SPECTRA, epochs=3, n_train=400,
                n_val=200)  # fmt: skip


# --- dataset generators ---------------------------------------------------------


@pytest.mark.parametrize(("generator", "shape"), [("spectra", (1, 8192)), ("shapes", (1, 32, 32))])
def test_sample_shape_dtype_range_balance(generator: str, shape: tuple[int, ...]) -> None:
    x, y = Recipe(generator, seed=3).sample(10, shift_range=5)
    assert x.shape == (10, *shape)
    assert x.dtype == torch.float32
    assert y.dtype == torch.int64
    assert float(x.min()) >= 0.0
    assert float(x.max()) <= 1.0
    assert sorted(torch.bincount(y, minlength=4).tolist()) == [2, 2, 3, 3]


def test_spectra_are_min_max_normalised_per_example() -> None:
    x, _ = Recipe("spectra").sample(6)
    assert torch.equal(x.amin(dim=-1), torch.zeros(6, 1))
    assert torch.equal(x.amax(dim=-1), torch.ones(6, 1))


@pytest.mark.parametrize("generator", ["spectra", "shapes"])
def test_sample_is_deterministic(generator: str) -> None:
    recipe = Recipe(generator, seed=5)
    x1, y1 = recipe.sample(12, seed=11, shift_range=100)
    x2, y2 = recipe.sample(12, seed=11, shift_range=100)
    x3, _ = recipe.sample(12, seed=12, shift_range=100)
    assert torch.equal(x1, x2)
    assert torch.equal(y1, y2)
    assert not torch.equal(x1, x3)


def test_held_out_default_seed_differs_from_training() -> None:
    recipe = Recipe("shapes", seed=5)
    held_out, _ = recipe.sample(8)
    training, _ = recipe.sample(8, seed=recipe.seed)
    assert torch.equal(held_out, recipe.sample(8, seed=recipe.seed + 1_000_000)[0])
    assert not torch.equal(held_out, training)


def _smoothed_peak(row: torch.Tensor, width: int) -> int:
    kernel = np.ones(width) / width
    return int(np.argmax(np.convolve(row.numpy(), kernel, mode="same")))


@pytest.mark.parametrize("shift_range", [0, 300, 2500])
def test_spectra_pattern_offset_within_shift_range(shift_range: int) -> None:
    recipe = Recipe("spectra", seed=1)
    x, y = recipe.sample(40, shift_range=shift_range)
    gaussian = recipe.classes.index("gaussian")
    peaks = [_smoothed_peak(row[0], 101) - 4096 for row in x[y == gaussian]]
    assert all(abs(p) <= shift_range + 40 for p in peaks), peaks
    if shift_range >= 300:
        assert max(peaks) - min(peaks) > shift_range / 4  # offsets really vary


@pytest.mark.parametrize("shift_range", [0, 2, 8])
def test_shapes_centre_within_shift_range(shift_range: int) -> None:
    x, _ = Recipe("shapes", seed=2).sample(40, shift_range=shift_range)
    mass = (x[:, 0] > 0.5).float()  # (N, H, W)
    grid = torch.arange(32.0) - 16
    cy = (mass.sum(2) * grid).sum(1) / mass.sum((1, 2))
    cx = (mass.sum(1) * grid).sum(1) / mass.sum((1, 2))
    # triangles have their centre of mass below the centre of their box
    assert float(cy.abs().max()) <= shift_range + 2.5
    assert float(cx.abs().max()) <= shift_range + 1.0


def test_spectra_generation_is_fast() -> None:
    import time

    start = time.perf_counter()
    Recipe("spectra").sample(500)
    assert time.perf_counter() - start < 10.0  # about 0.3 s on one core


def test_recipe_properties() -> None:
    spectra, shapes = Recipe("spectra"), Recipe("shapes")
    assert spectra.train_shift_range == 300
    assert shapes.train_shift_range == 2
    assert spectra.classes == ("band", "gaussian", "tones", "triangle")
    assert len(shapes.classes) >= 4
    assert spectra.axis == [{"name": "frequency", "unit": "Hz", "start": -4096.0, "step": 1.0}]
    assert [a["name"] for a in shapes.axis] == ["y", "x"]


def test_recipe_rejects_bad_input() -> None:
    with pytest.raises(InterpError, match="`generator` 'audio'"):
        Recipe("audio")
    with pytest.raises(InterpError, match="`params` 'colour'"):
        Recipe("shapes", {"colour": 1})
    with pytest.raises(ValueError, match="`shift_range`"):
        Recipe("shapes").sample(4, shift_range=-1)
    with pytest.raises(TypeError, match="`n`"):
        Recipe("shapes").sample(4.0)  # type: ignore[arg-type]


def test_recipe_from_meta() -> None:
    recipe = Recipe("spectra", {"peak_db": [25.0, 30.0]}, seed=9)
    assert recipe_from_meta({"recipe": recipe.to_dict()}) == recipe
    assert recipe_from_meta({"classes": ["a"]}) is None
    with pytest.raises(InterpError, match="recipe"):
        recipe_from_meta({"recipe": ["spectra"]})


def test_recipe_round_trips_through_a_checkpoint(tmp_path: Path) -> None:
    recipe = Recipe("shapes", {"noise": 0.05}, seed=4)
    path = tmp_path / "m.pt"
    interp.save(build("shapes_gap"), path, meta={"recipe": recipe.to_dict()})
    raw = torch.load(path, weights_only=True, map_location="cpu")
    assert recipe_from_meta(raw["meta"]) == recipe
    _, info = interp.load(path)
    assert info.recipe == recipe
    x1, y1 = info.recipe.sample(6, shift_range=8)
    x2, y2 = recipe.sample(6, shift_range=8)
    assert torch.equal(x1, x2)
    assert torch.equal(y1, y2)


# --- models -------------------------------------------------------------------


def test_seed_cnn_architecture_is_exactly_the_case() -> None:
    model = build("seed_cnn")
    assert [type(m).__name__ for m in model] == [
        "Conv1d", "ReLU", "MaxPool1d", "Dropout", "Flatten", "Linear",
    ]  # fmt: skip
    conv, pool, drop, lin = model[0], model[2], model[3], model[5]
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.padding) == (
        1, 64, (128,), (1,),
    )  # fmt: skip
    assert (pool.kernel_size, pool.stride, drop.p) == (16, 2, 0.25)
    assert (lin.in_features, lin.out_features) == (257664, 4)


@pytest.mark.parametrize("name", NAMES)
def test_every_model_builds_and_fits_its_recipe(name: str) -> None:
    recipe = ZOO[name].recipe
    x, _ = recipe.sample(2)
    with torch.no_grad():
        assert build(name).eval()(x).shape == (2, len(recipe.classes))


def test_unknown_name_lists_the_zoo() -> None:
    with pytest.raises(InterpError, match="seed_cnn, seed_gap"):
        build("resnet")


# --- training loop ------------------------------------------------------------


def test_tiny_training_run_learns_and_is_deterministic(tmp_path: Path) -> None:
    rng_before = torch.get_rng_state()
    threads = torch.get_num_threads()
    model1, meta = train(TINY, out=tmp_path / "tiny.pt", progress=False, threads=1)
    model2, _ = train(TINY, progress=False, threads=1)
    assert meta["training"]["accuracy_val"] >= 0.9
    for (k, a), b in zip(model1.state_dict().items(), model2.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert not model1.training
    # the caller's torch state is untouched
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert torch.get_num_threads() == threads
    assert not torch.are_deterministic_algorithms_enabled()
    # the checkpoint carries the metadata interp reads
    loaded, info = interp.load(tmp_path / "tiny.pt")
    assert info.recipe == TINY_SPECTRA
    assert info.meta["classes"] == list(TINY_SPECTRA.classes)
    assert info.meta["input_shape"] == [1, 512]
    assert info.meta["axis"][0]["unit"] == "Hz"
    assert {"epochs", "batch_size", "lr", "n_train", "shift_augmentation", "seconds",
            "torch_version", "accuracy_train", "accuracy_val"} <= set(meta["training"])  # fmt: skip
    x, _ = TINY_SPECTRA.sample(4)
    assert torch.equal(loaded(x), model1(x))


def test_shift_augmentation_rolls_each_example() -> None:
    from interp.zoo.training import _random_roll

    x = torch.arange(20.0).repeat(6, 1, 1)  # (6, 1, 20)
    rolled = _random_roll(x, 5, torch.Generator().manual_seed(0))
    firsts = rolled[:, 0, 0]
    for row, first in zip(rolled, firsts, strict=True):
        s = int(-first) % 20
        assert torch.equal(row, torch.roll(x[0], s, dims=-1))
        assert s <= 5 or s >= 15
    assert len(set(firsts.tolist())) > 1


def test_shift_accuracy_equals_a_plain_roll_loop() -> None:
    from interp.zoo.evaluate import roll_accuracy, shift_accuracy

    torch.manual_seed(0)
    model = _tiny_cnn().eval()
    x, y = TINY_SPECTRA.sample(24)
    shifts = [0, 7, -100, 256]
    assert shift_accuracy(model, x, y, shifts) == roll_accuracy(model, x, y, shifts, 8)
    x2, y2 = Recipe("shapes").sample(24)
    model2 = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(),
                           nn.Linear(3 * 32 * 32, 4)).eval()  # fmt: skip
    grid = [(0, 0), (3, -2), (8, 8)]
    assert shift_accuracy(model2, x2, y2, grid) == roll_accuracy(model2, x2, y2, grid, 8)


# --- command line ---------------------------------------------------------------


@pytest.fixture
def app():
    import click

    from interp.cli.main import InterpGroup
    from interp.cli.train_cmd import train as train_cmd

    @click.group(cls=InterpGroup)
    def group() -> None:
        pass

    group.add_command(train_cmd)
    return group


def test_cli_list(app) -> None:
    result = CliRunner().invoke(app, ["train", "--list"], catch_exceptions=False)
    assert result.exit_code == 0
    assert [line.split()[0] for line in result.output.splitlines()] == list(NAMES)


def test_cli_unknown_name_exits_2(app) -> None:
    result = CliRunner().invoke(app, ["train", "resnet"], catch_exceptions=False)
    assert result.exit_code == 2
    assert "seed_cnn" in result.output


def test_cli_trains_and_writes(app, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ZOO, "tiny", TINY)
    out = tmp_path / "sub" / "tiny.pt"
    result = CliRunner().invoke(app, ["train", "tiny", "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output
    assert torch.load(out, weights_only=True, map_location="cpu")["meta"]["name"] == "tiny"


# --- the shipped models (slow) --------------------------------------------------


@pytest.mark.slow
def test_trained_folder_is_small() -> None:
    sizes = {p.name: p.stat().st_size for p in TRAINED.glob("*.pt")}
    assert set(sizes) == {f"{n}.pt" for n in NAMES}
    assert all(s < 5e6 for s in sizes.values()), sizes
    assert sum(sizes.values()) < 15e6


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_trained_model_meets_acceptance(name: str) -> None:
    path = TRAINED / f"{name}.pt"
    raw = torch.load(path, weights_only=True, map_location="cpu")
    assert raw["meta"]["name"] == name
    assert {"classes", "input_shape", "axis", "recipe", "training"} <= set(raw["meta"])
    model, info = interp.load(path)
    assert info.recipe == ZOO[name].recipe
    results = check(name, model, n=128, seed=12345, full=False)
    failed = [f"{r.label}: worst {r.worst:.3f} ({r.rule})" for r in results if not r.passed]
    assert not failed, failed
