"""The architecture's rules (docs/architecture.md), checked on the source by an AST walk: nothing
is imported, so the test is fast and sees imports inside functions too.

1. No import cycle between modules (module-level and function-level imports alike).
2. core/ imports nothing from the layers above it: api, workflows, activities, workers, cli,
   devstack.
3. A workflow module imports nothing with side effects at import time: no module it imports
   (transitively, at module level) runs I/O when imported (opens files or connections, reads
   settings, starts threads, processes or event loops, configures logging).
4. An import inside a function says why: a `# why:` comment on its line or on the comment lines
   directly above it (or above the run of imports it belongs to). A module whose every command
   imports only what it runs (the `payops` CLI) says so once: `# why-function-level-imports: ...`.
5. core/ has no module at its top level other than __init__.py: every module is in a domain
   package or core/platform.
6. A domain's SQL lives in its store (core/<domain>/store.py, or service.py when it is logic +
   SQL): a module of api/ or activities/ does not import core.platform.tables, imports nothing
   from sqlalchemy but the session types and errors (sqlalchemy.ext.asyncio, sqlalchemy.exc), and
   holds no SQL text (a string literal reading SELECT ... FROM, INSERT INTO, UPDATE ... SET or
   DELETE FROM). `SQL_NOT_YET_IN_A_STORE` listed the modules that still did while their SQL moved
   (issue 18); it is empty now and stays so.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "api", "workflows", "activities", "workers", "cli", "devstack", "connectors", "sandbox")
ABOVE_CORE = ("api", "workflows", "activities", "workers", "cli", "devstack")

# rule 6: the layers that call stores, and what they may import from sqlalchemy
SQL_FREE = ("api", "activities")
SQLALCHEMY_ALLOWED = ("sqlalchemy.ext.asyncio", "sqlalchemy.exc")
SQL_TEXT = re.compile(r"\b(SELECT\b[\s\S]*\bFROM|INSERT\s+INTO|UPDATE\s+\w+(\s+\w+)?\s+SET|DELETE\s+FROM)\b",
                      re.IGNORECASE)
# modules whose SQL has not moved to their domain's store yet: none since issue 18 moved the last
# five. Don't add one; test_sql_allow_list_is_not_stale fails on an entry that builds no SQL.
SQL_NOT_YET_IN_A_STORE: set[str] = set()

# calls that do I/O (or start something) when they run at a module's top level
SIDE_EFFECT_CALLS = {
    "open", "get_settings", "create_engine", "create_async_engine", "connect", "Redis", "from_url",
    "basicConfig", "dictConfig", "run", "Popen", "Thread", "start", "start_http_server", "load_dotenv",
    "mkdir", "write_text", "read_text", "getaddrinfo", "socket", "urlopen", "get_event_loop", "new_event_loop",
}


@dataclass
class Import:
    target: str
    line: int
    in_function: bool
    why: bool


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    imports: list[Import] = field(default_factory=list)


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _has_why(lines: list[str], node: ast.stmt, body: list[ast.stmt]) -> bool:
    if "# why:" in lines[node.lineno - 1]:
        return True
    # the run of import statements this one belongs to, then the comment lines above the run
    index = body.index(node)
    while index > 0 and isinstance(body[index - 1], (ast.Import, ast.ImportFrom)):
        index -= 1
        if "# why:" in lines[body[index].lineno - 1]:
            return True
    n = body[index].lineno - 2
    while n >= 0 and lines[n].strip().startswith("#"):
        if "# why:" in lines[n]:
            return True
        n -= 1
    return False


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def collect(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            name = module_name(root, path)
            modules[name] = Module(name, path, ast.parse(path.read_text(), str(path)))
    for mod in modules.values():
        lines = mod.path.read_text().splitlines()
        module_why = any(line.startswith("# why-function-level-imports:") for line in lines)

        def visit(body: list[ast.stmt], in_function: bool, mod: Module = mod, lines: list[str] = lines,
                  module_why: bool = module_why) -> None:
            for node in body:
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    why = in_function and (module_why or _has_why(lines, node, body))
                    for target in _targets(node, mod.name, modules):
                        mod.imports.append(Import(target, node.lineno, in_function, why))
                elif isinstance(node, ast.If) and _is_type_checking(node):
                    continue  # typing only: never imported at run time
                for child_body in _bodies(node):
                    visit(child_body, in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)))

        visit(mod.tree.body, False)
    return modules


def _bodies(node: ast.AST) -> list[list[ast.stmt]]:
    out = []
    for name in ("body", "orelse", "finalbody"):
        value = getattr(node, name, None)
        if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
            out.append(value)
    for handler in getattr(node, "handlers", []) or []:
        out.append(handler.body)
    for case in getattr(node, "cases", []) or []:
        out.append(case.body)
    return out


def _targets(node: ast.Import | ast.ImportFrom, importer: str, modules: dict[str, Module]) -> list[str]:
    """The project modules an import statement loads (not the packages on the way)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            parent = importer.split(".")[: -node.level]
            base = ".".join(parent + ([base] if base else []))
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
    return [n for n in dict.fromkeys(names) if n in modules and n.split(".")[0] in PACKAGES]


def import_cycles(modules: dict[str, Module]) -> list[list[str]]:
    """Strongly connected components of more than one module (or a module importing itself)."""
    graph = {name: sorted({i.target for i in mod.imports}) for name, mod in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0

    def strongconnect(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            strongconnect(v)
    return cycles


def upward_imports(modules: dict[str, Module]) -> list[str]:
    return [f"{m.path.relative_to(ROOT) if m.path.is_relative_to(ROOT) else m.path}:{i.line}: {m.name} -> {i.target}"
            for m in modules.values() if m.name.split(".")[0] == "core"
            for i in m.imports if i.target.split(".")[0] in ABOVE_CORE]


def unexplained_function_imports(modules: dict[str, Module]) -> list[str]:
    return [f"{m.name}:{i.line}: imports {i.target} inside a function without a '# why:' comment"
            for m in modules.values() for i in m.imports if i.in_function and not i.why]


def _top_level_side_effects(mod: Module) -> list[str]:
    found = []
    for node in mod.tree.body:
        if isinstance(node, ast.If) and (_is_type_checking(node) or "__main__" in ast.unparse(node.test)):
            continue
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, (ast.With, ast.AsyncWith)) and "imports_passed_through" in ast.unparse(node.items[0]):
            continue
        if isinstance(node, (ast.With, ast.AsyncWith)):
            found.append(f"{mod.name}:{node.lineno}: top-level with")
            continue
        for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
            func = call.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in SIDE_EFFECT_CALLS:
                found.append(f"{mod.name}:{node.lineno}: calls {name}() at import")
    return found


def workflow_side_effects(modules: dict[str, Module]) -> list[str]:
    problems = []
    for name, mod in modules.items():
        if name.split(".")[0] != "workflows":
            continue
        seen: set[str] = set()
        todo = [i.target for i in mod.imports if not i.in_function]
        while todo:
            target = todo.pop()
            if target in seen:
                continue
            seen.add(target)
            problems += [f"{name} imports {p}" for p in _top_level_side_effects(modules[target])]
            todo += [i.target for i in modules[target].imports if not i.in_function]
    return sorted(set(problems))


def sql_outside_stores(root: Path, packages: tuple[str, ...] = SQL_FREE) -> dict[str, list[str]]:
    """module -> what in it builds or runs SQL itself (rule 6)."""
    found: dict[str, list[str]] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            problems = []
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    for alias in node.names:
                        if alias.name == "core.platform.tables" or (
                                alias.name.split(".")[0] == "sqlalchemy" and alias.name not in SQLALCHEMY_ALLOWED):
                            problems.append(f"{node.lineno}: import {alias.name}")
                elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                    names = [a.name for a in node.names]
                    if node.module == "core.platform.tables" or (node.module == "core.platform" and "tables" in names):
                        problems.append(f"{node.lineno}: imports core.platform.tables")
                    elif node.module.split(".")[0] == "sqlalchemy" and node.module not in SQLALCHEMY_ALLOWED and not (
                            node.module == "sqlalchemy" and set(names) <= {"exc"}):
                        problems.append(f"{node.lineno}: from {node.module} import {', '.join(names)}")
                elif isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL_TEXT.search(node.value):
                    problems.append(f"{node.lineno}: SQL text {node.value.strip()[:40]!r}")
            if problems:
                found[module_name(root, path)] = sorted(problems, key=lambda p: int(p.split(":")[0]))
    return found


@pytest.fixture(scope="module")
def modules() -> dict[str, Module]:
    return collect(ROOT)


def test_no_import_cycle(modules):
    assert import_cycles(modules) == []


def test_core_imports_no_layer_above_it(modules):
    assert upward_imports(modules) == []


def test_workflow_modules_import_nothing_with_side_effects(modules):
    assert workflow_side_effects(modules) == []


def test_function_level_imports_say_why(modules):
    assert unexplained_function_imports(modules) == []


def test_core_has_no_top_level_module():
    assert sorted(p.name for p in (ROOT / "core").glob("*.py")) == ["__init__.py"]


def not_allowed_sql(found: dict[str, list[str]], allow_list: set[str]) -> dict[str, list[str]]:
    """The findings of modules not on the allow-list."""
    return {m: p for m, p in found.items() if m not in allow_list}


def stale_allow_list_entries(found: dict[str, list[str]], allow_list: set[str]) -> list[str]:
    """Allow-list entries whose module builds no SQL (any more): they must go."""
    return sorted(allow_list - set(found))


def test_sql_lives_in_the_stores():
    assert not_allowed_sql(sql_outside_stores(ROOT), SQL_NOT_YET_IN_A_STORE) == {}


def test_sql_allow_list_is_not_stale():
    assert stale_allow_list_entries(sql_outside_stores(ROOT), SQL_NOT_YET_IN_A_STORE) == []


# --- the checker itself finds what it must (so the tests above can fail) --------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> dict[str, Module]:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for package in PACKAGES:
        (tmp_path / package).mkdir(exist_ok=True)
    return collect(tmp_path)


def test_checker_finds_a_cycle_hidden_in_a_function(tmp_path):
    mods = _tree(tmp_path, {
        "core/__init__.py": "", "core/a/__init__.py": "",
        "core/a/service.py": "from core.a import store\n",
        "core/a/store.py": "def f():\n    # why: a test\n    from core.a.service import g\n",
    })
    assert import_cycles(mods) == [["core.a.service", "core.a.store"]]


def test_checker_finds_an_upward_import_and_an_unexplained_function_import(tmp_path):
    mods = _tree(tmp_path, {
        "core/__init__.py": "", "api/__init__.py": "", "api/schemas.py": "X = 1\n",
        "core/view.py": "def f():\n    from api import schemas\n",
    })
    assert [u.split(": ", 1)[1] for u in upward_imports(mods)] == ["core.view -> api.schemas"]
    assert unexplained_function_imports(mods) == [
        "core.view:2: imports api.schemas inside a function without a '# why:' comment"]


def test_checker_finds_a_workflow_importing_a_module_with_side_effects(tmp_path):
    mods = _tree(tmp_path, {
        "core/__init__.py": "", "workflows/__init__.py": "",
        "core/conf.py": "from core.source import get_settings\nSETTINGS = get_settings()\n",
        "core/source.py": "def get_settings():\n    return 1\n",
        "core/models.py": "from core import conf\n",
        "workflows/w.py": "from temporalio import workflow\nwith workflow.unsafe.imports_passed_through():\n"
                          "    from core.models import conf\n",
    })
    assert workflow_side_effects(mods) == ["workflows.w imports core.conf:2: calls get_settings() at import"]


def test_checker_finds_sql_built_in_an_activity_or_a_router(tmp_path):
    _tree(tmp_path, {
        "activities/__init__.py": "", "api/__init__.py": "", "api/routers/__init__.py": "",
        "activities/clean.py": "from sqlalchemy.ext.asyncio import AsyncSession\nfrom sqlalchemy import exc\n"
                               "from core.rails import store\nDOC = 'select a rail, then update the payout'\n",
        "activities/tables.py": "from core.platform.tables import payouts\n",
        "activities/built.py": "from sqlalchemy.dialects.postgresql import insert\n",
        "api/routers/raw.py": "import sqlalchemy as sa\nQ = '''\n  SELECT id\n  FROM payouts'''\n",
        "api/routers/upd.py": "async def f(conn):\n    await conn.execute('UPDATE payouts p SET x = 1')\n",
    })
    assert sql_outside_stores(tmp_path) == {
        "activities.built": ["1: from sqlalchemy.dialects.postgresql import insert"],
        "activities.tables": ["1: imports core.platform.tables"],
        "api.routers.raw": ["1: import sqlalchemy", "2: SQL text 'SELECT id\\n  FROM payouts'"],
        "api.routers.upd": ["2: SQL text 'UPDATE payouts p SET x = 1'"],
    }


def test_checker_finds_a_stale_allow_list_entry_and_sql_off_the_list(tmp_path):
    _tree(tmp_path, {
        "activities/__init__.py": "", "api/__init__.py": "",
        "activities/moved.py": "from core.exports import store\n",
        "activities/raw.py": "Q = 'DELETE FROM export_jobs WHERE id = :id'\n",
    })
    found = sql_outside_stores(tmp_path)
    assert stale_allow_list_entries(found, {"activities.moved", "activities.raw"}) == ["activities.moved"]
    assert stale_allow_list_entries(found, {"activities.raw"}) == []
    assert not_allowed_sql(found, {"activities.raw"}) == {}
    assert not_allowed_sql(found, set()) == {"activities.raw": ["1: SQL text 'DELETE FROM export_jobs WHERE id = :id'"]}
