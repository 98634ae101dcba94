"""What VTP keeps on local disk is readable by its own user only: folders 0700, files
0600 (state directory, generated JWT secret, local objects, upload and recording spools)."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

from vtp.config import Config


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_state_directory_secret_and_objects_are_private(
    aiohttp_client: Any, config: Config
) -> None:
    from vtp.app import create_app
    from vtp.appkeys import STORE

    generated = config.model_copy(update={"jwt_secret": None})
    client = await aiohttp_client(create_app(generated))
    state = config.data_dir
    assert mode(state) == 0o700
    secret = state / "jwt_secret"
    assert mode(secret) == 0o600
    store = client.server.app[STORE]
    await store.put_bytes("a/b/c.txt", b"x", "text/plain")
    source = state / "source.bin"
    source.write_bytes(b"y" * 10)
    await store.put_file("a/d/e.bin", source, "application/octet-stream")
    objects = state / "objects" / config.s3_bucket
    for folder in (objects, objects / "a", objects / "a" / "b", objects / "a" / "d"):
        assert mode(folder) == 0o700, folder
    written = [p for p in objects.rglob("*") if p.is_file()]
    assert len(written) == 4  # two objects, two metadata files
    assert {mode(p) for p in written} == {0o600}
    # The recorder's spool (created at startup) too.
    assert mode(config.recording_spool) == 0o700


def test_private_dir_makes_every_missing_folder_0700(tmp_path: Path) -> None:
    from vtp.private_files import private_dir, write_private

    deep = tmp_path / "x" / "y" / "z"
    private_dir(deep)
    assert [mode(p) for p in (tmp_path / "x", tmp_path / "x" / "y", deep)] == [0o700] * 3
    existing = tmp_path / "open"
    existing.mkdir(mode=0o755)
    existing.chmod(0o755)
    private_dir(existing)
    assert mode(existing) == 0o700
    write_private(deep / "f", b"data")
    assert mode(deep / "f") == 0o600 and (deep / "f").read_bytes() == b"data"


def test_recording_files_and_manifests_are_0600(tmp_path: Path) -> None:
    from vtp.recorder.matroska import MatroskaFile
    from vtp.recorder.session import write_json_atomically

    spool = tmp_path / "spool"
    from vtp.private_files import private_dir

    private_dir(spool)
    webm = MatroskaFile(spool / "cam.webm", video=None, audio=True)
    webm.close()
    write_json_atomically(spool / "manifest.json", {"state": "closed"})
    assert mode(spool / "cam.webm") == 0o600
    assert mode(spool / "manifest.json") == 0o600
