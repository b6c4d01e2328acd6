"""The sweep on a local Ray cluster equals the single-process sweep.

Oracle: :func:`interp.shift_sweep` in this process (itself checked against a
brute-force loop in tests/test_sweep.py): counts exactly, probability sums to the
float64 rounding of adding the shards' sums in another order.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from interp.errors import InterpError
from interp.sweep.core import shift_sweep

try:
    import ray
except ImportError:  # pragma: no cover - CI installs the extra
    ray = None

from interp.sweep.distributed import RayExecutor

pytestmark = pytest.mark.skipif(
    ray is None, reason="ray is not installed (pip install interp[ray])"
)
SHIFTS = [-9, -2, 0, 3, 17]
TRAINED = Path(__file__).resolve().parents[2] / "trained"


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    # workers cannot import this test module: send its classes (_Flaky) by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.shutdown()


def _data(n: int):
    gen = torch.Generator().manual_seed(0)
    return torch.randn(n, 1, 64, generator=gen), torch.randint(0, 3, (n,), generator=gen)


def _same(got, want) -> None:
    exact = ("n", "shifts", "accuracy", "class_counts", "confusion", "consistency",
             "per_class_accuracy", "engine", "invariance_range")  # fmt: skip
    for field in exact:
        assert getattr(got, field) == getattr(want, field), field
    # each mean is a float64 sum over n samples divided by n: order changes it by <= n eps
    bound = want.n * torch.finfo(torch.float64).eps
    assert got.mean_true_probability == pytest.approx(want.mean_true_probability, abs=bound)


def test_ray_sweep_equals_one_process_for_tensors_datasets_and_batches(cluster, positional_1d):
    x, y = _data(700)  # 3 shards of whole batches, the last one short
    want = shift_sweep(positional_1d, x, y, SHIFTS)
    with RayExecutor(num_workers=2) as ex:
        _same(shift_sweep(positional_1d, x, y, SHIFTS, executor=ex), want)
        _same(shift_sweep(positional_1d, TensorDataset(x, y), shifts=SHIFTS, executor=ex), want)
        batches = ((x[i : i + 90], y[i : i + 90]) for i in range(0, 700, 90))
        _same(shift_sweep(positional_1d, batches, shifts=SHIFTS, executor=ex), want)


class _Flaky(Dataset):
    """Raises on the first read of row 0 (a flag file shared with the workers), or always."""

    def __init__(self, x, y, flag: Path, always: bool) -> None:
        self.x, self.y, self.flag, self.always = x, y, flag, always

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        if i == 0 and (self.always or not self.flag.exists()):
            self.flag.touch()
            raise RuntimeError("disk hiccup")
        return self.x[i], int(self.y[i])


def test_a_failed_shard_is_retried_then_reported_with_its_rows(cluster, positional_1d, tmp_path):
    x, y = _data(300)
    want = shift_sweep(positional_1d, x, y, SHIFTS)
    ex = RayExecutor(num_workers=2)
    flaky = _Flaky(x, y, tmp_path / "once", always=False)
    _same(shift_sweep(positional_1d, flaky, shifts=SHIFTS, executor=ex), want)
    broken = _Flaky(x, y, tmp_path / "always", always=True)
    with pytest.raises(InterpError, match=r"shard 0 \(rows 0\.\.255\) failed 2 times.*disk hiccup"):
        shift_sweep(positional_1d, broken, shifts=SHIFTS, executor=ex)
    with pytest.raises(InterpError, match=r"shard 1 \(rows 256\.\.299\): `y` has label 7"):
        shift_sweep(positional_1d, x, torch.where(torch.arange(300) == 280, 7, y), SHIFTS,
                    executor=ex)  # fmt: skip


def test_a_custom_model_without_its_file_is_refused(cluster):
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.fc = nn.Conv1d(1, 2, 3), nn.Linear(2 * 62, 3)

        def forward(self, x):
            return self.fc(self.conv(x).flatten(1))

    x, y = _data(4)
    with pytest.raises(InterpError, match="model_path=FILE"):
        shift_sweep(Net(), x, y, [0], executor=RayExecutor(num_workers=1))


@pytest.mark.slow
def test_ray_sweep_of_a_shipped_model_from_its_file(cluster):
    import interp

    path = TRAINED / "seed_gap.pt"
    model, info = interp.load(path)
    x, y = info.recipe.sample(64, seed=123)
    shifts = [-2000, -500, 0, 700, 3000]
    want = shift_sweep(model, x, y, shifts)
    got = shift_sweep(model, x, y, shifts, executor=RayExecutor(num_workers=2, model_path=path))
    _same(got, want)
