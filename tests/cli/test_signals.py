"""SIGINT/SIGTERM through a real `interp` process: one line, exit 130/143, nothing left."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from torch import nn

import interp

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")

ENTRY = "from interp.cli.main import main; main()"  # what the console script runs


def _caught(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` (SigCgt in /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def _wait_until(proc: subprocess.Popen, ready) -> None:  # type: ignore[type-arg]
    deadline = time.monotonic() + 60  # a bound on a hung child, not a timing assertion
    while not ready():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "child never got there"
        time.sleep(0.005)


def _start(args: list[str], cwd: Path) -> subprocess.Popen:  # type: ignore[type-arg]
    return subprocess.Popen([sys.executable, "-c", ENTRY, *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


@pytest.fixture
def long_sweep(tmp_path: Path) -> list[str]:
    """A sweep that runs for a good while: brute force, many examples and shifts."""
    model = nn.Sequential(nn.Conv1d(1, 4, 7, padding=3), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 64, 3))  # fmt: skip
    interp.save(model, tmp_path / "m.pt", meta={"input_shape": [1, 64]})
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.random((20000, 1, 64), np.float32),
             y=rng.integers(0, 3, 20000))  # fmt: skip
    return ["sweep", "m.pt", "--data", "d.npz", "--samples", "20000", "--engine", "brute",
            "--shifts", "-63:63:1"]  # fmt: skip


def test_sigint_during_start_up_is_one_line_and_130(tmp_path, long_sweep):
    proc = _start(long_sweep, tmp_path)
    # The handlers are in place (SIGTERM caught) while imports are still running.
    _wait_until(proc, lambda: _caught(proc.pid, signal.SIGTERM))
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err == "Interrupted.\n" and out == ""


def test_start_up_catches_signals_before_the_command_line_is_imported():
    """The handler is in place once `interp` starts importing, before click and the
    command line (tens of ms); a program that only imports interp keeps its handlers."""
    probe = (
        "import signal, sys\nimport interp\n"
        "print(signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL, 'click' in sys.modules)\n"
    )
    cli = subprocess.run([sys.executable, "-c", probe + "from interp.cli.main import main\n"],
                         capture_output=True, text=True, check=True, timeout=120)  # fmt: skip
    plain = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                           check=True, timeout=120)  # fmt: skip
    assert cli.stdout.split() == ["True", "False"]
    assert plain.stdout.split() == ["False", "False"]


def test_sigint_at_any_moment_of_start_up_never_prints_a_traceback(tmp_path):
    """The console script itself, interrupted every 5 ms from its spawn until the command
    runs: whenever interp's handler was in place (SIGTERM caught), `Interrupted.` and 130.

    Earlier, no code of interp has run yet (the interpreter's own start, its `site`, the
    console script's `import re`): what Python does then is not ours to word.
    """
    script = Path(sys.executable).with_name("interp")
    if not script.exists():
        pytest.skip("the `interp` console script is not installed next to this python")
    model = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 14, 2))
    interp.save(model, tmp_path / "m.pt", meta={"input_shape": [1, 16]})
    ours = 0
    for step in range(25):  # 0 to 120 ms after the spawn
        proc = subprocess.Popen([str(script), "inspect", "m.pt"], cwd=tmp_path, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        time.sleep(step * 0.005)
        ready = False  # interp's handler was in place; once added, it stays until exit
        with contextlib.suppress(OSError):  # the process is gone: killed before Python ran
            ready = _caught(proc.pid, signal.SIGTERM)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        if not ready:
            continue
        ours += 1
        assert "Traceback" not in err, (step, err)
        assert (proc.returncode, err, out) == (130, "Interrupted.\n", ""), step
    assert ours > 0, "every signal came before interp started: nothing was tested"


def test_sigterm_mid_run_is_one_line_and_143(tmp_path, long_sweep):
    proc = _start(long_sweep, tmp_path)
    maps = Path(f"/proc/{proc.pid}/maps")
    _wait_until(proc, lambda: "libtorch" in maps.read_text())  # torch is loaded: running
    os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert err == "Interrupted.\n" and out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz", "m.pt"]  # nothing left


def test_sigterm_while_writing_a_report_leaves_no_temporary(tmp_path):
    model = nn.Sequential(nn.Conv1d(1, 2, 5, padding=2), nn.ReLU(), nn.Flatten(),
                          nn.Linear(2 * 32, 2))  # fmt: skip
    interp.save(model, tmp_path / "m.pt", meta={"input_shape": [1, 32]})
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.random((40, 1, 32), np.float32), y=rng.integers(0, 2, 40))
    proc = _start(["report", "m.pt", "--data", "d.npz", "--out", "out", "--quiet"], tmp_path)
    _wait_until(proc, lambda: "libtorch" in Path(f"/proc/{proc.pid}/maps").read_text())
    time.sleep(0.5)  # somewhere in the analyses or the write; either must clean up
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    left = sorted(p.name for p in tmp_path.iterdir())
    if proc.returncode == 0:  # finished first: the whole report, nothing else
        assert left == ["d.npz", "m.pt", "out"]
    else:
        assert proc.returncode == 143 and err.endswith("Interrupted.\n"), err
        assert left in (["d.npz", "m.pt"], ["d.npz", "m.pt", "out"]), left


def test_an_interruption_inside_an_import_is_raised_after_it(tmp_path, monkeypatch):
    # Raising through an import can cross C++ module initialisation (torch.distributed's
    # _c10d_init) and abort the process; the handler defers the raise until the import
    # has returned. The module below plays a signal arriving during its own import.
    from interp.cli import main as cli_main

    (tmp_path / "interp_signal_probe.py").write_text(
        "import sys\nfrom interp.cli import main as m\nm._received.append(15)\n"
        "m._raise_when_safe(sys._getframe())\nRETURNED = True\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    alarm = signal.getsignal(signal.SIGALRM)
    try:
        import interp_signal_probe  # must not raise here

        assert interp_signal_probe.RETURNED
        with pytest.raises(cli_main.Interrupted) as caught:
            time.sleep(2)  # the 20 ms retry fires here, outside any import
        assert caught.value.exit_code == 143
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, alarm)
        cli_main._received.clear()
        sys.modules.pop("interp_signal_probe", None)
