"""Temporal-layer dropping: what it costs per forwarded packet, against uncapped fan-out.

    python bench/temporal.py --subscribers 100 --pictures 900

One VP8 up track with L1T3 temporal layers (libwebrtc's pattern, ~1,100-byte packets,
TL0 pictures the largest) fanned out in this process to N down tracks, each with its own
SRTP session, sending over UDP to a loopback socket no one reads (the kernel drops;
``sendto`` and the loopback's work are still paid, as in ``bench/forward.py``). Packets
are parsed beforehand: what is measured is :meth:`UpTrack.receive` (validation,
numbering, cache, the fan-out per level) - process CPU per forwarded packet, for:

* ``uncapped``: every down gets every layer (one ``vtp_fanout`` call per packet);
* ``mixed``: a third each at TL0, TL0+1 and all (one ``vtp_fanout_skip`` call per level);
* ``15 fps``: every down at TL0+1 (as small tiles asking 15 fps are).

Prints µs per forwarded packet and the ratio to ``uncapped`` in the same run.
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pylibsrtp import Policy, Session

from vtp.sfu import aiortc_hooks, fastpath, temporal
from vtp.sfu.downtrack import DownTrack, ExtensionIds
from vtp.sfu.rtp import ParsedRtp, parse_rtp
from vtp.sfu.uptrack import UpTrack

PATTERN = temporal.L1T3_PATTERN
PACKETS_PER_TID = (3, 1, 1)  # TL0 pictures are the largest (libwebrtc gives them 40 %)
MODES = {
    "uncapped": (temporal.ALL,),
    "mixed": (0, 1, temporal.ALL),
    "15 fps": (1,),
}


def pictures(count: int) -> list[ParsedRtp]:
    """``count`` pictures of L1T3 VP8, the first a keyframe, as parsed RTP packets."""
    out = []
    seq, ts, pid, tl0 = 1000, 90000, 100, 0
    body = os.urandom(1100)
    for n in range(count):
        tid, sync = PATTERN[n % len(PATTERN)]
        if tid == 0:
            tl0 = (tl0 + 1) & 0xFF
        packets = 4 if n == 0 else PACKETS_PER_TID[tid]
        for i in range(packets):
            descriptor = bytes(
                [0x90 if i == 0 else 0x80, 0xE0, 0x80 | (pid >> 8), pid & 0xFF, tl0]
            ) + bytes([(tid << 6) | (0x20 if sync else 0)])
            if n == 0 and i == 0:
                frame = bytes([0x00, 0x00, 0x00, 0x9D, 0x01, 0x2A]) + struct.pack("<HH", 640, 360)
            else:
                frame = b"\x01\x00\x00"
            b1 = (0x80 if i == packets - 1 else 0) | 96
            header = struct.pack("!BBHII", 0x80, b1, seq & 0xFFFF, ts & 0xFFFFFFFF, 4242)
            parsed = parse_rtp(header + descriptor + frame + body, 0, 0)
            assert parsed is not None
            out.append(parsed)
            seq += 1
        ts += 3000
        pid = (pid + 1) & 0x7FFF
    return out


def run(n: int, levels: tuple[int, ...], packets: list[ParsedRtp], port: int) -> tuple[float, int]:
    """CPU µs per forwarded packet, and packets forwarded."""
    up = UpTrack("bench", "video", "video/vp8", 90000, 96, "1", 4242, lambda data: len(data), 1)
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    keep = []
    downs = []
    for i in range(n):
        session = Session(Policy(key=os.urandom(30), ssrc_type=Policy.SSRC_ANY_OUTBOUND))
        sink = aiortc_hooks.srtp_sink(session)
        fastpath.aim_sink(sink, out.fileno(), "127.0.0.1", port)
        keep.append((session, sink))
        down = DownTrack(up, 0x1000 + i, 96, ExtensionIds(0, "", 0, 0), lambda data: len(data))
        down.state.sink = sink
        up.add_down(down)
        down.set_max_temporal(levels[i % len(levels)])
        downs.append(down)
    warm = 40  # the keyframe picture and a few more: every down started and at its level
    for p in packets[:warm]:
        up.receive(p)
    assert all(d.temporal == levels[i % len(levels)] for i, d in enumerate(downs))
    before = sum(d.packets for d in downs)
    cpu = time.process_time()
    for p in packets[warm:]:
        up.receive(p)
    cpu = time.process_time() - cpu
    forwarded = sum(d.packets for d in downs) - before
    out.close()
    return 1e6 * cpu / max(1, forwarded), forwarded


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--pictures", type=int, default=900, help="30 fps: 900 = 30 s")
    args = parser.parse_args()
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))  # never read: the kernel drops what overflows
    port = sink.getsockname()[1]
    packets = pictures(args.pictures)
    print(f"{len(packets)} packets (L1T3 VP8), {args.subscribers} subscribers")
    base = 0.0
    for mode, levels in MODES.items():
        us, forwarded = run(args.subscribers, levels, packets, port)
        base = base or us
        print(f"  {mode:9s} {us:6.2f} µs per forwarded packet ({forwarded} forwarded), "
              f"x{us / base:.2f} of uncapped")  # fmt: skip


if __name__ == "__main__":
    main()
