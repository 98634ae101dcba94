""".env.example documents every setting of vtp.config.Config, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vtp.config import Config, load_config

ROOT = Path(__file__).resolve().parents[1]
ENV_EXAMPLE = ROOT / ".env.example"
# A setting line, commented out or not: "# VTP_PORT=8080" or "DATABASE_URL=...".
_SETTING = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$")
_COMPOSE_MARKER = "--- docker-compose only"
# ${NAME:-default} in docker-compose.yml ($${NAME} is an escaped, container-side one).
_COMPOSE_VARIABLE = re.compile(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)(?::?-([^}]*))?\}")


def env_names() -> dict[str, str]:
    """Config field name -> the environment variable that sets it."""
    prefix = str(Config.model_config.get("env_prefix", ""))
    names = {}
    for field_name, field in Config.model_fields.items():
        alias = field.validation_alias or field.alias
        names[field_name] = alias if isinstance(alias, str) else (prefix + field_name).upper()
    return names


def _sections() -> tuple[list[str], list[str]]:
    """(VTP's settings, the docker-compose-only variables) as lines of .env.example."""
    lines = ENV_EXAMPLE.read_text().splitlines()
    for index, line in enumerate(lines):
        if _COMPOSE_MARKER in line:
            return lines[:index], lines[index:]
    return lines, []


def _settings(lines: list[str]) -> dict[str, str]:
    found = {}
    for line in lines:
        match = _SETTING.match(line.strip())
        if match:
            found[match.group(1)] = match.group(2).strip()
    return found


def documented() -> dict[str, str]:
    """VTP variable -> the value .env.example shows for it."""
    return _settings(_sections()[0])


def test_every_setting_is_documented() -> None:
    missing = sorted(set(env_names().values()) - set(documented()))
    assert not missing, f".env.example lacks: {', '.join(missing)}"


def test_no_unknown_settings_are_documented() -> None:
    unknown = sorted(set(documented()) - set(env_names().values()))
    assert not unknown, f".env.example documents settings Config does not have: {unknown}"


def test_every_setting_has_an_explanation() -> None:
    lines = ENV_EXAMPLE.read_text().splitlines()
    for index, line in enumerate(lines):
        match = _SETTING.match(line.strip())
        if not match:
            continue
        above = lines[index - 1].strip() if index else ""
        assert above.startswith("#") and not _SETTING.match(above) and len(above) > 3, (
            f"{match.group(1)} has no comment line explaining it"
        )


def test_aliases_are_the_conventional_names() -> None:
    names = env_names()
    assert names["database_url"] == "DATABASE_URL"
    assert names["redis_url"] == "REDIS_URL"
    assert names["port"] == "VTP_PORT"


def _as_env_value(value: object) -> str:
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def test_documented_defaults_match_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """The value shown for each setting is Config's default (service URLs, S3 endpoint
    and secrets show examples or nothing, since their default is "unset")."""
    names = env_names()
    for variable in names.values():
        monkeypatch.delenv(variable, raising=False)
    defaults = load_config()
    shown = documented()
    examples_only = {"database_url", "redis_url", "s3_endpoint"}
    mismatches = []
    for field_name, variable in names.items():
        if field_name in examples_only:
            continue
        expected = _as_env_value(getattr(defaults, field_name))
        if field_name == "state_dir":
            expected = "./" + expected if not expected.startswith((".", "/")) else expected
        if shown[variable] != expected:
            mismatches.append(
                f"{variable}: .env.example shows {shown[variable]!r}, default {expected!r}"
            )
    assert not mismatches, "\n".join(mismatches)


def test_documented_values_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Uncommenting every line of .env.example gives a valid configuration."""
    for variable, value in documented().items():
        if value:
            monkeypatch.setenv(variable, value)
    load_config()


def test_compose_variables_are_documented_with_their_defaults() -> None:
    """Every ${VAR} docker-compose.yml substitutes is in .env.example, with the same
    default, so `cp .env.example .env` describes the stack as it runs."""
    compose_text = (ROOT / "docker-compose.yml").read_text()
    used: dict[str, str | None] = {}
    for match in _COMPOSE_VARIABLE.finditer(compose_text):
        used[match.group(1)] = match.group(2)
    assert used, "docker-compose.yml substitutes no variables?"
    shown = {**documented(), **_settings(_sections()[1])}
    problems = []
    for name, default in sorted(used.items()):
        if name not in shown:
            problems.append(f"{name} is not in .env.example")
        elif default is not None and shown[name] != default:
            problems.append(f"{name}: .env.example shows {shown[name]!r}, compose uses {default!r}")
    assert not problems, "\n".join(problems)


def test_readme_configuration_table_lists_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Configuration")
    section = readme[start : readme.index("\n## ", start + 1)]
    missing = sorted(name for name in env_names().values() if f"`{name}`" not in section)
    assert not missing, f"README's configuration table lacks: {', '.join(missing)}"
