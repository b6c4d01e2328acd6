"""Infer a model's input shape from its first conv and its head Linear."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from interp._guard import inspecting
from interp._util import model_device
from interp.errors import InterpError
from interp.geometry.kinds import CONV


class _Stop(Exception):
    """Raised inside a pre-hook to end a probe forward early."""


class AnyLength(InterpError):
    """Every input length fits (the head pools positions away); ``channels`` and ``dims``
    say what an input needs otherwise."""

    def __init__(self, message: str, channels: tuple[int, ...], dims: int) -> None:
        super().__init__(message)
        self.channels, self.dims = channels, dims


def infer_input_shape(model: nn.Module) -> tuple[int, ...]:
    """Infer (C, L) or (C, H, W) from the first conv and, if any, the head Linear.

    The channel count comes from the first Conv1d/Conv2d. For a positional head,
    the length is the largest L (square H = W for 2D) whose flattened feature map
    equals the Linear's ``in_features``, found by bisection on probe passes that
    stop at the Linear.

    Raises:
        InterpError: when there is no conv layer or no length fits.
    """
    conv = next((m for m in model.modules() if isinstance(m, CONV)), None)
    if conv is None:
        raise InterpError(
            "cannot infer the input shape: the model has no Conv1d/Conv2d layer; "
            "pass `--input-shape C,L` (or C,H,W)"
        )
    dims = 1 if isinstance(conv, nn.Conv1d) else 2
    linear = next((m for m in model.modules() if isinstance(m, nn.Linear)), None)
    hint = "pass `--input-shape " + ("C,L`" if dims == 1 else "C,H,W`")
    if dims == 2 and conv.in_channels == 1:
        # braindecode-style nets take (C, L) and add the axis themselves (Ensure4d)
        hint += " (or C,L if the model adds an axis itself, as EEG nets with Ensure4d do)"
    hint += ", or `--data` with examples"
    if linear is None:
        raise InterpError(f"cannot infer the input length: the model has no Linear head; {hint}")
    device = model_device(model)

    def features(n: int) -> int | None:
        seen: list[int] = []

        def pre(_m: nn.Module, inputs: tuple[Any, ...]) -> None:
            seen.append(int(inputs[0].shape[-1]))
            raise _Stop

        x = torch.zeros((1, conv.in_channels, *(n,) * dims), device=device)
        with inspecting(model):
            handle = linear.register_forward_pre_hook(pre)
            try:
                model(x)
            except _Stop:
                pass
            except Exception:
                return None
            finally:
                handle.remove()
        return seen[0] if seen else None

    target = linear.in_features
    # Smallest n with features(n) >= target (doubling, then bisection), then walk up
    # while it still equals target: the largest length that fits.
    hi, cap = 1, 1 << (22 if dims == 1 else 13)
    while hi < cap and ((f := features(hi)) is None or f < target):
        hi *= 2
    lo = hi // 2 + 1 if hi > 1 else 1
    while lo < hi:
        mid = (lo + hi) // 2
        f = features(mid)
        if f is None or f < target:
            lo = mid + 1
        else:
            hi = mid
    if features(lo) != target:
        raise InterpError(
            f"cannot infer the input length: no input size gives the {target} features "
            f"the head Linear expects; {hint}"
        )
    if features(2 * lo + 8) == target:
        # Far longer inputs give the same features: positions are pooled away before
        # the Linear, so every length fits and none can be inferred.
        raise AnyLength(
            "cannot infer the input length: the head pools positions away, so any length "
            f"fits; {hint}",
            (conv.in_channels,),
            dims,
        )
    # Strided layers map a few consecutive lengths to the same features (512..515 for a
    # stride-4 trunk); all fit, so take the one divisible by the largest power of two, as
    # training lengths are (512, not 515; 8192, not 8191), the smallest on a tie.
    candidates = [lo]
    while features(candidates[-1] + 1) == target:
        candidates.append(candidates[-1] + 1)
    best = max(candidates, key=lambda n: ((n & -n), -n))
    return (conv.in_channels, *(best,) * dims)
