"""Loading the files people actually bring (issue 12): custom classes beside the script,
factories with arguments, exported programs, odd dtypes, and the input length.

Oracles: the model's own output (a loaded model computes what the saved one did),
the length the model was built for, and the exact module named in an import error.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from _files import LENGTH, export_bytes, tiny
from torch import nn

import interp
from interp.errors import InterpError
from interp.geometry.infer import infer_input_shape
from interp.loading.weights import parse_arch_kwargs, split_model_arch

ROOT = Path(__file__).resolve().parents[2]
NET_PY = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self, classes=3):
            super().__init__()
            self.conv = nn.Conv1d(1, 2, 3, padding=1)
            self.fc = nn.Linear(2 * 16, classes)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).flatten(1))

    def factory(num_classes, width=2):
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv1d(1, width, 3, padding=1), nn.Flatten(),
                             nn.Linear(width * 16, num_classes))
    """
)
LOAD = "import sys, interp; m, i = interp.load(sys.argv[1], trust=True); print(type(m).__name__)"


def _console_like(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    # As the console script runs: the working directory is NOT on sys.path (-P, 3.11+).
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-P", "-c", LOAD, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_trusted_custom_class_pickle_finds_its_module_in_the_working_directory(tmp_path):
    (tmp_path / "mynet.py").write_text(NET_PY)
    save = "import sys; sys.path.insert(0, '.'); import torch, mynet; torch.save(mynet.Net(), 'm.pt')"  # noqa: E501
    subprocess.run([sys.executable, "-c", save], cwd=tmp_path, check=True, timeout=120)
    proc = _console_like(tmp_path, "m.pt")
    assert proc.returncode == 0 and proc.stdout.strip() == "Net", proc.stderr
    assert "mynet" not in sys.modules  # the test process itself never imported it


def test_trusted_load_names_the_module_that_cannot_be_imported(tmp_path):
    (tmp_path / "mynet.py").write_text(NET_PY)
    save = "import sys; sys.path.insert(0, '.'); import torch, mynet; torch.save(mynet.Net(), 'm.pt')"  # noqa: E501
    subprocess.run([sys.executable, "-c", save], cwd=tmp_path, check=True, timeout=120)
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    os.chdir(elsewhere)
    try:
        with pytest.raises(InterpError) as err:
            interp.load(tmp_path / "m.pt", trust=True)
    finally:
        os.chdir(ROOT)
    text = str(err.value)
    assert "'mynet'" in text and "PYTHONPATH" in text and "corrupt" not in text, text


def test_arch_factory_with_keyword_arguments(tmp_path, monkeypatch):
    (tmp_path / "mynet.py").write_text(NET_PY)
    monkeypatch.syspath_prepend(str(tmp_path))
    import mynet

    model = mynet.factory(num_classes=10, width=4)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    loaded, _ = interp.load(tmp_path / "w.pt", arch="mynet:factory",
                               arch_kwargs=parse_arch_kwargs("num_classes=10,width=4"))  # fmt: skip
    x = torch.randn(2, 1, 16)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    with pytest.raises(InterpError, match=r"needs arguments \(num_classes\).*--arch-kwargs"):
        interp.load(tmp_path / "w.pt", arch="mynet:factory")
    with pytest.raises(InterpError, match="does not fit"):
        interp.load(tmp_path / "w.pt", arch="mynet:factory", arch_kwargs={"num_classes": 3})
    with pytest.raises(InterpError, match="refused `arch_kwargs`"):
        interp.load(tmp_path / "w.pt", arch="mynet:factory", arch_kwargs={"colour": 1,
                                                                          "num_classes": 10})


def test_arch_kwargs_parser_takes_literals_only():
    assert parse_arch_kwargs("num_classes=10,in_chans=1") == {"num_classes": 10, "in_chans": 1}
    assert parse_arch_kwargs("drop=0.1,name='a,b',sizes=(1, 2),flag=True,mode=fast") == {
        "drop": 0.1, "name": "a,b", "sizes": (1, 2), "flag": True, "mode": "fast"}  # fmt: skip
    for bad in ("__import__('os').system('x')", "10", "=3", "a b=1", "x=[i for i in ()]"):
        with pytest.raises(InterpError, match="arch_kwargs"):
            parse_arch_kwargs(bad)
    assert split_model_arch("w.pt::pkg.nets:small") == ("w.pt", "pkg.nets:small")
    assert split_model_arch("C:/models/w.pt") == ("C:/models/w.pt", None)
    with pytest.raises(InterpError, match="MODEL::"):
        split_model_arch("w.pt::")


def test_export_program_is_on_info_with_its_fixed_batch_size(tmp_path):
    (tmp_path / "m.pt2").write_bytes(export_bytes(tiny(), batch=3))
    model, info = interp.load(tmp_path / "m.pt2", trust=True)
    assert info.format == "export" and info.batch_size == 3
    assert isinstance(info.exported, torch.export.ExportedProgram)
    x = torch.randn(3, 1, LENGTH)
    torch.testing.assert_close(model(x), tiny()(x))
    assert "fixed at 3" in " ".join(info.notes)


def test_non_sequential_torchscript_loads_with_trust_and_runs(tmp_path):
    class Skip(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = tiny()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x) + self.body(torch.flip(x, [-1]))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(Skip().eval())
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer)
    (tmp_path / "m.ts").write_bytes(buffer.getvalue())
    model, info = interp.load(tmp_path / "m.ts", trust=True)
    x = torch.randn(2, 1, LENGTH)
    torch.testing.assert_close(model(x), scripted(x), rtol=0, atol=0)
    assert info.format == "torchscript"


def test_float8_inputs_are_converted_with_a_note(tmp_path):
    x = torch.rand(4, 1, LENGTH).to(torch.float8_e4m3fn)
    torch.save({"x": x, "y": torch.tensor([0, 1, 0, 1])}, tmp_path / "d.pt")
    data = interp.load_data(tmp_path / "d.pt")
    assert data.x.dtype == torch.float32 and torch.equal(data.x, x.to(torch.float32))
    assert any("float8_e4m3fn to float32" in n for n in data.notes)


def test_uint64_labels_beyond_int64_are_refused_not_wrapped(tmp_path):
    y = torch.tensor([0, 1, 2**63 + 5, 1], dtype=torch.uint64)
    torch.save({"x": torch.rand(4, 1, LENGTH), "y": y}, tmp_path / "d.pt")
    with pytest.raises(InterpError, match=r"too large.*rows 2 \(9223372036854775813\)"):
        interp.load_data(tmp_path / "d.pt")


def test_quantized_tensors_are_described_as_quantized(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # quantized creation is deprecated
        q = torch.quantize_per_tensor(torch.rand(4, 1, LENGTH), 0.1, 0, torch.qint8)
    torch.save({"x": q, "y": torch.tensor([0, 1, 0, 1])}, tmp_path / "d.pt")
    with pytest.raises(InterpError, match="quantized qint8 tensor") as err:
        interp.load_data(tmp_path / "d.pt")
    assert "strided" not in str(err.value)


@pytest.mark.parametrize("length", [512, 8192, 100])
def test_state_dict_input_length_is_the_length_the_model_was_built_for(length):
    # Conv(k7, same) -> MaxPool(4, 4): lengths length..length+3 all give the same features.
    model = nn.Sequential(nn.Conv1d(1, 4, 7, padding=3), nn.ReLU(), nn.MaxPool1d(4, 4),
                          nn.Flatten(), nn.Linear(4 * (length // 4), 3))  # fmt: skip
    assert infer_input_shape(model) == (1, length)
