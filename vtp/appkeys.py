"""Typed keys for what the aiohttp application holds.

Part of the edge (import-linter: the media plane and the core never look into the
application's state; what they need is handed to them). The media plane's services are
named for type checking only, so that importing the keys does not load aiortc or PyAV.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg
from aiohttp import web
from redis.asyncio import Redis

from vtp.auth.authority import AuthorityBus
from vtp.auth.passwords import PasswordHasher
from vtp.auth.ratelimit import Backoff, RateLimiter
from vtp.auth.tokens import TokenService
from vtp.cluster.nodes import NodeRegistry
from vtp.cluster.placement import Placement
from vtp.config import Config
from vtp.limits.leases import Leases
from vtp.storage import ObjectStore

if TYPE_CHECKING:
    from vtp.recorder.service import Recorder
    from vtp.sfu import Sfu

CONFIG = web.AppKey("config", Config)
DB = web.AppKey("db", asyncpg.Pool)
REDIS = web.AppKey("redis", Redis)
STORE = web.AppKey("object_store", ObjectStore)
TOKENS = web.AppKey("tokens", TokenService)
HASHER = web.AppKey("password_hasher", PasswordHasher)
LOGIN_LIMIT_ADDRESS = web.AppKey("login_limit_address", RateLimiter)
AUTHORITY = web.AppKey("authority", AuthorityBus)
LOGIN_BACKOFF = web.AppKey("login_backoff", Backoff)  # failures per account + address
REGISTER_LIMIT_ADDRESS = web.AppKey("register_limit_address", RateLimiter)
CHAT_LIMIT_USER = web.AppKey("chat_limit_user", RateLimiter)
WEBSOCKET_LEASES = web.AppKey("websocket_leases", Leases)  # open WebSockets per user
SFU_KEY: web.AppKey[Sfu] = web.AppKey("sfu")  # the media plane of this process
RECORDER: web.AppKey[Recorder] = web.AppKey("recorder")
NODES = web.AppKey("nodes", NodeRegistry)  # this node's entry and the cluster's nodes
PLACEMENT = web.AppKey("placement", Placement)  # which node holds which room
