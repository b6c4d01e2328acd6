"""Data forms (tensors, Dataset, DataLoader, batches) and files (image folders, .npy pairs).

Oracles: a brute-force loop of plain PyTorch for the sweep, the pixel arrays written
with Pillow for image folders, the arrays saved with numpy for .npy pairs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from interp.attribution.core import attribution_across_shifts
from interp.errors import InterpError
from interp.loading.data import load_data
from interp.loading.sources import ImageFolder
from interp.readout.core import connectivity
from interp.readout.footprints import footprint
from interp.sweep.core import shift_sweep

SHIFTS = [-9, -2, 0, 3, 17]


class _Items(Dataset):
    """Map-style: (numpy sample, int label) items."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i].numpy(), int(self.y[i])


class _Stream(IterableDataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __iter__(self):
        return iter(zip(self.x, self.y, strict=True))


def _data(n: int = 300):
    gen = torch.Generator().manual_seed(0)
    return torch.randn(n, 1, 64, generator=gen), torch.randint(0, 3, (n,), generator=gen)


def test_every_data_form_gives_the_sweep_of_a_brute_force_loop(positional_1d):
    x, y = _data()  # 300 rows: more than one batch, cut differently by every form
    forms = {
        "pair": (x, y),
        "dataset": TensorDataset(x, y),
        "items": _Items(x, y),
        "iterable dataset": _Stream(x, y),
        "loader": DataLoader(TensorDataset(x, y), batch_size=37),
        "batches": ((x[i : i + 70], y[i : i + 70]) for i in range(0, len(x), 70)),
    }
    want = shift_sweep(positional_1d, x, y, SHIFTS)
    for name, data in forms.items():
        assert shift_sweep(positional_1d, data, shifts=SHIFTS) == want, name
    with torch.no_grad():  # oracle: every shift of every sample through the model
        for j, s in enumerate(SHIFTS):
            pred = positional_1d(torch.roll(x, s, -1)).argmax(1)
            assert want.accuracy[j] == (pred == y).double().mean().item()
            confusion = torch.zeros(3, 3, dtype=torch.long)
            confusion.index_put_((y, pred), torch.ones_like(y), accumulate=True)
            assert list(map(list, want.confusion[j])) == confusion.tolist()


def test_a_data_form_passed_with_positional_shifts_says_the_fix(positional_1d):
    x, y = _data(8)
    with pytest.raises(TypeError, match="shifts=\\["):
        shift_sweep(positional_1d, TensorDataset(x, y), SHIFTS)
    with pytest.raises(TypeError, match="not an \\(x, y\\) pair"):
        shift_sweep(positional_1d, [x, y, y], shifts=[0])


def test_footprint_connectivity_attribution_take_the_data_forms(positional_1d):
    x, y = _data(300)
    want = footprint(positional_1d, x, y)
    loader = DataLoader(TensorDataset(x, y), batch_size=50)
    got = footprint(positional_1d, loader)
    assert got.counts == want.counts
    # float32 activations summed in float64 per class in another grouping: one rounding
    torch.testing.assert_close(
        got.mean, want.mean, rtol=2**-23, atol=2**-23 * want.mean.abs().max()
    )
    conn_t = connectivity(positional_1d, x=x, y=y)
    conn_d = connectivity(positional_1d, x=iter(loader))  # one-pass iterable, no structure
    assert [c.peak_position for c in conn_d.per_class] == [
        c.peak_position for c in conn_t.per_class
    ]
    a = attribution_across_shifts(positional_1d, x[:2], y[:2], [-3, 0, 3], method="saliency")
    b = attribution_across_shifts(positional_1d, TensorDataset(x[:2], y[:2]), shifts=[-3, 0, 3],
                                  method="saliency")  # fmt: skip
    torch.testing.assert_close(a.maps, b.maps, rtol=0, atol=0)


def _png(path, array) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _folder(root, sizes=((6, 5),) * 3):
    rng = np.random.default_rng(0)
    written = {}
    for cls in ("dog", "cat"):
        for i, (h, w) in enumerate(sizes):
            arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            _png(root / cls / f"{i}.png", arr)
            written[(cls, i)] = arr
    return written


def test_image_folder_reads_pixels_classes_and_options(tmp_path):
    written = _folder(tmp_path)
    data = load_data(tmp_path)
    assert data.classes == ("cat", "dog") and data.y.tolist() == [0, 0, 0, 1, 1, 1]
    want = torch.from_numpy(written[("cat", 0)]).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(data.x[0], want, rtol=0, atol=0)
    norm = load_data(tmp_path, normalize=((0.5, 0.4, 0.3), (0.2, 0.2, 0.1)))
    mean, std = (
        torch.tensor([0.5, 0.4, 0.3])[:, None, None],
        torch.tensor([0.2, 0.2, 0.1])[:, None, None],
    )
    torch.testing.assert_close(norm.x[0], (want - mean) / std)
    gray = load_data(tmp_path, grayscale=True, resize=(4, 3))
    assert gray.x.shape == (6, 1, 4, 3)
    # ITU-R 601-2 luma, as Pillow documents it for mode "L" (rounded to 8 bits)
    r, g, b = (torch.from_numpy(written[("cat", 0)][..., c]).double() for c in range(3))
    luma = (r * 299 + g * 587 + b * 114) / 1000 / 255
    small = load_data(tmp_path, grayscale=True)
    assert (small.x[0, 0].double() - luma).abs().max() <= 1 / 255


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("garbage", "cannot read image .*cat.1.png"),
        ("size", "image .*cat.2.png is 7x5 .*--resize"),
        ("empty", "class folder .*bird holds no PNG or JPEG"),
        ("none", "has no class folders"),
    ],
)
def test_bad_image_folders_name_the_file(tmp_path, bad, message):
    if bad == "none":
        (tmp_path / "x.png").write_bytes(b"")
    else:
        _folder(tmp_path)
    if bad == "garbage":
        (tmp_path / "cat" / "1.png").write_bytes(b"not an image")
    elif bad == "size":
        _png(tmp_path / "cat" / "2.png", np.zeros((7, 5, 3), np.uint8))
    elif bad == "empty":
        (tmp_path / "bird").mkdir()
    with pytest.raises(InterpError, match=message) as err:
        load_data(tmp_path)
    assert "\n" not in str(err.value)
    if bad == "size":  # a size to resize to makes the same folder readable
        assert load_data(tmp_path, resize=(6, 5)).x.shape == (6, 3, 6, 5)


def test_image_folder_streams_as_a_dataset(tmp_path, positional_2d):
    _folder(tmp_path, sizes=((12, 12),) * 3)
    data = ImageFolder(tmp_path, grayscale=True)
    whole = load_data(tmp_path, grayscale=True)
    assert shift_sweep(positional_2d, data, shifts=[(0, 0), (1, -2)]) == shift_sweep(
        positional_2d, whole.x, whole.y, [(0, 0), (1, -2)]
    )


def test_npy_pairs_load_and_refuse_pickles(tmp_path):
    x = np.random.default_rng(1).normal(size=(5, 1, 16)).astype(np.float32)
    y = np.array([0, 1, 2, 1, 0])
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    data = load_data(tmp_path / "x.npy", labels=tmp_path / "y.npy")
    assert np.array_equal(data.x.numpy(), x) and data.y.tolist() == y.tolist()
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}] * 5, dtype=object), allow_pickle=True)
    with pytest.raises(InterpError, match=r"obj\.npy holds Python objects"):
        load_data(tmp_path / "x.npy", labels=tmp_path / "obj.npy")
    with pytest.raises(InterpError, match="apply to image folders"):
        load_data(tmp_path / "x.npy", resize=(4, 4))
