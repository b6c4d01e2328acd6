"""The sweep's engine reason names the trunk end and the classifier as the report does.

Oracle: :func:`interp.geometry.structure` (``head.reads``, the node the report shows as the
map the head reads) and the classifier module's own type. On braindecode's ShallowFBCSPNet
the graph engine's last equivariant node is the Dropout after the safe log; the structure
reads the map before it (a Dropout in eval returns its input), so a message naming the
Dropout pointed at a node the report never shows.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from interp.geometry import structure
from interp.sweep import shift_sweep
from tests.archs import ARCHS

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")

FEW_SHIFTS = [-3, 0, 3]  # too few for the graph engine to beat brute force: it says why


def _sweep_reason(name: str) -> tuple[str, object, nn.Module]:
    case = ARCHS[name]
    model = case.factory(seed=0)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((2, *case.input_shape), generator=gen)
    y = torch.zeros(2, dtype=torch.long)
    geo = structure(model, x)
    sweep = shift_sweep(model, x, y, FEW_SHIFTS, mode="zero", engine="auto", structure=geo)
    return sweep.engine_reason, geo, model


@pytest.mark.parametrize("name", ["shallow_fbcsp_like", "eegnet_like"])
def test_trunk_end_is_named_as_the_structure_names_it(name: str) -> None:
    reason, geo, model = _sweep_reason(name)
    reads = geo.head.reads
    assert reads is not None
    # the engine's own node is a Dropout after the map the structure reads
    dropout = ARCHS[name].feature_map.site
    assert isinstance(model.get_submodule(dropout), nn.Dropout) and dropout != reads
    assert f"trunk end {reads!r}" in reason, reason
    assert repr(dropout) not in reason, reason


def test_classifier_conv_is_not_called_a_linear() -> None:
    reason, geo, model = _sweep_reason("shallow_fbcsp_like_no_logsoftmax")
    classifier = geo.head.linear
    assert classifier is not None
    assert isinstance(model.get_submodule(classifier), nn.Conv2d)  # the oracle: its type
    assert "chain engine" in reason, reason
    assert f"Linear {classifier!r}" not in reason, reason
