"""Cluster benchmark: (a) rooms placed across two nodes; (b) the CPU cost of a cascade;
(c) subscribers of one stream with one node and with two.

    python bench/cluster.py --parts a --database-url postgresql://... --redis-url redis://... \
        [--rooms 200] [--sockets 4]
    python bench/cluster.py --parts b,c [--cascade-n 50,200,400] [--rounds 2] \
        [--capacity-n 100,200,300,400,500] [--duration 5] [--workers 3]

(a) starts two `vtp serve` nodes (VTP_CLUSTER=true, open rooms on, signalling on
loopback) sharing the given PostgreSQL and Redis, registers one user per signalling
socket, and opens `--rooms` rooms: room i is joined through node (i mod 2)'s URL,
`--sockets` WebSockets per node working through their share concurrently (join, then
leave). A join is answered `joined` (the room is placed on that node) or `error
room_elsewhere` (placed on the other one). Printed:

* how evenly the rooms are placed (per node: rooms placed, share);
* join answer latency through a node (access check in PostgreSQL + placement in Redis),
  median and p99, and the share answered with a redirect;
* `Placement.place()` timed directly against the same Redis and live registry, for new
  rooms and for rooms already placed, against a plain Redis GET round trip in the same
  run (the baseline: what one Redis request costs here).

(b) and (c) run SFU node processes (`vtp.sfu.Sfu` on one UDP port each, as `vtp serve`
with VTP_ICE_UDP_PORT) with bench/forward.py's publisher (pre-encoded VP8 ~1 Mbps 30 fps
+ Opus) and subscriber workers (aiortc peers counting SRTP at the socket). The relay leg
is made as vtp.signalling.cascade makes it (the origin's relay peer subscribes, the edge's
relay peer publishes that offer), signalled through the bench's pipes instead of HTTP:
what is measured is the media plane.

(b) one stream to N subscribers, per N: one node alone, then origin A -> edge B with the
N subscribers on B, alternating `--rounds` times; both nodes pinned to core 0 (their CPU
time is compared), clients on the other core. Printed: packets delivered to subscribers
per second, CPU (all nodes) per delivered packet, each node's share of a core, the
clients' CPU, loss; then the median ratio cascade / one node (target <= 1.10) and each
node's share of the cascade's CPU.

(c) the number of subscribers with < 1% loss, stepping through `--capacity-n`: one node
(core 0), against two nodes (A on core 0, B on core 1, subscribers split evenly, A also
relaying to B), clients on core 1 in both; with the clients' CPU, which shows where the
limit was on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import forward  # noqa: E402
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


# --- parts (b) and (c): a cascade A -> B ---------------------------------------------------
#
# The nodes here are SFU processes (vtp.sfu.Sfu, one UDP port each, ICE-lite, as `vtp serve`
# with VTP_ICE_UDP_PORT runs it) whose relay leg is set up exactly as vtp.signalling.cascade
# does over HTTP (the origin's relay peer subscribes, the edge's relay peer publishes that
# offer, its answer goes back), but signalled through the bench's pipes: what is measured
# is the media plane, which is where a cascade costs. The publisher and the subscribers
# are bench/forward.py's (pre-encoded VP8 + Opus in; SRTP datagrams counted at the socket).


def node_process(pipe: Any, name: str) -> None:
    logging.basicConfig(level=logging.ERROR)

    async def main() -> None:
        from vtp.config import load_config
        from vtp.sfu import DownConnection, Sfu, events

        sfu = Sfu(load_config(ice_addresses=["127.0.0.1"], peer_timeout_s=3600, ice_udp_port=0))
        await sfu.start()
        room = sfu.room("bench")
        state: dict[str, Any] = {"stream": None, "n": 0}

        def relay_ended(event: Any) -> None:  # (a relay closing ends a setup's meaning)
            if isinstance(event, events.SubscriptionClosed) and event.peer_id.startswith(
                "cascade-"
            ):
                print(f"{name}: relay subscription closed: {event.reason}", file=sys.stderr)
            elif isinstance(event, events.StreamRemoved) and room.origin is not None:
                print(f"{name}: relayed stream ended", file=sys.stderr)
            # (teardown closes everything: the driver reads these during a setup only)

        sfu.add_listener(relay_ended)

        async def publish(offer: str) -> str:
            pub = await room.join("teacher").publish(offer)
            state["stream"] = pub.id
            return pub.answer_sdp

        async def relay_offer(edge: str) -> tuple[str, str]:
            """Origin: the edge's relay peer subscribes (as cascade.relay_subscribe)."""
            peer = room.join(f"cascade-{edge}", relay=True)
            sub = await peer.subscribe(state["stream"])
            return sub.id, sub.offer_sdp

        async def relay_answer(edge: str, sub_id: str, sdp: str) -> None:
            await room.peers[f"cascade-{edge}"].answer(sub_id, sdp)

        async def relay_publish(origin: str, offer: str) -> str:
            """Edge: the origin's offer published by a relay peer (as EdgeRoom._relay)."""
            room.origin = origin
            pub = await room.join("teacher", relay=True).publish(offer)
            state["stream"] = pub.id
            return pub.answer_sdp

        async def ready() -> bool:
            return any(s.id == state["stream"] for s in room.streams())

        async def stats() -> dict[str, Any]:
            local = relayed = 0
            for peer in room.peers.values():
                for conn in peer.connections.values():
                    if isinstance(conn, DownConnection):
                        sent = sum(d.packets for d in conn.tracks)
                        if peer.relay:
                            relayed += sent
                        else:
                            local += sent
            if os.environ.get("BENCH_DEBUG"):
                relays = [p.stats() for p in room.peers.values() if p.relay]
                print(name, json.dumps(relays), file=sys.stderr, flush=True)
            up = room.publication(state["stream"]) if state["stream"] else None
            received = sum(t.packets for t in up.tracks) if up is not None else 0
            return {
                "cpu": forward.cpu_seconds(),
                "local": local,
                "relayed": relayed,
                "received": received,  # from the publisher (origin) or the relay (edge)
            }

        await forward.serve(
            pipe,
            {
                "publish": publish,
                "relay_offer": relay_offer,
                "relay_answer": relay_answer,
                "relay_publish": relay_publish,
                "ready": ready,
                **forward.viewers(room, state),
                "stats": stats,
            },
        )
        await sfu.close()

    forward._loopback()
    asyncio.run(main())


def start_on(cores: list[int], target: Any, *args: Any) -> tuple[mp.Process, Any]:
    parent, child = mp.Pipe()
    proc = mp.Process(target=_on_cores, args=(cores, target, child, *args), daemon=True)
    proc.start()
    return proc, parent


def _on_cores(cores: list[int], target: Any, *args: Any) -> None:
    available = sorted(os.sched_getaffinity(0))
    wanted = [c for c in cores if c in available]
    if wanted:
        os.sched_setaffinity(0, wanted)
    if target is forward.publisher_process:
        with contextlib.suppress(OSError):
            os.nice(-10)  # the publisher shares a core with the subscriber workers
    target(*args)


def run_queue_wait(pid: int) -> float:
    """Seconds the process has waited for a CPU while runnable (schedstat): how much
    other load on the machine held it back."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Setup:
    """Nodes (one, or an origin and an edge), the publisher on the first, subscribers."""

    nodes: list[tuple[mp.Process, Any]]
    publisher: tuple[mp.Process, Any]
    workers: list[tuple[mp.Process, Any]]
    placed: list[int] = field(default_factory=list)  # subscribers per node
    nominal_pps: float = 0.0  # what the publisher sends (a starved node lags behind it)

    def close(self) -> None:
        for proc, pipe in [*self.workers, self.publisher, *self.nodes]:
            with contextlib.suppress(Exception):
                pipe.send(("exit", ()))
                if pipe.poll(5):
                    pipe.recv()
            proc.join(5)
            if proc.is_alive():
                proc.kill()


def nominal_pps(media: Any) -> float:
    """Packets per second the publisher sends: aiortc's VP8 packetizer (1,300 bytes less
    the payload descriptor per packet) over the pre-encoded frames, plus 20 ms Opus."""
    frames = media[0]
    video = sum(math.ceil(len(f) / 1296) for f, _ in frames) / (len(frames) / forward.FPS)
    return video + 50


def build(node_cores: list[list[int]], client_cores: list[int], workers: int, media: Any) -> Setup:
    call = forward.call
    nodes = [
        start_on(cores, node_process, name)
        for cores, name in zip(node_cores, ("node-a", "node-b"), strict=False)
    ]
    publisher = start_on(client_cores, forward.publisher_process, *media)
    subs = [start_on(client_cores, forward.subscriber_process) for _ in range(workers)]
    setup = Setup(nodes, publisher, subs, [0] * len(nodes), nominal_pps(media))
    pp, origin = publisher[1], nodes[0][1]
    call(pp, "answer", call(origin, "publish", call(pp, "offer")))
    if len(nodes) == 2:
        edge = nodes[1][1]
        sub_id, offer = call(origin, "relay_offer", "node-b")
        call(origin, "relay_answer", "node-b", sub_id, call(edge, "relay_publish", "node-a", offer))
        deadline = time.monotonic() + 20
        while not call(edge, "ready"):
            if time.monotonic() > deadline:
                raise RuntimeError("the relay did not connect")
            time.sleep(0.1)
    time.sleep(1.5)
    return setup


def grow(setup: Setup, counts: list[int]) -> None:
    """Add subscribers until node i has counts[i] (round robin over the workers)."""
    call, workers = forward.call, setup.workers
    for index, target in enumerate(counts):
        node = setup.nodes[index][1]
        while setup.placed[index] < target:
            batch = min(target - setup.placed[index], 20 * len(workers))
            forward.add_viewers(node, workers, batch, sum(setup.placed))
            setup.placed[index] += batch
    want = sum(setup.placed)
    deadline = time.monotonic() + 30 + want / 5  # (DTLS handshakes on a busy core)
    while (connected := sum(call(p, "connected") for _, p in workers)) < want:
        if time.monotonic() > deadline:
            # a handshake lost on a busy machine: measure those that connected (the
            # others count no packets, so they neither add nor hide loss)
            print(f"    ({want - connected} of {want} subscribers never connected)")
            if connected < want * 0.9:
                raise RuntimeError(f"only {connected} of {want} subscribers connected")
            break
        time.sleep(0.2)
    time.sleep(2.5)  # a keyframe (every 2 s) has reached everyone


@dataclass
class Sample:
    n: int
    delivered_pps: float  # packets written to end subscribers, per second, all nodes
    cpu_per_packet_us: float  # all nodes' CPU per delivered packet
    node_cpu: list[float]  # each node's share of one core
    client_cpu: float  # publisher + subscriber workers, share of one core
    node_wait: list[float]  # each node's wait for a CPU while runnable, s per s
    loss: float
    worst: float
    kept_up: float  # delivered / (subscribers x the stream's nominal packet rate)


def measure(setup: Setup, duration: float) -> Sample:
    call = forward.call
    for _, pipe in setup.workers:
        call(pipe, "reset")
    clients = [setup.publisher[0].pid, *(p.pid for p, _ in setup.workers)]
    node_pids = [proc.pid or 0 for proc, _ in setup.nodes]
    w0 = [run_queue_wait(pid) for pid in node_pids]
    s0 = [call(pipe, "stats") for _, pipe in setup.nodes]
    c0 = sum(process_cpu(pid) for pid in clients if pid is not None)
    t0 = time.monotonic()
    time.sleep(duration)
    s1 = [call(pipe, "stats") for _, pipe in setup.nodes]
    c1 = sum(process_cpu(pid) for pid in clients if pid is not None)
    elapsed = time.monotonic() - t0
    waits = [(run_queue_wait(pid) - w) / elapsed for pid, w in zip(node_pids, w0, strict=True)]
    results = [r for _, pipe in setup.workers for r in call(pipe, "results")]
    cpu = [b["cpu"] - a["cpu"] for a, b in zip(s0, s1, strict=True)]
    delivered = sum(b["local"] - a["local"] for a, b in zip(s0, s1, strict=True))
    received = sum(r for r, _ in results)
    expected = sum(e for _, e in results)
    return Sample(
        sum(setup.placed),
        delivered / elapsed,
        sum(cpu) / delivered * 1e6 if delivered else math.inf,
        [c / elapsed for c in cpu],
        (c1 - c0) / elapsed,
        waits,
        1 - received / expected if expected else 1.0,
        max((1 - r / e for r, e in results if e), default=1.0),
        delivered / elapsed / (sum(setup.placed) * setup.nominal_pps or 1),
    )


def waited(sample: Sample) -> str:
    """Each node's wait for a CPU, ms per s (other sessions' load on this machine)."""
    return "/".join(f"{1000 * w:.0f}" for w in sample.node_wait) + " ms/s"


def cascade_cpu(args: argparse.Namespace, media: Any) -> None:
    """(b) one stream to N subscribers: one node alone, then origin A -> edge B with the N
    on B; both nodes on core 0 (their CPU time is what is compared), clients on the rest."""
    cores = sorted(os.sched_getaffinity(0))
    node_core, client_cores = cores[:1], cores[1:] or cores
    print(f"(b) cascade CPU: one stream, N subscribers; nodes on core {node_core[0]},")
    print("    clients on the other core(s); CPU per packet delivered to subscribers")
    print(
        "    setup        N  delivered/s  µs/pkt  node A   node B   clients   loss  kept up  waited"
    )
    for n in args.cascade_n:
        rows = {}
        for setup_name in ("one node", "cascade") * args.rounds:
            two = setup_name == "cascade"
            setup = build(
                [node_core, node_core] if two else [node_core], client_cores, args.workers, media
            )
            try:
                grow(setup, [0, n] if two else [n])
                sample = measure(setup, args.duration)
            finally:
                setup.close()
            rows.setdefault(setup_name, []).append(sample)
            shares = [f"{100 * c:5.1f}%" for c in sample.node_cpu] + ["     -"]
            print(
                f"    {setup_name:<9} {n:4d} {sample.delivered_pps:11.0f} "
                f"{sample.cpu_per_packet_us:7.2f}  {shares[0]}  {shares[1]}  "
                f"{100 * sample.client_cpu:6.1f}%  {100 * sample.loss:5.2f}%"
                f"  {100 * sample.kept_up:6.1f}%  {waited(sample)}",
                flush=True,
            )
        one = statistics.median(s.cpu_per_packet_us for s in rows["one node"])
        two = statistics.median(s.cpu_per_packet_us for s in rows["cascade"])
        cascade = rows["cascade"][-1]
        share_a = cascade.node_cpu[0] / sum(cascade.node_cpu)
        print(
            f"    N={n}: cascade/one node = {two / one:.3f}"
            f" (overhead {100 * (two / one - 1):+.1f}%, target <= +10%);"
            f" shares of the cascade's CPU: A {100 * share_a:.0f}%,"
            f" B {100 * (1 - share_a):.0f}%"
        )


def capacity(args: argparse.Namespace, media: Any) -> None:
    """(c) subscribers of one stream with < 1% loss: one node (core 0) against two (A on
    core 0, B on core 1, the subscribers split between them), clients on core 1."""
    cores = sorted(os.sched_getaffinity(0))
    first, second = cores[0], cores[-1]
    print(f"(c) subscribers with < 1% loss; one node on core {first}; two nodes on cores")
    print(f"    {first} and {second}, subscribers split evenly; clients on core {second}")
    print(
        "    setup        N  delivered/s  µs/pkt  node A   node B   clients   loss  worst"
        "  kept up  waited"
    )
    best: dict[str, int] = {}
    for setup_name in ("one node", "two nodes"):
        two = setup_name == "two nodes"
        setup = build([[first], [second]] if two else [[first]], [second], args.workers, media)
        try:
            for n in args.capacity_n:
                try:
                    grow(setup, [n - n // 2, n // 2] if two else [n])
                    sample = measure(setup, args.duration)
                except Exception as exc:
                    print(f"    {setup_name:<9} {n:4d}  failed: {exc}", flush=True)
                    break
                shares = [f"{100 * c:5.1f}%" for c in sample.node_cpu] + ["     -"]
                print(
                    f"    {setup_name:<9} {n:4d} {sample.delivered_pps:11.0f} "
                    f"{sample.cpu_per_packet_us:7.2f}  {shares[0]}  {shares[1]}  "
                    f"{100 * sample.client_cpu:6.1f}%  {100 * sample.loss:5.2f}% "
                    f"{100 * sample.worst:5.2f}%  {100 * sample.kept_up:6.1f}%  {waited(sample)}",
                    flush=True,
                )
                # a node that falls behind queues packets (no loss seen yet, but it
                # would come): keeping up with the publisher counts as much as loss
                if sample.loss >= 0.01 or sample.kept_up < 0.95:
                    break
                best[setup_name] = n
        finally:
            setup.close()
    for name in ("one node", "two nodes"):
        print(
            f"    {name}: {best.get(name, 0)} subscribers with < 1% loss and >= 95% of the"
            " stream delivered (of the N tried)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="a,b,c", help="which parts to run")
    parser.add_argument("--database-url", help="part (a)")
    parser.add_argument("--redis-url", help="part (a)")
    parser.add_argument("--rooms", type=int, default=200)
    parser.add_argument("--sockets", type=int, default=4)
    parser.add_argument("--cascade-n", default="50,200", help="(b) subscriber counts")
    parser.add_argument("--rounds", type=int, default=2, help="(b) alternations per N")
    parser.add_argument("--capacity-n", default="100,200,300,400,500", help="(c) steps")
    parser.add_argument("--duration", type=float, default=5.0, help="(b, c) seconds measured")
    parser.add_argument("--workers", type=int, default=3, help="(b, c) subscriber processes")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    args.cascade_n = [int(x) for x in args.cascade_n.split(",") if x]
    args.capacity_n = sorted(int(x) for x in args.capacity_n.split(",") if x)
    if "a" in parts:
        if not args.database_url or not args.redis_url:
            raise SystemExit("part (a) needs --database-url and --redis-url")
        placement_bench(args)
    if parts & {"b", "c"}:
        media = forward.pre_encode(4, 1_000_000)
        if "b" in parts:
            cascade_cpu(args, media)
        if "c" in parts:
            capacity(args, media)


def placement_bench(args: argparse.Namespace) -> None:
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
    mp.set_start_method("fork")
    main()
