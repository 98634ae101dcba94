"""A subscriber that stops reading is dropped within the consent timeout (RFC 7675: at
most 30 s), whether the SFU runs a socket per connection (its own consent checks go
unanswered) or one ICE-lite port (the client still sends checks; its receiver reports
show it receives nothing)."""

from __future__ import annotations

import time

import pytest
from pydantic import ValidationError

from tests.sfu.clients import EventLog, Publisher, Subscriber
from tests.support.waiting import eventually
from vtp.config import load_config
from vtp.sfu import Sfu, events
from vtp.sfu import aiortc_hooks as hooks


def test_the_default_consent_timeout_is_at_most_30_s() -> None:
    assert load_config().ice_consent_timeout_s <= 30
    for outside in (31, 5):
        with pytest.raises(ValidationError):
            load_config(ice_consent_timeout_s=outside)


@pytest.mark.parametrize("single_port", [False, True])
async def test_a_subscriber_that_stops_reading_is_dropped(single_port: bool) -> None:
    timeout = 3.0  # below the smallest allowed setting (10 s), to keep the test short
    config = load_config(
        ice_addresses=["127.0.0.1"], room_grace_s=0.5, ice_udp_port=0 if single_port else None
    ).model_copy(update={"ice_consent_timeout_s": timeout})
    sfu = Sfu(config)
    await sfu.start()
    if sfu.mux is not None:
        # aiortc clients check every ~5 s: keep the ICE-lite window at its usual length,
        # so that what notices here is the subscriber's reports
        sfu.mux.consent_timeout_s = 30.0
    log = EventLog()
    sfu.add_listener(log)
    pub, sub = Publisher(2, audio=False), Subscriber()
    try:
        room = sfu.room("consent")
        stream_id = await pub.publish(room.join("teacher"))
        sub_id = await sub.subscribe(room.join("student"), stream_id)
        await eventually(lambda: len(sub.video().frames) >= 5, 15)
        # the client stops reading its socket: everything sent to it is lost, while it
        # goes on sending (its RTCP reports, its own ICE checks)
        client_ice = hooks.dtls_transports(sub.pc)[0].transport._connection
        for protocol in client_ice._protocols:
            protocol.datagram_received = lambda data, addr: None
        stopped = time.monotonic()
        closed = await log.wait_for(
            lambda e: isinstance(e, events.SubscriptionClosed) and e.subscription_id == sub_id,
            within=timeout + 10,
        )
        took = time.monotonic() - stopped
        assert closed is not None
        assert took < timeout + 7, took  # (reaped once a second; a loaded CI machine)
        assert room.publication(stream_id) is not None  # the publisher goes on
    finally:
        await pub.close()
        await sub.close()
        await sfu.close()
