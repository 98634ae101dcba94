"""Two VTP nodes serving the classroom to headless Chromium (in-process apps sharing real
PostgreSQL and Redis, each with its own HTTP port and SFU), for the cluster's Chromium
tests (test_classroom_two_nodes.py, test_classroom_drain.py, test_classroom_node_death.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from browser.classroom_kit import Server, serve
from two_nodes import free_port

from tests.support.chromium import needs_chromium
from tests.support.waiting import eventually
from vtp.appkeys import NODES

# every test module of a class across nodes: Chromium, slow, one event loop for the module
# (its nodes and browser are module fixtures)
MARKS = [
    pytest.mark.browser,
    pytest.mark.slow,
    needs_chromium,
    pytest.mark.asyncio(loop_scope="module"),
]


@contextlib.asynccontextmanager
async def node_pair(
    pg_template: str, tmp_path_factory: pytest.TempPathFactory, **settings: Any
) -> AsyncIterator[tuple[Server, Server]]:
    """node-a and node-b of one cluster (B shares A's database and Redis); a room is
    placed where it is first opened (each node's region holds only itself). ``settings``
    override both nodes' configuration."""
    ports = {"node-a": free_port(), "node-b": free_port()}

    def node(name: str) -> dict[str, Any]:
        return {
            "port": ports[name],
            "cluster": True,
            "node_id": name,
            "node_url": f"http://127.0.0.1:{ports[name]}",
            "region": f"region-{name}",
            **settings,
        }

    async with contextlib.AsyncExitStack() as stack:
        a = await stack.enter_async_context(
            serve(pg_template, tmp_path_factory.mktemp("node-a"), **node("node-a"))
        )
        b = await stack.enter_async_context(
            serve(pg_template, tmp_path_factory.mktemp("node-b"), share_with=a, **node("node-b"))
        )
        # a page's Content-Security-Policy lets it connect to the nodes its node knows of
        # (as of its last heartbeat): the pages of a test come once each knows the other
        both = {a.base, b.base}
        await eventually(
            lambda: a.app[NODES].urls >= both and b.app[NODES].urls >= both,
            10,
            "each node knowing the other",
        )
        yield a, b


def nodes_fixture(**settings: Any) -> Any:
    """The module fixture ``nodes``: a :func:`node_pair` with these settings."""

    @pytest_asyncio.fixture(scope="module", loop_scope="module", name="nodes")
    async def nodes(
        pg_template: str, tmp_path_factory: pytest.TempPathFactory
    ) -> AsyncIterator[tuple[Server, Server]]:
        async with node_pair(pg_template, tmp_path_factory, **settings) as pair:
            yield pair

    return nodes
