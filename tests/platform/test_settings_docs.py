"""The configuration docs stay in step with core.platform.settings.Settings, and the role docs with core.platform.roles.

Added a setting? Document it in .env.example (a comment line explaining it, then
`PAYOPS_X=default`, or `# PAYOPS_X=example` when it is unset by default) and run
`python scripts/gen_docs.py` to refresh docs/configuration.md.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from core.platform.roles import Role, role_matrix_markdown
from core.platform.settings import Settings, settings_field_env_names

ROOT = Path(__file__).resolve().parent.parent.parent
HOW_TO_FIX = (
    "document every setting in .env.example (a comment line, then PAYOPS_X=default or "
    "'# PAYOPS_X=example' when unset by default) and run `python scripts/gen_docs.py`"
)


def _load_gen_docs():
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen_docs = _load_gen_docs()


@pytest.fixture
def no_payops_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith("PAYOPS_"):
            monkeypatch.delenv(name)


def test_env_example_names_exactly_the_settings_fields():
    documented = gen_docs.parse_env_example(ROOT / ".env.example")
    fields = settings_field_env_names()
    undocumented = sorted(set(fields) - set(documented))
    unknown = sorted(set(documented) - set(fields))
    assert not undocumented, f"settings missing from .env.example: {undocumented} — {HOW_TO_FIX}"
    assert not unknown, f".env.example names variables that are not Settings fields: {unknown}"


def test_env_example_has_no_duplicates():
    lines = (ROOT / ".env.example").read_text().splitlines()
    names = [m.group(2) for line in lines if (m := gen_docs.SETTING_LINE.match(line.strip()))]
    dupes = sorted({n for n in names if names.count(n) > 1})
    assert not dupes, f"documented twice in .env.example: {dupes}"


def test_every_setting_has_an_explanation():
    documented = gen_docs.parse_env_example(ROOT / ".env.example")
    missing = sorted(name for name, entry in documented.items() if not entry["meaning"])
    assert not missing, f"no explanatory comment line right above: {missing} — {HOW_TO_FIX}"


def test_env_example_values_are_the_defaults(no_payops_env):
    """Copying .env.example to .env changes nothing; unset-by-default settings are commented out."""
    documented = gen_docs.parse_env_example(ROOT / ".env.example")
    for name, field in Settings.model_fields.items():
        entry = documented.get(f"PAYOPS_{name.upper()}")
        if entry is None:
            continue  # reported by test_env_example_names_exactly_the_settings_fields
        assert entry["commented"] == (field.default is None), (
            f"PAYOPS_{name.upper()}: write it as '# PAYOPS_X=example' exactly when its default is unset"
        )
    from_example = Settings(_env_file=ROOT / ".env.example").model_dump()
    defaults = Settings(_env_file=None).model_dump()
    differ = {k: (from_example[k], defaults[k]) for k in defaults if from_example[k] != defaults[k]}
    assert not differ, f".env.example values differ from the Settings defaults (example, default): {differ}"


def test_configuration_doc_is_current():
    expected = gen_docs.render_configuration()
    current = (ROOT / "docs" / "configuration.md").read_text()
    assert current == expected, "docs/configuration.md is out of date: run `python scripts/gen_docs.py`"
    for env in settings_field_env_names():
        assert f"`{env}`" in current


def test_roles_doc_has_the_current_role_matrix():
    current = (ROOT / "docs" / "roles.md").read_text()
    assert role_matrix_markdown() in current, "docs/roles.md role matrix is stale: run `python scripts/gen_docs.py`"
    assert gen_docs.render_roles(current) == current


def test_roles_doc_explains_every_role_the_tenant_claim_and_payops_token():
    current = (ROOT / "docs" / "roles.md").read_text()
    for role in Role:
        assert f"| `{role.value}` |" in current, f"docs/roles.md does not describe role {role.value}"
    assert "merchant_id" in current
    assert "payops token" in current


def test_gen_docs_check_mode_passes():
    assert gen_docs.main(["--check"]) == 0
