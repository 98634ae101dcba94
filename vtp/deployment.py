"""What `vtp check` reports about the deployment itself, beside its dependencies' health:
settings that leave students unable to connect (README, "Deployment").

* :func:`config_problems` - from the configuration alone: plain HTTP on a public address
  (browsers give the camera only to secure origins), a certificate that does not load,
  media candidates that are private addresses on a public deployment (the announce
  address is missing), a proxy whose client addresses are not believed, a public
  deployment without one media port (no ICE-TCP, no ICE restart), TURN URLs without the
  secret, turns: URLs whose certificate (``VTP_TURN_TLS_CERT``) browsers would refuse;
* :func:`turn_problems` - each configured TURN server is probed: a STUN binding request
  over UDP, a connection over TCP or TLS.
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import aioice.ice

from vtp import https
from vtp.cluster.nodes import cluster_refusal, node_url
from vtp.config import Config
from vtp.sfu.turncert import TurnCertificate, turns_host

PROBE_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class Problem:
    code: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


def _local(host: str) -> bool:
    """Loopback (or a name for it): a deployment only this machine reaches."""
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host.endswith(".localhost")


def _private(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return ip.is_private or ip.is_loopback or ip.is_link_local


def config_problems(config: Config) -> list[Problem]:
    problems: list[Problem] = []
    public_host = urlsplit(config.public_url).hostname if config.public_url else None
    public = not _local(public_host if public_host is not None else config.host)
    behind_https_proxy = bool(config.public_url and config.public_url.startswith("https://"))
    if https.enabled(config):
        try:
            https.server_context(config)
        except (OSError, ssl.SSLError) as exc:
            problems.append(Problem("tls_certificate", f"the certificate does not load: {exc}"))
    elif public and not behind_https_proxy:
        problems.append(
            Problem(
                "no_https",
                "VTP serves plain HTTP on a public address: browsers give the camera only to "
                "https:// pages. Set VTP_TLS_CERT/VTP_TLS_KEY, or serve behind an HTTPS "
                "proxy and set VTP_PUBLIC_URL=https://...",
            )
        )
    if config.http_redirect_port is not None and not https.enabled(config):
        problems.append(
            Problem("redirect_without_tls", "VTP_HTTP_REDIRECT_PORT needs VTP_TLS_CERT/KEY")
        )
    if behind_https_proxy and not https.enabled(config) and not config.trusted_proxies:
        problems.append(
            Problem(
                "proxy_not_trusted",
                "behind a proxy (VTP_PUBLIC_URL is https://) but VTP_TRUSTED_PROXIES is "
                "unset: rate limits and logs see the proxy's address for every client",
            )
        )
    if public and not config.ice_announce_address:
        addresses = [a for a in config.ice_addresses if a not in ("0.0.0.0", "::")]
        if not addresses:
            addresses = aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True)
        if addresses and all(_private(a) for a in addresses):
            problems.append(
                Problem(
                    "announce_address",
                    f"media candidates would be private addresses ({', '.join(addresses)}) "
                    "on a public deployment: set VTP_ICE_ANNOUNCE_ADDRESS to the address "
                    "clients reach this host on",
                )
            )
    if public and config.ice_udp_port is None:
        problems.append(
            Problem(
                "media_ports",
                "VTP_ICE_UDP_PORT is unset: every media connection takes a UDP port of its "
                "own, there is no ICE over TCP for networks that drop UDP, and no ICE restart "
                "(a client whose network changes rejoins and resubscribes). Set it, and open "
                "that port for UDP and TCP",
            )
        )
    if config.turn_urls and config.turn_secret is None:
        problems.append(Problem("turn_secret", "VTP_TURN_URLS is set but VTP_TURN_SECRET is not"))
    if config.turn_tls_cert is not None:
        certificate = TurnCertificate(config.turn_tls_cert)
        for url in config.turn_urls:
            host = turns_host(url)
            reason = certificate.why_not(host) if host is not None else None
            if reason is not None:
                problems.append(
                    Problem("turns_not_served", f"{url} is not handed to clients: {reason}")
                )
    problems += _cluster_problems(config)
    return problems


def _cluster_problems(config: Config) -> list[Problem]:
    problems: list[Problem] = []
    refusal = cluster_refusal(config, config.workers)
    if refusal is not None:
        problems.append(Problem("cluster_services", refusal))
    clustered = config.cluster or config.workers > 1
    if clustered and not config.node_url and config.host in ("0.0.0.0", "::", ""):
        problems.append(
            Problem(
                "node_url",
                f"in a cluster, other nodes and redirected clients reach this node at its URL, "
                f"but {node_url(config)} is a wildcard address: set VTP_NODE_URL",
            )
        )
    return problems


def _turn_target(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, transport) of a turn:/turns: URL (RFC 7065)."""
    scheme, _, rest = url.partition(":")
    address, _, query = rest.partition("?")
    transport = "tcp" if scheme == "turns" else "udp"
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if key == "transport" and value:
            transport = value.lower()
    host, port = address, 5349 if scheme == "turns" else 3478
    if address.startswith("["):
        host, _, tail = address[1:].partition("]")
        if tail.startswith(":"):
            port = int(tail[1:])
    elif address.count(":") == 1:
        host, _, port_text = address.partition(":")
        port = int(port_text)
    return scheme, host, port, transport


class _StunProbe(asyncio.DatagramProtocol):
    def __init__(self, transaction: bytes) -> None:
        self.transaction = transaction
        self.answered = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[object, ...]) -> None:
        if data[8:20] == self.transaction and not self.answered.done():
            self.answered.set_result(None)


async def _probe(url: str) -> str | None:
    """None if the TURN server at ``url`` answers, else why not."""
    try:
        scheme, host, port, transport = _turn_target(url)
    except ValueError:
        return "not a turn:/turns: URL"
    loop = asyncio.get_running_loop()
    try:
        if scheme == "turn" and transport == "udp":
            transaction = secrets.token_bytes(12)
            request = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + transaction  # binding request
            transport_, probe = await loop.create_datagram_endpoint(
                lambda: _StunProbe(transaction), remote_addr=(host, port)
            )
            try:
                for _ in range(3):
                    transport_.sendto(request)
                    done, _ = await asyncio.wait({probe.answered}, timeout=PROBE_TIMEOUT_S / 3)
                    if done:
                        return None
                return "no answer to a STUN binding request over UDP"
            finally:
                transport_.close()
        context = ssl.create_default_context() if scheme == "turns" else None
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context), PROBE_TIMEOUT_S
        )
        writer.close()
        return None
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        return str(exc) or type(exc).__name__


async def turn_problems(config: Config) -> list[Problem]:
    urls = list(config.turn_urls)
    reasons = await asyncio.gather(*(_probe(url) for url in urls))
    return [
        Problem("turn_unreachable", f"{url}: {reason}")
        for url, reason in zip(urls, reasons, strict=True)
        if reason is not None
    ]
