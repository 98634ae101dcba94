"""VTP's selective forwarding unit: RTP packets in, RTP packets out, never decoded.

aiortc (pinned) does ICE, DTLS, SRTP and SDP; the forwarding layer is ours. Every contact
with aiortc/aioice/pylibsrtp private internals lives in :mod:`vtp.sfu.aiortc_hooks`.

Vocabulary (after Galene): media flows *up* from a publisher to the server and *down* from
the server to a subscriber. One WebRTC peer connection carries one direction:

* a **publication** (an *up connection*): the client offers (sendonly audio and/or video),
  the server answers. Its tracks are :class:`UpTrack` objects. Its id is the *stream id*.
* a **subscription** (a *down connection*): the server offers one stream's tracks
  (sendonly), the client answers. A new publisher therefore means a new subscription per
  interested peer, never a renegotiation of an existing connection.

Only Opus (48 kHz, in-band FEC negotiated) and VP8 are carried; other codecs, RTX, RED,
FEC and unknown header extensions are removed from offers before aiortc sees them.

Python API (everything async runs on the aiohttp event loop)::

    from vtp.sfu import Sfu, SfuError, events

    sfu = Sfu(config)                      # vtp.config.Config
    await sfu.start()
    ...
    await sfu.close()

    sfu.rtp_capabilities() -> dict         # {"codecs": [...], "headerExtensions": [...]}
    sfu.ice_servers(user="alice") -> list[dict]
                                           # RTCIceServer dicts for clients; TURN entries
                                           # carry coturn REST (HMAC) credentials
    unsubscribe = sfu.add_listener(callback)   # callback(event) for every room; sync, cheap
    sfu.room(name) -> Room                 # get or create
    sfu.get_room(name) -> Room | None
    sfu.rooms -> dict[str, Room]
    sfu.stats() -> dict                    # every room's stats

    peer = room.join(peer_id=None, display="") -> Peer  # SfuError if the id is taken
    room.peers -> dict[str, Peer]
    room.streams() -> list[StreamInfo]     # every live publication (for late joiners)
    room.stats() -> dict                   # peers, publications, subscriptions, per-track
                                           # packet/byte counters (JSON-serialisable)
    room.add_tap(track_id, callback) -> Tap
                                           # in-process consumer (recorder): callback(TapPacket)
                                           # for every forwarded packet; tap.request_keyframe();
                                           # tap.close(). No network, no SRTP.

    pub = await peer.publish(offer_sdp, label="")   -> Publication
          pub.id (stream id), pub.answer_sdp, pub.tracks (list[TrackInfo])
    sub = await peer.subscribe(stream_id)           -> Subscription
          sub.id, sub.offer_sdp, sub.stream_id
    await peer.answer(sub.id, answer_sdp)           # completes a subscription
    await peer.add_ice_candidate(conn_id, candidate, sdp_mid=None, sdp_mline_index=0)
          # candidate is the "candidate:..." string; "" or None = end of candidates
    await peer.close_connection(conn_id)            # unpublish or unsubscribe
    peer.touch()                                    # signalling saw the peer alive
    await peer.leave()
    peer.connections -> dict[str, Connection]       # publications and subscriptions

Errors: every method that takes client input raises :class:`SfuError` (with a short
``code``: "bad-sdp", "not-found", "bad-state", "exists") on bad input and leaves the room
untouched; connections that fail are closed and reported through events.

Events (frozen dataclasses in :mod:`vtp.sfu.events`, delivered to listeners):
``PeerJoined``, ``PeerLeft``, ``TrackAdded``, ``TrackRemoved``, ``StreamAdded``,
``StreamRemoved``, ``SubscriptionClosed`` (the subscriber's stream went away or its
connection failed), ``ConnectionStateChanged``, ``ActiveSpeaker`` (peer id or None),
``RoomClosed``.

Liveness: a connection silent (no RTP/RTCP) for ``peer_timeout_s`` or whose ICE/DTLS
fails is closed; a peer with no live connection that has not been ``touch()``-ed for
``peer_timeout_s`` is removed. A room with no peers closes after ``room_grace_s``.

aiohttp: ``vtp.sfu.setup(app)`` appends :func:`sfu_ctx` to ``app.cleanup_ctx``; it builds
the Sfu from ``app[CONFIG_KEY]`` and stores it under ``app[SFU_KEY]``.
"""

from __future__ import annotations

from vtp.sfu.errors import SfuError
from vtp.sfu.service import SFU_KEY, Sfu, setup, sfu_ctx

__all__ = ["SFU_KEY", "Sfu", "SfuError", "setup", "sfu_ctx"]
