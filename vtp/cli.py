"""The `vtp` command: serve, migrate, user create, check."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import re
import socket
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from vtp import __version__, backends, deployment
from vtp.auth.passwords import PasswordHasher, PasswordPolicyError, check_password_policy
from vtp.config import Config, load_config
from vtp.db import password_resets, users
from vtp.db.migrate import MigrationError, apply_migrations
from vtp.health import check_all
from vtp.logs import setup_logging


def _serve(config: Config) -> int:
    from aiohttp import web

    from vtp import https, workers
    from vtp.app import create_app
    from vtp.cluster.nodes import cluster_refusal
    from vtp.drain import drain_on_sigterm

    refusal = cluster_refusal(config, config.workers)
    if refusal is None and config.workers > 1:
        refusal = workers.workers_refusal(config, config.workers)
    if refusal is not None:
        print(f"error: {refusal}", file=sys.stderr)
        return 2
    if config.workers > 1:
        return workers.supervise(config, config.workers)
    own: list[socket.socket] = []
    if config.node_port is not None and config.node_port != config.port:
        # this node's own door besides the shared port (what its node URL names)
        own.append(_listen(config.host, config.node_port))
    app = create_app(config)
    drain_on_sigterm(app)  # SIGTERM: no new rooms, clients sent elsewhere, then exit
    web.run_app(
        app,
        host=config.host,
        port=config.port,
        reuse_port=config.reuse_port or None,
        sock=own or None,
        ssl_context=https.server_context(config),
        print=_announce,
        access_log=None,
    )
    return 0


def _announce(message: str) -> None:
    """aiohttp's "======== Running on URL ========" banner, said plainly."""
    found = re.search(r"Running on (.+?) =+", message)
    if found is None:
        print(f"VTP {__version__}: {message}", file=sys.stderr)
        return
    print(f"VTP {__version__} is listening on {found.group(1)} (Ctrl+C stops it)", file=sys.stderr)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def _migrate(config: Config) -> int:
    from vtp.events.secret_box import SecretBox, seal_plain_secrets

    async with backends.database(config) as pool:
        async with pool.acquire() as conn:
            applied = await apply_migrations(conn)
        await seal_plain_secrets(pool, SecretBox.from_config(config))
    names = [f"{m.version:03d}_{m.name}" for m in applied]
    print(json.dumps({"applied": names}))
    return 0


async def _user_create(config: Config, args: argparse.Namespace) -> int:
    password = args.password
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif password is None:
        password = getpass.getpass("Password: ")
        # typed blind: a typo would lock the (first) account out
        if getpass.getpass("Password again: ") != password:
            print("error: the passwords differ", file=sys.stderr)
            return 2
    try:
        check_password_policy(password, email=args.email, min_length=config.password_min_length)
    except PasswordPolicyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    hasher = PasswordHasher(config.bcrypt_cost)
    async with backends.database(config) as pool:
        async with pool.acquire() as conn:
            await apply_migrations(conn)
        try:
            user = await users.create_user(
                pool,
                email=args.email,
                display_name=args.name or args.email.split("@")[0],
                password_hash=await hasher.hash(password),
                role=args.role,
            )
        except users.EmailTaken:
            print(f"error: a user with e-mail {args.email} already exists", file=sys.stderr)
            return 1
    print(json.dumps(user.to_json()))
    return 0


async def _user_reset_link(config: Config, args: argparse.Namespace) -> int:
    from vtp.api.accounts import reset_url

    async with backends.database(config) as pool:
        async with pool.acquire() as conn:
            await apply_migrations(conn)
        creds = await users.get_credentials(pool, args.email)
        if creds is None or not creds.user.is_active:
            print(f"error: no active user with e-mail {args.email}", file=sys.stderr)
            return 1
        token, expires_at = await password_resets.issue(
            pool, creds.user.id, ttl_s=config.password_reset_ttl_s, created_by=None
        )
    base = config.public_url or f"http://{config.host}:{config.port}"
    print(json.dumps({"reset_url": reset_url(base, token), "expires_at": expires_at.isoformat()}))
    return 0


async def _check(config: Config) -> int:
    async with (
        backends.database(config) as pool,
        backends.redis(config) as redis,
        backends.object_store(config) as store,
    ):
        components = await check_all(
            pool,
            redis,
            store,
            embedded_db=config.embedded_database,
            embedded_redis=config.embedded_redis,
        )
    problems = deployment.config_problems(config) + await deployment.turn_problems(config)
    ok = all(c.ok for c in components) and not problems
    report = {
        "ok": ok,
        "components": {c.name: c.to_json() for c in components},
        "deployment": [p.to_json() for p in problems],
    }
    print(json.dumps(report, indent=2))
    return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vtp", description="VTP virtual teaching platform")
    parser.add_argument("--version", action="version", version=f"vtp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the API, signalling and SFU")
    serve.add_argument("--host", help="listen address (VTP_HOST)")
    serve.add_argument("--port", type=int, help="listen port (VTP_PORT)")
    serve.add_argument(
        "--workers",
        type=int,
        help="node processes on this host sharing the port, one per core (VTP_WORKERS)",
    )

    sub.add_parser("migrate", help="apply pending database migrations")
    sub.add_parser("check", help="report each dependency's health")

    user = sub.add_parser("user", help="manage users")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    create = user_sub.add_parser("create", help="create a user (e.g. the first admin)")
    create.add_argument("--email", required=True)
    create.add_argument("--name", help="display name")
    create.add_argument("--role", choices=["student", "teacher", "admin"], default="student")
    secret = create.add_mutually_exclusive_group()
    secret.add_argument("--password", help="password (prompted for when omitted)")
    secret.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    reset = user_sub.add_parser(
        "reset-link", help="print a one-time password-reset link for a user"
    )
    reset.add_argument("--email", required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides: dict[str, object] = {}
    if getattr(args, "host", None):
        overrides["host"] = args.host
    if getattr(args, "port", None) is not None:
        overrides["port"] = args.port
    if getattr(args, "workers", None) is not None:
        overrides["workers"] = args.workers
    try:
        config = load_config(**overrides)
    except ValidationError as exc:
        print(f"error: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    setup_logging(config.log_level, config.log_format, config.log_libraries)
    try:
        if args.command == "serve":
            return _serve(config)
        if args.command == "migrate":
            return asyncio.run(_migrate(config))
        if args.command == "check":
            return asyncio.run(_check(config))
        if args.user_command == "reset-link":
            return asyncio.run(_user_reset_link(config, args))
        return asyncio.run(_user_create(config, args))
    except MigrationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
