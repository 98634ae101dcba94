"""One contract for both object stores: the local-disk default and S3 (a real SeaweedFS)."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from s3 import SeaweedS3, require_weed, seaweedfs_fixture, start_seaweedfs

from vtp.config import load_config
from vtp.storage import ObjectInfo, ObjectNotFound, ObjectStore, StorageError
from vtp.storage.base import CHUNK
from vtp.storage.local import LocalObjectStore
from vtp.storage.s3 import S3ObjectStore, split_endpoint

seaweedfs = seaweedfs_fixture("session")

BAD_KEYS = ["", "/abs", "a//b", "../escape", "a/../b", "./a", "a/.", "a/..", "trailing/"]


def make_s3_store(server: SeaweedS3, bucket: str) -> S3ObjectStore:
    return S3ObjectStore(
        server.endpoint,
        server.access_key,
        server.secret_key,
        bucket,
        region="us-east-1",
        secure=False,
    )


@pytest.fixture(params=["local", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ObjectStore]:
    """A started, empty store of each kind (S3: a fresh bucket on the shared server)."""
    instance: ObjectStore
    if request.param == "local":
        instance = LocalObjectStore(tmp_path / "objects")
    else:
        server: SeaweedS3 = request.getfixturevalue("seaweedfs")
        instance = make_s3_store(server, f"vtp-test-{uuid.uuid4().hex[:12]}")
    await instance.start()
    try:
        yield instance
    finally:
        await instance.close()


async def test_stream_reads_in_chunks_and_closes_early(store: ObjectStore) -> None:
    data = os.urandom(3 * CHUNK + 123)
    await store.put_bytes("stream/obj", data, "application/octet-stream")
    chunks = [chunk async for chunk in store.stream("stream/obj")]
    assert b"".join(chunks) == data and all(len(c) <= CHUNK for c in chunks)
    assert len(chunks) >= 4
    with pytest.raises(ObjectNotFound):
        async for _ in store.stream("stream/missing"):
            pass
    async with contextlib.aclosing(store.stream("stream/obj")) as partial:
        first = await anext(partial)  # and stop there: closing releases the response
        assert first and data.startswith(first)


async def test_download_streams_from_either_store(store: ObjectStore, aiohttp_client: Any) -> None:
    from aiohttp import web

    from vtp.api.middleware import error_middleware
    from vtp.api.uploads import download
    from vtp.appkeys import STORE

    data = os.urandom(2 * CHUNK + 7)
    await store.put_bytes("files/report.pdf", data, "application/pdf")
    meta = {"key": "files/report.pdf", "name": "rapport é.pdf", "size": len(data)}
    meta["content_type"] = "application/pdf"
    missing = {**meta, "key": "files/gone.pdf"}

    async def handler(request: web.Request) -> web.StreamResponse:
        return await download(request, missing if request.query.get("gone") else meta)

    app = web.Application(middlewares=[error_middleware])  # ApiError -> JSON, as in VTP
    app[STORE] = store
    app.router.add_get("/file", handler)
    client = await aiohttp_client(app)
    resp = await client.get("/file")
    assert resp.status == 200 and await resp.read() == data
    assert resp.headers["Content-Type"] == "application/pdf"
    assert resp.headers["Content-Disposition"] == 'attachment; filename="rapport ?.pdf"'
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert int(resp.headers["Content-Length"]) == len(data)
    resp = await client.get("/file", params={"gone": "1"})
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"


async def test_ping_succeeds(store: ObjectStore) -> None:
    await store.ping()


async def test_put_and_get_bytes(store: ObjectStore) -> None:
    info = await store.put_bytes("recordings/r1/video.webm", b"\x00\x01binary\xff", "video/webm")
    assert info == ObjectInfo("recordings/r1/video.webm", 9, "video/webm")
    assert await store.get_bytes("recordings/r1/video.webm") == b"\x00\x01binary\xff"
    assert await store.stat("recordings/r1/video.webm") == info


async def test_empty_object(store: ObjectStore) -> None:
    await store.put_bytes("empty.txt", b"", "text/plain")
    assert await store.get_bytes("empty.txt") == b""
    assert (await store.stat("empty.txt")).size == 0


async def test_overwrite_replaces_data_and_content_type(store: ObjectStore) -> None:
    await store.put_bytes("doc", b"first version", "text/plain")
    await store.put_bytes("doc", b"<p>second</p>", "text/html")
    assert await store.get_bytes("doc") == b"<p>second</p>"
    stat = await store.stat("doc")
    assert (stat.size, stat.content_type) == (13, "text/html")


async def test_keys_with_spaces_and_unicode(store: ObjectStore) -> None:
    key = "submissions/ü ber/Übung 1 (final).pdf"
    await store.put_bytes(key, b"%PDF-1.7", "application/pdf")
    assert await store.get_bytes(key) == b"%PDF-1.7"
    assert (await store.stat(key)).content_type == "application/pdf"


async def test_put_file(store: ObjectStore, tmp_path: Path) -> None:
    # Larger than S3's 5 MiB minimum part: exercises a multipart upload on S3.
    payload = bytes(range(256)) * (6 * 1024 * 4 + 3)
    source = tmp_path / "upload.bin"
    source.write_bytes(payload)
    info = await store.put_file("uploads/big.bin", source, "application/octet-stream")
    assert info == ObjectInfo("uploads/big.bin", len(payload), "application/octet-stream")
    assert await store.stat("uploads/big.bin") == info
    assert await store.get_bytes("uploads/big.bin") == payload


async def test_sha256_reads_what_the_store_holds(store: ObjectStore, tmp_path: Path) -> None:
    import hashlib

    payload = os.urandom(3 * 1024 * 1024 + 17)
    await store.put_bytes("digest/a.bin", payload, "application/octet-stream")
    assert await store.sha256("digest/a.bin") == hashlib.sha256(payload).hexdigest()
    with pytest.raises(ObjectNotFound):
        await store.sha256("digest/missing.bin")


async def test_put_file_in_chosen_parts(store: ObjectStore, tmp_path: Path) -> None:
    payload = os.urandom(11 * 1024 * 1024)
    source = tmp_path / "parts.bin"
    source.write_bytes(payload)
    info = await store.put_file("parts/p.bin", source, "video/webm", part_size=5 * 1024 * 1024)
    assert info.size == len(payload)
    assert await store.get_bytes("parts/p.bin") == payload


async def test_presigned_url_or_local_file(store: ObjectStore) -> None:
    import aiohttp

    await store.put_bytes("play/v.webm", b"webm-bytes", "video/webm")
    url = await store.presign_get("play/v.webm", 60)
    if isinstance(store, LocalObjectStore):
        # No URL of its own: the API serves the file, found here.
        assert url is None
        path = store.local_path("play/v.webm")
        assert path.read_bytes() == b"webm-bytes"
        with pytest.raises(ValueError):
            store.local_path("../escape")
    else:
        assert url is not None and store.local_path("play/v.webm") is None
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            assert resp.status == 200
            assert await resp.read() == b"webm-bytes"


async def test_put_file_with_missing_source_is_a_storage_error(
    store: ObjectStore, tmp_path: Path
) -> None:
    with pytest.raises(StorageError):
        await store.put_file("uploads/none.bin", tmp_path / "does-not-exist", "text/plain")
    with pytest.raises(ObjectNotFound):
        await store.stat("uploads/none.bin")
    if isinstance(store, LocalObjectStore):
        leftovers = [p.name for p in store.root.rglob("*") if p.is_file()]
        assert leftovers == [], "a failed upload left files behind"


async def test_missing_object(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound):
        await store.get_bytes("no/such/object")
    with pytest.raises(ObjectNotFound):
        await store.stat("no/such/object")


async def test_object_not_found_is_a_storage_error(store: ObjectStore) -> None:
    with pytest.raises(StorageError):
        await store.get_bytes("missing")


async def test_delete(store: ObjectStore) -> None:
    await store.put_bytes("to/delete.txt", b"bye", "text/plain")
    await store.put_bytes("to/keep.txt", b"stay", "text/plain")
    await store.delete("to/delete.txt")
    with pytest.raises(ObjectNotFound):
        await store.get_bytes("to/delete.txt")
    with pytest.raises(ObjectNotFound):
        await store.stat("to/delete.txt")
    assert await store.get_bytes("to/keep.txt") == b"stay"
    # Deleting again (or something that never existed) is not an error.
    await store.delete("to/delete.txt")
    await store.delete("never/existed")


async def test_prefix_is_not_an_object(store: ObjectStore) -> None:
    await store.put_bytes("folder/inner.txt", b"x", "text/plain")
    with pytest.raises(ObjectNotFound):
        await store.get_bytes("folder")
    with pytest.raises(ObjectNotFound):
        await store.stat("folder")


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_bad_keys_are_rejected(store: ObjectStore, key: str, tmp_path: Path) -> None:
    source = tmp_path / "f"
    source.write_bytes(b"x")
    with pytest.raises(ValueError):
        await store.put_bytes(key, b"x", "text/plain")
    with pytest.raises(ValueError):
        await store.put_file(key, source, "text/plain")
    with pytest.raises(ValueError):
        await store.get_bytes(key)
    with pytest.raises(ValueError):
        await store.stat(key)
    with pytest.raises(ValueError):
        await store.delete(key)


# --- local disk specifics -------------------------------------------------------------


async def test_local_store_never_writes_outside_its_root(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "root")
    await store.start()
    with pytest.raises(ValueError):
        await store.put_bytes("../outside.txt", b"x", "text/plain")
    assert not (tmp_path / "outside.txt").exists()
    await store.put_bytes("a/b.txt", b"x", "text/plain")
    leftovers = [p.name for p in (tmp_path / "root" / "a").iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


async def test_local_store_write_errors_are_storage_errors(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "root")
    await store.start()
    await store.put_bytes("file", b"x", "text/plain")
    # "file" is an object, so it cannot also be a folder of other objects.
    with pytest.raises(StorageError):
        await store.put_bytes("file/child", b"y", "text/plain")
    with pytest.raises(ObjectNotFound):
        await store.get_bytes("file/child")
    with pytest.raises(ObjectNotFound):
        await store.stat("file/child")


async def test_local_ping_fails_when_root_is_gone(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "root")
    await store.start()
    (tmp_path / "root").rmdir()
    with pytest.raises(StorageError):
        await store.ping()


# --- S3 specifics ---------------------------------------------------------------------


def test_split_endpoint() -> None:
    assert split_endpoint("http://minio:9000", True) == ("minio:9000", False)
    assert split_endpoint("https://s3.example.org/", False) == ("s3.example.org", True)
    assert split_endpoint("127.0.0.1:8333", False) == ("127.0.0.1:8333", False)
    assert split_endpoint("127.0.0.1:8333", True) == ("127.0.0.1:8333", True)
    with pytest.raises(ValueError):
        split_endpoint("http://minio:9000/bucket", False)


async def test_s3_store_creates_its_bucket(seaweedfs: SeaweedS3) -> None:
    bucket = f"vtp-new-{uuid.uuid4().hex[:10]}"
    store = make_s3_store(seaweedfs, bucket)
    await store.start()
    try:
        await store.put_bytes("k", b"v", "text/plain")
    finally:
        await store.close()
    # A second store on the same (now existing) bucket sees the object.
    again = make_s3_store(seaweedfs, bucket)
    await again.start()
    try:
        await again.ping()
        assert await again.get_bytes("k") == b"v"
    finally:
        await again.close()


async def test_s3_wrong_credentials_fail_ping(seaweedfs: SeaweedS3) -> None:
    store = S3ObjectStore(
        seaweedfs.endpoint,
        seaweedfs.access_key,
        "wrong-secret",
        "vtp",
        region="us-east-1",
        secure=False,
    )
    await store.start()  # must not raise: VTP starts and /ready reports the store down
    try:
        with pytest.raises(StorageError):
            await store.ping()
    finally:
        await store.close()


async def test_s3_store_not_started_raises_storage_error() -> None:
    store = S3ObjectStore("127.0.0.1:1", "a", "b", "vtp", region="us-east-1", secure=False)
    with pytest.raises(StorageError):
        await store.ping()
    with pytest.raises(StorageError):
        await store.get_bytes("k")


async def test_s3_ping_fails_when_server_is_stopped(tmp_path: Path) -> None:
    require_weed()
    server = start_seaweedfs(tmp_path / "seaweedfs")
    store = make_s3_store(server, "vtp")
    try:
        await store.start()
        await store.ping()
        await store.put_bytes("k", b"v", "text/plain")
        server.stop()
        assert not server.alive()
        started = time.monotonic()
        with pytest.raises(StorageError):
            await store.ping()
        with pytest.raises(StorageError):
            await store.get_bytes("k")
        assert time.monotonic() - started < 30, "a stopped store must fail fast"
    finally:
        server.stop()
        await store.close()


async def test_s3_start_with_server_down_does_not_raise() -> None:
    from s3 import free_ports

    (port,) = free_ports(1)
    store = S3ObjectStore(
        f"http://127.0.0.1:{port}", "a", "b", "vtp", region="us-east-1", secure=False
    )
    await store.start()
    try:
        with pytest.raises(StorageError):
            await store.ping()
    finally:
        await store.close()


async def test_backends_choose_s3_when_endpoint_is_set(
    seaweedfs: SeaweedS3, tmp_path: Path
) -> None:
    from vtp import backends

    config = load_config(
        state_dir=tmp_path,
        s3_endpoint=seaweedfs.endpoint,
        s3_access_key=seaweedfs.access_key,
        s3_secret_key=seaweedfs.secret_key,
        s3_bucket=f"vtp-cfg-{uuid.uuid4().hex[:10]}",
    )
    async with backends.object_store(config) as store:
        assert isinstance(store, S3ObjectStore)
        await store.ping()
        await store.put_bytes("x", b"1", "text/plain")
        assert await store.get_bytes("x") == b"1"
    local = load_config(state_dir=tmp_path)
    async with backends.object_store(local) as store:
        assert isinstance(store, LocalObjectStore)
        await store.ping()
