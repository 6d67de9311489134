"""The repository's own rules, checked on every run: ruff is clean, no file is over the line
budget, and dlsys's layers import only downward (collective's structure: see
tests/test_collective_structure.py)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINE_BUDGET = 600
SOURCE_DIRS = ("dlsys", "collective", "tests", "benchmarks", "examples", "tools")


def _tracked_python_files():
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard",
                          "*.py"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:  # not a git checkout (an sdist): walk the folders
        return sorted(p for d in SOURCE_DIRS for p in (ROOT / d).rglob("*.py"))
    return sorted(ROOT / line for line in out.stdout.split() if (ROOT / line).exists())


def _ruff():
    exe = Path(sys.executable).with_name("ruff")
    return str(exe) if exe.exists() else shutil.which("ruff")


def test_ruff_check_is_clean():
    ruff = _ruff()
    if ruff is None:
        pytest.skip("ruff is not installed (it comes with the test extra)")
    out = subprocess.run([ruff, "check", "--no-cache", "."], cwd=ROOT, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_no_file_over_the_line_budget():
    over = []
    for path in _tracked_python_files():
        n = sum(1 for _ in path.open(encoding="utf-8"))
        if n > LINE_BUDGET:
            over.append(f"{path.relative_to(ROOT)}: {n} lines")
    assert not over, f"files over {LINE_BUDGET} lines (split them by concern): {over}"


# -- the import graph ------------------------------------------------------------------------------
def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, module: str):
    """(imported module, top-level?) for every import in ``path``; relative ones resolved.
    ``top-level`` is False for imports inside functions (deferred: they cannot form a circle
    at import time, but they still count for the layering)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    top = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, id(node) in top
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target, id(node) in top
            for alias in node.names:  # `from . import x` imports the submodule x
                yield f"{target}.{alias.name}", id(node) in top


def test_dlsys_never_imports_collective_or_mpi():
    bad = []
    for path in (ROOT / "dlsys").rglob("*.py"):
        for target, _ in _imports(path, _module_name(path)):
            if target.split(".")[0] in ("collective", "mpi4py"):
                bad.append(f"{path.relative_to(ROOT)} imports {target}")
    assert not bad, bad


def test_backend_never_imports_the_front_end():
    front = ("dlsys.tensor", "dlsys.autograd", "dlsys.ops", "dlsys.nn", "dlsys.optim",
             "dlsys.data", "dlsys.creation")
    bad = []
    for path in (ROOT / "dlsys" / "backend").rglob("*.py"):
        for target, _ in _imports(path, _module_name(path)):
            if target.startswith(front):
                bad.append(f"{path.relative_to(ROOT)} imports {target}")
    assert not bad, bad


def test_versions_agree_with_pyproject():
    import re

    import collective
    import dlsys

    text = (ROOT / "pyproject.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', text, re.MULTILINE).group(1)
    assert dlsys.__version__ == version and collective.__version__ == version
