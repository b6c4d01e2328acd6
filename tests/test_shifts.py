"""Shift laws (hypothesis) and spec parsing, against per-element loops and torch.roll."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from interp.errors import InterpError
from interp.shifts import default_shifts, parse_shifts, shift, shift_many

MODES = ("roll", "zero", "edge")
FAST = settings(max_examples=40, deadline=None)


@st.composite
def signals(draw, dims: int = 1):
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    spatial = [draw(st.integers(1, 9)) for _ in range(dims)]
    seed = draw(st.integers(0, 2**16))
    return torch.randn((n, c, *spatial), generator=torch.Generator().manual_seed(seed))


def loop_shift_1d(x: torch.Tensor, s: int, mode: str) -> torch.Tensor:
    """Per-element definition from DESIGN.md, one Python index at a time."""
    out = torch.empty_like(x)
    length = x.shape[-1]
    for i in range(length):
        j = i - s
        if mode == "roll":
            out[..., i] = x[..., j % length]
        elif mode == "zero":
            out[..., i] = x[..., j] if 0 <= j < length else 0.0
        else:
            out[..., i] = x[..., min(max(j, 0), length - 1)]
    return out


def along(x: torch.Tensor, axis: int, s: int, mode: str) -> torch.Tensor:
    """1D shift of a (N, C, H, W) tensor along H (axis -2) or W (axis -1)."""
    moved = x.movedim(axis, -1)
    flat = moved.reshape(x.shape[0], -1, moved.shape[-1])  # (N, C*other, L)
    return shift(flat, s, mode).reshape(moved.shape).movedim(-1, axis)


@FAST
@given(x=signals(), mode=st.sampled_from(MODES))
def test_shift_by_zero_is_identity(x, mode):
    assert torch.equal(shift(x, 0, mode), x)
    x2 = x[..., None].expand(*x.shape, 3).contiguous().movedim(-1, -2)  # (N, C, 3, L)
    assert torch.equal(shift(x2, (0, 0), mode), x2)


@FAST
@given(x=signals(), s=st.integers(-20, 20))
def test_roll_then_unroll_is_identity_and_matches_torch_roll(x, s):
    assert torch.equal(shift(shift(x, s), -s), x)
    assert torch.equal(shift(x, s), torch.roll(x, s, -1))


@FAST
@given(x=signals(), a=st.integers(-20, 20), b=st.integers(-20, 20))
def test_roll_shifts_compose(x, a, b):
    assert torch.equal(shift(shift(x, a), b), shift(x, a + b))


@FAST
@given(x=signals(), s=st.integers(-12, 12), mode=st.sampled_from(MODES))
def test_every_mode_matches_the_per_element_definition(x, s, mode):
    assert torch.equal(shift(x, s, mode), loop_shift_1d(x, s, mode))


@FAST
@given(x=signals(dims=2), dy=st.integers(-10, 10), dx=st.integers(-10, 10),
       mode=st.sampled_from(MODES))  # fmt: skip
def test_2d_shift_equals_two_1d_shifts(x, dy, dx, mode):
    expected = along(along(x, -2, dy, mode), -1, dx, mode)
    assert torch.equal(shift(x, (dy, dx), mode), expected)
    if mode == "roll":
        assert torch.equal(shift(x, (dy, dx)), torch.roll(x, (dy, dx), (-2, -1)))


@FAST
@given(x=signals(), shifts=st.lists(st.integers(-12, 12), min_size=1, max_size=6),
       mode=st.sampled_from(MODES))  # fmt: skip
def test_shift_many_equals_a_loop_of_shift(x, shifts, mode):
    many = shift_many(x, shifts, mode)
    assert many.shape == (x.shape[0], len(shifts), *x.shape[1:])
    for k, s in enumerate(shifts):
        assert torch.equal(many[:, k], loop_shift_1d(x, s, mode))


def test_shift_many_2d_equals_a_loop_and_leaves_input_alone():
    x = torch.randn(2, 3, 5, 7)
    before = x.clone()
    shifts = [(0, 0), (1, -2), (-6, 3), (4, 9)]
    for mode in MODES:
        many = shift_many(x, shifts, mode)
        assert many.shape == (2, 4, 3, 5, 7)
        for k, s in enumerate(shifts):
            assert torch.equal(many[:, k], along(along(x, -2, s[0], mode), -1, s[1], mode))
    assert torch.equal(x, before)


def test_zero_mode_fills_exactly_the_vacated_positions():
    x = torch.arange(1.0, 7.0).view(1, 1, 6)
    assert shift(x, 2, "zero").tolist() == [[[0, 0, 1, 2, 3, 4]]]
    assert shift(x, -2, "edge").tolist() == [[[3, 4, 5, 6, 6, 6]]]
    assert shift(x, 9, "zero").abs().sum() == 0  # everything pushed past the edge


def test_bad_arguments():
    x = torch.zeros(1, 1, 4)
    with pytest.raises(InterpError, match="`mode` 'wrap'"):
        shift(x, 1, "wrap")
    with pytest.raises(TypeError, match="1D shift must be an int"):
        shift(x, 1.5, "roll")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="2D shift"):
        shift(torch.zeros(1, 1, 3, 3), 1)
    with pytest.raises(ValueError, match="shape"):
        shift(torch.zeros(4, 4), 1)
    with pytest.raises(InterpError, match="empty"):
        shift_many(x, [])


@pytest.mark.parametrize(
    ("spec", "dims", "expected"),
    [
        ("-3000:3000:1500", 1, [-3000, -1500, 0, 1500, 3000]),
        ("-5:5:4", 1, [-5, -1, 3]),  # stop included only when reached
        ("-2:1", 1, [-2, -1, 0, 1]),
        ("-500, 0,500", 1, [-500, 0, 500]),
        ("7", 1, [7]),
        ("4:-4:-4", 1, [4, 0, -4]),
        ("-1:1:2", 2, [(-1, -1), (-1, 1), (1, -1), (1, 1)]),
        ("y:-4:4:4", 2, [(-4, 0), (0, 0), (4, 0)]),
        ("x:1,2", 2, [(0, 1), (0, 2)]),
        ("y:0,1; x:-3", 2, [(0, -3), (1, -3)]),
    ],
)
def test_parse_shifts(spec, dims, expected):
    assert parse_shifts(spec, dims) == expected


@pytest.mark.parametrize(
    ("spec", "dims", "message"),
    [
        ("a:b", 1, "not a shift spec"),
        ("1:2:3:4", 1, "not a shift spec"),
        ("5:-5:1", 1, "never reaches"),
        ("0:10:0", 1, "never reaches"),
        ("-1000000:1000000:1", 1, "max 100000"),
        ("y:1", 1, "model is 1D"),
        ("y:1;2", 2, "mixes named"),
        ("y:1;y:2", 2, "twice"),
        ("", 1, "empty"),
    ],
)
def test_parse_shifts_errors_say_the_fix(spec, dims, message):
    with pytest.raises(InterpError, match=message):
        parse_shifts(spec, dims)


def test_default_shifts_cover_the_input():
    one = default_shifts((1, 8192))
    assert 0 in one and 90 <= len(one) <= 110
    assert one[-1] - one[0] >= 8192 - 2 * 82  # full length, to one step at each end
    two = default_shifts((1, 32, 32))
    assert (-8, -8) in two and (8, 8) in two and len(two) == 17 * 17
