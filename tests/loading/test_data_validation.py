"""Data files: what is accepted (with notes), and one clear refusal for each problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from _files import LENGTH, data_arrays, npz_bytes, tiny, torch_bytes
from torch import nn

import interp
from interp.loading.core import Dataset, load_data


def _npz(tmp_path: Path, **arrays) -> Path:
    path = tmp_path / "d.npz"
    path.write_bytes(npz_bytes(**arrays))
    return path


def test_npz_and_pt_give_the_same_dataset(tmp_path: Path):
    x, y = data_arrays()
    a = load_data(_npz(tmp_path, x=x, y=y, classes=np.array(["a", "b", "c"])))
    tensors = {"x": torch.from_numpy(x), "y": torch.from_numpy(y), "classes": ["a", "b", "c"]}
    (tmp_path / "d.pt").write_bytes(torch_bytes(tensors))
    b = load_data(tmp_path / "d.pt")
    for data in (a, b):
        assert isinstance(data, Dataset)
        assert data.x.dtype == torch.float32 and data.y.dtype == torch.int64
        assert torch.equal(data.x, torch.from_numpy(x))
        assert torch.equal(data.y, torch.from_numpy(y).long())
        assert data.classes == ("a", "b", "c") and data.notes == ()
    assert a.to_dict() == {"path": str(tmp_path / "d.npz"), "n": 6, "classes": ["a", "b", "c"],
                           "input_shape": [1, LENGTH]}  # fmt: skip


def test_legacy_pt_and_tuple_of_tensors_are_accepted(tmp_path: Path):
    x, y = data_arrays()
    (tmp_path / "d.pt").write_bytes(torch_bytes((torch.from_numpy(x), torch.from_numpy(y)),
                                                legacy=True))  # fmt: skip
    assert torch.equal(load_data(tmp_path / "d.pt").x, torch.from_numpy(x))


def test_rank_two_inputs_get_a_channel_axis(tmp_path: Path):
    x, y = data_arrays()
    data = load_data(_npz(tmp_path, x=x[:, 0], y=y), model=tiny())
    assert data.x.shape == (6, 1, LENGTH)
    assert torch.equal(data.x[:, 0], torch.from_numpy(x[:, 0]))
    assert data.notes == ("added a channel axis: x (N, L) -> (N, 1, L)",)


@pytest.mark.parametrize(
    ("dtype", "note"),
    [(np.float64, "converted float64 to float32"), (np.int16, "converted int16 to float32"),
     (np.float16, "converted float16 to float32")],
)  # fmt: skip
def test_other_input_dtypes_are_converted_with_a_note(tmp_path: Path, dtype, note):
    x, y = data_arrays()
    data = load_data(_npz(tmp_path, x=(x * 10).astype(dtype), y=y))
    assert data.x.dtype == torch.float32 and note in data.notes
    assert torch.equal(data.x, torch.from_numpy((x * 10).astype(dtype).astype(np.float32)))


def test_float_labels_with_integer_values_are_converted(tmp_path: Path):
    x, y = data_arrays()
    data = load_data(_npz(tmp_path, x=x, y=y.astype(np.float32)))
    assert data.y.dtype == torch.int64 and torch.equal(data.y, torch.from_numpy(y))
    assert "converted labels from float32 to int64" in data.notes


def test_huge_values_are_accepted_with_a_note(tmp_path: Path):
    x, y = data_arrays()
    x[2, 0, 3] = 5e7
    data = load_data(_npz(tmp_path, x=x, y=y))
    assert any("5e+07" in n and "normalised" in n for n in data.notes)


def _refused(path: Path, words: str, **kwargs) -> str:
    with pytest.raises(interp.InterpError, match=words) as err:
        load_data(path, **kwargs)
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    return message


def test_nan_and_inf_rows_are_listed(tmp_path: Path):
    x, y = data_arrays(n=10)
    x[1, 0, 0] = np.nan
    x[4, 0, 5] = np.inf
    x[9, 0, 2] = -np.inf
    _refused(_npz(tmp_path, x=x, y=y), r"3 rows of `x` hold NaN or Inf \(rows 1, 4, 9\)")


def test_values_that_overflow_float32_are_refused(tmp_path: Path):
    x, y = data_arrays()
    x64 = x.astype(np.float64)
    x64[3, 0, 0] = 1e300
    _refused(_npz(tmp_path, x=x64, y=y), r"NaN or Inf after conversion to float32 \(rows 3\)")


def test_labels_out_of_range_are_listed_with_the_range(tmp_path: Path):
    x, y = data_arrays()
    y[2], y[5] = 3, -1
    _refused(_npz(tmp_path, x=x, y=y), r"2 labels are outside \[0, 3\) \(rows 2 \(3\), 5 \(-1\)\)",
             model=tiny())  # fmt: skip
    _refused(_npz(tmp_path, x=x, y=y), r"outside \[0, 2\)", num_classes=2)
    _refused(_npz(tmp_path, x=x, y=y), r"outside non-negative \(rows 5 \(-1\)\)")


def test_class_names_that_do_not_match_the_outputs(tmp_path: Path):
    x, y = data_arrays()
    _refused(_npz(tmp_path, x=x, y=y, classes=np.array(["a", "b", "c", "d"])),
             "names 4 classes but the model has 3 outputs", model=tiny())  # fmt: skip


def test_length_mismatch_between_x_and_y(tmp_path: Path):
    x, y = data_arrays()
    _refused(_npz(tmp_path, x=x, y=y[:4]), "`x` has 6 rows but `y` has 4")


@pytest.mark.parametrize(
    ("shape", "kwargs", "words"),
    [
        ((6, 2, LENGTH), {"model": tiny()}, r"expects rows of shape \(1, L\), .* \(2, 16\) "
                                            r"\(wrong channels\)"),
        ((6, 1, 20), {"input_shape": (1, LENGTH)}, r"\(1, 16\), the data has \(1, 20\) "
                                                   r"\(wrong length\)"),
        ((6, 1, 4, 4), {"model": tiny()}, r"expects 1D inputs \(1, L\) per row, the data has 2D"),
        ((6, 1, LENGTH), {"model": nn.Sequential(nn.Conv2d(1, 2, 3))}, "expects 2D inputs"),
        ((6, 1, 2, 3, 4), {}, r"shape \(6, 1, 2, 3, 4\); expected \(N, C, L\)"),
        ((6,), {}, r"shape \(6,\); expected"),
    ],
)  # fmt: skip
def test_shapes_that_do_not_fit_say_expected_and_given(tmp_path: Path, shape, kwargs, words):
    x = np.zeros(shape, dtype=np.float32)
    _refused(_npz(tmp_path, x=x, y=np.zeros(6, dtype=np.int64)), words, **kwargs)


def test_empty_data_is_refused(tmp_path: Path):
    _refused(_npz(tmp_path, x=np.zeros((0, 1, LENGTH), np.float32), y=np.zeros(0, np.int64)),
             "is empty")  # fmt: skip
    (tmp_path / "e.npz").write_bytes(b"")
    _refused(tmp_path / "e.npz", r"is empty \(0 bytes\)")


def test_non_integer_labels_are_refused_with_rows(tmp_path: Path):
    x, y = data_arrays()
    yf = y.astype(np.float64)
    yf[1] = 0.5
    _refused(_npz(tmp_path, x=x, y=yf), r"non-integer labels \(rows 1\)")
    _refused(_npz(tmp_path, x=x, y=np.array(["a"] * 6)), "`y` holds strings; map them")
    _refused(_npz(tmp_path, x=x, y=np.zeros((6, 2))), r"`y` has shape \(6, 2\)")


def test_missing_arrays_and_wrong_containers(tmp_path: Path):
    x, y = data_arrays()
    _refused(_npz(tmp_path, inputs=x, y=y), r"has no `x` \(found: inputs, y\)")
    _refused(_npz(tmp_path, x=x), "has no `y`")
    (tmp_path / "t.pt").write_bytes(torch_bytes(torch.zeros(3)))
    _refused(tmp_path / "t.pt", "holds a Tensor, not a dict")
    _refused(_npz(tmp_path, x=x.astype(np.complex64), y=y), "complex64")
    (tmp_path / "x.csv").write_text("1,2,3\n")
    _refused(tmp_path / "x.csv", r"not \.npz or \.pt data")
    _refused(tmp_path / "nope.npz", "does not exist")


def test_truncated_data_file_is_refused(tmp_path: Path):
    x, y = data_arrays()
    raw = npz_bytes(x=x, y=y)
    for cut in (len(raw) // 2, len(raw) - 30, 60):
        (tmp_path / "t.npz").write_bytes(raw[:cut])
        _refused(tmp_path / "t.npz", "is truncated or corrupt")
    (tmp_path / "t.pt").write_bytes(torch_bytes({"x": torch.zeros(2, 1, 4)})[:-40])
    _refused(tmp_path / "t.pt", "is truncated or corrupt")


class _AddsAnAxis(nn.Module):
    """EEG-style: (N, 4 electrodes, T) -> unsqueeze -> Conv2d over (electrodes, time)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, (4, 5))
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x.unsqueeze(1)).amax((-2, -1)))


def test_data_the_model_takes_as_it_is_is_accepted(tmp_path):
    """The first conv's type (Conv2d) does not decide the rank: the model's own forward does."""
    model = _AddsAnAxis().eval()
    path = tmp_path / "eeg.npz"
    np.savez(path, x=np.random.default_rng(0).normal(size=(5, 4, 40)).astype("float32"),
             y=np.array([0, 1, 0, 1, 1]))  # fmt: skip
    data = load_data(path, model=model)
    assert tuple(data.x.shape) == (5, 4, 40)
    np.savez(path, x=np.zeros((2, 4, 40), "float32"), y=np.array([0, 2]))
    with pytest.raises(interp.InterpError, match=r"out of range|2"):
        load_data(path, model=model)  # 2 logits measured, so label 2 is refused
