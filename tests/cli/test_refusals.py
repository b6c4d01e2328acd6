"""Every refusal is one line on stderr, exit 2; `--out` is checked before any work."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from torch import nn

import interp
from interp.cli.main import main


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def model(tmp_path: Path) -> Path:
    net = nn.Sequential(nn.Conv1d(1, 2, 5, padding=2), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3))
    path = tmp_path / "m.pt"
    interp.save(net, path, meta={"input_shape": [1, 32]})
    return path


def _one_error(result) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert result.stdout == ""
    return lines[0]


def test_unknown_option_is_one_line_naming_the_help(runner, model):
    line = _one_error(runner.invoke(main, ["report", str(model), "--frobnicate"]))
    assert line.startswith("Error: no such option: --frobnicate")  # click may add "did you mean"
    assert line.endswith(" (see 'interp report --help')")
    line = _one_error(runner.invoke(main, ["inspect", str(model), "--zzz"]))
    assert line == "Error: no such option: --zzz (see 'interp inspect --help')"
    line = _one_error(runner.invoke(main, ["sweep"]))
    assert line == "Error: missing argument 'MODEL' (see 'interp sweep --help')"
    line = _one_error(runner.invoke(main, ["nosuch"]))
    assert "nosuch" in line and line.endswith("(see 'interp --help')")


def test_huge_shift_is_refused_not_a_crash(runner, model, tmp_path):
    data = tmp_path / "d.npz"
    np.savez(data, x=np.zeros((4, 1, 32), np.float32), y=np.array([0, 1, 2, 1]))
    args = ["sweep", str(model), "--data", str(data), "--shifts", "99999999999999999999999"]
    line = _one_error(runner.invoke(main, args))
    assert "99999999999999999999999" in line and "too large" in line


def test_uint64_label_is_printed_as_stored(runner, model, tmp_path):
    data = tmp_path / "d.npz"
    y = np.array([0, 1, 2, 2**64 - 1], np.uint64)
    np.savez(data, x=np.zeros((4, 1, 32), np.float32), y=y)
    line = _one_error(runner.invoke(main, ["sweep", str(model), "--data", str(data)]))
    assert str(2**64 - 1) in line and "-1)" not in line


@pytest.mark.parametrize("command", ["report", "attribute"])
def test_out_is_checked_before_the_model_is_even_opened(runner, tmp_path, command):
    """A model file that cannot load proves the `--out` check ran first."""
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    extra = ["--index", "0"] if command == "attribute" else []
    out = blocker / ("fig.png" if command == "attribute" else "report")
    line = _one_error(runner.invoke(main, [command, str(junk), *extra, "--out", str(out)]))
    assert str(out) in line and f"{str(blocker)!r} is not a directory" in line
    existing = tmp_path / ("old.png" if command == "attribute" else "old")
    if command == "attribute":
        existing.write_bytes(b"png")
    else:
        existing.mkdir()
        (existing / "report.html").write_text("old")
    line = _one_error(runner.invoke(main, [command, str(junk), *extra, "--out", str(existing)]))
    assert str(existing) in line and "--force" in line
    forced = runner.invoke(main, [command, str(junk), *extra, "--out", str(existing), "--force"])
    assert "junk.pt" in _one_error(forced)  # past the check, the model itself is refused


def test_cli_method_names_are_the_library_methods():
    from interp._util import METHOD_NAMES
    from interp.attribution import METHODS

    assert tuple(METHODS) == METHOD_NAMES
