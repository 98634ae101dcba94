"""Webhook signatures, as the Standard Webhooks convention (standardwebhooks.com).

Secrets are ``whsec_`` + base64 of the key bytes. Each request carries
``webhook-id`` (the event id: the same on every retry), ``webhook-timestamp`` (Unix
seconds of this attempt) and ``webhook-signature``: ``v1,`` + base64 of
HMAC-SHA256(key, f"{id}.{timestamp}.{body}"). Receivers recompute it, compare in constant
time and refuse timestamps far from their clock (replays).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

PREFIX = "whsec_"
KEY_BYTES = 32
TOLERANCE_S = 300


class BadSecret(ValueError):
    pass


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The key bytes of a ``whsec_`` secret (BadSecret if it is not one)."""
    if not secret.startswith(PREFIX):
        raise BadSecret("a webhook secret starts with whsec_")
    try:
        key = base64.b64decode(secret[len(PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise BadSecret("a webhook secret is whsec_ followed by base64") from None
    if not 24 <= len(key) <= 64:
        raise BadSecret("a webhook secret's key is 24 to 64 bytes")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


def verify(secret: str, headers: dict[str, str], body: bytes, now: int) -> bool:
    """A receiver's check (used by the tests; documented for integrators)."""
    msg_id = headers.get("webhook-id", "")
    try:
        timestamp = int(headers.get("webhook-timestamp", ""))
    except ValueError:
        return False
    if abs(now - timestamp) > TOLERANCE_S:
        return False
    expected = sign(secret, msg_id, timestamp, body).encode()
    # Several space-separated signatures may be sent (secret rotation).
    return any(
        hmac.compare_digest(expected, candidate.encode())
        for candidate in headers.get("webhook-signature", "").split()
    )
