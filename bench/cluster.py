"""Cluster benchmark, part (a): rooms placed across two nodes.

    python bench/cluster.py --database-url postgresql://... --redis-url redis://... \
        [--rooms 200] [--sockets 4]

Starts two `vtp serve` nodes (VTP_CLUSTER=true, open rooms on, signalling on loopback)
sharing the given PostgreSQL and Redis, registers one user per signalling socket, and
opens `--rooms` rooms: room i is joined through node (i mod 2)'s URL, `--sockets`
WebSockets per node working through their share concurrently (join, then leave). A
join is answered `joined` (the room is placed on that node) or `error room_elsewhere`
(placed on the other one). Printed:

* how evenly the rooms are placed (per node: rooms placed, share);
* join answer latency through a node (access check in PostgreSQL + placement in Redis),
  median and p99, and the share answered with a redirect;
* `Placement.place()` timed directly against the same Redis and live registry, for new
  rooms and for rooms already placed, against a plain Redis GET round trip in the same
  run (the baseline: what one Redis request costs here).

Parts (b) cascade CPU and (c) subscribers with two nodes are not written yet.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import aiohttp
from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vtp.cluster.nodes import LoadSample, NodeInfo, NodeRegistry  # noqa: E402
from vtp.cluster.placement import Placement  # noqa: E402

PASSWORD = "bench password 123"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_node(
    name: str, args: argparse.Namespace, state: Path
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VTP_")}
    env.update(
        DATABASE_URL=args.database_url,
        REDIS_URL=args.redis_url,
        VTP_CLUSTER="true",
        VTP_NODE_ID=name,
        VTP_STATE_DIR=str(state),
        VTP_JWT_SECRET="bench-secret-" + "x" * 32,
        VTP_BCRYPT_COST="4",
        VTP_LOG_LEVEL="WARNING",
        VTP_SFU_OPEN_ROOMS="true",
        VTP_ICE_ADDRESSES="127.0.0.1",
        VTP_REGISTER_MAX_PER_ADDRESS="100000",
        VTP_SIGNALLING_MESSAGE_RATE="10000",
        VTP_SIGNALLING_MESSAGE_BURST="10000",
    )
    log = (state / f"{name}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vtp", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return proc, f"http://127.0.0.1:{port}"


def wait_healthy(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"node at {url} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"node at {url} never became healthy")


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def register(http: aiohttp.ClientSession, url: str) -> str:
    email = f"bench-{uuid.uuid4().hex[:10]}@example.org"
    resp = await http.post(
        url + "/api/v1/auth/register",
        json={"email": email, "password": PASSWORD, "display_name": "Bench"},
    )
    body = await resp.json()
    if resp.status != 201:
        raise SystemExit(f"register failed: {body}")
    return str(body["access_token"])


async def open_rooms(
    http: aiohttp.ClientSession, url: str, token: str, rooms: list[str]
) -> list[tuple[float, str]]:
    """Join and leave each room in turn on one socket: (answer latency, answer)."""
    ws = await http.ws_connect(url + "/api/v1/sfu/ws", headers={"Authorization": f"Bearer {token}"})
    results: list[tuple[float, str]] = []
    try:
        first = await ws.receive_json()
        assert first["type"] == "authenticated", first
        for n, room in enumerate(rooms):
            start = time.perf_counter()
            await ws.send_json({"type": "join", "room": room, "request_id": f"j{n}"})
            while True:
                msg = await ws.receive_json()
                if msg.get("request_id") == f"j{n}":
                    break
            elapsed = time.perf_counter() - start
            if msg["type"] == "joined":
                results.append((elapsed, "joined"))
                await ws.send_json({"type": "leave", "request_id": f"l{n}"})
                while (await ws.receive_json()).get("request_id") != f"l{n}":
                    pass
            elif msg["type"] == "error" and msg["error"]["code"] == "room_elsewhere":
                results.append((elapsed, "redirect"))
            else:
                raise SystemExit(f"unexpected answer to join {room}: {msg}")
    finally:
        await ws.close()
    return results


async def direct(args: argparse.Namespace, tag: str) -> None:
    redis = Redis.from_url(args.redis_url)
    now = time.time()
    bench_node = NodeInfo(
        id="bench-observer",
        url="-",
        media_address=None,
        media_port=None,
        region="",
        started_at=now,
        heartbeat_at=now,
    )  # never registered: it only reads the registry
    registry = NodeRegistry(redis, bench_node, heartbeat_s=2, ttl_s=6, sample=LoadSample)
    placement = Placement(redis, registry, node_ttl_s=6)
    try:
        get, new, again = [], [], []
        await redis.get("vtp:cluster:nodes-bench-probe")  # the connection, untimed
        for _ in range(args.rooms):
            start = time.perf_counter()
            await redis.get("vtp:cluster:nodes-bench-probe")
            get.append(time.perf_counter() - start)
        rooms = [f"direct-{tag}-{i}" for i in range(args.rooms)]
        for room in rooms:
            start = time.perf_counter()
            await placement.place(room)
            new.append(time.perf_counter() - start)
        for room in rooms:
            start = time.perf_counter()
            await placement.place(room)
            again.append(time.perf_counter() - start)
        base = statistics.median(get)
        print(f"Placement.place() directly on Redis ({args.rooms} rooms, sequential):")
        for name, values in (("Redis GET", get), ("place new", new), ("place again", again)):
            med, p99 = statistics.median(values), quantile(values, 0.99)
            print(
                f"  {name:<12} median {med * 1000:7.3f} ms  p99 {p99 * 1000:7.3f} ms"
                f"  {med / base:5.1f}x a GET"
            )
    finally:
        await redis.aclose()


async def run(args: argparse.Namespace, urls: list[str]) -> None:
    tag = uuid.uuid4().hex[:6]
    rooms = [f"bench-{tag}-{i}" for i in range(args.rooms)]
    async with aiohttp.ClientSession() as http:
        tokens = [await register(http, urls[0]) for _ in range(2 * args.sockets)]
        # socket s of node d takes rooms i with i % 2 == d and (i // 2) % sockets == s
        work = []
        for door in (0, 1):
            mine = rooms[door::2]
            for s in range(args.sockets):
                share = mine[s :: args.sockets]
                token = tokens[door * args.sockets + s]
                work.append(open_rooms(http, urls[door], token, share))
        start = time.perf_counter()
        answers = [a for batch in await asyncio.gather(*work) for a in batch]
        wall = time.perf_counter() - start
        # the same joins again: the rooms are placed now (the baseline without placing)
        work = []
        for door in (0, 1):
            mine = rooms[door::2]
            for s in range(args.sockets):
                token = tokens[door * args.sockets + s]
                work.append(open_rooms(http, urls[door], token, mine[s :: args.sockets]))
        again = [a for batch in await asyncio.gather(*work) for a in batch]
        resp = await http.get(urls[0] + "/health")
        assert resp.status == 200
    redis = Redis.from_url(args.redis_url)
    try:
        counts = {}
        for name in ("node-a", "node-b"):
            members = await redis.smembers(f"vtp:cluster:node-rooms:{name}")
            counts[name] = sum(1 for m in members if m.decode().startswith(f"bench-{tag}-"))
    finally:
        await redis.aclose()
    latencies = [a[0] for a in answers]
    redirected = sum(1 for a in answers if a[1] == "redirect")
    print(
        f"{args.rooms} rooms opened through 2 nodes' URLs, {args.sockets} sockets per node,"
        f" in {wall:.2f} s"
    )
    print("  node     placed  share")
    for name, count in counts.items():
        print(f"  {name:<8} {count:6d}  {100 * count / args.rooms:5.1f}%")
    spread = max(counts.values()) - min(counts.values())
    print(f"  imbalance: {spread} rooms ({100 * spread / args.rooms:.1f}% of all)")
    median = statistics.median(latencies)
    print(
        f"join answer, first (access check + placing): median {median * 1000:.2f} ms"
        f"  p99 {quantile(latencies, 0.99) * 1000:.2f} ms;"
        f" redirected {100 * redirected / len(answers):.0f}%"
    )
    base = [a[0] for a in again]
    same = sum(1 for a, b in zip(answers, again, strict=True) if a[1] == b[1])
    print(
        f"join answer, again (room placed already): median {statistics.median(base) * 1000:.2f} ms"
        f"  p99 {quantile(base, 0.99) * 1000:.2f} ms;"
        f" first/again median {median / statistics.median(base):.2f}x;"
        f" same answer {same}/{len(again)}"
    )
    await direct(args, tag)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--rooms", type=int, default=200)
    parser.add_argument("--sockets", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vtp-bench-cluster-") as tmp:
        nodes = [start_node(name, args, Path(tmp)) for name in ("node-a", "node-b")]
        try:
            for proc, url in nodes:
                wait_healthy(url, proc)
            asyncio.run(run(args, [url for _, url in nodes]))
        finally:
            for proc, _ in nodes:
                proc.terminate()
            for proc, _ in nodes:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    main()
