"""ICE restart of a connection on the one-port ICE-lite agent, without renegotiating
media: a client whose network changed (Wi-Fi to mobile) gets new server credentials and
its restarted agent checks and nominates a new path, while DTLS, SRTP and every
subscription carry on.

The server's side of a restart is only its ICE credentials: the lite agent answers
checks and verifies them with its own password, so it needs nothing from the client's
new description. The server's description (answer of a publication, offer of a
subscription) is returned with the new ``a=ice-ufrag``/``a=ice-pwd`` and is otherwise
what the client already has, so the client applies it as the other half of its ICE
restart (docs/protocol.md, ``restart-ice``).
"""

from __future__ import annotations

import functools
import re

from vtp.sfu import aiortc_hooks as hooks
from vtp.sfu.connection import Connection
from vtp.sfu.downconnection import DownConnection
from vtp.sfu.errors import SfuError
from vtp.sfu.upconnection import UpConnection

_UFRAG = re.compile(r"^a=ice-ufrag:.*$", re.MULTILINE)
_PWD = re.compile(r"^a=ice-pwd:.*$", re.MULTILINE)


def with_credentials(sdp: str, ufrag: str, password: str) -> str:
    """``sdp`` with every ``a=ice-ufrag``/``a=ice-pwd`` line set to these (the line
    endings, CRLF or LF, are kept)."""
    sdp = _UFRAG.sub(lambda m: "a=ice-ufrag:" + ufrag + ("\r" if m[0].endswith("\r") else ""), sdp)
    return _PWD.sub(lambda m: "a=ice-pwd:" + password + ("\r" if m[0].endswith("\r") else ""), sdp)


def _keyframes(connection: UpConnection) -> None:
    for track in connection.tracks:
        track.request_keyframe()  # (audio tracks ignore it)


def restart_ice(connection: Connection) -> str:
    """Restart ``connection``'s ICE; the server's description with its new credentials."""
    if connection.closed:
        raise SfuError("not-found", "the connection is closed")
    lites = [hooks.lite_connection(d) for d in hooks.dtls_transports(connection.pc)]
    lites = [lite for lite in lites if lite is not None and not lite.closed]
    if len(lites) != 1:  # (VTP bundles everything on one transport)
        raise SfuError("unsupported", "ICE restart needs the one-port mode (VTP_ICE_UDP_PORT)")
    if isinstance(connection, UpConnection):
        sdp = connection.answer_sdp
    elif isinstance(connection, DownConnection) and connection.offer_sdp:
        sdp = connection.offer_sdp
    else:
        raise SfuError("unsupported", "this connection has no server description to restart")
    if not sdp:
        raise SfuError("bad-request", "the connection is not negotiated yet")
    ufrag, password = "", ""
    for lite in lites:  # (one transport with BUNDLE)
        ufrag, password = lite.restart()
        if isinstance(connection, UpConnection):
            # what the publisher sent while its old path died is lost for good: its
            # subscribers' decoders need a keyframe as soon as media comes on the new one
            lite.on_moved = functools.partial(_keyframes, connection)
    sdp = with_credentials(sdp, ufrag, password)
    if isinstance(connection, UpConnection):
        connection.answer_sdp = sdp
    else:
        connection.offer_sdp = sdp
    return sdp
