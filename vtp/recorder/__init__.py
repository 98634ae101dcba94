"""Recording of live sessions: the SFU's forwarded packets, muxed without re-encoding.

* :mod:`.depacketizer` - video frame assembly (loss: keyframe request, resume at a
  keyframe) with VP8 (RFC 7741), Opus pass-through; :mod:`.h264` (RFC 6184) and
  :mod:`.vp9` (RFC 9628) the other video codecs, :mod:`.bits` their bit reader;
* :mod:`.matroska` - PyAV WebM/Matroska muxing with no codec opened, and the seal
  (remux) of a file a crash cut;
* :mod:`.session` - one recording of a room: a file per published stream + manifest;
* :mod:`.spool`, :mod:`.uploader` - the spool, and uploads with retries, each verified
  (size and streamed SHA-256) through the app's :class:`~vtp.storage.ObjectStore`;
* :mod:`.service` - the :class:`Recorder` (the app keeps it under ``app[vtp.appkeys.RECORDER]``).
"""

from __future__ import annotations

from vtp.recorder.service import Recorder, RecordingChanged

__all__ = ["Recorder", "RecordingChanged"]
