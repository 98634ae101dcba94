"""Loopback TCP ports of the servers a test starts (Caddy, coturn, SeaweedFS): whether one
answers yet."""

from __future__ import annotations

import socket


def tcp_answers(port: int, timeout: float = 0.2) -> bool:
    """Whether something on 127.0.0.1 accepts a TCP connection on ``port`` now (within
    ``timeout`` seconds)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False
