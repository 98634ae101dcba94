"""Simulcast in the SFU: layer switches seen by a subscriber (real SRTP and UDP through
the compiled send path), the rid negotiation and SSRC learning of a publication, and
the layer allocation."""

from __future__ import annotations

import asyncio
import itertools
import struct
import time
from collections.abc import Iterator

import pytest
from pylibsrtp import Policy, Session

from tests.sfu.clients import EventLog, Subscriber
from tests.sfu.clients import Publisher as ClientPublisher
from tests.sfu.test_fastpath import KEY, Wire
from tests.support.waiting import eventually
from vtp.sfu import Sfu, SfuError, allocation, events, fastpath, negotiation, rtcp, vp8
from vtp.sfu import aiortc_hooks as hooks
from vtp.sfu.downtrack import DownTrack, ExtensionIds
from vtp.sfu.rtp import URI_REPAIRED_RTP_STREAM_ID, URI_RTP_STREAM_ID, parse_rtp
from vtp.sfu.uptrack import UpPacket, UpTrack

SSRCS = {"q": 111, "h": 222, "f": 333}
SIZES = {"q": (320, 180), "h": (640, 360), "f": (1280, 720)}


def vp8_payload(pid: int, tl0: int, start: bool, keyframe: bool, size: tuple[int, int]) -> bytes:
    """A VP8 payload with a full descriptor (15-bit picture ID, TL0PICIDX, TID)."""
    descriptor = bytes(
        [0x90 if start else 0x80, 0xE0, 0x80 | (pid >> 8), pid & 0xFF, tl0 & 0xFF, 0x00]
    )
    if not start:
        return descriptor + b"\x55" * 20
    if keyframe:
        w, h = size
        header = bytes([0x00, 0x00, 0x00, 0x9D, 0x01, 0x2A]) + struct.pack("<HH", w, h)
        return descriptor + header + b"\x11" * 20
    return descriptor + bytes([0x01, 0x00, 0x00]) + b"\x22" * 20


class Publisher:
    """Three layers of one track, each with its own numbering, fed frame by frame."""

    def __init__(self) -> None:
        self.rtcp: list[bytes] = []
        self.primary: UpTrack | None = None
        self.layers: dict[str, UpTrack] = {}
        self.seq = {"q": 1000, "h": 30000, "f": 65500}  # f wraps around
        self.ts = {"q": 5000, "h": 900000, "f": 4294960000}
        self.pid = {"q": 100, "h": 20000, "f": 32760}  # f's 15-bit picture ID wraps
        self.tl0 = {"q": 7, "h": 200, "f": 254}
        for rid in ("q", "h", "f"):
            layer = UpTrack(
                "pub-1", "video", "video/vp8", 90000, 96, "1", SSRCS[rid], self._send, 9, rid=rid
            )
            if self.primary is None:
                self.primary = layer
            else:
                self.primary.add_layer(layer)
            self.layers[rid] = layer

    def _send(self, data: bytes) -> int:
        self.rtcp.append(data)
        return len(data)

    def frame(self, rid: str, keyframe: bool = False, packets: int = 2) -> None:
        for i in range(packets):
            payload = vp8_payload(self.pid[rid], self.tl0[rid], i == 0, keyframe, SIZES[rid])
            b1 = (0x80 if i == packets - 1 else 0) | 96
            data = struct.pack("!BBHII", 0x80, b1, self.seq[rid], self.ts[rid], SSRCS[rid])
            p = parse_rtp(data + payload, 0, 0)
            assert p is not None
            self.layers[rid].receive(p)
            self.seq[rid] = (self.seq[rid] + 1) & 0xFFFF
        self.ts[rid] = (self.ts[rid] + 3000) & 0xFFFFFFFF
        self.pid[rid] = (self.pid[rid] + 1) & 0x7FFF
        self.tl0[rid] = (self.tl0[rid] + 1) & 0xFF

    def all_frames(self, keyframe: bool = False) -> None:
        for rid in ("q", "h", "f"):
            self.frame(rid, keyframe)

    def plis(self) -> list[int]:
        return [
            p.media_ssrc
            for data in self.rtcp
            for p in rtcp.parse_rtcp(data)
            if isinstance(p, rtcp.Pli)
        ]


class FastWire(Wire):
    """A Wire whose packets are read without waiting (the send path is synchronous)."""

    def __init__(self) -> None:
        super().__init__()
        self.inp.setblocking(False)
        # as aiortc's sessions: retransmissions reuse a packet index
        policy = Policy(key=KEY, ssrc_type=Policy.SSRC_ANY_OUTBOUND)
        policy.allow_repeat_tx = True
        self.tx = Session(policy)
        self.sink = hooks.srtp_sink(self.tx)
        assert fastpath.aim_sink(self.sink, self.out.fileno(), "127.0.0.1", self.port)

    def lose_everything(self) -> None:
        """A fresh receiving session: what arrives next is not taken for a replay."""
        self.rx = Session(Policy(key=KEY, ssrc_type=Policy.SSRC_ANY_INBOUND))

    def take(self) -> list[tuple[int, int, int, int, int, bool]]:
        """(seq, ts, ssrc, picture id, tl0picidx, keyframe) of every packet arrived."""
        out = []
        while True:
            try:
                data = bytes(self.rx.unprotect(self.inp.recv(2048)))
            except BlockingIOError:
                return out
            p = parse_rtp(data, 0, 0)
            assert p is not None
            d = vp8.parse_descriptor(p.payload)
            assert d is not None
            keyframe = vp8.keyframe_size(p.payload) is not None
            out.append((p.seq16, p.ts, p.ssrc, d.picture_id, d.tl0picidx, keyframe))


@pytest.fixture
def wire() -> Iterator[FastWire]:
    made = FastWire()
    yield made
    made.close()


def subscribe(pub: Publisher, wire: FastWire, rid: str = "q") -> DownTrack:
    down = DownTrack(pub.layers[rid], 0xABCDEF, 100, ExtensionIds(0, "0", 0, 0), pub._send)
    down.state.sink = wire.sink
    pub.layers[rid].add_down(down)
    return down


def continuous(packets: list[tuple[int, int, int, int, int, bool]]) -> None:
    """Sequence numbers step by one, timestamps never go back, picture IDs and TL0PICIDX
    step by at most one (mod their sizes), one SSRC."""
    for a, b in itertools.pairwise(packets):
        assert b[0] == (a[0] + 1) & 0xFFFF, (a, b)
        assert 0 <= (b[1] - a[1]) & 0xFFFFFFFF < 90000 * 5, (a, b)
        assert (b[3] - a[3]) % (1 << 15) in (0, 1), (a, b)
        assert (b[4] - a[4]) % 256 in (0, 1), (a, b)
        assert b[2] == a[2] == 0xABCDEF


def test_switches_happen_at_keyframes_and_keep_everything_continuous(wire: FastWire) -> None:
    pub = Publisher()
    down = subscribe(pub, wire, "q")
    pub.all_frames()  # no keyframe yet: nothing for the new subscriber
    assert wire.take() == [] and pub.plis() == [SSRCS["q"]]
    pub.all_frames(keyframe=True)
    pub.all_frames()
    first = wire.take()
    assert len(first) == 4 and first[0][5]  # q only, from its keyframe
    # up to f: f's own frames are not forwarded before its keyframe; q keeps flowing
    down.switch_to(pub.layers["f"])
    assert down.target is pub.layers["f"]
    pub.all_frames()
    pub.all_frames()
    waiting = wire.take()
    assert len(waiting) == 4 and down.up is pub.layers["q"]
    pub.layers["f"]._last_pli = -10.0  # (the PLI rate limit is tested elsewhere)
    pub.layers["f"].tick(1e9)
    assert SSRCS["f"] in pub.plis()
    pub.frame("q")
    pub.frame("f", keyframe=True)  # the switch point
    pub.frame("q")  # no longer forwarded
    pub.frame("f")
    pub.frame("f")
    after = wire.take()
    assert down.up is pub.layers["f"] and down.target is None and down.switches == 1
    assert len(after) == 2 + 6 and after[2][5]  # q's frame, then f from its keyframe
    # down to h and back up to q, each at a keyframe
    down.switch_to(pub.layers["h"])
    pub.frame("f")
    pub.frame("h", keyframe=True)
    pub.frame("h")
    down.switch_to(pub.layers["q"])
    pub.frame("q")  # not a keyframe: stays on h
    pub.frame("h")
    pub.frame("q", keyframe=True)
    pub.frame("q")
    later = wire.take()
    everything = first + waiting + after + later
    continuous(everything)
    assert down.switches == 3 and down.up is pub.layers["q"]
    # picture IDs went on from the subscriber's own (q's), not from h's or f's
    assert everything[0][3] == 101 and everything[-1][3] == 101 + len(everything) // 2 - 1


def test_nacks_after_a_switch_resend_the_new_layer_rewritten(wire: FastWire) -> None:
    pub = Publisher()
    down = subscribe(pub, wire, "h")
    pub.frame("h", keyframe=True)
    down.switch_to(pub.layers["q"])
    pub.frame("q", keyframe=True)
    pub.frame("q")
    got = wire.take()
    assert len(got) == 6
    # the subscriber lost the q keyframe's first packet and one before the switch
    wire.lose_everything()
    down.on_nack((got[2][0], got[0][0]))
    again = wire.take()
    assert again == [got[2]]  # the pre-switch one is not in q's numbering: not resent


def test_pause_and_resume_continue_the_numbering(wire: FastWire) -> None:
    pub = Publisher()
    changes: list[tuple[str, bool, bool]] = []
    down = subscribe(pub, wire, "q")
    down.on_layer_change = lambda d, was_paused: changes.append((d.rid, d.paused, was_paused))
    pub.frame("q", keyframe=True)
    down.switch_to(None)
    assert down.paused and changes == [("q", True, False)]
    pub.frame("q")
    pub.frame("q", keyframe=True)
    before = wire.take()
    assert len(before) == 2  # nothing while paused
    down.switch_to(pub.layers["h"])
    pub.frame("h")
    pub.frame("h", keyframe=True)
    pub.frame("h")
    got = wire.take()
    assert len(got) == 4 and got[0][5]
    assert changes[-1] == ("h", False, True)
    continuous(before + got)


def test_vp8_descriptor_rewrite_in_c_matches_python(wire: FastWire) -> None:
    down = wire.down()
    down.vp8_rewrite = 1
    down.pid_offset = 32760
    down.tl0_offset = 250
    for fseq, (pid, tl0) in enumerate(((5, 3), (32767, 255), (0, 0))):
        payload = vp8_payload(pid, tl0, True, False, (0, 0))
        assert fastpath.send(down, 0, fseq, 0, -1, 0, payload, len(payload)) > 0
        got = wire.take()[0]
        before = vp8.parse_descriptor(payload)
        assert before is not None
        expected = vp8.shifted(before, 32760, 250)
        assert (got[3], got[4]) == (expected.picture_id, expected.tl0picidx)
    short = bytes([0x90, 0x80, 0x81])  # a picture ID cut short: left alone, not overrun
    assert fastpath.send(down, 0, 3, 0, -1, 0, short, 3) > 0
    assert bytes(wire.rx.unprotect(wire.inp.recv(2048)))[-3:] == short


def flowing(pub: Publisher, now: float, rates: tuple[int, int, int]) -> None:
    for (rid, layer), rate in zip(pub.layers.items(), rates, strict=True):
        layer.width, layer.height = SIZES[rid]
        layer.last_arrival = now
        layer.rate.bps = float(rate)


def started(pub: Publisher, wire: FastWire, rid: str) -> DownTrack:
    down = subscribe(pub, wire, rid)
    pub.frame(rid, keyframe=True)
    assert not down.waiting
    return down


def test_allocation_follows_preferences_and_the_estimate(wire: FastWire) -> None:
    pub = Publisher()
    now = 100.0
    flowing(pub, now, (150_000, 500_000, 1_200_000))
    down = started(pub, wire, "q")
    allocator = allocation.Allocator()
    f, h, q = pub.layers["f"], pub.layers["h"], pub.layers["q"]
    down.estimate.on_remb(3_000_000, now)
    assert allocator.allocate([(down, False)], now)[0].layer is f
    down.max_width, down.max_height = 600, 300  # covered by h
    assert allocator.allocate([(down, False)], now)[0].layer is h
    down.max_width, down.max_height = 320, 180
    assert allocator.allocate([(down, False)], now)[0].layer is q
    down.visible = False
    choice = allocator.allocate([(down, False)], now)[0]
    assert choice.layer is None and choice.reason == "hidden"
    # a layer the publisher does not send is not given, but still wanted (dynacast)
    down.visible, down.max_width, down.max_height = True, 0, 0
    f.last_arrival = now - 10
    choice = allocator.allocate([(down, False)], now)[0]
    assert choice.layer is h and choice.wanted is f


def test_a_bandwidth_drop_steps_down_after_a_moment_and_pauses_last(wire: FastWire) -> None:
    pub = Publisher()
    now = 100.0
    flowing(pub, now, (150_000, 500_000, 1_200_000))
    down = started(pub, wire, "f")
    f, h = pub.layers["f"], pub.layers["h"]
    allocator = allocation.Allocator()
    down.estimate.on_remb(2_000_000, now)
    assert allocator.allocate([(down, False)], now)[0].layer is f
    down.estimate.on_remb(560_000, now)  # congested: below what f is sent
    assert allocator.allocate([(down, False)], now + 0.25)[0].layer is f  # a dip...
    assert allocator.allocate([(down, False)], now + 0.8)[0].layer is h  # ...that lasted
    down.switch_to(h)
    pub.frame("h", keyframe=True)
    assert down.up is h
    for t in (1.0, 1.5, 2.0):
        down.estimate.on_remb(int(90_000 - t * 10_000), now + t)  # falling on
        assert allocator.allocate([(down, False)], now + t)[0].layer is h
    down.estimate.on_remb(50_000, now + 3.0)
    choice = allocator.allocate([(down, False)], now + 3.5)[0]
    assert choice.layer is None and choice.reason == "bandwidth"


def test_the_speaker_and_the_largest_tile_come_first(wire: FastWire) -> None:
    pub = Publisher()
    now = 100.0
    flowing(pub, now, (150_000, 500_000, 1_200_000))
    tile, large, speaker = (started(pub, wire, "q") for _ in range(3))
    tile.max_width, tile.max_height = 320, 180
    large.max_width, large.max_height = 1280, 720
    speaker.max_width, speaker.max_height = 640, 360
    for down in (tile, large, speaker):
        down.estimate.on_remb(4_000_000, now)
    downs = [(tile, False), (large, False), (speaker, True)]
    got = allocation.Allocator().allocate(downs, now, budget=1_000_000)
    # speaker h (500k) first, then the large tile: f does not fit, h does not either
    # (q for it and the small tile are taken first), so q
    assert [c.layer.rid if c.layer else None for c in got] == ["q", "q", "h"]
    allocator = allocation.Allocator()
    got = allocator.allocate(downs, now, budget=250_000)
    assert [c.layer.rid if c.layer else None for c in got] == ["q", "q", "q"]  # held...
    got = allocator.allocate(downs, now + 2.5, budget=250_000)
    assert [c.layer.rid if c.layer else None for c in got] == [None, None, "q"]  # ...paused


def with_simulcast(offer: str) -> str:
    """An aiortc video offer as Chromium writes one with three rid encodings."""
    lines = offer.replace("\r\n", "\n").strip().split("\n")
    lines = [ln for ln in lines if not ln.startswith("a=ssrc")]
    at = max(i for i, ln in enumerate(lines) if ln.startswith("a=extmap:"))
    lines[at + 1 : at + 1] = [
        f"a=extmap:10 {URI_RTP_STREAM_ID}",
        f"a=extmap:11 {URI_REPAIRED_RTP_STREAM_ID}",
    ]
    lines += ["a=rid:q send", "a=rid:h send", "a=rid:f send", "a=simulcast:send q;h;f"]
    return "\r\n".join(lines) + "\r\n"


async def test_a_simulcast_offer_is_answered_and_layers_are_learned_by_rid(sfu: Sfu) -> None:
    client = ClientPublisher(1, audio=False)
    try:
        pub = await sfu.room("sim").join("teacher").publish(with_simulcast(await client.offer()))
        answer = pub.answer_sdp
        for line in (
            f"a=extmap:10 {URI_RTP_STREAM_ID}",
            f"a=extmap:11 {URI_REPAIRED_RTP_STREAM_ID}",
            "a=rid:q recv",
            "a=rid:f recv",
            "a=simulcast:recv q;h;f",
        ):
            assert line in answer.split("\r\n"), line
        track = pub.tracks[0]
        assert [layer.rid for layer in track.layers] == ["q", "h", "f"]
        assert all(layer.ssrc is None for layer in track.layers)

        def packet(ssrc: int, seq: int, rid: bytes | None) -> bytes:
            pt = track.payload_type
            header = struct.pack("!BBHII", 0x90 if rid else 0x80, pt, seq, 0, ssrc)
            if rid:
                element = bytes([(10 << 4) | (len(rid) - 1)]) + rid
                element += b"\x00" * (-len(element) % 4)
                header += struct.pack("!HH", 0xBEDE, len(element) // 4) + element
            return header + vp8_payload(1, 1, True, False, (0, 0))

        pub.receive_rtp(packet(5, 1, None))  # no rid, SSRC unknown: not routed
        assert pub.unrouted == 1
        pub.receive_rtp(packet(7, 1, b"h"))
        pub.receive_rtp(packet(8, 1, b"q"))
        pub.receive_rtp(packet(7, 2, None))  # the rid is no longer sent: the SSRC is kept
        assert (track.layers[1].ssrc, track.layers[1].packets) == (7, 2)
        assert (track.layers[0].ssrc, track.layers[0].packets) == (8, 1)
        assert track.layers[2].packets == 0 and pub.unrouted == 1
    finally:
        await client.close()


def test_offers_with_broken_simulcast_are_refused_or_plain() -> None:
    offer = "\r\n".join(
        [
            "v=0",
            "o=- 1 1 IN IP4 0.0.0.0",
            "s=-",
            "t=0 0",
            "a=fingerprint:sha-256 00",
            "a=ice-ufrag:x",
            "a=ice-pwd:y",
            "m=video 9 UDP/TLS/RTP/SAVPF 96",
            "a=mid:0",
            "a=sendonly",
            "a=rtpmap:96 VP8/90000",
            "a=rid:q send",
            "a=rid:f send",
            "a=simulcast:send q;f",
        ]
    )
    with pytest.raises(SfuError):  # rids without the rtp-stream-id extension
        negotiation.sanitize_offer(offer)
    # one listed rid (or undeclared ones) is no simulcast
    plain = offer.replace("a=simulcast:send q;f", "a=simulcast:send q;x")
    assert negotiation.sanitize_offer(plain).media[0].rids == []


async def test_preferences_hide_and_show_a_video_aiortc(sfu: Sfu, event_log: EventLog) -> None:
    """The preference API on a single-layer publication, aiortc peers that decode:
    hidden stops the video (TrackPaused "hidden"), audio goes on; shown resumes it at a
    keyframe (TrackResumed); bad input is refused."""
    room = sfu.room("prefs")
    pub = ClientPublisher(2)
    sub = Subscriber()
    try:
        stream_id = await pub.publish(room.join("teacher"))
        student = room.join("student")
        sub_id = await sub.subscribe(student, stream_id)
        await eventually(lambda: len(sub.video().frames) >= 10)
        up = room.publication(stream_id)
        assert up is not None
        track_id = next(t.id for t in up.tracks if t.kind == "video")
        with pytest.raises(SfuError) as bad:
            student.set_preferences(sub_id, track_id, max_width=-1)
        assert bad.value.code == "bad-request"
        with pytest.raises(SfuError) as missing:
            student.set_preferences(sub_id, "no-such-track")
        assert missing.value.code == "not-found"
        student.set_preferences(sub_id, track_id, visible=False)
        paused = await event_log.wait_for(lambda e: isinstance(e, events.TrackPaused))
        assert (paused.peer_id, paused.track_id, paused.reason) == ("student", track_id, "hidden")
        audio = sub.received["audio"].audio_frames
        frames = len(sub.video().frames)
        await eventually(lambda: sub.received["audio"].audio_frames >= audio + 25)
        assert len(sub.video().frames) <= frames + 2  # (frames already in the decoder)
        student.set_preferences(sub_id, track_id, visible=True)
        await event_log.wait_for(lambda e: isinstance(e, events.TrackResumed))
        await eventually(lambda: len(sub.video().frames) >= frames + 15)
    finally:
        await asyncio.gather(pub.close(), sub.close())


def test_a_tap_reads_the_best_layer_that_flows_continuously(wire: FastWire) -> None:
    """The recorder's tap starts on the primary (q here), moves up at h's and f's keyframes,
    down to h at h's keyframe when f stops, and sees one numbering and timeline."""
    pub = Publisher()
    got: list[tuple[str, int, int, bool]] = []  # (layer, fseq, uts, keyframe)
    assert pub.primary is not None
    tap = pub.primary.add_tap(lambda up, p: got.append((up.rid, p.fseq, p.uts, p.keyframe)))
    pub.all_frames(keyframe=True)  # sizes known: q < h < f, in the publisher's order
    # up at each higher layer's keyframe
    assert [rid for rid, *_ in got] == ["q", "q", "h", "h", "f", "f"]
    pub.all_frames()
    assert tap.track is pub.layers["f"] and pub.layers["q"].taps == []
    # the lowest layer stays needed for the tap (dynacast), whatever reads it now
    assert pub.primary.needed_layers() == ("q",)
    # f stops (dynacast, or the publisher's bandwidth): at h's next keyframe, down to h
    now = time.monotonic()
    pub.layers["f"].last_arrival = now - 5.0
    pub.layers["h"]._last_pli = -10.0
    pub.layers["f"].tick(now)  # asks h for the keyframe that lets the tap move
    assert SSRCS["h"] in pub.plis()
    pub.frame("q")
    pub.frame("h", keyframe=True)
    pub.frame("h")
    assert tap.track is pub.layers["h"]
    assert [rid for rid, *_ in got][-6:] == ["f", "f", "h", "h", "h", "h"]
    fseqs = [u for _, u, _, _ in got]
    assert fseqs == list(range(fseqs[0], fseqs[0] + len(fseqs)))  # no gap, no repeat
    stamps = sorted({ts for _, _, ts, _ in got})
    assert [b - a for a, b in itertools.pairwise(stamps)] == [3000] * (len(stamps) - 1)
    assert [k for _, _, _, k in got].count(True) == 4  # one at each move


def test_an_h264_tap_stays_on_its_layer() -> None:
    layers = [
        UpTrack("t", "video", "video/h264", 90000, 102, "1", 10 + i, lambda d: len(d), 9, rid=r)
        for i, r in enumerate("qhf")
    ]
    for layer in layers[1:]:
        layers[0].add_layer(layer)
    tap = layers[0].add_tap(lambda up, p: None)
    packet = UpPacket(1, 0, 1, b"\x65\x88", -1, True)
    layers[2]._take_taps(packet, time.monotonic())
    assert tap.track is layers[0]
