"""The repository keeps its promises to a new user: README and CI agree, CI is honest."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```(?:bash|sh)\n(.*?)\n```", text, flags=re.S)


def test_ci_runs_exactly_the_readme_test_command():
    test_cmds = [c for c in _readme_commands() if "pytest" in c]
    assert test_cmds, "README must give the command that installs and runs the tests"
    ci = (ROOT / ".ci" / "run").read_text().replace("pip install -q ", "pip install ")
    assert test_cmds[0].strip() in ci


def test_readme_main_job_runs_interp_report_on_a_shipped_model():
    main = [c for c in _readme_commands() if "interp report" in c]
    assert main, "README must give the command that runs the main job"
    shipped = re.search(r"interp report (\S+)", main[0])
    assert shipped is not None
    assert (ROOT / shipped.group(1)).exists(), f"{shipped.group(1)} is not in the repository"


def _run_pytest_on(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_x.py").write_text(body)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_undeclared_skip_fails_the_run(tmp_path):
    body = "import pytest\n\ndef test_a():\n    pass\n\ndef test_b():\n    pytest.skip('lazy')\n"
    result = _run_pytest_on(tmp_path, body)
    assert result.returncode == 1, result.stdout
    assert "CI honesty" in result.stdout


def test_declared_skip_passes(tmp_path):
    body = (
        "import pytest\n\ndef test_a():\n    pass\n\n"
        "def test_b():\n    pytest.skip('chromium is not available: apt failed')\n"
    )
    assert _run_pytest_on(tmp_path, body).returncode == 0


def test_no_tests_is_a_failure(tmp_path):
    result = _run_pytest_on(tmp_path, "def helper():\n    pass\n")
    assert result.returncode == 5  # pytest's "no tests ran"; .ci/run has set -e
