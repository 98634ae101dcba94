"""ICE configuration: STUN/TURN servers for clients and for the server's own agent.

TURN credentials follow coturn's REST API scheme (``use-auth-secret``): the username is
``<expiry unix time>:<user>`` and the password is base64(HMAC-SHA1(secret, username)).
Nothing external is contacted unless ``stun_urls``/``turn_urls`` are configured.

Host candidates are gathered on ``ice_addresses`` (aioice itself leaves out loopback),
optionally announcing ``ice_announce_address`` instead (1:1 NAT), and bound inside
``ice_port_min..ice_port_max`` when set (aioice has no port-range option: the SFU binds
those sockets itself; server-reflexive candidates are then not gathered). Each peer
connection uses one UDP port - unless ``ice_udp_port`` is set: then every connection
shares that one port and the SFU is an ICE-lite agent on it (:mod:`vtp.sfu.icelite`),
also listening on TCP at that port number unless ``ice_tcp`` is off (:mod:`vtp.sfu.icetcp`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

import aioice
from aioice.candidate import candidate_foundation, candidate_priority
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCIceServer

from vtp.config import Config
from vtp.sfu.turncert import TurnCertificate, turns_host


def host_candidate(host: str, port: int) -> aioice.Candidate:
    """A UDP host candidate for component 1 (RTP and RTCP are muxed)."""
    return aioice.Candidate(
        foundation=candidate_foundation("host", "udp", host),
        component=1,
        transport="udp",
        priority=candidate_priority(1, "host"),
        host=host,
        port=port,
        type="host",
    )


# RFC 6544 section 4.2: local preference = 2^13 * direction-pref + other-pref, with
# passive below UDP's 65535 so that a pair over UDP always outranks one over TCP
TCP_PASSIVE_LOCAL_PREFERENCE = (1 << 13) * 4 + 8191


def tcp_candidate(host: str, port: int) -> aioice.Candidate:
    """An ICE-TCP passive host candidate (RFC 6544) for component 1."""
    return aioice.Candidate(
        foundation=candidate_foundation("host", "tcp", host),
        component=1,
        transport="tcp",
        priority=candidate_priority(1, "host", TCP_PASSIVE_LOCAL_PREFERENCE),
        host=host,
        port=port,
        type="host",
        tcptype="passive",
    )


@dataclass(frozen=True, slots=True)
class TurnCredential:
    username: str
    credential: str
    expires_at: int


def turn_credential(secret: str, user: str, ttl_s: int, now: float | None = None) -> TurnCredential:
    """A time-limited coturn REST credential for ``user``."""
    expires_at = int(now if now is not None else time.time()) + ttl_s
    username = f"{expires_at}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return TurnCredential(username, base64.b64encode(digest).decode("ascii"), expires_at)


def _port_range(low: int | None, high: int | None) -> tuple[int, int] | None:
    if low is None and high is None:
        return None
    if low is None or high is None or low > high:
        raise ValueError("ice_port_min and ice_port_max must be set together, min <= max")
    return (low, high)


@dataclass(frozen=True, slots=True)
class IceSettings:
    """The SFU's view of the network settings in :class:`vtp.config.Config`."""

    addresses: tuple[str, ...] = ()
    announce_address: str | None = None
    port_range: tuple[int, int] | None = None
    udp_port: int | None = None  # every connection on this port (ICE-lite)
    tcp: bool = True  # ICE-TCP on the same port number too (with udp_port only)
    stun_urls: tuple[str, ...] = ()
    turn_urls: tuple[str, ...] = ()
    turn_secret: str | None = None
    turn_credential_ttl_s: int = 6 * 3600
    # turns: URLs go to clients only while this certificate serves their host
    turn_tls: TurnCertificate | None = None
    consent_timeout_s: float = 25.0  # RFC 7675 consent freshness (at most 30 s)

    @classmethod
    def from_config(cls, config: Config) -> IceSettings:
        secret = config.turn_secret.get_secret_value() if config.turn_secret else None
        port_range = _port_range(config.ice_port_min, config.ice_port_max)
        if config.ice_udp_port is not None and port_range is not None:
            raise ValueError("set either ice_udp_port or ice_port_min/ice_port_max, not both")
        return cls(
            addresses=tuple(config.ice_addresses),
            announce_address=config.ice_announce_address,
            port_range=port_range,
            udp_port=config.ice_udp_port,
            tcp=config.ice_tcp,
            stun_urls=tuple(config.stun_urls),
            turn_urls=tuple(config.turn_urls),
            turn_secret=secret or None,
            turn_credential_ttl_s=config.turn_credential_ttl_s,
            turn_tls=TurnCertificate(config.turn_tls_cert) if config.turn_tls_cert else None,
            consent_timeout_s=config.ice_consent_timeout_s,
        )

    def client_ice_servers(self, user: str, now: float | None = None) -> list[dict[str, object]]:
        """RTCIceServer dictionaries to hand to a browser (JSON-serialisable)."""
        servers: list[dict[str, object]] = []
        if self.stun_urls:
            servers.append({"urls": list(self.stun_urls)})
        urls = self.served_turn_urls()
        if urls and self.turn_secret:
            cred = turn_credential(self.turn_secret, user, self.turn_credential_ttl_s, now)
            servers.append(
                {
                    "urls": urls,
                    "username": cred.username,
                    "credential": cred.credential,
                }
            )
        return servers

    def served_turn_urls(self) -> list[str]:
        """The TURN URLs clients can use now: a turns: URL only while the TURN server's
        certificate (``turn_tls``, when set) is one browsers accept for its host."""
        if self.turn_tls is None:
            return list(self.turn_urls)
        served = []
        for url in self.turn_urls:
            host = turns_host(url)
            if host is None or self.turn_tls.serves(host):
                served.append(url)
        return served

    def server_configuration(self) -> RTCConfiguration:
        """An explicit RTCConfiguration: aiortc's default would contact a public STUN
        server. The server uses the configured STUN server (for a server-reflexive
        candidate) and TURN server (relay) if any; aioice uses only the first of each."""
        servers: list[RTCIceServer] = []
        if self.stun_urls:
            servers.append(RTCIceServer(urls=list(self.stun_urls)))
        if self.turn_urls and self.turn_secret:
            cred = turn_credential(self.turn_secret, "vtp-sfu", self.turn_credential_ttl_s)
            servers.append(
                RTCIceServer(
                    urls=list(self.turn_urls), username=cred.username, credential=cred.credential
                )
            )
        return RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
