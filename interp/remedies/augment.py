"""augment: fine-tune a copy of the model on randomly shifted training examples.

Each training example is shifted by its own shift drawn uniformly from the
failing range (per spatial axis). First the head alone (everything after the
feature map it reads), then, if asked, the whole model for ``epochs`` more
epochs at a tenth of the learning rate. Adam, a local seeded generator for every
draw (the global RNG is forked, so Dropout is seeded too and the caller's RNG is
untouched), early stopping on held-out accuracy (the best epoch is kept).
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Sequence

import torch
from torch import nn

from interp.errors import InterpError
from interp.geometry.core import Structure
from interp.remedies.trunk import batches, sequential_index, split_site
from interp.shifts import shift

HEAD_EPOCHS = 6
PATIENCE = 2
LR = 1e-3
BATCH = 32


def head_modules(model: nn.Module, geo: Structure) -> list[nn.Module]:
    """Modules after the feature map the head reads: children after it in a Sequential,
    else the head's Linear."""
    reads = geo.head.reads or ""
    at = sequential_index(model, reads)
    if at is not None:
        return list(model.children())[at + 1 :]
    name = split_site(geo.head.linear or "")[0]
    modules = dict(model.named_modules())
    if not name or name not in modules:
        raise InterpError("the model's head was not found; augment needs a Linear head to tune")
    return [modules[name]]


def random_shifts(
    n: int, box: Sequence[tuple[int, int]], gen: torch.Generator
) -> list[int] | list[tuple[int, int]]:
    """``n`` shifts uniform in ``box`` ((lo, hi) per spatial axis, both included)."""
    cols = [torch.randint(lo, hi + 1, (n,), generator=gen).tolist() for lo, hi in box]
    if len(cols) == 1:
        return [int(v) for v in cols[0]]
    return [(int(a), int(b)) for a, b in zip(cols[0], cols[1], strict=True)]


def shifted(x: torch.Tensor, shifts: Sequence[object], mode: str) -> torch.Tensor:
    """Shift every sample of ``x`` by its own shift."""
    return torch.cat([shift(x[i : i + 1], s, mode) for i, s in enumerate(shifts)])  # type: ignore[arg-type]


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    correct = 0
    with torch.no_grad():
        for xb, yb in zip(batches(x, 128), batches(y, 128), strict=True):
            correct += int((model(xb).argmax(1) == yb).sum())
    return correct / max(1, len(y))


def tune(
    model: nn.Module,
    geo: Structure,
    x: torch.Tensor,
    y: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    box: Sequence[tuple[int, int]] | None,
    *,
    mode: str,
    seed: int,
    head_epochs: int = HEAD_EPOCHS,
    epochs: int = 0,
    progress: bool = False,
    label: str = "augment",
) -> tuple[nn.Module, list[str]]:
    """A fine-tuned copy of ``model`` (which is not changed) and notes on the training.

    ``box`` None trains without shifts (refitting a head after another change).
    """
    work = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    if box is not None:
        x_val = shifted(x_val, random_shifts(len(x_val), box, gen), mode)
    notes: list[str] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for phase, n_epochs, lr in (("head", head_epochs, LR), ("whole model", epochs, LR / 10)):
            if n_epochs <= 0:
                continue
            params = _prepare(work, geo, whole=phase == "whole model")
            if not params:
                raise InterpError(f"{label}: the model has no trainable parameters in its {phase}")
            best, stopped = _train(
                work,
                params,
                x,
                y,
                x_val,
                y_val,
                box,
                mode,
                gen,
                n_epochs,
                lr,
                progress,
                f"{label} ({phase})",
            )
            notes.append(
                f"{label}, {phase}: best held-out accuracy {100 * best:.1f}% "
                + (
                    f"(stopped early after epoch {stopped} of {n_epochs})"
                    if stopped
                    else f"after {n_epochs} epochs"
                )
            )
    work.eval()
    for p, orig in zip(work.parameters(), model.parameters(), strict=True):
        p.requires_grad_(orig.requires_grad)
    return work, notes


def _prepare(work: nn.Module, geo: Structure, *, whole: bool) -> list[nn.Parameter]:
    work.eval()
    for p in work.parameters():
        p.requires_grad_(whole)
    if whole:
        work.train()
        return list(work.parameters())
    params = []
    for m in head_modules(work, geo):
        m.train()
        for p in m.parameters():
            p.requires_grad_(True)
            params.append(p)
    return params


def _train(
    work: nn.Module,
    params: list[nn.Parameter],
    x: torch.Tensor,
    y: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    box: Sequence[tuple[int, int]] | None,
    mode: str,
    gen: torch.Generator,
    n_epochs: int,
    lr: float,
    progress: bool,
    desc: str,
) -> tuple[float, int]:
    """Adam over ``params``; returns the best held-out accuracy and the epoch it stopped at
    early (0 when it ran every epoch). The best epoch's weights are left in ``work``."""
    opt = torch.optim.Adam(params, lr=lr)
    modes = {m: m.training for m in work.modules()}
    best = _eval(work, x_val, y_val, modes)
    best_state = copy.deepcopy(work.state_dict())
    bad = 0
    steps = -(-len(x) // BATCH)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n_epochs * steps, file=sys.stderr, desc=desc, leave=False)
    try:
        for epoch in range(1, n_epochs + 1):
            order = torch.randperm(len(x), generator=gen)
            for i in range(0, len(x), BATCH):
                idx = order[i : i + BATCH]
                xb = x[idx]
                if box is not None:
                    xb = shifted(xb, random_shifts(len(idx), box, gen), mode)
                with torch.enable_grad():
                    opt.zero_grad()
                    loss = nn.functional.cross_entropy(work(xb), y[idx])
                    loss.backward()
                    opt.step()
                if bar is not None:
                    bar.update(1)
            acc = _eval(work, x_val, y_val, modes)
            if acc > best:
                best, bad = acc, 0
                best_state = copy.deepcopy(work.state_dict())
            else:
                bad += 1
                if bad >= PATIENCE:
                    work.load_state_dict(best_state)
                    return best, epoch
    finally:
        if bar is not None:
            bar.close()
    work.load_state_dict(best_state)
    return best, 0


def _eval(work: nn.Module, x: torch.Tensor, y: torch.Tensor, modes: dict[nn.Module, bool]) -> float:
    work.eval()
    try:
        return accuracy(work, x, y)
    finally:
        for m, flag in modes.items():
            m.training = flag


def augment(
    model: nn.Module,
    geo: Structure,
    x: torch.Tensor,
    y: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    box: Sequence[tuple[int, int]],
    *,
    mode: str = "roll",
    seed: int = 0,
    epochs: int = 0,
    progress: bool = False,
) -> tuple[nn.Module, float, list[str]]:
    """Fine-tune a copy with random shifts over ``box``; returns (model, seconds, notes)."""
    start = time.perf_counter()
    fixed, notes = tune(
        model, geo, x, y, x_val, y_val, box, mode=mode, seed=seed, epochs=epochs, progress=progress
    )
    return fixed, time.perf_counter() - start, notes
