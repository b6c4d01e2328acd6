"""The promise "the model is unchanged by inspection", checked on every public analysis.

Each analysis runs on a model prepared the way users hand them over: BatchNorm with
running statistics, Dropout, in-place ReLU, saved in train mode (one layer in eval),
a frozen parameter, existing ``.grad`` (and one frozen parameter holding a ``.grad``),
and user hooks that count calls. A deep snapshot taken before must equal the one taken
after: state dict bit for bit (BN buffers included), parameter and buffer objects and
their version counters, every module attribute (training, inplace...), requires_grad,
the same ``.grad`` objects with the same bits, exactly the user's hooks, the caller's
input tensors (bits, requires_grad, version, .grad), and global state (grad mode, torch,
numpy and Python RNG). Then the same analysis runs again while a user hook raises
``RuntimeError`` halfway through its forwards: the error propagates, the snapshot holds.

CLI commands get the same check from outside: the model and data files keep their
bytes and nothing but the requested output appears anywhere.
"""

from __future__ import annotations

import hashlib
import importlib
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn
from torch.nn.modules import module as _module_globals

import interp
from interp.cli.main import main

INJECTED = "injected failure mid-forward"


def public(name: str) -> Any:
    """The public function ``interp.<name>``, resolved through ``interp._EXPORTS``.

    ``interp.<name>`` itself can be the submodule of the same name once another
    analysis imported it (``interp.footprint``, ``interp.decompose``, ``interp.geometry.core``),
    which is a separate bug; this file is about model state.
    """
    return getattr(importlib.import_module(interp._EXPORTS[name]), name)


# --- models as users hand them over -----------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[], nn.Sequential]
    shape: tuple[int, ...]  # one input, no batch axis
    shifts: list[Any]
    shift: Any  # one shift for explain_shift
    positional: bool


def _pos1d() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(1, 4, 5, padding=2), nn.BatchNorm1d(4), nn.ReLU(inplace=True),
        nn.MaxPool1d(2), nn.Dropout(0.3), nn.Flatten(), nn.Linear(4 * 8, 3),
    )  # fmt: skip


def _pooled1d() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(1, 4, 5, padding=2), nn.BatchNorm1d(4), nn.ReLU(inplace=True),
        nn.AdaptiveMaxPool1d(1), nn.Dropout(0.3), nn.Flatten(), nn.Linear(4, 3),
    )  # fmt: skip


def _pos2d() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(inplace=True),
        nn.MaxPool2d(2), nn.Dropout(0.3), nn.Flatten(), nn.Linear(3 * 4 * 4, 3),
    )  # fmt: skip


CASES = {
    c.name: c
    for c in (
        Case("pos1d", _pos1d, (1, 16), [-3, 0, 2], 3, True),
        Case("pooled1d", _pooled1d, (1, 16), [-3, 0, 2], 3, False),
        Case("pos2d", _pos2d, (1, 8, 8), [(0, 0), (1, -2)], (1, -2), True),
    )
}
BN, POOL = "1", "3"  # layer names in every case model


class UserHooks:
    """Counting user hooks; the BN forward hook raises on call ``fail_at`` when armed."""

    def __init__(self, model: nn.Module) -> None:
        self.calls = {"pre": 0, "bn": 0, "backward": 0}
        self.fail_at: int | None = None
        self.handles = [
            model.register_forward_pre_hook(self._pre),
            model[int(BN)].register_forward_hook(self._bn),
            model[-1].register_full_backward_hook(self._backward),
        ]

    def _pre(self, _m: nn.Module, _inputs: Any) -> None:
        self.calls["pre"] += 1

    def _bn(self, _m: nn.Module, _inputs: Any, _output: Any) -> None:
        self.calls["bn"] += 1
        if self.fail_at is not None and self.calls["bn"] == self.fail_at:
            raise RuntimeError(INJECTED)

    def _backward(self, _m: nn.Module, _gin: Any, _gout: Any) -> None:
        self.calls["backward"] += 1


def prepared(case: Case) -> tuple[nn.Sequential, UserHooks]:
    """The case model after a training step: train mode, BN stats, grads, user hooks."""
    gen = torch.Generator().manual_seed(0)
    model = case.build()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    model.train()
    model[int(POOL)].eval()  # mixed flags: restoring with model.train() would be wrong
    model[0].bias.requires_grad_(False)  # frozen
    x = torch.randn(8, *case.shape, generator=gen)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        nn.functional.cross_entropy(model(x), torch.arange(8) % 3).backward()
    model[0].bias.grad = torch.full_like(model[0].bias, 0.25)  # frozen but holding a grad
    model[-1].bias.grad = None  # trainable without a grad
    return model, UserHooks(model)


def inputs(case: Case) -> dict[str, torch.Tensor]:
    """The caller's tensors: x requires grad (a leaf), labels, one target, one baseline."""
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(6, *case.shape, generator=gen).requires_grad_()
    return {
        "x": x,
        "y": torch.arange(6) % 3,
        "target": torch.tensor([0, 1]),
        "baseline": torch.full((1, *case.shape), 0.1),
    }


# --- the deep snapshot ------------------------------------------------------------------


def _bits(t: torch.Tensor) -> tuple[str, tuple[int, ...], bytes]:
    t = t.detach().cpu()
    return str(t.dtype), tuple(t.shape), t.contiguous().numpy().tobytes()


def _is_hook_dict(key: str, value: Any) -> bool:
    return "hook" in key and isinstance(value, dict)


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return ("tensor", id(value), _bits(value))
    if value is None or isinstance(value, (bool, int, float, str, tuple)):
        return value
    return ("object", type(value).__name__, id(value))


def snapshot(model: nn.Module, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    snap: dict[str, Any] = {}
    for key, value in model.state_dict().items():
        snap[f"state_dict {key}"] = _bits(value)
    for name, p in model.named_parameters():
        grad = None if p.grad is None else (id(p.grad), p.grad._version, _bits(p.grad))
        snap[f"parameter {name}"] = (id(p), p._version, p.requires_grad, grad)
    for name, b in model.named_buffers():
        snap[f"buffer {name}"] = (id(b), b._version)
    for name, m in model.named_modules():
        for key, value in vars(m).items():
            if key in ("_parameters", "_buffers", "_modules"):
                snap[f"module {name!r} {key}"] = {k: id(v) for k, v in value.items()}
            elif _is_hook_dict(key, value):
                snap[f"module {name!r} {key}"] = [(k, id(v)) for k, v in value.items()]
            else:
                snap[f"module {name!r} .{key}"] = _plain(value)
    for key, value in vars(_module_globals).items():
        if key.startswith("_global") and _is_hook_dict(key, value):
            snap[f"torch.nn {key}"] = [(k, id(v)) for k, v in value.items()]
    for name, t in tensors.items():
        grad = None if t.grad is None else _bits(t.grad)
        snap[f"input {name}"] = (_bits(t), t.requires_grad, t._version, t.is_leaf, grad)
    return {**snap, **global_snapshot()}


def global_snapshot() -> dict[str, Any]:
    """Torch's global modes and every global RNG."""
    np_state = np.random.get_state()
    snap: dict[str, Any] = {}
    snap["grad mode"] = torch.is_grad_enabled()
    snap["inference mode"] = torch.is_inference_mode_enabled()
    snap["anomaly mode"] = torch.is_anomaly_enabled()
    snap["default dtype"] = torch.get_default_dtype()
    snap["deterministic"] = torch.are_deterministic_algorithms_enabled()
    snap["threads"] = torch.get_num_threads()
    snap["torch RNG"] = _bits(torch.get_rng_state())
    snap["numpy RNG"] = (np_state[0], np_state[1].tobytes(), *np_state[2:])
    snap["python RNG"] = random.getstate()
    return snap


def assert_same(before: dict[str, Any], after: dict[str, Any], when: str) -> None:
    changed = [k for k in before.keys() | after.keys() if before.get(k) != after.get(k)]
    assert not changed, f"{when}: changed: {', '.join(sorted(changed))}"


@contextmanager
def global_state(grad: bool) -> Iterator[None]:
    """Seeded global RNGs and the caller's grad mode; everything put back for other tests."""
    with torch.random.fork_rng():
        torch.manual_seed(123)
        np_state, py_state = np.random.get_state(), random.getstate()
        np.random.seed(5)
        random.seed(7)
        previous = torch.is_grad_enabled()
        torch.set_grad_enabled(grad)
        try:
            yield
        finally:
            torch.set_grad_enabled(previous)
            np.random.set_state(np_state)
            random.setstate(py_state)


# --- the analyses -----------------------------------------------------------------------

Analysis = Callable[[nn.Module, Case, dict[str, torch.Tensor]], Any]


def _record(model: nn.Module, case: Case, t: dict[str, torch.Tensor]) -> Any:
    # `record` leaves the mode alone, so the caller's own forward runs in eval mode here
    # (a train-mode forward would update BN statistics: the caller's doing, not interp's).
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with public("record")(model, [BN, POOL]) as rec, torch.no_grad():
            model(t["x"])
    finally:
        for m, training in flags:
            m.training = training
    return rec


def _connectivity(model: nn.Module, case: Case, t: dict[str, torch.Tensor]) -> Any:
    if case.positional:
        return public("connectivity")(model)  # infers the input shape
    # A global-pooling head fixes no input length, so it is given (inference never ends).
    geo = public("structure")(model, input_shape=case.shape)
    return public("connectivity")(model, geo)


def _attribute(method: str, *, baseline: bool = False, **options: Any) -> Analysis:
    def run(model: nn.Module, case: Case, t: dict[str, torch.Tensor]) -> Any:
        extra = {"baselines": t["baseline"]} if baseline else {}
        return public("attribute")(model, t["x"][:2], t["target"], method=method, **options,
                                   **extra)  # fmt: skip

    return run


def _small(method: str) -> dict[str, Any]:
    """Few integration steps and samples; the caller's baseline tensor for IG."""
    spec = interp.METHODS[method]
    opts: dict[str, Any] = {"n_steps": 4} if spec.path else {}
    if method == "gradient_shap":
        opts["n_samples"] = 2
    if method == "integrated_gradients":
        opts["baseline"] = True
    return opts


def _report(model: nn.Module, case: Case, t: dict[str, torch.Tensor]) -> Any:
    rep = public("report")(model, None, data=(t["x"], t["y"]), shifts=case.shifts, samples=6)
    return rep.to_dict()


ANALYSES: dict[str, Analysis] = {
    "structure": lambda m, c, t: public("structure")(m, t["x"]),
    "structure_inferred": lambda m, c, t: public("structure")(m),
    "record": _record,
    "shift_sweep_auto": lambda m, c, t: public("shift_sweep")(m, t["x"], t["y"], c.shifts),
    "shift_sweep_brute": lambda m, c, t: public("shift_sweep")(
        m, t["x"], t["y"], c.shifts, engine="brute"
    ),
    "equivariance": lambda m, c, t: public("equivariance")(m, t["x"][:2], c.shifts),
    "connectivity": _connectivity,
    "connectivity_data": lambda m, c, t: public("connectivity")(m, x=t["x"], y=t["y"]),
    "footprint": lambda m, c, t: public("footprint")(m, t["x"], t["y"]),
    "decompose": lambda m, c, t: public("decompose")(m, t["x"]),
    "explain_shift": lambda m, c, t: public("explain_shift")(
        m, t["x"][:1], int(t["y"][0]), c.shift
    ),
    **{f"attribute_{name}": _attribute(name, **_small(name)) for name in interp.METHODS},
    "attribute_noise_tunnel": _attribute("saliency", noise_tunnel="smoothgrad", nt_samples=2),
    "across_shifts_ig": lambda m, c, t: public("attribution_across_shifts")(
        m, t["x"][:2], t["target"], c.shifts, n_steps=4, baselines=t["baseline"]
    ),
    "across_shifts_gradient_shap": lambda m, c, t: public("attribution_across_shifts")(
        m, t["x"][:2], t["target"], c.shifts, method="gradient_shap", n_samples=2
    ),
    "report": _report,
}
# Shape inference reads a failing forward as "this length does not fit" and tries
# another, so there the failure is injected into the last forward, the real one.
FAIL_LAST = {"structure_inferred", "connectivity"}
# Shape inference never ends for a global-pooling head (every length gives the same
# features), so it runs on the positional cases only.
PAIRS = [
    pytest.param(a, c, id=f"{a}-{c}")
    for a in ANALYSES
    for c in CASES
    if not (a == "structure_inferred" and not CASES[c].positional)
]


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


@pytest.mark.filterwarnings("ignore::UserWarning")  # convergence notes on a 4-step path
@pytest.mark.parametrize(("analysis", "case_name"), PAIRS)
def test_analysis_leaves_model_unchanged(analysis: str, case_name: str) -> None:
    case, run = CASES[case_name], ANALYSES[analysis]

    # 1. a normal run, caller in grad mode
    model, hooks = prepared(case)
    tensors = inputs(case)
    with global_state(grad=True):
        before = snapshot(model, tensors)
        run(model, case, tensors)
        assert_same(before, snapshot(model, tensors), "after the analysis")
    forwards = hooks.calls["bn"]
    assert forwards > 0, "the analysis never ran the model"
    # the user's hooks stayed live during the run; structure() also evaluates the traced
    # graph, which calls the submodules (firing their hooks) but not the root module
    assert hooks.calls["pre"] > 0

    # 2. a user hook raises halfway through the forwards, caller under no_grad
    model, hooks = prepared(case)
    tensors = inputs(case)
    hooks.fail_at = forwards if analysis in FAIL_LAST else (forwards + 1) // 2
    with global_state(grad=False):
        before = snapshot(model, tensors)
        with pytest.raises(Exception) as info:  # any type; checked below
            run(model, case, tensors)
        assert_same(before, snapshot(model, tensors), "after the injected failure")
    assert hooks.calls["bn"] == hooks.fail_at, "the injected failure did not fire once"
    assert any(INJECTED in str(e) for e in _chain(info.value)), info.value
    assert isinstance(info.value, (RuntimeError, interp.InterpError)), info.value


def test_save_leaves_model_unchanged_and_load_keeps_flags(tmp_path: Path) -> None:
    model, _hooks = prepared(CASES["pos1d"])
    with global_state(grad=True):
        before = snapshot(model, {})
        interp.save(model, tmp_path / "m.pt", meta={"input_shape": [1, 16]})
        assert_same(before, snapshot(model, {}), "after interp.save")
    loaded, _info = interp.load(tmp_path / "m.pt")
    assert [m.training for m in loaded.modules()] == [m.training for m in model.modules()]
    assert [p.requires_grad for p in loaded.parameters()] == [
        p.requires_grad for p in model.parameters()
    ]


# --- the command line -------------------------------------------------------------------

SHIFTS = "-3,0,2"
TINY_ZOO = dict(
    recipe={"length": 128, "shift_range": 4, "band_half_width": 15.0, "band_edge": 1.0,
            "gaussian_sigma": 4.0, "tone_spacing": 8.0, "tone_sigma": 1.0,
            "triangle_half_width": 15.0},
    epochs=1, n_train=32, n_val=16, batch_size=16,
)  # fmt: skip


def _tiny_zoo_cnn() -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(1, 2, 5), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 124, 4))


# (command line with {model} {pooled} {data} {bad_data} {out}, exit code, outputs in {out})
COMMANDS: dict[str, tuple[str, int, set[str]]] = {
    "inspect": ("inspect {model}", 0, set()),
    "inspect_json_pooled": ("inspect {pooled} --json", 0, set()),
    "sweep": (f"sweep {{model}} --data {{data}} --shifts {SHIFTS} --samples 4", 0, set()),
    "sweep_brute_json": (
        f"sweep {{pooled}} --data {{data}} --shifts {SHIFTS} --engine brute --json", 0, set()
    ),
    "attribute_png": (
        f"attribute {{model}} --data {{data}} --index 1 --shifts {SHIFTS} --steps 4 "
        "--out {out}/a.png", 0, {"a.png"},
    ),
    "attribute_json": (
        f"attribute {{pooled}} --data {{data}} --index 0 --shifts {SHIFTS} --method deeplift "
        "--json", 0, set(),
    ),
    "report": (
        f"report {{model}} --data {{data}} --shifts {SHIFTS} --samples 6 --out {{out}}/rep -q",
        0, {"rep"},
    ),
    "compare": (
        f"compare {{model}} {{pooled}} --data {{data}} --shifts {SHIFTS} --samples 6 "
        "--out {out}/cmp -q", 0, {"cmp"},
    ),
    "train": ("train tiny --out {out}/tiny.pt -q", 0, {"tiny.pt"}),
    "train_list": ("train --list", 0, set()),
    # bad input: exit 2, nothing written
    "sweep_bad_data": ("sweep {model} --data {bad_data} --shifts 0", 2, set()),
    "report_bad_data": ("report {model} --data {bad_data} --samples 6 --out {out}/rep", 2, set()),
    "attribute_bad_index": (
        "attribute {model} --data {data} --index 99 --out {out}/a.png", 2, set()
    ),
    "train_unknown": ("train resnet --out {out}/r.pt", 2, set()),
}  # fmt: skip


def _tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` (hidden ones too) -> sha256 of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def app() -> Any:
    """The `interp` group with every command, `train` included (commands load lazily)."""
    return main


@pytest.fixture
def cli_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Models saved in train mode (one frozen parameter), data, an output dir, a clean cwd."""
    from interp.zoo import ZOO, Recipe, ZooModel

    files = {"in": tmp_path / "in", "out": tmp_path / "out", "cwd": tmp_path / "cwd"}
    for folder in files.values():
        folder.mkdir()
    meta = {"input_shape": [1, 16], "classes": ["a", "b", "c"]}
    for name, case in (("model", CASES["pos1d"]), ("pooled", CASES["pooled1d"])):
        model, _hooks = prepared(case)
        files[name] = files["in"] / f"{name}.pt"
        interp.save(model, files[name], meta=meta)
    rng = np.random.default_rng(0)
    for name, length in (("data", 16), ("bad_data", 20)):
        files[name] = files["in"] / f"{name}.npz"
        x = rng.standard_normal((6, 1, length)).astype(np.float32)
        np.savez(files[name], x=x, y=np.arange(6) % 3)
    recipe = Recipe("spectra", TINY_ZOO["recipe"], seed=3)
    tiny = ZooModel("tiny", "tiny", _tiny_zoo_cnn, recipe,
                    **{k: v for k, v in TINY_ZOO.items() if k != "recipe"})  # fmt: skip
    monkeypatch.setitem(ZOO, "tiny", tiny)
    monkeypatch.chdir(files["cwd"])
    return files


@pytest.mark.filterwarnings("ignore::UserWarning")  # convergence notes on a 4-step path
@pytest.mark.parametrize("command", list(COMMANDS))
def test_cli_leaves_files_unchanged(command: str, app: Any, cli_files: dict[str, Path]) -> None:
    line, code, outputs = COMMANDS[command]
    args = line.format(**{k: str(v) for k, v in cli_files.items()}).split()
    root = cli_files["in"].parent
    before = _tree(root)
    with global_state(grad=True):
        state = global_snapshot()
        result = CliRunner().invoke(app, args, catch_exceptions=False)
        assert_same(state, global_snapshot(), f"after `interp {command}`")
    assert result.exit_code == code, result.output
    if code == 2:
        assert result.output.strip().splitlines()[-1].startswith("Error: "), result.output
    after = _tree(root)
    assert {k: v for k, v in after.items() if k in before} == before  # inputs byte for byte
    new = {Path(k).relative_to("out").parts[0] if k.startswith("out/") else k
           for k in after.keys() - before.keys()}  # fmt: skip
    assert new == outputs, sorted(after.keys() - before.keys())
