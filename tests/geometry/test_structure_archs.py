"""structure() on every test architecture gives its hand-computed geometry and head.

The truths are the ones written by hand in ``tests/archs`` (each checked there against a
brute-force oracle). Where a case names a site differently from the traced graph, the mapping
is spelled out per case below: functional ops get their graph node name, a module's output is
the call site that returns it, and a Dropout (the identity in eval) is read through to the map
before it, as interp always has.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
from archs import ARCHS
from conftest import no_hooks_left

import interp
from interp.errors import InterpError
from interp.geometry import canonical, structure, uncanonical

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")


@dataclass(frozen=True)
class Names:
    """The case's sites in the graph's naming."""

    reads: str  # the head's feature map
    breaks: str
    collapse: str
    method: str


NAMES = {
    "resnet18_like": Names("layer4.1.relu#2", "avgpool", "avgpool", "fx"),  # layer4's output
    "mobilenetv3_like": Names("features.8.2", "avgpool", "avgpool", "fx"),  # features' output
    "blurpool_resnet_like": Names("layer4.0.relu#2", "avgpool", "avgpool", "fx"),
    # braindecode nets: `len(x.shape)` in Ensure4d defeats fx; the map before Dropout 'drop'
    # is the log nonlinearity (an aten node)
    "shallow_fbcsp_like": Names("log", "final_layer.conv_classifier",
                                "final_layer.conv_classifier", "export"),
    "shallow_fbcsp_like_no_logsoftmax": Names("log", "final_layer.conv_classifier",
                                              "final_layer.conv_classifier", "export"),
    "shallow_fbcsp_combined_like": Names("log", "final_layer.conv_classifier",
                                         "final_layer.conv_classifier", "export"),
    # pool_nonlin_4 is an Expression(identity) after pool_4: its output is pool_4's
    "deep4_like": Names("pool_4", "final_layer.conv_classifier",
                        "final_layer.conv_classifier", "export"),
    "deep4_like_no_logsoftmax": Names("pool_4", "final_layer.conv_classifier",
                                      "final_layer.conv_classifier", "export"),
    "eegnet_like": Names("pool_2", "final_layer.conv_classifier",
                         "final_layer.conv_classifier", "export"),  # before Dropout drop_2
    "eegnet_like_no_logsoftmax": Names("pool_2", "final_layer.conv_classifier",
                                       "final_layer.conv_classifier", "export"),
    "inception_time_like": Names("inceptionblock.act#2", "mean", "mean", "fx"),  # x.mean(-1)
    "fcn_like": Names("convblock3.2", "gap", "gap", "fx"),
    "constant_pad_model": Names("4", "5", "5", "fx"),
    "adaptive_pool8_model": Names("2", "4", "3", "fx"),
    "index_head_model": Names("relu", "getitem", "getitem", "fx"),  # F.relu; [:, :, 100]
    "lstm_head_model": Names("relu", "lstm", "getitem_2", "fx"),  # out[:, -1]
    "positional_seed_like": Names("2", "5", "4", "fx"),  # before Dropout '3'
    "adaptive_pool_nondivisible_model": Names("1", "2", "3", "fx"),
}  # fmt: skip


def test_every_case_is_mapped():
    assert set(NAMES) == set(ARCHS)


def _snapshot(model: torch.nn.Module) -> dict:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [p.grad for p in model.parameters()],
    }


@pytest.fixture(scope="module", params=sorted(ARCHS))
def analysed(request):
    case = ARCHS[request.param]
    model = case.factory(seed=0)
    x = torch.randn(3, *case.input_shape, generator=torch.Generator().manual_seed(0))
    before = _snapshot(model)
    geo = structure(model, x)
    return case, model, x, geo, before


def test_geometry_head_and_sites(analysed):
    case, _model, _x, geo, _before = analysed
    names, fm = NAMES[case.name], case.feature_map
    head = geo.head
    assert geo.method == names.method
    assert head.reads == names.reads
    lay = geo.layer(head.reads)
    assert lay.stride == fm.stride
    assert lay.receptive_field == fm.receptive_field
    assert lay.offset == tuple(-s for s in fm.start)
    assert lay.output_shape == fm.shape
    assert head.axes == fm.axes
    assert head.positions == tuple(fm.shape[a] for a in fm.axes)
    assert head.channels == math.prod(fm.shape) // math.prod(head.positions)
    assert head.kind == case.head_kind
    assert head.affine == case.head_affine
    assert head.breaks == names.breaks
    assert geo.collapse == names.collapse
    assert head.measured
    d = geo.to_dict()
    assert d["method"] == names.method and d["head"]["breaks"] == names.breaks
    assert d["head"]["affine"] == case.head_affine and d["head"]["axes"] == list(fm.axes)


def test_model_unchanged(analysed):
    _case, model, _x, _geo, before = analysed
    after = _snapshot(model)
    assert all(torch.equal(before["state"][k], v) for k, v in after["state"].items())
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    assert after["grads"] == before["grads"]
    assert no_hooks_left(model)


def test_reads_is_capturable_and_canonical_round_trips(analysed):
    case, model, x, geo, _before = analysed
    head = geo.head
    _, caps = geo.graph.run(x, capture=[head.reads])
    a = caps[head.reads]
    assert tuple(a.shape[1:]) == case.feature_map.shape
    with interp.record(model, [head.reads], example=x) as rec, torch.no_grad():
        model(x)
    assert torch.equal(rec[head.reads], a)
    ac = canonical(a, head)
    assert ac.shape == (x.shape[0], head.channels, *head.positions)
    # oracle: move the position axes to the end with movedim, flatten the rest by hand
    moved = torch.movedim(a, list(head.axes), list(range(-len(head.axes), 0)))
    assert torch.equal(ac, moved.reshape(x.shape[0], -1, *head.positions))
    assert torch.equal(uncanonical(ac, head, lay_shape := tuple(a.shape[1:])), a)
    assert lay_shape == geo.feature_map.output_shape


def test_sentences_and_plot(analysed):
    case, _model, _x, geo, _before = analysed
    text = " ".join(geo.sentences())
    if case.head_kind == "pooled":
        assert "translation invariant by construction" in text
    else:
        assert "cannot be translation invariant" in text
    fig = geo.plot()
    assert fig.axes


# --- the edge cases, spelled out ---------------------------------------------------------


def _geo(name: str):
    case = ARCHS[name]
    x = torch.randn(2, *case.input_shape, generator=torch.Generator().manual_seed(1))
    return structure(case.factory(seed=0), x)


def test_constant_pad_shifts_the_offset():
    geo = _geo("constant_pad_model")
    # pad 3 on the left: input position u of the padded signal is original u - 3
    assert geo.layer("0").offset == (3,) and geo.layer("0").role == "pad"
    assert geo.layer("1").offset == (3,) and geo.layer("1").receptive_field == (7,)
    assert geo.layer("3").offset == (5,) and geo.layer("3").receptive_field == (11,)
    assert all(lay.equivariant for lay in geo.layers[:5])


def test_adaptive_pool8_is_a_strided_pool_and_nondivisible_is_not():
    lay = _geo("adaptive_pool8_model").layer("2")
    assert (lay.stride, lay.receptive_field, lay.offset) == ((32,), (38,), (3,))
    assert lay.equivariant is True
    odd = _geo("adaptive_pool_nondivisible_model")
    assert odd.layer("2").role == "non-uniform" and odd.layer("2").equivariant is False
    assert odd.layer("2").stride is None
    assert odd.head.reads == "1"


def test_index_and_lstm_heads_are_positional_not_pooled():
    index = _geo("index_head_model")
    assert (index.head.kind, index.head.affine, index.head.linear) == ("positional", True, "fc")
    assert "fixed positions" in index.sentences()[0]
    lstm = _geo("lstm_head_model")
    assert lstm.head.channels == 8 and lstm.head.positions == (124,)  # hidden == channels
    assert (lstm.head.kind, lstm.head.affine) == ("positional", False)
    assert lstm.head.breaks == "lstm" and lstm.layer("lstm").equivariant is False
    assert "recurrent" in lstm.sentences()[0]


@pytest.mark.parametrize("name", ["shallow_fbcsp_like", "deep4_like", "eegnet_like"])
def test_eeg_nets_are_positional_and_ensure4d_only_moves_axes(name):
    geo = _geo(name)
    assert geo.head.kind == "positional"
    for site in ("unsqueeze", "permute"):  # Ensure4d's trailing axis, then the permute
        lay = geo.layer(site)
        assert lay.equivariant is True and lay.role == "reshape" and lay.stride == (1,)
    assert geo.head.breaks == "final_layer.conv_classifier"
    assert geo.first_break().name == "final_layer.conv_classifier"
    first = geo.sentences()[0]
    assert "classifier conv 'final_layer.conv_classifier' covers all" in first
    assert "like Flatten -> Linear" in first


def test_record_call_sites_on_a_resnet():
    case = ARCHS["resnet18_like"]
    model = case.factory(seed=0)
    x = torch.randn(2, *case.input_shape, generator=torch.Generator().manual_seed(2))
    names = ["layer1.0.relu#2", "layer1.0.relu#1", "add", "layer1.0.relu"]
    with interp.record(model, names) as rec, torch.no_grad():
        model(x)
    with torch.no_grad():  # oracle: the block by hand
        stem = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        blk = model.layer1[0]
        inner = blk.relu(blk.bn1(blk.conv1(stem)))
        added = blk.bn2(blk.conv2(inner)) + stem
        out = torch.relu(added)
    assert torch.equal(rec["layer1.0.relu#1"], inner)
    assert torch.allclose(rec["add"], added, rtol=0, atol=0)
    assert torch.equal(rec["layer1.0.relu#2"], out)
    assert rec["layer1.0.relu#2"].shape[0] == 2  # never two calls concatenated
    with pytest.raises(InterpError, match=r"'layer1.0.relu' ran 2 times.*layer1.0.relu#2"):
        rec["layer1.0.relu"]
    assert no_hooks_left(model)


def test_record_names_checked_and_hooks_removed_when_the_block_raises():
    model = ARCHS["resnet18_like"].factory(seed=0)
    with pytest.raises(InterpError, match=r"'nope' not found; available: conv1, bn1"):
        interp.record(model, ["nope"])

    def block() -> None:
        with interp.record(model, ["layer1.0.relu#2", "add"]), torch.no_grad():
            model(torch.randn(1, 3, 64, 64))
            raise KeyError("user code failed")

    with pytest.raises(KeyError):
        block()
    assert no_hooks_left(model)


# --- models without a Python forward ------------------------------------------------------


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_torchscript_model_is_read_from_its_graph(tmp_path):
    case = ARCHS["fcn_like"]
    x = torch.randn(2, *case.input_shape, generator=torch.Generator().manual_seed(3))
    torch.jit.script(case.factory(seed=0)).save(tmp_path / "fcn_ts.pt")
    model, _info = interp.load(tmp_path / "fcn_ts.pt", trust=True)
    geo = structure(model, x)
    assert "TorchScript" in (geo.fallback_reason or "") and geo.unavailable
    fm = case.feature_map
    lay = geo.layer(geo.head.reads)  # aten names: the truth is the geometry, not the name
    assert (lay.stride, lay.receptive_field, lay.offset) == (
        fm.stride, fm.receptive_field, tuple(-s for s in fm.start))
    assert (geo.head.kind, geo.head.affine) == (case.head_kind, case.head_affine)


def test_pt2_with_a_fixed_batch_of_one(tmp_path):
    case = ARCHS["positional_seed_like"]
    x = torch.randn(1, *case.input_shape, generator=torch.Generator().manual_seed(4))
    program = torch.export.export(case.factory(seed=0), (x,))  # static batch 1
    torch.export.save(program, tmp_path / "seed.pt2")
    model, _info = interp.load(tmp_path / "seed.pt2", trust=True)
    geo = structure(model, x)
    assert geo.method == "export" and geo.head.kind == "positional" and geo.head.affine
    lay = geo.layer(geo.head.reads)
    assert (lay.stride, lay.receptive_field, lay.output_shape) == ((2,), (19,), (8, 247))


def test_inspect_reads_eeg_data_as_is_and_states_the_default_length(tmp_path):
    from click.testing import CliRunner

    from interp.cli.main import main

    np = pytest.importorskip("numpy")
    torch.save(ARCHS["shallow_fbcsp_like_no_logsoftmax"].factory(seed=0), tmp_path / "eeg.pt")
    gen = np.random.default_rng(0)
    np.savez(tmp_path / "eeg.npz", x=gen.standard_normal((4, 22, 1000)).astype("float32"),
             y=np.arange(4) % 4)
    runner = CliRunner()
    res = runner.invoke(main, ["inspect", str(tmp_path / "eeg.pt"), "--trust", "--data",
                               str(tmp_path / "eeg.npz")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "input shape 22x1000" in res.output and "covers all 61 positions" in res.output
    interp.save(ARCHS["constant_pad_model"].factory(seed=0), tmp_path / "pooled.pt")
    res = runner.invoke(main, ["inspect", str(tmp_path / "pooled.pt")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "input shape 1x1024" in res.output and "default length 1024" in res.output
