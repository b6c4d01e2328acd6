"""An exact shift sweep over a Ray cluster: shards of samples on workers, sums merged.

Everything a :class:`~interp.sweep.result.Sweep` reports comes from sums over
samples (:class:`~interp.sweep.stats.SweepStats`), so the samples can be split into
shards, each swept by a worker running the same code as one process
(:func:`interp.sweep.core.sweep_stats`), and the sums added on the driver: counts
exactly, probability sums to float64 rounding. Shards are whole multiples of the
batch size (:data:`interp._batches.BATCH`), so every worker feeds the model the
very batches one process would, and the logits are the same bits.

What travels to the workers:

- **the model, as file bytes** through the object store: the file it was loaded
  from (``model_path``), loaded on each worker by :func:`interp.load` with the same
  ``trust``/``arch``/``input_shape`` (the same refusals as on the driver); or, for
  an in-memory ``nn.Sequential`` of torch.nn layers with no file, an interp
  checkpoint made on the driver (loads with ``weights_only=True``, no trust). Other
  in-memory models need ``model_path``. Each worker loads the model once, on its
  CPU, and checks that its parameters equal the driver's (a model changed after
  loading is refused, not silently replaced by the file).
- **the data**: tensors and map-style Datasets (and DataLoaders over them) go once
  to the object store and each shard is a row range ``[start, stop)`` read on the
  worker; a Dataset that reads files needs them at the same paths on every node.
  An iterable of batches is read on the driver and its batches travel in shards.

A shard whose worker fails (a crash, a lost node, a read error) is retried once
(a dead worker is replaced first); a second failure, or an
:class:`~interp.errors.InterpError` (bad data), is reported with the shard's index
and rows.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from interp._batches import BATCH, Source
from interp.errors import InterpError
from interp.geometry.core import Structure
from interp.shifts import Shift
from interp.sweep.stats import SweepStats

__all__ = ["RayExecutor"]

_SHARDS_PER_WORKER = 4  # shards per worker: balance and progress vs per-shard overhead
_ATTEMPTS = 2  # a failed shard is tried once more


def _need_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InterpError(
            "the distributed sweep needs Ray; install it with pip install 'interp[ray]'"
        ) from None
    return ray


def _ray_up() -> bool:
    try:
        import ray
    except ImportError:
        return False
    return bool(ray.is_initialized())


def _digest(model: nn.Module) -> str:
    """The model's parameters and buffers as a digest, independent of their names."""
    parts = sorted(
        hashlib.sha256(
            t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes()
        ).hexdigest()
        + str(tuple(t.shape))
        for t in model.state_dict().values()
        if isinstance(t, torch.Tensor)
    )
    return hashlib.sha256("".join(parts).encode()).hexdigest()


class _Worker:
    """One Ray actor: loads the model once, sweeps shards."""

    def __init__(self, payload: bytes, load: dict[str, Any], digest: str, label: str) -> None:
        self.geo: Structure | None = None
        self.error: str | None = None  # a refusal while loading, raised by every sweep
        try:
            self.model = self._load(payload, load, digest, label)
        except InterpError as err:
            self.error = str(err)

    @staticmethod
    def _load(payload: bytes, load: dict[str, Any], digest: str, label: str) -> nn.Module:
        from interp.loading.core import load as load_model

        fd, tmp = tempfile.mkstemp(suffix=Path(label).suffix or ".pt")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
            model, _ = load_model(tmp, **load)
        finally:
            Path(tmp).unlink(missing_ok=True)
        model = model.cpu()
        if _digest(model) != digest:
            raise InterpError(
                f"the model loaded from {label} on a worker differs from the model passed to "
                "the sweep (changed after loading?); save it and pass that file as `model_path`"
            )
        return model

    def sweep(
        self, data: Any, start: int, stop: int | None, shifts: list[Shift], options: dict[str, Any]
    ) -> tuple[SweepStats, str, str]:
        from interp.geometry.core import structure
        from interp.sweep.core import sweep_stats

        if self.error is not None:
            raise InterpError(self.error)
        batches: Iterator[tuple[torch.Tensor, torch.Tensor]] = (
            data.batches(start, stop) if isinstance(data, Source) else iter(data)
        )
        first = next(batches, None)
        if first is None:
            raise InterpError(f"shard rows {start}..{stop} are empty")
        if self.geo is None or self.geo.input_shape != tuple(first[0].shape[1:]):
            self.geo = structure(self.model, first[0][:1])
        stats, ran, why, _ = sweep_stats(
            self.model, _chain(first, batches), shifts, structure=self.geo, **options
        )
        return stats, ran, why


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


class RayExecutor:
    """Run :func:`~interp.sweep.core.shift_sweep` on a Ray cluster; the same Sweep, exactly.

    Args:
        address: the cluster (``"ray://host:10001"``, ``"host:6379"``, ``"auto"``); None:
            ``RAY_ADDRESS`` if set, else start a local Ray on this machine. An already
            initialised Ray is used as it is.
        num_workers: workers (one CPU each); None: every CPU of the cluster.
        model_path: the file the model was loaded from, sent to the workers; needed
            unless the model is an ``nn.Sequential`` of torch.nn layers.
        trust, arch, arch_kwargs, input_shape, max_memory: how the workers open
            ``model_path``, as in :func:`interp.load` (``arch`` must be a
            ``"module:Factory"`` string importable on every worker).

    >>> ex = RayExecutor(num_workers=2)                              # doctest: +SKIP
    >>> sw = shift_sweep(model, x, y, [-4, 0, 4], executor=ex)       # doctest: +SKIP
    >>> ex.close()                                                   # doctest: +SKIP
    """

    def __init__(
        self,
        address: str | None = None,
        num_workers: int | None = None,
        *,
        model_path: str | os.PathLike[str] | None = None,
        trust: bool = False,
        arch: str | None = None,
        arch_kwargs: dict[str, Any] | None = None,
        input_shape: tuple[int, ...] | None = None,
        max_memory: int | str | None = None,
    ) -> None:
        if num_workers is not None and (
            isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1
        ):
            raise ValueError(f"`num_workers` must be a positive int, got {num_workers!r}")
        if arch is not None and not isinstance(arch, str):
            raise TypeError("`arch` must be a 'module:Factory' string: workers import it by name")
        self.address, self.num_workers = address, num_workers
        self.model_path = Path(model_path) if model_path is not None else None
        self.load_options: dict[str, Any] = {"trust": trust, "arch": arch}
        if arch_kwargs is not None:
            self.load_options["arch_kwargs"] = dict(arch_kwargs)
        if input_shape is not None:
            self.load_options["input_shape"] = tuple(input_shape)
        if max_memory is not None:
            self.load_options["max_memory"] = max_memory
        self._started = False
        self._pool: tuple[str, list[Any], Any] | None = None  # (model key, actors, spawn)

    def close(self) -> None:
        """Stop this executor's workers, and Ray if this executor started it."""
        self.close_workers()
        if self._started:
            _need_ray().shutdown()
            self._started = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connect(self) -> Any:
        ray = _need_ray()
        if not ray.is_initialized():
            import logging

            try:
                ray.init(address=self.address, logging_level=logging.WARNING, log_to_driver=False)
            except (ConnectionError, ValueError, RuntimeError) as err:
                where = self.address or os.environ.get("RAY_ADDRESS") or "a local cluster"
                first = str(err).splitlines()[0] if str(err) else type(err).__name__
                raise InterpError(
                    f"cannot connect to Ray at {where} ({first}); start it with `ray start "
                    "--head` or pass the head's address"
                ) from None
            self._started = True
        return ray

    def _payload(self, model: nn.Module) -> tuple[bytes, dict[str, Any], str]:
        if self.model_path is not None:
            try:
                return self.model_path.read_bytes(), self.load_options, str(self.model_path)
            except OSError as err:
                raise InterpError(
                    f"cannot read model file {self.model_path} ({err.strerror}); check the path"
                ) from None
        from interp.loading.checkpoint import pack

        try:
            payload = pack(model, None)
        except InterpError as err:
            raise InterpError(
                f"the model cannot travel to Ray workers without its file ({err}); pass "
                "RayExecutor(model_path=FILE) with the file it was loaded from"
            ) from None
        buf = io.BytesIO()
        torch.save(payload, buf)
        return buf.getvalue(), {}, "an in-memory interp checkpoint"

    def sweep_stats(
        self,
        model: nn.Module,
        source: Source,
        shifts: Iterable[Shift],
        *,
        structure: Structure | None = None,
        progress: bool = False,
        **options: Any,
    ) -> tuple[SweepStats, str, str, list[Shift]]:
        """The merged sums over all shards (what :func:`~interp.sweep.core.shift_sweep` calls)."""
        ray = self._connect()
        payload, load, label = self._payload(model)
        digest = _digest(model)
        workers = self.num_workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        shift_list = _normalise(shifts)
        key = f"{digest}:{load}:{workers}"
        if self._pool is None or self._pool[0] != key:  # workers load the model once
            self.close_workers()
            actor_cls = ray.remote(num_cpus=1)(_Worker)
            payload_ref = ray.put(payload)

            def spawn() -> Any:
                return actor_cls.remote(payload_ref, load, digest, label)

            self._pool = (key, [spawn() for _ in range(workers)], spawn)
        _, actors, spawn = self._pool
        return _Run(ray, actors, spawn, source, shift_list, options, workers, progress).go()

    def close_workers(self) -> None:
        """Stop the workers (they hold the model); Ray keeps running."""
        if self._pool is not None and _ray_up():
            for actor in self._pool[1]:
                _need_ray().kill(actor)
        self._pool = None


def _normalise(shifts: Iterable[Shift]) -> list[Shift]:
    """The shift list, normalised once for every worker; each worker checks it against
    its samples' rank as one process does."""
    from interp.shifts import normalize_shifts

    shifts = list(shifts)
    dims = 2 if shifts and isinstance(shifts[0], (tuple, list)) else 1
    return normalize_shifts(shifts, dims)


class _Run:
    """One distributed sweep: plan shards, keep every worker busy, retry, merge in order."""

    def __init__(
        self,
        ray: Any,
        actors: list[Any],
        spawn: Any,
        source: Source,
        shifts: list[Shift],
        options: dict[str, Any],
        workers: int,
        progress: bool,
    ) -> None:
        self.ray, self.actors, self.spawn = ray, actors, spawn
        self.source, self.shifts, self.options = source, shifts, options
        self.workers, self.progress = workers, progress

    def _shards(self) -> Iterator[tuple[Any, int, int | None, str]]:
        """(data or its ref, start, stop, description) per shard, in sample order."""
        ray, src = self.ray, self.source
        if src.indexable and src.n is not None:
            shared = src._map if hasattr(src, "_map") else src  # a DataLoader: its dataset
            ref = ray.put(shared)
            per = -(-src.n // (self.workers * _SHARDS_PER_WORKER))
            per = max(BATCH, -(-per // BATCH) * BATCH)  # whole batches: the same logits
            for start in range(0, src.n, per):
                stop = min(start + per, src.n)
                yield ref, start, stop, f"rows {start}..{stop - 1}"
            return
        group: list[tuple[torch.Tensor, torch.Tensor]] = []
        row = 0
        for xb, yb in src.batches():
            group.append((xb, yb))
            if len(group) == _SHARDS_PER_WORKER:
                size = sum(int(b[0].shape[0]) for b in group)
                yield ray.put(group), 0, None, f"rows {row}..{row + size - 1}"
                row, group = row + size, []
        if group:
            size = sum(int(b[0].shape[0]) for b in group)
            yield ray.put(group), 0, None, f"rows {row}..{row + size - 1}"

    def go(self) -> tuple[SweepStats, str, str, list[Shift]]:
        ray = self.ray
        bar = None
        if self.progress:
            import sys

            from tqdm import tqdm

            bar = tqdm(total=None, file=sys.stderr, unit="shard", desc="shift sweep (ray)",
                       leave=False)  # fmt: skip
        plan = self._shards()
        shards: dict[int, tuple[Any, int, int | None, str]] = {}
        self.shards = shards
        running: dict[Any, tuple[int, int, int]] = {}  # ref -> (shard, attempt, actor)
        done: dict[int, tuple[SweepStats, str, str]] = {}
        merged: SweepStats | None = None
        engines: list[tuple[str, str]] = []
        free = list(range(len(self.actors)))
        next_merge, exhausted, index = 0, False, 0

        def submit(i: int, attempt: int) -> None:
            slot = free.pop(0)
            data, start, stop, _ = shards[i]
            ref = self.actors[slot].sweep.remote(data, start, stop, self.shifts, self.options)
            running[ref] = (i, attempt, slot)

        try:
            while True:
                while free and not exhausted:
                    item = next(plan, None)
                    if item is None:
                        exhausted = True
                        if bar is not None:
                            bar.total = index
                            bar.refresh()
                        break
                    shards[index] = item
                    submit(index, 1)
                    index += 1
                if not running:
                    break
                ready, _ = ray.wait(list(running), num_returns=1)
                ref = ready[0]
                i, attempt, slot = running.pop(ref)
                try:
                    done[i] = ray.get(ref)
                except Exception as err:
                    self._failed(err, i, attempt, slot)
                    free.append(slot)
                    submit(i, attempt + 1)
                    continue
                free.append(slot)
                if bar is not None:
                    bar.update(1)
                while next_merge in done:  # merge in shard order: the same rounding every run
                    stats, ran, why = done.pop(next_merge)
                    shards.pop(next_merge)
                    engines.append((ran, why))
                    if merged is None:
                        merged = stats
                    else:
                        merged.merge(stats)
                    next_merge += 1
        finally:
            if bar is not None:
                bar.close()
        if merged is None:
            raise InterpError("no samples to sweep: `data` is empty; pass at least one sample")
        ran, why = next((e for e in engines if e[0] == "brute"), engines[0])
        return merged, ran, why, self.shifts

    def _failed(self, err: Exception, i: int, attempt: int, slot: int) -> None:
        """Raise for a shard that cannot succeed; else replace a dead worker for a retry."""
        rows = self.shards[i][3]
        cause = getattr(err, "cause", err)
        if isinstance(cause, InterpError):
            raise InterpError(f"shard {i} ({rows}): {cause}") from None
        first = str(cause).splitlines()[0] if str(cause) else ""
        if attempt >= _ATTEMPTS:
            raise InterpError(
                f"shard {i} ({rows}) failed {attempt} times on Ray workers: "
                f"{type(cause).__name__}: {first}; see the worker logs (ray logs)"
            ) from None
        if isinstance(err, self.ray.exceptions.RayActorError):
            self.actors[slot] = self.spawn()
