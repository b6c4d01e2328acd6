"""Record per-position activations of named layers with forward hooks.

>>> with record(model, ["0", "2"]) as rec:      # doctest: +SKIP
...     model(x)
>>> rec["0"].shape                              # doctest: +SKIP
torch.Size([64, 64, 8067])                      # (N, kernel, position)
"""

from __future__ import annotations

import re
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


_SITE = re.compile(r"^(?P<path>.+)#(?P<call>[1-9][0-9]*)$")


def _parse(model: nn.Module, layers: Sequence[str]) -> tuple[dict[str, tuple[str, int | None]],
                                                              list[str]]:
    """Split names into module call sites ``{name: (path, call or None)}`` and graph nodes."""
    if isinstance(layers, str):
        raise TypeError(
            f"`layers` must be a list of names, got the string {layers!r}; use [{layers!r}]"
        )
    modules = dict(model.named_modules())
    sites: dict[str, tuple[str, int | None]] = {}
    nodes: list[str] = []
    for name in layers:
        if not isinstance(name, str):
            raise TypeError(f"`layers` must hold strings, got {type(name).__name__}")
        match = _SITE.match(name)
        if name in modules and name != "":
            sites[name] = (name, None)
        elif match and match["path"] in modules and match["path"] != "":
            sites[name] = (match["path"], int(match["call"]))
        else:
            nodes.append(name)
    return sites, nodes


def _call_key(path: str, call: int) -> str:
    return f"{path}\x00{call}"


class Recording(Mapping[str, torch.Tensor]):
    """Activations recorded by :func:`record`, keyed by the names asked for.

    Each call site is stored on its own, never concatenated with another call of the same
    module. Without ``reduce`` each entry is that site's output for every sample seen,
    concatenated over forward calls: (N, C, L) or (N, C, H, W). With ``reduce`` each entry is
    the running mean/max/min/sum over samples: (C, L) or (C, H, W), and ``count`` says how many
    samples went in.

    A module path names its only call; for a module that ran more than once in one forward
    (torchvision's BasicBlock reuses ``self.relu``) the bare path is ambiguous and
    ``rec[path]`` raises, naming ``path#1``, ``path#2``...: record one of those instead.
    """

    def __init__(self, names: Sequence[str], device: torch.device, reduce: Reduce | None):
        self._names = list(names)
        self._device = device
        self._reduce = reduce
        self._chunks: dict[str, list[torch.Tensor]] = {}
        self._acc: dict[str, torch.Tensor] = {}
        self._count: dict[str, int] = {}
        self._most_calls: dict[str, int] = {}  # name -> most calls seen in one forward

    def _site(self, name: str) -> str:
        # a bare module path stores each call under its own key, apart from 'path#k' names
        return _call_key(name, 1) if name in self._most_calls else name

    @property
    def count(self) -> int:
        """Number of samples recorded (for the first layer)."""
        if not self._names:
            return 0
        return self._count.get(self._site(self._names[0]), 0)

    @property
    def reduce(self) -> Reduce | None:
        return self._reduce

    def _add(self, key: str, output: Any) -> None:
        if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
            output = output[0]
        if not isinstance(output, torch.Tensor):
            shown = key.split("\x00")[0]
            raise InterpError(
                f"layer {shown!r} returned {type(output).__name__}, not a tensor; "
                "record another layer"
            )
        # Detached copy on the chosen device: an in-place op later in the forward
        # (ReLU(inplace=True)) cannot change what was recorded.
        value = output.detach().to(self._device, copy=True)
        n = int(value.shape[0]) if value.dim() else 1
        self._count[key] = self._count.get(key, 0) + n
        if self._reduce is None:
            self._chunks.setdefault(key, []).append(value)
            return
        if self._reduce in ("mean", "sum"):
            part = value.to(torch.float64).sum(0)
            self._acc[key] = self._acc[key] + part if key in self._acc else part
        else:
            op = torch.amax if self._reduce == "max" else torch.amin
            part = op(value, 0)
            if key in self._acc:
                self._acc[key] = op(torch.stack([self._acc[key], part]), 0)
            else:
                self._acc[key] = part

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self._names:
            raise KeyError(f"{name!r} was not recorded; recorded: {', '.join(self._names)}")
        calls = self._most_calls.get(name, 1)
        if calls > 1:
            sites = ", ".join(f"{name}#{k}" for k in range(1, calls + 1))
            raise InterpError(
                f"`layers` {name!r} ran {calls} times in one forward (call sites {sites}); "
                f"record one call site, e.g. record(model, [{f'{name}#{calls}'!r}])"
            )
        key = self._site(name)
        if self._count.get(key, 0) == 0:
            raise InterpError(f"layer {name!r} did not run: call the model inside the `with` block")
        if self._reduce is None:
            chunks = self._chunks[key]
            if len(chunks) > 1:
                self._chunks[key] = [torch.cat(chunks)]
            return self._chunks[key][0]
        acc = self._acc[key]
        if self._reduce == "mean":
            return (acc / self._count[key]).to(torch.float32)
        if self._reduce == "sum":
            return acc.to(torch.float32)
        return acc

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        parts = []
        for n in self._names:
            try:
                parts.append(f"{n!r}: {tuple(self[n].shape)}")
            except InterpError:
                parts.append(f"{n!r}: (not run or ambiguous)")
        return f"Recording({', '.join(parts)})"


class record:
    """Record the outputs of named call sites during forward passes.

    Args:
        model: any ``nn.Module``; it is not changed (no mode switch, hooks removed).
        layers: call-site names: ``named_modules()`` paths (``"0"``, ``"layer4"``), the k-th
            call of a reused module (``"layer1.0.relu#2"``), or functional nodes of the traced
            graph (``"add_1"``, ``"relu"``, ``"flatten"``: see ``structure(model, x).layers``).
        device: where recorded tensors are kept (default CPU).
        reduce: keep only a running ``"mean"``, ``"max"``, ``"min"`` or ``"sum"`` over
            samples, so a large dataset can be streamed in batches with bounded memory.
        example: an input batch, to check functional node names before any hook is added
            (without it they are checked on the first forward inside the block).

    Functional nodes are read by running the traced graph on each input the model gets
    (one extra forward per call); module call sites by forward hooks.

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
        example: torch.Tensor | None = None,
    ) -> None:
        if reduce is not None and reduce not in _REDUCES:
            raise ValueError(
                f"`reduce` must be one of {', '.join(_REDUCES)} or None, got {reduce!r}"
            )
        self._model = model
        self._sites, self._nodes = _parse(model, layers)
        self._graph: Any = None
        if self._nodes and example is not None:
            self._graph = self._traced(example)
        elif self._nodes:
            self._precheck()
        self._handles: list[RemovableHandle] = []
        self._calls: dict[str, int] = {}  # module path -> calls in the current forward
        self._in_root = False
        self._busy = False
        self.recording = Recording(list(dict.fromkeys(layers)), torch.device(device), reduce)

    def _traced(self, x: torch.Tensor) -> Any:
        from interp.geometry.graph import trace

        self._busy = True
        try:
            graph = trace(self._model, x)
        finally:
            self._busy = False
        missing = [n for n in self._nodes if n not in graph.names or n in ("input", "output")]
        if missing:
            paths = [n for n, _ in self._model.named_modules() if n]
            valid = list(dict.fromkeys([*paths, *graph.names[1:-1]]))
            raise InterpError(f"`layers` {missing[0]!r} not found; available: {', '.join(valid)}")
        return graph

    def _precheck(self) -> None:
        """Without an input, check functional names against an fx trace where one works."""
        import torch.fx

        from interp.geometry.graph import is_leaf_module

        class _Tracer(torch.fx.Tracer):
            def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
                return is_leaf_module(m)

        try:
            graph = _Tracer().trace(self._model)
        except Exception:
            return  # not fx-traceable: names are checked on the traced graph at the first call
        functional = [
            n.name for n in graph.nodes if n.op in ("call_function", "call_method")
        ]
        known = set(functional) | {f"{n}_" for n in functional}
        missing = [n for n in self._nodes if n not in known]
        if missing:
            paths = [n for n, _ in self._model.named_modules() if n]
            valid = ", ".join([*paths, *functional]) or "(none: the model has no submodules)"
            raise InterpError(f"`layers` {missing[0]!r} not found; available: {valid}")

    def __enter__(self) -> Recording:
        try:
            paths = {path for path, _ in self._sites.values()}
            modules = dict(self._model.named_modules())
            self._handles.append(self._model.register_forward_pre_hook(self._root_pre))
            self._handles.append(self._model.register_forward_hook(self._root_post))
            for path in paths:
                self._handles.append(modules[path].register_forward_hook(self._hook(path)))
        except BaseException:
            self._remove()
            raise
        return self.recording

    def __exit__(self, *exc: object) -> None:
        self._remove()  # never swallows the exception: returns None

    def _root_pre(self, _module: nn.Module, inputs: tuple[Any, ...]) -> None:
        if self._busy:
            return
        self._calls.clear()
        self._in_root = True
        if self._nodes and inputs and isinstance(inputs[0], torch.Tensor):
            if self._graph is None:
                self._graph = self._traced(inputs[0])
            self._busy = True
            try:
                _, caps = self._graph.run(inputs[0], capture=self._nodes)
            finally:
                self._busy = False
            for name in self._nodes:
                self.recording._add(name, caps[name])

    def _root_post(self, _module: nn.Module, _inputs: tuple[Any, ...], _output: Any) -> None:
        if not self._busy:
            self._in_root = False

    def _hook(self, path: str):
        wanted = [(name, call) for name, (p, call) in self._sites.items() if p == path]

        def hook(_module: nn.Module, _inputs: tuple[Any, ...], output: Any) -> None:
            if self._busy:
                return
            # outside a forward of the whole model (a submodule called directly) every call
            # is its own forward
            k = self._calls.get(path, 0) + 1 if self._in_root else 1
            self._calls[path] = k
            for name, call in wanted:
                if call is None:
                    most = self.recording._most_calls
                    most[name] = max(most.get(name, 1), k)
                    self.recording._add(_call_key(name, k), output)
                elif call == k:
                    self.recording._add(name, output)

        return hook

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._in_root = False
