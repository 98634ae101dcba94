"""Typed keys for what the aiohttp application holds."""

from __future__ import annotations

import asyncpg
from aiohttp import web
from redis.asyncio import Redis

from vtp.auth.authority import AuthorityBus
from vtp.auth.passwords import PasswordHasher
from vtp.auth.ratelimit import Backoff, RateLimiter
from vtp.auth.tokens import TokenService
from vtp.config import Config
from vtp.limits.leases import Leases
from vtp.storage import ObjectStore

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
