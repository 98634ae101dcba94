"""A client network namespace joined to the test process's namespace by a veth pair, with
a firewall inside it (``iptables``): how tests put a browser behind a school network.

The test process (VTP) keeps the host end's address; the client gets the other end and
nothing else, so every packet it sends goes to VTP over the veth. Firewall rules live in
the client namespace only, and the namespace (with its veth pair) is deleted when the
fixture ends. Needs root, ``ip`` and ``iptables``; tests skip without them unless CI
is set (scripts/test.sh installs iptables).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=20)


class ClientNamespace:
    """``reach<N>``: the client side of a /29 on a veth pair - or, with ``ipv6``, of a
    /64 with no IPv4 address at all (an IPv6-only mobile network)."""

    def __init__(self, index: int, ipv6: bool = False) -> None:
        self.name = f"reach{os.getpid() % 10000}x{index}"
        self.host_if = f"rh{os.getpid() % 100000}x{index}"
        self.client_if = f"rc{os.getpid() % 100000}x{index}"
        subnet = (os.getpid() + index) % 250
        self.ipv6 = ipv6
        if ipv6:
            self.host_address = f"fd00:231:{subnet:x}::1"
            self.client_address = f"fd00:231:{subnet:x}::2"
        else:
            self.host_address = f"10.231.{subnet}.1"
            self.client_address = f"10.231.{subnet}.2"
        self.created = False

    @property
    def host_literal(self) -> str:
        """The host end's address as a URL's host part."""
        return f"[{self.host_address}]" if self.ipv6 else self.host_address

    def create(self) -> None:
        _run("ip", "netns", "add", self.name)
        self.created = True
        _run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.client_if)
        _run("ip", "link", "set", self.client_if, "netns", self.name)
        # (IPv6: no duplicate address detection, so the addresses work at once)
        prefix = ["/64", "nodad"] if self.ipv6 else ["/29"]
        _run("ip", "addr", "add", self.host_address + prefix[0], "dev", self.host_if, *prefix[1:])
        _run("ip", "link", "set", self.host_if, "up")
        self.run(
            "ip", "addr", "add", self.client_address + prefix[0], "dev", self.client_if, *prefix[1:]
        )
        self.run("ip", "link", "set", self.client_if, "up")
        self.run("ip", "link", "set", "lo", "up")

    def run(self, *cmd: str) -> None:
        _run("ip", "netns", "exec", self.name, *cmd)

    def move(self, address: str) -> None:
        """The client's address changes (another network): ``address`` replaces it."""
        prefix = ["/64", "nodad"] if self.ipv6 else ["/29"]
        # (deleting first: deleting a primary IPv4 address deletes its secondaries)
        self.run("ip", "addr", "del", self.client_address + prefix[0], "dev", self.client_if)
        self.run("ip", "addr", "add", address + prefix[0], "dev", self.client_if, *prefix[1:])
        self.client_address = address

    def drop(self, protocol: str, port: int | None = None) -> None:
        """Drop the client's outgoing ``protocol`` packets (to ``port`` if given)."""
        rule = ["-p", protocol] + (["--dport", str(port)] if port is not None else [])
        self.run("ip6tables" if self.ipv6 else "iptables", "-A", "OUTPUT", *rule, "-j", "DROP")

    def allow_all(self) -> None:
        """Take every rule :meth:`drop` added away (an open network again)."""
        self.run("ip6tables" if self.ipv6 else "iptables", "-F", "OUTPUT")

    def wrapper(self, directory: Path, program: str) -> str:
        """An executable that runs ``program`` inside the namespace (for Playwright)."""
        path = directory / f"{self.name}-{Path(program).name}"
        path.write_text(f'#!/bin/sh\nexec ip netns exec {self.name} {program} "$@"\n')
        path.chmod(0o755)
        return str(path)

    def delete(self) -> None:
        if self.created:
            # the pair goes with either end; deleting the host end does not wait for the
            # namespace's own (asynchronous) teardown, which outlives processes' sockets
            subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, timeout=20)
            subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=20)
            self.created = False


@pytest.fixture
def client_namespace(request: pytest.FixtureRequest) -> Iterator[ClientNamespace]:
    """A client namespace; IPv6-only with ``indirect`` parametrisation to "ipv6"."""
    reason = _missing()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    namespace = ClientNamespace(0, ipv6=getattr(request, "param", "ipv4") == "ipv6")
    try:
        namespace.create()
        yield namespace
    finally:
        namespace.delete()
