"""VP8 temporal-layer dropping per subscriber (vtp.sfu.temporal): what a capped down
track receives (real SRTP and UDP through the compiled send path), its numbering
(sequence numbers and picture IDs continuous, TL0PICIDX as sent), where levels change,
NACKs, and who picks the level (allocation, the ``fps`` preference)."""

from __future__ import annotations

import itertools
import struct
from collections.abc import Iterator

import pytest
from pylibsrtp import Policy, Session

from tests.sfu.test_simulcast import SIZES, FastWire
from tests.sfu.test_simulcast import Publisher as SimulcastPublisher
from vtp.sfu import allocation, fastpath, temporal, vp8
from vtp.sfu.downtrack import DownTrack, ExtensionIds
from vtp.sfu.rtp import parse_rtp
from vtp.sfu.uptrack import UpTrack

# libwebrtc's 3-layer pattern (DefaultTemporalLayers): (TID, layer sync)
PATTERN = temporal.L1T3_PATTERN

Received = tuple[int, int, int, int, int, bool, bytes]  # seq, ts, pid, tl0, tid, key, data


class L1T3:
    """One VP8 encoding with three temporal layers, fed picture by picture."""

    def __init__(self, pid: int = 32700, seq: int = 65400, ssrc: int = 555, rid: str = "") -> None:
        self.rtcp: list[bytes] = []
        self.ssrc = ssrc
        self.up = UpTrack("pub-1", "video", "video/vp8", 90000, 96, "1", ssrc, self._send, 9, rid)
        self.seq = seq
        self.ts = 1000
        self.pid = pid  # wraps 15 bits soon
        self.tl0 = 250
        self.n = 0  # position in PATTERN
        self.held: list[bytes] = []  # packets kept back (reordering)

    def _send(self, data: bytes) -> int:
        self.rtcp.append(data)
        return len(data)

    def packets(self, keyframe: bool = False, count: int = 2) -> list[tuple[bytes, int]]:
        """The next picture's packets (RTP bytes, TID), not received yet."""
        if keyframe:
            self.n = 0
        tid, sync = PATTERN[self.n % len(PATTERN)]
        if tid == 0:
            self.tl0 = (self.tl0 + 1) & 0xFF
        out = []
        for i in range(count):
            descriptor = bytes(
                [
                    0x90 if i == 0 else 0x80,
                    0xE0,
                    0x80 | (self.pid >> 8),
                    self.pid & 0xFF,
                    self.tl0,
                    (tid << 6) | (0x20 if sync else 0),
                ]
            )
            if i == 0 and keyframe:
                w, h = SIZES["h"]
                body = bytes([0x00, 0x00, 0x00, 0x9D, 0x01, 0x2A]) + struct.pack("<HH", w, h)
            else:
                body = bytes([0x01, 0x00, 0x00])
            b1 = (0x80 if i == count - 1 else 0) | 96
            header = struct.pack("!BBHII", 0x80, b1, self.seq, self.ts, self.ssrc)
            out.append((header + descriptor + body + bytes([self.n & 0xFF, i]) * 10, tid))
            self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + 3000) & 0xFFFFFFFF
        self.pid = (self.pid + 1) & 0x7FFF
        self.n += 1
        return out

    def receive(self, data: bytes) -> None:
        p = parse_rtp(data, 0, 0)
        assert p is not None
        self.up.receive(p)

    def picture(self, keyframe: bool = False) -> list[int]:
        """Send one picture; its TIDs."""
        sent = self.packets(keyframe)
        for data, _ in sent:
            self.receive(data)
        return [tid for _, tid in sent]

    def pictures(self, n: int) -> None:
        for _ in range(n):
            self.picture()


class Wire(FastWire):
    def take(self) -> list[Received]:  # type: ignore[override]
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
            key = vp8.keyframe_size(p.payload) is not None
            out.append((p.seq16, p.ts, d.picture_id, d.tl0picidx, d.tid, key, p.payload[d.size :]))


@pytest.fixture
def wires() -> Iterator[list[Wire]]:
    made = [Wire() for _ in range(3)]
    yield made
    for wire in made:
        wire.close()


def subscribe(pub: L1T3, wire: Wire, ssrc: int = 0xABCDEF) -> DownTrack:
    down = DownTrack(pub.up, ssrc, 100, ExtensionIds(0, "0", 0, 0), pub._send)
    down.state.sink = wire.sink
    pub.up.add_down(down)
    return down


def continuous(got: list[Received]) -> None:
    """Sequence numbers step by one, picture IDs by one per picture (never a hole),
    TL0PICIDX by at most one; a new picture starts where the timestamp changes."""
    for a, b in itertools.pairwise(got):
        assert b[0] == (a[0] + 1) & 0xFFFF, (a[:5], b[:5])
        step = 1 if b[1] != a[1] else 0
        assert (b[2] - a[2]) % (1 << 15) == step, (a[:5], b[:5])
        assert (b[3] - a[3]) % 256 in (0, 1), (a[:5], b[:5])


def test_capped_downs_get_only_their_layers_numbered_without_holes(wires: list[Wire]) -> None:
    pub = L1T3()
    full, fifteen, low = (subscribe(pub, w, 0x1000 + i) for i, w in enumerate(wires))
    fifteen.set_max_temporal(1)
    low.set_max_temporal(0)
    pub.picture(keyframe=True)  # all start here (uncapped for the keyframe picture)
    pub.pictures(24)
    got = [w.take() for w in wires]
    assert len(got[0]) == 25 * 2
    # capped: from the picture after the keyframe on, only TID <= cap
    assert {r[4] for r in got[1][2:]} == {0, 1} and {r[4] for r in got[2][2:]} == {0}
    assert len(got[1]) == 2 + 12 * 2 and len(got[2]) == 2 + 6 * 2
    for stream in got:
        continuous(stream)

    # TL0PICIDX is the publisher's: the same for the same TL0 picture in every stream
    def rel(stream: list[Received]) -> dict[int, int]:
        return {(r[1] - stream[0][1]) & 0xFFFFFFFF: r[3] for r in stream}

    full_tl0 = rel(got[0])
    assert all(full_tl0[ts] == tl0 for ts, tl0 in rel(got[2]).items())
    # payloads are the publisher's, picture for picture
    data_full = {(r[1], r[0] - got[0][0][0]): r[6] for r in got[0]}
    assert all(r[6] in data_full.values() for r in got[2])
    assert fifteen.temporal == 1 and low.temporal == 0 and full.temporal == temporal.ALL
    assert (full.packets, fifteen.packets, low.packets) == (50, 26, 14)


def test_down_at_any_picture_up_only_at_a_layer_sync_picture(wires: list[Wire]) -> None:
    pub = L1T3()
    down = subscribe(pub, wires[0])
    pub.picture(keyframe=True)
    pub.pictures(3)  # 2, 1, 2
    assert down.temporal == temporal.ALL
    down.set_max_temporal(0)
    assert pub.picture() == [0, 0] and down.temporal == 0  # moved at this picture
    pub.pictures(3)  # 2(Y) 1 2: dropped
    down.set_max_temporal(temporal.ALL)
    # PATTERN from position 8: TL0, TL2 sync, TL1 sync, TL2, TL0, TL2 sync, TL1, TL2
    pub.picture()  # TL0: still level 0
    assert down.temporal == 0
    pub.picture()  # TL2 with Y: not the next layer up (TL1 is)
    assert down.temporal == 0
    pub.picture()  # TL1 with Y: up to 1
    assert down.temporal == 1
    pub.picture()  # TL2 without Y: not yet
    pub.picture()  # TL0
    assert down.temporal == 1
    pub.picture()  # TL2 with Y: up to 2 (= every layer the publisher sends)
    assert down.temporal == temporal.ALL
    pub.pictures(2)
    got = wires[0].take()
    continuous(got)
    tids = [r[4] for r in got[::2]]
    assert tids == [0, 2, 1, 2, 0, 0, 1, 0, 2, 1, 2]
    assert down.temporal_switches == 3 and pub.up.fanout.changing == ()


def test_a_keyframe_is_a_switch_point_to_any_level(wires: list[Wire]) -> None:
    pub = L1T3()
    down = subscribe(pub, wires[0])
    down.set_max_temporal(0)
    pub.picture(keyframe=True)
    pub.pictures(4)
    assert down.temporal == 0
    down.set_max_temporal(temporal.ALL)
    assert pub.picture() == [2, 2] and down.temporal == 0  # TL2 with Y: not TL1's
    pub.picture(keyframe=True)
    assert down.temporal == temporal.ALL
    continuous(wires[0].take())


def test_a_publisher_without_layer_sync_is_asked_for_a_keyframe() -> None:
    pub = L1T3()
    down = DownTrack(pub.up, 1, 100, ExtensionIds(0, "0", 0, 0), pub._send)
    pub.up.add_down(down)
    down.set_max_temporal(0)
    pub.picture(keyframe=True)
    pub.pictures(2)
    assert down.temporal == 0
    down.set_max_temporal(2)
    pub.up._last_pli = -100.0
    plis = pub.up.plis_sent
    pub.up.tick(down.temporal_since + 0.5)
    assert pub.up.plis_sent == plis
    pub.up.tick(down.temporal_since + temporal.UP_SWITCH_KEYFRAME_S + 0.1)
    assert pub.up.plis_sent > plis


def test_nacks_map_to_the_right_packets_across_a_level_change(wires: list[Wire]) -> None:
    pub = L1T3()
    down = subscribe(pub, wires[0])
    pub.picture(keyframe=True)
    pub.pictures(3)
    down.set_max_temporal(1)
    pub.pictures(6)
    down.set_max_temporal(0)
    pub.pictures(9)
    got = wires[0].take()
    continuous(got)
    assert down.temporal == 0 and len(down._epochs) == 2
    # the subscriber lost a few packets: before the first change, between, after
    wires[0].lose_everything()
    picks = [got[3], got[9], got[12], got[-3], got[-1]]
    down.on_nack(tuple(r[0] for r in picks))
    again = wires[0].take()
    assert again == picks
    assert down.retransmitted == 5


def test_late_packets_keep_the_numbering(wires: list[Wire]) -> None:
    pub = L1T3()
    subscribe(pub, wires[0], 1)
    low = subscribe(pub, wires[1], 2)
    low.set_max_temporal(0)
    pub.picture(keyframe=True)
    pub.pictures(3)
    # a TL2 picture's first packet and a TL0 picture's last packet come late
    tl2 = pub.packets()  # position 4: TL0
    assert tl2[0][1] == 0
    pub.receive(tl2[0][0])
    nxt = pub.packets()  # TL2 (Y)
    assert nxt[0][1] == 2
    pub.receive(nxt[1][0])
    pub.receive(tl2[1][0])  # late TL0 packet: the low down still gets it
    pub.receive(nxt[0][0])  # late TL2 packet: dropped for low, no hole left
    pub.pictures(4)
    got_low = wires[1].take()
    tids = [r[4] for r in got_low]
    assert tids.count(2) == 0 and tids.count(1) == 0
    first = got_low[0][0]
    got_low.sort(key=lambda r: (r[0] - first) & 0xFFFF)
    continuous(got_low)
    assert len(wires[0].take()) == 2 * 10


def test_a_capped_down_switching_simulcast_layers_stays_continuous(wires: list[Wire]) -> None:
    low = L1T3(pid=500, seq=100, ssrc=111, rid="q")
    high = L1T3(pid=9000, seq=40000, ssrc=333, rid="f")
    high.ts = 777_000
    low.up.add_layer(high.up)
    down = subscribe(low, wires[0])
    down.set_max_temporal(1)
    low.picture(keyframe=True)
    high.picture(keyframe=True)
    for _ in range(5):
        low.picture()
        high.picture()
    assert down.temporal == 1
    down.switch_to(high.up)
    low.picture()
    high.picture(keyframe=True)  # the switch, capped from this keyframe on
    assert down.up is high.up and down.temporal == 1
    for _ in range(6):
        low.picture()
        high.picture()
    assert down.temporal == 1
    down.switch_to(low.up)
    high.picture()
    low.picture(keyframe=True)
    low.pictures(8)
    got = wires[0].take()
    continuous(got)
    assert down.up is low.up and down.temporal == 1 and down.switches == 2
    # after each keyframe picture only TL0/TL1 pictures
    assert {r[4] for r in got[-16:]} == {0, 1}
    # NACKs after the switches still find their packets
    wires[0].lose_everything()
    down.on_nack((got[-1][0], got[-7][0]))
    assert wires[0].take() == [got[-1], got[-7]]


def test_a_down_track_leaving_and_rejoining_continues(wires: list[Wire]) -> None:
    pub = L1T3()
    down = subscribe(pub, wires[0])
    down.set_max_temporal(1)
    pub.picture(keyframe=True)
    pub.pictures(5)
    down.restart()  # e.g. the source changed: waits for a keyframe, numbering continues
    pub.pictures(2)
    pub.picture(keyframe=True)
    pub.pictures(6)
    got = wires[0].take()
    continuous(got)
    assert down.temporal == 1


def test_c_rewrite_subtracts_skipped_pictures_modulo_15_bits(wires: list[Wire]) -> None:
    down = wires[0].down()
    for fseq, (pid, skip) in enumerate(((5, 7), (32767, 1), (3, 65535))):
        payload = bytes([0x90, 0xE0, 0x80 | (pid >> 8), pid & 0xFF, 9, 0x40, 1, 2, 3])
        assert fastpath.send_skip(down, 0, 100 + fseq, 40, 0, -1, 0, payload, 9, skip) > 0
        got = wires[0].take()[0]
        assert got[0] == 60 + fseq and got[3] == 9
        assert got[2] == (pid - skip) % (1 << 15)


def test_level_numbering_and_its_inverse() -> None:
    level = temporal.Level(0)
    dropped = {3, 4, 7, 10, 11, 12, 20}
    kept = [u for u in range(1, 25) if u not in dropped]
    for u in range(1, 25):
        if u in dropped:
            level.drop(u, u)
        else:
            level.highest_kept = u
    for u in kept:
        g = u - level.skip(u)
        assert level.fseq_of(g) == u
    numbers = [u - level.skip(u) for u in kept]
    assert numbers == list(range(numbers[0], numbers[0] + len(kept)))
    # a late packet below what was kept cannot be taken out any more
    level.drop(5, 5)
    assert 5 not in level.dropped


def test_hostile_numbering_keeps_the_level_lists_bounded() -> None:
    level = temporal.Level(0)
    for i in range(20_000):  # dropped packets whose timestamps run backwards
        level.drop(10 * i, 10_000_000 - i)
    assert len(level.pictures) <= 2 * temporal.PICTURE_WINDOW
    assert len(level.dropped) <= 2 * temporal.WINDOW + 1
    for i in range(20_000):  # and sequence numbers too (late, each below the last)
        level.drop(10 * 20_000 - 5 - i, 5)
    assert len(level.dropped) <= 2 * temporal.WINDOW + 1
    # numbering of what comes next is still consistent with what was counted
    assert level.skip(10**9) == level.base + len(level.dropped)


def test_fps_preferences_pick_the_lowest_covering_level() -> None:
    assert temporal.level_for_fps(0, ()) == temporal.ALL
    assert temporal.level_for_fps(7, ()) == 0
    assert temporal.level_for_fps(15, ()) == 1
    assert temporal.level_for_fps(20, ()) == 2
    assert temporal.level_for_fps(16, (7.0, 14.0, 28.0)) == 1
    assert temporal.level_for_fps(15, (7.4, 14.6, 29.5)) == 1
    assert temporal.level_for_fps(60, (7.5, 15.0, 30.0)) == temporal.ALL


def test_the_up_track_measures_each_levels_share_and_frame_rate() -> None:
    pub = L1T3()
    pub.picture(keyframe=True)
    pub.up.tick(10.0)
    pub.pictures(31)
    pub.up.tick(11.0)
    assert pub.up.level_fps == ()  # (not yet: counted over MEASURE_S)
    pub.up.tick(10.0 + temporal.MEASURE_S)
    assert pub.up.level_fps == (4.0, 8.0, 16.0)
    assert pub.up.level_share[0] == pytest.approx(0.25, abs=0.01)


# --- who picks the level ---------------------------------------------------------------


def temporal_simulcast(wire: FastWire, now: float) -> tuple[SimulcastPublisher, DownTrack]:
    pub = SimulcastPublisher()
    for rid, layer in pub.layers.items():
        layer.width, layer.height = SIZES[rid]
        layer.last_arrival = now
        layer.rate.bps = float({"q": 150_000, "h": 500_000, "f": 1_200_000}[rid])
        layer.max_tid = 2  # (as the first TID packet sets it)
        layer.level_share = (0.4, 0.6, 1.0)
        layer.level_fps = (7.5, 15.0, 30.0)
    down = DownTrack(pub.layers["f"], 0xABCDEF, 100, ExtensionIds(0, "0", 0, 0), pub._send)
    down.state.sink = wire.sink
    pub.layers["f"].add_down(down)
    pub.frame("f", keyframe=True)
    return pub, down


def test_allocation_drops_the_top_temporal_layer_before_a_spatial_layer() -> None:
    wire = FastWire()
    try:
        now = 100.0
        pub, down = temporal_simulcast(wire, now)
        allocator = allocation.Allocator()
        f, h = pub.layers["f"], pub.layers["h"]
        down.estimate.on_remb(2_000_000, now)
        choice = allocator.allocate([(down, False)], now)[0]
        assert (choice.layer, choice.temporal) == (f, temporal.ALL)
        # 900 kbps: f at 30 fps (1.2M) no longer fits, f at 15 fps (720k) does
        down.estimate.on_remb(900_000, now)
        choice = allocator.allocate([(down, False)], now + 0.1)[0]
        assert (choice.layer, choice.temporal) == (f, 1)
        down.set_max_temporal(choice.temporal)
        # 550 kbps: f at 15 fps does not fit either: h at its full rate (after a moment)
        down.estimate.on_remb(550_000, now + 0.2)
        assert allocator.allocate([(down, False)], now + 0.3)[0].layer is f
        for layer in pub.layers.values():
            layer.last_arrival = now + 1.0
        choice = allocator.allocate([(down, False)], now + 1.0)[0]
        assert (choice.layer, choice.temporal) == (h, temporal.ALL)
    finally:
        wire.close()


def test_an_fps_preference_caps_the_level_and_lowers_the_cost() -> None:
    wire = FastWire()
    try:
        now = 100.0
        pub, down = temporal_simulcast(wire, now)
        down.estimate.on_remb(2_000_000, now)
        down.max_fps = 15
        choice = allocation.Allocator().allocate([(down, False)], now)[0]
        assert (choice.layer, choice.temporal) == (pub.layers["f"], 1)
        down.max_fps = 30
        choice = allocation.Allocator().allocate([(down, False)], now)[0]
        assert choice.temporal == temporal.ALL
    finally:
        wire.close()


def test_a_single_encoding_follows_the_fps_preference(wires: list[Wire]) -> None:
    pub = L1T3()
    down = subscribe(pub, wires[0])
    pub.picture(keyframe=True)
    pub.pictures(31)
    down.max_fps = 8
    choice = allocation.Allocator().allocate([(down, False)], 5.0)[0]
    assert choice.layer is pub.up and choice.temporal == 0


_ = Session, Policy  # (FastWire's sessions)
