"""Nothing half-written: reports appear whole or not at all, even interrupted or on a full disk.

Oracles: the bytes of the old report, and the directory listing (no temporary
leftovers). Interruptions are real: SIGINT to a subprocess, RLIMIT_FSIZE for a
full disk.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from interp.errors import InterpError
from interp.reporting import write as _write
from interp.reporting.write import clean_stale, temp_name, write_tree

ROOT = Path(__file__).resolve().parents[1]
OLD = {"report.json": b'{"old": true}\n', "report.html": b"<p>old</p>",
       "report.md": b"old", "figures/a.png": b"old png"}  # fmt: skip
NEW = {"report.json": b'{"new": true}\n', "report.html": b"<p>new</p>" * 1000,
       "report.md": b"new", "figures/b.png": b"new png"}  # fmt: skip


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".interp-" in p.name)


def test_writes_all_files_and_no_temporaries(tmp_path):
    out = write_tree(tmp_path / "r", NEW)
    assert _tree(out) == NEW
    assert _leftovers(tmp_path) == []


def test_existing_report_is_refused_without_force_and_replaced_with_it(tmp_path):
    write_tree(tmp_path / "r", OLD)
    with pytest.raises(InterpError, match=r"already holds a report; pass --force"):
        write_tree(tmp_path / "r", NEW)
    assert _tree(tmp_path / "r") == OLD
    write_tree(tmp_path / "r", NEW, force=True)
    assert _tree(tmp_path / "r") == NEW  # figures/a.png is gone: replaced, not merged
    assert _leftovers(tmp_path) == []


def test_a_directory_with_other_files_is_never_replaced(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "notes.txt").write_text("mine")
    with pytest.raises(InterpError, match=r"not part of a report.*'notes.txt'"):
        write_tree(tmp_path / "r", NEW, force=True)
    assert (tmp_path / "r" / "notes.txt").read_text() == "mine"
    (tmp_path / "f").write_text("a file")
    with pytest.raises(InterpError, match="not a directory"):
        write_tree(tmp_path / "f", NEW)


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_failure_mid_write_leaves_the_old_report(tmp_path, monkeypatch, error):
    write_tree(tmp_path / "r", OLD)
    real, calls = _write._write_file, []

    def failing(path: Path, data: bytes) -> None:
        calls.append(path)
        if len(calls) == 2:
            raise error
        real(path, data)

    monkeypatch.setattr(_write, "_write_file", failing)
    expected = InterpError if isinstance(error, OSError) else KeyboardInterrupt
    with pytest.raises(expected) as info:
        write_tree(tmp_path / "r", NEW, force=True)
    if expected is InterpError:
        assert "No space left on device" in str(info.value) and "free disk space" in str(info.value)
    assert len(calls) == 2
    assert _tree(tmp_path / "r") == OLD
    assert _leftovers(tmp_path) == []


def test_stale_temporaries_of_dead_runs_are_cleaned(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    pid = int(dead.stdout)
    stale_tmp = tmp_path / f".r.interp-tmp-{pid}-0123abcd"
    stale_old = tmp_path / f".gone.interp-old-{pid}-89abcdef"
    live = tmp_path / temp_name("r", "tmp")  # this process: still running, kept
    for d in (stale_tmp, stale_old, live):
        d.mkdir()
        (d / "report.json").write_bytes(b"{}")
    unrelated = tmp_path / ".r.interp-tmp-notapid"
    unrelated.mkdir()
    cleaned = clean_stale(tmp_path)
    assert set(cleaned) == {stale_tmp, stale_old}
    assert not stale_tmp.exists() and not stale_old.exists()
    assert (tmp_path / "gone" / "report.json").exists()  # an aside report whose target vanished
    assert live.exists() and unrelated.exists()


# --- real interruptions in a subprocess ------------------------------------------------

RUN_CLI = """
import sys
sys.path.insert(0, {root!r})
from interp.cli.main import main
sys.exit(main(sys.argv[1:], prog_name="interp", standalone_mode=True))
"""


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    from interp.loading.core import save

    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Conv1d(1, 2, 3), nn.ReLU(), nn.AdaptiveMaxPool1d(1), nn.Flatten(),
                          nn.Linear(2, 2)).eval()  # fmt: skip
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    save(model, path, meta={"input_shape": [1, 16], "classes": ["a", "b"]})
    return path


def _cli(args: list[str], *, preamble: str = "", limit_bytes: int | None = None,
         **kw) -> subprocess.Popen:  # fmt: skip
    script = textwrap.dedent(preamble) + RUN_CLI.format(root=str(ROOT))

    def limit() -> None:
        if limit_bytes is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}  # tiny model
    return subprocess.Popen([sys.executable, "-c", script, *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=limit, **kw)  # fmt: skip


def _old_report(out: Path) -> dict[str, bytes]:
    write_tree(out, OLD)
    return _tree(out)


def test_full_disk_leaves_the_old_report_and_no_temporaries(tmp_path, model_file):
    out = tmp_path / "report"
    before = _old_report(out)
    # Files above 4 kB fail with EFBIG (Python ignores SIGXFSZ): report.html cannot be written.
    proc = _cli(["report", str(model_file), "--out", str(out), "--force", "--samples", "4",
                 "--shifts", "-2:2:2", "--quiet"], limit_bytes=4_000)  # fmt: skip
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2, stderr
    assert stderr.startswith("Error: could not write the report") and "File too large" in stderr
    assert _tree(out) == before
    assert _leftovers(tmp_path) == []


SLOW_WRITE = """
import sys, time
sys.path.insert(0, {root!r})
from interp.reporting import write as _write
real = _write._write_file
def slow(path, data):
    real(path, data)
    print("WROTE", path, flush=True)
    time.sleep(60)
_write._write_file = slow
"""


def test_sigint_while_writing_exits_130_and_leaves_the_old_report(tmp_path, model_file):
    out = tmp_path / "report"
    before = _old_report(out)
    proc = _cli(["report", str(model_file), "--out", str(out), "--force", "--samples", "4",
                 "--shifts", "-2:2:2", "--quiet"],
                preamble=SLOW_WRITE.format(root=str(ROOT)))  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until the first file of the new report is written
    assert line.startswith("WROTE"), proc.communicate(timeout=60)
    assert _leftovers(tmp_path), "the new report is being built in a temporary directory"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Interrupted" in stderr
    assert _tree(out) == before
    assert _leftovers(tmp_path) == []


def test_sigkill_leftovers_are_removed_by_the_next_run(tmp_path, model_file):
    out = tmp_path / "report"
    proc = _cli(["report", str(model_file), "--out", str(out), "--samples", "4",
                 "--shifts", "-2:2:2", "--quiet"],
                preamble=SLOW_WRITE.format(root=str(ROOT)))  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().startswith("WROTE")
    proc.kill()  # no finally runs: the temporary directory stays behind
    proc.communicate(timeout=60)
    assert _leftovers(tmp_path) and not out.exists()  # nothing half-written at the target
    deadline = time.time() + 10
    while time.time() < deadline and _write._alive(proc.pid):
        time.sleep(0.1)
    write_tree(out, NEW)
    assert _tree(out) == NEW and _leftovers(tmp_path) == []
