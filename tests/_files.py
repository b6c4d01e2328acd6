"""Tiny models and the files the loading tests read, including hostile ones.

A hostile pickle names :func:`touch_and_build`: unpickling it creates a marker
file (the canary) and returns a working model. A test that refuses such a file
asserts that the marker does not exist afterwards.
"""

from __future__ import annotations

import io
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

LENGTH = 16  # input length of the tiny model: (N, 1, 16)


def tiny(seed: int = 0) -> nn.Sequential:
    """Conv1d(1, 4, 5) -> ReLU -> Flatten -> Linear(48, 3), seeded, in eval mode."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv1d(1, 4, 5), nn.ReLU(), nn.Flatten(), nn.Linear(4 * (LENGTH - 4), 3)
    ).eval()


def make_tiny() -> nn.Sequential:
    """Zero-argument factory for ``arch='_files:make_tiny'`` (random weights)."""
    return nn.Sequential(
        nn.Conv1d(1, 4, 5), nn.ReLU(), nn.Flatten(), nn.Linear(4 * (LENGTH - 4), 3)
    )


class Wrapped(nn.Module):
    """A custom class around the tiny model, as training scripts write them."""

    def __init__(self) -> None:
        super().__init__()
        self.body = make_tiny()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def make_wrapped() -> Wrapped:
    return Wrapped()


def touch_and_build(marker: str) -> nn.Sequential:
    """What a hostile pickle runs: leave a marker, return a working model."""
    Path(marker).write_text("ran")
    return tiny()


class Hostile:
    """Pickles to a call of :func:`touch_and_build` (any pickle can do this)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (touch_and_build, (self.marker,))


def hostile_files(directory: Path, marker: Path) -> dict[str, Path]:
    """Write every hostile kind of model file; return {kind: path}."""
    files = {
        "pickle": directory / "plain.pkl",
        "torch-zip": directory / "zip.pt",
        "legacy": directory / "legacy.pt",
        "wrapped": directory / "wrapped.pt",
    }
    files["pickle"].write_bytes(pickle.dumps(Hostile(marker), protocol=4))
    torch.save(Hostile(marker), files["torch-zip"])
    torch.save(Hostile(marker), files["legacy"], _use_new_zipfile_serialization=False)
    torch.save({"model": Hostile(marker), "epoch": 3}, files["wrapped"])
    return files


def torchscript_bytes(model: nn.Module) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # TorchScript is deprecated in torch >= 2.10
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(model), buffer)
    return buffer.getvalue()


def export_bytes(model: nn.Module, batch: int = 2) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # pytree LeafSpec FutureWarning inside torch.export
        warnings.simplefilter("ignore", FutureWarning)
        program = torch.export.export(model, (torch.randn(batch, 1, LENGTH),))
        torch.export.save(program, buffer)
    return buffer.getvalue()


def npz_bytes(**arrays: Any) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def torch_bytes(obj: Any, *, legacy: bool = False) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, _use_new_zipfile_serialization=not legacy)
    return buffer.getvalue()


def data_arrays(n: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 1, LENGTH)).astype(np.float32), np.arange(n) % 3
