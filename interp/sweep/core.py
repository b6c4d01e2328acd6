"""Accuracy, confidence and consistency of a classifier over a set of input shifts.

Logits for every (sample, shift) come from the exact fast engine
(``interp.sweep.engine.core``) where it applies, else from batched brute force: shift a
batch of samples by a chunk of shifts at once (:func:`interp.shifts.shift_many`)
and run the model on the stacked inputs. Samples are streamed in batches (any data
form: tensors, a Dataset, a DataLoader, an iterable of batches; see
:mod:`interp._batches`) and only the running sums of
:class:`~interp.sweep.stats.SweepStats` are kept, so memory does not grow with the
number of samples; an executor (:class:`~interp.sweep.distributed.RayExecutor`)
computes the same sums on shards on other processes or machines and merges them.

Consistency follows Zhang (ICML 2019, "Making Convolutional Networks
Shift-Invariant Again", https://arxiv.org/abs/1904.11486): the probability that
two random shifts of the same input get the same top-1 class. Zhang estimates it
by sampling pairs; here it is computed exactly over all ordered pairs of
distinct shifts in the set: with ``c_k`` the number of the S shifts of a sample
predicted as class k, the sample's share of agreeing pairs is
``sum_k c_k (c_k - 1) / (S (S - 1))``, averaged over samples. This is the
expectation of Zhang's estimate for two shifts drawn from the set without
replacement.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from interp._batches import as_source
from interp._util import ACCURACY_TOLERANCE
from interp.errors import InterpError
from interp.geometry.core import Structure
from interp.shifts import Shift, normalize_shifts
from interp.sweep.logits import LogitStream, progress_bar
from interp.sweep.result import Sweep, TrainRange, build_sweep
from interp.sweep.stats import SweepStats

if TYPE_CHECKING:
    from interp.sweep.distributed import RayExecutor

__all__ = ["Sweep", "shift_sweep", "shift_sweep_stream", "sweep_logits", "sweep_stats"]


def _check_x(x: torch.Tensor, shifts: Iterable[object]) -> list[Shift]:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"`x` must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() not in (3, 4):
        raise InterpError(f"`x` has shape {tuple(x.shape)}; pass a batch (N, C, L) or (N, C, H, W)")
    if x.shape[0] == 0:
        raise InterpError(f"`x` has no samples (shape {tuple(x.shape)}); pass at least one")
    return normalize_shifts(shifts, x.dim() - 2)


def sweep_logits(
    model: nn.Module,
    x: torch.Tensor,
    shifts: Iterable[Shift],
    *,
    mode: str = "roll",
    engine: str = "auto",
    structure: Structure | None = None,
    batch_size: int | None = None,
    progress: bool = False,
) -> tuple[torch.Tensor, str, str]:
    """Logits of ``model`` for every sample of ``x`` under every shift.

    Args:
        model: the classifier; left unchanged, run in eval mode.
        x: (N, C, L) with int shifts or (N, C, H, W) with ``(dy, dx)`` shifts.
        shifts: S shifts; mode: ``roll``, ``zero`` or ``edge``.
        engine: ``auto``/``fast`` use the exact fast engine where it applies and fall
            back to brute force otherwise; ``brute`` always runs the model.
        structure: the model's Structure, if already computed.
        batch_size: model inputs (sample-shift pairs) per forward; default from the
            size of the largest activation (about 256 MB).
        progress: show a progress bar on stderr.

    Returns:
        ``(logits (N, S, K) on the CPU, engine that ran: "fast" | "brute", why)``.

    >>> logits, engine, why = sweep_logits(model, x, [-2, 0, 2])   # doctest: +SKIP
    >>> logits.shape                                                # x: (8, 1, 64)
    torch.Size([8, 3, 3])
    """
    shift_list = _check_x(x, shifts)
    bar = progress_bar(x.shape[0] * len(shift_list), progress)
    try:
        run = LogitStream(
            model,
            x,
            shift_list,
            mode=mode,
            engine=engine,
            geo=structure,
            batch_size=batch_size,
            bar=bar,
        )
        out = torch.cat([logits for _, logits in run.chunks(x)])
    finally:
        if bar is not None:
            bar.close()
    return out, run.engine, run.reason



def shift_sweep(
    model: nn.Module,
    x: Any,
    y: torch.Tensor | None = None,
    shifts: Iterable[Shift] | None = None,
    *,
    mode: str = "roll",
    engine: str = "auto",
    batch_size: int | None = None,
    structure: Structure | None = None,
    axis: Sequence[dict[str, Any]] | None = None,
    train_range: TrainRange | None = None,
    classes: Sequence[str] | None = None,
    tolerance: float = ACCURACY_TOLERANCE,
    progress: bool = False,
    executor: RayExecutor | None = None,
) -> Sweep:
    """Accuracy, true-class probability, confusion and consistency at every shift.

    Args:
        model: the classifier; left unchanged, run in eval mode.
        x: (N, C, L) or (N, C, H, W) inputs with ``y`` (N,) integer labels; or, with
            ``y`` left out, any data form: an ``(x, y)`` pair, a torch ``Dataset`` of
            ``(x, label)`` items, a ``DataLoader``, or an iterable of ``(x, y)``
            batches. Every form is read in the same batches and gives the same sweep.
        shifts: ints (1D) or ``(dy, dx)`` pairs (2D); include 0 for an invariance range.
        mode, engine, batch_size, structure, progress: as in :func:`sweep_logits`.
        axis: checkpoint ``axis`` metadata, one dict per spatial axis (name, unit,
            start, step), to give shifts in input units.
        train_range: shifts seen in training, ``r`` for ``[-r, r]`` or ``(lo, hi)``.
        classes: class names; default "0", "1", ...
        tolerance: how far (0.05 = 5 points) accuracy may move from the unshifted
            accuracy inside the invariance range.
        executor: where the work runs; None: this process.
            ``RayExecutor(address)`` splits the samples into shards swept on a Ray
            cluster and merges their sums: the same Sweep (counts exactly,
            probabilities to float64 rounding).

    Returns:
        A :class:`Sweep`.

    >>> sw = shift_sweep(model, x, y, range(-8, 9, 2))    # doctest: +SKIP
    >>> len(sw.accuracy), sw.invariance_range              # x: (64, 1, 64)
    (9, (-4, 6))
    >>> sw = shift_sweep(model, loader, shifts=[0, 4])     # doctest: +SKIP
    """
    if shifts is None:
        if y is not None and not isinstance(x, torch.Tensor):
            raise TypeError(
                "`shifts` is missing; with a data source pass it by name: "
                "shift_sweep(model, data, shifts=[...])"
            )
        raise TypeError("`shifts` is missing; pass the shifts to sweep, e.g. shifts=[-4, 0, 4]")
    if isinstance(x, torch.Tensor) and not isinstance(y, torch.Tensor):
        raise TypeError(f"`x` and `y` must be tensors, got {type(x).__name__}, {type(y).__name__}")
    source = as_source(x, y, name="x" if isinstance(x, torch.Tensor) else "data")
    options = {"mode": mode, "engine": engine, "batch_size": batch_size}
    if executor is not None:
        stats, ran, reason, shift_list = executor.sweep_stats(
            model, source, shifts, structure=structure, progress=progress, **options
        )
    else:
        stats, ran, reason, shift_list = sweep_stats(
            model, source.batches(), shifts, structure=structure, progress=progress,
            total=source.n, **options,
        )  # fmt: skip
    return build_sweep(
        stats,
        shift_list,
        mode=mode,
        engine=ran,
        reason=reason,
        tolerance=tolerance,
        classes=classes,
        axis=axis,
        train_range=train_range,
    )


def shift_sweep_stream(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    shifts: Iterable[Shift],
    *,
    total: int | None = None,
    **kwargs: Any,
) -> Sweep:
    """:func:`shift_sweep` over an iterable of ``(x, y)`` batches, for data that is
    generated or read in pieces; the same as ``shift_sweep(model, batches, shifts=...)``.

    Args:
        batches: ``(x (B, C, *spatial), y (B,))`` pairs, all with the same sample shape.
        total: number of samples, for the progress bar only.
        kwargs: as in :func:`shift_sweep`.

    >>> sw = shift_sweep_stream(model, iter(loader), [0, 4])   # doctest: +SKIP
    >>> sw.n                                                   # loader: 50 x (64, 1, 64)
    3200
    """
    source = as_source(batches, name="batches")
    if total is not None:
        source.n = total
    return shift_sweep(model, source, shifts=shifts, **kwargs)


def sweep_stats(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    shifts: Iterable[Shift],
    *,
    mode: str = "roll",
    engine: str = "auto",
    batch_size: int | None = None,
    structure: Structure | None = None,
    progress: bool = False,
    total: int | None = None,
) -> tuple[SweepStats, str, str, list[Shift]]:
    """The sums a sweep needs over ``batches``: what one process, or one worker on its
    shard, computes. Memory is bounded by one batch whatever the number of samples.

    Returns:
        ``(stats, engine that ran, why, the shifts as normalised)``.
    """
    run: LogitStream | None = None
    stats: SweepStats | None = None
    shift_list: list[Shift] = []
    bar = None
    try:
        for xb, yb in _checked(batches):
            if run is None:
                shift_list = _check_x(xb, shifts)
                bar = progress_bar(None if total is None else total * len(shift_list), progress)
                run = LogitStream(
                    model,
                    xb,
                    shift_list,
                    mode=mode,
                    engine=engine,
                    geo=structure,
                    batch_size=batch_size,
                    bar=bar,
                )
            elif tuple(xb.shape[1:]) != run.geo.input_shape:
                raise InterpError(
                    f"a batch of `x` has samples shaped {tuple(xb.shape[1:])} but "
                    f"the first had {run.geo.input_shape}; use one shape"
                )
            for i, logits in run.chunks(xb):  # logits (b, S, K)
                if stats is None:
                    stats = SweepStats.empty(logits.shape[1], logits.shape[2])
                stats.add(logits, yb[i : i + logits.shape[0]])
    finally:
        if bar is not None:
            bar.close()
    if run is None or stats is None:
        raise InterpError("no samples to sweep: `x` is empty; pass at least one sample")
    return stats, run.engine, run.reason, shift_list


def _checked(batches: Iterable[Any]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Check each ``(x, y)`` batch; skip empty ones."""
    for xb, yb in batches:
        if not isinstance(xb, torch.Tensor):
            raise TypeError(f"`x` must be a torch.Tensor, got {type(xb).__name__}")
        if not isinstance(yb, torch.Tensor) or yb.dim() != 1 or yb.shape[0] != xb.shape[0]:
            raise InterpError(
                f"`y` must hold one label per sample of `x` {tuple(xb.shape)}; "
                f"got {tuple(getattr(yb, 'shape', ()))}"
            )
        if yb.is_floating_point() or yb.is_complex() or yb.dtype == torch.bool:
            raise InterpError(f"`y` must hold integer class labels, got dtype {yb.dtype}")
        if xb.shape[0]:
            yield xb, yb
