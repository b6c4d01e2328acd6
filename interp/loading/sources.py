"""Data sources beyond one ``.npz``: folders of images, and ``.npy`` pairs.

- **An image folder** in the ImageFolder convention (torchvision's): one
  subfolder per class, named after it, sorted to give the class indices; PNG and
  JPEG files inside, read with Pillow. :class:`ImageFolder` is a torch ``Dataset``
  that reads one image per item, so an analysis streams a large folder in batches;
  :func:`read_source` reads a folder whole, for the CLI's checks.
  Images are float32 in ``[0, 1]``, ``(3, H, W)`` (``(1, H, W)`` with
  ``grayscale``), optionally resized (bilinear) and normalised per channel.
- **A ``.npy`` pair**: inputs and labels in two files, read with
  ``allow_pickle=False``.

Every bad case is one :class:`~interp.errors.InterpError` line naming the file: an
unreadable image, images of different sizes without ``resize``, an empty class
folder, a folder with no class folders.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from interp.errors import InterpError

__all__ = ["IMAGE_SUFFIXES", "ImageFolder", "read_source"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _pair_of(value: Any, name: str, kind: type) -> tuple[Any, ...]:
    try:
        out = tuple(kind(v) for v in value)
    except (TypeError, ValueError):
        raise InterpError(f"`{name}` must be a sequence of numbers, got {value!r}") from None
    return out


class ImageFolder(torch.utils.data.Dataset):
    """A folder with one subfolder of PNG/JPEG images per class, read one image per item.

    Args:
        root: the folder; class names are its subfolders, sorted.
        resize: ``(H, W)`` every image is resized to (bilinear); None: images must all
            have the size of the first.
        normalize: ``(mean, std)``, each a number or one per channel:
            ``x = (x - mean) / std`` on values in ``[0, 1]``.
        grayscale: read one channel (luma) instead of RGB.

    Items are ``(x (C, H, W) float32, class index)``.

    >>> data = ImageFolder("val/", resize=(64, 64))   # doctest: +SKIP
    >>> data.classes, data[0][0].shape                # doctest: +SKIP
    (('cat', 'dog'), torch.Size([3, 64, 64]))
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        resize: Sequence[int] | None = None,
        normalize: tuple[Any, Any] | None = None,
        grayscale: bool = False,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise InterpError(f"image folder {self.root} is not a folder; check the path")
        folders = sorted(
            p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")
        )
        if not folders:
            raise InterpError(
                f"image folder {self.root} has no class folders; put each class's images in "
                "a subfolder named after the class"
            )
        self.files: list[Path] = []
        self.labels: list[int] = []
        for k, folder in enumerate(folders):
            found = sorted(
                p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            if not found:
                raise InterpError(
                    f"class folder {folder} holds no PNG or JPEG images; add some or remove it"
                )
            self.files += found
            self.labels += [k] * len(found)
        self.classes = tuple(p.name for p in folders)
        self.resize = _pair_of(resize, "resize", int) if resize is not None else None
        if self.resize is not None and (len(self.resize) != 2 or min(self.resize) < 1):
            raise InterpError(f"`resize` must be two positive sizes H,W, got {resize!r}")
        self.grayscale = bool(grayscale)
        channels = 1 if self.grayscale else 3
        self.mean = self.std = None
        if normalize is not None:
            mean, std = (np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in normalize)
            for name, v in (("mean", mean), ("std", std)):
                if v.ndim != 1 or len(v) not in (1, channels):
                    raise InterpError(
                        f"`normalize` {name} has {v.size} values; give 1 or one per channel "
                        f"({channels})"
                    )
            if (std <= 0).any():
                raise InterpError(f"`normalize` std must be positive, got {std.tolist()}")
            self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
            self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        self._size: tuple[int, int] | None = None  # (W, H) of the first image

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image, UnidentifiedImageError

        path = self.files[i]
        try:
            with Image.open(path) as img:
                img.load()
                img = img.convert("L" if self.grayscale else "RGB")
        except (UnidentifiedImageError, OSError, ValueError) as err:
            why = "not a PNG or JPEG image" if isinstance(err, UnidentifiedImageError) else err
            raise InterpError(f"cannot read image {path} ({why}); remove or replace it") from None
        if self.resize is not None:
            img = img.resize((self.resize[1], self.resize[0]), Image.Resampling.BILINEAR)
        else:
            if self._size is None:
                self._size = self._first_size()
            if img.size != self._size:
                raise InterpError(
                    f"image {path} is {img.size[1]}x{img.size[0]} but {self.files[0]} is "
                    f"{self._size[1]}x{self._size[0]}; pass a size to resize to (--resize H,W)"
                )
        arr = np.asarray(img, dtype=np.float32) / 255.0  # (H, W) or (H, W, 3)
        x = (
            torch.from_numpy(arr.copy()).unsqueeze(0)
            if arr.ndim == 2
            else torch.from_numpy(arr.transpose(2, 0, 1).copy())
        )
        if self.mean is not None and self.std is not None:
            x = (x - self.mean) / self.std
        return x, self.labels[i]

    def _first_size(self) -> tuple[int, int]:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(self.files[0]) as img:
                return img.size
        except (UnidentifiedImageError, OSError, ValueError):
            raise InterpError(f"cannot read image {self.files[0]}; remove or replace it") from None


def read_source(
    path: str | os.PathLike[str],
    labels: str | os.PathLike[str] | None = None,
    *,
    resize: Sequence[int] | None = None,
    normalize: tuple[Any, Any] | None = None,
    grayscale: bool = False,
) -> dict[str, Any]:
    """Read an image folder or a ``.npy`` pair whole, as arrays ``x``, ``y`` and ``classes``.

    What :func:`interp.loading.data.load_data` reads for a folder or for ``labels``;
    it then checks the arrays like any data file.

    Args:
        path: an image folder, or a ``.npy`` file of inputs (with ``labels``).
        labels: a ``.npy`` file of integer labels, one per row of ``path``.
        resize, normalize, grayscale: for image folders, as in :class:`ImageFolder`.

    >>> arrays = read_source("x.npy", "y.npy")     # doctest: +SKIP
    >>> arrays["x"].shape, arrays["y"].shape       # doctest: +SKIP
    ((200, 1, 64), (200,))
    """
    folder = Path(path).is_dir()
    if not folder and (resize is not None or normalize is not None or grayscale):
        raise InterpError(
            f"--resize, --normalize and --grayscale apply to image folders; {path} is a file"
        )
    if folder:
        if labels is not None:
            raise InterpError(
                f"an image folder ({path}) takes its labels from its class folders; drop --labels"
            )
        data = ImageFolder(path, resize=resize, normalize=normalize, grayscale=grayscale)
        xs = [data[i][0] for i in range(len(data))]
        return {"x": torch.stack(xs), "y": torch.tensor(data.labels), "classes": data.classes}
    if labels is None:
        raise InterpError(f"{path} is not a folder; pass labels for .npy inputs with --labels")
    return {"x": _npy(path, "inputs"), "y": _npy(labels, "labels")}


def _npy(path: str | os.PathLike[str], what: str) -> np.ndarray:
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise InterpError(f"{what} file {path} does not exist; check the path") from None
    except OSError as err:
        raise InterpError(f"cannot read {what} file {path} ({err.strerror})") from None
    if not raw.startswith(b"\x93NUMPY"):
        raise InterpError(f"{what} file {path} is not a .npy array; save it with np.save")
    try:
        return np.load(io.BytesIO(raw), allow_pickle=False)
    except ValueError as err:
        if "allow_pickle" in str(err) or "Object arrays" in str(err):
            raise InterpError(
                f"{what} file {path} holds Python objects, which could run code; save a "
                "numeric array with np.save"
            ) from None
        raise InterpError(f"{what} file {path} is truncated or corrupt; save it again") from None
    except Exception:  # untrusted bytes: numpy raises many types
        raise InterpError(f"{what} file {path} is truncated or corrupt; save it again") from None
