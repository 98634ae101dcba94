"""Short-lived tokens one node presents to another (a cascade's relay signalling).

Every node of a cluster holds the same ``VTP_JWT_SECRET``; a node token is
``<node id>:<expiry unix time>:<HMAC-SHA256>`` under a key derived from that secret for
this purpose only (a user's access token is never accepted where a node's is wanted, nor
the reverse). It names the node that made it, and lives ``TTL_S`` seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import time

TTL_S = 60
_MAX_LENGTH = 200


def node_key(secret: str) -> bytes:
    return hashlib.sha256(b"vtp-node-to-node:" + secret.encode()).digest()


def _mac(key: bytes, node_id: str, expires: int) -> str:
    return hmac.new(key, f"{node_id}:{expires}".encode(), hashlib.sha256).hexdigest()


def sign(key: bytes, node_id: str, now: float | None = None) -> str:
    expires = int(now if now is not None else time.time()) + TTL_S
    return f"{node_id}:{expires}:{_mac(key, node_id, expires)}"


def verify(key: bytes, token: str, now: float | None = None) -> str | None:
    """The node id the token names, or None (forged, malformed or expired)."""
    if len(token) > _MAX_LENGTH or token.count(":") != 2:
        return None
    node_id, expires_text, mac = token.split(":")
    if not node_id or not expires_text.isdigit():
        return None
    expires = int(expires_text)
    current = now if now is not None else time.time()
    if not current <= expires <= current + TTL_S + 5:
        return None
    if not hmac.compare_digest(mac, _mac(key, node_id, expires)):
        return None
    return node_id
