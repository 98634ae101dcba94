"""Webhook signing secrets encrypted at rest: AES-256-GCM, a random 96-bit nonce per
secret, stored as ``v1.`` + base64(nonce + ciphertext + tag) in
``webhook_endpoints.secret_sealed``. The deliverer opens a secret to sign with it; the
API shows it only when it is made (creation, rotation).

The key is HMAC-SHA256(material, "vtp webhook secrets v1"), the material being
``VTP_WEBHOOK_SECRETS_KEY`` or else the JWT signing secret (configured or generated in
the state directory), which every node already shares. Changing that material makes
the stored secrets unreadable: deliveries then fail until each endpoint's secret is
rotated (docs/events.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os

import asyncpg
from aiohttp import web
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vtp.auth.secret import load_or_create_secret
from vtp.config import Config
from vtp.db import webhooks as db

logger = logging.getLogger(__name__)

VERSION = "v1."
NONCE_BYTES = 12
_LABEL = b"vtp webhook secrets v1"
_AAD = b"vtp webhook secret"


class SecretUnreadable(ValueError):
    pass


class SecretBox:
    def __init__(self, material: str) -> None:
        self._aead = AESGCM(hmac.new(material.encode(), _LABEL, hashlib.sha256).digest())

    @classmethod
    def from_config(cls, config: Config) -> SecretBox:
        if config.webhook_secrets_key is not None:
            return cls(config.webhook_secrets_key.get_secret_value())
        if config.jwt_secret is not None:
            return cls(config.jwt_secret.get_secret_value())
        return cls(load_or_create_secret(config.data_dir / "jwt_secret"))

    def seal(self, secret: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = nonce + self._aead.encrypt(nonce, secret.encode(), _AAD)
        return VERSION + base64.b64encode(sealed).decode()

    def open(self, sealed: str) -> str:
        if not sealed.startswith(VERSION):
            raise SecretUnreadable("not a sealed webhook secret")
        try:
            raw = base64.b64decode(sealed[len(VERSION) :], validate=True)
            plain = self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _AAD)
        except (binascii.Error, ValueError, InvalidTag):
            raise SecretUnreadable(
                "the secret cannot be decrypted (was VTP_WEBHOOK_SECRETS_KEY or the JWT "
                "secret changed?); rotate it"
            ) from None
        return plain.decode()


async def seal_plain_secrets(pool: asyncpg.Pool, box: SecretBox) -> int:
    """Seal the plain-text secrets left by endpoints registered before secrets were
    encrypted (migration 008); how many."""
    sealed = 0
    for endpoint_id, plain in await db.plain_secrets(pool):
        if await db.replace_plain_secret(pool, endpoint_id, plain, box.seal(plain)):
            sealed += 1
    if sealed:
        logger.info("sealed %d plain-text webhook secret(s)", sealed)
    return sealed


SECRET_BOX = web.AppKey("webhook_secret_box", SecretBox)
