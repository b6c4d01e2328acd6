"""attribute(): each method equals a direct Captum call; the model and inputs stay unchanged."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from captum import attr as ca
from conftest import no_hooks_left
from torch import nn

from interp import InterpError
from interp.attribution.core import METHODS, attribute, attribution_across_shifts

# Captum's own notes when the oracle calls it directly on a model with grad-requiring weights.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Input Tensor 0 did not already require", "ignore:Setting .*hooks"
)

# Oracles: the Captum call a user would write on an eval copy of the model, with
# the settings interp documents as defaults. Layer "2" is the map the head reads.
RF, STRIDE, OFFSET = 10, 2, 1  # positional_1d layer "2" (MaxPool1d after Conv1d k=7, pad=1)


def _direct(name: str, m: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    layer = m[2]
    if name == "integrated_gradients":
        return ca.IntegratedGradients(m).attribute(x, target=t, n_steps=50)
    if name == "saliency":
        return ca.Saliency(m).attribute(x, target=t)
    if name == "input_x_gradient":
        return ca.InputXGradient(m).attribute(x, target=t)
    if name == "deeplift":
        return ca.DeepLift(m).attribute(x, target=t)
    if name == "gradient_shap":
        torch.manual_seed(5)
        np.random.seed(5)  # Captum draws its path points from numpy's global RNG
        return ca.GradientShap(m).attribute(x, torch.zeros(1, 1, 64), n_samples=20, target=t)
    if name == "occlusion":
        return ca.Occlusion(m).attribute(x, (1, RF), strides=(1, RF // 2), target=t,
                                         perturbations_per_eval=16)  # fmt: skip
    if name == "guided_backprop":
        return ca.GuidedBackprop(m).attribute(x, target=t)
    if name == "layer_gradcam":
        return _upsample_np(ca.LayerGradCam(m, layer).attribute(x, target=t), 64)
    if name == "layer_integrated_gradients":
        return ca.LayerIntegratedGradients(m, layer).attribute(x, target=t, n_steps=50)
    if name == "layer_conductance":
        return ca.LayerConductance(m, layer).attribute(x, target=t, n_steps=50)
    if name == "neuron_conductance":
        return ca.NeuronConductance(m, layer).attribute(x, (2, 7), target=t, n_steps=50)
    raise AssertionError(name)


def _upsample_np(cam: torch.Tensor, length: int) -> torch.Tensor:
    """Each feature-map value at its receptive-field centre, linear in between (numpy)."""
    centres = np.arange(cam.shape[-1]) * STRIDE - OFFSET + (RF - 1) / 2
    values = cam[:, 0].detach().double().numpy()
    rows = [np.interp(np.arange(length), centres, row) for row in values]
    return torch.tensor(np.stack(rows)[:, None], dtype=torch.float32)


def _ours(name: str, model: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    if name == "gradient_shap":
        torch.manual_seed(5)
        np.random.seed(5)
    extra = {"neuron": (2, 7)} if name == "neuron_conductance" else {}
    return attribute(model, x, t, method=name, **extra)


@pytest.mark.filterwarnings("ignore:integrated_gradients. the convergence delta")
@pytest.mark.parametrize("name", sorted(METHODS))
def test_each_method_equals_a_direct_captum_call(positional_1d, name):
    x = torch.rand(3, 1, 64, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0, 2, 1])
    ours = _ours(name, positional_1d, x, t)
    expected = _direct(name, copy.deepcopy(positional_1d).eval(), x, t)
    assert ours.shape == expected.shape
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ["saliency", "integrated_gradients"])
def test_noise_tunnel_equals_captum_noise_tunnel(positional_1d, name):
    x = torch.rand(2, 1, 64, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([1, 0])
    torch.manual_seed(9)
    ours = attribute(positional_1d, x, t, method=name, noise_tunnel="smoothgrad", nt_samples=4)
    ref = copy.deepcopy(positional_1d).eval()
    algo = ca.Saliency(ref) if name == "saliency" else ca.IntegratedGradients(ref)
    torch.manual_seed(9)
    stdev = 0.15 * float(x.max() - x.min())
    expected = ca.NoiseTunnel(algo).attribute(x, nt_samples=4, stdevs=stdev, target=t)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-7)


def test_layer_gradcam_on_a_2d_map_equals_captum_upsampled_bilinearly(positional_2d):
    x = torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([3, 0])
    ours = attribute(positional_2d, x, t, method="layer_gradcam")
    ref = copy.deepcopy(positional_2d).eval()
    cam = ca.LayerGradCam(ref, ref[2]).attribute(x, target=t)[:, 0].detach().double().numpy()
    centres = np.arange(6) * 2 - 1 + (4 - 1) / 2  # rf 4, stride 2, offset 1 per axis
    grid = np.arange(12)
    rows = np.apply_along_axis(lambda r: np.interp(grid, centres, r), 2, cam)  # (N, 6, 12)
    full = np.apply_along_axis(lambda c: np.interp(grid, centres, c), 1, rows)  # (N, 12, 12)
    torch.testing.assert_close(ours[:, 0].double(), torch.tensor(full), rtol=1e-5, atol=1e-7)


def test_integrated_gradients_of_a_linear_model_is_input_minus_baseline_times_weight():
    gen = torch.Generator().manual_seed(4)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x = torch.randn(4, 1, 16, generator=gen)
    base = torch.randn(1, 1, 16, generator=gen)
    t = torch.tensor([0, 1, 2, 1])
    ours = attribute(model, x, t, baselines=base)
    expected = (x - base) * model[1].weight.detach()[t][:, None, :]
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)


def test_completeness_on_a_small_relu_net_within_the_reported_delta(positional_1d):
    x = torch.rand(3, 1, 64, generator=torch.Generator().manual_seed(5))
    t = torch.tensor([0, 1, 2])
    cmp = attribution_across_shifts(positional_1d, x, t, [0], n_steps=100)
    with torch.no_grad():
        f_x = positional_1d.eval()(x).gather(1, t[:, None])[:, 0]
        f_b = positional_1d(torch.zeros_like(x)).gather(1, t[:, None])[:, 0]
    gap = cmp.maps[:, 0].sum((1, 2)) - (f_x - f_b)  # the oracle's convergence delta
    assert cmp.convergence_delta is not None and cmp.relative_delta is not None
    torch.testing.assert_close(cmp.convergence_delta[:, 0], gap, rtol=0, atol=1e-5)
    assert bool((gap.abs() <= 0.05 * (f_x - f_b).abs()).all())
    torch.testing.assert_close(cmp.relative_delta[:, 0], (gap / (f_x - f_b)).abs().double(),
                               rtol=1e-3, atol=1e-6)  # fmt: skip


def _kinked() -> nn.Module:
    """f(x) = sum relu(x - 0.3): IG from 0 to x = 1 is exactly 0.7 per position."""
    conv = nn.Conv1d(1, 1, 1)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.fill_(-0.3)
    lin = nn.Linear(8, 1)
    with torch.no_grad():
        lin.weight.fill_(1.0)
        lin.bias.zero_()
    return nn.Sequential(conv, nn.ReLU(), nn.Flatten(), lin)


def test_large_convergence_delta_warns_and_suggests_more_steps():
    x = torch.ones(1, 1, 8)
    with pytest.warns(UserWarning, match=r"raise `n_steps` \(now 2\)"):
        attr = attribute(_kinked(), x, 0, n_steps=2)
    # Two Gauss-Legendre nodes (0.21, 0.79): only one is past the kink, so 0.5, not 0.7.
    torch.testing.assert_close(attr, torch.full((1, 1, 8), 0.5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # Midpoints (k + 0.5) / 1000: exactly 700 of them lie past the kink.
        exact = attribute(_kinked(), x, 0, n_steps=1000, integration="riemann_middle")
    torch.testing.assert_close(exact, torch.full((1, 1, 8), 0.7))


def test_target_defaults_to_the_prediction(positional_1d):
    x = torch.rand(4, 1, 64, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        predicted = positional_1d.eval()(x).argmax(1)
    torch.testing.assert_close(
        attribute(positional_1d, x, method="saliency"),
        attribute(positional_1d, x, predicted, method="saliency"),
    )


def test_default_neuron_is_the_largest_contribution_to_the_target(positional_1d):
    x = torch.rand(1, 1, 64, generator=torch.Generator().manual_seed(7))
    cmp = attribution_across_shifts(positional_1d, x, [2], [0], method="neuron_conductance")
    with torch.no_grad():
        fmap = positional_1d.eval()[:3](x)[0]  # (4, 29)
    contrib = positional_1d[5].weight.detach()[2].reshape(4, 29) * fmap
    expected = np.unravel_index(int(contrib.argmax()), (4, 29))
    assert cmp.neuron == tuple(int(v) for v in expected)


# --- the user's model and inputs stay as they were --------------------------------


class _Net(nn.Module):
    """Train mode, BatchNorm (running stats would move), in-place ReLU, can fail mid-forward."""

    def __init__(self, fail_above: int | None = None):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(1, 4, 7, padding=1), nn.BatchNorm1d(4), nn.ReLU(inplace=True),
            nn.MaxPool1d(4, 2), nn.Flatten(), nn.Linear(4 * 29, 3),
        )  # fmt: skip
        self.fail_above = fail_above

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body[:4](x)
        if self.fail_above is not None and x.shape[0] > self.fail_above:
            raise RuntimeError("boom: the user's forward failed")
        return self.body[4:](h)


def _snapshot(model: nn.Module):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
        [p.grad for p in model.parameters()],
        [getattr(m, "inplace", None) for m in model.modules()],
    )


def _assert_unchanged(model: nn.Module, before) -> None:
    state, modes, req, grads, inplace = _snapshot(model)
    assert all(torch.equal(state[k], before[0][k]) for k in state)
    assert modes == before[1]
    assert req == before[2]
    assert all(a is b for a, b in zip(grads, before[3], strict=True))
    assert inplace == before[4]
    assert no_hooks_left(model)


def _prepared(fail_above: int | None = None) -> nn.Module:
    model = _Net(fail_above).train()
    gen = torch.Generator().manual_seed(8)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    model.body[0].weight.grad = torch.ones_like(model.body[0].weight)  # a stale grad to keep
    model.body[5].bias.requires_grad_(False)
    return model


@pytest.mark.parametrize("name", sorted(METHODS))
def test_model_inputs_and_rng_are_unchanged(name):
    model = _prepared()
    x = torch.rand(2, 1, 64, generator=torch.Generator().manual_seed(9))
    x_leaf = x.clone().requires_grad_(True)
    before, rng = _snapshot(model), torch.get_rng_state()
    attribute(model, x, [0, 1], method=name)
    attribute(model, x_leaf, [0, 1], method=name)
    _assert_unchanged(model, before)
    assert torch.equal(torch.get_rng_state(), rng)
    assert not x.requires_grad and x.grad is None
    assert x_leaf.requires_grad and x_leaf.grad is None
    assert torch.equal(x, x_leaf.detach())
    assert torch.is_grad_enabled()


@pytest.mark.parametrize("name", sorted(METHODS))
def test_model_is_unchanged_after_a_failing_forward(name):
    model = _prepared(fail_above=1)  # the one-sample probe passes, the batched call fails
    x = torch.rand(2, 1, 64, generator=torch.Generator().manual_seed(10))
    before = _snapshot(model)
    with pytest.raises(RuntimeError, match="boom"):
        attribute(model, x, [0, 1], method=name)
    _assert_unchanged(model, before)
    assert not x.requires_grad


def test_works_under_no_grad_and_leaves_it_off(positional_1d):
    x = torch.rand(2, 1, 64, generator=torch.Generator().manual_seed(12))
    with torch.no_grad():
        ours = attribute(positional_1d, x, [0, 1], method="input_x_gradient")
        assert not torch.is_grad_enabled()
    expected = ca.InputXGradient(copy.deepcopy(positional_1d).eval()).attribute(x, target=[0, 1])
    torch.testing.assert_close(ours, expected)


def test_train_mode_model_is_attributed_in_eval_mode():
    model = _prepared()
    x = torch.rand(2, 1, 64, generator=torch.Generator().manual_seed(11))
    expected = ca.Saliency(copy.deepcopy(model).eval()).attribute(x, target=1)
    torch.testing.assert_close(attribute(model, x, 1, method="saliency"), expected)
    assert model.training


# --- errors ------------------------------------------------------------------------


def test_bad_method_target_and_options_say_the_fix(positional_1d):
    x = torch.rand(2, 1, 64)
    with pytest.raises(InterpError, match="`method` 'smoothgrad' is unknown; use one of: "):
        attribute(positional_1d, x, 0, method="smoothgrad")
    with pytest.raises(InterpError, match=r"`target` 3 is out of range .* 3 classes \(0..2\)"):
        attribute(positional_1d, x, [0, 3])
    with pytest.raises(InterpError, match="`target` has 3 labels for 2 samples"):
        attribute(positional_1d, x, [0, 1, 2])
    with pytest.raises(TypeError, match="takes no option 'window'; it takes: baselines"):
        attribute(positional_1d, x, 0, window=5)
    with pytest.raises(InterpError, match=r"`baselines` of shape \(3, 1, 64\) does not fit"):
        attribute(positional_1d, x, 0, baselines=torch.zeros(3, 1, 64))
    with pytest.raises(InterpError, match=r"`x` of shape \(64,\) is not a batch"):
        attribute(positional_1d, x[0, 0], 0)
    with pytest.raises(InterpError, match="`noise_tunnel` 'blur' is unknown"):
        attribute(positional_1d, x, 0, method="saliency", noise_tunnel="blur")
    with pytest.raises(InterpError, match=r"`neuron` \(9, 0\) is not a \(kernel, position\)"):
        attribute(positional_1d, x, 0, method="neuron_conductance", neuron=(9, 0))


def test_functional_inplace_forward_is_explained():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(1, 2, 3)
            self.head = nn.Linear(2 * 14, 2)

        def forward(self, x):
            h = self.conv(x)
            h.relu_()  # in place on the layer output Captum hooks
            return self.head(h.flatten(1))

    model = Functional()
    with pytest.raises(InterpError, match=r"in.place"):
        attribute(model, torch.rand(1, 1, 16), 0, method="layer_integrated_gradients",
                  layer="conv")  # fmt: skip
    assert no_hooks_left(model)
