"""The library's loading, data, unit and Ray features, reached from the command line.

Oracles: arrays built by hand (PIL, numpy) and swept from a plain .npz; parameter
counts and unit conversions computed in the test; the library's own refusals,
which the CLI must pass on as one line, exit 2.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result
from torch import nn

import interp
from interp.cli.main import main


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


def _one_error(result: Result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv1d(1, 2, 5, padding=2), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3)
    ).eval()


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """m.pt (1, 32) -> 3 classes; d.npz and the same rows as x.npy / y.npy."""
    interp.save(_net(), tmp_path / "m.pt", meta={"input_shape": [1, 32]})
    gen = np.random.default_rng(0)
    x = gen.normal(size=(24, 1, 32)).astype(np.float32)
    y = np.arange(24) % 3
    np.savez(tmp_path / "d.npz", x=x, y=y)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    return {k: tmp_path / v for k, v in
            {"model": "m.pt", "npz": "d.npz", "x": "x.npy", "y": "y.npy"}.items()}  # fmt: skip


def _sweep_json(runner: CliRunner, *args: object) -> dict:
    result = _ok(runner.invoke(main, ["sweep", *map(str, args), "--json", "--quiet"],
                               catch_exceptions=False))  # fmt: skip
    return json.loads(result.stdout)["sweep"]


# --- 1. --max-memory ---------------------------------------------------------------------


def test_max_memory_refuses_a_data_file_over_it_and_a_bad_size(runner, files, tmp_path):
    big = tmp_path / "big.npz"  # 2048 x 32 float32: 256 KiB of x, the model file far less
    np.savez(big, x=np.zeros((2048, 1, 32), np.float32), y=np.zeros(2048, np.int64))
    assert files["model"].stat().st_size < 32 * 2**10
    args = ["sweep", files["model"], "--data", big, "--shifts", "0"]
    line = _one_error(runner.invoke(main, [*map(str, args), "--max-memory", "64K"]))
    assert str(big) in line and "64 KiB" in line
    _ok(runner.invoke(main, [*map(str, args), "--max-memory", "64M", "-q"]))
    line = _one_error(runner.invoke(main, [*map(str, args), "--max-memory", "lots"]))
    assert line == "Error: `--max-memory` 'lots' is not a size; write it like 8G, 512M or 2.5GiB"


def test_max_memory_applies_to_the_model_file(runner, files):
    line = _one_error(runner.invoke(main, ["inspect", str(files["model"]), "--max-memory", "1K"]))
    assert str(files["model"]) in line


# --- 2. --arch-kwargs, compare with one --arch per model ----------------------------------

FACTORIES = """
from torch import nn

def small(width=2, classes=3):
    return nn.Sequential(nn.Conv1d(1, width, 5, padding=2), nn.ReLU(), nn.Flatten(),
                         nn.Linear(width * 32, classes))

def pooled(width=2, classes=3):
    return nn.Sequential(nn.Conv1d(1, width, 5, padding=2), nn.ReLU(),
                         nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(width, classes))
"""


@pytest.fixture
def factories(tmp_path, monkeypatch) -> dict[str, Path]:
    """clinets.py on sys.path; small(width=4), small() and pooled() weights as state dicts."""
    (tmp_path / "clinets.py").write_text(textwrap.dedent(FACTORIES))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "clinets", raising=False)
    import clinets  # type: ignore[import-not-found]

    torch.manual_seed(1)
    out = {"small4": tmp_path / "small4.pt", "small": tmp_path / "small.pt",
           "pooled": tmp_path / "pooled.pt"}  # fmt: skip
    torch.save(clinets.small(width=4).state_dict(), out["small4"])
    torch.save(clinets.small().state_dict(), out["small"])
    torch.save(clinets.pooled().state_dict(), out["pooled"])
    return out


def test_arch_kwargs_reach_the_factory(runner, factories):
    path = str(factories["small4"])
    args = ["inspect", path, "--arch", "clinets:small", "--arch-kwargs", "width=4,classes=3",
            "--input-shape", "1,32", "--json"]
    result = _ok(runner.invoke(main, args))
    # conv 4 x (1 x 5) + 4, linear (4 x 32) x 3 + 3: counted by hand
    assert json.loads(result.stdout)["model"]["parameters"] == 4 * 5 + 4 + 4 * 32 * 3 + 3
    line = _one_error(runner.invoke(main, ["inspect", path, "--arch", "clinets:small"]))
    assert "does not fit" in line  # the default width=2 is not these weights
    line = _one_error(runner.invoke(main, ["inspect", path, "--arch", "clinets:small",
                                           "--arch-kwargs", "width=__import__('os')"]))  # fmt: skip
    assert line.startswith("Error: `--arch-kwargs` value") and "not a literal" in line
    line = _one_error(runner.invoke(main, ["inspect", path, "--arch-kwargs", "width=4"]))
    assert "`--arch-kwargs`" in line and "--arch" in line


def test_compare_takes_an_arch_per_model(runner, factories, files, tmp_path):
    a, b = str(factories["small"]), str(factories["pooled"])
    common = ["--data", str(files["npz"]), "--samples", "8", "--shifts", "0,4", "--quiet",
              "--method", "saliency"]  # fmt: skip
    per_model = ["--arch", "clinets:small", "--arch", "clinets:pooled"]
    line = _one_error(runner.invoke(main, ["compare", a, b, *per_model, "--arch", "x:y",
                                           *common]))  # fmt: skip
    assert "`--arch` given 3 times for 2 models" in line
    line = _one_error(runner.invoke(main, ["compare", a, b, "--arch", "clinets:small", *common,
                                           "--out", str(tmp_path / "c0")]))  # fmt: skip
    assert "pooled.pt" in line and "does not fit" in line  # one --arch for both: not pooled's
    line = _one_error(runner.invoke(main, ["compare", f"{a}::clinets:small", b, *per_model,
                                           *common]))  # fmt: skip
    assert "use one of the two" in line
    names = {}
    for i, form in enumerate(([a, b, *per_model], [f"{a}::clinets:small", f"{b}::clinets:pooled",
                                                  "--arch-kwargs", "classes=3"])):  # fmt: skip
        out = tmp_path / f"c{i + 1}"
        _ok(runner.invoke(main, ["compare", *form, *common, "--out", str(out)],
                          catch_exceptions=False))  # fmt: skip
        content = json.loads((out / "report.json").read_text())
        heads = [m["structure"]["head"]["kind"] for m in content["models"]]
        names[i] = heads
    assert names[0] == names[1] == ["positional", "pooled"]  # each model built by its factory
    line = _one_error(runner.invoke(main, ["compare", f"{factories['small4']}::clinets:small",
                                           f"{b}::clinets:pooled", "--arch-kwargs", "width=4",
                                           *common]))  # fmt: skip
    assert "pooled.pt" in line and "does not fit" in line  # width=4 reached pooled's factory too


# --- 3. writability -----------------------------------------------------------------------


def test_fix_checks_out_before_opening_the_model(runner, tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    line = _one_error(runner.invoke(main, ["fix", str(junk), "--out", str(blocker / "fixed")]))
    assert f"{str(blocker)!r} is not a directory" in line
    done = tmp_path / "done"
    done.mkdir()
    (done / "fix.json").write_text("{}")
    line = _one_error(runner.invoke(main, ["fix", str(junk), "--out", str(done)]))
    assert "fix.json" in line and "--force" in line
    line = _one_error(runner.invoke(main, ["fix", str(junk), "--out", str(done), "--force"]))
    assert "junk.pt" in line  # past the check, the model itself is refused


def test_fix_default_out_is_a_new_folder_here(runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "interp-fix-junk").mkdir()
    (tmp_path / "interp-fix-junk" / "junk-blur.pt").write_text("old")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    line = _one_error(runner.invoke(main, ["fix", "junk.pt", "--strategy", "blur"]))
    assert "interp-fix-junk/junk-blur.pt" in line and "--force" in line


def test_the_cli_has_one_out_check():
    from interp._write import check_writable
    from interp.cli import _options

    assert _options.check_writable is check_writable
    sources = "".join(p.read_text() for p in Path(_options.__file__).parent.glob("*.py"))
    assert "TemporaryFile" not in sources and "mkstemp" not in sources  # no writer of its own


# --- 4. data forms ------------------------------------------------------------------------


def test_npy_pair_sweeps_like_the_npz(runner, files):
    by_npz = _sweep_json(runner, files["model"], "--data", files["npz"], "--shifts", "-8:8:4")
    by_npy = _sweep_json(runner, files["model"], "--data", files["x"], "--labels", files["y"],
                         "--shifts", "-8:8:4")  # fmt: skip
    assert by_npy["accuracy"] == by_npz["accuracy"] and by_npy["n"] == by_npz["n"] == 24


def _image_folder(root: Path) -> dict[str, list[np.ndarray]]:
    from PIL import Image

    gen = np.random.default_rng(3)
    images: dict[str, list[np.ndarray]] = {}
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        images[name] = []
        for i in range(3):
            rgb = (gen.random((10, 12, 3)) * 255).astype(np.uint8)
            Image.fromarray(rgb).save(root / name / f"{i}.png")
            images[name].append(rgb)
    return images


def test_image_folder_with_resize_grayscale_normalize_sweeps_like_hand_made_arrays(
    runner, tmp_path
):
    from PIL import Image

    images = _image_folder(tmp_path / "imgs")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(),
                        nn.Linear(2 * 8 * 8, 2)).eval()  # fmt: skip
    interp.save(net, tmp_path / "img.pt", meta={"input_shape": [1, 8, 8]})
    rows, labels = [], []
    for k, name in enumerate(sorted(images)):  # classes by sorted folder name
        for rgb in images[name]:
            gray = Image.fromarray(rgb).convert("L").resize((8, 8), Image.Resampling.BILINEAR)
            rows.append((np.asarray(gray, np.float32)[None] / 255.0 - 0.5) / 0.25)
            labels.append(k)
    np.savez(tmp_path / "hand.npz", x=np.stack(rows), y=np.array(labels))
    shifts = ["--shifts", "y:-2:2;x:-2:2"]
    hand = _sweep_json(runner, tmp_path / "img.pt", "--data", tmp_path / "hand.npz", *shifts)
    folder = _sweep_json(runner, tmp_path / "img.pt", "--data", tmp_path / "imgs", "--resize",
                         "8,8", "--grayscale", "--normalize", "0.5/0.25", *shifts)  # fmt: skip
    assert folder["n"] == 6 and folder["classes"] == ["cat", "dog"]
    for key in ("accuracy", "mean_true_probability"):
        np.testing.assert_allclose(folder[key], hand[key], rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--labels", "{y}"], "Error: `--labels` reads `--data`; pass --data too"),
        (["--data", "{npz}", "--resize", "8"], "'8' is not two positive sizes H,W"),
        (["--data", "{npz}", "--normalize", "0.5"], "'0.5' is not MEAN/STD"),
        (["--data", "{npz}", "--normalize", "0.5/0"], "every STD must be positive"),
        (["--data", "{npz}", "--grayscale"], "apply to image folders; "),
    ],
)
def test_data_form_mistakes_are_one_line(runner, files, args, expected):
    filled = [a.format(y=files["y"], npz=files["npz"]) for a in args]
    line = _one_error(runner.invoke(main, ["sweep", str(files["model"]), *filled]))
    assert expected in line


def test_an_image_folder_without_resize_names_the_odd_image(runner, tmp_path):
    from PIL import Image

    _image_folder(tmp_path / "imgs")
    Image.new("RGB", (5, 5)).save(tmp_path / "imgs" / "dog" / "odd.png")
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(2, 2))  # fmt: skip
    interp.save(model, tmp_path / "m.pt")
    line = _one_error(runner.invoke(main, ["sweep", str(tmp_path / "m.pt"), "--data",
                                           str(tmp_path / "imgs")]))  # fmt: skip
    assert "odd.png" in line and "--resize" in line


# --- 5. Ray -------------------------------------------------------------------------------


def test_ray_missing_is_one_line_before_any_loading(runner, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed: find_spec says None
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    for args in (["sweep", str(junk), "--ray"], ["report", str(junk), "--ray", "host:6379",
                                                 "--out", str(tmp_path / "r")]):  # fmt: skip
        line = _one_error(runner.invoke(main, args))
        assert line == "Error: `--ray` needs Ray, which is not installed; pip install 'interp[ray]'"


@pytest.mark.slow
def test_sweep_on_ray_equals_one_process(runner, files):
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install interp[ray])")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        args = (files["model"], "--data", files["npz"], "--shifts", "-16:16:4")
        here = _sweep_json(runner, *args)
        there = _sweep_json(runner, *args, "--ray")
    finally:
        ray.shutdown()
    for key in ("accuracy", "confusion", "consistency", "n"):
        assert there[key] == here[key], key
    np.testing.assert_allclose(there["mean_true_probability"], here["mean_true_probability"],
                               rtol=1e-12, atol=0)  # fmt: skip


# --- 6. report --fix ----------------------------------------------------------------------


def test_train_data_needs_fix(runner, files, tmp_path):
    args = ["report", str(files["model"]), "--train-data", str(files["npz"]), "--out",
            str(tmp_path / "r")]
    line = _one_error(runner.invoke(main, args))
    assert line == "Error: `--train-data` is what --fix trains the remedies on; pass --fix too"


@pytest.mark.slow
def test_report_fix_with_train_data_adds_the_remedies(runner, files, tmp_path):
    out, model = tmp_path / "r", tmp_path / "pooling.pt"  # a strided pool, so blur applies
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv1d(1, 2, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2, 2),
                        nn.Flatten(), nn.Linear(32, 3)).eval()  # fmt: skip
    interp.save(net, model, meta={"input_shape": [1, 32]})
    _ok(runner.invoke(main, ["report", str(model), "--data", str(files["npz"]),
                             "--fix", "--train-data", str(files["npz"]), "--samples", "8",
                             "--shifts", "0,8", "--method", "saliency", "--quiet",
                             "--out", str(out)], catch_exceptions=False))  # fmt: skip
    content = json.loads((out / "report.json").read_text())
    remedies = [row["remedy"] for row in content["fix"]["table"]]
    assert remedies[0] == "original" and {"pool-head", "augment", "blur"} <= set(remedies)


# --- 7. units -----------------------------------------------------------------------------


def test_unit_and_spacing_set_the_axis_of_every_output(runner, files):
    args = (files["model"], "--data", files["npz"], "--shifts", "-4:4:2")
    sw = _sweep_json(runner, *args, "--unit", "Hz", "--sample-spacing", "0.5")
    assert [dict(a) for a in sw["axis"]] == [{"unit": "Hz", "step": 0.5}]
    text = _ok(runner.invoke(main, ["sweep", *map(str, args), "--unit", "Hz",
                                    "--sample-spacing", "0.5", "-q"])).stdout  # fmt: skip
    for shift in (-4, -2, 0, 2, 4):  # the table's "in units" column: shift x 0.5 Hz
        assert f"{shift * 0.5:g} Hz" in text
    line = _one_error(runner.invoke(main, ["sweep", *map(str, args), "--sample-spacing", "0"]))
    assert "--sample-spacing" in line and "non-zero" in line


def test_unit_keeps_the_checkpoint_axis_name_and_start(runner, files, tmp_path):
    axis = [{"name": "wavelength", "unit": "nm", "start": 400.0, "step": 2.0}]
    interp.save(_net(), tmp_path / "ax.pt", meta={"input_shape": [1, 32], "axis": axis})
    sw = _sweep_json(runner, tmp_path / "ax.pt", "--data", files["npz"], "--shifts", "0,3",
                     "--unit", "um")  # fmt: skip
    assert [dict(a) for a in sw["axis"]] == [{"name": "wavelength", "unit": "um",
                                              "start": 400.0, "step": 2.0}]  # fmt: skip


# --- 8. habits: progress, --quiet, --help -------------------------------------------------


def test_progress_on_a_non_tty_is_plain_lines_and_quiet_silences_it(runner, files):
    args = ["sweep", str(files["model"]), "--data", str(files["npz"]), "--shifts", "-8:8:1"]
    loud = _ok(runner.invoke(main, args))
    lines = loud.stderr.splitlines()
    assert lines and all(line.startswith("progress: shift sweep: ") for line in lines), lines
    assert "\r" not in loud.stderr and "\x1b" not in loud.stderr
    assert _ok(runner.invoke(main, [*args, "--quiet"])).stderr == ""


def test_step_log_writes_one_line_per_step_and_passes_other_text():
    import io

    from tqdm import tqdm

    from interp.cli._common import _StepLog

    sink = io.StringIO()
    log = _StepLog(sink, interval=3600.0)
    log.write("note: x.pt: a note\n")
    bar = tqdm(total=3, file=log, leave=False, mininterval=0)
    for name in ("connectivity", "shifts", "attribution"):
        bar.set_description(name)
        bar.update(1)
    bar.close()
    lines = sink.getvalue().splitlines()
    assert lines[0] == "note: x.pt: a note"
    steps = [line.split(":")[1].strip() for line in lines[1:]]
    # a line as each step starts, and the bar's last state when it ends
    assert steps == ["connectivity", "shifts", "attribution", "attribution"], lines
    assert lines[-1].startswith("progress: attribution: 100% 3/3")


COMMANDS = ("inspect", "report", "sweep", "attribute", "compare", "fix", "train")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_examples_and_states_shift_units_and_default_once(runner, command):
    from interp._util import METHOD_NAMES
    from interp.cli._options import DEFAULT_SHIFTS_RULE

    text = " ".join(_ok(runner.invoke(main, [command, "--help"])).stdout.split())
    assert "Example" in text and f"interp {command} " in text
    if "--shifts" in text:
        assert "Shifts are in input positions (samples, bins or pixels)" in text
        assert text.count(" ".join(DEFAULT_SHIFTS_RULE.split())) == 1
        assert "Default: the full length" not in text  # no second wording of the rule
    if "--method" in text:
        assert ", ".join(METHOD_NAMES) in text and "interp.METHODS" not in text


def test_the_default_shift_rule_is_the_librarys():
    from interp.cli._options import DEFAULT_SHIFTS_RULE
    from interp.shifts import default_shifts

    assert DEFAULT_SHIFTS_RULE in " ".join((default_shifts.__doc__ or "").split())


def test_sweep_does_not_show_data_as_required(runner):
    top = _ok(runner.invoke(main, ["--help"])).stdout
    assert "interp sweep MODEL [--data F]" in top
    assert "[required]" not in _ok(runner.invoke(main, ["sweep", "--help"])).stdout


def test_inspect_takes_data(runner, files):
    result = _ok(runner.invoke(main, ["inspect", str(files["model"]), "--data", str(files["npz"]),
                                      "--json"]))  # fmt: skip
    assert json.loads(result.stdout)["structure"]["input_shape"] == [1, 32]


def test_every_flag_in_the_readme_command_line_section_exists(runner):
    import re

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Command line\n", 1)[1].split("\n## ", 1)[0]
    flags = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", section))
    helps = " ".join(_ok(runner.invoke(main, [c, "--help"])).stdout for c in COMMANDS)
    known = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", helps))
    assert flags and flags <= known, sorted(flags - known)


def test_a_reader_that_leaves_early_ends_the_run_quietly(runner, files, monkeypatch):
    """`interp sweep ... | head -1`: the write fails with EPIPE; exit 141, nothing on stderr.

    In-process (a real pipe's timing decides whether the write ever fails): the first
    line of output meets a reader that has gone.
    """
    import click

    def gone(*args, **kwargs):
        if not kwargs.get("err"):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(click, "echo", gone)
    result = runner.invoke(main, ["sweep", str(files["model"]), "--data", str(files["npz"]),
                                  "--shifts", "0", "-q"])  # fmt: skip
    assert result.exit_code == 141 and result.stderr == ""


def test_sweep_uses_every_row_of_the_data_unless_asked(runner, tmp_path, files):
    """Accuracy at shifts 0 and 3 equals a plain PyTorch loop over all 700 rows."""
    gen = np.random.default_rng(5)
    x = gen.normal(size=(700, 1, 32)).astype(np.float32)
    y = gen.integers(0, 3, 700)
    np.savez(tmp_path / "big.npz", x=x, y=y)
    sw = _sweep_json(runner, files["model"], "--data", tmp_path / "big.npz", "--shifts", "0,3")
    assert sw["n"] == 700
    net = _net()
    with torch.no_grad():
        for i, s in enumerate((0, 3)):
            pred = net(torch.roll(torch.from_numpy(x), s, dims=-1)).argmax(1).numpy()
            assert sw["accuracy"][i] == pytest.approx(float((pred == y).mean()), abs=1e-12)
    sub = _sweep_json(runner, files["model"], "--data", tmp_path / "big.npz", "--shifts", "0",
                      "--samples", "50")  # fmt: skip
    assert sub["n"] == 50


@pytest.mark.slow
def test_report_uses_every_row_of_the_data_unless_asked(runner, tmp_path, files):
    """report's sweep over a 340-row file (more than the old default 300) uses all 340 rows:
    its shift-0 and shift-3 accuracies equal a plain roll-and-argmax loop; --samples 20 takes 20."""
    gen = np.random.default_rng(6)
    x = gen.normal(size=(340, 1, 32)).astype(np.float32)
    y = gen.integers(0, 3, 340)
    np.savez(tmp_path / "big.npz", x=x, y=y)
    net = _net()
    for extra, n in (((), 340), (("--samples", "20"), 20)):
        out = tmp_path / f"r{n}"
        _ok(runner.invoke(main, ["report", str(files["model"]), "--data", str(tmp_path / "big.npz"),
                                 "--shifts", "0,3", "--method", "saliency", "--quiet",
                                 "--out", str(out), *extra], catch_exceptions=False))  # fmt: skip
        sw = json.loads((out / "report.json").read_text())["sweep"]
        assert sw["n"] == n
        if n == 340:
            with torch.no_grad():
                for s, acc in zip(sw["shifts"], sw["accuracy"], strict=True):
                    pred = net(torch.roll(torch.from_numpy(x), s, dims=-1)).argmax(1).numpy()
                    assert acc == pytest.approx(float((pred == y).mean()), abs=1e-12)


def test_sweep_names_the_lowest_shift_by_the_reports_tie_rule(runner, tmp_path, files):
    """Rows alternating in sign: every odd roll gives -x, every even one x, so the odd shifts
    tie. The text names the tied shift the report's rule picks (smallest |s|, then the
    negative one), found here by brute force over a plain PyTorch loop."""
    gen = np.random.default_rng(7)
    sign = (-1.0) ** np.arange(32)
    x = (gen.normal(size=(40, 1, 1)) * sign).astype(np.float32)
    net = _net()
    with torch.no_grad():
        y = net(torch.from_numpy(x)).argmax(1).numpy()  # all right at even shifts
    np.savez(tmp_path / "alt.npz", x=x, y=y)
    shifts = [3, 1, -1, -3, 2, 0, -2]
    acc = {}
    with torch.no_grad():
        for s in shifts:
            pred = net(torch.roll(torch.from_numpy(x), s, dims=-1)).argmax(1).numpy()
            acc[s] = float((pred == y).mean())
    assert acc[1] < 1.0  # the odd shifts really are worse: a tie among 3, 1, -1, -3
    low = min(acc.values())
    expected = min((s for s in shifts if acc[s] == low), key=lambda s: (abs(s), s))
    result = _ok(runner.invoke(main, ["sweep", str(files["model"]), "--data",
                                      str(tmp_path / "alt.npz"), "--shifts",
                                      ",".join(map(str, shifts)), "--quiet"]))  # fmt: skip
    line = next(t for t in result.stdout.splitlines() if t.startswith("lowest accuracy"))
    assert line.startswith(f"lowest accuracy: {low:.1%} at shift {expected} ("), line
    assert "4 shifts tie" in line


def test_units_in_the_data_file_set_the_axis_unless_flags_say_otherwise(runner, tmp_path, files):
    """flags > the data file's `units` / `sample_spacing` / `start` > the checkpoint."""
    with np.load(files["npz"]) as f:
        x, y = f["x"], f["y"]
    np.savez(tmp_path / "hz.npz", x=x, y=y, units="Hz", sample_spacing=0.5, start=-8.0)
    args = (files["model"], "--data", tmp_path / "hz.npz", "--shifts", "-4:4:2")
    sw = _sweep_json(runner, *args)
    assert [dict(a) for a in sw["axis"]] == [{"unit": "Hz", "step": 0.5, "start": -8.0}]
    assert sw["shifts_units"] == [0.5 * s for s in sw["shifts"]]  # by hand: s * spacing
    flagged = _sweep_json(runner, *args, "--unit", "ms")
    assert flagged["axis"][0]["unit"] == "ms" and flagged["axis"][0]["step"] == 0.5
    text = _ok(runner.invoke(main, ["sweep", *map(str, args), "--quiet"])).stdout
    assert "-2 Hz" in text  # shift -4 at 0.5 Hz a position
    np.savez(tmp_path / "bad.npz", x=x, y=y, sample_spacing=0.5)
    line = _one_error(runner.invoke(main, ["sweep", str(files["model"]), "--data",
                                           str(tmp_path / "bad.npz")]))  # fmt: skip
    assert line.startswith("Error: data file") and "no `units`" in line


@pytest.mark.slow
def test_report_takes_its_axis_from_the_data_file(runner, tmp_path, files):
    with np.load(files["npz"]) as f:
        np.savez(tmp_path / "hz.npz", x=f["x"], y=f["y"], units="Hz", sample_spacing=0.5)
    out = tmp_path / "r"
    _ok(runner.invoke(main, ["report", str(files["model"]), "--data", str(tmp_path / "hz.npz"),
                             "--shifts", "0,4", "--method", "saliency", "--quiet",
                             "--out", str(out)], catch_exceptions=False))  # fmt: skip
    content = json.loads((out / "report.json").read_text())
    assert content["axis"] == [{"unit": "Hz", "step": 0.5}]
    assert "+2 Hz" in (out / "report.md").read_text()  # shift 4 at 0.5 Hz a position
