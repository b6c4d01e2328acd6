"""The package's shape: one folder per concept, a curated export table, cheap imports."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import interp

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "interp"


def _packages() -> list[str]:
    names = ["interp"]
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="interp."):
        if info.ispkg:
            names.append(info.name)
    return names


@pytest.mark.parametrize("name", _packages())
def test_no_export_shares_a_name_with_a_submodule(name):
    package = importlib.import_module(name)
    exported = set(getattr(package, "__all__", ()))
    submodules = {m.name for m in pkgutil.iter_modules(package.__path__)}
    assert not exported & submodules, f"{name} exports names that are also submodules"


@pytest.mark.parametrize("name", [p for p in _packages() if p != "interp"])
def test_concept_init_only_reexports(name):
    """A folder's __init__ is its public face: imports and __all__, no definitions."""
    import ast

    path = Path(importlib.import_module(name).__file__)
    tree = ast.parse(path.read_text())
    for node in tree.body:
        allowed = (ast.Import, ast.ImportFrom, ast.Expr, ast.Assign)
        assert isinstance(node, allowed), f"{path}: {type(node).__name__} in a package face"
        if isinstance(node, ast.Assign):
            assert [t.id for t in node.targets if isinstance(t, ast.Name)] == ["__all__"]


def test_public_names_resolve_to_functions_not_modules():
    for name in interp.__all__:
        value = getattr(interp, name)
        assert not isinstance(value, type(interp)), f"interp.{name} is a module"


def test_few_top_level_modules():
    modules = [p for p in PACKAGE.glob("*.py")]
    assert len(modules) <= 12, sorted(p.name for p in modules)


def test_the_wheel_installs_only_interp():
    text = (ROOT / "pyproject.toml").read_text()
    assert 'packages = ["interp"]' in text
    assert not (ROOT / "cli").exists(), "the click app lives in interp/cli/"


def _imported_after(code: str) -> set[str]:
    probe = (
        f"{code}\nimport sys, json\n"
        "print(json.dumps(sorted(m for m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    import json

    return set(json.loads(out.splitlines()[-1]))


def test_import_interp_is_cheap():
    loaded = _imported_after("import interp")
    for heavy in ("click", "captum", "matplotlib.pyplot", "matplotlib"):
        assert heavy not in loaded, f"`import interp` loads {heavy}"


def test_cli_help_does_not_import_captum():
    code = (
        "import sys\nfrom interp.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
    )
    loaded = _imported_after(code)
    assert "captum" not in loaded
    assert "matplotlib.pyplot" not in loaded


def test_no_global_side_effects_on_import():
    """Importing the figure and report code leaves matplotlib's backend as the user set it."""
    code = (
        "import interp.plots, interp.reporting, interp.plots.sweep, interp.plots.connectivity\n"
        "import interp.plots.attribution, interp.plots.shift_explanation, sys, matplotlib\n"
        "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)\n"
    )
    env = {**__import__("os").environ, "MPLBACKEND": "svg"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120,
        env=env,
    ).stdout.split()
    assert out == ["svg", "False"], out
