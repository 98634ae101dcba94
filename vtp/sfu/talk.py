"""Talk time and turns per peer, from the share of voiced packets (RFC 6464 levels,
counted by :class:`vtp.sfu.speaker.LevelMeter`) in each speaker interval.

Nothing here runs per packet: the room calls :meth:`TalkMeter.update` every speaker
interval with each peer's voiced share, and talk time is that share of the interval.
A turn starts when a peer speaks (most of an interval voiced) after at least
``TURN_GAP_S`` without speaking. The application takes the totals now and then
(:meth:`take`, :meth:`pop`) and maps peers to people.
"""

from __future__ import annotations

from dataclasses import dataclass

TURN_GAP_S = 1.5
SPEAKING_SHARE = 0.5
# Longer gaps between updates (a stalled loop) count at most this much.
MAX_INTERVAL_S = 2.0


@dataclass(slots=True)
class Talk:
    seconds: float = 0.0
    turns: int = 0
    speaking: bool = False
    last_spoke: float = -1e9


class TalkMeter:
    def __init__(self, now: float) -> None:
        self._peers: dict[str, Talk] = {}
        self._last = now

    def update(self, voiced: dict[str, float], now: float) -> None:
        """One speaker interval ended at ``now``: peer id -> share of voiced packets."""
        elapsed = min(max(now - self._last, 0.0), MAX_INTERVAL_S)
        self._last = now
        for peer_id, share in voiced.items():
            talk = self._peers.get(peer_id)
            if talk is None:
                if share <= 0.0:
                    continue
                talk = self._peers[peer_id] = Talk()
            talk.seconds += share * elapsed
            speaking = share >= SPEAKING_SHARE
            if speaking:
                if not talk.speaking and now - talk.last_spoke >= TURN_GAP_S:
                    talk.turns += 1
                talk.last_spoke = now
            talk.speaking = speaking

    def take(self) -> dict[str, tuple[float, int]]:
        """Seconds and turns per peer since the last take (the speaking state stays)."""
        out: dict[str, tuple[float, int]] = {}
        for peer_id, talk in self._peers.items():
            if talk.seconds or talk.turns:
                out[peer_id] = (talk.seconds, talk.turns)
                talk.seconds = 0.0
                talk.turns = 0
        return out

    def pop(self, peer_id: str) -> tuple[float, int]:
        """What a departing peer has not handed over yet; forgets the peer."""
        talk = self._peers.pop(peer_id, None)
        return (talk.seconds, talk.turns) if talk is not None else (0.0, 0)
