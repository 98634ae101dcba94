"""Which node holds a room.

A room is placed when it first opens: on the live node with the least load (CPU and
peers from its last heartbeat, plus the rooms already placed on it, counted at once so
that a burst of openings between two beats spreads out), preferring nodes of a region
when one is given. The choice and the write are one Lua script, so two nodes opening
the same room at the same moment get the same answer: the first script to run places
it, the second finds it placed. A room stays on its node while that node is in the
registry; once the node has left it (shutdown, or heartbeat expired), the next opener
places the room again. A draining node keeps the rooms it holds but gets no new one;
when it gives one up (:meth:`Placement.release`), the next opener places it elsewhere.

A node that died (kill -9) is in the registry until its entry expires (``VTP_NODE_TTL_S``);
meanwhile its rooms would still be sent to it. So when a room's owner has missed its last
heartbeat, placement tries a TCP connection to the owner's URL: refused means no process
listens there any more (the kernel answers for a dead process on a live host), and the
room is placed again at once. A timeout proves nothing (a slow network, a host that is
off): then the TTL decides, as before.

Redis: ``vtp:cluster:room:<name>`` holds the owner's node id, and the owner's
``node-rooms:<id>`` set (:mod:`vtp.cluster.nodes`) holds the name, for the rooms count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from urllib.parse import urlsplit

from redis.asyncio import Redis

from vtp.cluster.nodes import DRAINING_KEY, PREFIX, NodeInfo, NodeRegistry, node_key, rooms_key

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 1.0
PROBE_CACHE_S = 0.5  # many joiners at once: one probe of a node per this long

# Score added per room already placed on a node: one room counts as ten peers (or 10% of
# a core) of load, so that rooms are spread before their peers arrive.
ROOM_WEIGHT = 10.0

# KEYS[1]: the room's key, KEYS[2]: the set of draining nodes. ARGV: room name, node key
# prefix, node-rooms key prefix, TTL of a node-rooms set (ms), room weight, then candidate
# id and load score pairs. Returns the owner's id (a draining owner keeps its rooms), or
# false when no candidate is alive and not draining.
_PLACE = """
local owner = redis.call('GET', KEYS[1])
if owner and redis.call('EXISTS', ARGV[2] .. owner) == 1 then
  return owner
end
local best, best_score = nil, nil
for i = 6, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('EXISTS', ARGV[2] .. id) == 1
      and redis.call('SISMEMBER', KEYS[2], id) == 0 then
    local score = tonumber(ARGV[i + 1])
      + tonumber(ARGV[5]) * redis.call('SCARD', ARGV[3] .. id)
    if best_score == nil or score < best_score then
      best, best_score = id, score
    end
  end
end
if not best then
  return false
end
if owner then
  redis.call('SREM', ARGV[3] .. owner, ARGV[1])
end
redis.call('SET', KEYS[1], best)
redis.call('SADD', ARGV[3] .. best, ARGV[1])
redis.call('PEXPIRE', ARGV[3] .. best, ARGV[4])
return best
"""

# KEYS[1]: the room's key, KEYS[2]: the node's rooms set. ARGV: node id, room name.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
redis.call('SREM', KEYS[2], ARGV[2])
return 1
"""


def room_key(room: str) -> str:
    return f"{PREFIX}room:{room}"


class NoLiveNode(Exception):
    """No node is in the registry (not even this one: Redis lost its entry)."""


class Placement:
    """Places rooms on the nodes of ``registry`` and answers where a room lives."""

    def __init__(self, redis: Redis, registry: NodeRegistry, *, node_ttl_s: float) -> None:
        self.redis = redis
        self.registry = registry
        self.node_ttl_ms = int(node_ttl_s * 1000)
        self._place = redis.register_script(_PLACE)
        self._release = redis.register_script(_RELEASE)
        self._probed: dict[str, tuple[float, bool]] = {}  # node id -> (when, refused)

    async def owner(self, room: str) -> str | None:
        """The id of the live node holding ``room``, or None if it is not placed."""
        owner = await self.redis.get(room_key(room))
        if owner is None:
            return None
        node_id = owner.decode() if isinstance(owner, bytes) else owner
        if not await self.redis.exists(node_key(node_id)):
            return None
        return str(node_id)

    async def place(self, room: str, *, region: str | None = None) -> NodeInfo:
        """The node that holds ``room``: where it is, or (if it is nowhere alive) the
        least-loaded live node, of ``region`` when that region has one."""
        dead: set[str] = set()
        owner = await self.owner(room)
        if owner is not None:
            node = await self._node(owner)
            if node is not None:
                if not await self.died(node):
                    return node
                log.warning(
                    "node %s refuses connections at %s: placing its room %s again",
                    node.id,
                    node.url,
                    room,
                )
                # (only if it is still that node's: another opener may have moved it)
                await self._release(keys=[room_key(room), rooms_key(node.id)], args=[node.id, room])
                dead.add(node.id)
        for _ in range(3):  # candidates may leave between the listing and the script
            nodes = [n for n in await self.registry.nodes() if not n.draining and n.id not in dead]
            if region:
                nearby = [n for n in nodes if n.region == region]
                nodes = nearby or nodes
            if not nodes:
                raise NoLiveNode("no VTP node is registered that takes new rooms")
            args: list[str | float] = [
                room,
                f"{PREFIX}node:",
                f"{PREFIX}node-rooms:",
                self.node_ttl_ms,
                ROOM_WEIGHT,
            ]
            for node in nodes:
                args += [node.id, node.load_score()]
            chosen = await self._place(keys=[room_key(room), DRAINING_KEY], args=args)
            if chosen:
                node_id = chosen.decode() if isinstance(chosen, bytes) else str(chosen)
                by_id = {n.id: n for n in nodes}
                found = by_id.get(node_id) or await self._node(node_id)
                if found is not None:
                    return found
        raise NoLiveNode(f"no live node could take room {room!r}")

    async def died(self, node: NodeInfo) -> bool:
        """Whether ``node`` (still in the registry) is surely gone: it missed its last
        heartbeat and its URL refuses connections."""
        if node.id == self.registry.id:
            return False
        if time.time() - node.heartbeat_at < self.registry.heartbeat_s + 0.25:
            return False  # it beat lately: alive (and not worth a probe)
        now = time.monotonic()
        cached = self._probed.get(node.id)
        if cached is not None and now - cached[0] < PROBE_CACHE_S:
            return cached[1]
        refused = await _refuses(node.url)
        self._probed[node.id] = (now, refused)
        return refused

    async def _node(self, node_id: str) -> NodeInfo | None:
        if node_id == self.registry.id:
            return self.registry.me
        return await self.registry.node(node_id)

    async def release(self, room: str) -> None:
        """This node no longer holds ``room`` (it closed here): the next opener places it."""
        node_id = self.registry.id
        await self._release(keys=[room_key(room), rooms_key(node_id)], args=[node_id, room])

    async def release_all(self) -> None:
        """This node is leaving: every room placed on it may be placed again."""
        node_id = self.registry.id
        members = await self.redis.smembers(rooms_key(node_id))
        for raw in members:
            room = raw.decode() if isinstance(raw, bytes) else str(raw)
            await self._release(keys=[room_key(room), rooms_key(node_id)], args=[node_id, room])
        await self.redis.delete(rooms_key(node_id))


async def _refuses(url: str) -> bool:
    """Whether a TCP connection to ``url``'s host and port is refused (within
    ``PROBE_TIMEOUT_S``; a timeout or any other failure is not a refusal)."""
    parts = urlsplit(url)
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if host is None or host in ("0.0.0.0", "::"):
        return False  # (a wildcard names no host: probed from elsewhere it means the prober)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), PROBE_TIMEOUT_S)
    except ConnectionRefusedError:
        return True
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return False
