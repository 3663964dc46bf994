"""docs/configuration.md lists every key the settings accept, and only those (issue 14).

The keys come from the settings models themselves (``worker/settings.py``, ``mappers/rules.py``), so a
key added to a model without a row in the docs fails here, and so does a row for a key that is gone.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel

from mappers.rules import ConnectionRules
from worker import settings as st

ROOT = Path(__file__).resolve().parents[2]
CONFIGURATION = ROOT / "docs" / "configuration.md"
DEPLOY = ROOT / "docs" / "deploy.md"

#: Settings fields that only the environment or the loader fills (never a TOML key)
NOT_TOML = {
    "config_path",
    "broker_url",
    "database_url",
    "webhook_secret",
    "webhook_previous_secret",
}
#: ConnectionSettings fields filled by the loader from other keys (the name, the env, the rules)
CONNECTION_INTERNAL = {"name", "authorization_id", "rules"}


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _sections(model: type[BaseModel], path: str, out: dict[str, set[str]]) -> None:
    """``{section path: scalar keys}`` for ``model`` and its sub-tables."""
    keys = out.setdefault(path, set())
    for name, field in model.model_fields.items():
        sub = _model_of(field.annotation)
        if sub is not None:
            _sections(sub, f"{path}.{name}" if path else name, out)
        else:
            keys.add(name)


def accepted_keys() -> dict[str, set[str]]:
    """Every TOML section and key the loader accepts."""
    out: dict[str, set[str]] = {}
    top: set[str] = set()
    for name, field in st.Settings.model_fields.items():
        sub = _model_of(field.annotation)
        if sub is not None:
            _sections(sub, name, out)
        elif get_origin(field.annotation) is dict:
            value = _model_of(get_args(field.annotation)[1])
            assert value is st.ConnectionSettings, name
        elif name not in NOT_TOML:
            top.add(name)
    out[""] = top
    conn = "connections.<name>"
    rules: dict[str, set[str]] = {}
    _sections(ConnectionRules, conn, rules)
    own = set(st.ConnectionSettings.model_fields) - CONNECTION_INTERNAL
    # every ConnectionSettings field is a key the loader passes on (else it can never be set)
    assert own <= st._CONNECTION_KEYS, own - st._CONNECTION_KEYS
    rules[conn] |= st._CONNECTION_KEYS
    out.update(rules)
    return out


def documented_keys(text: str) -> tuple[dict[str, set[str]], set[str]]:
    """``({section: keys}, environment variables)`` from the doc's headings and tables."""
    sections: dict[str, set[str]] = {}
    env: set[str] = set()
    current: list[str] = []
    in_env = False
    for line in text.splitlines():
        if line.startswith("#"):
            in_env = line.strip() == "## Environment"
            if line.strip() == "## Top-level keys":
                current = [""]
            else:
                current = re.findall(r"`\[([^\]]+)\]`", line)
            for s in current:
                sections.setdefault(s, set())
            continue
        if not line.startswith("| `"):
            continue
        first = line.split("|")[1]
        names = set(re.findall(r"`([^`]+)`", first))
        if in_env:
            env |= names
        for s in current:
            sections[s] |= names
    return sections, env


def test_documented_keys_match_the_settings_models() -> None:
    documented, _ = documented_keys(CONFIGURATION.read_text(encoding="utf-8"))
    accepted = accepted_keys()
    missing = {
        s: sorted(keys - documented.get(s, set()))
        for s, keys in accepted.items()
        if keys - documented.get(s, set())
    }
    unknown = {
        s: sorted(keys - accepted.get(s, set()))
        for s, keys in documented.items()
        if keys - accepted.get(s, set())
    }
    assert not missing, f"keys the settings accept but docs/configuration.md lacks: {missing}"
    assert not unknown, f"keys docs/configuration.md lists that the settings reject: {unknown}"


def test_every_environment_variable_is_documented_in_configuration_and_deploy() -> None:
    _, env = documented_keys(CONFIGURATION.read_text(encoding="utf-8"))
    declared = set(st.EnvSettings.model_fields)
    assert env == declared, (sorted(declared - env), sorted(env - declared))
    deploy = DEPLOY.read_text(encoding="utf-8")
    absent = sorted(v for v in declared if f"`{v}`" not in deploy)
    assert not absent, f"docs/deploy.md does not list {absent}"


def test_the_check_sees_a_key_without_docs() -> None:
    """The comparison is not vacuous: a key missing from the doc is reported."""
    text = CONFIGURATION.read_text(encoding="utf-8").replace("| `lease_s` |", "| lease_s |")
    documented, _ = documented_keys(text)
    assert "lease_s" in accepted_keys()["reliability"]
    assert "lease_s" not in documented["reliability"]
    assert "timeout_s" in documented["connections.<name>"]
