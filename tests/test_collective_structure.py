"""collective's shape, checked on its source: no import circle, settings read in one place,
nothing but dlsys's public API, no module singletons of state beside the Context."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from collective import config

PKG = Path(__file__).resolve().parents[1] / "collective"
MODULES = {".".join(p.relative_to(PKG.parent).with_suffix("").parts).removesuffix(".__init__"): p
           for p in sorted(PKG.rglob("*.py"))}


def _imports(name, path):
    """The collective modules ``name`` imports (at any depth of its code)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        out |= {t for t in targets if t in MODULES and t != name}
    return out


def test_no_import_circle():
    graph = {name: _imports(name, path) for name, path in MODULES.items()}
    # a package's __init__ re-exports its modules: an edge into a package is an edge into the
    # modules it imports, so look through __init__ files except the top-level one
    state: dict = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if nxt == "collective":
                continue  # the top-level re-exports are imported by nobody inside the package
            if state.get(nxt) == "open":
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for name in graph:
        if name not in state:
            visit(name, [name])


def test_only_config_reads_the_environment():
    readers = []
    for name, path in MODULES.items():
        if name == "collective.config":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "putenv"):
                readers.append(f"{name}:{node.lineno}")
    assert not readers, readers


def test_no_private_dlsys_names():
    """collective reaches dlsys through its public API only (see collective/tensors.py)."""
    found = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("_data", "from_array"):
                found.append(f"{name}:{node.lineno} .{node.attr}")
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "hasattr":
                found.append(f"{name}:{node.lineno} hasattr(...)")
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dlsys."):
                found.append(f"{name}:{node.lineno} from {node.module}")
    assert not found, found


def test_context_imports_no_algorithm():
    assert not {m for m in _imports("collective.context", MODULES["collective.context"])
                if m.startswith("collective.algorithms")}


def test_tuning_does_not_import_the_entry_points():
    deps = _imports("collective.tuning", MODULES["collective.tuning"])
    assert "collective.allreduce" not in deps and "collective.comm" not in deps, deps


def test_config_defaults_and_table():
    cfg = config.from_environ({})
    assert cfg.shm and cfg.shm_slot_bytes == 2 << 20 and cfg.wait == "poll"
    assert cfg.tuning and not cfg.retune and cfg.exit_timeout_s == 20.0
    assert cfg.abort_grace_s == 0.5 and cfg.cache_dir.name == "collective"
    # every variable the code reads is in the docstring's table
    for var in ("COLLECTIVE_SHM ", "COLLECTIVE_SHM_SLOT", "COLLECTIVE_WAIT", "COLLECTIVE_TUNING",
                "COLLECTIVE_RETUNE", "COLLECTIVE_CACHE_DIR", "COLLECTIVE_EXIT_TIMEOUT",
                "COLLECTIVE_ABORT_GRACE"):
        assert var in config.__doc__, var
    read = {node.value for node in ast.walk(ast.parse(MODULES["collective.config"].read_text()))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and node.value.startswith("COLLECTIVE_")}
    assert all(v in config.__doc__ for v in read), read


def test_config_values():
    cfg = config.from_environ({"COLLECTIVE_SHM": "0", "COLLECTIVE_TUNING": "off",
                               "COLLECTIVE_WAIT": "block", "COLLECTIVE_EXIT_TIMEOUT": "3",
                               "COLLECTIVE_CACHE_DIR": "/tmp/x", "COLLECTIVE_RETUNE": "1"})
    assert not cfg.shm and not cfg.tuning and cfg.wait == "block" and cfg.retune
    assert cfg.exit_timeout_s == 3.0 and str(cfg.cache_dir) == "/tmp/x"


@pytest.mark.parametrize("env,words", [
    ({"COLLECTIVE_SHM_SLOT": "big"}, ["COLLECTIVE_SHM_SLOT", "big"]),
    ({"COLLECTIVE_EXIT_TIMEOUT": "-1"}, ["COLLECTIVE_EXIT_TIMEOUT", "negative"]),
    ({"COLLECTIVE_WAIT": "spin"}, ["COLLECTIVE_WAIT", "poll", "block"]),
    ({"COLLECTIVE_SHM": "yes"}, ["COLLECTIVE_SHM", "0", "1"]),
])
def test_config_bad_values_name_the_variable(env, words):
    with pytest.raises(ValueError) as info:
        config.from_environ(env)
    assert all(w in str(info.value) for w in words), str(info.value)
