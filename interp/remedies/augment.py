"""augment: fine-tune a copy of the model on randomly shifted training examples.

Each training example is shifted by its own shift drawn uniformly from the failing
range (per spatial axis), freshly for every pass. First the head alone (everything
after the feature map it reads), then, if asked, the whole model for ``epochs`` more
epochs at a tenth of the learning rate. Adam, a local seeded generator for every
draw (the global RNG is forked, so Dropout is seeded too and the caller's RNG is
untouched), early stopping on held-out accuracy (the best epoch is kept). What is
scored and kept is the average of the last ~2 epochs' weights (:class:`_Average`).

Two things make the head-only phase cheap and its data plentiful:

- The trunk is frozen, so when the model is an ``nn.Sequential`` whose child is the
  feature map the head reads, the trunk runs once per batch under ``no_grad`` and only
  the head's layers see autograd; the held-out features are computed once.
- A zoo model's recipe draws unlimited fresh examples (``draw``): each batch is new
  examples, each shifted by its own shift, rather than passes over one fixed set. A
  positional head has to learn every position it may see a pattern at, and a fixed
  set of 1,400 examples gives each position too few (the edges of the range fewest).
"""

from __future__ import annotations

import contextlib
import copy
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from interp.errors import InterpError
from interp.geometry.core import Structure
from interp.remedies.trunk import batches, sequential_index, split_site
from interp.shifts import shift

HEAD_EPOCHS = 6  # passes over the training set ...
STREAM_EPOCHS = 18  # ... or, when fresh examples are drawn, that many sets' worth
PATIENCE = 4  # evaluations without a better held-out accuracy before stopping
LR = 1e-3
AVERAGE_STEPS = 100  # the averaged weights span ~2 epochs' steps, at most this many
BATCH = 32
CACHE_BYTES = 1 << 30  # held-out features kept in memory up to this size
STREAM_SEED = 3_000_000  # fresh draws use seeds from here on (recipe held-out: 1_000_000)

Draw = Callable[[int, int], tuple[torch.Tensor, torch.Tensor]]


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


class _Feed:
    """Training batches, each example shifted by its own shift drawn from ``box``.

    From ``draw`` (fresh examples every batch, seeds ``seed0``, ``seed0 + 1``, ...) or
    from a seeded permutation of ``(x, y)`` per epoch. One epoch is ``len(x)`` examples.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        box: Sequence[tuple[int, int]] | None,
        mode: str,
        gen: torch.Generator,
        draw: Draw | None,
        seed0: int,
    ) -> None:
        self.x, self.y, self.box, self.mode, self.gen = x, y, box, mode, gen
        self.draw, self.seed = draw, seed0
        self.steps = -(-len(x) // BATCH)

    def epoch(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self.x), generator=self.gen)
        for i in range(0, len(self.x), BATCH):
            if self.draw is not None:
                xb, yb = self.draw(min(BATCH, len(self.x) - i), self.seed)
                self.seed += 1
            else:
                idx = order[i : i + BATCH]
                xb, yb = self.x[idx], self.y[idx]
            if self.box is not None:
                xb = shifted(xb, random_shifts(len(xb), self.box, self.gen), self.mode)
            yield xb, yb


class _Split:
    """A Sequential model cut at the feature map its head reads: ``trunk`` then ``head``
    (views of the same modules). ``trunk`` is None when the model cannot be cut there."""

    def __init__(self, work: nn.Module, geo: Structure, *, whole: bool) -> None:
        at = None if whole else sequential_index(work, geo.head.reads or "")
        kids = list(work.children())
        self.trunk = None if at is None else nn.Sequential(*kids[: at + 1])
        self.head = work if at is None else nn.Sequential(*kids[at + 1 :])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.trunk is None:
            return x
        with torch.no_grad():
            return torch.cat([self.trunk(xb) for xb in batches(x, 128)]) if len(x) else x

    def logits(self, f: torch.Tensor) -> torch.Tensor:
        return self.head(f)


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
    head_epochs: int | None = None,
    epochs: int = 0,
    progress: bool = False,
    label: str = "augment",
    draw: Draw | None = None,
) -> tuple[nn.Module, list[str], list[dict[str, Any]]]:
    """A fine-tuned copy of ``model`` (which is not changed), notes on the training and
    their numbers (one dict per phase: :func:`fit_note` writes the note from it).

    ``box`` None trains without shifts (refitting a head after another change).
    ``draw(n, seed) -> (x, y)`` draws fresh training examples (a zoo recipe); then an
    epoch is ``len(x)`` fresh examples and the head runs up to ``STREAM_EPOCHS``.
    """
    if head_epochs is None:
        head_epochs = STREAM_EPOCHS if draw is not None else HEAD_EPOCHS
    work = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    if box is not None:
        x_val = shifted(x_val, random_shifts(len(x_val), box, gen), mode)
    notes: list[str] = []
    fits: list[dict[str, Any]] = []
    feed = _Feed(x, y, box, mode, gen, draw, STREAM_SEED + 100_003 * seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for phase, n_epochs, lr in (("head", head_epochs, LR), ("whole model", epochs, LR / 10)):
            if n_epochs <= 0:
                continue
            params = _prepare(work, geo, whole=phase == "whole model")
            if not params:
                raise InterpError(f"{label}: the model has no trainable parameters in its {phase}")
            swapped = _fast_dropout(work)  # for training only; the saved model keeps its own
            try:
                split = _Split(work, geo, whole=phase == "whole model")
                best, stopped = _train(
                    work, split, params, feed, x_val, y_val, n_epochs, lr, progress,
                    f"{label} ({phase})",
                )  # fmt: skip
            finally:
                for parent, name, module in swapped:
                    setattr(parent, name, module)
            fit = {
                "phase": phase,
                "best_held_out_accuracy": best,
                "epochs": n_epochs,
                "stopped_after_epoch": stopped or None,
                "examples": (stopped or n_epochs) * len(x),
                "fresh_examples": draw is not None,
            }
            fits.append(fit)
            notes.append(fit_note(label, fit))
    work.eval()
    for p, orig in zip(work.parameters(), model.parameters(), strict=True):
        p.requires_grad_(orig.requires_grad)
    return work, notes, fits


def fit_note(label: str, fit: Mapping[str, Any]) -> str:
    """The sentence for one training phase, from its numbers (``extra["training"]``)."""
    seen = f"{fit['examples']:,} " + ("fresh examples" if fit["fresh_examples"] else "examples")
    stopped, n_epochs = fit["stopped_after_epoch"], fit["epochs"]
    when = (
        f"(stopped early after epoch {stopped} of {n_epochs}, {seen})"
        if stopped
        else f"after {n_epochs} epochs ({seen})"
    )
    return (
        f"{label}, {fit['phase']}: best held-out accuracy "
        f"{100 * fit['best_held_out_accuracy']:.1f}% {when}"
    )


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
    split: _Split,
    params: list[nn.Parameter],
    feed: _Feed,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    n_epochs: int,
    lr: float,
    progress: bool,
    desc: str,
) -> tuple[float, int]:
    """Adam over ``params``; returns the best held-out accuracy and the epoch it stopped at
    early (0 when it ran every epoch). The best epoch's weights are left in ``work``."""
    opt = torch.optim.Adam(params, lr=lr, fused=True)  # one kernel per tensor on CPU too
    modes = {m: m.training for m in work.modules()}
    val = _Held(work, split, x_val, y_val, modes)
    best = val.score()
    best_state = copy.deepcopy(work.state_dict())
    average = _Average(params, min(AVERAGE_STEPS, 2 * feed.steps))
    bad = 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n_epochs * feed.steps, file=sys.stderr, desc=desc, leave=False)
    try:
        for epoch in range(1, n_epochs + 1):
            for xb, yb in feed.epoch():
                f = split.features(xb)
                with torch.enable_grad():
                    opt.zero_grad()
                    loss = nn.functional.cross_entropy(split.logits(f), yb)
                    loss.backward()
                    opt.step()
                average.update()
                if bar is not None:
                    bar.update(1)
            with average.swapped():  # held out and kept: the averaged weights
                acc = val.score()
                if acc > best:
                    best_state = copy.deepcopy(work.state_dict())
            if bar is not None:
                bar.set_postfix_str(f"held-out {100 * acc[0]:.1f}%")
            if acc > best:
                best, bad = acc, 0
            else:
                bad += 1
                if bad >= PATIENCE:
                    work.load_state_dict(best_state)
                    return best[0], epoch
    finally:
        if bar is not None:
            bar.close()
    work.load_state_dict(best_state)
    return best[0], 0


class _Average:
    """A bias-corrected exponential moving average of ``params`` over steps (Polyak).

    Adam's steps on shifted examples keep moving the head around its optimum; the average
    of the last ~``horizon`` iterates sits closer to it. As in Adam's moments the average
    starts at zero and is divided by ``1 - decay^t``: it weights only trained iterates,
    never the starting weights. Training continues from the raw weights; evaluation and
    the kept model use the average.
    """

    def __init__(self, params: list[nn.Parameter], horizon: int) -> None:
        self.params, self.decay, self.t = params, 1 - 1 / max(1, horizon), 0
        self.avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]

    def update(self) -> None:
        self.t += 1
        with torch.no_grad():
            torch._foreach_lerp_(self.avg, [p.detach() for p in self.params], 1 - self.decay)

    @contextlib.contextmanager
    def swapped(self) -> Iterator[None]:
        if self.t == 0:  # nothing trained yet: the weights as they are
            yield
            return
        raw = [p.detach().clone() for p in self.params]
        correction = 1 - self.decay**self.t
        with torch.no_grad():
            for p, a in zip(self.params, self.avg, strict=True):
                p.copy_(a / correction)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, r in zip(self.params, raw, strict=True):
                    p.copy_(r)


class _Dropout(nn.Module):
    """``nn.Dropout(p)`` with its mask drawn 16 random bits per element from 64-bit draws.

    Bernoulli(1 - p') keep-masks with ``p'`` = p rounded to 1/65536, scaled by 1/(1 - p'):
    the same training as the model's Dropout, without per-element float RNG, which on CPU
    costs more than the head's Linear and Adam together (seed_cnn: 257,664 features a row).
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.cut = round(p * 65536)  # drop where the 16 bits, unsigned, are below this
        self.scale = 65536 / (65536 - self.cut) if self.cut < 65536 else 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.cut == 0:
            return x
        n = x.numel()
        words = torch.empty(-(-n // 4), dtype=torch.int64, device=x.device)
        bits = words.random_(-(2**63), None).view(torch.int16)[:n].view(x.shape)
        keep = bits >= self.cut - 32768  # int16 is uniform on -32768..32767
        return x * (keep * self.scale).to(x.dtype)


def _fast_dropout(work: nn.Module) -> list[tuple[nn.Module, str, nn.Module]]:
    """Swap every plain ``nn.Dropout`` of ``work`` for :class:`_Dropout` (same mode);
    returns ``(parent, name, original)`` to put back."""
    swapped = []
    for parent in list(work.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout and not child.inplace:
                fast = _Dropout(child.p)
                fast.train(child.training)
                setattr(parent, name, fast)
                swapped.append((parent, name, child))
    return swapped


class _Held:
    """Held-out accuracy in eval mode, ties broken by the held-out loss (a small held-out
    set is soon all correct; the loss still says whether the head got better). The
    trunk's features are computed once when the trunk is frozen and fit in ``CACHE_BYTES``.
    """

    def __init__(
        self,
        work: nn.Module,
        split: _Split,
        x: torch.Tensor,
        y: torch.Tensor,
        modes: dict[nn.Module, bool],
    ) -> None:
        self.work, self.split, self.x, self.y, self.modes = work, split, x, y, modes
        self.feats: torch.Tensor | None = None
        if split.trunk is not None and len(x):
            probe = self._eval(lambda: split.features(x[:1]))
            if probe.numel() * probe.element_size() * len(x) <= CACHE_BYTES:
                self.feats = self._eval(lambda: split.features(x))

    def _eval(self, fn: Callable[[], torch.Tensor]) -> torch.Tensor:
        self.work.eval()
        try:
            with torch.no_grad():
                return fn()
        finally:
            for m, flag in self.modes.items():
                m.training = flag

    def score(self) -> tuple[float, float]:
        """(accuracy, -mean cross-entropy): larger is better, compared in that order."""
        feats = self.feats
        run = self.work if feats is None else self.split.logits
        data = self.x if feats is None else feats

        def totals() -> torch.Tensor:
            hits, loss = 0.0, 0.0
            for xb, yb in zip(batches(data, 128), batches(self.y, 128), strict=True):
                logits = run(xb)
                hits += float((logits.argmax(1) == yb).sum())
                loss += float(nn.functional.cross_entropy(logits, yb, reduction="sum"))
            return torch.tensor([hits, loss], dtype=torch.float64)

        hits, loss = self._eval(totals).tolist()
        n = max(1, len(self.y))
        return hits / n, -loss / n


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
    draw: Draw | None = None,
) -> tuple[nn.Module, float, list[str], list[dict[str, Any]]]:
    """Fine-tune a copy with random shifts over ``box``; returns (model, seconds, notes,
    fits): ``fits`` holds the numbers of each note (see :func:`tune`).

    ``draw(n, seed) -> (x, y)``: fresh training examples for every batch (a zoo recipe's
    sample); None passes over ``(x, y)``, each example freshly shifted every epoch.
    """
    start = time.perf_counter()
    fixed, notes, fits = tune(
        model, geo, x, y, x_val, y_val, box, mode=mode, seed=seed, epochs=epochs,
        progress=progress, draw=draw,
    )  # fmt: skip
    return fixed, time.perf_counter() - start, notes, fits
