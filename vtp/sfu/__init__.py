"""VTP's selective forwarding unit: RTP packets in, RTP packets out, never decoded.

The life of a packet (socket, ICE, DTLS/SRTP, connection, up track, C fan-out, taps, and
RTCP back) and the three names of its sequence number (``seq16`` on the wire, ``pseq``
the publisher's unwrapped, ``fseq`` the forwarded one) are in ``vtp/sfu/README.md``.

aiortc (pinned) does ICE, DTLS, SRTP and SDP; the forwarding layer is ours. Every contact
with aiortc/aioice/pylibsrtp private internals lives in :mod:`vtp.sfu.aiortc_hooks`.

Vocabulary (after Galene): media flows *up* from a publisher to the server and *down* from
the server to a subscriber. One WebRTC peer connection carries one direction:

* a **publication** (an *up connection*): the client offers (sendonly audio and/or video),
  the server answers. Its tracks are :class:`UpTrack` objects. Its id is the *stream id*.
* a **subscription** (a *down connection*): the server offers one stream's tracks
  (sendonly), the client answers - or, WHEP-style, the client offers recvonly and the
  server answers. A new publisher therefore means a new subscription per interested
  peer, never a renegotiation of an existing connection.

Opus (48 kHz, in-band FEC negotiated) and one video codec per publication are carried:
VP8 when the publisher offers it, else H.264 (packetization-mode 1) or VP9
(:mod:`vtp.sfu.codecs`). aiortc negotiates every video section under a VP8 stand-in and
the client's SDP names the real codec (:mod:`vtp.sfu.codecsdp`); subscribers get the
publisher's codec, or ``SfuError("bad-sdp")`` when they cannot decode it. Other codecs,
RTX, RED, FEC and unknown header extensions are removed from offers before aiortc sees
them.
Publishers get REMB and, where they offer it, transport-wide congestion control feedback
(``twcc``).

Python API (everything runs on the aiohttp event loop; nothing here is thread-safe)::

    from vtp.sfu import Sfu, SfuError, events

    sfu = Sfu(config)                      # vtp.config.Config
    await sfu.start()                      # starts the 50 ms tick (RTCP, liveness, speaker)
    ...
    await sfu.close()                      # closes every room, peer and connection

    sfu.rtp_capabilities() -> dict         # {"codecs": [...], "headerExtensions": [...]}
    sfu.ice_servers(user="alice") -> list[dict]
                                           # RTCIceServer dicts for clients; TURN entries
                                           # carry coturn REST (HMAC) credentials
    unsubscribe = sfu.add_listener(callback)   # callback(event), every room; called
                                               # synchronously: keep it cheap, don't raise
    sfu.room(name) -> Room                 # get or create. A Room closes room_grace_s
                                           # after its last peer left: look it up again
                                           # with sfu.room(name), don't keep it
    sfu.get_room(name) -> Room | None
    sfu.rooms -> dict[str, Room]
    sfu.stats() -> dict                    # every room's stats (JSON-serialisable)

    peer = room.join(peer_id=None, display="") -> Peer  # SfuError("exists") if taken
    peer = room.join(peer_id, display, relay=True)  # a cascade's relay peer (another
                                           # node's end): on the origin it subscribes
                                           # for that node; on an edge it publishes the
                                           # origin's subscription offer (a full ICE
                                           # agent on a port of its own: the origin may
                                           # be ICE-lite, and two lite agents never pair)
    room.origin = "node-a"                 # this room is relayed from that node: only
                                           # relay peers publish (others: "bad-state")
    room.view_needed(stream_id, track_id) -> (max_width, max_height, visible) | None
                                           # a video's subscribers' views merged (what an
                                           # edge asks its origin for, vtp.signalling.
                                           # cascade); None: no subscriber
    room.peers -> dict[str, Peer]
    room.streams() -> list[StreamInfo]     # live publications, for late joiners:
                                           # StreamInfo(id, peer_id, label,
                                           #            tracks=(TrackInfo(id, kind, codec),))
    room.publication(stream_id) -> UpConnection | None
    room.stats() -> dict                   # peers, their connections, per-track packet,
                                           # byte, loss, NACK, PLI counters
    room.speaker.current -> str | None     # active speaker's peer id
    tap = room.add_tap(track_id, callback) # in-process consumer (recorder):
                                           # callback(track: UpTrack, packet: UpPacket) for
                                           # every packet of the track (packet.fseq/.uts are
                                           # continuous unbounded seq/timestamp, .marker,
                                           # .payload, .keyframe, .audio_level); no network,
                                           # no SRTP. tap.kind, tap.codec, tap.clock_rate,
                                           # tap.request_keyframe(), tap.sender_report()
                                           # -> (ntp, uts) | None, tap.close()

    pub = await peer.publish(offer_sdp, label="")   -> UpConnection (a publication)
          pub.id (= stream id), pub.answer_sdp, pub.tracks (UpTrack: .id, .kind, .mime_type)
          # StreamAdded/TrackAdded are emitted once its DTLS is up
    sub = await peer.subscribe(stream_id)           -> DownConnection (a subscription)
          sub.id, sub.offer_sdp, sub.stream_id
    await peer.answer(sub.id, answer_sdp)           # completes a subscription
    sub = await peer.subscribe(stream_id, offer_sdp=client_offer)   # WHEP: client offers
    sub = await peer.subscribe_answer(stream_id, client_offer)      # (the same)
          sub.answer_sdp                                # (recvonly), the server answers
    await peer.add_ice_candidate(conn_id, candidate, sdp_mid=None, sdp_mline_index=0)
          # candidate is the "candidate:..." string; "" or None = end of candidates.
          # The server's own candidates are all in its SDP (no server-side trickle).
    await peer.close_connection(conn_id)            # unpublish or unsubscribe
    peer.set_preferences(sub_id, track_id, max_width=0, max_height=0, visible=True,
                         max_fps=0)
          # = sub.set_preferences(track_id, max_width, max_height, visible, max_fps)
          # adaptive stream: how the subscriber shows that video (rendered size in px,
          # 0 = no limit; visible=False = send nothing for it, audio unaffected;
          # max_fps: frame rate needed, 0 = full; VP8 temporal layers above it dropped).
          # Simulcast tracks get the smallest layer covering the size, within the
          # subscriber's bandwidth; layers are reallocated at once. SfuError
          # "not-found" (no such subscription / video track), "bad-request" (values).
    peer.touch()                                    # signalling saw the peer alive
    peer.set_muted({"audio"})                       # server-side mute: withhold these
          # kinds of every publication of the peer (and later ones) from subscribers
          # and taps until set_muted(()); unmuted video resumes at a keyframe
    await peer.leave()
    peer.connections -> dict[str, Connection]       # its publications and subscriptions

Errors: the methods that take client input raise :class:`SfuError` with a short
``code`` - "bad-sdp", "bad-candidate", "bad-request", "not-found", "bad-state",
"exists", "unavailable" (no UDP port), "internal" - and leave the room untouched. A
publication whose offer is refused, or a subscription whose answer aiortc refuses, is
closed (no socket or task is left behind).

Events (frozen dataclasses in :mod:`vtp.sfu.events`, delivered to listeners):
``PeerJoined``, ``PeerLeft`` (reason "left", "timeout", "room closed"), ``StreamAdded``,
``StreamRemoved``, ``TrackAdded``, ``TrackRemoved``, ``SubscriptionClosed`` (the
subscriber's stream went away - "stream ended" - or its connection failed),
``ConnectionStateChanged``, ``ActiveSpeaker`` (peer id or None), ``RoomClosed``, and
for simulcast / adaptive stream:

* ``LayersNeeded(room, peer_id, stream_id, track_id, rids)`` - dynacast: ``peer_id`` is
  the *publisher*; ``rids`` (lowest first, ``()`` = none) are the encodings of that
  simulcast video some subscriber is forwarded or switching to (and the first one while
  the recorder taps the track). Emitted (every 0.25 s at most) when the set changes:
  signalling tells the publisher, which deactivates the other encodings and
  reactivates them when they reappear here.
* ``TrackPaused(room, peer_id, subscription_id, stream_id, track_id, reason)`` -
  ``peer_id`` is the *subscriber*: its video of that track stopped on purpose,
  ``reason`` "bandwidth" (nothing fits its estimate; audio keeps flowing) or "hidden"
  (its preferences); ``TrackResumed(room, peer_id, subscription_id, stream_id,
  track_id)`` when it flows again (from a keyframe). Signalling forwards both to the
  subscriber, whose client shows a paused state instead of a frozen frame.
* ``LayerChanged(room, peer_id, subscription_id, stream_id, track_id, rid, width,
  height)`` - the subscriber's video switched encoding (at its keyframe).

Simulcast in: a publisher's video section offering rids (``a=rid:<id> send`` +
``a=simulcast:send q;h;f`` + the ``rtp-stream-id`` extension) is answered with
``a=rid:<id> recv``, ``a=simulcast:recv`` and the rid extensions; every layer is an
UpTrack (``pub.tracks`` lists the primary, the first rid; ``track.layers`` all of
them), each layer's SSRC is learned from its rid and kept. Each subscriber's DownTrack
forwards one layer, chosen by :mod:`vtp.sfu.allocation`, and switches at keyframes with
continuous sequence numbers, timestamps and VP8 picture IDs (:mod:`vtp.sfu.vp8`).

Liveness: a connection whose ICE/DTLS fails or closes (client close, consent expiry) is
closed at once; one silent (no RTP/RTCP) for about ``peer_timeout_s`` is closed too; a
peer with no live connection that has not been ``touch()``-ed for that long is removed
(``PeerLeft`` reason "timeout") - a vanished peer is gone within ``peer_timeout_s``
(default 30 s), its sockets and tasks released. A room with no peers closes after
``room_grace_s``.

Settings used (``vtp.config.Config``): ``ice_addresses``, ``ice_announce_address``,
``ice_port_min``/``ice_port_max`` or ``ice_udp_port`` (every connection on one port, the
SFU an ICE-lite agent: :mod:`vtp.sfu.icelite`; ``Sfu.start()`` opens it), ``stun_urls``,
``turn_urls``, ``turn_secret``, ``turn_credential_ttl_s``, ``turn_tls_cert`` (turns: URLs
only while it serves them: :mod:`vtp.sfu.turncert`), ``room_grace_s``,
``peer_timeout_s``. Nothing external is contacted by default.

This module is the SFU's interface: the edge (:mod:`vtp.signalling`, :mod:`vtp.web`,
:mod:`vtp.api`) imports what it calls from ``vtp.sfu`` and ``vtp.sfu.events`` only -
join (``sfu.room(name).join``), leave (``peer.leave``), publish, subscribe, answer,
ICE (``peer.add_ice_candidate``, :func:`restart_ice`), preferences, mute, and the
events (``sfu.add_listener``) - never the packet path's modules (import-linter contract
"The edge reaches the SFU through its interface"). A relayed caller (another node)
drives the same calls.

The media plane imports no web code (no aiohttp, ``vtp.api``, ``vtp.web``,
``vtp.signalling``: import-linter contracts in pyproject.toml). The application builds the
Sfu in a cleanup context (:mod:`vtp.app`) and keeps it under ``app[vtp.appkeys.SFU_KEY]``;
the signalling edge (:mod:`vtp.signalling`) drives it through the API above.

Modules: ``service`` (Sfu), ``room``, ``peer``, ``connection`` (what up and down peer
connections share), ``upconnection``/``downconnection`` (each direction, its RTCP
dispatched by packet type), ``uptrack``/``downtrack`` (the per-packet path), ``fastpath`` (its
compiled part: header rewrite, SRTP protect and send per subscriber), ``rtp``, ``rtcp``,
``seqmap`` (continuity), ``packetcache``, ``estimator`` (REMB), ``twcc`` (transport-cc
feedback), ``speaker``,
``negotiation`` (SDP filtering, Opus FEC, simulcast answers), ``codecs`` (which codec
each leg uses, keyframe detection per codec), ``codecsdp`` (aiortc's stand-in codec),
``h264``, ``vp8`` and ``vp9`` (their payloads), ``allocation`` (layers per subscriber),
``ice`` (STUN/TURN, coturn credentials),
``icelite`` (one UDP port for all connections),
``events``, ``errors``, ``aiortc_hooks`` (every private aiortc/aioice/pylibsrtp contact).
"""

from __future__ import annotations

from vtp.sfu import events
from vtp.sfu.connection import Connection
from vtp.sfu.downconnection import DownConnection
from vtp.sfu.errors import SfuError
from vtp.sfu.icerestart import restart_ice
from vtp.sfu.peer import Peer
from vtp.sfu.room import Room
from vtp.sfu.service import Sfu
from vtp.sfu.taps import StreamInfo, TrackInfo
from vtp.sfu.upconnection import UpConnection

__all__ = [
    "Connection",
    "DownConnection",
    "Peer",
    "Room",
    "Sfu",
    "SfuError",
    "StreamInfo",
    "TrackInfo",
    "UpConnection",
    "events",
    "restart_ice",
]
