"""Data files -> :class:`Dataset`, validated against the model they are for.

``.npz`` is read with ``allow_pickle=False`` and ``.pt`` with ``weights_only=True``
(no allowlist), so a data file can never run code. Values larger than 1e6 in
magnitude are accepted with a note (raw counts can be legitimate), while NaN/Inf,
labels out of range and shapes that do not fit the model are refused.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from interp._guard import inspecting
from interp._util import model_device
from interp.errors import InterpError
from interp.loading import formats as _formats
from interp.loading.budget import (
    Budget,
    check_npz,
    check_zip,
    default_budget,
    parse_memory,
    scan_pickle,
)
from interp.loading.checkpoint import describe_tensor, plain_tensor

HUGE = 1e6  # |x| above this gets a note: models are usually trained on normalised data
_SHOW = 5  # rows listed in an error message


@dataclass(frozen=True)
class Dataset:
    """Validated inputs and labels from a data file.

    ``x`` is float32 ``(N, C, L)`` or ``(N, C, H, W)``; ``y`` int64 ``(N,)``.
    ``notes`` lists conversions made while loading ("converted float64 to float32").
    """

    x: torch.Tensor
    y: torch.Tensor
    classes: tuple[str, ...] | None
    path: str
    notes: tuple[str, ...] = ()
    # One dict (unit, step, start) per spatial axis from the file's ``units``,
    # ``sample_spacing`` and ``start``; None when the file names no unit.
    axis: tuple[dict[str, Any], ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (the report's ``data`` section)."""
        out: dict[str, Any] = {
            "path": self.path,
            "n": int(self.x.shape[0]),
            "classes": list(self.classes) if self.classes is not None else None,
            "input_shape": list(self.x.shape[1:]),
        }
        if self.axis is not None:
            out["axis"] = [dict(a) for a in self.axis]
        return out


def load_data(
    path: str | os.PathLike[str],
    *,
    model: nn.Module | None = None,
    input_shape: tuple[int, ...] | None = None,
    num_classes: int | None = None,
    max_memory: int | str | None = None,
    labels: str | os.PathLike[str] | None = None,
    resize: Sequence[int] | None = None,
    normalize: tuple[Any, Any] | None = None,
    grayscale: bool = False,
) -> Dataset:
    """Load ``x``, ``y`` and optional ``classes`` from ``.npz`` or ``.pt``, and check them.

    A folder of images (one subfolder per class) or a ``.npy`` file with a ``labels``
    ``.npy`` is read by :func:`interp.loading.sources.read_source` (``resize``,
    ``normalize``, ``grayscale`` are for image folders) and checked the same way.

    Args:
        path: a ``np.savez`` file or a ``torch.save`` of a dict of tensors.
        model: when given, the rank and channel count of its first convolution and
            the outputs of its last Linear are checked against the data.
        input_shape: expected ``x`` shape without the batch axis.
        num_classes: labels must lie in ``[0, num_classes)``.
        max_memory: bytes (or ``"8G"``) loading may allocate; declared sizes over it
            (zip members, arrays, expanded views) are refused before allocation.

    Raises:
        InterpError: unreadable file, missing arrays, NaN/Inf rows, labels out of
            range, or shapes that do not fit the model (expected and given).

    >>> data = load_data("test.npz", input_shape=(1, 64))   # doctest: +SKIP
    >>> data.x.shape, data.y.shape                          # doctest: +SKIP
    (torch.Size([200, 1, 64]), torch.Size([200]))
    """
    label = str(path)
    if labels is not None or Path(path).is_dir() or resize or normalize or grayscale:
        from interp.loading.sources import read_source

        arrays = read_source(path, labels, resize=resize, normalize=normalize,
                             grayscale=grayscale)  # fmt: skip
    else:
        arrays = _read_file(path, label, max_memory)
    notes: list[str] = []
    x = _inputs(arrays, label, notes)
    y = _labels(arrays, label, x.shape[0], notes)
    classes = _classes(arrays.get("classes"), label)
    expect_shape, expect_classes = _expectations(model, input_shape, num_classes, classes)
    if classes is not None and expect_classes is not None and len(classes) != expect_classes:
        raise InterpError(
            f"data file {label} names {len(classes)} classes but the model has "
            f"{expect_classes} outputs; save one name per model output as `classes`"
        )
    if model is not None and input_shape is None:
        # The first conv's type is only a guess at the input rank (an EEG net takes
        # (N, 22, 1000) and adds an axis itself before its Conv2d): measure instead.
        accepted = _model_accepts(model, x)
        if accepted is not None:
            expect_shape, expect_classes = tuple(int(v) for v in x.shape[1:]), accepted
            if classes is not None and len(classes) != expect_classes:
                raise InterpError(
                    f"data file {label} names {len(classes)} classes but the model has "
                    f"{expect_classes} outputs; save one name per model output as `classes`"
                )
    _check_shape(x, expect_shape, label)
    _check_range(y, expect_classes, label)
    axis = _axis(arrays, label, x.ndim - 2)
    return Dataset(x=x, y=y, classes=classes, path=label, notes=tuple(notes), axis=axis)


def _per_axis(value: Any, name: str, label: str, dims: int, kind: type) -> list[Any] | None:
    """A file's ``units`` / ``sample_spacing`` / ``start``: one value, or one per axis."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        value = value.numpy()
    items = np.asarray(value).reshape(-1).tolist() if not isinstance(value, str) else [value]
    if len(items) == 1:
        items = items * dims
    ok = len(items) == dims and all(
        isinstance(v, str) and 0 < len(v.strip()) <= 32 if kind is str
        else isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
        for v in items
    )  # fmt: skip
    if not ok:
        what = "a short unit name such as 'Hz'" if kind is str else "a finite number"
        raise InterpError(
            f"data file {label}: `{name}` is {value!r}; save {what}, one for all axes or one "
            f"per spatial axis ({dims})"
        )
    return [v.strip() if kind is str else float(v) for v in items]


def _axis(arrays: Mapping[str, Any], label: str, dims: int) -> tuple[dict[str, Any], ...] | None:
    """Axis metadata from ``units`` (+ optional ``sample_spacing``, ``start``), or None."""
    units = _per_axis(arrays.get("units"), "units", label, dims, str)
    steps = _per_axis(arrays.get("sample_spacing"), "sample_spacing", label, dims, float)
    starts = _per_axis(arrays.get("start"), "start", label, dims, float)
    if units is None:
        if steps is not None or starts is not None:
            raise InterpError(
                f"data file {label} has `sample_spacing` or `start` but no `units`; save the "
                "unit too, e.g. units='Hz'"
            )
        return None
    if steps is not None and any(v <= 0 for v in steps):
        raise InterpError(f"data file {label}: `sample_spacing` must be positive, got {steps}")
    out = []
    for i in range(dims):
        entry: dict[str, Any] = {"unit": units[i], "step": steps[i] if steps else 1.0}
        if starts is not None:
            entry["start"] = starts[i]
        out.append(entry)
    return tuple(out)


def _read_file(path: str | os.PathLike[str], label: str, max_memory: int | str | None
               ) -> dict[str, Any]:  # fmt: skip
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise InterpError(f"data file {label} does not exist; check the path") from None
    except OSError as err:
        raise InterpError(f"cannot read data file {label} ({err.strerror})") from None
    limit = default_budget(len(raw)) if max_memory is None else parse_memory(max_memory)
    return _read_arrays(raw, label, Budget(f"data file {label}", limit))


def _read_arrays(raw: bytes, label: str, budget: Budget) -> dict[str, Any]:
    kind = _formats.sniff(raw)
    fix = "save x, y (and classes) with np.savez or torch.save of a dict of tensors"
    if kind == "empty":
        raise InterpError(f"data file {label} is empty (0 bytes); {fix}")
    if raw[:2] == b"PK":
        check_zip(raw, budget)
    if kind == "npz":
        check_npz(raw, budget)
        try:
            with np.load(io.BytesIO(raw), allow_pickle=False) as archive:
                return {name: archive[name] for name in archive.files}
        except ValueError as err:
            if "allow_pickle" in str(err) or "Object arrays" in str(err):
                raise InterpError(
                    f"data file {label} holds Python objects, which could run code; {fix}"
                ) from None
            raise InterpError(f"data file {label} is truncated or corrupt; {fix}") from None
        except Exception:  # untrusted bytes: numpy and zipfile raise many types
            raise InterpError(f"data file {label} is truncated or corrupt; {fix}") from None
    if kind in ("torch-zip", "legacy-pickle"):
        try:
            if kind == "torch-zip":
                scan_pickle(_formats.zip_member(raw, "data.pkl", limit=budget.limit) or b"",
                            budget)  # fmt: skip
            else:
                scan_pickle(raw, budget, count=5)
        except ValueError:
            raise InterpError(f"data file {label} is truncated or corrupt; {fix}") from None
        try:
            obj = torch.load(io.BytesIO(raw), weights_only=True, map_location="cpu")
        except Exception as err:  # untrusted bytes: any failure is a bad file
            unsafe = "Weights only load failed" in str(err)
            why = "holds objects that could run code" if unsafe else "is truncated or corrupt"
            raise InterpError(f"data file {label} {why}; {fix}") from None
        if isinstance(obj, (tuple, list)) and len(obj) in (2, 3):
            obj = dict(zip(("x", "y", "classes"), obj, strict=False))
        if not isinstance(obj, Mapping):
            raise InterpError(f"data file {label} holds a {type(obj).__name__}, not a dict; {fix}")
        return {str(k): v for k, v in obj.items()}
    if kind == "zip":
        raise InterpError(f"data file {label} is truncated or corrupt; {fix}")
    if kind in ("torchscript", "export", "safetensors"):
        raise InterpError(f"data file {label} is a model file, not data; {fix}")
    raise InterpError(f"data file {label} is not .npz or .pt data; {fix}")


def _as_tensor(value: Any, name: str, label: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        if not plain_tensor(value):
            raise InterpError(
                f"data file {label}: `{name}` is {describe_tensor(value)}; save a dense CPU "
                "tensor of numbers"
            )
        return value.detach()
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, (list, tuple)):
        try:
            return torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError):
            pass
    kind = value.dtype if isinstance(value, np.ndarray) else type(value).__name__
    raise InterpError(f"data file {label}: `{name}` is {kind}, not numbers; save a numeric array")


def _inputs(arrays: Mapping[str, Any], label: str, notes: list[str]) -> torch.Tensor:
    if "x" not in arrays:
        raise InterpError(
            f"data file {label} has no `x` (found: {', '.join(sorted(arrays)) or 'nothing'}); "
            "save the inputs as `x` and the labels as `y`"
        )
    x = _as_tensor(arrays["x"], "x", label)
    if x.dtype == torch.bool or x.is_complex():
        raise InterpError(f"data file {label}: `x` is {x.dtype}; save real numbers")
    if x.ndim == 2:
        x = x.unsqueeze(1)  # (N, L) -> (N, 1, L)
        notes.append("added a channel axis: x (N, L) -> (N, 1, L)")
    if x.ndim not in (3, 4):
        raise InterpError(
            f"data file {label}: `x` has shape {tuple(x.shape)}; expected (N, C, L), (N, L) "
            "or (N, C, H, W)"
        )
    if x.numel() == 0:
        raise InterpError(f"data file {label} is empty: `x` has shape {tuple(x.shape)}")
    if x.dtype != torch.float32:
        if x.is_floating_point() and x.dtype in (torch.float16, torch.bfloat16, torch.float64):
            _check_finite(x, label, "")  # float8 and other exotic floats: after conversion
        notes.append(f"converted {str(x.dtype).removeprefix('torch.')} to float32")
        x = x.to(torch.float32)
        _check_finite(x, label, " after conversion to float32")
    else:
        _check_finite(x, label, "")
    peak = float(x.abs().max())
    if peak > HUGE:
        notes.append(
            f"values reach {peak:.3g} (above {HUGE:.0e}); models are usually trained on "
            "normalised inputs, check the scaling"
        )
    return x.contiguous()


def _check_finite(x: torch.Tensor, label: str, suffix: str) -> None:
    bad = (~torch.isfinite(x)).flatten(1).any(1).nonzero().flatten().tolist()
    if bad:
        rows = ", ".join(str(i) for i in bad[:_SHOW]) + (" ..." if len(bad) > _SHOW else "")
        raise InterpError(
            f"data file {label}: {len(bad)} rows of `x` hold NaN or Inf{suffix} (rows {rows}); "
            "remove or repair them"
        )


def _labels(arrays: Mapping[str, Any], label: str, n: int, notes: list[str]) -> torch.Tensor:
    if "y" not in arrays:
        raise InterpError(f"data file {label} has no `y`; save the integer labels as `y`")
    value = arrays["y"]
    if isinstance(value, np.ndarray) and value.dtype.kind in "USO":
        raise InterpError(
            f"data file {label}: `y` holds strings; map them to integers 0..K-1 and save the "
            "names as `classes`"
        )
    y = _as_tensor(value, "y", label)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.flatten()
    if y.ndim != 1:
        raise InterpError(
            f"data file {label}: `y` has shape {tuple(y.shape)}; expected one integer label "
            "per row, shape (N,)"
        )
    if y.shape[0] != n:
        raise InterpError(
            f"data file {label}: `x` has {n} rows but `y` has {y.shape[0]}; save one label per row"
        )
    dtype = str(y.dtype).removeprefix("torch.")
    if y.is_complex():
        raise InterpError(f"data file {label}: `y` is {dtype}; save integer class indices")
    if y.is_floating_point():
        bad = (~torch.isfinite(y) | (y != y.round()) | (y.abs() >= 2**62)).nonzero().flatten()
        if len(bad):
            rows = ", ".join(map(str, bad[:_SHOW].tolist()))
            raise InterpError(
                f"data file {label}: `y` holds non-integer labels (rows {rows}); save integer "
                "class indices"
            )
        notes.append(f"converted labels from {dtype} to int64")
    elif y.dtype == torch.bool:
        notes.append("converted labels from bool to int64")
    elif y.dtype in (torch.uint64, torch.uint32):
        big = (y.to(torch.float64) >= 2**62).nonzero().flatten()
        if len(big):  # int64 would wrap these to negative numbers
            values = y.numpy()  # torch cannot print a uint64 beyond int64
            rows = ", ".join(f"{int(i)} ({int(values[int(i)])})" for i in big[:_SHOW])
            raise InterpError(
                f"data file {label}: `y` holds labels too large for class indices (rows {rows}); "
                "labels are class indices 0..K-1"
            )
    elif y.dtype == torch.uint64:  # int64 would wrap the largest values round to negative ones
        flat = y.numpy().reshape(-1)
        big = np.flatnonzero(flat >= 2**62)
        if len(big):
            rows = ", ".join(f"{int(i)} ({int(flat[i])})" for i in big[:_SHOW])
            raise InterpError(
                f"data file {label}: `y` holds labels too large to be class indices (rows "
                f"{rows}); labels are class indices 0..K-1"
            )
    y = y.to(torch.int64)
    return y.contiguous()


def _classes(value: Any, label: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, np.ndarray) and value.dtype.kind == "U" and value.ndim == 1:
        return tuple(str(v) for v in value)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise InterpError(f"data file {label}: `classes` must be a list of class names (str)")


def _expectations(
    model: nn.Module | None, shape: tuple[int, ...] | None, num_classes: int | None,
    classes: tuple[str, ...] | None,
) -> tuple[tuple[int | None, ...] | None, int | None]:  # fmt: skip
    """Expected ``x`` shape (None entries: any) and class count, from the arguments."""
    expect: tuple[int | None, ...] | None = tuple(shape) if shape is not None else None
    if model is not None:
        convs = [m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d))]
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if expect is None and convs:
            dims = 1 if isinstance(convs[0], nn.Conv1d) else 2
            expect = (convs[0].in_channels, *([None] * dims))
        if num_classes is None and linears:
            num_classes = linears[-1].out_features
    if num_classes is None and classes is not None:
        num_classes = len(classes)
    return expect, num_classes


def _model_accepts(model: nn.Module, x: torch.Tensor) -> int | None:
    """The number of logits when ``model`` takes one row of ``x`` as it is, else None."""
    if x.shape[0] == 0:
        return None
    try:
        with inspecting(model), torch.no_grad():
            out = model(x[:1].to(model_device(model)))
    except Exception:  # any failure means: not this shape; the shape check explains
        return None
    if isinstance(out, torch.Tensor) and out.dim() == 2 and out.shape[0] == 1:
        return int(out.shape[1])
    return None


def _fmt(shape: tuple[int | None, ...]) -> str:
    names = ("C", "L") if len(shape) == 2 else ("C", "H", "W")
    parts = [str(s) if s is not None else n for s, n in zip(shape, names, strict=False)]
    return "(" + ", ".join(parts) + ")"


def _check_shape(x: torch.Tensor, expect: tuple[int | None, ...] | None, label: str) -> None:
    if expect is None:
        return
    given = tuple(x.shape[1:])
    if len(given) != len(expect):
        raise InterpError(
            f"data file {label}: the model expects {len(expect) - 1}D inputs "
            f"{_fmt(expect)} per row, the data has {len(given) - 1}D rows {given}; "
            "pass data made for this model"
        )
    if any(e is not None and e != g for e, g in zip(expect, given, strict=True)):
        what = "channels" if expect[0] is not None and expect[0] != given[0] else "length"
        raise InterpError(
            f"data file {label}: the model expects rows of shape {_fmt(expect)}, the data has "
            f"{given} (wrong {what}); pass data made for this model"
        )


def _check_range(y: torch.Tensor, num_classes: int | None, label: str) -> None:
    hi = num_classes if num_classes is not None else None
    bad_mask = y < 0 if hi is None else (y < 0) | (y >= hi)
    bad = bad_mask.nonzero().flatten().tolist()
    if bad:
        rows = ", ".join(f"{i} ({int(y[i])})" for i in bad[:_SHOW])
        allowed = f"[0, {hi})" if hi is not None else "non-negative"
        raise InterpError(
            f"data file {label}: {len(bad)} labels are outside {allowed} (rows {rows}); "
            "labels are class indices for this model's outputs"
        )
