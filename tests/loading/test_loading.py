"""Every model format loads and computes what the original model computes."""

from __future__ import annotations

import hashlib
import textwrap
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from _files import LENGTH, export_bytes, make_tiny, tiny, torch_bytes, torchscript_bytes
from safetensors.torch import save_file
from torch import nn

import interp
from interp._version import check_torch
from interp.loading.core import ModelInfo, load, save


def _x(shape: tuple[int, ...] = (3, 1, LENGTH)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(7))


def _same_outputs(a: nn.Module, b: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


def _zoo_of_models() -> list[tuple[nn.Module, tuple[int, ...]]]:
    """Models covering the layer table: (model, input shape with batch)."""
    bn = nn.BatchNorm1d(4)
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    return [
        (tiny(), (3, 1, LENGTH)),
        (nn.Sequential(
            nn.Conv1d(2, 4, 3, padding="same", padding_mode="circular", bias=False), bn,
            nn.LeakyReLU(0.2), nn.MaxPool1d(3, 2, padding=1, ceil_mode=True),
            nn.Sequential(nn.Conv1d(4, 4, 3, dilation=2, groups=2), nn.GELU("tanh")),
            nn.AvgPool1d(2), nn.Dropout(0.3), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
            nn.Linear(4, 5, bias=False), nn.LogSoftmax(dim=1),
        ), (2, 2, 32)),
        (nn.Sequential(OrderedDict(
            conv=nn.Conv2d(1, 3, (3, 2), stride=(1, 2), padding=(1, 0)),
            norm=nn.BatchNorm2d(3, momentum=None, affine=False),
            act=nn.ELU(0.5), pool=nn.MaxPool2d(2), pad=nn.ZeroPad2d((1, 0, 1, 0)),
            gap=nn.AdaptiveMaxPool2d((2, 1)), flat=nn.Flatten(), head=nn.Linear(6, 4),
            soft=nn.Softmax(dim=-1),
        )), (2, 1, 12, 12)),
    ]  # fmt: skip


# ---------------------------------------------------------------- interp checkpoint


@pytest.mark.parametrize("case", range(3))
def test_checkpoint_round_trip_gives_identical_weights_and_outputs(tmp_path: Path, case: int):
    model, shape = _zoo_of_models()[case]
    model.eval()
    path = tmp_path / "m.pt"
    save(model, path, meta={"classes": ["a", "b"], "input_shape": list(shape[1:])})
    loaded, info = load(path)
    assert type(loaded) is nn.Sequential
    assert [n for n, _ in loaded.named_modules()] == [n for n, _ in model.named_modules()]
    before, after = model.state_dict(), loaded.state_dict()
    assert list(before) == list(after)
    for key in before:
        assert torch.equal(before[key], after[key]) and before[key].dtype == after[key].dtype
    _same_outputs(model, loaded, _x(shape))
    assert info.format == "interp-checkpoint"
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info.parameters == sum(p.numel() for p in model.parameters())
    assert info.classes == ("a", "b")
    assert info.input_shape == shape[1:]
    assert info.to_dict() == {
        "path": str(path), "format": "interp-checkpoint", "sha256": info.sha256,
        "parameters": info.parameters,
    }  # fmt: skip


def test_checkpoint_is_plain_data_that_torch_reads_with_no_allowlist(tmp_path: Path):
    path = tmp_path / "m.pt"
    save(tiny(), path, meta={"name": "tiny"})
    raw = torch.load(path, weights_only=True, map_location="cpu")  # the format's promise
    assert raw["format"] == "interp.checkpoint/1"
    assert raw["arch"][0] == {
        "type": "Conv1d", "name": "0",
        "args": {"in_channels": 1, "out_channels": 4, "kernel_size": [5], "stride": [1],
                 "padding": [0], "dilation": [1], "groups": 1, "bias": True,
                 "padding_mode": "zeros"},
    }  # fmt: skip
    assert raw["meta"] == {"name": "tiny"}


def test_training_flags_and_frozen_parameters_survive(tmp_path: Path):
    model = tiny().train()
    model[0].eval()
    model[3].weight.requires_grad_(False)
    save(model, tmp_path / "m.pt")
    loaded, _ = load(tmp_path / "m.pt")
    assert [m.training for m in loaded.modules()] == [m.training for m in model.modules()]
    assert [p.requires_grad for p in loaded.parameters()] == [
        p.requires_grad for p in model.parameters()
    ]


def test_save_leaves_the_model_unchanged(tmp_path: Path):
    model = tiny().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    save(model, tmp_path / "m.pt")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(m.training for m in model.modules())


def test_save_meta_tuples_become_lists_and_bad_meta_is_refused(tmp_path: Path):
    save(tiny(), tmp_path / "m.pt", meta={"input_shape": (1, LENGTH), "axis": [{"unit": "nm"}]})
    _, info = load(tmp_path / "m.pt")
    assert info.meta["input_shape"] == [1, LENGTH] and info.input_shape == (1, LENGTH)
    for bad, words in [
        ({"w": torch.ones(2)}, "Tensor"),
        ({"acc": float("nan")}, "finite"),
        ({1: "a"}, "non-string key"),
        ({"classes": "abc"}, "list of class names"),
        ({"input_shape": [0, 4]}, "ints in 1[.][.]"),
    ]:
        with pytest.raises(interp.InterpError, match=words):
            save(tiny(), tmp_path / "bad.pt", meta=bad)
    assert not (tmp_path / "bad.pt").exists()


class _MyConv(nn.Conv1d):
    pass


class _Custom(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_save_stores_importable_custom_modules_that_load_only_with_trust(tmp_path: Path):
    from _files import Wrapped

    x = torch.randn(2, 1, LENGTH)
    for model, name in [(Wrapped().eval(), "_files.Wrapped"),
                        (nn.Sequential(nn.TransformerEncoderLayer(LENGTH, 1)).eval(),
                         "TransformerEncoderLayer")]:  # fmt: skip
        path = tmp_path / "m.pt"
        save(model, path, meta={"classes": ["a", "b"]})
        with pytest.raises(interp.InterpError, match=rf"can run code.*{name}.*--trust") as err:
            load(path)
        # re-saving with interp.save would write the same file: the way out is a state dict
        assert "re-save it with interp.save" not in str(err.value)
        assert "state_dict()" in str(err.value) and "--arch" in str(err.value)
        loaded, info = load(path, trust=True)
        assert type(loaded) is type(model) and info.format == "interp-checkpoint"
        assert info.classes == ("a", "b")
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_save_refuses_classes_that_cannot_be_imported_by_path(tmp_path: Path):
    class Local(nn.Module):  # defined in a function: no import path
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    for model in (Local(), nn.Sequential(nn.Conv1d(1, 2, 3), Local())):
        with pytest.raises(interp.InterpError, match=r"Local.*cannot be imported by path"):
            save(model, tmp_path / "m.pt")
    assert list(tmp_path.iterdir()) == []


def test_save_is_atomic_when_writing_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "m.pt"
    save(tiny(0), path)
    old = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        save(tiny(1), path)
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_recipe_in_meta_becomes_info_recipe(tmp_path: Path):
    zoo = pytest.importorskip("interp.zoo")
    recipe = {"generator": "shapes", "params": {}, "seed": 3}
    save(tiny(), tmp_path / "m.pt", meta={"recipe": recipe})
    _, info = load(tmp_path / "m.pt")
    assert info.recipe == zoo.recipe_from_meta({"recipe": recipe})
    save(tiny(), tmp_path / "n.pt")
    assert load(tmp_path / "n.pt")[1].recipe is None


def test_input_shape_argument_overrides_and_is_checked(tmp_path: Path):
    save(tiny(), tmp_path / "m.pt", meta={"input_shape": [1, LENGTH]})
    assert load(tmp_path / "m.pt", input_shape=(1, 99))[1].input_shape == (1, 99)
    with pytest.raises(ValueError, match="input_shape"):
        load(tmp_path / "m.pt", input_shape=(1, -3))


# ---------------------------------------------------------------- other formats


def test_full_pickle_of_torch_nn_model_loads_safely(tmp_path: Path):
    model = tiny()
    model[0].train()
    torch.save(model, tmp_path / "full.pt")
    loaded, info = load(tmp_path / "full.pt")
    assert info.format == "pickle"
    _same_outputs(model, loaded, _x())
    assert [m.training for m in loaded.modules()] == [m.training for m in model.modules()]
    # the allowlist was scoped to the load, never added process-wide
    assert not set(torch.serialization.get_safe_globals()) & {nn.Conv1d, nn.Sequential}


@pytest.mark.parametrize("arch", ["_files:make_tiny", make_tiny])
def test_state_dict_loads_into_arch(tmp_path: Path, arch):
    model = tiny(3)
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    loaded, info = load(tmp_path / "sd.pt", arch=arch)
    assert info.format == "state-dict"
    _same_outputs(model, loaded, _x())


def test_arch_from_a_python_file(tmp_path: Path):
    (tmp_path / "netdef.py").write_text(textwrap.dedent(f"""
        from torch import nn
        def build():
            return nn.Sequential(nn.Conv1d(1, 4, 5), nn.ReLU(), nn.Flatten(),
                                 nn.Linear(4 * {LENGTH - 4}, 3))
    """))
    model = tiny(4)
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    loaded, _ = load(tmp_path / "sd.pt", arch=f"{tmp_path / 'netdef.py'}:build")
    _same_outputs(model, loaded, _x())


def test_safetensors_loads_into_arch(tmp_path: Path):
    model = tiny(5)
    save_file(model.state_dict(), tmp_path / "w.safetensors")
    (tmp_path / "w.bin").write_bytes((tmp_path / "w.safetensors").read_bytes())
    for name in ("w.safetensors", "w.bin"):  # sniffed from bytes, not the extension
        loaded, info = load(tmp_path / name, arch=make_tiny)
        assert info.format == "safetensors"
        _same_outputs(model, loaded, _x())


def test_weights_without_arch_ask_for_it(tmp_path: Path):
    torch.save(tiny().state_dict(), tmp_path / "sd.pt")
    save_file(tiny().state_dict(), tmp_path / "w.safetensors")
    for name in ("sd.pt", "w.safetensors"):
        with pytest.raises(interp.InterpError, match=r"needs its architecture: pass --arch"):
            load(tmp_path / name)


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod."])
def test_wrapper_prefix_is_stripped_when_that_is_exactly_the_fix(tmp_path: Path, prefix):
    model = tiny(6)
    torch.save({prefix + k: v for k, v in model.state_dict().items()}, tmp_path / "sd.pt")
    loaded, info = load(tmp_path / "sd.pt", arch=make_tiny)
    _same_outputs(model, loaded, _x())
    assert any(prefix in note for note in info.notes)


def test_missing_and_unexpected_keys_are_listed(tmp_path: Path):
    state = tiny().state_dict()
    state["extra.weight"] = state.pop("3.weight")
    torch.save(state, tmp_path / "sd.pt")
    with pytest.raises(
        interp.InterpError, match=r"missing keys: 3\.weight; unexpected keys: extra\.weight"
    ):
        load(tmp_path / "sd.pt", arch=make_tiny)
    state = {"module." + k: v for k, v in tiny().state_dict().items()}
    state["module.3.bias"] = torch.zeros(7)
    torch.save(state, tmp_path / "sd2.pt")
    with pytest.raises(interp.InterpError, match=r"'module\.'; strip it"):
        load(tmp_path / "sd2.pt", arch=make_tiny)


def test_wrong_shapes_are_named(tmp_path: Path):
    state = tiny().state_dict()
    state["3.bias"] = torch.zeros(7)
    torch.save(state, tmp_path / "sd.pt")
    with pytest.raises(interp.InterpError, match=r"3\.bias is \(7,\), expected \(3,\)"):
        load(tmp_path / "sd.pt", arch=make_tiny)


@pytest.mark.parametrize("key", ["state_dict", "model_state_dict", "model"])
def test_training_checkpoint_wrappers_are_unwrapped(tmp_path: Path, key):
    model = tiny(8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(_x()).sum().backward()
    opt.step()
    torch.save({key: model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3},
               tmp_path / "ckpt.pt")  # fmt: skip
    loaded, info = load(tmp_path / "ckpt.pt", arch=make_tiny)
    _same_outputs(model, loaded, _x())
    assert any(repr(key) in note for note in info.notes)


def test_full_model_inside_a_wrapper_dict(tmp_path: Path):
    model = tiny(9)
    torch.save({"model": model, "epoch": 1}, tmp_path / "ckpt.pt")
    loaded, _ = load(tmp_path / "ckpt.pt")
    _same_outputs(model, loaded, _x())


def test_ambiguous_wrapper_is_refused(tmp_path: Path):
    torch.save({"a": tiny(1).state_dict(), "b": tiny(2).state_dict()}, tmp_path / "two.pt")
    with pytest.raises(interp.InterpError, match=r"several models or state dicts \(a, b\)"):
        load(tmp_path / "two.pt", arch=make_tiny)


def test_arch_applies_to_a_checkpoint_too(tmp_path: Path):
    model = tiny(10)
    save(model, tmp_path / "m.pt")
    loaded, info = load(tmp_path / "m.pt", arch=make_tiny)
    assert info.format == "interp-checkpoint"
    _same_outputs(model, loaded, _x())


@pytest.mark.parametrize(
    ("arch", "words"),
    [
        ("no_colon", "must look like"),
        ("surely_not_a_module_xyz:build", "not found"),
        ("_files:nothing_here", "has no attribute"),
        ("_files:touch_and_build", r"needs arguments \(marker\)"),
        ("_files:LENGTH", "not callable"),
        ("_files:data_arrays", "returned a tuple"),
    ],
)
def test_bad_arch_is_explained(tmp_path: Path, arch, words):
    torch.save(tiny().state_dict(), tmp_path / "sd.pt")
    with pytest.raises(interp.InterpError, match=words):
        load(tmp_path / "sd.pt", arch=arch)


def test_trusted_torchscript_sequential_becomes_eager_layers_with_hooks(tmp_path: Path):
    model = nn.Sequential(nn.Conv1d(1, 4, 5), nn.Sequential(nn.ReLU()), nn.Flatten(),
                          nn.Linear(48, 3)).eval()  # fmt: skip
    (tmp_path / "m.ts").write_bytes(torchscript_bytes(model))
    loaded, info = load(tmp_path / "m.ts", trust=True)
    assert info.format == "torchscript"
    assert [type(m) for m in loaded.modules()] == [type(m) for m in model.modules()]
    seen = []
    handle = loaded[0].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    try:
        _same_outputs(model, loaded, _x())
    finally:
        handle.remove()
    assert seen == [torch.Size([3, 4, LENGTH - 4])]


def test_trusted_torchscript_of_a_custom_module_stays_scripted(tmp_path: Path):
    from _files import Wrapped

    model = Wrapped().eval()
    (tmp_path / "m.ts").write_bytes(torchscript_bytes(model))
    loaded, info = load(tmp_path / "m.ts", trust=True)
    assert isinstance(loaded, torch.jit.ScriptModule)
    assert any("hooks are unavailable" in n for n in info.notes)
    _same_outputs(model, loaded, _x())


def test_trusted_export_program_is_unflattened_so_hooks_fire(tmp_path: Path):
    model = tiny(11)
    (tmp_path / "m.pt2").write_bytes(export_bytes(model, batch=3))
    loaded, info = load(tmp_path / "m.pt2", trust=True)
    assert info.format == "export"
    seen = []
    handle = dict(loaded.named_modules())["0"].register_forward_hook(
        lambda m, i, o: seen.append(o.shape)
    )
    try:
        with torch.no_grad():
            torch.testing.assert_close(loaded(_x()), model(_x()))
    finally:
        handle.remove()
    assert seen == [torch.Size([3, 4, LENGTH - 4])]


def test_format_is_sniffed_not_taken_from_the_extension(tmp_path: Path):
    model = tiny(12)
    save(model, tmp_path / "m.safetensors")  # a checkpoint with a misleading name
    loaded, info = load(tmp_path / "m.safetensors")
    assert info.format == "interp-checkpoint"
    _same_outputs(model, loaded, _x())
    (tmp_path / "sd.npz").write_bytes(torch_bytes(model.state_dict()))
    assert load(tmp_path / "sd.npz", arch=make_tiny)[1].format == "state-dict"


def test_check_torch_refuses_old_releases():
    check_torch("2.6.0")
    check_torch("2.13.0+cpu")
    check_torch("3.0.0")
    with pytest.raises(ImportError, match=r"torch >= 2.6 \(found 2.5.1\)"):
        check_torch("2.5.1")
    with pytest.raises(ImportError, match=r"torch >= 2\.6"):
        check_torch("1.13.1")


def test_public_api_exports_loading():
    assert interp.load is load and interp.save is save and interp.ModelInfo is ModelInfo
    assert interp.load_data is not None and interp.Dataset is not None


# ---------------------------------------------------------------- bad model files


def _checkpoint_bytes(tmp_path: Path) -> bytes:
    save(tiny(), tmp_path / "good.pt")
    return (tmp_path / "good.pt").read_bytes()


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda d: b"", r"is empty \(0 bytes\)"),
        (lambda d: _checkpoint_bytes(d)[:-100], "truncated or corrupt"),
        (lambda d: _checkpoint_bytes(d)[:200], "truncated or corrupt"),
        (lambda d: torch_bytes(tiny().state_dict(), legacy=True)[:-50], "truncated or corrupt"),
        (lambda d: b"\x89PNG\r\n\x1a\n" + bytes(64), r"not a model file \(a PNG image\)"),
        (lambda d: b"conv1.weight,0.1\n", r"not a model file \(text\)"),
        (lambda d: torch_bytes(torch.zeros(3, 4)), r"a single tensor of shape \(3, 4\)"),
        (lambda d: torch_bytes({"lr": 0.1, "n": 3}), r"non-tensor values \(keys: lr, n\)"),
        (lambda d: torch_bytes({}), "an empty dict"),
        (lambda d: torch_bytes([1, 2]), "holds a list"),
        (lambda d: _npz_bytes(), r"NumPy \.npz archive \(data, not a model\)"),
        (lambda d: b"\x80\x04K\x01.", "plain Python pickle"),
    ],
)  # fmt: skip
def test_bad_model_files_get_one_clear_sentence(tmp_path: Path, make, words):
    path = tmp_path / "model.pt"
    path.write_bytes(make(tmp_path))
    with pytest.raises(interp.InterpError, match=words) as err:
        load(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def _npz_bytes() -> bytes:
    from _files import data_arrays, npz_bytes

    x, y = data_arrays()
    return npz_bytes(x=x, y=y)


def test_truncated_safetensors_is_refused(tmp_path: Path):
    save_file(tiny().state_dict(), tmp_path / "w.safetensors")
    raw = (tmp_path / "w.safetensors").read_bytes()
    (tmp_path / "w.safetensors").write_bytes(raw[:-10])
    with pytest.raises(interp.InterpError, match="truncated or corrupt safetensors"):
        load(tmp_path / "w.safetensors", arch=make_tiny)


def test_missing_path_and_directory(tmp_path: Path):
    with pytest.raises(interp.InterpError, match="does not exist; check the path"):
        load(tmp_path / "nope.pt")
    with pytest.raises(interp.InterpError, match="is a directory"):
        load(tmp_path)


def test_meta_with_str_subclass_round_trips(tmp_path):
    """torch.__version__ is a TorchVersion: saved as a plain str, it loads without trust."""
    path = tmp_path / "m.pt"
    interp.save(tiny(), path, meta={"torch": torch.__version__})
    _, info = interp.load(path)
    assert info.meta["torch"] == str(torch.__version__)
    assert type(info.meta["torch"]) is str
