"""aiortc negotiates every video section under a stand-in codec; the text the client sees
names the real one.

aiortc 1.16 knows VP8 and two H.264 profiles only, and matches codecs by its own encoder
list; the SFU never lets it encode or decode (see :mod:`vtp.sfu.aiortc_hooks`), so for
aiortc the chosen video payload type is written as ``VP8/90000`` (no fmtp) and aiortc
negotiates it like any VP8 section: payload type, feedback, header extensions, SSRCs.
Around it, these functions read the real codec from the client's SDP, write it back into
the server's SDP for the client, and check a subscriber's answer accepts it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from vtp.sfu.codecs import Codec, describe, parse_fmtp, receivable
from vtp.sfu.errors import SfuError

if TYPE_CHECKING:
    from vtp.sfu.negotiation import MediaSection, Sdp

STAND_IN = {"audio": "audio/opus", "video": "video/vp8"}  # what aiortc is told, per kind
STAND_IN_RTPMAP = "VP8/90000"

_RTPMAP = re.compile(r"^a=rtpmap:(\d+) ([A-Za-z0-9_.-]+)/(\d+)(?:/(\d+))?$")
_FMTP = re.compile(r"^a=fmtp:(\d+) (.*)$")


def offered(m: MediaSection) -> list[tuple[int, Codec]]:
    """A media section's (payload type, codec) list, in its order."""
    fmtp: dict[int, str] = {}
    for line in m.lines:
        if match := _FMTP.match(line):
            fmtp[int(match.group(1))] = match.group(2)
    out: list[tuple[int, Codec]] = []
    for line in m.lines:
        if match := _RTPMAP.match(line):
            pt = int(match.group(1))
            channels = int(match.group(4)) if match.group(4) else None
            params = parse_fmtp(fmtp.get(pt, ""))
            out.append((pt, Codec(m.kind, match.group(2), int(match.group(3)), channels, params)))
    return out


def stand_in(m: MediaSection, pt: int) -> None:
    """Show aiortc payload type ``pt`` of a video section as VP8 (no fmtp)."""
    if m.kind != "video":
        return
    lines: list[str] = []
    for line in m.lines:
        if line.startswith(f"a=rtpmap:{pt} "):
            line = f"a=rtpmap:{pt} {STAND_IN_RTPMAP}"
        elif line.startswith(f"a=fmtp:{pt} "):
            continue
        lines.append(line)
    m.lines = lines


def write_codec(sdp: Sdp, mid: str, codec: Codec, parameters: tuple[tuple[str, str], ...]) -> None:
    """In an SDP aiortc wrote, name ``codec`` (with ``parameters`` as its fmtp) where
    aiortc wrote the stand-in, in the video section ``mid``."""
    for m in sdp.media:
        if m.kind != "video" or m.mid != mid:
            continue
        lines: list[str] = []
        for line in m.lines:
            match = _RTPMAP.match(line)
            if match and f"{match.group(2)}/{match.group(3)}".upper() == STAND_IN_RTPMAP:
                pt = match.group(1)
                lines.append(f"a=rtpmap:{pt} {codec.rtpmap()}")
                if parameters:
                    fmtp = ";".join(f"{k}={v}" if v else k for k, v in parameters)
                    lines.append(f"a=fmtp:{pt} {fmtp}")
                continue
            lines.append(line)
        m.lines = lines


def accept_answer(sdp: Sdp, streams: dict[str, Codec]) -> None:
    """A subscriber's answer to the server's offer, shown to aiortc: the real codec of
    each video section ``mid`` in ``streams`` checked and replaced by the stand-in.
    SfuError('bad-sdp') if the subscriber cannot decode a stream's codec."""
    for m in sdp.media:
        stream = streams.get(m.mid)
        if m.kind != "video" or stream is None:
            continue
        pt = receivable(offered(m), stream)
        if pt is None or m.lines[0].split()[1] == "0":
            raise SfuError(
                "bad-sdp",
                f"the subscriber does not decode this stream's video codec, {describe(stream)}",
            )
        stand_in(m, pt)
