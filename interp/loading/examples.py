"""Where an analysis gets its examples: explicit data, the zoo recipe, or none.

The sampling policy: the person's data is used whole unless ``samples`` asks for a
subset (then a seeded random one, with a local generator); a zoo recipe with no data
file draws ``RECIPE_SAMPLES`` held-out examples (or ``samples``) with a seed derived
from ``--seed``. Every choice, and how many rows it used, is recorded in the ``data``
entry of report.json (``selection``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from interp._util import DEFAULT_SAMPLES
from interp.errors import InterpError

RECIPE_SAMPLES = DEFAULT_SAMPLES  # held-out examples a zoo recipe draws when none are given


@dataclass(frozen=True)
class Examples:
    """Labelled examples with their provenance, as they enter ``report.json``'s ``data``."""

    x: torch.Tensor
    y: torch.Tensor
    path: str | None
    classes: Sequence[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def sample_recipe(info: Any, samples: int | None, seed: int) -> Examples | None:
    """Held-out examples from the zoo recipe in ``info.recipe``, or None without one.

    ``samples`` None draws the default count, ``RECIPE_SAMPLES``.
    """
    recipe = getattr(info, "recipe", None)
    if recipe is None:
        return None
    default = samples is None
    samples = RECIPE_SAMPLES if samples is None else samples
    from interp.zoo.datasets import HELD_OUT_SEED_OFFSET

    # Held out from training (the recipe trains on its own seed); --seed picks the draw.
    draw = int(recipe.seed) + HELD_OUT_SEED_OFFSET + seed
    x, y = recipe.sample(samples, seed=draw)
    extra = {
        "recipe": recipe.to_dict(),
        "sample_seed": draw,
        "selection": f"{samples} examples drawn from the recipe, held out from training"
        + (" (the default count; --samples N for another)" if default else ""),
    }
    return Examples(x, y, "recipe", list(recipe.classes), extra)


def examples(
    info: Any, data: Any, samples: int | None, seed: int
) -> tuple[torch.Tensor | None, torch.Tensor | None, dict[str, Any] | None]:
    """(x, y, JSON ``data`` entry) from explicit data, the zoo recipe, or nothing.

    Explicit data is used whole; ``samples`` N (fewer than its rows) picks a seeded
    random subset of N rows, in their original order.
    """
    if data is None:
        data = sample_recipe(info, samples, seed)
        if data is None:
            return None, None, None
    if isinstance(data, (tuple, list)) and len(data) == 2:
        data = Examples(data[0], data[1], None)
    if not (hasattr(data, "x") and hasattr(data, "y")):
        raise TypeError(f"`data` must be (x, y), a Dataset or None, got {type(data).__name__}")
    x, y = data.x, data.y
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError("`data` must hold torch tensors x (N, C, *spatial) and y (N,)")
    classes = getattr(data, "classes", None)
    entry: dict[str, Any] = {"path": getattr(data, "path", None),
                             "classes": list(classes) if classes else None}  # fmt: skip
    entry.update(getattr(data, "extra", {}))
    n = int(x.shape[0])
    if samples is not None and n > samples:
        gen = torch.Generator().manual_seed(seed)
        index = torch.randperm(n, generator=gen)[:samples].sort().values
        x, y = x[index], y[index]
        entry["selection"] = f"{samples} of {n} examples, chosen at random with seed {seed}"
    elif "selection" not in entry:
        entry["selection"] = f"all {n} examples"
    return x, y, entry


def class_names(info: Any, data_entry: dict[str, Any] | None, k: int | None) -> list[str]:
    for names in (
        getattr(info, "classes", None),
        (data_entry or {}).get("classes"),
        getattr(getattr(info, "recipe", None), "classes", None),
    ):
        if names and (k is None or len(names) == k):
            return [str(c) for c in names]
    return [str(i) for i in range(k or 0)]


def check_xy(x: torch.Tensor, y: torch.Tensor, input_shape: Sequence[int] | None) -> None:
    if x.dim() not in (3, 4) or (
        input_shape is not None and tuple(x.shape[1:]) != tuple(input_shape)
    ):
        want = (
            f"(N, {', '.join(map(str, input_shape))})"
            if input_shape
            else "(N, C, L) or (N, C, H, W)"
        )
        raise InterpError(f"`data` x has shape {tuple(x.shape)} but the model takes {want}; "
                          "pass inputs of that shape")  # fmt: skip
    if y.shape != (x.shape[0],) or y.dtype.is_floating_point:
        raise InterpError(
            f"`data` y must be integer labels of shape ({x.shape[0]},), got {tuple(y.shape)} "
            f"{y.dtype}; pass one class index per row of x"
        )
