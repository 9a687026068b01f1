"""The worker's sandbox passes every module through (workers.main.WORKFLOW_RUNNER): a workflow
module is imported once per worker process and shared by every run, so a workflow that kept state
in its module would leak it from one payout's run into another's. The workflow modules therefore
never rebind or mutate a module-level name from inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

WORKFLOWS = sorted((Path(__file__).resolve().parents[2] / "workflows").glob("*.py"))
MUTATORS = {"append", "add", "update", "pop", "popitem", "clear", "setdefault", "extend", "remove",
            "insert", "discard", "sort", "reverse", "__setitem__", "__delitem__"}


def module_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) else [])
        for target in targets:
            names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    return names


def mutations(source: str) -> list[str]:
    tree = ast.parse(source)
    shared = module_names(tree)
    found: list[str] = []
    for func in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
        local = {a.arg for a in func.args.args + func.args.kwonlyargs}
        for node in ast.walk(func):
            if isinstance(node, (ast.Global, ast.Nonlocal)):
                found.append(f"{func.name}: {type(node).__name__.lower()} {', '.join(node.names)}")
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and node.func.attr in MUTATORS and isinstance(node.func.value, ast.Name)
                  and node.func.value.id in shared and node.func.value.id not in local):
                found.append(f"{func.name}: {node.func.value.id}.{node.func.attr}(...)")
            elif isinstance(node, (ast.Assign, ast.AugAssign, ast.Delete)):
                targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
                for target in targets:
                    if (isinstance(target, (ast.Subscript, ast.Attribute)) and isinstance(target.value, ast.Name)
                            and target.value.id in shared and target.value.id not in local):
                        found.append(f"{func.name}: assigns into {target.value.id}")
    return found


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_module_keeps_no_state_between_runs(path: Path) -> None:
    assert mutations(path.read_text()) == []


def test_the_check_finds_module_state() -> None:
    source = (
        "SEEN = set()\nLIMITS = {}\nCOUNT = 0\n"
        "def a(x):\n    SEEN.add(x)\n"
        "def b(x):\n    LIMITS[x] = 1\n"
        "def c():\n    global COUNT\n    COUNT += 1\n"
        "def d(SEEN):\n    SEEN.add(1)\n"  # a parameter of that name is the function's own
    )
    assert mutations(source) == ["a: SEEN.add(...)", "b: assigns into LIMITS", "c: global COUNT"]
