"""Talk time and turns from RFC 6464 audio levels: a scripted aiortc speaker (a tone on
for known intervals, silence between; aiortc sets the audio-level extension from the
samples) measured by the SFU within 5%."""

from __future__ import annotations

import asyncio
import math

from aiortc import RTCPeerConnection, RTCSessionDescription

from tests.sfu.clients import client_configuration
from tests.support.media import RATE, SILENCE, PacedAudioTrack, tone
from tests.support.waiting import eventually
from vtp.sfu import Sfu
from vtp.sfu.talk import TalkMeter

# Tone on for these intervals (seconds from the first frame): 4.5 s in three turns.
SCRIPT = [(0.5, 2.5), (4.0, 5.5), (7.0, 8.0)]
END_S = 9.0


class ScriptedSpeaker(PacedAudioTrack):
    def __init__(self) -> None:
        super().__init__()
        self._tone = tone(300)
        self.media_s = 0.0  # how far the script has played

    def samples(self, timestamp: int) -> bytes:
        self.media_s = at = timestamp / RATE
        speaking = any(start <= at < end for start, end in SCRIPT)
        return self._tone if speaking else SILENCE


async def test_talk_time_matches_a_scripted_speaker(sfu: Sfu) -> None:
    room = sfu.room("talk")
    peer = room.join("speaker")
    quiet = room.join("listener")  # in the room, publishes nothing: no talk time
    speaker = ScriptedSpeaker()
    pc = RTCPeerConnection(client_configuration())
    pc.addTrack(speaker)
    try:
        await pc.setLocalDescription(await pc.createOffer())
        pub = await peer.publish(pc.localDescription.sdp)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=pub.answer_sdp, type="answer"))
        await eventually(lambda: speaker.media_s >= END_S, END_S + 15)
        await asyncio.sleep(0.7)  # (the last speaker interval closes)
        talk = room.talk.take()
    finally:
        await pc.close()
    seconds, turns = talk[peer.id]
    expected = sum(end - start for start, end in SCRIPT)
    print(f"talk time {seconds:.2f} s for {expected:.2f} s of tone; {turns} turns")
    assert abs(seconds - expected) <= 0.05 * expected, seconds
    assert turns == len(SCRIPT)
    assert quiet.id not in talk


def test_talk_meter_counts_shares_and_turns() -> None:
    meter = TalkMeter(0.0)
    meter.update({"a": 1.0}, 0.3)  # speaking
    meter.update({"a": 0.5}, 0.6)  # half of this interval voiced, still a speaking one
    meter.update({"a": 0.0}, 0.9)  # a short pause: the same turn
    meter.update({"a": 1.0}, 1.2)
    meter.update({"a": 0.0}, 3.0)  # (long gap: counted at most MAX_INTERVAL_S)
    meter.update({"a": 1.0}, 3.3)  # after 2.1 s of silence: a new turn
    seconds, turns = meter.take()["a"]
    assert math.isclose(seconds, 0.3 + 0.15 + 0.3 + 0.3) and turns == 2
    assert meter.take() == {}
    meter.update({"a": 0.2, "b": 0.0}, 3.6)
    popped, _ = meter.pop("a")
    assert math.isclose(popped, 0.2 * 0.3) and meter.pop("b") == (0.0, 0)
