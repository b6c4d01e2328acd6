"""Demo datasets and models: spectra and shapes, and CNNs that are or are not shift invariant.

>>> from interp.zoo import NAMES, Recipe, train
>>> NAMES
('seed_cnn', 'seed_gap', 'seed_aug', 'shapes_cnn', 'shapes_gap')
>>> x, y = Recipe("spectra", seed=0).sample(16, shift_range=3000)   # doctest: +SKIP
>>> model, meta = train("seed_gap", out="trained/seed_gap.pt")      # doctest: +SKIP
"""

from interp.zoo.datasets import Recipe, recipe_from_meta
from interp.zoo.evaluate import shift_accuracy
from interp.zoo.models import NAMES, ZOO, ZooModel, build, get
from interp.zoo.training import train

__all__ = [
    "NAMES",
    "ZOO",
    "Recipe",
    "ZooModel",
    "build",
    "get",
    "recipe_from_meta",
    "shift_accuracy",
    "train",
]
