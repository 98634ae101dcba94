"""Where webhooks may go (SSRF guard): ``https://`` only and public addresses only,
unless the operator allows plain http or internal addresses.

Checked when an endpoint is registered (a clear 400) and again at every delivery,
on the addresses the connection really uses: a :class:`GuardedResolver` refuses a name
that resolves to an internal address at that moment (DNS rebinding), and literal IP
hosts, which aiohttp does not resolve, are checked before connecting.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

MAX_URL = 2000


class TargetRefused(ValueError):
    pass


def address_allowed(address: str, allow_private: bool) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if allow_private:
        return not ip.is_unspecified and not ip.is_multicast
    return ip.is_global and not ip.is_multicast


def check_url(url: str, *, allow_http: bool, allow_private: bool) -> tuple[str, int]:
    """Scheme, host and port of a target URL; TargetRefused says what is wrong."""
    if len(url) > MAX_URL:
        raise TargetRefused("the URL is too long")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"not a URL: {exc}") from None
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes:
        raise TargetRefused(
            "only https:// targets are allowed"
            if not allow_http
            else "the URL must be http:// or https://"
        )
    host = parts.hostname
    if not host:
        raise TargetRefused("the URL has no host")
    if parts.username or parts.password:
        raise TargetRefused("credentials in the URL are not allowed (use the secret)")
    literal = _literal(host)
    if literal is not None and not address_allowed(literal, allow_private):
        raise TargetRefused(f"{host} is an internal address")
    if not allow_private and (host == "localhost" or host.endswith((".localhost", ".local"))):
        raise TargetRefused(f"{host} is an internal name")
    return host, port or (443 if parts.scheme == "https" else 80)


async def check_resolved(host: str, port: int, *, allow_private: bool) -> None:
    """Every address the host resolves to must be allowed (registration time)."""
    if _literal(host) is not None:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise TargetRefused(f"{host} does not resolve: {exc.strerror or exc}") from None
    for info in infos:
        address = str(info[4][0])
        if not address_allowed(address, allow_private):
            raise TargetRefused(f"{host} resolves to an internal address ({address})")


def _literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


class GuardedResolver(AbstractResolver):
    """The default resolver, refusing names that resolve to disallowed addresses."""

    def __init__(self, allow_private: bool) -> None:
        self._inner = ThreadedResolver()
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            if not address_allowed(result["host"], self._allow_private):
                raise OSError(f"{host} resolves to an internal address ({result['host']})")
        return results

    async def close(self) -> None:
        await self._inner.close()
