"""Two VTP nodes in one process (in-process apps sharing real PostgreSQL and Redis), each
with its own HTTP port and SFU, for tests of what crosses nodes
(tests/cluster/test_signalling_relay.py, tests/cluster/test_live_relay.py)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import Any

from vtp.app import create_app
from vtp.appkeys import NODES
from vtp.channel.relay import RELAY
from vtp.config import Config


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def two_nodes(
    aiohttp_server: Any, aiohttp_client: Any, config: Config, **settings: Any
) -> list[Any]:
    """Test clients of node-a and node-b; a room is placed where it is first opened."""
    clients = []
    for name in ("node-a", "node-b"):
        port = free_port()
        node_config = config.model_copy(
            update={
                "ice_addresses": ["127.0.0.1"],
                "sfu_open_rooms": True,
                "room_grace_s": 2.0,
                "cluster": True,
                "node_id": name,
                "node_url": f"http://127.0.0.1:{port}",
                "region": f"region-{name}",  # (each opener's region holds only itself)
                "sfu_resume_s": 3.0,
                **settings,
            }
        )
        server = await aiohttp_server(create_app(node_config), port=port)
        clients.append(await aiohttp_client(server))
    return clients


async def until(check: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within} s")
        await asyncio.sleep(0.05)


async def die(node: Any) -> None:
    """The node stops talking to the others at once, as a node that died: no message
    crosses its mailbox any more, no heartbeat keeps it in the registry (it leaves it
    when its entry expires, ``VTP_NODE_TTL_S`` after its last beat), and it says goodbye
    to no one. (Its HTTP server, the clients' sockets, go on: the test ends them.)"""
    relay = node.app[RELAY]
    await relay.mailbox.close(flush=False)
    if relay._watch is not None:
        relay._watch.cancel()
        await asyncio.gather(relay._watch, return_exceptions=True)
    relay._watch = None
    await node.app[NODES].stop_beating()
