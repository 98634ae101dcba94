"""WebSocket channels relayed between the nodes of a cluster: a client may connect to any
node.

The node holding a client's WebSocket (its *door*) is not always the node holding the
room the socket is about (the room's node, :mod:`vtp.signalling.placement`): an SFU
signalling socket joining a room placed elsewhere, or a classroom live channel of a class
whose room is. Then the door relays the socket to the room's node over Redis (one
:class:`~vtp.cluster.mailbox.Mailbox` per node). For signalling, the client's media goes
straight to the room's node: the SDP the client gets there names that node's ICE
candidates. Only channel messages cross Redis, never a packet.

Each kind of channel (:class:`~vtp.channel.socket.Channel` subclass) relays the same way:

* the door keeps the WebSocket: authentication, its user's slot, heartbeats, rate
  limits, the outgoing queue (:meth:`Channel.relay <vtp.channel.socket.Channel.relay>`).
  From the moment the room is found elsewhere on, it hands each client message (after
  its own checks) to the room's node through a :class:`DoorLink`, one at a time: the next
  one goes when the room's node says the last is done (``done``), as on a socket served
  locally;
* the room's node runs the same channel (the signalling session,
  :mod:`vtp.signalling.relayed`; the live channel, :mod:`vtp.web.live_relayed`) on a
  :class:`RelayedSocket`, whose reads are what the door relays and whose writes
  (replies, room events, a close) go back to the door in order
  (:class:`vtp.channel.relayed.RelayedChannel`). The client is an ordinary member there:
  mutes, removals, member and participant lists, hands, chat and recordings see it as
  any other. Authority is per action there as for any channel (the token travels with
  the socket, renewals too; changes of authority reach every node). Each kind registers
  the function serving it there (:func:`host`).

A link ends with the socket (the door tells ``bye``: the signalling peer leaves, or waits
``VTP_SFU_RESUME_S`` for a resume when the socket dropped without a close frame, as on
one node - a resume may come through any door; a live-channel participant leaves), or
when the relayed channel has nothing left on the room's node (a signalling session after
``leave``, or a failed ``join``): the socket is then the door's alone again. Failure: a
node checks the nodes of its links at every heartbeat (:mod:`vtp.cluster.nodes`); when
the door has left the registry (missing at two checks in a row: ``VTP_NODE_TTL_S`` plus
one or two heartbeats), restarted, or missed its last beat while its URL refuses
connections (a dead process: :meth:`vtp.cluster.placement.Placement.died`), the room's
node treats its sockets as dropped; when
the room's node has, or does not answer a message within :data:`REPLY_TIMEOUT_S`, the
door closes the client's socket with :data:`CLOSE_NODE_GONE` after an ``error``
``node_gone``, and the client reconnects (the room is placed again on a live node).

Messages between nodes (JSON, on the receiver's mailbox), door to room's node:
``open {link, from, since, kind, params, token, seq, raw?}`` (``kind``: the channel,
``"sfu"`` or ``"live"``; ``params``: what the channel's URL said, e.g. the live
session's id; ``raw``: a first client message, the signalling ``join``),
``msg {link, from, seq, raw}``, ``bye {link, goodbye}``, and every heartbeat ``links
{from, links}`` (the links the door holds to that node, sent while it holds some and once
after: others from it are over, their ``bye`` lost); room's node to door: ``send {link,
message, key?}`` (``key``: state that replaces its older version still queued at the
door), ``close {link, code, reason}``, ``done {link, seq, ended, gone_room}`` and ``gone
{link}`` (no such link: the door closes the socket).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSCloseCode, WSMessage, WSMsgType, web
from redis.asyncio import Redis

from vtp.appkeys import CONFIG, NODES, PLACEMENT, REDIS
from vtp.cluster.mailbox import Mailbox
from vtp.cluster.nodes import NodeInfo, NodeRegistry

logger = logging.getLogger(__name__)

REPLY_TIMEOUT_S = 10.0  # a relayed message not done by then: the room's node is gone
CLOSE_NODE_GONE = 1012  # "service restart": the room's node is gone, connect again


class RelayLost(Exception):
    """The room's node of a link is gone (or never answered)."""


@dataclass(frozen=True, slots=True)
class Done:
    """The room's node handled one relayed message."""

    ended: bool  # the relayed channel holds nothing there any more: the link is over
    gone_room: str | None  # (signalling) the room the server took the peer out of


class DoorLink:
    """The door's end of one relayed socket; ``send``/``close`` act on the client's."""

    def __init__(
        self,
        relay: Relay,
        node: NodeInfo,
        send: Send,
        close: Callable[[int, str], None],
        lost: Callable[[str], None],
    ) -> None:
        self.id = secrets.token_urlsafe(12)
        self.node_id = node.id
        self.node_since = node.started_at
        self._relay = relay
        self._send = send
        self._close = close
        self._lost = lost
        self._seq = 0
        self._waiting: dict[int, asyncio.Future[Done]] = {}
        self.over = False

    async def open(
        self, kind: str, token: str, params: dict[str, str], raw: str | None = None
    ) -> Done:
        """Start the relayed channel of ``kind`` on the room's node (``raw``: the client
        message it starts with); done when the room's node has handled that, or, without
        one, has the channel open."""
        self._relay.doors[self.id] = self
        self._relay.linked.add(self.node_id)
        opening = {"t": "open", "since": self._relay.since, "kind": kind, "token": token}
        return await self._request({**opening, "params": params, "raw": raw})

    async def forward(self, raw: str) -> Done:
        """One client message, handled on the room's node; raises :class:`RelayLost`."""
        return await self._request({"t": "msg", "raw": raw})

    async def _request(self, data: dict[str, Any]) -> Done:
        if self.over:
            raise RelayLost("the link is over")
        self._seq += 1
        seq = self._seq
        future: asyncio.Future[Done] = asyncio.get_running_loop().create_future()
        self._waiting[seq] = future
        self._relay.mailbox.send(
            self.node_id, {**data, "link": self.id, "seq": seq, "from": self._relay.node_id}
        )
        try:
            done = await asyncio.wait_for(future, REPLY_TIMEOUT_S)
        except TimeoutError:
            self.end()
            raise RelayLost(f"node {self.node_id} did not answer") from None
        finally:
            self._waiting.pop(seq, None)
        if done.ended:
            self.end()
        return done

    def hang_up(self, goodbye: bool) -> None:
        """The client's socket closed (with a close frame: ``goodbye``)."""
        if not self.over:
            self._relay.mailbox.send(
                self.node_id, {"t": "bye", "link": self.id, "goodbye": goodbye}
            )
            self.end()

    def end(self, *, lost: bool = True) -> None:
        """The link is over: a message waiting is lost with it, or (``lost=False``: the
        room's node closed the socket) done."""
        self.over = True
        self._relay.doors.pop(self.id, None)
        for future in self._waiting.values():
            if future.done():
                continue
            if lost:
                future.set_exception(RelayLost(f"node {self.node_id} is gone"))
            else:
                future.set_result(Done(ended=False, gone_room=None))

    # --- from the room's node ---------------------------------------------------------

    def received(self, data: dict[str, Any]) -> None:
        kind = data.get("t")
        if kind == "send" and isinstance(data.get("message"), dict):
            key = data.get("key")
            self._send(data["message"], ("relayed", key) if isinstance(key, str) else None)
        elif kind == "close":
            self.end(lost=False)
            self._close(int(data.get("code") or WSCloseCode.OK), str(data.get("reason") or ""))
        elif kind == "done":
            future = self._waiting.get(int(data.get("seq") or 0))
            if future is not None and not future.done():
                gone_room = data.get("gone_room")
                future.set_result(
                    Done(bool(data.get("ended")), gone_room if isinstance(gone_room, str) else None)
                )
        elif kind == "gone":
            self.node_lost(f"node {self.node_id} no longer holds this socket's session")

    def node_lost(self, why: str) -> None:
        if not self.over:
            self.end()
            self._lost(why)


class RelayedSocket:
    """The room's node's stand-in for a client WebSocket another node holds: what the
    session reads is what the door relays, what it writes goes back to the door. It has
    the members of :class:`aiohttp.web.WebSocketResponse` a channel uses."""

    def __init__(
        self,
        relay: Relay,
        link_id: str,
        door_id: str,
        door_since: float,
        kind: str,
        params: dict[str, str],
    ) -> None:
        self.link_id = link_id
        self.kind = kind
        self.params = params
        self.door_id = door_id
        self.door_since = door_since
        self._relay = relay
        self._incoming: asyncio.Queue[tuple[WSMessage, int]] = asyncio.Queue()
        self._closed = False
        self._quiet = False  # ended with the room: the door keeps the socket
        self.seq = 0  # of the message being handled

    @property
    def closed(self) -> bool:
        return self._closed

    async def receive(self, timeout: float | None = None) -> WSMessage:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            message, self.seq = await self._incoming.get()
        return message

    async def send_json(self, data: Any) -> None:
        self.send_now(data)

    async def close(self, *, code: int = WSCloseCode.OK, message: bytes = b"") -> bool:
        return self.close_now(code, message.decode(errors="replace"))

    def send_now(self, data: dict[str, Any], key: Hashable | None = None) -> None:
        """Relay a message to the client at once (in order with ``done`` and ``close``:
        the door's socket queues it; one with a ``key`` replaces its older version still
        queued there)."""
        if not self._closed:
            if key is None:
                self._to_door({"t": "send", "message": data})
            else:
                self._to_door({"t": "send", "message": data, "key": repr(key)})

    def close_now(self, code: int, reason: str) -> bool:
        if self._closed:
            return False
        self._closed = True
        if not self._quiet:
            self._to_door({"t": "close", "code": code, "reason": reason})
        self._incoming.put_nowait((WSMessage(WSMsgType.CLOSED, None, None), 0))
        self._relay.hosted.pop(self.link_id, None)
        return True

    def feed(self, raw: str, seq: int) -> None:
        if not self._closed:
            self._incoming.put_nowait((WSMessage(WSMsgType.TEXT, raw, None), seq))

    def hang_up(self, goodbye: bool) -> None:
        """The door's socket closed (``goodbye``: with a close frame) or is lost."""
        if self._closed:
            return
        self._closed = True
        self._relay.hosted.pop(self.link_id, None)
        kind = WSMsgType.CLOSE if goodbye else WSMsgType.CLOSED
        self._incoming.put_nowait((WSMessage(kind, WSCloseCode.OK if goodbye else None, None), 0))

    def done(self, *, ended: bool, gone_room: str | None) -> None:
        """The message being handled is; ``ended``: the session has no room, the socket
        is the door's alone again."""
        if self.seq:
            self._to_door({"t": "done", "seq": self.seq, "ended": ended, "gone_room": gone_room})
            self.seq = 0
        if ended:
            self._quiet = True
            self.hang_up(goodbye=True)

    def _to_door(self, data: dict[str, Any]) -> None:
        self._relay.mailbox.send(self.door_id, {**data, "link": self.link_id})


# a message to the client, with its key (see vtp.channel.socket.Channel.send)
Send = Callable[[dict[str, Any], Hashable | None], None]
# (app, socket, token): runs a relayed channel of one kind (its first message, if any, is
# fed already) until the socket ends
Host = Callable[[web.Application, RelayedSocket, str], Awaitable[None]]


class Relay:
    """This node's relayed sockets: as a door (:attr:`doors`) and as a room's node
    (:attr:`hosted`)."""

    def __init__(self, app: web.Application, registry: NodeRegistry, redis: Redis) -> None:
        self.app = app
        self.registry = registry
        self.node_id = registry.id
        self.since = registry.me.started_at
        self.mailbox = Mailbox(redis, registry.id, self._received)
        self.doors: dict[str, DoorLink] = {}
        self.hosted: dict[str, RelayedSocket] = {}
        self.hosts: dict[str, Host] = {}  # by kind of channel (see host()); none: stopping
        self._tasks: set[asyncio.Task[None]] = set()
        self._watch: asyncio.Task[None] | None = None
        self._missing: set[str] = set()  # nodes of links missing at the last check
        # nodes this one is the door to, or was at the last check: told its links to them
        self.linked: set[str] = set()

    async def start(self) -> None:
        await self.mailbox.start()
        self._watch = asyncio.create_task(self._watch_nodes(), name="vtp-relay-watch")

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        for link in list(self.doors.values()):
            link.node_lost("this node is stopping")
        for socket in list(self.hosted.values()):
            socket.hang_up(goodbye=False)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        await self.mailbox.close()

    def link(
        self,
        node: NodeInfo,
        send: Send,
        close: Callable[[int, str], None],
        lost: Callable[[str], None],
    ) -> DoorLink:
        return DoorLink(self, node, send, close, lost)

    # --- incoming ------------------------------------------------------------------------

    def _received(self, data: dict[str, Any]) -> None:
        link_id = data.get("link")
        kind = data.get("t")
        if kind == "links":
            self._prune(str(data.get("from")), set(data.get("links") or ()))
            return
        if not isinstance(link_id, str):
            return
        if kind in ("send", "close", "done", "gone"):
            link = self.doors.get(link_id)
            if link is not None:
                link.received(data)
            return
        socket = self.hosted.get(link_id)
        if kind == "open" and socket is None:
            # (known at once: a "bye" right behind the "open" finds it)
            door_id = str(data.get("from"))
            params = data.get("params")
            socket = RelayedSocket(
                self,
                link_id,
                door_id,
                float(data.get("since") or 0),
                str(data.get("kind") or "sfu"),
                {str(k): str(v) for k, v in params.items()} if isinstance(params, dict) else {},
            )
            self.hosted[link_id] = socket
            seq = int(data.get("seq") or 0)
            if isinstance(data.get("raw"), str):
                socket.feed(data["raw"], seq)
            else:
                socket.seq = seq  # (done when the channel is open)
            self._spawn(self._open(socket, str(data.get("token"))))
        elif socket is None:
            if kind == "msg":  # (this node restarted, or the session ended)
                self.mailbox.send(str(data.get("from") or ""), {"t": "gone", "link": link_id})
        elif kind == "msg":
            socket.feed(str(data.get("raw")), int(data.get("seq") or 0))
        elif kind == "bye":
            socket.hang_up(bool(data.get("goodbye")))

    async def _open(self, socket: RelayedSocket, token: str) -> None:
        host = self.hosts.get(socket.kind)
        try:
            if host is None:  # (not serving channels any more, or not this kind)
                socket.close_now(CLOSE_NODE_GONE, "not served here")
                return
            await host(self.app, socket, token)
        finally:
            # (a channel that ended without closing or handing the socket back: the door
            # must not wait for it)
            socket.close_now(WSCloseCode.INTERNAL_ERROR, "internal error")

    def _spawn(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await work
            except Exception:
                logger.exception("a relayed session failed")

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _prune(self, door: str, live: set[str]) -> None:
        """The door holds only ``live`` of its links to this node: the others are over
        (their ``bye`` was lost)."""
        for socket in list(self.hosted.values()):
            if socket.door_id == door and socket.link_id not in live:
                socket.hang_up(goodbye=False)

    # --- the other ends' nodes ------------------------------------------------------------

    async def _watch_nodes(self) -> None:
        period = self.app[CONFIG].node_heartbeat_s
        while True:
            await asyncio.sleep(period)
            try:
                await self._check_nodes()
            except Exception:  # Redis away for a moment: check again next time
                logger.exception("checking the relay's nodes failed")

    async def _check_nodes(self) -> None:
        by_node: dict[str, list[str]] = {node_id: [] for node_id in self.linked}
        for link in self.doors.values():
            by_node.setdefault(link.node_id, []).append(link.id)
        for node_id, links in by_node.items():  # (an empty list once after the last)
            self.mailbox.send(node_id, {"t": "links", "from": self.node_id, "links": links})
        self.linked = {node_id for node_id, links in by_node.items() if links}
        nodes = {node.id: node for node in await self.registry.nodes()}
        wanted = {link.node_id for link in self.doors.values()}
        wanted.update(socket.door_id for socket in self.hosted.values())
        # A node is gone when it restarted, or when it is missing from the registry at two
        # checks in a row: one beat late (a loaded host) does not end its sockets.
        missing = wanted - nodes.keys()
        absent, self._missing = missing & self._missing, missing

        # One still in the registry that missed its last beat and whose URL refuses
        # connections (a process that died, on a host that is up) is gone now, not once
        # its entry expires: its clients reconnect, and the room is placed again, at once.
        placement = self.app.get(PLACEMENT)
        died = set()
        if placement is not None:
            for node_id in wanted & nodes.keys():
                if await placement.died(nodes[node_id]):
                    died.add(node_id)

        def gone(node_id: str, since: float) -> bool:
            node = nodes.get(node_id)
            if node is None:
                return node_id in absent
            return node.started_at != since or node_id in died

        for link in list(self.doors.values()):
            if gone(link.node_id, link.node_since):
                link.node_lost(f"node {link.node_id} is gone")
        for socket in list(self.hosted.values()):
            if gone(socket.door_id, socket.door_since):
                socket.hang_up(goodbye=False)  # (as a socket that dropped)


RELAY = web.AppKey("channel_relay", Relay)
RELAY_HOSTS = web.AppKey("channel_relay_hosts", dict[str, Host])


def host(app: web.Application, kind: str, serve: Host) -> None:
    """At setup: ``serve`` runs this node's end of relayed channels of ``kind``."""
    if RELAY_HOSTS not in app:
        app[RELAY_HOSTS] = {}
    app[RELAY_HOSTS][kind] = serve


async def relay_ctx(app: web.Application) -> AsyncIterator[None]:
    """``app.cleanup_ctx`` entry, after the cluster's (:func:`vtp.app.cluster_ctx`): a
    node of a cluster relays channels to and from the others."""
    if not app[CONFIG].cluster or NODES not in app:
        yield
        return
    relay = Relay(app, app[NODES], app[REDIS])
    if RELAY_HOSTS in app:
        relay.hosts = app[RELAY_HOSTS].copy()
    await relay.start()
    app[RELAY] = relay
    try:
        yield
    finally:
        relay.hosts = {}
        await relay.close()
