"""A remedy that does not apply to the model is skipped with its one-line reason; the
others run as they would alone, and only a request where nothing applies is refused."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import interp
from interp.errors import InterpError
from interp.remedies import fix
from interp.remedies.blur import strided_pools

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reporting"))
from test_sentence_numbers import sections, unmatched

L = 16
BLUR_REASON = (
    "nothing to blur: the model has no strided max or average pooling layer "
    "(strided convolutions are not anti-aliased here)"
)


def _seeded(module: nn.Module, seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return module.eval()


def _no_pool() -> nn.Sequential:
    """Conv1d -> ReLU -> Flatten -> Linear: a positional head, nothing strided to blur."""
    return _seeded(nn.Sequential(nn.Conv1d(1, 3, 5, padding=2), nn.ReLU(), nn.Flatten(),
                                 nn.Linear(3 * L, 2)), 0)  # fmt: skip


def _strided_pool() -> nn.Sequential:
    """Conv1d -> ReLU -> MaxPool1d(2, 2) -> Flatten -> Linear: blur applies."""
    return _seeded(nn.Sequential(nn.Conv1d(1, 3, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2, 2),
                                 nn.Flatten(), nn.Linear(3 * L // 2, 2)), 1)  # fmt: skip


def _pooled_head() -> nn.Sequential:
    """A head that already pools, and no strided pooling: neither pool-head nor blur applies."""
    return _seeded(nn.Sequential(nn.Conv1d(1, 3, 5, padding=2), nn.ReLU(),
                                 nn.AdaptiveMaxPool1d(1), nn.Flatten(),
                                 nn.Linear(3, 2)), 2)  # fmt: skip


def _data(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A positive (class 0) or negative (class 1) spike at a random position."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = 0.05 * torch.randn(n, 1, L, generator=gen)
    pos = torch.randint(4, 12, (n,), generator=gen)
    x[torch.arange(n), 0, pos] += torch.where(y == 0, 1.0, -1.0)
    return x, y


SHIFTS = [-4, 0, 4]


def test_blur_is_skipped_and_pool_head_runs_as_it_does_alone():
    x, y = _data(40)
    xt, yt = _data(16, seed=1)
    model = _no_pool()
    assert strided_pools(model) == []
    kw = dict(x_test=xt, y_test=yt, shifts=SHIFTS, seed=3)
    both = fix(model, x, y, strategies="pool-head,blur", **kw)
    alone = fix(model, x, y, strategies="pool-head", **kw)
    assert [r.name for r in both.remedies] == ["pool-head"]
    assert [(s.name, s.reason) for s in both.skipped] == [("blur", BLUR_REASON)]
    assert alone.skipped == ()
    # The remedy that ran is the one run alone: same sweep, same table row, same sentence.
    ran, ref = both.remedy("pool-head"), alone.remedy("pool-head")
    assert ran.sweep.accuracy == ref.sweep.accuracy
    assert ran.sweep.mean_true_probability == ref.sweep.mean_true_probability

    def untimed(text: str) -> str:  # build times differ from run to run
        return re.sub(r"in \d+\.\d s", "in _ s", text)

    assert untimed(both.recommendation) == untimed(alone.recommendation)
    assert "blur" not in both.recommendation  # only remedies that ran are considered
    with pytest.raises(KeyError, match="blur was skipped: nothing to blur"):
        both.remedy("blur")
    block = both.to_dict()
    assert block["skipped"] == [{"remedy": "blur", "reason": BLUR_REASON}]
    assert [row["remedy"] for row in block["table"]] == ["original", "pool-head"]
    assert f"blur was skipped: {BLUR_REASON}." in block["sentences"]
    assert block["sentences"][-1] == both.recommendation


def test_blur_runs_on_a_strided_max_pool():
    x, y = _data(40)
    model = _strided_pool()
    res = fix(model, x, y, strategies="pool-head,blur", shifts=SHIFTS)
    assert [r.name for r in res.remedies] == ["pool-head", "blur"]
    assert res.skipped == () and res.to_dict()["skipped"] == []
    fixed = res.remedy("blur").model
    assert strided_pools(fixed) == []  # the pooling now has stride 1 ...
    blurs = [m for m in fixed.modules() if isinstance(m, nn.Conv1d) and m.groups > 1]
    assert [b.stride for b in blurs] == [(2,)]  # ... and the stride moved to the blur


def test_a_pooled_head_skips_pool_head_and_still_blurs():
    x, y = _data(40)
    model = _seeded(nn.Sequential(nn.Conv1d(1, 3, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2, 2),
                                  nn.AdaptiveMaxPool1d(1), nn.Flatten(),
                                  nn.Linear(3, 2)), 4)  # fmt: skip
    res = fix(model, x, y, strategies="pool-head,blur", shifts=SHIFTS)
    assert [r.name for r in res.remedies] == ["blur"]
    (skip,) = res.skipped
    assert skip.name == "pool-head"
    assert skip.reason.startswith("nothing to pool: the head of the model already pools")
    assert "\n" not in skip.reason and "use the" not in skip.reason


def test_nothing_that_applies_is_refused_in_one_line():
    x, y = _data(30)
    model = _pooled_head()
    with pytest.raises(InterpError, match=r"^no remedy applies to the model: ") as err:
        fix(model, x, y, strategies="pool-head,blur", shifts=[0])
    msg = str(err.value)
    assert "\n" not in msg
    assert "pool-head: nothing to pool" in msg and "blur: nothing to blur" in msg
    with pytest.raises(InterpError, match=r"^nothing to blur: "):  # asked for blur alone
        fix(_no_pool(), x, y, strategies="blur", shifts=[0])


def test_report_lists_the_skipped_remedy_from_report_json(tmp_path):
    x, y = _data(40)
    # No --data: the report's data sections are left out (their figures are most of its
    # time); fix holds out a seeded 20% of the training data for its sweeps.
    rep = interp.report(_no_pool(), None, shifts="-4:4:4", fix=True, train=(x, y))
    out = rep.save(tmp_path / "report")
    content = json.loads((out / "report.json").read_text())
    md = (out / "report.md").read_text()
    block = content["fix"]
    assert block["skipped"] == [{"remedy": "blur", "reason": BLUR_REASON}]
    assert [r["remedy"] for r in block["table"]] == ["original", "pool-head", "augment"]
    assert block["recommended"] in (None, "pool-head", "augment")
    text = dict(sections(md))["fix"]
    joined = "\n".join(text)
    # The section is there, with blur's row marked skipped and its reason from report.json.
    assert any(line.startswith("| blur ") and "skipped" in line for line in text)
    reason = block["skipped"][0]["reason"]
    assert f"blur was skipped: {reason}." in joined
    assert block["recommendation"] in joined
    assert "blur" not in block["recommendation"]
    # The skip's row and sentence quote no number that report.json does not hold.
    fix_md = "\n".join(['<a id="fix"></a>', *(line for line in text if "skipped" in line)])
    assert fix_md.count("\n") >= 2
    assert unmatched(fix_md, content) == []


def test_cli_fix_prints_the_skip_and_refuses_only_when_nothing_applies(tmp_path):
    from interp.cli.main import main

    x, y = _data(40)
    data = tmp_path / "train.npz"
    np.savez(data, x=x.numpy(), y=y.numpy().astype(np.int64))
    good, pooled = tmp_path / "nopool.pt", tmp_path / "pooled.pt"
    interp.save(_no_pool(), good, meta={"input_shape": [1, L]})
    interp.save(_pooled_head(), pooled, meta={"input_shape": [1, L]})
    runner = CliRunner()
    base = ["--train-data", str(data), "--shifts", "-4:4:4"]
    out = tmp_path / "out"
    result = runner.invoke(main, ["fix", str(good), *base, "--strategy", "pool-head,blur",
                                  "--out", str(out)], catch_exceptions=False)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"blur was skipped: {BLUR_REASON}." in result.output
    assert any(line.split()[:2] == ["blur", "skipped"] for line in result.output.splitlines())
    assert (out / "nopool-pool-head.pt").exists() and not (out / "nopool-blur.pt").exists()
    saved = json.loads((out / "fix.json").read_text())
    assert saved["skipped"] == [{"remedy": "blur", "reason": BLUR_REASON}]
    for args, start in (
        (["fix", str(good), *base, "--strategy", "blur"], "Error: nothing to blur: "),
        (["fix", str(pooled), *base, "--strategy", "pool-head,blur"],
         "Error: no remedy applies to "),
    ):  # fmt: skip
        result = runner.invoke(main, [*args, "--out", str(tmp_path / "o2")],
                               catch_exceptions=False)  # fmt: skip
        assert result.exit_code == 2, result.output
        assert result.output.startswith(start) and result.output.count("\n") == 1
