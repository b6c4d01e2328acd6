"""Every metadata field interp reads from a checkpoint is checked for type and range.

The oracle is the type each field must have (the zoo generator's own default for a
recipe parameter) and the range a sane file stays in; each bad value is refused in
one line naming the field, before anything is sampled or allocated.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _files import make_tiny

import interp
from interp.errors import InterpError
from interp.loading import checkpoint


def _write(path: Path, meta: dict) -> Path:
    # Bypass interp.save's own checks: a hand-made file says whatever it likes.
    payload = checkpoint.pack(make_tiny(), {})
    payload["meta"] = meta
    torch.save(payload, path)
    return path


def _recipe(**params) -> dict:
    return {"recipe": {"generator": "spectra", "params": params, "seed": 0}}


BAD = {
    "half_size int for a pair": ({"recipe": {"generator": "shapes",
                                             "params": {"half_size": 5}, "seed": 0}},
                                 "['half_size']", "pair"),
    "length str": (_recipe(length="abc"), "['length']", "int in 8..1048576"),
    "length negative": (_recipe(length=-5), "['length']", "int in 8..1048576"),
    "length 2**31-1": (_recipe(length=2**31 - 1), "['length']", "int in 8..1048576"),
    "length 3e8 float": (_recipe(length=3e8), "['length']", "int in 8..1048576"),
    "length bool": (_recipe(length=True), "['length']", "int"),
    "welch_segments 0": (_recipe(welch_segments=0), "['welch_segments']", "int in 1..10000"),
    "peak_db reversed": (_recipe(peak_db=[30.0, 20.0]), "['peak_db']", "lo <= hi"),
    "bin_hz zero": (_recipe(bin_hz=0.0), "['bin_hz']", "> 0"),
    "width_jitter 1": (_recipe(width_jitter=1.5), "['width_jitter']", "below 1"),
    "unknown param": (_recipe(colour=3), "unknown 'colour'", "known:"),
    "unknown generator": ({"recipe": {"generator": "audio", "params": {}, "seed": 0}},
                          "['generator']", "shapes, spectra"),
    "seed negative": ({"recipe": {"generator": "spectra", "params": {}, "seed": -1}},
                      "['seed']", "0..2**63-1"),
    "recipe not a dict": ({"recipe": [1, 2]}, "`meta['recipe']`", "dict"),
    "params not a dict": ({"recipe": {"generator": "spectra", "params": [1]}}, "['params']",
                          "dict"),
    "input_shape 4 axes": ({"input_shape": [1, 2, 3, 4]}, "['input_shape']", "[C, L]"),
    "input_shape zero": ({"input_shape": [1, 0]}, "['input_shape']", "[C, L]"),
    "classes ints": ({"classes": [1, 2]}, "['classes']", "str"),
    "classes empty": ({"classes": []}, "['classes']", "list of class names"),
    "axis three entries": ({"input_shape": [1, 16], "axis": [{}, {}, {}]}, "['axis']",
                           "one entry per spatial axis (1)"),
    "axis step zero": ({"axis": [{"name": "t", "step": 0}]}, "['step']", "must not be 0"),
    "axis start str": ({"axis": [{"start": "left"}]}, "['start']", "finite number"),
    "axis unit long": ({"axis": [{"unit": "u" * 500}]}, "['unit']", "short str"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_metadata_is_refused_in_one_line_naming_the_field(tmp_path: Path, name: str):
    meta, field, words = BAD[name]
    path = _write(tmp_path / "m.pt", meta)
    with pytest.raises(InterpError) as err:
        interp.load(path)
    text = str(err.value)
    assert "\n" not in text and str(path) in text, text
    assert field in text and words in text, text


def test_good_metadata_loads_and_is_kept(tmp_path: Path):
    meta = {
        "input_shape": [1, 16], "classes": ["a", "b"],
        "axis": [{"name": "frequency", "unit": "Hz", "start": -8.0, "step": 1.0}],
        **_recipe(length=64, shift_range=4, peak_db=[20, 30.5]),
    }  # fmt: skip
    _, info = interp.load(_write(tmp_path / "m.pt", meta))
    assert info.input_shape == (1, 16) and info.classes == ("a", "b")
    assert info.meta["axis"][0]["unit"] == "Hz"
    assert info.recipe.input_shape == (1, 64)
    x, _ = info.recipe.sample(2)
    assert x.shape == (2, 1, 64)


def test_recipe_input_shape_over_the_budget_is_refused(tmp_path: Path):
    # 2**20 bins are within range, but 4 MiB per sample x 16 is over a 32 MiB budget.
    path = _write(tmp_path / "m.pt", _recipe(length=2**20))
    with pytest.raises(InterpError, match=r"recipe's input shape.*--max-memory"):
        interp.load(path, max_memory="32M")
    interp.load(path)  # within the default budget
