"""The client's address as VTP sees it: the socket peer, or - when that peer is a
configured reverse proxy (``trusted_proxies``) - the address the proxies recorded in
``X-Forwarded-For``.

Rate limits and logs key on this address, so a forged header must not move it: the header
is read only when the connection comes from a trusted proxy, from its right end (the
entry the nearest proxy appended), skipping further trusted proxies; the first address
that is not a trusted proxy is the client. Anything unparsable stops the walk at the last
hop that was trusted.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence

from aiohttp import web

from vtp.appkeys import CONFIG

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=8)
def _networks(proxies: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(p, strict=False) for p in proxies)


def _trusted(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)


def resolve(peer: str | None, forwarded_for: str | None, proxies: Sequence[str]) -> str:
    """The client address for a connection from ``peer`` carrying ``forwarded_for``."""
    if not peer:
        return "unknown"
    networks = _networks(tuple(proxies))
    if not networks or not forwarded_for or not _trusted(peer, networks):
        return peer
    client = peer
    for entry in reversed(forwarded_for.split(",")):
        candidate = entry.strip()
        try:
            ipaddress.ip_address(candidate)
        except ValueError:
            break  # garbage (or an obfuscated name): keep the last trusted hop
        client = candidate
        if not _trusted(candidate, networks):
            break
    return client


def client_address(request: web.Request) -> str:
    """The one accessor for the client's address (rate limits, logs)."""
    config = request.app[CONFIG]
    return resolve(request.remote, request.headers.get("X-Forwarded-For"), config.trusted_proxies)
