"""Tiny seeded models shared by the tests, and a hand-set one where numbers matter."""

from __future__ import annotations

import pytest
import torch
from torch import nn

# Tiny models run fastest on one thread; several threads only contend on a loaded
# 2-core machine (a tiny forward goes from ~0.1 ms to ~20 ms).
torch.set_num_threads(1)


def _seeded(module: nn.Module, seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return module.eval()


@pytest.fixture
def positional_1d() -> nn.Sequential:
    """Conv1d -> ReLU -> MaxPool(4, 2) -> Dropout -> Flatten -> Linear: a small seed_cnn.

    Input (N, 1, 64); feature map (4, 29).
    """
    model = nn.Sequential(
        nn.Conv1d(1, 4, 7, padding=1), nn.ReLU(), nn.MaxPool1d(4, 2), nn.Dropout(0.25),
        nn.Flatten(), nn.Linear(4 * 29, 3),
    )  # fmt: skip
    return _seeded(model, 0)


@pytest.fixture
def pooled_1d() -> nn.Sequential:
    """Conv1d -> ReLU -> AdaptiveMaxPool1d(1) -> Flatten -> Linear. Input (N, 1, 64)."""
    model = nn.Sequential(
        nn.Conv1d(1, 4, 7, padding=3), nn.ReLU(), nn.AdaptiveMaxPool1d(1), nn.Flatten(),
        nn.Linear(4, 3),
    )  # fmt: skip
    return _seeded(model, 1)


@pytest.fixture
def positional_2d() -> nn.Sequential:
    """Conv2d -> ReLU -> MaxPool2d(2) -> Flatten -> Linear. Input (N, 1, 12, 12)."""
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(3 * 6 * 6, 4),
    )  # fmt: skip
    return _seeded(model, 2)


@pytest.fixture
def pooled_2d() -> nn.Sequential:
    """Conv2d -> BatchNorm -> ReLU -> AdaptiveAvgPool2d(1) -> Flatten -> Linear. (N, 1, 12, 12)."""
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(3, 4),
    )  # fmt: skip
    return _seeded(model, 3)


@pytest.fixture
def hand_set_1d() -> nn.Sequential:
    """A model with hand-set weights, for exact numbers.

    One kernel [1, 1] (no bias) over an input of length 6, no padding: the feature map is
    x[i] + x[i+1] (5 positions). The Linear's 2 classes weigh positions with [1,0,0,0,0] and
    [0,0,0,0,1], bias 0: class 0 reads the left edge, class 1 the right edge.
    """
    conv = nn.Conv1d(1, 1, 2, bias=False)
    lin = nn.Linear(5, 2)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[1.0, 1.0]]]))
        lin.weight.copy_(torch.tensor([[1.0, 0, 0, 0, 0], [0, 0, 0, 0, 1.0]]))
        lin.bias.zero_()
    return nn.Sequential(conv, nn.Flatten(), lin).eval()


def no_hooks_left(model: nn.Module) -> bool:
    """True when no module of ``model`` holds a forward/backward hook."""
    return all(
        not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
        for m in model.modules()
    )


# --- CI honesty -------------------------------------------------------------
# The run fails when fewer tests ran than were collected, minus skips whose
# reason starts with one of these declared prefixes. Any other skip is a failure:
# a test that silently stops running must not look green.
DECLARED_SKIPS = (
    "chromium is not available",
    "needs a CUDA device",
    "ray is not installed",
)
_outcomes: dict[str, list[str]] = {"ran": [], "declared": [], "undeclared": []}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        if report.skipped:
            reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else ""
            reason = reason.removeprefix("Skipped: ")
            kind = "declared" if reason.startswith(DECLARED_SKIPS) else "undeclared"
            _outcomes[kind].append(f"{report.nodeid}: {reason}")
        else:
            _outcomes["ran"].append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    collected = len(getattr(session, "items", []))
    ran, declared = len(set(_outcomes["ran"])), len(_outcomes["declared"])
    if collected and exitstatus == 0 and ran < collected - declared:
        lines = "\n  ".join(_outcomes["undeclared"]) or "(tests that neither ran nor skipped)"
        print(
            f"\nCI honesty: {ran} tests ran, but {collected} were collected and only "
            f"{declared} skips are declared; not run:\n  {lines}"
        )
        session.exitstatus = 1
