"""Shift 1D and 2D inputs, one shift or many at once, and parse shift specs.

Convention (DESIGN.md): a positive shift ``s`` moves content towards higher
indices. Modes, per spatial axis of length ``L``:

- ``roll``: ``out[i] = x[(i - s) mod L]`` (``torch.roll``);
- ``zero``: ``out[i] = x[i - s]`` if ``0 <= i - s < L`` else 0 (content pushed
  past the edge is lost);
- ``edge``: ``out[i] = x[clamp(i - s, 0, L - 1)]`` (vacated positions repeat the edge).

All three are one gather with an index table built per shift, so
:func:`shift_many` shifts a whole batch by many shifts with no Python loop
over samples or shifts.

Shift specs (:func:`parse_shifts`), as typed on the command line:

- ``-3000:3000:250``: start:stop:step, stop included when the steps reach it;
  ``-4:4`` uses step 1;
- ``-500,0,500``: a list; ``7``: one shift;
- 2D: a plain SPEC applies to both axes and gives the grid of ``(dy, dx)``;
  ``y:SPEC`` sweeps rows only (``dx = 0``), ``x:SPEC`` columns only (``dy = 0``);
  ``y:SPEC;x:SPEC`` gives the grid of the two.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Literal

import torch

from interp._util import MODES
from interp.errors import InterpError

Mode = Literal["roll", "zero", "edge"]
Shift = int | tuple[int, int]
MAX_SHIFTS = 100_000  # a spec that expands to more is almost surely a typo
MAX_SHIFT_SIZE = 2**62  # index arithmetic is int64; larger shifts are typos anyway


def check_mode(mode: str) -> str:
    """Return ``mode`` if it is a known shift mode, else raise InterpError."""
    if mode not in MODES:
        raise InterpError(f"`mode` {mode!r} is not a shift mode; use one of: {', '.join(MODES)}")
    return mode


def _is_int(v: object) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, torch.Tensor):
        return v.dim() == 0 and not v.is_floating_point() and v.dtype != torch.bool
    return isinstance(v, int) or type(v).__name__.startswith(("int", "uint"))  # numpy ints


def normalize_shifts(shifts: Iterable[object], spatial_dims: int) -> list[Shift]:
    """Check ``shifts`` and return them as plain ints (1D) or ``(dy, dx)`` tuples (2D).

    >>> normalize_shifts(range(-2, 3), 1)
    [-2, -1, 0, 1, 2]
    """
    if isinstance(shifts, (str, bytes)):
        raise TypeError(
            f"`shifts` must be a sequence of shifts, not a string; got {shifts!r}; "
            "use parse_shifts() for a spec"
        )
    out: list[Shift] = []
    for s in shifts:
        if spatial_dims == 1:
            if not _is_int(s):
                raise TypeError(f"a 1D shift must be an int, got {s!r} ({type(s).__name__})")
            out.append(int(s))  # type: ignore[call-overload]
        else:
            pair = tuple(s) if isinstance(s, (tuple, list)) else None  # type: ignore[arg-type]
            if pair is None or len(pair) != 2 or not all(_is_int(v) for v in pair):
                raise TypeError(f"a 2D shift must be a (dy, dx) pair of ints, got {s!r}")
            out.append((int(pair[0]), int(pair[1])))
    if not out:
        raise InterpError("`shifts` is empty; give at least one shift, e.g. 0")
    _check_sizes([v for s in out for v in (s if isinstance(s, tuple) else (s,))], "shifts")
    return out


def _check_sizes(values: Sequence[int], what: str) -> None:
    """Shifts index positions with int64 arithmetic: refuse any that could overflow it."""
    big = next((v for v in values if abs(v) >= MAX_SHIFT_SIZE), None)
    if big is not None:
        raise InterpError(
            f"`{what}` holds {big}, too large to be a shift (|shift| < 2**62); give shifts "
            "within the input length"
        )


def _index(size: int, shifts: Sequence[int], mode: str, device: torch.device):
    """Gather index (S, size) and keep-mask (S, size) or None, for one axis."""
    i = torch.arange(size, device=device)
    s = torch.tensor(list(shifts), dtype=torch.long, device=device)
    src = i[None, :] - s[:, None]  # (S, size): out[i] = x[i - s]
    if mode == "roll":
        return torch.remainder(src, size), None
    keep = (src >= 0) & (src < size) if mode == "zero" else None
    return src.clamp(0, size - 1), keep


def shift_many(x: torch.Tensor, shifts: Iterable[Shift], mode: str = "roll") -> torch.Tensor:
    """Shift every sample of ``x`` by every shift, in one gather.

    Args:
        x: (N, C, L) with int shifts, or (N, C, H, W) with ``(dy, dx)`` shifts.
        shifts: S shifts.
        mode: ``roll``, ``zero`` or ``edge`` (see the module docstring).

    Returns:
        (N, S, C, L) or (N, S, C, H, W), same dtype and device as ``x``.

    >>> shift_many(torch.zeros(2, 1, 10), [-1, 0, 3]).shape
    torch.Size([2, 3, 1, 10])
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"`x` must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() not in (3, 4):
        raise ValueError(f"`x` must be (N, C, L) or (N, C, H, W), got shape {tuple(x.shape)}")
    check_mode(mode)
    dims = x.dim() - 2
    shifts = normalize_shifts(shifts, dims)
    if dims == 1:
        ints = [s for s in shifts if isinstance(s, int)]
        idx, keep = _index(x.shape[-1], ints, mode, x.device)  # (S, L)
        out = x[:, :, idx]  # (N, C, S, L)
        if keep is not None:
            out = out * keep.to(x.dtype)
        return out.movedim(2, 1)
    dy = [s[0] for s in shifts]  # type: ignore[index]
    dx = [s[1] for s in shifts]  # type: ignore[index]
    iy, ky = _index(x.shape[-2], dy, mode, x.device)  # (S, H)
    ix, kx = _index(x.shape[-1], dx, mode, x.device)  # (S, W)
    out = x[:, :, iy[:, :, None], ix[:, None, :]]  # (N, C, S, H, W)
    if ky is not None and kx is not None:
        out = out * (ky[:, :, None] & kx[:, None, :]).to(x.dtype)
    return out.movedim(2, 1)


def shift(x: torch.Tensor, s: Shift, mode: str = "roll") -> torch.Tensor:
    """Shift every sample of ``x`` by ``s`` (positive: towards higher indices).

    Args:
        x: (N, C, L) with an int ``s``, or (N, C, H, W) with ``s = (dy, dx)``.
        s: the shift.
        mode: ``roll``, ``zero`` or ``edge``.

    Returns:
        A new tensor shaped like ``x``; ``x`` is not changed.

    >>> shift(torch.arange(5.0).view(1, 1, 5), 2, "zero")
    tensor([[[0., 0., 0., 1., 2.]]])
    """
    return shift_many(x, [s], mode)[:, 0]


def _parse_axis(spec: str, what: str) -> list[int]:
    """'-4:4:2' -> [-4, -2, 0, 2, 4]; '1,2' -> [1, 2]; '3' -> [3]."""
    text = spec.strip().replace(" ", "")
    hint = "use start:stop:step like -3000:3000:250 or a list like -500,0,500"
    if not text:
        raise InterpError(f"`{what}` is empty; {hint}")
    try:
        if ":" in text:
            parts = [int(p) for p in text.split(":")]
            if len(parts) not in (2, 3):
                raise ValueError
            _check_sizes(parts, what)
            start, stop = parts[0], parts[1]
            step = parts[2] if len(parts) == 3 else 1
            if step == 0 or (stop - start) * step < 0:
                raise InterpError(
                    f"`{what}` {spec!r} never reaches its stop: step {step} from {start} to "
                    f"{stop}; {hint}"
                )
            count = (stop - start) // step + 1
            if count > MAX_SHIFTS:
                raise InterpError(
                    f"`{what}` {spec!r} gives {count} shifts (max {MAX_SHIFTS}); use a larger step"
                )
            return list(range(start, stop + (1 if step > 0 else -1), step))
        values = [int(p) for p in text.split(",") if p != ""]
    except ValueError:
        raise InterpError(f"`{what}` {spec!r} is not a shift spec; {hint}") from None
    if not values:
        raise InterpError(f"`{what}` {spec!r} has no shifts; {hint}")
    _check_sizes(values, what)
    return values


def parse_shifts(spec: str, spatial_dims: int) -> list[int] | list[tuple[int, int]]:
    """Parse a shift spec into 1D shifts or 2D ``(dy, dx)`` shifts.

    Args:
        spec: ``start:stop:step`` (stop included), ``a,b,c``, or for 2D also
            ``y:SPEC``, ``x:SPEC`` (one axis, the other 0) and ``y:SPEC;x:SPEC`` (grid).
        spatial_dims: 1 for (N, C, L) models, 2 for (N, C, H, W).

    Raises:
        InterpError: the spec cannot be read, or expands to more than 100,000 shifts.

    >>> parse_shifts("-2:2:2", 1)
    [-2, 0, 2]
    >>> parse_shifts("y:-1:1", 2)
    [(-1, 0), (0, 0), (1, 0)]
    """
    if not isinstance(spec, str):
        raise TypeError(f"`spec` must be a str, got {type(spec).__name__}")
    if spatial_dims not in (1, 2):
        raise ValueError(f"`spatial_dims` must be 1 or 2, got {spatial_dims!r}")
    text = spec.strip()
    if spatial_dims == 1:
        if text[:2].lower() in ("x:", "y:"):
            raise InterpError(
                f"`shifts` {spec!r} names an axis, but the model is 1D; drop the {text[:2]!r}"
            )
        return _parse_axis(text, "shifts")
    axes: dict[str, list[int]] = {}
    parts = [p.strip() for p in text.split(";") if p.strip()]
    named = [p for p in parts if p[:2].lower() in ("y:", "x:")]
    if not named:
        if len(parts) != 1:
            raise InterpError(f"`shifts` {spec!r}: use 'y:SPEC;x:SPEC' to give one spec per axis")
        values = _parse_axis(parts[0], "shifts")
        axes = {"y": values, "x": values}
    else:
        if len(named) != len(parts):
            raise InterpError(
                f"`shifts` {spec!r} mixes named and unnamed axes; "
                "write 'y:SPEC;x:SPEC' or one SPEC for both"
            )
        for part in parts:
            name = part[0].lower()
            if name in axes:
                raise InterpError(f"`shifts` {spec!r} gives axis {name!r} twice")
            axes[name] = _parse_axis(part[2:], f"shifts ({name})")
    ys, xs = axes.get("y", [0]), axes.get("x", [0])
    if len(ys) * len(xs) > MAX_SHIFTS:
        raise InterpError(
            f"`shifts` {spec!r} gives {len(ys) * len(xs)} (dy, dx) shifts "
            f"(max {MAX_SHIFTS}); use a larger step"
        )
    return [(dy, dx) for dy in ys for dx in xs]


def default_shifts(input_shape: Sequence[int]) -> list[int] | list[tuple[int, int]]:
    """Shifts that cover a model's input: ~100 steps over the full length (1D), or
    every pixel within +-size/4 on both axes (2D).

    >>> default_shifts((1, 8192))[:2], len(default_shifts((1, 8192)))
    ([-4018, -3936], 99)
    >>> len(default_shifts((1, 32, 32)))
    289
    """
    spatial = [int(v) for v in input_shape[1:]]
    if len(spatial) == 1:
        length = spatial[0]
        step = max(1, math.ceil(length / 100))
        half = (length // 2) // step * step
        return list(range(-half, half + 1, step))
    if len(spatial) == 2:
        ry, rx = spatial[0] // 4, spatial[1] // 4
        return [(dy, dx) for dy in range(-ry, ry + 1) for dx in range(-rx, rx + 1)]
    raise ValueError(f"`input_shape` must be (C, L) or (C, H, W), got {tuple(input_shape)}")
