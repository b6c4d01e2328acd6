"""Nothing half-written: reports appear whole or not at all, even interrupted or on a full disk.

Oracles: the bytes of the old report, and the directory listing (no temporary
leftovers). Interruptions are real: SIGINT to a subprocess, RLIMIT_FSIZE for a
full disk.
"""

from __future__ import annotations

import errno
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

from interp import _write
from interp._write import clean_stale, temp_name, write_tree
from interp.errors import InterpError

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


def _dead_pid() -> int:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(dead.stdout)


def test_stale_temporaries_of_dead_runs_are_cleaned(tmp_path):
    pid = _dead_pid()
    stale_tmp = tmp_path / f".r.interp-tmp-{pid}-0123abcd"
    stale_old = tmp_path / f".gone.interp-old-{pid}-89abcdef"
    live = tmp_path / temp_name("r", "tmp")  # this process: still running, kept
    for d in (stale_tmp, stale_old, live):
        d.mkdir()
        (d / "report.json").write_bytes(b"{}")
        (d / _write.MARKER).write_bytes(d.name.encode())  # as interp itself marks them
    unrelated = tmp_path / ".r.interp-tmp-notapid"
    unrelated.mkdir()
    cleaned = clean_stale(tmp_path)
    assert set(cleaned) == {stale_tmp, stale_old}
    assert not stale_tmp.exists() and not stale_old.exists()
    assert _tree(tmp_path / "gone") == {"report.json": b"{}"}  # put back, marker removed
    assert live.exists() and unrelated.exists()


def test_look_alike_directories_without_interp_marker_are_never_touched(tmp_path):
    # The case: a user's data beside --out, named like a dead run's temporary.
    pid = _dead_pid()
    mine = tmp_path / f".r.interp-tmp-{pid}-0123abcd"
    aside = tmp_path / f".data.interp-old-{pid}-89abcdef"
    forged = tmp_path / f".s.interp-tmp-{pid}-0badf00d"
    for d in (mine, aside, forged):
        d.mkdir()
        (d / "precious.csv").write_text("user data")
    (forged / _write.MARKER).write_bytes(b"some other name")  # a marker for another dir
    before = {d: _tree(d) for d in (mine, aside, forged)}
    write_tree(tmp_path / "r", NEW)
    assert clean_stale(tmp_path) == []
    assert {d: _tree(d) for d in (mine, aside, forged)} == before
    assert not (tmp_path / "data").exists()  # the look-alike was not renamed to 'data'


def test_files_get_the_users_umask_not_0600(tmp_path):
    old = os.umask(0o027)
    try:
        write_tree(tmp_path / "r", NEW)
        _write.write_file(tmp_path / "maps.png", b"png")
    finally:
        os.umask(old)
    assert (tmp_path / "maps.png").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "r" / "report.json").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "r").stat().st_mode & 0o777 == 0o750
    assert _tree(tmp_path / "r") == NEW  # the marker never reaches the report


def test_write_file_refuses_to_replace_without_force_and_replaces_with_it(tmp_path):
    path = tmp_path / "maps.png"
    _write.write_file(path, b"old")
    with pytest.raises(InterpError, match=r"already exists; pass --force"):
        _write.write_file(path, b"new")
    assert path.read_bytes() == b"old"
    _write.write_file(path, b"new", force=True)
    assert path.read_bytes() == b"new" and _leftovers(tmp_path) == []
    with pytest.raises(InterpError, match="is a directory"):
        _write.write_file(tmp_path, b"x", force=True)


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES, errno.EPERM])
def test_read_only_targets_are_one_line_errors_naming_the_path(tmp_path, monkeypatch, code):
    # Simulated (tests may run as root, which ignores mode bits): the OS refuses the create.
    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(_write, "_write_file", refuse)
    monkeypatch.setattr(_write.os, "access", lambda *a, **k: False)
    ro = tmp_path / "ro"
    for call in (lambda: _write.write_file(ro / "a.png", b"x"),
                 lambda: write_tree(ro / "r", NEW),
                 lambda: _write.check_writable(ro / "r")):  # fmt: skip
        with pytest.raises(InterpError) as err:
            call()
        assert str(ro) in str(err.value) and "\n" not in str(err.value), err.value
        assert "choose another location" in str(err.value), err.value
    monkeypatch.undo()
    assert _leftovers(ro) == []


def test_a_disk_error_in_write_file_names_the_path_and_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "maps.png"
    _write.write_file(path, b"old")

    def full(p: Path, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_write, "_write_file", full)
    with pytest.raises(InterpError, match=r"maps\.png.*No space left.*free disk space"):
        _write.write_file(path, b"new", force=True)
    assert path.read_bytes() == b"old" and _leftovers(tmp_path) == []


def test_check_writable_before_any_work(tmp_path):
    write_tree(tmp_path / "r", OLD)
    with pytest.raises(InterpError, match="already holds a report; pass --force"):
        _write.check_writable(tmp_path / "r")
    assert _write.check_writable(tmp_path / "r", force=True) == tmp_path / "r"
    assert _write.check_writable(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # a check creates nothing
    (tmp_path / "file").write_text("x")
    with pytest.raises(InterpError, match="not a directory"):
        _write.check_writable(tmp_path / "file")
    with pytest.raises(InterpError, match="is not a directory"):
        _write.check_writable(tmp_path / "file" / "sub")
    with pytest.raises(InterpError, match="already exists"):
        _write.check_writable(tmp_path / "file", directory=False)
    _write.check_writable(tmp_path / "file", directory=False, force=True)


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
from interp import _write
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
