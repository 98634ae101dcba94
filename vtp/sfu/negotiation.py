"""SDP handling around aiortc: what the SFU accepts and what it adds.

aiortc's own SDP code does the offer/answer; these functions work on the text before and
after it: offers are checked and reduced to what the SFU forwards (one codec per section,
chosen by :mod:`vtp.sfu.codecs`, shown to aiortc as :mod:`vtp.sfu.codecsdp`'s stand-in;
the three header extensions of :mod:`vtp.sfu.rtp`), and Opus in-band FEC is written into
both legs (aiortc drops the Opus fmtp line)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from vtp.sfu import codecs, codecsdp
from vtp.sfu.codecs import Codec
from vtp.sfu.errors import SfuError
from vtp.sfu.rtp import PUBLISH_EXTENSIONS, SUPPORTED_EXTENSIONS, URI_TRANSPORT_CC

MAX_SDP_BYTES = 64 * 1024
KINDS = ("audio", "video")
OPUS_FMTP = "minptime=10;useinbandfec=1"

_RTPMAP = re.compile(r"^a=rtpmap:(\d+) ([A-Za-z0-9_.-]+)/(\d+)(?:/(\d+))?$")
_PT_ATTR = re.compile(r"^a=(?:rtpmap|fmtp|rtcp-fb):(\d+|\*)[ ]")
_EXTMAP = re.compile(r"^a=extmap:(\d+)(?:/\w+)? (\S+)")
_SSRC = re.compile(r"^a=ssrc:(\d+) ")


@dataclass
class MediaSection:
    kind: str
    lines: list[str]
    mid: str = ""
    ssrcs: list[int] = field(default_factory=list)
    codec: Codec | None = None  # the one codec kept (sanitised offers)


@dataclass
class Sdp:
    session: list[str]
    media: list[MediaSection]

    def text(self) -> str:
        lines = list(self.session)
        for m in self.media:
            lines.extend(m.lines)
        return "\r\n".join(lines) + "\r\n"


def parse(text: str) -> Sdp:
    """Split an SDP into session and media sections; SfuError('bad-sdp') if it is not one."""
    if not isinstance(text, str) or len(text) > MAX_SDP_BYTES:
        raise SfuError("bad-sdp", "SDP missing or too large")
    lines = [line.strip() for line in text.replace("\r\n", "\n").split("\n") if line.strip()]
    if not lines or lines[0] != "v=0":
        raise SfuError("bad-sdp", "SDP must start with v=0")
    for line in lines:
        if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
            raise SfuError("bad-sdp", f"malformed SDP line: {line[:40]!r}")
    session: list[str] = []
    media: list[MediaSection] = []
    for line in lines:
        if line.startswith("m="):
            parts = line[2:].split()
            if len(parts) < 4:
                raise SfuError("bad-sdp", "malformed m= line")
            media.append(MediaSection(kind=parts[0], lines=[line]))
        elif media:
            media[-1].lines.append(line)
            if line.startswith("a=mid:"):
                media[-1].mid = line[6:].strip()
            elif ssrc_match := _SSRC.match(line):
                ssrc = int(ssrc_match.group(1))
                if ssrc < 2**32 and ssrc not in media[-1].ssrcs:
                    media[-1].ssrcs.append(ssrc)
        else:
            session.append(line)
    if not media:
        raise SfuError("bad-sdp", "SDP has no media section")
    for m in media:
        if not m.mid:
            raise SfuError("bad-sdp", "every media section needs a=mid")
    for line in lines:
        if line.startswith("a=setup:") and line[8:] not in ("actpass", "active", "passive"):
            raise SfuError("bad-sdp", "invalid a=setup")
    all_lines = "\n".join(lines)
    if any(f"a={key}:" not in all_lines for key in ("fingerprint", "ice-ufrag", "ice-pwd")):
        raise SfuError("bad-sdp", "SDP lacks ICE credentials or DTLS fingerprint")
    return Sdp(session, media)


def _restrict_section(
    m: MediaSection, extensions: tuple[str, ...], stream: Codec | None = None
) -> None:
    """Keep one codec (no RTX/RED/FEC) and the header extensions given: the codec the
    SFU chooses for a publisher, or the payload type that decodes ``stream``."""
    listed = codecsdp.offered(m)
    if stream is not None:
        pt = codecs.receivable(listed, stream)
        if pt is None:
            raise SfuError(
                "bad-sdp",
                f"the offer does not receive this stream's {m.kind} codec, "
                f"{codecs.describe(stream)}",
            )
        codec = stream
    else:
        chosen = codecs.choose(m.kind, listed)
        if chosen is None:
            wanted = "Opus" if m.kind == "audio" else "VP8, H.264 (packetization-mode=1) or VP9"
            raise SfuError("bad-sdp", f"{m.kind} section offers no {wanted}")
        pt, codec = chosen
    pts = [str(pt)]
    out: list[str] = []
    for i, line in enumerate(m.lines):
        if i == 0:
            parts = line.split()
            out.append(" ".join([*parts[:3], *pts]))
            continue
        if match := _PT_ATTR.match(line):
            if match.group(1) != "*" and match.group(1) not in pts:
                continue
        elif match := _EXTMAP.match(line):
            if match.group(2) not in extensions:
                continue
        elif line.startswith(("a=ssrc-group:", "a=rid:", "a=simulcast:")):
            continue
        out.append(line)
    m.lines = out
    m.codec = codec
    codecsdp.stand_in(m, pt)


def sanitize_offer(text: str) -> Sdp:
    """A publisher's offer reduced to what the SFU forwards. Raises SfuError('bad-sdp')."""
    sdp = parse(text)
    for m in sdp.media:
        if m.kind not in KINDS:
            raise SfuError("bad-sdp", f"{m.kind} sections are not accepted")
        direction = next(
            (
                ln
                for ln in m.lines
                if ln in ("a=sendonly", "a=sendrecv", "a=recvonly", "a=inactive")
            ),
            "a=sendrecv",
        )[2:]
        if direction not in ("sendonly", "sendrecv"):
            raise SfuError("bad-sdp", "a publish offer must send media")
        _restrict_section(m, PUBLISH_EXTENSIONS)
    kinds = [m.kind for m in sdp.media]
    if len(kinds) != len(set(kinds)):
        raise SfuError("bad-sdp", "at most one audio and one video section per stream")
    return sdp


def sanitize_receive_offer(text: str, streams: dict[str, Codec] | None = None) -> Sdp:
    """A subscriber's offer (WHEP): recvonly audio/video reduced to the codec of the
    stream's track of that kind (``streams``: kind -> codec)."""
    sdp = parse(text)
    streams = streams or {}
    for m in sdp.media:
        if m.kind not in KINDS:
            raise SfuError("bad-sdp", f"{m.kind} sections are not accepted")
        directions = ("a=sendonly", "a=sendrecv", "a=recvonly", "a=inactive")
        direction = next((ln for ln in m.lines if ln in directions), "a=sendrecv")[2:]
        if direction not in ("recvonly", "sendrecv"):
            raise SfuError("bad-sdp", "a subscribe offer must receive media")
        _restrict_section(m, SUPPORTED_EXTENSIONS, streams.get(m.kind))
    return sdp


def sanitize_answer(text: str) -> Sdp:
    """A subscriber's answer, checked (aiortc does the negotiation itself)."""
    sdp = parse(text)
    for m in sdp.media:
        if m.kind not in KINDS:
            raise SfuError("bad-sdp", f"unexpected {m.kind} section in answer")
    return sdp


def add_opus_fec(text: str) -> str:
    """Write ``useinbandfec=1`` for Opus into an SDP aiortc generated."""
    sdp = parse(text)
    for m in sdp.media:
        if m.kind != "audio":
            continue
        opus_pts = [
            match.group(1)
            for line in m.lines
            if (match := _RTPMAP.match(line)) and match.group(2).lower() == "opus"
        ]
        for pt in opus_pts:
            m.lines = [ln for ln in m.lines if not ln.startswith(f"a=fmtp:{pt} ")]
            at = max(i for i, ln in enumerate(m.lines) if ln.startswith(f"a=rtpmap:{pt} "))
            m.lines.insert(at + 1, f"a=fmtp:{pt} {OPUS_FMTP}")
    return sdp.text()


def _extension_id(m: MediaSection, uri: str) -> int:
    for line in m.lines:
        if (match := _EXTMAP.match(line)) and match.group(2) == uri:
            return int(match.group(1))
    return 0


def transport_cc_id(offer: Sdp) -> int:
    """The id of the transport-wide sequence number extension the publisher's offer
    numbers its packets with, if it also asked for transport-cc feedback (0 if not).
    One id for the whole BUNDLE transport."""
    for m in offer.media:
        ext_id = _extension_id(m, URI_TRANSPORT_CC)
        if ext_id and any(ln.endswith(" transport-cc") for ln in m.lines):
            return ext_id
    return 0


def add_transport_cc(answer_text: str, ext_id: int) -> str:
    """Accept transport-wide congestion control in a publisher's answer (aiortc drops
    it): the sequence number extension under the offer's id, and transport-cc feedback
    for the answered payload type. Idempotent."""
    sdp = parse(answer_text)
    for m in sdp.media:
        if _extension_id(m, URI_TRANSPORT_CC):
            continue
        pts = m.lines[0].split()[3:]
        extmaps = [i for i, ln in enumerate(m.lines) if ln.startswith("a=extmap:")]
        at = extmaps[-1] + 1 if extmaps else len(m.lines)
        m.lines.insert(at, f"a=extmap:{ext_id} {URI_TRANSPORT_CC}")
        for pt in pts:
            fbs = [i for i, ln in enumerate(m.lines) if ln.startswith(f"a=rtcp-fb:{pt} ")]
            rtpmap = [i for i, ln in enumerate(m.lines) if ln.startswith(f"a=rtpmap:{pt} ")]
            if fbs or rtpmap:
                m.lines.insert((fbs or rtpmap)[-1] + 1, f"a=rtcp-fb:{pt} transport-cc")
    return sdp.text()
