"""The signalling edge: how clients reach the media plane (:mod:`vtp.sfu`).

* :mod:`.websocket` - the signalling WebSocket ``GET /api/v1/sfu/ws`` (docs/protocol.md),
  its messages in :mod:`.messages`;
* :mod:`.rest` - ``/api/v1/sfu`` (capabilities, REST transports, room state);
* :mod:`.whip` and :mod:`.whep` - WHIP ingest and WHEP egress;
* :mod:`.access` - who may enter which room, as what (the one place it is decided);
  :mod:`.rights` - grants followed after join; :mod:`.quotas` - per-user caps;
* :mod:`.members` - which user is behind each SFU peer, and whom the server mutes;
* :mod:`.relayed` - the room's node's end of a signalling socket another node holds
  (:mod:`vtp.channel.relay`).
* :mod:`.placement` - which node serves a room; :mod:`.cascade` - a room's subscribers
  served by another node from streams the room's node relays to it.

Everything here calls into the SFU's Python API; the SFU never calls back into this
package except through its event listeners (import-linter contracts in pyproject.toml).
"""

from __future__ import annotations

from aiohttp import web

from vtp.signalling import relayed, websocket
from vtp.signalling.members import members_ctx


def setup(app: web.Application) -> None:
    """Signalling state: the members registry (needs the SFU: after its context) and the
    WebSocket sessions. Routes are registered by :mod:`vtp.routes`."""
    app.cleanup_ctx.append(members_ctx)
    websocket.setup(app)
    relayed.setup(app)
