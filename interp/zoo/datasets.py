"""Dataset recipes: a generator name, its parameters and a seed, enough to regenerate data.

A zoo checkpoint stores its recipe in ``meta["recipe"]``, so interp can draw
fresh held-out examples from the same distribution the model was trained on:

>>> recipe = Recipe("spectra", {}, seed=0)
>>> x, y = recipe.sample(8, shift_range=2000)
>>> x.shape, y.shape
(torch.Size([8, 1, 8192]), torch.Size([8]))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np
import torch

from interp.errors import InterpError
from interp.zoo import shapes, spectra

GENERATORS: dict[str, ModuleType] = {"spectra": spectra, "shapes": shapes}

# Default seed offset for held-out sampling, so it never repeats the training draw.
HELD_OUT_SEED_OFFSET = 1_000_000


@dataclass(frozen=True)
class Recipe:
    """How to generate a zoo dataset: ``generator`` ("spectra" | "shapes"), ``params``, ``seed``.

    ``params`` override the generator's defaults; ``seed`` is the training seed.
    """

    generator: str
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.generator not in GENERATORS:
            raise InterpError(
                f"`generator` {self.generator!r} is unknown; use one of: {', '.join(GENERATORS)}"
            )
        unknown = sorted(set(self.params) - set(self._module.DEFAULTS))
        if unknown:
            raise InterpError(
                f"`params` {unknown[0]!r} is not a {self.generator} parameter; "
                f"known: {', '.join(self._module.DEFAULTS)}"
            )

    @property
    def _module(self) -> ModuleType:
        return GENERATORS[self.generator]

    @property
    def resolved(self) -> dict[str, Any]:
        """All parameters: the generator's defaults updated with ``params``."""
        return {**self._module.DEFAULTS, **self.params}

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names, in label order."""
        return tuple(self._module.CLASSES)

    @property
    def train_shift_range(self) -> int:
        """Largest pattern offset seen in training, in bins (1D) or pixels per axis (2D)."""
        return int(self.resolved["shift_range"])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example without the batch axis: (1, L) or (1, H, W)."""
        p = self.resolved
        return (1, int(p["length"])) if self.generator == "spectra" else (1, p["size"], p["size"])

    @property
    def axis(self) -> list[dict[str, Any]]:
        """Checkpoint ``axis`` metadata: one dict per spatial axis (name, unit, start, step)."""
        return self._module.axis(self.params)

    def sample(
        self, n: int, *, seed: int | None = None, shift_range: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` class-balanced examples; the same seed gives the same tensors.

        Args:
            n: number of examples; class counts differ by at most one.
            seed: defaults to ``self.seed + 1_000_000``: held out from training.
            shift_range: pattern offsets are uniform in ``[-shift_range, shift_range]``
                (bins, or pixels on both axes); None uses the training range.

        Returns:
            ``x`` float32 (n, 1, L) or (n, 1, H, W) in [0, 1], ``y`` int64 (n,).

        >>> x, y = Recipe("shapes", seed=1).sample(10, shift_range=8)
        >>> x.shape, y.dtype
        (torch.Size([10, 1, 32, 32]), torch.int64)
        """
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"`n` must be an int, got {type(n).__name__}")
        if n < 0:
            raise ValueError(f"`n` must be >= 0, got {n}")
        r = self.train_shift_range if shift_range is None else shift_range
        if isinstance(r, bool) or not isinstance(r, int):
            raise TypeError(f"`shift_range` must be an int or None, got {type(r).__name__}")
        if r < 0:
            raise ValueError(f"`shift_range` must be >= 0, got {r}")
        rng = np.random.default_rng(self.seed + HELD_OUT_SEED_OFFSET if seed is None else seed)
        y = rng.permutation(np.arange(n) % len(self.classes))
        x = self._module.generate(y, rng, self.params, r)
        return torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, stored as ``meta["recipe"]``."""
        return {"generator": self.generator, "params": dict(self.params), "seed": self.seed}


def recipe_from_meta(meta: dict[str, Any]) -> Recipe | None:
    """Rebuild the Recipe stored in checkpoint metadata; None when there is none.

    >>> recipe_from_meta({"recipe": {"generator": "shapes", "params": {}, "seed": 3}})
    Recipe(generator='shapes', params={}, seed=3)
    """
    data = meta.get("recipe") if isinstance(meta, dict) else None
    if data is None:
        return None
    if not isinstance(data, dict) or "generator" not in data:
        raise InterpError(
            f"`meta['recipe']` must be a dict with 'generator', 'params' and 'seed'; got {data!r}"
        )
    return Recipe(str(data["generator"]), dict(data.get("params") or {}), int(data.get("seed", 0)))
