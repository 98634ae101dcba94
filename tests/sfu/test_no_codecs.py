"""The server side never builds a VP8/Opus encoder or decoder during a room session."""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import Any

import aiortc.rtcrtpreceiver
import aiortc.rtcrtpsender
import pytest

from tests.sfu.clients import EventLog, Publisher, Subscriber
from tests.support.waiting import eventually
from vtp.sfu import Sfu


async def test_server_creates_no_encoder_or_decoder(
    sfu: Sfu, event_log: EventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoders: list[Any] = []  # the RTCRtpSender asking for each encoder
    decoders: list[Any] = []  # the output queue of each decoder thread
    lock = threading.Lock()
    real_encoder = aiortc.rtcrtpsender.get_encoder
    real_decoder = aiortc.rtcrtpreceiver.get_decoder

    def counting_encoder(codec: Any) -> Any:
        encoders.append(sys._getframe(1).f_locals.get("self"))
        return real_encoder(codec)

    def counting_decoder(codec: Any) -> Any:
        with lock:
            decoders.append(sys._getframe(1).f_locals.get("output_q"))
        return real_decoder(codec)

    monkeypatch.setattr(aiortc.rtcrtpsender, "get_encoder", counting_encoder)
    monkeypatch.setattr(aiortc.rtcrtpreceiver, "get_decoder", counting_decoder)

    room = sfu.room("codecs")
    pub = Publisher(2)
    stream_id = await pub.publish(room.join("teacher"))
    subs = [Subscriber(), Subscriber()]
    try:
        for i, sub in enumerate(subs):
            await sub.subscribe(room.join(f"s{i}"), stream_id)
        await eventually(lambda: all(len(s.video().frames) >= 20 for s in subs), 15)
        await eventually(lambda: all(s.received["audio"].audio_frames > 10 for s in subs), 5)

        client_senders = set(pub.pc.getSenders())
        client_queues = {id(r.track._queue) for s in subs for r in s.pc.getReceivers()}
        server_encoders = [s for s in encoders if s not in client_senders]
        server_decoders = [q for q in decoders if id(q) not in client_queues]
        # the detector works: the clients' codecs were seen...
        assert len(encoders) == 2  # VP8 + Opus on the publisher
        assert len(decoders) == 4  # VP8 + Opus on each subscriber
        # ...and none on the server
        assert server_encoders == []
        assert server_decoders == []
        forwarded = sum(
            t.forwarded for up in [room.publication(stream_id)] if up is not None for t in up.tracks
        )
        assert forwarded > 40
    finally:
        await asyncio.gather(pub.close(), *(s.close() for s in subs))
