"""The layering of pyproject.toml's import-linter contracts holds, and breaks when a
forbidden import is added (shown on a copy of the package, the real tree untouched)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}  # this tree's vtp, not the installed one
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(root / "pyproject.toml")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "vtp", tmp_path / "vtp", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def add_import(module: Path, line: str) -> None:
    text = module.read_text()
    anchor = "from __future__ import annotations\n"
    assert anchor in text
    module.write_text(text.replace(anchor, anchor + "\n" + line + "\n", 1))


def test_the_tree_keeps_every_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 4 kept, 0 broken." in result.stdout


def test_the_copy_keeps_them_before_it_is_changed(copy: Path) -> None:
    result = lint_imports(copy)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "line",
    ["from aiohttp import web", "from vtp.api.errors import ApiError", "import vtp.web.live"],
)
def test_web_code_in_the_sfu_breaks_the_forbidden_contract(copy: Path, line: str) -> None:
    add_import(copy / "vtp" / "sfu" / "room.py", line)
    result = lint_imports(copy)
    assert result.returncode != 0
    assert "The SFU imports no web code BROKEN" in result.stdout
    assert re.search(r"^-\s+vtp\.sfu\.room -> ", result.stdout, re.MULTILINE), result.stdout


def test_an_upward_import_breaks_the_layers(copy: Path) -> None:
    # the core reaching for the edge
    add_import(copy / "vtp" / "db" / "users.py", "from vtp.signalling import members")
    result = lint_imports(copy)
    assert result.returncode != 0
    assert "Layers: app/CLI -> edge -> media plane -> core BROKEN" in result.stdout
    assert "vtp.db.users -> vtp.signalling.members" in result.stdout


def test_the_packet_path_is_not_the_edges_to_import(copy: Path) -> None:
    add_import(copy / "vtp" / "signalling" / "rest.py", "from vtp.sfu.uptrack import UpTrack")
    result = lint_imports(copy)
    assert result.returncode != 0
    assert "The edge reaches the SFU through its interface BROKEN" in result.stdout
    assert "vtp.signalling.rest -> vtp.sfu.uptrack" in result.stdout


@pytest.mark.parametrize(
    "line",
    [
        "from vtp.sfu.uptrack import UpTrack",
        "from vtp.sfu.room import Room",
        "from vtp.sfu import Sfu",
    ],
)
def test_the_recorder_taps_through_the_contract_only(copy: Path, line: str) -> None:
    add_import(copy / "vtp" / "recorder" / "session.py", line)
    result = lint_imports(copy)
    assert result.returncode != 0
    assert "The recorder reaches the SFU through the tap contract BROKEN" in result.stdout
    assert "vtp.recorder.session -> vtp.sfu" in result.stdout
