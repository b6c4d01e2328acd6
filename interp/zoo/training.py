"""Train a zoo model from its recipe on CPU, reproducibly.

Same name, same machine, same torch: same weights. Everything random comes
from the recipe's seed: the data (numpy, via the recipe), the initial weights
and dropout (torch's global RNG, seeded inside a forked RNG so the caller's
is untouched), the batch order and the augmentation shifts (a private
``torch.Generator``). Training runs with deterministic algorithms on one
thread by default: with two, MKL's threaded float32 matrix products (the big
Linear heads) differed in the last bits between some runs on the same machine
(Intel documents this under "Conditional Numerical Reproducibility");
``MKL_CBWR=COMPATIBLE`` also fixes it, but only if set before MKL's first
call in the process. Both settings are restored afterwards.

>>> model, meta = train("shapes_gap", out="trained/shapes_gap.pt")   # doctest: +SKIP
>>> meta["training"]["accuracy_val"]                                # doctest: +SKIP
0.99
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from interp.zoo.evaluate import roll_accuracy
from interp.zoo.models import ZooModel, get

# Validation examples are drawn with seed + 2_000_000: neither the training draw
# (seed) nor the default held-out draw of Recipe.sample (seed + 1_000_000).
VAL_SEED_OFFSET = 2_000_000
THREADS = 1  # bitwise reproducible; see the module docstring
_N_TRAIN_SCORED = 512  # training examples re-scored after training for accuracy_train


@contextmanager
def _reproducible(seed: int, threads: int) -> Iterator[None]:
    """Seed torch, fix the thread count, use deterministic kernels; restore all afterwards."""
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    with torch.random.fork_rng(devices=[]):
        try:
            torch.manual_seed(seed)
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(True)
            yield
        finally:
            torch.use_deterministic_algorithms(old_det, warn_only=old_warn)
            torch.set_num_threads(old_threads)


def _random_roll(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Roll every example by its own random shift in [-max_shift, max_shift] (each axis in 2D)."""
    dims = tuple(range(-(x.dim() - 2), 0))
    s = torch.randint(-max_shift, max_shift + 1, (len(x), len(dims)), generator=gen)
    return torch.stack(
        [torch.roll(xi, shifts=tuple(si.tolist()), dims=dims) for xi, si in zip(x, s, strict=True)]
    )


def _fit(spec: ZooModel, progress: bool) -> tuple[nn.Sequential, dict[str, Any]]:
    recipe = spec.recipe
    start, cpu_start = time.perf_counter(), time.process_time()
    x, y = recipe.sample(spec.n_train, seed=recipe.seed)
    model = spec.builder()  # initialised from the seeded global RNG
    opt = torch.optim.Adam(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    gen = torch.Generator().manual_seed(recipe.seed)
    n_batches = -(-spec.n_train // spec.batch_size)
    losses = []
    bar = tqdm(
        total=spec.epochs * n_batches, desc=spec.name, unit="batch", file=sys.stderr,
        disable=None if progress else True, leave=False,
    )  # fmt: skip
    try:
        model.train()
        for _ in range(spec.epochs):
            order = torch.randperm(spec.n_train, generator=gen)
            total = 0.0
            for lo in range(0, spec.n_train, spec.batch_size):
                idx = order[lo : lo + spec.batch_size]
                xb = x[idx]
                if spec.shift_augmentation:
                    xb = _random_roll(xb, spec.shift_augmentation, gen)
                loss = F.cross_entropy(model(xb), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
            losses.append(total / spec.n_train)
    finally:
        bar.close()
    fit_seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start  # all threads; less affected by other load
    model.eval()
    xv, yv = recipe.sample(spec.n_val, seed=recipe.seed + VAL_SEED_OFFSET)
    scored = min(spec.n_train, _N_TRAIN_SCORED)
    summary = {
        "optimizer": "Adam",
        "epochs": spec.epochs,
        "batch_size": spec.batch_size,
        "lr": spec.lr,
        "weight_decay": spec.weight_decay,
        "n_train": spec.n_train,
        "n_val": spec.n_val,
        "shift_augmentation": spec.shift_augmentation,
        "examples_seen": spec.epochs * spec.n_train,
        "loss_per_epoch": [round(v, 6) for v in losses],
        "accuracy_train": roll_accuracy(model, x[:scored], y[:scored], [0], 128)[0],
        "accuracy_val": roll_accuracy(model, xv, yv, [0], 128)[0],
        "seconds": round(fit_seconds, 1),
        "seconds_per_epoch": round(fit_seconds / spec.epochs, 1),
        "cpu_seconds": round(cpu_seconds, 1),
        "seed": recipe.seed,
        "val_seed": recipe.seed + VAL_SEED_OFFSET,
        "threads": torch.get_num_threads(),
        "device": "cpu",
        "torch_version": str(torch.__version__),  # a str subclass would pickle as a class
        "note": spec.note,
    }
    return model, summary


def train(
    name: str | ZooModel,
    *,
    out: str | Path | None = None,
    progress: bool = True,
    threads: int = THREADS,
) -> tuple[nn.Sequential, dict[str, Any]]:
    """Train the zoo model ``name`` from its recipe; save it to ``out`` if given.

    Args:
        name: one of ``interp.zoo.NAMES``, or a :class:`ZooModel` of your own.
        out: path of the interp checkpoint to write (``interp.save``); None writes nothing.
        progress: show a progress bar on stderr when it is a terminal.
        threads: CPU threads for training; 1 is bitwise reproducible, more are faster
            but may differ in the last bits from run to run (MKL).

    Returns:
        The trained model in eval mode, and its checkpoint metadata.

    Raises:
        InterpError: ``name`` is not a zoo model.
    """
    spec = name if isinstance(name, ZooModel) else get(name)
    recipe = spec.recipe
    with _reproducible(recipe.seed, threads):
        model, summary = _fit(spec, progress)
    meta = {
        "name": spec.name,
        "summary": spec.summary,
        "classes": list(recipe.classes),
        "input_shape": list(recipe.input_shape),
        "axis": recipe.axis,
        "recipe": recipe.to_dict(),
        "training": summary,
    }
    if out is not None:
        from interp.loading.core import save

        Path(out).parent.mkdir(parents=True, exist_ok=True)
        save(model, out, meta=meta)
    return model, meta
