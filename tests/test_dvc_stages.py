"""The DVC stages declare the code they run: a change to any module a stage imports
(however deep, including imports inside functions) reruns that stage."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
STAGE_FILES = (REPO / "dvc.yaml", REPO / "sweeps" / "dvc.yaml")


def _module_file(name: str) -> Path | None:
    base = REPO.joinpath(*name.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imports(node: ast.AST) -> set[str]:
    """The ``smartassign`` modules imported anywhere under ``node``."""
    found: set[str] = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Import):
            found |= {alias.name for alias in child.names if alias.name.startswith("smartassign")}
        elif isinstance(child, ast.ImportFrom) and (child.module or "").startswith("smartassign"):
            found.add(child.module)
            found |= {
                f"{child.module}.{alias.name}"
                for alias in child.names
                if _module_file(f"{child.module}.{alias.name}")
            }
    return found


def _closure(start: set[str]) -> set[Path]:
    """Files of ``start`` and of every module they import, with their parent packages."""
    seen: set[str] = set()
    todo = list(start)
    while todo:
        name = todo.pop()
        path = _module_file(name)
        if name in seen or path is None:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += _imports(ast.parse(path.read_text()))
    return {_module_file(name).relative_to(REPO) for name in seen}


def _stage_code(script: Path) -> set[Path]:
    """What ``python pipeline/<script>`` runs: the CLI's module-level imports and those of
    the handler of the sub-command the script passes to ``smartassign.cli.main``, and of
    the CLI's helper functions the handler calls (however deep)."""
    command = re.search(r'main\(\["([a-z]+)"', script.read_text()).group(1)
    cli = ast.parse((REPO / "smartassign" / "cli.py").read_text())
    functions = {node.name: node for node in cli.body if isinstance(node, ast.FunctionDef)}
    top = set().union(*(_imports(node) for node in cli.body if node not in functions.values()))
    called, todo = set(), [f"_{command}"]
    while todo:
        name = todo.pop()
        if name in called:
            continue
        called.add(name)
        todo += [
            node.func.id
            for node in ast.walk(functions[name])
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in functions
        ]
    used = set().union(*(_imports(functions[name]) for name in called))
    return _closure(used | top) | {Path("smartassign/cli.py")}


def _stages() -> list[tuple[str, dict]]:
    return [
        (f"{path.relative_to(REPO)}:{name}", stage)
        for path in STAGE_FILES
        for name, stage in yaml.safe_load(path.read_text())["stages"].items()
    ]


def _script(stage: dict) -> Path:
    """The file of the ``pipeline`` module a stage's ``python -m pipeline.<name>`` runs."""
    match = re.match(r"python -m (pipeline\.[a-z]+)\b", stage["cmd"])
    assert match, f"`{stage['cmd']}` does not run a pipeline script as a module"
    return Path(*match.group(1).split(".")).with_suffix(".py")


@pytest.mark.parametrize(("name", "stage"), _stages(), ids=[name for name, _ in _stages()])
def test_stage_runs_its_script_as_a_module(name: str, stage: dict):
    """``python -m`` puts the stage's working directory (the checkout) first on the
    import path of the driver and of Ray's local workers; ``python pipeline/x.py`` would
    import an installed smartassign in the driver and the checkout's in the workers."""
    script = _script(stage)
    assert (REPO / script).is_file(), f"{name}: {script} does not exist"
    workdir = (REPO / name.split(":")[0]).parent / stage.get("wdir", ".")
    assert workdir.resolve() == REPO, f"{name}: runs in {workdir}, not the repository root"


@pytest.mark.parametrize(("name", "stage"), _stages(), ids=[name for name, _ in _stages()])
def test_stage_deps_are_the_code_it_runs(name: str, stage: dict):
    script = _script(stage)
    deps = [Path(dep) for dep in stage["deps"]]
    assert script in deps, f"{name}: {script} is not among its deps"
    code = _stage_code(REPO / script)
    uncovered = sorted(
        str(path) for path in code if not any(path == dep or dep in path.parents for dep in deps)
    )
    assert not uncovered, f"{name}: add these to its deps: {uncovered}"
    listed = {
        path.relative_to(REPO)
        for dep in deps
        if dep.parts[0] == "smartassign"
        for path in ([REPO / dep] if dep.suffix else sorted((REPO / dep).rglob("*.py")))
    }
    unused = sorted(str(path) for path in listed - code)
    assert not unused, f"{name}: these deps are code it never imports: {unused}"


@pytest.mark.parametrize(("name", "stage"), _stages(), ids=[name for name, _ in _stages()])
def test_every_stage_follows_the_named_experiment(name: str, stage: dict):
    """``dvc exp run -S experiment=paper`` and an edit of an experiment file rerun it."""
    assert "experiment" in stage["params"], f"{name}: param `experiment` missing"
    assert "experiments" in stage["deps"], f"{name}: dep `experiments` missing"
