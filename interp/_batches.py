"""Labelled samples from any data form, read in fixed-size batches.

An analysis that takes data accepts four forms, normalised here by
:func:`as_source`:

- a tensor pair ``(x (N, C, *spatial), y (N,))``;
- a ``torch.utils.data.Dataset`` whose items are ``(x (C, *spatial), label)``
  (map-style: ``len`` and ``[i]``; an ``IterableDataset`` yields such items);
- a ``torch.utils.data.DataLoader`` yielding ``(x, y)`` batches;
- any other iterable of ``(x (B, C, *spatial), y (B,))`` batches.

Every form is re-cut into batches of the same size (:data:`BATCH` rows, the last
shorter), so the model sees the same inputs in the same groups whatever form the
data came in, and the numbers are identical, not only close. Only one batch is in
memory at a time. A map-style source can also be read by row index
(:meth:`Source.rows`), which is what sharding over workers and seeded
subsampling use.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils import data as tud

from interp.errors import InterpError

BATCH = 256  # rows per batch, for every data form
Rows = Iterator[tuple[torch.Tensor, torch.Tensor]]  # (x (B, C, *spatial), y (B,)) batches
_FORMS = (
    "pass (x, y) tensors, a torch Dataset of (x, label) items, a DataLoader, "
    "or an iterable of (x, y) batches"
)


class Source:
    """Labelled samples, read in batches of :data:`BATCH` rows.

    ``n`` is the number of samples when known without reading the data, else None.
    ``indexable`` says whether :meth:`rows` works (tensors, map-style datasets, and
    DataLoaders over them that read each sample once).
    """

    n: int | None = None
    indexable = False
    name = "data"

    def batches(self, start: int = 0, stop: int | None = None) -> Rows:
        """``(x (B, C, *spatial), y (B,))`` over rows ``[start, stop)`` (indexable sources)
        or over everything (others: ``start``/``stop`` must be left as they are)."""
        raise NotImplementedError

    def rows(self, index: Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The samples at ``index``, stacked: ``(x (len(index), ...), y (len(index),))``."""
        raise TypeError(
            f"`{self.name}` is an iterable of batches and cannot be read by row; pass "
            "tensors or a map-style Dataset"
        )

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All samples as one ``(x, y)`` pair (reads everything into memory)."""
        xs, ys = [], []
        for xb, yb in self.batches():
            xs.append(xb)
            ys.append(yb)
        if not xs:
            raise InterpError(f"`{self.name}` holds no samples; pass at least one")
        return torch.cat(xs), torch.cat(ys)


class _Tensors(Source):
    indexable = True

    def __init__(self, x: torch.Tensor, y: torch.Tensor, name: str) -> None:
        if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise TypeError(
                f"`{name}` must hold tensors x and y, got {type(x).__name__}, {type(y).__name__}"
            )
        if y.shape != (x.shape[0],):
            raise InterpError(
                f"`y` has shape {tuple(y.shape)} but `x` has {x.shape[0]} samples; "
                "pass one label per sample"
            )
        self.x, self.y, self.n, self.name = x, y, int(x.shape[0]), name

    def batches(self, start: int = 0, stop: int | None = None) -> Rows:
        stop = self.n if stop is None else min(stop, self.n)
        for i in range(start, stop, BATCH):
            j = min(i + BATCH, stop)
            yield self.x[i:j], self.y[i:j]

    def rows(self, index: Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(index, dtype=torch.long)
        return self.x[index], self.y[index]

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x, self.y


class _MapDataset(Source):
    indexable = True

    def __init__(self, dataset: Any, name: str) -> None:
        self.dataset, self.n, self.name = dataset, len(dataset), name

    def batches(self, start: int = 0, stop: int | None = None) -> Rows:
        stop = self.n if stop is None else min(stop, self.n)
        for i in range(start, stop, BATCH):
            yield self.rows(range(i, min(i + BATCH, stop)))

    def rows(self, index: Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        items = [_sample(self.dataset[int(i)], int(i), self.name) for i in index]
        return _stack(items, self.name)


class _Stream(Source):
    """An iterable of batches (or, for an IterableDataset, of samples), re-cut to BATCH."""

    def __init__(self, iterable: Iterable[Any], name: str, *, samples: bool) -> None:
        self.iterable, self.name, self.samples = iterable, name, samples

    def batches(self, start: int = 0, stop: int | None = None) -> Rows:
        if start != 0 or stop is not None:
            raise TypeError(f"`{self.name}` is an iterable and cannot be read from a row")
        items: Iterable[tuple[torch.Tensor, torch.Tensor]]
        if self.samples:
            items = _grouped(self.iterable, self.name)
        else:
            items = (_batch(b, i, self.name) for i, b in enumerate(self.iterable))
        return rebatch(items, self.name)


class _Loader(_Stream):
    """A DataLoader: iterated as it is (its workers, transforms, collate), and read by row
    through its dataset when one epoch reads every sample of a map-style dataset once."""

    def __init__(self, loader: tud.DataLoader, name: str) -> None:
        super().__init__(loader, name, samples=False)
        ds = loader.dataset
        once = isinstance(loader.sampler, tud.SequentialSampler) or (
            isinstance(loader.sampler, tud.RandomSampler)
            and not loader.sampler.replacement
            and loader.sampler._num_samples is None
        )
        default = loader.collate_fn is tud.default_collate
        if not isinstance(ds, tud.IterableDataset) and hasattr(ds, "__len__") and once and default:
            self.indexable = True
            self.n = len(ds)
            self._map = _MapDataset(ds, name)
        self.ordered = isinstance(loader.sampler, tud.SequentialSampler)

    def rows(self, index: Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.indexable:
            return super().rows(index)
        return self._map.rows(index)

    def batches(self, start: int = 0, stop: int | None = None) -> Rows:
        if start == 0 and stop is None:
            return super().batches()
        if not self.indexable:
            raise TypeError(f"`{self.name}` cannot be read from a row")
        return self._map.batches(start, stop)


def as_source(data: Any, y: Any = None, *, name: str = "data") -> Source:
    """Normalise any supported data form (see the module docstring) to a :class:`Source`.

    Args:
        data: ``x`` (with ``y``), an ``(x, y)`` pair, a Dataset, a DataLoader or an
            iterable of ``(x, y)`` batches; a :class:`Source` is returned as it is.
        y: labels when ``data`` is the tensor ``x``.
        name: the argument's name, for messages.

    >>> src = as_source(x, y)                 # doctest: +SKIP
    >>> next(src.batches())[0].shape          # x: (1000, 1, 64)
    torch.Size([256, 1, 64])
    """
    if isinstance(data, Source):
        return data
    if isinstance(data, torch.Tensor):
        if y is None:
            raise TypeError(f"`{name}` is a tensor of inputs; pass the labels `y` too")
        return _Tensors(data, y, name)
    if y is not None:
        raise TypeError(f"`y` is only for a tensor `x`; `{name}` is a {type(data).__name__}")
    if isinstance(data, tud.DataLoader):
        return _Loader(data, name)
    if isinstance(data, tud.IterableDataset):
        return _Stream(data, name, samples=True)
    if isinstance(data, tud.Dataset):
        return _MapDataset(data, name)
    if hasattr(data, "x") and hasattr(data, "y") and isinstance(data.x, torch.Tensor):
        return _Tensors(data.x, data.y, name)  # interp's loaded Dataset, Examples
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        return _Tensors(data[0], data[1], name)
    if (
        hasattr(data, "__getitem__")
        and hasattr(data, "__len__")
        and not isinstance(data, (str, bytes, tuple, list, dict))
    ):
        return _MapDataset(data, name)
    if isinstance(data, Iterable) and not isinstance(data, (str, bytes, dict)):
        return _Stream(data, name, samples=False)
    raise TypeError(f"`{name}` is a {type(data).__name__}; {_FORMS}")


def rebatch(
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]], name: str = "data", size: int = BATCH
) -> Rows:
    """Re-cut ``(x, y)`` batches of any sizes into batches of ``size`` rows (the last shorter)."""
    xs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    held = 0
    shape: tuple[int, ...] | None = None
    for xb, yb in batches:
        if shape is None:
            shape = tuple(xb.shape[1:])
        elif tuple(xb.shape[1:]) != shape:
            raise InterpError(
                f"a batch of `{name}` has samples shaped {tuple(xb.shape[1:])} but the first "
                f"had {shape}; use one shape"
            )
        xs.append(xb)
        ys.append(yb)
        held += xb.shape[0]
        while held >= size:
            x_all, y_all = torch.cat(xs), torch.cat(ys)
            held -= size
            # The leftover rows are copied out before the yield: a view of them would pin
            # the whole of x_all (one batch more in memory) while the caller works.
            xs = [x_all[size:].clone()] if held else []
            ys = [y_all[size:].clone()] if held else []
            yield x_all[:size], y_all[:size]
            del x_all, y_all
    if held:
        yield torch.cat(xs), torch.cat(ys)


def _grouped(items: Iterable[Any], name: str) -> Rows:
    group: list[tuple[torch.Tensor, int]] = []
    for i, item in enumerate(items):
        group.append(_sample(item, i, name))
        if len(group) == BATCH:
            yield _stack(group, name)
            group = []
    if group:
        yield _stack(group, name)


def _tensor(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return torch.from_numpy(np.ascontiguousarray(value))
    raise TypeError(f"{what} is a {type(value).__name__}; {_FORMS}")


def _pair(item: Any, what: str) -> tuple[Any, Any]:
    if isinstance(item, (tuple, list)) and len(item) == 2:
        return item[0], item[1]
    kind = f"a {type(item).__name__}"
    if isinstance(item, (tuple, list)):
        kind += f" of {len(item)}"
    raise TypeError(f"{what} is {kind}, not an (x, y) pair; {_FORMS}")


def _sample(item: Any, i: int, name: str) -> tuple[torch.Tensor, int]:
    """One dataset item -> (x (C, *spatial), integer label)."""
    x, label = _pair(item, f"item {i} of `{name}`")
    x = _tensor(x, f"`x` of item {i} of `{name}`")
    if isinstance(label, (torch.Tensor, np.ndarray)) and int(np.prod(label.shape)) == 1:
        label = label.reshape(()).item()  # a 0-d or one-element tensor
    if isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, np.integer)):
        raise InterpError(
            f"item {i} of `{name}` has label {label!r}; labels must be integer class indices"
        )
    return x, int(label)


def _stack(items: list[tuple[torch.Tensor, int]], name: str) -> tuple[torch.Tensor, torch.Tensor]:
    shape = tuple(items[0][0].shape)
    for x, _ in items:
        if tuple(x.shape) != shape:
            raise InterpError(
                f"`{name}` has samples shaped {tuple(x.shape)} and {shape}; use one shape"
            )
    return torch.stack([x for x, _ in items]), torch.tensor([v for _, v in items], dtype=torch.long)


def _batch(item: Any, i: int, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch -> (x (B, C, *spatial), y (B,) int64)."""
    x, y = _pair(item, f"batch {i} of `{name}`")
    x = _tensor(x, f"`x` of batch {i} of `{name}`")
    y = _tensor(y, f"`y` of batch {i} of `{name}`")
    if y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise InterpError(
            f"`y` must hold one label per sample of `x` {tuple(x.shape)}; got {tuple(y.shape)} "
            f"in batch {i} of `{name}`"
        )
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise InterpError(f"`y` must hold integer class labels, got dtype {y.dtype}")
    return x, y.to(torch.long)


class _Replay(Source):
    """A one-pass source whose first batch was already read: that batch, then the rest."""

    def __init__(self, first: tuple[torch.Tensor, torch.Tensor], rest: Rows, name: str) -> None:
        self.first, self.rest, self.name = first, rest, name

    def batches(self, start: int = 0, stop: int | None = None) -> Rows:
        if start != 0 or stop is not None:
            raise TypeError(f"`{self.name}` is an iterable and cannot be read from a row")
        yield self.first
        yield from self.rest


def peek(source: Source) -> tuple[tuple[torch.Tensor, torch.Tensor] | None, Source]:
    """The first batch of ``source`` (e.g. to build a structure) and a source that still
    yields every sample: for a one-pass iterable, the batch read is replayed."""
    if source.indexable:
        return next(source.batches(0, 1), None), source
    rest = source.batches()
    first = next(rest, None)
    if first is None:
        return None, source
    replay = _Replay(first, rest, source.name)
    replay.n = source.n
    return first, replay
