"""Whether a ``turns:`` URL is really served (``VTP_TURN_TLS_CERT``): TURN over TLS helps a
browser only if the TURN server's certificate is one the browser accepts for the URL's
host. Chromium checks it like a web site's: with a certificate from a CA it does not know
(self-signed, or Caddy's internal CA) no relay forms, only ICE candidate error 701
(tests/sfu/test_turns_browser.py). The file is the one the TURN server loads
(docker-compose: the certificate Caddy obtained, copied for coturn by
deploy/turn-tls-sync.sh), so a missing, expired, self-signed or other name's certificate
keeps ``turns:`` URLs out of what clients are given. The file is read again when it
changes (one ``stat`` per question: a join asks once).
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import re
import ssl
import warnings
from pathlib import Path

from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509 import DNSName, IPAddress
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

logger = logging.getLogger(__name__)

_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


def turns_host(url: str) -> str | None:
    """The host of a ``turns:`` URL (RFC 7065: ``turns:host[:port][?transport=...]``),
    None for any other scheme."""
    scheme, _, rest = url.partition(":")
    if scheme != "turns":
        return None
    address = rest.partition("?")[0]
    if address.startswith("["):
        return address[1:].partition("]")[0]
    return address.rpartition(":")[0] if address.count(":") == 1 else address


def _certificates(pem: bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle that parses (a system bundle may hold one that
    this parser refuses: it is left out, not the whole store)."""
    found = []
    with warnings.catch_warnings():
        # (some system roots have a serial number RFC 5280 disallows: a warning each)
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        for block in _PEM.findall(pem):
            try:
                found.append(x509.load_pem_x509_certificate(block))
            except ValueError:
                continue
    return found


def system_trust() -> Path | None:
    """The CA bundle of the system's trust store, if it has one as a file."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and os.path.isfile(candidate):
            return Path(candidate)
    return None


class TurnCertificate:
    """The TURN server's TLS certificate at ``path``, checked against the CAs in ``trust``
    (a PEM bundle; default: the system's)."""

    def __init__(self, path: Path, trust: Path | None = None) -> None:
        self.path = path
        self._trust = trust
        self._store: Store | None = None
        self._stamp: tuple[int, int] | None = None
        self._chain: list[x509.Certificate] = []
        self._verdicts: dict[str, str | None] = {}  # host -> why not (None: it serves)

    def serves(self, host: str, now: datetime.datetime | None = None) -> bool:
        return self.why_not(host, now) is None

    def why_not(self, host: str, now: datetime.datetime | None = None) -> str | None:
        """None if browsers accept the certificate for ``host`` now, else why not."""
        now = now or datetime.datetime.now(datetime.UTC)
        try:
            stat = os.stat(self.path)
        except OSError as exc:
            return f"no certificate at {self.path} ({exc.strerror})"
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            self._verdicts.clear()
            try:
                self._chain = _certificates(self.path.read_bytes())
            except OSError as exc:
                return f"{self.path} cannot be read ({exc.strerror})"
            self._stamp = stamp
        if not self._chain:
            return f"{self.path} holds no certificate"
        leaf = self._chain[0]
        if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
            return (
                f"the certificate in {self.path} is valid from {leaf.not_valid_before_utc:%F} "
                f"to {leaf.not_valid_after_utc:%F} only"
            )
        if host not in self._verdicts:
            self._verdicts[host] = self._verify(host, now)
        return self._verdicts[host]

    def _verify(self, host: str, now: datetime.datetime) -> str | None:
        store = self._trust_store()
        if store is None:
            return "no trust store to check the certificate against"
        try:
            subject: DNSName | IPAddress = IPAddress(ipaddress.ip_address(host))
        except ValueError:
            subject = DNSName(host)
        verifier = PolicyBuilder().store(store).time(now).build_server_verifier(subject)
        try:
            verifier.verify(self._chain[0], self._chain[1:])
        except (VerificationError, ValueError) as exc:
            return f"browsers would refuse the certificate in {self.path} for {host}: {exc}"
        return None

    def _trust_store(self) -> Store | None:
        if self._store is None:
            bundle = self._trust or system_trust()
            if bundle is None:
                return None
            try:
                roots = _certificates(bundle.read_bytes())
            except OSError:
                logger.warning("the trust store %s cannot be read", bundle)
                return None
            if not roots:
                return None
            self._store = Store(roots)
        return self._store
