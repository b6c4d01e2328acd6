"""interp.fix: the remedies, against oracles (a Newton solver, exact invariance by
construction, a manual forward), the user's model untouched, refusals in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import interp
from interp.errors import InterpError
from interp.remedies import fix
from interp.remedies.logistic import DEFAULT_L2, TOLERANCE_GRAD, fit_logistic

ROOT = Path(__file__).resolve().parents[2]


def _spike_model(length: int = 32) -> nn.Sequential:
    """Circular conv: kernel 0 sees a positive spike, kernel 1 a negative one; positional head.

    Global max pooling of the ReLU map gives (amplitude, 0) for class 0 and (0, amplitude)
    for class 1 at any circular position: the pooled features separate the classes.
    """
    conv = nn.Conv1d(1, 2, 3, padding=1, padding_mode="circular", bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[0.0, 1.0, 0.0]], [[0.0, -1.0, 0.0]]]))
    head = nn.Linear(2 * length, 2)
    with torch.no_grad():  # reads only positions 10..20: a head trained at fixed positions
        head.weight.zero_()
        head.weight[0, 10:20] = 1.0
        head.weight[1, length + 10 : length + 20] = 1.0
        head.bias.zero_()
    return nn.Sequential(conv, nn.ReLU(), nn.Flatten(), head).eval()


def _spikes(n: int, length: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.zeros(n, 1, length)
    pos = torch.randint(10, 20, (n,), generator=gen)  # training positions only
    amp = 1 + torch.rand(n, generator=gen)
    x[torch.arange(n), 0, pos] = torch.where(y == 0, amp, -amp)
    return x, y


def test_pool_head_is_exact_under_every_shift_when_pooled_features_separate():
    model = _spike_model()
    x, y = _spikes(80)
    xt, yt = _spikes(40, seed=1)
    res = fix(model, x, y, x_test=xt, y_test=yt, strategies="pool-head", shifts=range(-16, 17))
    r = res.remedy("pool-head")
    assert min(res.original.accuracy) < 0.75  # the positional head misses moved spikes
    assert r.sweep.accuracy == (1.0,) * 33
    assert r.consistency == 1.0


def _newton(z: torch.Tensor, y: torch.Tensor, k: int, l2: float) -> tuple[torch.Tensor, ...]:
    """Reference: Newton's method on mean CE + l2/2 ||W||^2 (pseudo-inverse steps: the
    common bias offset is a flat direction), float64."""
    c = z.shape[1]

    def loss(theta: torch.Tensor) -> torch.Tensor:
        w, b = theta[: k * c].reshape(k, c), theta[k * c :]
        return nn.functional.cross_entropy(z @ w.T + b, y) + 0.5 * l2 * (w * w).sum()

    theta = torch.zeros(k * c + k, dtype=torch.float64)
    for _ in range(50):
        g = torch.autograd.functional.jacobian(loss, theta)
        h = torch.autograd.functional.hessian(loss, theta)
        theta = theta - torch.linalg.pinv(h) @ g
    w, b = theta[: k * c].reshape(k, c), theta[k * c :]
    return w, b - b.mean(), torch.linalg.norm(torch.autograd.functional.jacobian(loss, theta))


def _reference_head(feats: torch.Tensor, y: torch.Tensor, k: int) -> tuple[torch.Tensor, ...]:
    f = feats.double()
    mean, std = f.mean(0), f.std(0, unbiased=False)
    w, b, grad = _newton((f - mean) / std, y, k, DEFAULT_L2)
    w_raw = w / std
    b_raw = b - w_raw @ mean
    return w_raw, b_raw - b_raw.mean(), grad


def _bound(params: int) -> float:
    """Distance to the optimum in standardised units: L-BFGS stops with every gradient
    component below TOLERANCE_GRAD, and the objective is DEFAULT_L2-strongly convex in W."""
    return params**0.5 * TOLERANCE_GRAD / DEFAULT_L2


def _centred_logits(w: torch.Tensor, b: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    out = f.double() @ w.T + b
    return out - out.mean(1, keepdim=True)


def test_logistic_fit_equals_newton():
    gen = torch.Generator().manual_seed(3)
    feats = torch.randn(60, 3, generator=gen, dtype=torch.float64) * torch.tensor([1.0, 5.0, 0.2])
    noise = torch.randn(60, generator=gen, dtype=torch.float64)
    y = (feats[:, 0] + 0.3 * feats[:, 1] + noise > 0).long() + (feats[:, 2] > 0.1).long()
    w, b = fit_logistic(feats, y, 3)
    w_ref, b_ref, grad = _reference_head(feats, y, 3)
    assert grad < 1e-12
    std = feats.std(0, unbiased=False)
    bound = _bound(3 * 3 + 3)
    assert float(((w - w_ref) * std).abs().max()) <= bound
    z = (feats - feats.mean(0)) / std
    scale = float(torch.sqrt((z * z).sum(1) + 1).max())
    diff = _centred_logits(w, b, feats) - _centred_logits(w_ref, b_ref, feats)
    assert float(diff.abs().max()) <= bound * scale


def test_pool_head_linear_equals_reference_logistic_regression(positional_1d):
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(90, 1, 64, generator=gen)
    y = torch.arange(90) % 3
    res = fix(positional_1d, x, y, x_test=x[:12], y_test=y[:12], strategies="pool-head",
              shifts=[-4, 0, 4])  # fmt: skip
    fixed = res.remedy("pool-head").model
    linear = fixed[-1]
    pool = fixed[-3]
    # Manual forward through the trained trunk (conv, relu, maxpool) in float64.
    conv = positional_1d[0].double()
    with torch.no_grad():
        fmap = nn.functional.max_pool1d(torch.relu(conv(x.double())), 4, 2)
    positional_1d.float()
    # The same split fix() makes (a seeded 15% held out for validation).
    order = torch.randperm(90, generator=torch.Generator().manual_seed(1))
    keep = order[round(0.15 * 90) :].sort().values
    reduce = fmap.amax(-1) if isinstance(pool, nn.AdaptiveMaxPool1d) else fmap.mean(-1)
    w_ref, b_ref, grad = _reference_head(reduce[keep], y[keep], 3)
    assert grad < 1e-12
    feats = reduce[keep]
    std = feats.std(0, unbiased=False)
    z = (feats - feats.mean(0)) / std
    scale = float(torch.sqrt((z * z).sum(1) + 1).max())
    # float32 storage of the Linear: each weight and bias rounds by 2^-24 relative.
    f32 = 2.0**-24 * float((w_ref.abs() @ feats.abs().T).max() + b_ref.abs().max()) * 4
    got = _centred_logits(linear.weight.detach().double(), linear.bias.detach().double(), feats)
    diff = got - _centred_logits(w_ref, b_ref, feats)
    assert float(diff.abs().max()) <= _bound(4 * 3 + 3) * scale + f32


def _snapshot(model: nn.Module) -> dict[str, object]:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "hooks": [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()],
    }


def test_original_model_is_unchanged(positional_1d):
    model = positional_1d
    model.train()
    model[3].eval()
    model[0].bias.requires_grad_(False)
    calls = []
    model[2].register_forward_hook(lambda *_: calls.append(1))
    before = _snapshot(model)
    rng = torch.get_rng_state()
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(60, 1, 64, generator=gen)
    y = torch.arange(60) % 3
    fix(model, x, y, strategies="all", shifts=[-8, 0, 8])
    after = _snapshot(model)
    assert all(torch.equal(before["state"][k], after["state"][k]) for k in before["state"])
    assert before["training"] == after["training"]
    assert before["requires_grad"] == after["requires_grad"]
    assert before["hooks"] == after["hooks"]
    assert torch.equal(rng, torch.get_rng_state())


def test_saved_models_reload_with_the_same_logits(positional_1d, tmp_path):
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(60, 1, 64, generator=gen)
    y = torch.arange(60) % 3
    res = fix(positional_1d, x, y, strategies="all", shifts=[-8, 0, 8], out=tmp_path)
    for r in res.remedies:
        assert r.path == str(tmp_path / f"model-{r.name}.pt")
        loaded, info = interp.load(r.path)
        assert info.format == "interp-checkpoint"
        assert info.meta["fix"]["remedy"] == r.name
        assert list(info.input_shape) == [1, 64]
        with torch.no_grad():
            assert torch.equal(loaded.eval()(x), r.model.eval()(x))


def test_metadata_of_the_original_is_kept(positional_1d, tmp_path):
    path = tmp_path / "mine.pt"
    meta = {"classes": ["a", "b", "c"], "input_shape": [1, 64], "name": "mine"}
    interp.save(positional_1d, path, meta=meta)
    model, info = interp.load(path)
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(60, 1, 64, generator=gen)
    y = torch.arange(60) % 3
    res = fix(model, x, y, strategies="pool-head", shifts=[0, 8], info=info, out=tmp_path)
    _, info2 = interp.load(res.remedy("pool-head").path)
    assert info2.classes == ("a", "b", "c")
    assert info2.meta["name"] == "mine-pool-head"
    assert Path(res.remedy("pool-head").path).name == "mine-pool-head.pt"


def test_refusals_are_one_line(pooled_1d, positional_1d):
    x = torch.randn(30, 1, 64)
    y = torch.arange(30) % 3
    with pytest.raises(InterpError, match=r"^nothing to pool: ") as err:
        fix(pooled_1d, x, y, strategies="pool-head", shifts=[0])
    assert "\n" not in str(err.value)
    with pytest.raises(InterpError, match="no training data") as err:
        fix(positional_1d, strategies="pool-head")
    assert "\n" not in str(err.value)
    with pytest.raises(InterpError, match=r"labels 0\.\.3 but the model has 3 outputs"):
        fix(positional_1d, x, torch.arange(30) % 4, strategies="pool-head", shifts=[0])
    with pytest.raises(InterpError, match="no example of class 2"):
        fix(positional_1d, x, torch.arange(30) % 2, strategies="pool-head", shifts=[0])
    with pytest.raises(InterpError, match="do not match the model's"):
        fix(positional_1d, x, y, strategies="pool-head", shifts=[0], train_classes=["c", "b", "a"],
            info=type("I", (), {"classes": ("a", "b", "c")})())  # fmt: skip
    with pytest.raises(InterpError, match="is not a remedy"):
        fix(positional_1d, x, y, strategies="pool")
    nopool = nn.Sequential(nn.Conv1d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(124, 3))
    with pytest.raises(InterpError, match=r"^nothing to blur: "):
        fix(nopool, x, y, strategies="blur", shifts=[0])


class _Custom(nn.Module):
    """Not a Sequential: conv -> relu -> flatten -> fc in a forward."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 3, 5)
        self.fc = nn.Linear(3 * 28, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def test_pool_head_on_a_custom_class_equals_manual_pooling():
    torch.manual_seed(0)
    model = _Custom().eval()
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(40, 1, 32, generator=gen)
    y = torch.arange(40) % 2
    res = fix(model, x, y, strategies="pool-head", shifts=[0, 4])
    fixed = res.remedy("pool-head").model
    head = fixed.head
    with torch.no_grad():
        fmap = torch.relu(model.conv(x))
        pooled = fmap.amax(-1) if isinstance(head[0], nn.AdaptiveMaxPool1d) else fmap.mean(-1)
        assert torch.allclose(fixed(x), head[-1](pooled), atol=1e-6, rtol=1e-6)


def test_cli_fix_and_its_refusal(positional_1d, pooled_1d, tmp_path):
    from interp.cli.main import main

    gen = torch.Generator().manual_seed(9)
    x = torch.randn(60, 1, 64, generator=gen).numpy()
    y = (np.arange(60) % 3).astype(np.int64)
    data = tmp_path / "train.npz"
    np.savez(data, x=x, y=y)
    good, bad = tmp_path / "good.pt", tmp_path / "pooled.pt"
    interp.save(positional_1d, good, meta={"input_shape": [1, 64]})
    interp.save(pooled_1d, bad, meta={"input_shape": [1, 64]})
    runner = CliRunner()
    out = tmp_path / "out"
    result = runner.invoke(main, ["fix", str(good), "--train-data", str(data), "--strategy",
                                  "pool-head", "--shifts", "-8:8:4", "--out", str(out)],
                           catch_exceptions=False)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (out / "good-pool-head.pt").exists() and (out / "fix.json").exists()
    assert "pool-head" in result.output
    args = ["fix", str(bad), "--train-data", str(data), "--strategy", "pool-head"]
    result = runner.invoke(main, [*args, "--out", str(tmp_path / "out2")], catch_exceptions=False)
    assert result.exit_code == 2
    assert result.output.startswith("Error: nothing to pool: ")
    assert result.output.count("\n") == 1
    result = runner.invoke(main, ["fix", str(good), "--strategy", "pool-head"],
                           catch_exceptions=False)  # fmt: skip
    assert result.exit_code == 2 and "no training data" in result.output


@pytest.mark.slow
def test_seed_cnn_pool_head_holds_over_3000_hz(tmp_path):
    model, info = interp.load(ROOT / "trained" / "seed_cnn.pt")
    res = fix(model, info=info, strategies="pool-head", shifts=range(-3000, 3001, 500),
              out=tmp_path)  # fmt: skip
    r = res.remedy("pool-head")
    assert r.accuracy_at_0 >= 0.95
    assert min(r.sweep.accuracy) >= 0.90
    assert res.original_worst <= 0.5
    assert r.path is not None and "Use pool-head" in res.recommendation


def test_augment_tunes_only_the_head_and_holds_over_the_failing_range():
    """The spike model's head reads positions 10..20 only; a Linear over every position
    can separate the classes (a weight of 1 on every position of kernel 0 for class 0, of
    kernel 1 for class 1), so fine-tuning it on shifted spikes must reach every shift."""
    model = _spike_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = _spikes(120)
    xt, yt = _spikes(40, seed=1)
    res = fix(model, x, y, x_test=xt, y_test=yt, strategies="augment", shifts=range(-16, 17))
    r = res.remedy("augment")
    assert res.failing_range is not None and res.original_worst < 0.75
    assert r.worst_accuracy >= 0.95 and r.accuracy_at_0 == 1.0
    fixed = r.model.state_dict()
    assert torch.equal(fixed["0.weight"], before["0.weight"])  # the trunk is frozen
    assert not torch.equal(fixed["3.weight"], before["3.weight"])
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    again = fix(model, x, y, x_test=xt, y_test=yt, strategies="augment", shifts=range(-16, 17))
    assert torch.equal(again.remedy("augment").model.state_dict()["3.weight"], fixed["3.weight"])


def test_augment_head_path_equals_the_model_forward(positional_1d):
    """Head-only training runs the trunk once under no_grad and the head on its output:
    the logits must be the model's own, and only head parameters may get gradients."""
    from interp.geometry import structure
    from interp.remedies.augment import _prepare, _Split

    gen = torch.Generator().manual_seed(3)
    x = torch.randn(6, 1, 64, generator=gen)
    geo = structure(positional_1d, x[:1])
    params = _prepare(positional_1d, geo, whole=False)
    split = _Split(positional_1d, geo, whole=False)
    assert split.trunk is not None
    positional_1d.eval()
    logits = split.logits(split.features(x))
    assert torch.equal(logits, positional_1d(x))
    logits.sum().backward()
    head_ids = {id(p) for p in params}
    for p in positional_1d.parameters():
        assert (p.grad is not None) == (id(p) in head_ids)


def test_augment_streams_fresh_examples_from_a_draw():
    """With a recipe-like ``draw``, every batch is new examples (distinct seeds), and as
    many are drawn per epoch as the training set holds."""
    from interp.geometry import structure
    from interp.remedies import augment as aug

    model = _spike_model()
    x, y = _spikes(64)
    xv, yv = _spikes(32, seed=1)
    seeds: list[int] = []

    def draw(n: int, s: int) -> tuple[torch.Tensor, torch.Tensor]:
        seeds.append(s)
        return _spikes(n, seed=s)

    geo = structure(model, x[:1])
    _m, _s, notes, fits = aug.augment(model, geo, x, y, xv, yv, [(-16, 16)], draw=draw, seed=1)
    assert len(seeds) == len(set(seeds)) > 0
    epochs = len(seeds) // -(-len(x) // aug.BATCH)
    assert len(seeds) == epochs * -(-len(x) // aug.BATCH)
    assert f"{epochs * len(x):,} fresh examples" in notes[0]
    # The note's numbers are the fit's, which report.json carries (fix.extra.training)
    (fit,) = fits
    assert fit["examples"] == epochs * len(x) and fit["fresh_examples"] is True
    assert (fit["stopped_after_epoch"] or fit["epochs"]) == epochs
    assert f"{100 * fit['best_held_out_accuracy']:.1f}%" in notes[0]


@pytest.mark.parametrize("p", [0.25, 0.5, 0.1])
def test_training_dropout_keeps_each_element_with_probability_1_minus_p(p):
    """augment's training Dropout: a Bernoulli(1 - p) keep mask scaled by 1 / (1 - p), as
    nn.Dropout; checked by the law (kept = x / (1 - p), others 0) and a 6-sigma binomial
    bound on the kept fraction, in every 16-bit lane of its 64-bit draws (p to 16 bits)."""
    from interp.remedies.augment import _Dropout

    drop = _Dropout(p).train()
    assert abs(round(p * 65536) / 65536 - p) <= 2**-17  # p, to 16 bits
    p = round(p * 65536) / 65536
    torch.manual_seed(0)
    x = torch.rand(64, 4097) + 0.5  # no zeros, so a dropped element is recognisable
    out = drop(x)
    kept = out != 0
    torch.testing.assert_close(out[kept], x[kept] / (1 - p), rtol=1e-6, atol=0)
    n = kept.numel()
    sigma = (p * (1 - p) / (n / 4)) ** 0.5
    flat = kept.flatten()
    for lane in range(4):
        assert abs(flat[lane::4].float().mean().item() - (1 - p)) < 6 * sigma
    assert torch.equal(drop.eval()(x), x)


def test_augment_saves_the_models_own_dropout_modules():
    model = nn.Sequential(nn.Conv1d(1, 2, 3, padding=1, padding_mode="circular"), nn.ReLU(),
                          nn.Dropout(0.3), nn.Flatten(), nn.Linear(64, 2)).eval()  # fmt: skip
    x, y = _spikes(64)
    xt, yt = _spikes(32, seed=1)
    res = fix(model, x, y, x_test=xt, y_test=yt, strategies="augment", shifts=range(-16, 17))
    fixed = res.remedy("augment").model
    assert [type(m) for m in fixed] == [type(m) for m in model]
    assert fixed[2].p == 0.3 and not fixed.training


def test_weight_average_is_the_bias_corrected_mean_of_the_iterates():
    """augment keeps the average of its steps: sum_t d^(T-t) (1 - d) w_t / (1 - d^T), a
    weighted mean of the trained iterates only (not the starting weights), and training
    continues from the raw weights once the average has been looked at."""
    from interp.remedies.augment import _Average

    w = nn.Parameter(torch.tensor([5.0, -1.0], dtype=torch.float64))
    avg = _Average([w], horizon=4)
    d = 1 - 1 / 4
    with avg.swapped():  # no step yet: the weights as they are
        assert torch.equal(w.detach(), torch.tensor([5.0, -1.0], dtype=torch.float64))
    iterates = [torch.tensor([float(t), 2.0 * t], dtype=torch.float64) for t in range(1, 7)]
    for it in iterates:
        with torch.no_grad():
            w.copy_(it)
        avg.update()
    big_t = len(iterates)
    weights = [d ** (big_t - t) * (1 - d) for t in range(1, big_t + 1)]
    want = sum(c * it for c, it in zip(weights, iterates, strict=True)) / (1 - d**big_t)
    assert abs(sum(weights) / (1 - d**big_t) - 1) < 1e-12  # a mean: the weights sum to 1
    with avg.swapped():
        torch.testing.assert_close(w.detach(), want, rtol=0, atol=1e-12)
    assert torch.equal(w.detach(), iterates[-1])  # back to the raw weights
