"""Record per-position activations of named layers with forward hooks.

>>> with record(model, ["0", "2"]) as rec:      # doctest: +SKIP
...     model(x)
>>> rec["0"].shape                              # doctest: +SKIP
torch.Size([64, 64, 8067])                      # (N, kernel, position)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from interp.errors import InterpError

Reduce = Literal["mean", "max", "min", "sum"]
_REDUCES = ("mean", "max", "min", "sum")


def check_layers(model: nn.Module, layers: Sequence[str]) -> dict[str, nn.Module]:
    """Map each name in ``layers`` to its module; raise listing valid names if one is unknown."""
    if isinstance(layers, str):
        raise TypeError(
            f"`layers` must be a list of names, got the string {layers!r}; use [{layers!r}]"
        )
    modules = dict(model.named_modules())
    missing = [name for name in layers if name not in modules or name == ""]
    if missing:
        valid = ", ".join(n for n in modules if n) or "(none: the model has no submodules)"
        raise InterpError(f"`layers` {missing[0]!r} not found; available: {valid}")
    return {name: modules[name] for name in layers}


class Recording(Mapping[str, torch.Tensor]):
    """Activations recorded by :func:`record`, keyed by layer name.

    Without ``reduce`` each entry is the layer output for every sample seen,
    concatenated over forward calls: (N, C, L) or (N, C, H, W). With ``reduce``
    each entry is the running mean/max/min/sum over samples: (C, L) or (C, H, W),
    and ``count`` says how many samples went in.
    """

    def __init__(self, names: Sequence[str], device: torch.device, reduce: Reduce | None):
        self._names = list(names)
        self._device = device
        self._reduce = reduce
        self._chunks: dict[str, list[torch.Tensor]] = {n: [] for n in names}
        self._acc: dict[str, torch.Tensor] = {}
        self._count: dict[str, int] = {n: 0 for n in names}

    @property
    def count(self) -> int:
        """Number of samples recorded (for the first layer)."""
        return self._count[self._names[0]] if self._names else 0

    @property
    def reduce(self) -> Reduce | None:
        return self._reduce

    def _add(self, name: str, output: Any) -> None:
        if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
            output = output[0]
        if not isinstance(output, torch.Tensor):
            raise InterpError(
                f"layer {name!r} returned {type(output).__name__}, not a tensor; "
                "record another layer"
            )
        # Detached copy on the chosen device: an in-place op later in the forward
        # (ReLU(inplace=True)) cannot change what was recorded.
        value = output.detach().to(self._device, copy=True)
        n = int(value.shape[0]) if value.dim() else 1
        self._count[name] += n
        if self._reduce is None:
            self._chunks[name].append(value)
            return
        if self._reduce in ("mean", "sum"):
            part = value.to(torch.float64).sum(0)
            self._acc[name] = self._acc[name] + part if name in self._acc else part
        else:
            op = torch.amax if self._reduce == "max" else torch.amin
            part = op(value, 0)
            if name in self._acc:
                both = torch.stack([self._acc[name], part])
                self._acc[name] = op(both, 0)
            else:
                self._acc[name] = part

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self._count:
            raise KeyError(f"{name!r} was not recorded; recorded: {', '.join(self._names)}")
        if self._count[name] == 0:
            raise InterpError(f"layer {name!r} did not run: call the model inside the `with` block")
        if self._reduce is None:
            chunks = self._chunks[name]
            if len(chunks) > 1:
                self._chunks[name] = [torch.cat(chunks)]
            return self._chunks[name][0]
        acc = self._acc[name]
        if self._reduce == "mean":
            return (acc / self._count[name]).to(torch.float32)
        if self._reduce == "sum":
            return acc.to(torch.float32)
        return acc

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        shapes = ", ".join(
            f"{n!r}: {tuple(self[n].shape)}" if self._count[n] else f"{n!r}: (not run)"
            for n in self._names
        )
        return f"Recording({shapes})"


class record:
    """Record the outputs of named layers during forward passes.

    Args:
        model: any ``nn.Module``; it is not changed (no mode switch, hooks removed).
        layers: ``named_modules()`` paths, e.g. ``["0", "2"]``.
        device: where recorded tensors are kept (default CPU).
        reduce: keep only a running ``"mean"``, ``"max"``, ``"min"`` or ``"sum"`` over
            samples, so a large dataset can be streamed in batches with bounded memory.

    Raises:
        InterpError: a name is unknown (the message lists the valid ones).

    >>> with record(model, ["0"]) as rec:       # doctest: +SKIP
    ...     model(x)                            # x: (64, 1, 8192)
    >>> rec["0"].shape                          # doctest: +SKIP
    torch.Size([64, 64, 8067])
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[str],
        *,
        device: str | torch.device = "cpu",
        reduce: Reduce | None = None,
    ) -> None:
        if reduce is not None and reduce not in _REDUCES:
            raise ValueError(
                f"`reduce` must be one of {', '.join(_REDUCES)} or None, got {reduce!r}"
            )
        self._modules = check_layers(model, layers)
        self._handles: list[RemovableHandle] = []
        self.recording = Recording(list(self._modules), torch.device(device), reduce)

    def __enter__(self) -> Recording:
        try:
            for name, module in self._modules.items():
                self._handles.append(module.register_forward_hook(self._hook(name)))
        except BaseException:
            self._remove()
            raise
        return self.recording

    def __exit__(self, *exc: object) -> None:
        self._remove()  # never swallows the exception: returns None

    def _hook(self, name: str):
        def hook(_module: nn.Module, _inputs: tuple[Any, ...], output: Any) -> None:
            self.recording._add(name, output)

        return hook

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
