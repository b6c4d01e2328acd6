"""The CLI shell: inspect, exit codes and one-line errors for bad files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from _files import hostile_files, tiny
from click.testing import CliRunner
from torch import nn

import interp
from interp.cli.main import main


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def seed_like(tmp_path: Path) -> Path:
    """The classic architecture with random weights, as an interp checkpoint."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv1d(1, 64, kernel_size=128, padding=1), nn.ReLU(), nn.MaxPool1d(16, 2),
        nn.Dropout(0.25), nn.Flatten(), nn.Linear(257664, 4),
    )  # fmt: skip
    path = tmp_path / "seed_like.pt"
    interp.save(model, path)
    return path


def test_inspect_table_and_verdict(runner, seed_like):
    result = runner.invoke(main, ["inspect", str(seed_like)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "input shape 1x8192" in result.output
    assert "64x4026" in result.output and "NO" in result.output
    assert "cannot be translation invariant by construction" in " ".join(result.output.split())


def test_inspect_json(runner, seed_like):
    result = runner.invoke(main, ["inspect", str(seed_like), "--json"], catch_exceptions=False)
    data = json.loads(result.stdout)
    head = data["structure"]["head"]
    assert (head["kind"], head["channels"], head["positions"]) == ("positional", 64, [4026])
    assert data["structure"]["input_shape"] == [1, 8192]
    assert data["model"]["parameters"] == 64 * 129 + 257664 * 4 + 4


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    files = {
        "empty": tmp_path / "empty.pt",
        "text": tmp_path / "notes.pt",
        "state dict": tmp_path / "weights.pt",
        "truncated": tmp_path / "cut.pt",
    }
    files["empty"].write_bytes(b"")
    files["text"].write_text("not a model")
    torch.save(tiny().state_dict(), files["state dict"])
    full = tmp_path / "full.pt"
    interp.save(tiny(), full)
    files["truncated"].write_bytes(full.read_bytes()[:200])
    return files


@pytest.mark.parametrize("kind", ["empty", "text", "state dict", "truncated"])
def test_bad_model_file_is_one_line_exit_2(runner, tmp_path, kind):
    path = _bad_files(tmp_path)[kind]
    result = runner.invoke(main, ["inspect", str(path)], catch_exceptions=False)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert path.name in lines[0]
    assert "Traceback" not in result.output


def test_hostile_files_refused_through_the_cli(runner, tmp_path):
    marker = tmp_path / "ran.txt"
    for kind, path in hostile_files(tmp_path, marker).items():
        result = runner.invoke(main, ["inspect", str(path)], catch_exceptions=False)
        assert result.exit_code == 2, (kind, result.output)
        assert "--trust" in result.output, (kind, result.output)
        assert not marker.exists(), f"{kind}: code ran while loading"


def test_bad_input_shape_option(runner, seed_like):
    result = runner.invoke(main, ["inspect", str(seed_like), "--input-shape", "one,two"])
    assert result.exit_code == 2
    assert "--input-shape" in result.output


def test_help_and_version(runner):
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("inspect", "report", "sweep", "attribute", "compare", "train"):
        assert f"interp {command}" in result.output
    assert interp.__version__ in runner.invoke(main, ["--version"]).output


def test_unexpected_failure_is_exit_1_without_traceback(runner, tmp_path, monkeypatch):
    path = tmp_path / "m.pt"
    interp.save(tiny(), path)

    def boom(*_a, **_k):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(sys.modules["interp.geometry.core"], "structure", boom)
    result = runner.invoke(main, ["inspect", str(path)])
    assert result.exit_code == 1
    assert "unexpected failure: RuntimeError: kaboom" in result.output
    assert "Traceback" not in result.output
