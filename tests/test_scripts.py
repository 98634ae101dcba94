"""The README's two commands, CI's entry point and the Makefile are wired as documented."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = [ROOT / "scripts" / "run.sh", ROOT / "scripts" / "test.sh", ROOT / ".ci" / "run"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_scripts_are_executable_bash(script: Path) -> None:
    assert os.access(script, os.X_OK), f"{script} is not executable"
    assert script.read_text().startswith("#!/usr/bin/env bash\n")
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "set -euo pipefail" in script.read_text()


def test_readme_first_screen_has_the_two_commands() -> None:
    first_screen = "\n".join((ROOT / "README.md").read_text().splitlines()[:20])
    assert "./scripts/run.sh" in first_screen
    assert "./scripts/test.sh" in first_screen


def test_ci_runs_exactly_the_readme_test_command() -> None:
    commands = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert commands[-1] == "exec bash scripts/test.sh", commands


def test_makefile_targets() -> None:
    text = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", text, flags=re.MULTILINE))
    assert {"run", "test", "migrate", "fmt", "lint", "docker-up", "docker-down"} <= targets
    assert "./scripts/run.sh" in text and "./scripts/test.sh" in text


def _script_env() -> dict[str, str]:
    env = dict(os.environ)
    # Use the venv this test runs in, leave system services alone, skip the linters.
    env.update(
        VTP_VENV=str(Path(sys.prefix)),
        VTP_NO_SYSTEM="1",
        VTP_SKIP_LINT="1",
    )
    env.pop("PYTEST_ADDOPTS", None)
    return env


def _test_sh(*args: str) -> subprocess.CompletedProcess[str]:
    """scripts/test.sh with ``args``, in the venv this test runs in (see _script_env)."""
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "test.sh"), *args],
        cwd=ROOT,
        env=_script_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


needs_script_venv = pytest.mark.skipif(
    not (Path(sys.prefix) / ".vtp-installed-test").exists(),
    reason="runs only inside the venv scripts/test.sh set up",
)


@needs_script_venv
def test_test_sh_fails_when_no_tests_are_collected() -> None:
    result = _test_sh("tests/test_scripts.py", "-k", "no_such_test_x")
    assert result.returncode == 5, result.stdout[-2000:] + result.stderr[-2000:]
    assert "collected no tests" in result.stderr


@needs_script_venv
def test_test_sh_passes_arguments_and_exit_code_of_pytest(tmp_path: Path) -> None:
    failing = tmp_path / "test_fails.py"
    failing.write_text("def test_fails():\n    assert False\n")
    result = _test_sh(str(failing), "-q", "-p", "no:cacheprovider")
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert "1 failed" in result.stdout


@needs_script_venv
def test_test_sh_fast_leaves_out_browser_netns_and_slow_tests(tmp_path: Path) -> None:
    tests = tmp_path / "test_kinds.py"
    tests.write_text(
        "import pytest\n\n"
        "def test_plain():\n    pass\n\n"
        "@pytest.mark.browser\ndef test_browser():\n    pass\n\n"
        "@pytest.mark.netns\ndef test_netns():\n    pass\n\n"
        "@pytest.mark.slow\ndef test_slow():\n    pass\n"
    )
    result = _test_sh("--fast", str(tests), "-q", "-p", "no:cacheprovider")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "1 passed, 3 deselected" in result.stdout, result.stdout


@needs_script_venv
def test_run_sh_hands_arguments_to_vtp_serve() -> None:
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "run.sh"), "--help"],
        cwd=ROOT,
        env=_script_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "usage: vtp serve" in result.stdout
