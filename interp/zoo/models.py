"""The zoo: each model's architecture, dataset recipe and training settings, by name.

``seed_cnn`` is the case interp explains: a conv trunk read by a
``Flatten -> Linear`` head, trained on spectra whose pattern sits within
+-300 bins of the centre. ``seed_gap`` (global pooling head) is the
architectural fix, ``seed_aug`` (shift augmentation) the data fix.
``shapes_cnn`` and ``shapes_gap`` are the same story in 2D.

>>> build("seed_cnn")[-1]
Linear(in_features=257664, out_features=4, bias=True)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from interp.errors import InterpError
from interp.zoo.datasets import Recipe


def _seed_trunk() -> list[nn.Module]:
    # (N, 1, 8192) -> conv (N, 64, 8067) -> pool (N, 64, 4026)
    return [
        nn.Conv1d(1, 64, kernel_size=128, padding=1),
        nn.ReLU(),
        nn.MaxPool1d(16, 2),
        nn.Dropout(0.25),
    ]


def _seed_cnn() -> nn.Sequential:
    return nn.Sequential(*_seed_trunk(), nn.Flatten(), nn.Linear(64 * 4026, 4))


def _seed_gap() -> nn.Sequential:
    return nn.Sequential(*_seed_trunk(), nn.AdaptiveMaxPool1d(1), nn.Flatten(), nn.Linear(64, 4))


def _shapes_trunk() -> list[nn.Module]:
    # (N, 1, 32, 32) -> (N, 16, 16, 16) -> (N, 32, 8, 8); receptive field 10 px, stride 4
    return [
        nn.Conv2d(1, 16, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Dropout(0.25),
    ]


def _shapes_cnn() -> nn.Sequential:
    return nn.Sequential(*_shapes_trunk(), nn.Flatten(), nn.Linear(32 * 8 * 8, 4))


def _shapes_gap() -> nn.Sequential:
    return nn.Sequential(*_shapes_trunk(), nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(32, 4))


@dataclass(frozen=True)
class ZooModel:
    """One zoo entry: how to build the model and how it is trained.

    ``shift_augmentation`` S > 0 rolls every training example by a random
    integer shift in [-S, S] (both axes in 2D), drawn afresh each epoch.
    ``n_train`` examples are drawn once with the recipe's seed and reused
    every epoch; ``n_val`` held-out ones measure ``accuracy_val``.
    """

    name: str
    summary: str
    builder: Callable[[], nn.Sequential]
    recipe: Recipe
    epochs: int
    n_train: int
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    shift_augmentation: int = 0
    n_val: int = 512
    note: str = ""


_SPECTRA = Recipe("spectra", {}, seed=0)
_SHAPES = Recipe("shapes", {}, seed=0)

_NO_DECAY = (
    "No weight decay, as in the original case. Head weights at positions that "
    "training patterns never reached were updated by the background alone, so "
    "they hold no class template: that is what interp shows."
)

ZOO: dict[str, ZooModel] = {
    m.name: m
    for m in [
        ZooModel(
            "seed_cnn",
            "1D CNN with a Flatten -> Linear head on centred spectra: the case interp explains.",
            _seed_cnn, _SPECTRA, epochs=3, n_train=2000, note=_NO_DECAY,
        ),
        ZooModel(
            "seed_gap",
            "The same trunk with a global max-pooling head: the architectural fix.",
            _seed_gap, _SPECTRA, epochs=3, n_train=2000,
        ),
        ZooModel(
            "seed_aug",
            "The seed_cnn architecture trained with random shifts over +-3000 bins: the data fix.",
            _seed_cnn, _SPECTRA, epochs=4, n_train=4000, shift_augmentation=3000,
            note=_NO_DECAY,
        ),
        ZooModel(
            "shapes_cnn",
            "2D CNN with a Flatten -> Linear head on centred shapes.",
            _shapes_cnn, _SHAPES, epochs=8, n_train=4000, batch_size=64, note=_NO_DECAY,
        ),
        ZooModel(
            "shapes_gap",
            "The same 2D trunk with a global max-pooling head.",
            _shapes_gap, _SHAPES, epochs=8, n_train=4000, batch_size=64,
        ),
    ]
}  # fmt: skip

NAMES: tuple[str, ...] = tuple(ZOO)


def get(name: str) -> ZooModel:
    """The zoo entry called ``name``; InterpError listing the names if there is none."""
    if name not in ZOO:
        raise InterpError(f"`name` {name!r} is not a zoo model; available: {', '.join(NAMES)}")
    return ZOO[name]


def build(name: str) -> nn.Sequential:
    """A freshly initialised (untrained) zoo model, using torch's global RNG.

    >>> build("shapes_gap")(torch.zeros(2, 1, 32, 32)).shape   # doctest: +SKIP
    torch.Size([2, 4])
    """
    return get(name).builder()
