"""Files that could run code are refused without trust, and nothing runs (canaries)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _files import (
    Hostile,
    export_bytes,
    hostile_files,
    make_tiny,
    npz_bytes,
    tiny,
    torch_bytes,
    torchscript_bytes,
)
from torch import nn

import interp
from interp.loading.core import load, load_data, save

HOSTILE_KINDS = ["pickle", "torch-zip", "legacy", "wrapped"]


@pytest.fixture
def spy_unsafe_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every loader call that could run code; the real loaders still run."""
    calls: list[str] = []
    real_load = torch.load

    def torch_load(*args: Any, **kwargs: Any) -> Any:
        assert "weights_only" in kwargs and "map_location" in kwargs, kwargs
        if kwargs["weights_only"] is not True:
            calls.append("torch.load(weights_only=False)")
        return real_load(*args, **kwargs)

    def refuse(name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            raise AssertionError(f"{name} must not run")

        return fail

    monkeypatch.setattr(torch, "load", torch_load)
    monkeypatch.setattr(torch.jit, "load", refuse("torch.jit.load"))
    monkeypatch.setattr(torch.export, "load", refuse("torch.export.load"))
    monkeypatch.setattr("pickle.loads", refuse("pickle.loads"))
    return calls


@pytest.mark.parametrize("kind", HOSTILE_KINDS)
def test_hostile_pickles_are_refused_naming_the_global_and_nothing_runs(
    tmp_path: Path, kind: str, spy_unsafe_loads: list[str]
):
    marker = tmp_path / "marker"
    path = hostile_files(tmp_path, marker)[kind]
    with pytest.raises(interp.InterpError) as err:
        load(path)
    message = str(err.value)
    assert str(path) in message and "_files.touch_and_build" in message
    assert "--trust" in message
    assert not marker.exists()
    assert spy_unsafe_loads == []


@pytest.mark.parametrize("kind", HOSTILE_KINDS)
def test_hostile_pickles_load_with_trust(tmp_path: Path, kind: str):
    marker = tmp_path / "marker"
    path = hostile_files(tmp_path, marker)[kind]
    model, info = load(path, trust=True)
    assert marker.exists()  # trusted: its code ran, as documented
    x = torch.randn(2, 1, 16)
    with torch.no_grad():
        assert torch.equal(model(x), tiny()(x))
    assert info.format == "pickle"


@pytest.mark.parametrize(
    ("kind", "words"),
    [("torchscript", "TorchScript archive"), ("export", r"torch\.export program")],
)
def test_code_archives_are_refused_without_trust_and_never_opened(
    tmp_path: Path, kind: str, words: str, spy_unsafe_loads: list[str]
):
    model = tiny()
    raw = torchscript_bytes(model) if kind == "torchscript" else export_bytes(model)
    path = tmp_path / "model.bin"  # no telling extension: sniffed from the bytes
    path.write_bytes(raw)
    with pytest.raises(interp.InterpError, match=words) as err:
        load(path)
    assert "--trust" in str(err.value) and str(path) in str(err.value)
    assert spy_unsafe_loads == []


def test_torchscript_refusal_names_the_code_it_carries(tmp_path: Path):
    (tmp_path / "m.pt").write_bytes(torchscript_bytes(tiny()))
    with pytest.raises(interp.InterpError, match=r"code for .*torch\.nn\.modules\.conv"):
        load(tmp_path / "m.pt")


def test_model_with_a_hook_function_is_refused(tmp_path: Path):
    model = tiny()
    model[0].register_forward_hook(print)  # pickled as builtins.print
    torch.save(model, tmp_path / "hooked.pt")
    with pytest.raises(interp.InterpError, match=r"builtins\.print"):
        load(tmp_path / "hooked.pt")


def test_custom_class_pickle_is_refused_without_trust(tmp_path: Path):
    from _files import Wrapped

    torch.save(Wrapped(), tmp_path / "custom.pt")
    with pytest.raises(interp.InterpError, match=r"_files\.Wrapped"):
        load(tmp_path / "custom.pt")
    model, _ = load(tmp_path / "custom.pt", trust=True)
    assert isinstance(model, Wrapped)


def test_hostile_object_hidden_in_checkpoint_meta_is_refused(tmp_path: Path):
    marker = tmp_path / "marker"
    payload = {"format": "interp.checkpoint/1", "arch": [], "state_dict": {},
               "meta": {"x": Hostile(marker)}}  # fmt: skip
    torch.save(payload, tmp_path / "m.pt")
    with pytest.raises(interp.InterpError, match="touch_and_build"):
        load(tmp_path / "m.pt")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("arch", "words"),
    [
        ([{"type": "system", "args": {"command": "touch x"}}], "unknown type 'system'"),
        ([{"type": "__class__"}], "unknown type '__class__'"),
        ([{"type": "Linear", "args": {"in_features": 10**6, "out_features": 10**6}}],
         r"0\.weight is \(3, 48\), expected \(1000000, 1000000\)"),
        ([{"type": "ReLU", "args": {"inplace": object.__name__, "x": 1}}], "unknown args"),
        ([{"type": "Conv1d", "args": {"in_channels": -1, "out_channels": 1,
                                      "kernel_size": 1}}], "cannot be built"),
        ([[[]]], "not a mapping"),
        ("Sequential", "not a list"),
    ],
)  # fmt: skip
def test_crafted_arch_specs_cannot_reach_other_code_or_memory(tmp_path: Path, arch, words):
    state = {"0.weight": torch.zeros(3, 48), "0.bias": torch.zeros(3)}
    torch.save({"format": "interp.checkpoint/1", "arch": arch, "state_dict": state,
                "meta": {}}, tmp_path / "m.pt")  # fmt: skip
    with pytest.raises(interp.InterpError, match=words):
        load(tmp_path / "m.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_deeply_nested_arch_is_refused_not_recursed(tmp_path: Path):
    arch: list[Any] = [{"type": "ReLU", "args": {}}]
    for _ in range(200):
        arch = [{"type": "Sequential", "children": arch}]
    torch.save({"format": "interp.checkpoint/1", "arch": arch, "state_dict": {}, "meta": {}},
               tmp_path / "m.pt")  # fmt: skip
    with pytest.raises(interp.InterpError, match="nested deeper"):
        load(tmp_path / "m.pt")


def test_hostile_data_files_are_refused_and_nothing_runs(tmp_path: Path):
    marker = tmp_path / "marker"
    (tmp_path / "d.pt").write_bytes(torch_bytes({"x": torch.zeros(2, 1, 16),
                                                 "y": Hostile(marker)}))  # fmt: skip
    obj = np.empty(1, dtype=object)
    obj[0] = Hostile(marker)
    (tmp_path / "d.npz").write_bytes(npz_bytes(x=np.zeros((2, 1, 16)), y=obj))
    for name in ("d.pt", "d.npz"):
        with pytest.raises(interp.InterpError, match="could run code"):
            load_data(tmp_path / name)
    assert not marker.exists()


def test_arch_import_is_the_only_code_interp_runs_for_weights(tmp_path: Path):
    torch.save(tiny().state_dict(), tmp_path / "sd.pt")
    model, _ = load(tmp_path / "sd.pt", arch=make_tiny)
    assert isinstance(model, nn.Sequential)


_CANARY_SCRIPT = textwrap.dedent("""
    import json, sys
    sys.path[:0] = [sys.argv[1], sys.argv[2]]
    import interp
    from pathlib import Path
    results = {}
    for path in sys.argv[4:]:
        try:
            if path.endswith("data.pt"):
                interp.load_data(path)
            else:
                interp.load(path)
            results[path] = "loaded"
        except interp.InterpError as err:
            results[path] = "InterpError: " + str(err)
    results["marker"] = Path(sys.argv[3]).exists()
    print(json.dumps(results))
""")


def test_force_no_weights_only_environment_changes_nothing(tmp_path: Path):
    """torch honours TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD only where weights_only is not passed."""
    marker = tmp_path / "marker"
    files = list(hostile_files(tmp_path, marker).values())
    data = tmp_path / "data.pt"
    data.write_bytes(torch_bytes({"x": torch.zeros(2, 1, 16), "y": Hostile(marker)}))
    (tmp_path / "m.pt2").write_bytes(export_bytes(tiny()))
    files += [data, tmp_path / "m.pt2"]
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", _CANARY_SCRIPT, str(root), str(Path(__file__).parent),
         str(marker), *map(str, files)],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    results = json.loads(out.stdout.strip().splitlines()[-1])
    assert results.pop("marker") is False
    assert all(v.startswith("InterpError") for v in results.values()), results
    assert not marker.exists()


def test_loading_writes_nothing_next_to_the_file(tmp_path: Path):
    save(tiny(), tmp_path / "m.pt")
    torch.save(tiny(), tmp_path / "full.pt")
    before = sorted(p.name for p in tmp_path.iterdir())
    load(tmp_path / "m.pt")
    load(tmp_path / "full.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_loaded_bytes_are_the_hashed_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The file is read once; torch never reopens the path (no swap between hash and load)."""
    save(tiny(), tmp_path / "m.pt")
    real_load = torch.load
    seen: list[Any] = []

    def spy(f: Any, **kwargs: Any) -> Any:
        seen.append(f)
        return real_load(f, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    load(tmp_path / "m.pt")
    assert seen and all(isinstance(f, io.BytesIO) for f in seen)


@pytest.mark.parametrize("hooks", ["_state_dict_pre_hooks", "_state_dict_hooks",
                                   "_forward_hooks", "_load_state_dict_pre_hooks"])  # fmt: skip
def test_safe_pickle_module_hooks_naming_allowlisted_callables_never_run(tmp_path: Path, hooks):
    # bytearray is on torch's weights-only allowlist; state_dict() would call it with
    # (module, prefix, keep_vars) and fail. Rebuilding reads data only, so it never runs.
    from collections import OrderedDict

    model = tiny()
    getattr(model[0], hooks)[0] = bytearray
    if hooks == "_state_dict_pre_hooks":
        model._state_dict_pre_hooks = OrderedDict({0: bytearray})
    path = tmp_path / "hooked.pt"
    torch.save(model, path)
    loaded, info = load(path)
    assert info.format == "pickle" and type(loaded) is nn.Sequential
    names = ("_state_dict_pre_hooks", "_state_dict_hooks", "_forward_hooks",
             "_load_state_dict_pre_hooks")  # fmt: skip
    assert not any(getattr(m, name) for m in loaded.modules() for name in names)
    x = torch.randn(2, 1, 16)
    clean = tiny()
    torch.testing.assert_close(loaded(x), clean(x), rtol=0, atol=0)  # same weights, no hook


def test_safe_pickle_rebuild_calls_no_method_of_the_unpickled_object(tmp_path, monkeypatch):
    # Every nn.Module method a rebuild could be tempted to call records its receiver.
    path = tmp_path / "m.pt"
    torch.save(tiny(), path)
    calls: list[str] = []
    loaded_ids: set[int] = set()
    real_load = torch.load

    def spy_load(*args, **kwargs):
        obj = real_load(*args, **kwargs)
        loaded_ids.update(id(m) for m in obj.__dict__["_modules"].values())
        loaded_ids.add(id(obj))
        return obj

    for method in ("state_dict", "named_modules", "named_parameters", "named_buffers",
                   "extra_repr", "modules", "children", "named_children", "parameters"):
        real = getattr(nn.Module, method)

        def spy(self, *a, _real=real, _name=method, **k):
            if id(self) in loaded_ids:
                calls.append(_name)
            return _real(self, *a, **k)

        monkeypatch.setattr(nn.Module, method, spy)
    monkeypatch.setattr(torch, "load", spy_load)
    model, _ = load(path)
    assert calls == [] and id(model) not in loaded_ids
