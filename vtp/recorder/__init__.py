"""Recording of live sessions: the SFU's forwarded packets, muxed without re-encoding.

* :mod:`.depacketizer` - VP8 frames from RTP (loss: keyframe request, resume at a
  keyframe), Opus pass-through;
* :mod:`.webm` - PyAV WebM muxing with no codec opened;
* :mod:`.session` - one recording of a room: a file per published stream + manifest;
* :mod:`.spool`, :mod:`.uploader` - the spool, and uploads with retries, each verified
  (size and streamed SHA-256) through the app's :class:`~vtp.storage.ObjectStore`;
* :mod:`.service` - the :class:`Recorder` under ``app[RECORDER]``; ``setup(app)``.
"""

from __future__ import annotations

from vtp.recorder.service import RECORDER, Recorder, RecordingChanged, recorder_ctx, setup

__all__ = ["RECORDER", "Recorder", "RecordingChanged", "recorder_ctx", "setup"]
