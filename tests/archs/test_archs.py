"""Checks of the test architectures: they run, and their hand-computed geometry is true.

The geometry oracle is brute force on a float64 copy of each model:

* receptive field: with the nonlinearities replaced by identities and max pools by average pools
  of the same window (so no gradient is zeroed or routed away), the input positions with a
  nonzero gradient of ``fmap[..., j, ...].sum()`` are exactly ``j * stride + start`` to
  ``j * stride + start + rf - 1`` for interior ``j``;
* stride: on the real model, rolling the input by ``stride`` shifts the map by exactly one
  position wherever neither receptive field touches the border;
* head kind / affinity: the map is replaced through a forward hook (rolled, or an affine
  combination of two maps) and the logits compared.

Squeeze-excite blocks (``global_sites``) are removed for the first two, since they make every
position depend on the whole input; a separate test shows that.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable
from functools import cache

import pytest
import torch
import torch.fx
from torch import nn

from archs import (
    ADAPTIVE8_BINS,
    ARCHS,
    INDEX_POSITION,
    NONDIVISIBLE_BINS,
    ArchCase,
    BlurPool,
    CombinedConv,
    Ensure4d,
    FeatureMap,
    MaxNorm,
)

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")

CASES = list(ARCHS.values())
FEATURE_MAPS = [
    pytest.param(case, fm, id=f"{case.name}:{fm.site}:{fm.call}")
    for case in CASES
    for fm in case.feature_maps
]
_POINTWISE = (
    nn.ReLU, nn.ReLU6, nn.ELU, nn.Hardswish, nn.Hardsigmoid, nn.GELU, nn.LeakyReLU, nn.SiLU,
)  # fmt: skip
_MAX_TO_AVG: dict[type[nn.Module], Callable[[nn.Module], nn.Module]] = {
    nn.MaxPool1d: lambda m: nn.AvgPool1d(m.kernel_size, m.stride, m.padding, m.ceil_mode),
    nn.MaxPool2d: lambda m: nn.AvgPool2d(m.kernel_size, m.stride, m.padding, m.ceil_mode),
    nn.AdaptiveMaxPool1d: lambda m: nn.AdaptiveAvgPool1d(m.output_size),
    nn.AdaptiveMaxPool2d: lambda m: nn.AdaptiveAvgPool2d(m.output_size),
}


class _Stop(Exception):
    """Raised by a hook to end a forward once the wanted map is captured."""


@cache
def _base(name: str) -> nn.Module:
    return ARCHS[name].factory(seed=0)


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, new)


@cache
def _copy(name: str, linear: bool) -> nn.Module:
    """float64 copy; squeeze-excite removed; with ``linear``, pointwise ops -> identity."""
    case = ARCHS[name]
    model = copy.deepcopy(_base(name)).double()
    for site in case.global_sites:
        _set_submodule(model, site, nn.Identity())
    if linear:
        for sub_name, module in list(model.named_modules()):
            if isinstance(module, _POINTWISE):
                _set_submodule(model, sub_name, nn.Identity())
            elif type(module) in _MAX_TO_AVG:
                _set_submodule(model, sub_name, _MAX_TO_AVG[type(module)](module))
    return model


def _call_index(case: ArchCase, fm: FeatureMap) -> int:
    return fm.call % dict(case.call_sites).get(fm.site, 1)


def _capture(model: nn.Module, x: torch.Tensor, case: ArchCase, fm: FeatureMap) -> torch.Tensor:
    """The output of ``fm``'s call site; the rest of the forward (the head) is skipped."""
    target, seen, out = _call_index(case, fm), [0], []

    def hook(_m: nn.Module, _args: object, output: torch.Tensor) -> None:
        if seen[0] == target:
            out.append(output.clone())
            raise _Stop
        seen[0] += 1

    handle = model.get_submodule(fm.site).register_forward_hook(hook)
    try:
        model(x)
    except _Stop:
        pass
    finally:
        handle.remove()
    return out[0]


def _replacing(
    model: nn.Module,
    x: torch.Tensor,
    case: ArchCase,
    fm: FeatureMap,
    fn: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """The logits with ``fm``'s output replaced by ``fn(output)``."""
    target, seen = _call_index(case, fm), [0]

    def hook(_m: nn.Module, _args: object, output: torch.Tensor) -> torch.Tensor | None:
        seen[0] += 1
        return fn(output) if seen[0] - 1 == target else None

    handle = model.get_submodule(fm.site).register_forward_hook(hook)
    try:
        return model(x)
    finally:
        handle.remove()


def _probe_shape(case: ArchCase, i: int) -> list[int]:
    """Batched probe input shape: shift axis ``i`` lengthened to ``probe_lengths[i]``."""
    shape = [1, *case.input_shape]
    if case.probe_lengths is not None:
        shape[case.shift_axes[i]] = case.probe_lengths[i]
    return shape


def _randn(shape: list[int] | tuple[int, ...], seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen, dtype=torch.float64)


def _support(grad: torch.Tensor, axis: int) -> torch.Tensor:
    """Indices along ``axis`` where ``grad`` is nonzero anywhere else."""
    axis %= grad.dim()
    others = [d for d in range(grad.dim()) if d != axis]
    return (grad.abs().amax(dim=others) > 0).nonzero().flatten()


# --- the models run --------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_runs_with_declared_shapes(case: ArchCase) -> None:
    model = _base(case.name)
    assert not model.training
    x = _randn((2, *case.input_shape), seed=1).float()
    with torch.no_grad():
        logits = model(x)
        maps = [_capture(model, x, case, fm) for fm in case.feature_maps]
    assert logits.shape == (2, case.num_classes)
    assert torch.isfinite(logits).all()
    assert 0.02 < logits.std().item() < 20
    for fm, fmap in zip(case.feature_maps, maps, strict=True):
        assert tuple(fmap.shape[1:]) == fm.shape, fm.site
        assert torch.isfinite(fmap).all() and 1e-3 < fmap.std().item() < 50, fm.site
        assert len(fm.axes) == len(fm.stride) == len(case.shift_axes)
    for in_axis, fmap_axis in case.nonshift_axes:
        assert case.input_shape[in_axis] > 1
        assert case.feature_map.shape[fmap_axis] == 1


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_seeded_and_global_rng_untouched(case: ArchCase) -> None:
    state = torch.get_rng_state()
    first, again, other = (case.factory(seed=s).state_dict() for s in (0, 0, 1))
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first if first[k].is_floating_point())


# --- geometry, by brute force ----------------------------------------------------------------


@pytest.mark.parametrize(("case", "fm"), FEATURE_MAPS)
def test_receptive_field(case: ArchCase, fm: FeatureMap) -> None:
    model = _copy(case.name, linear=True)
    for i, in_axis in enumerate(case.shift_axes):
        shape = _probe_shape(case, i)
        length = shape[in_axis]
        x = _randn(shape).requires_grad_(True)
        fmap = _capture(model, x, case, fm)
        axis, s, rf, st = fm.axes[i], fm.stride[i], fm.receptive_field[i], fm.start[i]
        interior = [
            j for j in range(fmap.shape[axis]) if j * s + st >= 0 and j * s + st + rf <= length
        ]
        assert interior, f"no interior position along {in_axis}: set probe_lengths"
        for j in sorted({interior[0], interior[len(interior) // 2], interior[-1]}):
            (grad,) = torch.autograd.grad(fmap.select(axis, j).sum(), x, retain_graph=True)
            hit = _support(grad, in_axis)
            got = (hit.min().item(), hit.max().item(), hit.numel())
            assert got == (j * s + st, j * s + st + rf - 1, rf), (fm.site, in_axis, j)


@pytest.mark.parametrize(("case", "fm"), FEATURE_MAPS)
def test_stride(case: ArchCase, fm: FeatureMap) -> None:
    model = _copy(case.name, linear=False)
    for i, in_axis in enumerate(case.shift_axes):
        shape = _probe_shape(case, i)
        length = shape[in_axis]
        axis, s, rf, st = fm.axes[i], fm.stride[i], fm.receptive_field[i], fm.start[i]
        x = _randn(shape)
        with torch.no_grad():
            fmap = _capture(model, x, case, fm)
            shifted = _capture(model, torch.roll(x, s, dims=in_axis), case, fm)
        # Position j of x and j + 1 of the rolled input read the same, unwrapped, unpadded samples.
        ok = [
            j
            for j in range(fmap.shape[axis] - 1)
            if j * s + st >= 0 and (j + 1) * s + st + rf <= length
        ]
        assert ok, f"no interior position along {in_axis}: set probe_lengths"
        before = fmap.narrow(axis, ok[0], len(ok))
        after = shifted.narrow(axis, ok[0] + 1, len(ok))
        torch.testing.assert_close(after, before, rtol=0, atol=1e-9)
        assert (shifted.narrow(axis, ok[0], len(ok)) - before).abs().max() > 1e-6


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_head_kind_by_rolling_the_map(case: ArchCase) -> None:
    model, fm = _copy(case.name, linear=False), case.feature_map
    if case.global_sites:  # keep squeeze-excite: the head is what is measured
        model = copy.deepcopy(_base(case.name)).double()
    x = _randn((2, *case.input_shape), seed=2)
    with torch.no_grad():
        logits = model(x)
        rolled = _replacing(model, x, case, fm, lambda t: t.roll([1] * len(fm.axes), fm.axes))
    if case.head_kind == "pooled":
        torch.testing.assert_close(rolled, logits, rtol=0, atol=1e-9)
    else:
        assert case.head_kind == "positional"
        assert (rolled - logits).abs().max() > 1e-4


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_head_affine(case: ArchCase) -> None:
    model, fm = copy.deepcopy(_base(case.name)).double(), case.feature_map
    read = torch.relu if fm.after == "F.relu" else (lambda t: t)
    assert fm.after in ("", "F.relu")
    x = _randn((2, *case.input_shape), seed=3)
    with torch.no_grad():
        a1 = read(_capture(model, x, case, fm))
        a2 = read(_capture(model, x.flip(0) * 1.5 + 0.2, case, fm))
        # relu(.) passes the (nonnegative) injected maps unchanged when fm.after is F.relu.
        h1, h2 = (_replacing(model, x, case, fm, lambda _t, a=a: a) for a in (a1, a2))
        mixed = _replacing(model, x, case, fm, lambda _t: 0.3 * a1 + 0.7 * a2)
    if case.head_affine:
        torch.testing.assert_close(mixed, 0.3 * h1 + 0.7 * h2, rtol=0, atol=1e-9)
    else:
        assert (mixed - (0.3 * h1 + 0.7 * h2)).abs().max() > 1e-6


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_call_sites(case: ArchCase) -> None:
    model = _base(case.name)
    counts: Counter[str] = Counter()
    handles = [
        module.register_forward_hook(lambda *_a, n=name: counts.update([n]))
        for name, module in model.named_modules()
    ]
    try:
        with torch.no_grad():
            model(_randn((1, *case.input_shape)).float())
    finally:
        for handle in handles:
            handle.remove()
    assert {n: c for n, c in counts.items() if c > 1} == dict(case.call_sites)
    never = {
        name
        for name, module in model.named_modules()
        if counts[name] == 0 and not isinstance(module, nn.ModuleList | nn.ModuleDict)
    }
    assert never == set(case.uncalled)
    assert case.break_layer in case.head_sites and case.collapse in case.head_sites
    for site in case.head_sites:
        assert site.startswith("forward") or ".forward" in site or counts[site] >= 1, site


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_fx_traceable(case: ArchCase) -> None:
    if case.fx_traceable:
        torch.fx.symbolic_trace(_base(case.name))
    else:
        with pytest.raises(RuntimeError, match="symbolic tracing"):
            torch.fx.symbolic_trace(_base(case.name))


# --- traits of particular architectures ------------------------------------------------------


def test_squeeze_excite_makes_dependency_global() -> None:
    case = ARCHS["mobilenetv3_like"]
    fm = next(f for f in case.stages if f.site == "features.1")  # local RF 7, after the first SE
    model = copy.deepcopy(_base(case.name)).double()
    x = _randn((1, *case.input_shape)).requires_grad_(True)
    fmap = _capture(model, x, case, fm)
    (grad,) = torch.autograd.grad(fmap[:, :, 8, 8].sum(), x)
    assert _support(grad, -2).numel() == case.input_shape[-2]  # all 64 rows, not 7
    # And the real model is not exactly equivariant even in the interior.
    with torch.no_grad():
        a = _capture(model, x.detach(), case, fm)
        b = _capture(model, torch.roll(x.detach(), 4, dims=-1), case, fm)
    assert (b[..., 5:10, 5:10] - a[..., 5:10, 4:9]).abs().max() > 1e-8


def test_circular_padding_wraps_at_the_border() -> None:
    case = ARCHS["constant_pad_model"]
    model = _copy(case.name, linear=True)
    x = _randn((1, *case.input_shape)).requires_grad_(True)
    fmap = _capture(model, x, case, case.feature_map)
    (grad,) = torch.autograd.grad(fmap[..., 0].sum(), x)
    assert _support(grad, -1).tolist() == [0, 1, 2, 3, 4, 5, 59, 60, 61, 62, 63]


def test_index_head_reads_one_position() -> None:
    model = copy.deepcopy(_base("index_head_model")).double()
    x = (_randn((1, 1, 256)) + 2.0).requires_grad_(True)  # keep the ReLU on
    (grad,) = torch.autograd.grad(model(x).sum(), x)
    assert _support(grad, -1).tolist() == list(range(INDEX_POSITION - 4, INDEX_POSITION + 5))


@pytest.mark.parametrize(
    ("name", "bins"),
    [
        ("adaptive_pool8_model", ADAPTIVE8_BINS),
        ("adaptive_pool_nondivisible_model", NONDIVISIBLE_BINS),
    ],
)
def test_adaptive_pool_bins(name: str, bins: tuple[tuple[int, int], ...]) -> None:
    case = ARCHS[name]
    pool = _base(name).get_submodule("2")
    x = _randn((1, 4, case.input_shape[-1])).requires_grad_(True)
    out = pool(x)
    for i, (lo, hi) in enumerate(bins):
        (grad,) = torch.autograd.grad(out[..., i].sum(), x, retain_graph=True)
        assert _support(grad, -1).tolist() == list(range(lo, hi)), i


def test_lstm_hidden_equals_channels() -> None:
    model = _base("lstm_head_model")
    assert model.lstm.hidden_size == model.conv.out_channels == model.lstm.input_size


@pytest.mark.parametrize(
    ("name", "site", "max_norm"),
    [("deep4_like", "conv_time_spat.conv_spat", 2.0), ("eegnet_like", "conv_spatial", 1.0)],
)
def test_max_norm_parametrization(name: str, site: str, max_norm: float) -> None:
    conv = _base(name).get_submodule(site)
    assert torch.nn.utils.parametrize.is_parametrized(conv, "weight")
    assert isinstance(conv.parametrizations.weight[0], MaxNorm)
    norms = conv.weight.detach().flatten(1).norm(dim=1)
    raw = conv.parametrizations.weight.original.detach().flatten(1).norm(dim=1)
    assert (norms <= max_norm + 1e-5).all()
    assert (raw > max_norm).any()  # the constraint is active


def test_combined_conv_equals_the_two_convs() -> None:
    conv = _base("deep4_like").conv_time_spat
    assert isinstance(conv, CombinedConv)
    x = _randn((2, 1, 100, 22)).float()
    with torch.no_grad():
        torch.testing.assert_close(conv(x), conv.conv_spat(conv.conv_time(x)), atol=1e-5, rtol=1e-5)


def test_ensure4d_and_blurpool_filter() -> None:
    assert Ensure4d()(torch.zeros(2, 22, 10)).shape == (2, 22, 10, 1)
    assert Ensure4d()(torch.zeros(2, 3, 4, 5)).shape == (2, 3, 4, 5)
    blur = _base("blurpool_resnet_like").maxpool[1]
    assert isinstance(blur, BlurPool)
    taps = torch.tensor([1.0, 2.0, 1.0])
    expected = (taps[:, None] * taps[None, :] / 16).expand(blur.channels, 1, 3, 3)
    torch.testing.assert_close(blur.filt, expected)
    assert "maxpool.1.filt" in _base("blurpool_resnet_like").state_dict()
