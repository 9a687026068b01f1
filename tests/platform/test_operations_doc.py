"""docs/operations.md lists exactly the signals, updates and queries the workflows define.

The code side comes from the workflow definitions themselves (every `@workflow.defn` class in
workflows/*.py, with the names its `@workflow.signal/update/query` decorators register). The doc
side is every table row `| signal | `name` | ...` (or update / query) under a `### <Workflow>`
heading. A handler added, renamed or removed without the runbook following fails here, naming it.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

from temporalio.workflow import _Definition

import workflows

ROOT = Path(__file__).resolve().parent.parent.parent
DOC = ROOT / "docs" / "operations.md"
KINDS = ("signal", "update", "query")
HEADING = re.compile(r"^###\s+`?(\w+)`?")
ROW = re.compile(r"^\|\s*(signal|update|query)\s*\|\s*`([^`]+)`\s*\|")

Handler = tuple[str, str, str]  # (workflow type, kind, name)


def handlers_in_code() -> dict[Handler, str]:
    """(workflow, kind, name) -> the module that defines it."""
    found: dict[Handler, str] = {}
    for info in pkgutil.iter_modules(workflows.__path__):
        module = importlib.import_module(f"workflows.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__:
                continue
            defn = _Definition.from_class(cls)
            if defn is None or defn.name is None:
                continue
            for kind, table in (("signal", defn.signals), ("update", defn.updates), ("query", defn.queries)):
                for name in table:
                    if name:  # None = a dynamic handler
                        found[(defn.name, kind, name)] = f"workflows/{info.name}.py"
    return found


def handlers_in_doc(text: str) -> dict[Handler, int]:
    """(workflow, kind, name) -> line number in docs/operations.md."""
    found: dict[Handler, int] = {}
    workflow: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if heading := HEADING.match(line):
            workflow = heading.group(1)
        elif line.startswith("## "):
            workflow = None
        elif (row := ROW.match(line)) and workflow:
            found[(workflow, row.group(1), row.group(2))] = number
    return found


def test_the_runbook_lists_every_handler_and_only_those():
    code = handlers_in_code()
    doc = handlers_in_doc(DOC.read_text())
    assert code, "no workflow handlers found in workflows/*.py: the extraction is broken"
    missing = sorted(set(code) - set(doc))
    extra = sorted(set(doc) - set(code))
    problems = [f"missing from docs/operations.md: {wf} {kind} `{name}` (defined in {code[(wf, kind, name)]}); "
                f"add a row `| {kind} | `{name}` | ... |` under `### {wf}`" for wf, kind, name in missing]
    problems += [f"docs/operations.md line {doc[(wf, kind, name)]}: {wf} {kind} `{name}` is not defined by any "
                 "workflow in workflows/*.py (renamed or removed?)" for wf, kind, name in extra]
    assert not problems, "\n".join(problems)


def test_every_handler_row_comes_with_a_copy_paste_command():
    """Each documented handler has a `temporal workflow <kind> ... --name <name>` example with the
    codec flags, so what ops paste decodes and encodes through payops's codec server."""
    text = DOC.read_text()
    verbs = {"signal": "signal", "update": "update execute", "query": "query"}
    lacking = []
    for _wf, kind, name in handlers_in_doc(text):
        pattern = rf"temporal workflow {verbs[kind]}\b[^\n]*(?:\\\n[^\n]*)*--name {re.escape(name)}\b"
        if not re.search(pattern, text):
            lacking.append(f"{kind} `{name}`: no `temporal workflow {verbs[kind]} ... --name {name}` example")
    assert not lacking, "\n".join(lacking)
    assert "--codec-endpoint" in text and "--codec-auth" in text


def test_the_extraction_sees_known_handlers_and_the_parser_reads_rows():
    code = handlers_in_code()
    assert ("PayoutWorkflow", "update", "retry") in code and ("OpsActionWorkflow", "signal", "approve_signal") in code
    sample = "### PayoutWorkflow (`payout-<id>`)\n| kind | name |\n|---|---|\n| update | `retry` | x |\n## Other\n| query | `state` |\n"
    assert handlers_in_doc(sample) == {("PayoutWorkflow", "update", "retry"): 4}


def test_the_payout_ops_inputs_documented_parse_and_carry_a_grant():
    """The runbook's retry/cancel inputs are what the workflow accepts, with the `grant` field
    that makes them verified (docs section 7.1)."""
    import json

    from core.payouts.models import CancelRequest, RetryRequest

    text = DOC.read_text()
    rows = {}
    workflow = None
    for line in text.splitlines():
        if heading := HEADING.match(line):
            workflow = heading.group(1)
        elif workflow == "PayoutWorkflow" and (row := ROW.match(line)):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[row.group(2)] = cells[2].strip("`")
    for name, model in (("retry", RetryRequest), ("cancel", CancelRequest), ("retry_signal", RetryRequest),
                        ("cancel_signal", CancelRequest)):
        parsed = model.model_validate(json.loads(rows[name]))
        assert parsed.grant, f"{name}: the documented input has no grant"
    assert "POST /api/v1/ops/grants" in text and "payops ops grant payout" in text
