"""interp.geometry.graph: call sites, the three trace methods, running, and geometry.

Receptive fields and strides are checked against a brute-force oracle: on a float64 copy of
the model with its nonlinearities replaced by the identity (max pools by average pools), the
input positions with a nonzero gradient for one interior output position.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import parametrize

from interp.errors import InterpError
from interp.geometry.graph import Graph, collapse, first_break, geometry, trace


def _seeded(model: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return model.eval()


# --- small models ---------------------------------------------------------------


class BasicBlock(nn.Module):
    """torchvision-style: one ``self.relu`` called twice; optional strided 1x1 downsample."""

    def __init__(self, cin: int = 3, cout: int = 4, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class BlurPool(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        filt = torch.tensor([1.0, 2.0, 1.0])
        filt = (filt[:, None] * filt[None, :]) / 16
        self.register_buffer("filt", filt[None, None].repeat(channels, 1, 1, 1))
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self.pad(x), self.filt, stride=2, groups=self.channels)


class MaxNorm(nn.Module):
    """A max-norm weight constraint (braindecode's Conv2dWithConstraint, as a parametrization)."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        norms = w.flatten(1).norm(dim=1).clamp(min=1.0)  # (C_out,)
        return w / norms.view(-1, *([1] * (w.dim() - 1)))


class Ensure4d(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        while len(x.shape) < 4:
            x = x.unsqueeze(-1)
        return x


class Permute(nn.Module):
    def __init__(self, *dims: int) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(*self.dims)


def eeg_net(electrodes: int = 6) -> nn.Sequential:
    """ShallowFBCSP-like: (N, E, T) -> (N, E, T, 1) -> (N, 1, T, E); temporal then spatial conv."""
    model = nn.Sequential(
        Ensure4d(), Permute(0, 3, 2, 1),
        nn.Conv2d(1, 4, (5, 1)), nn.Conv2d(4, 4, (1, electrodes), bias=False),
        nn.BatchNorm2d(4), nn.ELU(), nn.AvgPool2d((7, 1), stride=(3, 1)),
        nn.Conv2d(4, 4, (3, 1), dilation=(2, 1)), nn.Flatten(), nn.Linear(4 * 26, 3),
    )  # fmt: skip
    return _seeded(model, 5)


class ShapeBranch(nn.Module):
    """fx cannot trace ``len(x.shape)``; torch.export can."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, (5, 1))
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(x.shape) == 3:
            x = x.unsqueeze(-1)
        return self.fc(torch.flatten(self.pool(self.relu(self.conv(x))), 1))


class NumpyInside(nn.Module):
    """Neither fx (data-dependent branch) nor torch.export (numpy) can trace this."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(2, 3, 5)
        self.act = nn.ReLU()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.conv(x))
        if y.sum() > 0:
            y = y * 2
        y = torch.from_numpy(np.tanh(y.detach().cpu().numpy()))
        return self.fc(y.mean(-1))


class ReadsPosition(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(2, 3, 5, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)[:, :, 100]  # (N, 3)


class SqueezeExcite(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(2, 4, 3, padding=1)
        self.gate = nn.Linear(4, 4)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)  # (N, 4, L)
        g = torch.sigmoid(self.gate(y.mean(-1))).unsqueeze(-1)  # (N, 4, 1)
        return self.fc((y * g).amax(-1))


# --- helpers --------------------------------------------------------------------


def linearized(model: nn.Module) -> nn.Module:
    """float64 copy, nonlinearities -> Identity, max pools -> average pools of the same window."""
    model = copy.deepcopy(model).double().eval()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, (nn.ReLU, nn.ELU, nn.Sigmoid, nn.Tanh)):
                setattr(parent, name, nn.Identity())
            elif isinstance(child, nn.MaxPool1d):
                setattr(parent, name, nn.AvgPool1d(child.kernel_size, child.stride, child.padding))
    return model


def support(graph: Graph, x: torch.Tensor, name: str, axis: int, u: int) -> set[int]:
    """Input positions (1D input, last axis) with a nonzero gradient for position ``u`` of
    node ``name``'s output along tensor axis ``axis`` (negative), sample 0."""
    x = x.clone().requires_grad_(True)
    _, caps = graph.run(x, capture=(name,), grad=True, detach=False)
    caps[name].select(axis, u)[0].sum().backward()
    assert x.grad is not None
    g = x.grad[0].abs().reshape(-1, x.shape[-1]).sum(0)  # (L,)
    return {int(i) for i in torch.nonzero(g).flatten()}


def expected_window(rf: int, stride: int, offset: int, u: int) -> set[int]:
    start = u * stride - offset
    return set(range(start, start + rf))


def check_oracle(model: nn.Module, x: torch.Tensor, names: list[str]) -> None:
    """geometry() of ``names`` matches the gradient support at an interior position."""
    lin = linearized(model)
    x64 = x.double()
    graph = trace(lin, x64)
    geo = geometry(graph)
    length = x.shape[-1]
    for name in names:
        g = geo[name]
        axis = g.axes[0]
        assert axis is not None, name
        rf, stride, offset = g.receptive_field[0], g.stride[0], g.offset[0]
        assert rf is not None and stride is not None and offset is not None
        n = graph.node(name).output_shape
        assert n is not None
        positions = n[axis]
        # an output position whose window lies inside the input: no clipping at the borders
        inner = [u for u in range(positions) if u * stride - offset >= 0]
        inner = [u for u in inner if u * stride - offset + rf <= length]
        assert inner, (name, rf, stride, offset)
        u = inner[len(inner) // 2]
        got = support(graph, x64, name, axis, u)
        window = expected_window(rf, stride, offset, u)
        # the span is exact; dilation may leave holes inside it
        assert got <= window and min(got) == min(window) and max(got) == max(window), (name, g)


def snapshot(model: nn.Module) -> dict:
    hooks = {}
    for mname, m in model.named_modules():
        for attr in (
            "_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
            "_forward_hooks_with_kwargs", "_state_dict_hooks", "_load_state_dict_pre_hooks",
        ):  # fmt: skip
            hooks[(mname, attr)] = dict(getattr(m, attr))
    return {
        "state": {k: (v.dtype, v.detach().clone()) for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "hooks": hooks,
        "rng": torch.get_rng_state(),
    }


def same_snapshot(a: dict, b: dict) -> bool:
    if a["state"].keys() != b["state"].keys():
        return False
    for k in a["state"]:
        (da, va), (db, vb) = a["state"][k], b["state"][k]
        if da != db or not torch.equal(va, vb):
            return False
    grads_equal = all(
        (ga is None and gb is None) or (ga is not None and gb is not None and torch.equal(ga, gb))
        for ga, gb in zip(a["grads"], b["grads"], strict=True)
    )
    return (
        a["training"] == b["training"]
        and a["requires_grad"] == b["requires_grad"]
        and grads_equal
        and a["hooks"] == b["hooks"]
        and torch.equal(a["rng"], b["rng"])
    )


# --- call sites -------------------------------------------------------------------


@pytest.mark.parametrize("method", ["fx", "export", "hooks"])
def test_reused_relu_is_two_call_sites(method: str) -> None:
    model = _seeded(BasicBlock(4, 4))
    x = torch.randn(2, 4, 8, 8)
    graph = trace(model, x, methods=(method,))
    assert graph.method == method
    names = graph.names
    assert "relu" in names and "relu#2" in names
    assert graph.node("relu#2").module == "relu"
    out, caps = graph.run(x, capture=("relu", "relu#2"))
    with torch.no_grad():  # oracle: the forward by hand
        first = model.relu(model.bn1(model.conv1(x)))
        second = model.relu(model.bn2(model.conv2(first)) + x)
    assert torch.equal(caps["relu"], first)
    assert torch.equal(caps["relu#2"], second)
    assert torch.equal(out, second)
    if method != "hooks":  # the functional add is a node reading both branches
        assert graph.node("add").kind == "add"
        assert set(graph.node("add").inputs) == {"bn2", "input"}
        assert graph.node("relu#2").inputs == ("add",)


def test_strided_downsample_gives_stride_2_at_the_add() -> None:
    model = _seeded(BasicBlock(3, 4, stride=2))
    x = torch.randn(1, 3, 16, 16)
    graph = trace(model, x)
    assert graph.method == "fx"
    add = graph.node("add")
    assert set(add.inputs) == {"bn2", "downsample.1"}
    assert graph.node("downsample.0").inputs == ("input",)  # a branch of the input, not a chain
    geo = geometry(graph)
    assert geo["add"].stride == (2, 2)  # not 4: the branch runs beside conv1 -> conv2
    # main path: conv3x3/s2/p1 then conv3x3/p1 -> rf 7, offset 3; branch: rf 1, offset 0
    assert geo["add"].receptive_field == (7, 7)
    assert geo["add"].offset == (3, 3)
    assert geo["add"].equivariant is True
    assert geo["downsample.0"].stride == (2, 2) and geo["downsample.0"].receptive_field == (1, 1)


def test_blurpool_is_pad_plus_functional_conv_with_stride_2() -> None:
    model = _seeded(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), BlurPool(4)))
    x = torch.randn(1, 1, 12, 12)
    graph = trace(model, x)
    pad, conv = graph.node("2.pad"), graph.node("conv2d")
    assert (pad.kind, pad.params["before"], pad.params["after"], pad.params["mode"]) == (
        "pad", (1, 1), (1, 1), "reflect",
    )  # fmt: skip
    assert conv.op == "function" and conv.kind == "conv" and conv.module == "2"
    assert conv.inputs == ("2.pad",)
    assert conv.params["stride"] == (2, 2) and conv.params["kernel"] == (3, 3)
    assert conv.params["groups"] == 4
    geo = geometry(graph)
    assert geo["conv2d"].stride == (2, 2)
    # conv rf 3, offset 1; reflection pad +1 offset; blur k3 s2 -> rf 5, offset 2
    assert geo["conv2d"].receptive_field == (5, 5) and geo["conv2d"].offset == (2, 2)
    assert torch.equal(graph.run(x)[0], model(x))


@pytest.mark.parametrize("method", ["fx", "export"])
def test_parametrized_conv_is_one_conv_node(method: str) -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, (5, 1)), nn.ELU(), nn.Conv2d(4, 2, (1, 3)))
    parametrize.register_parametrization(model[0], "weight", MaxNorm())
    model = _seeded(model)
    x = torch.randn(2, 1, 20, 3)
    graph = trace(model, x, methods=(method,))
    assert graph.method == method
    module_nodes = [n for n in graph.nodes if n.op == "module"]
    assert [n.name for n in module_nodes] == ["0", "1", "2"]
    assert all(
        "parametriz" not in n.name and "parametriz" not in str(n.module) for n in graph.nodes
    )
    conv = graph.node("0")
    assert (conv.kind, conv.target, conv.params["kernel"]) == ("conv", "Conv2d", (5, 1))
    assert conv.params["parametrized"] == ["weight"]
    if method == "fx":  # weight computations are not call sites of the data
        assert graph.names == ("input", "0", "1", "2", "output")
    assert torch.equal(graph.run(x)[0], model(x))


def test_len_of_shape_falls_back_to_export_with_module_paths() -> None:
    model = _seeded(ShapeBranch())
    x = torch.randn(2, 2, 30)
    graph = trace(model, x)
    assert graph.method == "export"
    assert graph.fallback_reason is not None and graph.fallback_reason.startswith("fx:")
    assert "len" in graph.fallback_reason
    assert [n.name for n in graph.nodes if n.op == "module"] == ["conv", "relu", "pool", "fc"]
    assert {n.module for n in graph.nodes if n.op == "module"} == {"conv", "relu", "pool", "fc"}
    assert graph.node("conv").target == "Conv2d" and graph.node("conv").kind == "conv"
    unsqueeze = graph.node("unsqueeze")
    assert unsqueeze.target.startswith("aten.unsqueeze") and unsqueeze.kind == "reshape"
    assert graph.node("conv").inputs == ("unsqueeze",)
    assert graph.node("pool").kind == "global_pool"
    out, caps = graph.run(x, capture=("relu",))
    assert torch.equal(out, model(x))
    assert caps["relu"].shape == (2, 3, 26, 1)
    # a dynamic batch: the exported graph runs on another batch size
    x5 = torch.randn(5, 2, 30)
    assert torch.equal(graph.run(x5)[0], model(x5))
    json.dumps(graph.to_dict())


def test_eeg_time_axis_is_tracked_through_unsqueeze_and_permute() -> None:
    model = eeg_net(electrodes=6)
    x = torch.randn(2, 6, 100)  # (N, electrodes, time): time is spatial axis 0
    graph = trace(model, x)
    assert graph.method == "export"
    geo = geometry(graph)
    assert geo["input"].axes == {0: -1}
    assert geo["unsqueeze"].axes == {0: -2}  # (N, 6, 100, 1)
    assert geo["permute"].axes == {0: -2}  # (N, 1, 100, 6)
    assert graph.node("permute").params["perm"] == (0, 3, 2, 1)
    assert graph.node("2").output_shape == (4, 96, 6)
    # the spatial conv covers all electrodes: pointwise along time, still equivariant
    assert (geo["3"].axes, geo["3"].receptive_field, geo["3"].stride) == ({0: -2}, (5,), (1,))
    assert geo["3"].equivariant is True
    assert geo["6"].stride == (3,) and geo["6"].receptive_field == (11,)
    assert geo["7"].receptive_field == (11 + 2 * 2 * 3,) and geo["7"].stride == (3,)
    assert geo["8"].role == "flatten" and geo["8"].axes == {0: None}
    assert collapse(graph) == "8" and first_break(graph) == "9"
    assert geo["9"].role == "mixes positions" and geo["9"].equivariant is False
    check_oracle(model, x, ["2", "3", "6", "7"])
    assert torch.equal(graph.run(x)[0], model(x))


def test_constant_pad_shifts_the_offset() -> None:
    model = _seeded(nn.Sequential(nn.ConstantPad1d((3, 1), 0.0), nn.Conv1d(1, 2, 3), nn.ReLU()))
    x = torch.randn(1, 1, 40)
    graph = trace(model, x)
    pad = graph.node("0")
    assert (pad.kind, pad.params["before"], pad.params["after"]) == ("pad", (3,), (1,))
    geo = geometry(graph)
    assert geo["0"].offset == (3,) and geo["0"].receptive_field == (1,)
    assert geo["1"].offset == (3,) and geo["1"].receptive_field == (3,)
    check_oracle(model, x, ["1", "2"])


def test_adaptive_pool_that_divides_is_a_window() -> None:
    model = _seeded(nn.Sequential(nn.Conv1d(1, 2, 5, padding=2), nn.AdaptiveAvgPool1d(8)))
    x = torch.randn(1, 1, 256)
    graph = trace(model, x)
    geo = geometry(graph)
    # k = s = 256 / 8 = 32 on a conv with rf 5, offset 2: rf = 5 + 31 * 1
    assert geo["1"].stride == (32,)
    assert geo["1"].receptive_field == (5 + 31,)
    assert geo["1"].offset == (2,)
    assert geo["1"].equivariant is True
    check_oracle(model, x, ["1"])


def test_adaptive_pool_that_does_not_divide_is_non_uniform() -> None:
    model = _seeded(
        nn.Sequential(
            nn.Conv1d(1, 2, 5, padding=2), nn.AdaptiveAvgPool1d(7), nn.Flatten(), nn.Linear(14, 2)
        )
    )
    graph = trace(model, torch.randn(1, 1, 256))
    geo = geometry(graph)
    assert graph.node("0").output_shape == (2, 256)  # 7 does not divide 256
    assert graph.node("1").kind == "adaptive_pool"
    assert geo["1"].role == "non-uniform adaptive pool" and geo["1"].equivariant is False
    assert first_break(graph) == "1"


def test_indexing_a_fixed_position_collapses_and_breaks() -> None:
    model = _seeded(ReadsPosition())
    x = torch.randn(2, 2, 256)
    graph = trace(model, x)
    node = graph.node("getitem")
    assert node.kind == "index" and node.params["axis"] == -1
    assert node.params["indices"] == ("int", 100)
    assert node.output_shape == (3,)
    geo = geometry(graph)
    assert geo["getitem"].axes == {0: None}
    assert geo["getitem"].role == "reads fixed positions"
    assert geo["getitem"].equivariant is False
    assert collapse(graph) == "getitem" and first_break(graph) == "getitem"
    assert geo["getitem"].offset == (2 - 100,)  # reads input positions 98..102


def test_se_gate_is_mul_broadcast_and_not_a_collapse() -> None:
    model = _seeded(SqueezeExcite())
    graph = trace(model, torch.randn(2, 2, 30))
    assert graph.node("mul").kind == "mul_broadcast"
    geo = geometry(graph)
    assert geo["mean"].role == "global pool" and geo["mean"].axes == {0: None}
    assert geo["mul"].axes == {0: -1} and geo["mul"].equivariant is True
    assert collapse(graph) == "amax"  # the gate's pool is broadcast back onto positions
    assert geo["amax"].role == "global pool" and geo["amax"].equivariant is True  # invariant
    assert first_break(graph) == "amax"  # ... but it is where positions are mixed


def test_hooks_fallback_when_fx_and_export_fail() -> None:
    model = _seeded(NumpyInside())
    x = torch.randn(2, 2, 30)
    graph = trace(model, x)
    assert graph.method == "hooks"
    reason = graph.fallback_reason or ""
    assert reason.startswith("fx:") and "; export:" in reason
    assert graph.names == ("input", "conv", "act", "fc", "output")
    assert graph.node("act").inputs == ("conv",)  # wired by the very tensor it read
    out, caps = graph.run(x, capture=("conv", "act"))
    assert torch.equal(out, model(x))
    with torch.no_grad():
        assert torch.equal(caps["conv"], model.conv(x))
    geo = geometry(graph)
    assert geo["act"].receptive_field == (5,)
    # the numpy round trip and the mean were invisible: equivariance there is unknown
    assert geo["fc"].role == "unseen ops before" and geo["fc"].equivariant is None
    assert graph.node("fc").params["unseen_ops_before"] is True
    h = graph.callable_from("act", x)
    assert torch.equal(h(caps["act"]), out)
    # replacing an output in hooks mode leaves the model's hooks as they were
    assert all(not m._forward_hooks for m in model.modules())


# --- running ------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["fx", "export", "hooks"])
def test_run_output_equals_model(method: str) -> None:
    model = _seeded(nn.Sequential(BasicBlock(3, 4, stride=2), nn.AdaptiveAvgPool2d(1)))
    x = torch.randn(3, 3, 12, 12)
    graph = trace(model, x, methods=(method,))
    out, caps = graph.run(x, capture=("input", "output"))
    with torch.no_grad():
        ref = model(x)
    assert torch.equal(out, ref) and torch.equal(caps["output"], ref)
    assert torch.equal(caps["input"], x)
    assert not out.requires_grad


def test_replace_gives_output_as_function_of_a_feature_map() -> None:
    model = _seeded(
        nn.Sequential(nn.Conv1d(1, 3, 5), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 28, 2))
    )
    x = torch.randn(2, 1, 32)
    graph = trace(model, x)
    _, caps = graph.run(x, capture=("1",))
    feature = torch.zeros_like(caps["1"])
    out, _ = graph.run(x, replace={"1": feature})
    with torch.no_grad():
        assert torch.allclose(out, model[3](model[2](feature)))
    h = graph.callable_from("1", x)
    assert torch.equal(h(caps["1"]), model(x).detach())
    many = caps["1"].repeat(5, 1, 1)  # another batch size: nothing else reads x after "1"
    assert h(many).shape == (10, 2)
    hg = graph.callable_from("1", x, grad=True)
    a = caps["1"].clone().requires_grad_(True)
    hg(a).sum().backward()
    assert a.grad is not None and a.grad.shape == a.shape


def test_callable_from_refuses_a_new_batch_when_a_skip_reads_x() -> None:
    model = _seeded(BasicBlock(4, 4))
    x = torch.randn(2, 4, 8, 8)
    graph = trace(model, x)
    _, caps = graph.run(x, capture=("conv1",))
    h = graph.callable_from("conv1", x)
    assert torch.equal(h(caps["conv1"]), model(x).detach())
    with pytest.raises(InterpError, match="batch"):
        h(caps["conv1"].repeat(2, 1, 1, 1))
    after = graph.callable_from("relu#2", x)  # nothing after the last relu reads x
    assert after(torch.zeros(6, 4, 8, 8)).shape == (6, 4, 8, 8)


class PassThrough(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@pytest.mark.parametrize("method", ["fx", "export", "hooks"])
def test_module_output_names_the_node_a_module_returned(method: str) -> None:
    model = _seeded(nn.Sequential(BasicBlock(3, 4, stride=2), PassThrough(), nn.ReLU()))
    x = torch.randn(2, 3, 8, 8)
    graph = trace(model, x, methods=(method,))
    assert graph.module_output("0") == "0.relu#2"  # a block's output: its last relu call
    assert graph.module_output("0.relu", call=0) == "0.relu"
    assert graph.module_output("0.downsample") == "0.downsample.1"
    # returns its input unchanged: no node of its own (with hooks, a leaf is a call site)
    assert graph.module_output("1") == ("1" if method == "hooks" else "0.relu#2")
    with pytest.raises(InterpError, match="called 2 time"):
        graph.module_output("0.relu", call=2)
    with pytest.raises(InterpError, match="made no node"):
        graph.module_output("nope")


class BatchFromInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 2, 3)
        self.fc = nn.Linear(2 * 14, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]  # read off x before the conv
        return self.fc(self.conv(x).view(batch, -1))


def test_callable_from_refuses_a_new_batch_when_a_shape_was_read_off_x() -> None:
    model = _seeded(BatchFromInput())
    x = torch.randn(2, 1, 16)
    graph = trace(model, x)
    _, caps = graph.run(x, capture=("conv",))
    h = graph.callable_from("conv", x)
    assert torch.equal(h(caps["conv"]), model(x).detach())
    with pytest.raises(InterpError, match="a shape read off x"):
        h(caps["conv"][:1])


def test_unknown_node_names_are_listed() -> None:
    graph = trace(nn.Sequential(nn.ReLU()), torch.randn(1, 2, 5))
    with pytest.raises(InterpError, match="pass one of: input, 0, output"):
        graph.node("relu")
    with pytest.raises(InterpError, match="capture"):
        graph.run(torch.randn(1, 2, 5), capture=("nope",))
    assert [n.name for n in graph.producers("0")] == ["input"]
    assert [n.name for n in graph.consumers("0")] == ["output"]


# --- the model is never changed -------------------------------------------------------


def _dirty(model: nn.Module) -> nn.Module:
    """A model mid-training: training flags mixed, some grads, frozen params, a hook."""
    model.train()
    next(iter(model.children())).eval()
    params = list(model.parameters())
    params[0].requires_grad_(False)
    for p in params[1:]:
        p.grad = torch.ones_like(p)
    model.register_forward_hook(lambda m, i, o: None)
    model.register_forward_pre_hook(lambda m, i: None)
    return model


@pytest.mark.parametrize(
    "make",
    [
        lambda: BasicBlock(3, 4, stride=2),
        ShapeBranch,  # fx fails midway, export works
        NumpyInside,  # fx and export fail midway, hooks work
    ],
)
def test_trace_never_changes_the_model(make) -> None:
    model = _dirty(_seeded(make()))
    x = torch.randn(2, 3, 8, 8) if isinstance(model, BasicBlock) else torch.randn(2, 2, 30)
    before = snapshot(model)
    graph = trace(model, x)
    assert same_snapshot(before, snapshot(model))
    graph.run(x, capture=graph.names[1:3])
    geometry(graph)
    assert same_snapshot(before, snapshot(model))
    assert model.training is True


def test_trace_of_a_failing_model_raises_and_changes_nothing() -> None:
    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(2, 3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x).view(7, 7)

    model = _dirty(_seeded(Broken()))
    x = torch.randn(2, 2, 10)
    before = snapshot(model)
    with pytest.raises(InterpError, match=r"model\(x\) failed"):
        trace(model, x)
    assert same_snapshot(before, snapshot(model))


# --- property: geometry of a conv stack is the chain recurrence -----------------------

_layer = st.one_of(
    st.tuples(st.just("conv"), st.integers(1, 5), st.integers(1, 2), st.integers(1, 2),
              st.integers(0, 2)),
    st.tuples(st.just("max"), st.integers(2, 3), st.integers(1, 2), st.just(1), st.integers(0, 1)),
    st.tuples(st.just("avg"), st.integers(2, 3), st.integers(1, 3), st.just(1), st.integers(0, 1)),
    st.tuples(st.just("pad"), st.integers(0, 3), st.integers(0, 2), st.just(1), st.just(0)),
    st.tuples(st.just("relu"), st.just(1), st.just(1), st.just(1), st.just(0)),
)  # fmt: skip


def _stack(spec: list[tuple[str, int, int, int, int]]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for kind, k, s, d, p in spec:
        if kind == "conv":
            layers.append(nn.Conv1d(2, 2, k, stride=s, dilation=d, padding=min(p, (k - 1) * d)))
        elif kind == "max":
            layers.append(nn.MaxPool1d(k, s, padding=min(p, k // 2)))
        elif kind == "avg":
            layers.append(nn.AvgPool1d(k, s, padding=min(p, k // 2)))
        elif kind == "pad":
            layers.append(nn.ConstantPad1d((k, s), 0.0))
        else:
            layers.append(nn.ReLU())
    return _seeded(nn.Sequential(nn.Conv1d(1, 2, 1), *layers), 7)


@settings(max_examples=25, deadline=None)
@given(st.lists(_layer, min_size=1, max_size=5))
def test_geometry_of_random_conv_stacks_is_the_chain_recurrence(spec) -> None:
    model = _stack(spec)
    x = torch.randn(1, 1, 96)
    try:
        model(x)
    except RuntimeError:  # the stack shrank the input to nothing
        assume(False)
    graph = trace(model, x)
    assert graph.method == "fx"
    geo = geometry(graph)
    rf, jump, offset = 1, 1, 0
    for i, module in enumerate(model):
        if isinstance(module, (nn.Conv1d, nn.MaxPool1d, nn.AvgPool1d)):
            k = (
                module.kernel_size[0]
                if isinstance(module.kernel_size, tuple)
                else module.kernel_size
            )
            s = module.stride[0] if isinstance(module.stride, tuple) else module.stride
            d = getattr(module, "dilation", 1)
            d = d[0] if isinstance(d, tuple) else d
            p = module.padding[0] if isinstance(module.padding, tuple) else module.padding
            offset, rf, jump = offset + p * jump, rf + (k - 1) * d * jump, jump * s
        elif isinstance(module, nn.ConstantPad1d):
            offset += module.padding[0] * jump
        g = geo[str(i)]
        assert (g.receptive_field, g.stride, g.offset) == ((rf,), (jump,), (offset,)), (i, spec)
        assert g.axes == {0: -1} and g.equivariant is True
    last = str(len(model) - 1)
    positions = graph.node(last).output_shape[-1]  # type: ignore[index]
    inner = [u for u in range(positions) if u * jump - offset >= 0 and u * jump - offset + rf <= 96]
    if inner:
        check_oracle(model, x, [last])
