"""Logits under every shift, one sample batch at a time: fast engine or brute force.

:class:`LogitStream` is what :mod:`interp.sweep.core` calls per sample batch. It tries
the exact fast engine (``interp.sweep.engine.core.fast_logits``) when asked (``auto`` or
``fast``) and falls back to batched brute force for good, with the reason, when
the engine is missing or raises ``Unsupported``. Brute force shifts a batch by a
chunk of shifts at once (:func:`interp.shifts.shift_many`) and runs the model on
the stacked (sample, shift) inputs, so a forward sees ``rows`` inputs.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from interp._guard import inspecting
from interp._util import model_device
from interp.errors import InterpError
from interp.geometry.core import Structure, structure
from interp.shifts import Shift, check_mode, shift_many

ENGINES = ("auto", "fast", "brute")
_BUDGET_BYTES = 256 * 2**20  # activations of one brute-force forward, roughly
_MAX_ROWS = 512  # model inputs per brute-force forward at most
_FAST_SAMPLES = 64  # samples per fast-engine call
_REASONS = {
    "chain": "exact fast engine: the trunk once per sample, border bands layer by layer, "
    "the head as a sliding reduction over every shift (cross-correlation, sum or max)",
    "graph": "exact fast engine over the traced graph: the trunk once per sample and "
    "stride phase, border positions from crops, the model's own head per shift",
}


def _graph_unsupported() -> tuple[type[Exception], ...]:
    """The graph engine's Unsupported, where it is importable (a stand-in core may hide it)."""
    graph = sys.modules.get("interp.sweep.engine.graph")
    return (graph.Unsupported,) if graph is not None else ()


def default_batch_size(geo: Structure) -> int:
    """Model inputs per forward so that one forward's activations stay near 256 MB, and
    at most 512 (a 64x64 ResNet-18 brute-force sweep: 4096 inputs a forward 3.1 s, 512
    2.3 s, 256 2.4 s: beyond that the maps leave the caches for nothing)."""
    largest = 1
    for lay in geo.layers:
        numel = 1
        for v in lay.output_shape:
            numel *= int(v)
        largest = max(largest, numel)
    return int(max(1, min(_MAX_ROWS, _BUDGET_BYTES // (4 * 2 * largest))))


def progress_bar(total: int | None, enabled: bool) -> Any:
    """A tqdm bar on stderr counting model inputs, or None."""
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, file=sys.stderr, unit="input", desc="shift sweep", leave=False)


def brute_logits(
    model: nn.Module, x: torch.Tensor, shifts: list[Shift], mode: str, rows: int, bar: Any = None,
    channels_last: bool = False,
) -> torch.Tensor:  # fmt: skip
    """Logits (B, S, K) by running ``model`` on ``x`` (B, C, *spatial) under every shift,
    at most ``rows`` shifted inputs per forward (``channels_last``: 2D inputs in that
    memory format, which CPU convolutions and poolings run faster on)."""
    b = min(x.shape[0], rows)
    chunk = max(1, rows // b)
    parts = []
    with inspecting(model):
        for i in range(0, x.shape[0], b):
            xb = x[i : i + b]
            row = []
            for start in range(0, len(shifts), chunk):
                part = shifts[start : start + chunk]
                xs = shift_many(xb, part, mode)  # (b, Sc, C, *spatial)
                xs = xs.reshape(xb.shape[0] * len(part), *x.shape[1:])
                if channels_last:
                    xs = xs.contiguous(memory_format=torch.channels_last)
                out = model(xs)  # (b*Sc, K)
                if not isinstance(out, torch.Tensor) or out.dim() != 2:
                    raise InterpError(
                        "the model must return logits shaped (N, classes); got "
                        f"{type(out).__name__} {tuple(getattr(out, 'shape', ()))}"
                    )
                row.append(out.detach().reshape(xb.shape[0], len(part), -1))
                if bar is not None:
                    bar.update(xb.shape[0] * len(part))
            parts.append(torch.cat(row, 1))
    return torch.cat(parts, 0)


class LogitStream:
    """Logits per sample batch, remembering which engine ran and why.

    Args:
        model, shifts, mode: what to run.
        example: a batch with the sample shape, for the structure when none is given.
        engine: ``auto``, ``fast`` or ``brute``.
        geo: the model's Structure, or None to compute it.
        batch_size: model inputs per brute-force forward; None: from the activations.
        bar: a tqdm bar or None.

    :meth:`chunks` splits a batch so that one call is one brute-force chunk, or a
    larger piece for the fast engine (which streams within its own memory budget).
    """

    def __init__(
        self,
        model: nn.Module,
        example: torch.Tensor,
        shifts: list[Shift],
        *,
        mode: str,
        engine: str,
        geo: Structure | None,
        batch_size: int | None,
        bar: Any = None,
    ) -> None:
        if engine not in ENGINES:
            raise ValueError(f"`engine` must be one of {', '.join(ENGINES)}, got {engine!r}")
        check_mode(mode)
        if geo is None:
            geo = structure(model, example[:1].to(model_device(model)))
        if geo.input_shape != tuple(example.shape[1:]):
            raise InterpError(
                f"`x` samples have shape {tuple(example.shape[1:])} but `structure` was built "
                f"for {geo.input_shape}; pass the structure of this input shape"
            )
        rows = batch_size if batch_size is not None else default_batch_size(geo)
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
            raise ValueError(f"`batch_size` must be a positive int, got {batch_size!r}")
        self.model, self.geo, self.shifts, self.mode = model, geo, shifts, mode
        self.rows, self.bar = rows, bar
        self.samples = max(1, rows // len(shifts))
        self.engine = "brute"
        self.reason = "brute force asked for (engine='brute')"
        self._asked = engine
        self._try_fast = engine != "brute"
        self._which: str | None = None  # the fast engine that worked on the first batch
        self._channels_last: bool | None = None  # brute force's 2D layout, once decided

    def chunks(self, x: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield ``(start, logits (b, S, K))`` over pieces of ``x`` (B, C, *spatial)."""
        start = 0
        while start < x.shape[0]:
            step = _FAST_SAMPLES if self._try_fast else self.samples
            out = self(x[start : start + step])
            yield start, out
            start += out.shape[0]

    def __call__(self, xb: torch.Tensor) -> torch.Tensor:
        """Logits (B, S, K) float on the CPU for a batch ``xb`` (B, C, *spatial)."""
        xb = xb.to(model_device(self.model))
        if self._try_fast:
            out = self._fast(xb)
            if out is not None:
                return out
        if self._channels_last is None:
            self._channels_last = self._pick_layout(xb)
        return brute_logits(self.model, xb, self.shifts, self.mode, self.rows, self.bar,
                            self._channels_last).cpu()  # fmt: skip

    def _pick_layout(self, xb: torch.Tensor) -> bool:
        """channels_last for a CPU model with 2D convolutions, when one sample's logits
        under every shift run and equal the default layout's to 1e-4 relative (a model
        whose forward ``view``s its maps, say, keeps the default)."""
        if xb.dim() != 4 or xb.device.type != "cpu" or not any(
                isinstance(m, nn.Conv2d) for m in self.model.modules()):  # fmt: skip
            return False
        probe = xb[:1]
        plain = brute_logits(self.model, probe, self.shifts, self.mode, self.rows)
        try:
            fast = brute_logits(self.model, probe, self.shifts, self.mode, self.rows,
                                channels_last=True)  # fmt: skip
        except RuntimeError:
            return False
        scale = float(plain.abs().max()) if plain.numel() else 0.0
        return fast.shape == plain.shape and float((fast - plain).abs().max()) <= 1e-4 * max(
            scale, 1e-3)

    def _fast(self, xb: torch.Tensor) -> torch.Tensor | None:
        engine = importlib.import_module("interp.sweep.engine.core")  # a missing one raises
        # The chain engine's FFT head is what makes a positional Flatten -> Linear fast. For
        # other heads it goes first where its plan applies and its layer-by-layer bands cost
        # less than recomputing the same borders from whole-trunk crops (the graph engine).
        chain_first = self.geo.head.kind == "positional" and self.geo.head.linear is not None
        if not chain_first and self._which is None:
            try:
                chain, crops = engine.band_costs(self.model, self.geo)
                chain_first = chain <= crops
            except engine.Unsupported:
                pass
        order = ["chain", "graph"] if chain_first else ["graph", "chain"]
        if self._which is not None:
            order = [self._which]
        reasons = []
        for which in order:
            try:
                with inspecting(self.model):
                    if which == "chain":
                        out = engine.fast_logits(self.model, self.geo, xb, self.shifts, self.mode)
                    else:
                        graph = importlib.import_module("interp.sweep.engine.graph")
                        out = graph.graph_logits(self.model, xb, self.shifts, self.mode,
                                                 graph=getattr(self.geo, "graph", None))
            except (engine.Unsupported, *_graph_unsupported()) as exc:
                reasons.append(f"{which} engine: {exc}")
                continue
            self._which = which
            self.engine = "fast"
            self.reason = _REASONS[which]
            if self.bar is not None:
                self.bar.update(xb.shape[0] * len(self.shifts))
            return out.detach().cpu()
        self._fallback("the fast engine does not apply (" + "; ".join(reasons) + ")")
        return None

    def _fallback(self, reason: str) -> None:
        self._try_fast = False
        asked = f"engine={self._asked!r}: "
        self.engine, self.reason = "brute", f"{asked}{reason}; batched brute force ran instead"
