"""The node registry: every `vtp serve` announces itself in Redis and beats every
``VTP_NODE_HEARTBEAT_S``; its entry expires ``VTP_NODE_TTL_S`` after the last beat, so a
node that dies (kill -9, power, network) leaves the registry within that time, and a
node that shuts down cleanly removes itself at once.

Redis layout (prefix ``vtp:cluster:``):

* ``node:<id>`` - the node's JSON (:class:`NodeInfo`), expiring with the TTL;
* ``nodes`` - sorted set of node ids (score: expiry in ms), to list them without SCAN;
* ``node-rooms:<id>`` - the rooms placed on the node (:mod:`vtp.cluster.placement`),
  expiring with the node;
* ``draining`` - set of the ids of nodes that are draining (SIGTERM): placement gives
  them no new rooms (checked inside its script, so the change counts at once), while the
  rooms they hold stay theirs until released.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel
from redis.asyncio import Redis

from vtp.config import Config

log = logging.getLogger(__name__)

PREFIX = "vtp:cluster:"
NODES_KEY = PREFIX + "nodes"
DRAINING_KEY = PREFIX + "draining"


def node_key(node_id: str) -> str:
    return f"{PREFIX}node:{node_id}"


def rooms_key(node_id: str) -> str:
    return f"{PREFIX}node-rooms:{node_id}"


class NodeInfo(BaseModel):
    """What the registry holds of one node (and what ``GET /api/v1/admin/nodes`` lists)."""

    id: str
    url: str
    media_address: str | None
    media_port: int | None
    region: str
    pid: int = 0  # the node's process on its host
    started_at: float
    heartbeat_at: float
    # share of one core the process used over the last beat (1.0 = a whole core)
    cpu: float = 0.0
    peers: int = 0
    rooms_open: int = 0  # SFU rooms open in this process
    forwarded_pps: float = 0.0  # RTP packets written to subscribers per second
    rooms_placed: int = 0  # filled in from Redis when listed, not stored
    draining: bool = False  # takes no new rooms (its own say; placement reads DRAINING_KEY)

    def load_score(self) -> float:
        """Placement's measure of load (lower is less loaded): CPU in percent of one core
        plus peers; the rooms placed on the node are added by the placement script, so
        that rooms placed between two beats count at once."""
        return self.cpu * 100.0 + self.peers


@dataclass(frozen=True, slots=True)
class LoadSample:
    """What the node's media plane counts, read at each beat."""

    peers: int = 0
    rooms: int = 0
    forwarded_packets: int = 0  # monotonic total


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def default_node_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


def node_url(config: Config) -> str:
    """The URL other nodes and clients reach this node at (not the load balancer's)."""
    port = config.node_port or config.port
    if config.node_url:
        return config.node_url.replace("{port}", str(port)).rstrip("/")
    scheme = "https" if config.tls_cert is not None else "http"
    host = config.host if ":" not in config.host else f"[{config.host}]"
    return f"{scheme}://{host}:{port}"


def cluster_refusal(config: Config, workers: int) -> str | None:
    """Why this configuration cannot run as (part of) a cluster, or None. Several nodes
    share rooms, revocations and limits only through a real Redis, and one embedded
    PostgreSQL data folder cannot serve several processes."""
    if workers <= 1 and not config.cluster:
        return None
    why = f"--workers {workers}" if workers > 1 else "VTP_CLUSTER=true"
    if config.embedded_redis:
        return (
            f"{why}: cluster nodes share state through Redis, and the embedded in-process "
            "Redis cannot be shared between processes; set REDIS_URL to a Redis server "
            "every node reaches"
        )
    if workers > 1 and config.embedded_database:
        return (
            f"{why}: the embedded PostgreSQL serves one process; set DATABASE_URL to a "
            "PostgreSQL server every node reaches"
        )
    if workers > 1 and config.port == 0:
        return f"{why}: the workers share one HTTP port; set a fixed VTP_PORT, not 0"
    return None


class NodeRegistry:
    """This node's entry (kept alive while :meth:`running`) and the view of the others."""

    def __init__(
        self,
        redis: Redis,
        me: NodeInfo,
        *,
        heartbeat_s: float,
        ttl_s: float,
        sample: Callable[[], LoadSample] = LoadSample,
    ) -> None:
        self.redis = redis
        self.me = me
        self.heartbeat_s = heartbeat_s
        self.ttl_ms = int(ttl_s * 1000)
        self._sample = sample
        self._task: asyncio.Task[None] | None = None
        # the heartbeat stops between beats, never inside one: a Redis command cancelled
        # half way can leave its pooled connection waiting for an answer that is gone
        self._stopping = asyncio.Event()
        # the live nodes' URLs as of the last beat (what pages may connect to: read on
        # every page response, so not fetched from Redis there)
        self.urls: frozenset[str] = frozenset({me.url})
        self._last = (time.monotonic(), time.process_time(), sample().forwarded_packets)

    @property
    def id(self) -> str:
        return self.me.id

    async def start(self) -> None:
        try:
            # (a node restarted under the same id, as --workers does, is not draining)
            self.me.draining = False
            await self.redis.srem(DRAINING_KEY, self.id)
            await self.beat()
            await self.refresh_urls()
        except Exception:  # Redis down at start: the node serves (/ready says so), and
            # joins the registry at the first beat that gets through
            log.exception("node %s: first heartbeat failed", self.id)
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name="vtp-node-heartbeat")
        log.info("node %s registered at %s (region %r)", self.id, self.me.url, self.me.region)

    async def drain(self) -> None:
        """Take no new rooms from now on (the node stays in the registry, beating, so
        the rooms it holds stay placed here until it releases them)."""
        self.me.draining = True
        await self.redis.sadd(DRAINING_KEY, self.id)
        await self.beat()
        log.info("node %s is draining: no new rooms are placed on it", self.id)

    async def close(self) -> None:
        """Leave the registry at once; the rooms placed here may be placed again."""
        await self.stop_beating()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(node_key(self.id))
            pipe.zrem(NODES_KEY, self.id)
            pipe.srem(DRAINING_KEY, self.id)
            await pipe.execute()
        log.info("node %s left the registry", self.id)

    def _measure(self) -> None:
        wall, cpu = time.monotonic(), time.process_time()
        sample = self._sample()
        forwarded = sample.forwarded_packets
        last_wall, last_cpu, last_forwarded = self._last
        elapsed = wall - last_wall
        if elapsed > 0.2:  # a beat right after another would measure noise
            self.me.cpu = round((cpu - last_cpu) / elapsed, 3)
            self.me.forwarded_pps = round(max(0, forwarded - last_forwarded) / elapsed, 1)
            self._last = (wall, cpu, forwarded)
        self.me.peers = sample.peers
        self.me.rooms_open = sample.rooms

    async def beat(self) -> None:
        self._measure()
        self.me.heartbeat_at = time.time()
        expiry = int(self.me.heartbeat_at * 1000) + self.ttl_ms
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(
                node_key(self.id), self.me.model_dump_json(exclude={"rooms_placed"}), px=self.ttl_ms
            )
            pipe.zadd(NODES_KEY, {self.id: expiry})
            pipe.pexpire(rooms_key(self.id), self.ttl_ms)
            await pipe.execute()

    async def stop_beating(self) -> None:
        """No more heartbeats (the entry expires after the TTL unless :meth:`close`
        removes it)."""
        task, self._task = self._task, None
        if task is not None:
            self._stopping.set()
            await task

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.heartbeat_s)
                return
            try:
                await self.beat()
                await self.refresh_urls()
            except Exception:  # Redis away for a moment: beat again next time
                log.exception("node %s: heartbeat failed", self.id)

    async def nodes(self) -> list[NodeInfo]:
        """The live nodes, with the number of rooms placed on each."""
        ids = [_text(i) for i in await self.redis.zrange(NODES_KEY, 0, -1)]
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for node_id in ids:
                pipe.get(node_key(node_id))
                pipe.scard(rooms_key(node_id))
            replies = await pipe.execute()
        live: list[NodeInfo] = []
        gone: list[str] = []
        for node_id, raw, placed in zip(ids, replies[::2], replies[1::2], strict=True):
            if raw is None:
                gone.append(node_id)  # expired: its heartbeat stopped
                continue
            info = NodeInfo.model_validate_json(raw)
            info.rooms_placed = int(placed)
            live.append(info)
        if gone:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zrem(NODES_KEY, *gone)
                pipe.srem(DRAINING_KEY, *gone)  # (one that died while draining)
                await pipe.execute()
        return live

    async def refresh_urls(self) -> None:
        self.urls = frozenset({self.me.url, *(node.url for node in await self.nodes())})

    async def node(self, node_id: str) -> NodeInfo | None:
        raw = await self.redis.get(node_key(node_id))
        return NodeInfo.model_validate_json(raw) if raw is not None else None


def this_node(config: Config, *, media_port: int | None) -> NodeInfo:
    now = time.time()
    media_address = config.ice_announce_address or (
        config.ice_addresses[0] if config.ice_addresses else None
    )
    return NodeInfo(
        id=config.node_id or default_node_id(),
        url=node_url(config),
        media_address=media_address,
        media_port=media_port,
        region=config.region,
        pid=os.getpid(),
        started_at=now,
        heartbeat_at=now,
    )
