"""attribution_across_shifts: batched maps equal per-shift Captum calls; alignment laws."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from captum import attr as ca
from torch import nn

from interp import InterpError
from interp.attribution.align import align, displacement, frame_shifts, peaks, similarity
from interp.attribution.core import attribution_across_shifts
from interp.shifts import shift

pytestmark = pytest.mark.filterwarnings(
    "ignore:Input Tensor 0 did not already require", "ignore:Setting .*hooks"
)


def _equivariant_1d() -> nn.Module:
    """Circular convs + global max pooling: exactly shift-invariant under roll."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv1d(1, 4, 5, padding=2, padding_mode="circular"), nn.ReLU(),
        nn.Conv1d(4, 4, 3, padding=1, padding_mode="circular"), nn.ReLU(),
        nn.AdaptiveMaxPool1d(1), nn.Flatten(), nn.Linear(4, 3),
    ).eval()  # fmt: skip


def _equivariant_2d() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1, padding_mode="circular"), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 4),
    ).eval()  # fmt: skip


EQUIVARIANT_METHODS = [
    "integrated_gradients", "saliency", "input_x_gradient", "deeplift", "guided_backprop",
    "layer_gradcam", "layer_integrated_gradients", "layer_conductance",
]  # fmt: skip


@pytest.mark.parametrize("method", EQUIVARIANT_METHODS)
def test_equivariant_model_aligned_maps_agree_to_float_error(method):
    x = torch.rand(2, 1, 40, generator=torch.Generator().manual_seed(2))
    cmp = attribution_across_shifts(_equivariant_1d(), x, [0, 2], [-7, -3, 5, 11], method=method)
    ref = cmp.reference[:, None].expand_as(cmp.aligned)
    valid = cmp.valid[None, :, None].expand_as(cmp.aligned)
    scale = float(cmp.reference.abs().max())
    torch.testing.assert_close(cmp.aligned[valid], ref[valid], rtol=0, atol=1e-5 * scale)
    # Guided backprop keeps only positive gradients: one class's map is all zero, no peak.
    zero = (cmp.reference.flatten(1) == 0).all(1)[:, None].expand(-1, 4)
    assert torch.equal(torch.isnan(cmp.pearson), zero) and bool(zero[0].logical_not().all())
    assert bool((cmp.pearson[~zero] > 1 - 1e-6).all()) and bool(
        (cmp.cosine[~zero] > 1 - 1e-6).all()
    )
    assert bool((cmp.peak_displacement[~zero] == 0).all())
    assert torch.isnan(cmp.peak_displacement[zero]).all()
    assert cmp.to_dict()["peak_follows"] == [1.0] * 4
    assert bool(cmp.valid.all())  # roll mode; feature maps with "same" padding tile the input
    assert "moves with the input:" in " ".join(cmp.sentences())


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients"])
def test_equivariant_2d_model_aligned_maps_agree(method):
    x = torch.rand(1, 1, 10, 10, generator=torch.Generator().manual_seed(3))
    shifts = [(0, 0), (2, -3), (-1, 4)]
    cmp = attribution_across_shifts(_equivariant_2d(), x, [1], shifts, method=method)
    torch.testing.assert_close(cmp.aligned, cmp.reference[:, None].expand_as(cmp.aligned),
                               rtol=0, atol=1e-5 * float(cmp.reference.abs().max()))  # fmt: skip
    assert cmp.peak_displacement.shape == (1, 3, 2)
    assert bool((cmp.peak_displacement == 0).all())
    assert cmp.to_dict()["shifts"] == [[0, 0], [2, -3], [-1, 4]]


@pytest.mark.filterwarnings("ignore:integrated_gradients. the convergence delta")
def test_tensor_baselines_move_with_the_input():
    x = torch.rand(2, 1, 40, generator=torch.Generator().manual_seed(4))
    base = torch.rand(2, 1, 40, generator=torch.Generator().manual_seed(5))
    cmp = attribution_across_shifts(_equivariant_1d(), x, [0, 1], [6, -9], baselines=base)
    torch.testing.assert_close(cmp.aligned, cmp.reference[:, None].expand_as(cmp.aligned),
                               rtol=0, atol=1e-5)  # fmt: skip


def test_positional_head_maps_do_not_align_and_the_similarity_says_so(positional_1d):
    x = torch.rand(2, 1, 64, generator=torch.Generator().manual_seed(6))
    cmp = attribution_across_shifts(positional_1d, x, [0, 1], [-12, 0, 12], n_steps=100)
    assert cmp.pearson[:, 1].tolist() == [1.0, 1.0]
    assert float(cmp.pearson[:, [0, 2]].abs().max()) < 0.5
    assert float(cmp.similarity[0]) < 0.5 and float(cmp.similarity[2]) < 0.5
    assert "does not move with the input" in " ".join(cmp.sentences())


def test_batched_maps_equal_one_captum_call_per_shift(positional_1d):
    x = torch.rand(3, 1, 64, generator=torch.Generator().manual_seed(7))
    t = torch.tensor([2, 0, 1])
    shifts = [-9, 4, 20]
    with pytest.warns(UserWarning, match=r"convergence delta reaches .* raise `n_steps`"):
        cmp = attribution_across_shifts(positional_1d, x, t, shifts, mode="zero", n_steps=40)
    ref = copy.deepcopy(positional_1d).eval()
    for i, s in enumerate(shifts):
        xs = shift(x, s, "zero")
        expected, delta = ca.IntegratedGradients(ref).attribute(
            xs, target=t, n_steps=40, return_convergence_delta=True
        )
        torch.testing.assert_close(cmp.maps[:, i], expected, rtol=1e-5, atol=1e-7)
        assert cmp.convergence_delta is not None
        torch.testing.assert_close(cmp.convergence_delta[:, i], delta, rtol=1e-4, atol=1e-6)
        with torch.no_grad():
            prob = ref(xs).softmax(1).gather(1, t[:, None])[:, 0]
        torch.testing.assert_close(cmp.target_probability[:, i], prob)
        torch.testing.assert_close(cmp.total[:, i], expected.sum((1, 2)).double(),
                                   rtol=1e-5, atol=1e-6)  # fmt: skip
    unshifted = ca.IntegratedGradients(ref).attribute(x, target=t, n_steps=40)
    torch.testing.assert_close(cmp.reference, unshifted, rtol=1e-5, atol=1e-7)


def test_layer_maps_carry_the_class_weight_map(positional_1d):
    x = torch.rand(2, 1, 64, generator=torch.Generator().manual_seed(8))
    cmp = attribution_across_shifts(positional_1d, x, [2, 0], [0, 6],
                                    method="layer_integrated_gradients")  # fmt: skip
    w = positional_1d[5].weight.detach().reshape(3, 4, 29)
    assert cmp.weights is not None
    torch.testing.assert_close(cmp.weights, w[[2, 0]])
    # A linear head after the layer: layer IG is exactly (A - A_baseline) * W.
    with torch.no_grad():
        fmap = positional_1d[:3](shift(x, 6))
        fmap0 = positional_1d[:3](torch.zeros_like(x))
    torch.testing.assert_close(cmp.maps[:, 1], (fmap - fmap0) * w[[2, 0]], rtol=1e-4, atol=1e-6)
    assert cmp.layer == "2" and cmp.geometry == ((10,), (2,), (1,))
    # 29 positions do not tile 64 inputs at stride 2: only the overlap (shift 6 = 3 positions).
    assert cmp.valid[1].tolist() == [True] * 26 + [False] * 3


# --- alignment and metrics against brute-force oracles -----------------------------


@pytest.mark.parametrize("overlap", [True, False])
def test_align_matches_a_loop(overlap):
    maps = torch.randn(2, 3, 2, 9, generator=torch.Generator().manual_seed(9))
    shifts = [(-4,), (0,), (3,)]
    aligned, valid = align(maps, shifts, overlap=overlap)
    for i, (s,) in enumerate(shifts):
        for pos in range(9):
            inside = 0 <= pos + s < 9
            assert bool(valid[i, pos]) == (inside or not overlap)
            torch.testing.assert_close(aligned[:, i, :, pos], maps[:, i, :, (pos + s) % 9])


def test_similarity_matches_numpy_on_the_valid_positions():
    gen = torch.Generator().manual_seed(10)
    aligned, reference = torch.randn(2, 3, 2, 8, generator=gen), torch.randn(2, 2, 8, generator=gen)
    valid = torch.rand(3, 8, generator=gen) > 0.3
    pearson, cosine = similarity(aligned, reference, valid)
    for n in range(2):
        for s in range(3):
            a = aligned[n, s][:, valid[s]].double().numpy().ravel()
            r = reference[n][:, valid[s]].double().numpy().ravel()
            assert float(pearson[n, s]) == pytest.approx(np.corrcoef(a, r)[0, 1], abs=1e-12)
            cos = a @ r / np.linalg.norm(a) / np.linalg.norm(r)
            assert float(cosine[n, s]) == pytest.approx(cos, abs=1e-12)


def test_constant_maps_have_no_correlation_and_json_says_null(hand_set_1d):
    # Class 0 reads only the left edge: a spike moved to the middle gets no attribution.
    x = torch.zeros(1, 1, 6)
    x[0, 0, 0] = 1.0
    cmp = attribution_across_shifts(hand_set_1d, x, [0], [0, 3], mode="zero")
    torch.testing.assert_close(cmp.reference, x)  # IG of a linear model: x * (w * kernel)
    assert float(cmp.maps[0, 1].abs().sum()) == 0.0
    assert np.isnan(float(cmp.pearson[0, 1])) and np.isnan(float(cmp.cosine[0, 1]))
    data = json.loads(json.dumps(cmp.to_dict(), allow_nan=False))
    assert data["pearson"] == [[1.0, None]] and data["aligned_similarity"] == [1.0, None]
    assert data["method"] == "integrated_gradients" and data["shifts"] == [0, 3]


def test_peak_displacement_is_peak_move_minus_shift_wrapped_in_roll_mode():
    maps = torch.zeros(1, 2, 1, 10)
    maps[0, 0, 0, 9] = 1.0  # peak moved from 2 to 9: +7 = shift -3 wrapped, displacement 0
    maps[0, 1, 0, 4] = -2.0  # |.| counts: peak at 4, shift +1 puts it at 3: one too far
    ref = torch.zeros(1, 1, 10)
    ref[0, 0, 2] = 1.0
    (peak, has), (peak0, _) = peaks(maps, 1), peaks(ref, 1)
    assert peak[0, :, 0].tolist() == [9, 4] and peak0[0, 0] == 2
    assert has.tolist() == [[True, True]] and not peaks(torch.zeros(1, 1, 3), 1)[1].any()
    assert displacement(peak, peak0, [-3, 1], (1,), (10,))[0, :, 0].tolist() == [0, 1]
    assert displacement(peak, peak0, [-3, 1], (1,), None)[0, :, 0].tolist() == [10, 1]
    assert displacement(peak, peak0, [-3, 1], (2,), None)[0, :, 0].tolist() == [17, 3]
    assert frame_shifts([5, -4, 7], (2,)) == [(2,), (-2,), (4,)]  # nearest, ties to even


def test_shift_zero_is_the_reference_and_added_when_missing(positional_1d):
    x = torch.rand(1, 1, 64, generator=torch.Generator().manual_seed(11))
    with_zero = attribution_across_shifts(positional_1d, x, [1], [0, 5], method="saliency")
    without = attribution_across_shifts(positional_1d, x, [1], [5], method="saliency")
    assert without.shifts == (5,) and without.maps.shape == (1, 1, 1, 64)
    torch.testing.assert_close(without.reference, with_zero.maps[:, 0])
    torch.testing.assert_close(without.maps[:, 0], with_zero.maps[:, 1])


def test_bad_shifts_and_mode_say_the_fix(positional_1d):
    x = torch.rand(1, 1, 64)
    with pytest.raises(InterpError, match="`mode` 'wrap' is not a shift mode"):
        attribution_across_shifts(positional_1d, x, [0], [1], mode="wrap")
    with pytest.raises(InterpError, match="`shifts` is empty"):
        attribution_across_shifts(positional_1d, x, [0], [])
    with pytest.raises(TypeError, match="a 1D shift must be an int"):
        attribution_across_shifts(positional_1d, x, [0], [(1, 2)])
