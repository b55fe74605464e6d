"""The shape of the tree: the library stands on its own and its import graph has no cycle; no file is long.

- Import cycles: every module under iirsnn_jax/ is parsed with `ast`; each import, at module level or inside
  a function, is an edge to the module it names (`from pkg import name` names pkg.name when that is a
  module, else pkg itself).  Importing a module also runs its parents' __init__, but those edges are left
  out: a package's __init__ re-exporting its modules is not a cycle.
- The installed package: built with pip from a copy of pyproject.toml and iirsnn_jax/ alone, then eval.py
  and the plots command run on a train.py workdir from another directory, with only that install importable.
"""
from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "iirsnn_jax"
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _library_modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The library modules that the module `name` (file `path`) imports anywhere in its body."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the package that holds this module, `level - 1` steps up
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                parent = ".".join(base + ([node.module] if node.module else []))
            else:
                parent = node.module
            for alias in node.names:
                submodule = f"{parent}.{alias.name}"
                found.add(submodule if submodule in modules else parent)
    return {m for m in found if m in modules and m != name}


def _import_graph() -> dict[str, set[str]]:
    modules = _library_modules()
    return {name: _imported_modules(name, path, modules) for name, path in modules.items()}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle [a, b, ..., a], or None (depth-first search, iterative)."""
    state = {}  # module -> "open" while on the current path, "done" once fully explored
    for root in sorted(graph):
        if root in state:
            continue
        path, stack = [root], [iter(sorted(graph[root]))]
        state[root] = "open"
        while stack:
            child = next(stack[-1], None)
            if child is None:
                state[path.pop()] = "done"
                stack.pop()
            elif state.get(child) == "open":
                return path[path.index(child):] + [child]
            elif child not in state:
                state[child] = "open"
                path.append(child)
                stack.append(iter(sorted(graph[child])))
    return None


def test_the_cycle_finder_finds_cycles():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_every_kind_of_import_is_an_edge(tmp_path):
    modules = dict.fromkeys(["pkg", "pkg.a", "pkg.b", "pkg.sub", "pkg.sub.c", "pkg.sub.d"], None)
    source = tmp_path / "c.py"
    source.write_text("import jax\nfrom . import d\nfrom .. import a\nfrom pkg import helper\n"
                      "def f():\n    import pkg.b\n    from .d import thing\n")
    assert _imported_modules("pkg.sub.c", source, modules) == {"pkg.sub.d", "pkg.a", "pkg", "pkg.b"}
    init = tmp_path / "__init__.py"
    init.write_text("from .c import f\nfrom pkg.sub import d\n")
    assert _imported_modules("pkg.sub", init, modules) == {"pkg.sub.c", "pkg.sub.d"}


def test_no_import_cycle_in_the_library():
    cycle = _find_cycle(_import_graph())
    assert cycle is None, "import cycle in iirsnn_jax: " + " -> ".join(cycle)


def _repository_python_files() -> list[Path]:
    """Python files tracked by git, plus new ones not ignored; without git, every .py outside dot folders."""
    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"],
                                cwd=REPO, capture_output=True, text=True, check=True).stdout.split("\n")
        files = [REPO / line for line in listed if line]
    except (OSError, subprocess.CalledProcessError):
        files = [p for p in REPO.rglob("*.py") if not any(part.startswith(".") for part in p.relative_to(REPO).parts)]
    return sorted(p for p in files if p.is_file())  # a tracked file deleted in the work tree is gone


def test_no_python_file_over_400_lines():
    files = _repository_python_files()
    assert len(files) > 20 and REPO / "train.py" in files
    long = {str(p.relative_to(REPO)): n for p in files if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"Python files over {MAX_LINES} lines (split them by concept): {long}"


def _configs_imports(tree: ast.AST) -> list[int]:
    """Lines that import the top-level `configs` package, by statement or by importlib/__import__."""
    lines = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", "")) in ("import_module", "__import__")):
            names = [node.args[0].value]
        if any(n == "configs" or n.startswith("configs.") for n in names):
            lines.append(node.lineno)
    return lines


def test_the_library_neither_touches_sys_path_nor_imports_configs():
    assert _configs_imports(ast.parse("import configs.base\nfrom configs import x\nimportlib.import_module('configs.a')"
                                      )) == [1, 2, 3]
    offenders = []
    for name, path in _library_modules().items():
        text = path.read_text()
        offenders += [f"{path.relative_to(REPO)}:{i}: mentions sys.path"
                      for i, line in enumerate(text.splitlines(), 1) if re.search(r"\bsys\.path\b", line)]
        offenders += [f"{path.relative_to(REPO)}:{i}: imports configs" for i in _configs_imports(ast.parse(text))]
    assert not offenders, "the library must stand without the repository:\n" + "\n".join(offenders)


def _run(command, cwd, env, timeout=300):
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (f"{' '.join(map(str, command))} (in {cwd}) exited {result.returncode}:\n"
                                    f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def _install(tmp_path: Path) -> Path:
    """pip-installs a copy of pyproject.toml + iirsnn_jax/ (nothing else of the repository) into a folder.
    The copy keeps pip's build files out of the work tree."""
    source, target = tmp_path / "source", tmp_path / "site"
    source.mkdir()
    shutil.copy2(REPO / "pyproject.toml", source)
    shutil.copytree(PACKAGE, source / "iirsnn_jax", ignore=shutil.ignore_patterns("__pycache__"))
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target)]
    try:  # offline when the build backend is already here; else pip fetches it from the index (CI has network)
        import setuptools  # noqa: F401
        import wheel  # noqa: F401
        command.append("--no-build-isolation")
    except ImportError:
        pass
    _run(command + [str(source)], cwd=tmp_path, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    return target


@pytest.mark.slow  # 60-90 s on 2 busy CPU cores (about 22 s of CPU): pip, a 2-epoch run, eval, every plot
def test_the_installed_package_evaluates_and_plots_a_run_without_the_repository(tmp_path):
    start = time.perf_counter()
    site = _install(tmp_path)
    modules = {root: {p.relative_to(root) for p in (root / "iirsnn_jax").rglob("*.py")} for root in (REPO, site)}
    missing = sorted(map(str, modules[REPO] - modules[site]))
    assert not missing, f"pip did not install {missing}: see the package list in pyproject.toml"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["JAX_PLATFORMS"] = "cpu"
    workdir = tmp_path / "run"
    _run([sys.executable, "train.py", "--config=configs/test.py", f"--workdir={workdir}"], cwd=REPO, env=env)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy2(REPO / "eval.py", elsewhere)
    installed = {**env, "PYTHONPATH": str(site)}
    probe = ("import importlib.util, iirsnn_jax; print(iirsnn_jax.__file__); "
             "print(importlib.util.find_spec('configs') is None)")
    lines = _run([sys.executable, "-c", probe], cwd=elsewhere, env=installed).stdout.split()
    assert Path(lines[0]).is_relative_to(site) and lines[1] == "True", f"the repository is importable: {lines}"

    result = _run([sys.executable, "eval.py", f"--workdir={workdir}", "--split=test"], cwd=elsewhere, env=installed)
    assert '"accuracy"' in result.stdout.strip().splitlines()[-1]
    plots = tmp_path / "plots"
    _run([sys.executable, "-m", "iirsnn_jax.plots", f"--workdir={workdir}", f"--out={plots}", "--samples=1"],
         cwd=elsewhere, env=installed)
    assert sorted(plots.glob("*.png")), "the plots command wrote no picture"
    print(f"install, train, eval and plots: {time.perf_counter() - start:.1f} s")
