"""Simulcast in the SFU: layer switches seen by a subscriber (real SRTP and UDP through
the compiled send path), the rid negotiation and SSRC learning of a publication, and
the layer allocation."""

from __future__ import annotations

import itertools
import struct
from collections.abc import Iterator

import pytest
from pylibsrtp import Policy, Session

from tests.sfu.test_fastpath import KEY, Wire
from vtp.sfu import aiortc_hooks as hooks
from vtp.sfu import fastpath, rtcp, vp8
from vtp.sfu.downtrack import DownTrack, ExtensionIds
from vtp.sfu.rtp import parse_rtp
from vtp.sfu.uptrack import UpTrack

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
            out.append((p.seq, p.ts, p.ssrc, d.picture_id, d.tl0picidx, keyframe))


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
    for useq, (pid, tl0) in enumerate(((5, 3), (32767, 255), (0, 0))):
        payload = vp8_payload(pid, tl0, True, False, (0, 0))
        assert fastpath.send(down, 0, useq, 0, -1, 0, payload, len(payload)) > 0
        got = wire.take()[0]
        before = vp8.parse_descriptor(payload)
        assert before is not None
        expected = vp8.shifted(before, 32760, 250)
        assert (got[3], got[4]) == (expected.picture_id, expected.tl0picidx)
    short = bytes([0x90, 0x80, 0x81])  # a picture ID cut short: left alone, not overrun
    assert fastpath.send(down, 0, 3, 0, -1, 0, short, 3) > 0
    assert bytes(wire.rx.unprotect(wire.inp.recv(2048)))[-3:] == short
