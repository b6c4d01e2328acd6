"""Acceptance on the shipped models (slow): where seed_cnn's weights sit, why a shift kills it.

Numbers are checked against laws, not against themselves: the decomposition must
sum to the model's logits; a positional head's class weights must be denser inside
the class's training footprint than outside; a pooled head's logit cannot move
when the whole pattern moves inside the input.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _rounding import float32_bound

import interp
from interp.geometry.core import structure
from interp.readout.core import connectivity, decompose, explain_shift

TRAINED = Path(__file__).resolve().parents[2] / "trained"
pytestmark = pytest.mark.slow


def _setup(name: str, n: int = 400):
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    model, info = interp.load(TRAINED / f"{name}.pt")
    x, y = info.recipe.sample(n, seed=123)  # the training distribution, held out
    geo = structure(model, x[:1])
    conn = connectivity(model, geo, x=x, y=y, batch_size=100, axis=info.meta.get("axis"),
                        classes=list(info.classes))  # fmt: skip
    return model, info, geo, conn


def test_seed_cnn_weights_concentrate_in_the_footprint_and_a_shift_loses_them():
    model, info, geo, conn = _setup("seed_cnn")
    assert conn.kind == "positional" and conn.weight.shape == (4, 64, 4026)
    for c in conn.per_class:
        assert c.footprint is not None and c.mass_inside is not None and c.area_inside
        assert c.mass_inside > 1.15 * c.area_inside, (c.name, c.mass_inside, c.area_inside)
    xt, yt = info.recipe.sample(8, seed=7)
    band = int((yt == 0).nonzero()[0])
    d = decompose(model, xt, geo)
    with torch.no_grad():
        logits = model.eval()(xt).double()
    # The float64 sum of 257,664 terms and the model's float32 Linear both lie within the
    # float32 rounding bound of a float64 forward (derived from magnitudes, not one CPU).
    total = d.per_position.sum(-1) + d.bias.double()
    _, bound = float32_bound(model, xt)
    assert bool(((total - logits).abs() <= 2 * bound).all())
    e = explain_shift(model, xt[band : band + 1], 0, 2000, structure=geo, connectivity=conn)
    assert e.logit_drop > 0 and e.winner != 0
    assert e.mass_inside_before > 0.5 > e.mass_inside_after
    assert e.true_at_pattern_before > 0 > e.true_at_pattern_after
    assert "wins instead" in e.sentence()


def test_seed_gap_states_one_shared_weight_per_kernel():
    model, info, geo, conn = _setup("seed_gap", n=100)
    assert conn.kind == "pooled" and conn.weight.shape == (4, 64)
    assert "one weight per kernel, shared by every position" in conn.sentences()[0]
    xt, yt = info.recipe.sample(4, seed=7)
    e = explain_shift(model, xt[:1], int(yt[0]), 2000, structure=geo, connectivity=conn)
    before, after = e.logits_before, e.logits_after
    assert torch.allclose(before, after, rtol=1e-3, atol=1e-3)


def test_shapes_cnn_2d_footprints_are_boxes_holding_dense_weights():
    _, _, _, conn = _setup("shapes_cnn")
    entry = conn.to_dict()["per_class"][0]
    assert len(entry["footprint"][0]) == 2 and len(entry["footprint_input"][1]) == 2
    for c in conn.per_class:
        assert c.mass_inside is not None and c.area_inside
        assert c.mass_inside > 1.15 * c.area_inside, (c.name, c.mass_inside, c.area_inside)


def test_seed_cnn_report_connectivity_is_unchanged_by_the_jacobian_readout():
    # reports/seed_cnn/report.json was written when the head's weights were the Linear's,
    # reshaped; the Jacobian of Flatten -> Linear is that weight exactly, so every
    # connectivity number of the shipped report comes back (float rounding aside).
    import json

    from interp.loading.examples import examples

    torch.set_num_threads(min(torch.get_num_threads(), 2))
    shipped = json.loads((TRAINED.parent / "reports/seed_cnn/report.json").read_text())
    model, info = interp.load(TRAINED / "seed_cnn.pt")
    x, y, _ = examples(info, None, shipped["settings"]["samples"], shipped["settings"]["seed"])
    geo = structure(model, x[:1])
    w = connectivity(model, geo).weight
    assert torch.equal(w, model[-1].weight.detach().reshape(w.shape))  # exact, no rounding
    got = connectivity(model, geo, x=x, y=y, axis=info.meta.get("axis"),
                       classes=list(info.classes)).to_dict()  # fmt: skip
    want = shipped["connectivity"]
    for key in ("kind", "reads", "linear", "channels", "positions", "top_kernels_by"):
        assert got[key] == want[key], key
    for g, s in zip(got["per_class"], want["per_class"], strict=True):
        assert g["top_kernels"] == s["top_kernels"] and g["footprint"] == s["footprint"]
        for key in ("mass_inside", "area_inside", "outside_in_init_range", "untrained_fraction"):
            assert g[key] == pytest.approx(s[key], rel=1e-5, abs=1e-9), (g["class"], key)
        assert g["top_kernel_scores"] == pytest.approx(s["top_kernel_scores"], rel=1e-4)
