"""The shared helpers in interp/_util.py, each against an independent oracle."""

from __future__ import annotations

import inspect
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from interp._util import (
    ACCURACY_TOLERANCE,
    DEFAULT_SAMPLES,
    fmt_shift,
    json_float,
    model_device,
    ntuple,
)


def test_model_device_is_where_the_parameters_are():
    model = nn.Sequential(nn.Conv1d(1, 2, 3), nn.ReLU())
    assert model_device(model) == model[0].weight.device
    assert model_device(nn.ReLU()) == torch.device("cpu")  # no parameters
    assert model_device(nn.ReLU(), default="meta") == torch.device("meta")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_model_device_on_cuda():
    model = nn.Linear(2, 2).cuda()
    assert model_device(model) == model.weight.device


_GEOMETRIES = [(3, 1, 0, 1), ((3,), (2,), (1,), (2,)), ((3, 5), (1, 2), (1, 0), (1, 2)),
               (4, 3, 2, 1)]  # fmt: skip


@pytest.mark.parametrize(
    ("dims", "kernel", "stride", "padding", "dilation"),
    [(d, *g) for d in (1, 2) for g in _GEOMETRIES
     if not (d == 1 and isinstance(g[0], tuple) and len(g[0]) == 2)],  # 2-tuples are 2D only
)
def test_ntuple_gives_the_geometry_torch_applies(dims, kernel, stride, padding, dilation):
    """Output size from the expanded arguments equals the size torch computes."""
    pool = (nn.MaxPool1d, nn.MaxPool2d)[dims - 1](kernel, stride, padding, dilation)
    k, s, p, d = (ntuple(v, dims) for v in (kernel, stride, padding, dilation))
    sizes = (23, 19)[:dims]
    out = pool(torch.zeros((1, 1, *sizes))).shape[2:]
    expect = tuple((n + 2 * p[a] - d[a] * (k[a] - 1) - 1) // s[a] + 1 for a, n in enumerate(sizes))
    assert tuple(out) == expect
    if not isinstance(kernel, tuple) or len(kernel) == dims:  # conv takes no 1-tuple in 2D
        conv = (nn.Conv1d, nn.Conv2d)[dims - 1](1, 1, kernel)
        assert ntuple(kernel, dims) == conv.kernel_size  # torch's own expansion


@pytest.mark.parametrize(
    "value",
    [0.5, -3, 7, float("nan"), float("inf"), -float("inf"), None, np.float32(1.25),
     np.float64("nan"), torch.tensor(2.5).item(), np.int64(4), True],
)  # fmt: skip
def test_json_float_is_what_strict_json_can_hold(value):
    out = json_float(value)
    text = json.dumps(out, allow_nan=False)  # strict JSON never raises on it
    if value is None or not math.isfinite(float(value)):
        assert out is None
    else:
        assert json.loads(text) == float(value)
        assert type(out) is float


@pytest.mark.parametrize(
    ("shift", "axis", "signed", "text"),
    [
        (-3, [{"unit": "Hz", "step": 1000.0}], True, "-3000 Hz"),
        (3, [{"unit": "nm", "step": 0.5, "start": 400.0}], True, "+1.5 nm"),  # no origin
        (0, None, True, "0 samples"),
        (250, None, False, "250 samples"),
        ((8, -8), None, True, "(dy, dx) = (+8, -8) px"),
        ([2, 0], [{"unit": "mm", "step": 0.5}, {"unit": "mm", "step": 2.0}], True,
         "(dy, dx) = (+1, 0) mm"),
        ((3, -1), [{"step": 1.0}], False, "(dy, dx) = (3, -1) px"),
    ],
)  # fmt: skip
def test_fmt_shift_scales_by_the_step_and_names_the_unit(shift, axis, signed, text):
    assert fmt_shift(shift, axis, signed=signed) == text


def test_one_default_everywhere():
    """The library and every command default to the same sample count and tolerance."""
    import click

    from interp.cli.main import main
    from interp.reporting import compare, report
    from interp.sweep.core import shift_sweep

    # report, compare and sweep use the person's data whole (None); recipes draw the default
    assert inspect.signature(report).parameters["samples"].default is None
    assert inspect.signature(compare).parameters["samples"].default is None
    assert inspect.signature(shift_sweep).parameters["tolerance"].default == ACCURACY_TOLERANCE
    for name, default in (("report", None), ("compare", None), ("sweep", None),
                          ("attribute", DEFAULT_SAMPLES)):
        command = main.get_command(None, name)  # type: ignore[arg-type]
        samples = {p.name: p for p in command.params}["samples"]
        given = samples.get_default(click.Context(command))
        assert (None if given is getattr(click.core, "UNSET", None) else given) == default, name
