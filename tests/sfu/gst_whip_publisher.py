"""A WHIP publisher on GStreamer's webrtcbin (libnice ICE, its own DTLS with an RSA
certificate): a third-party WebRTC stack for interop tests.

Run with the system Python, where Debian's python3-gi lives (not the project's venv):

    /usr/bin/python3 tests/sfu/gst_whip_publisher.py URL h264|vp8

It POSTs one offer (gathering complete, no trickle) to URL, applies the answer, prints
``answer-applied`` and then ``connected`` when ICE connects, and streams a 640x480 30 fps
test pattern until it is terminated (SIGTERM/SIGINT) or fails (exit code 1, reason on
stderr). H.264 is x264 constrained baseline in packetization-mode 1; VP8 is libvpx.
"""

from __future__ import annotations

import signal
import sys
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

SOURCE = (
    "videotestsrc is-live=true pattern=ball ! "
    "video/x-raw,width=640,height=480,framerate=30/1 ! videoconvert ! queue ! "
)
ENCODERS = {
    "h264": (
        "x264enc tune=zerolatency speed-preset=ultrafast bitrate=1000 key-int-max=60 ! "
        "video/x-h264,profile=constrained-baseline ! "
        "rtph264pay config-interval=-1 aggregate-mode=zero-latency ! "
        "application/x-rtp,media=video,encoding-name=H264,payload=102,clock-rate=90000 ! "
    ),
    "vp8": (
        "vp8enc deadline=1 target-bitrate=1000000 keyframe-max-dist=60 ! rtpvp8pay ! "
        "application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000 ! "
    ),
}


def fail(reason: str) -> None:
    print(f"error: {reason}", file=sys.stderr, flush=True)
    sys.exit(1)


def main() -> None:
    url, codec = sys.argv[1], sys.argv[2]
    Gst.init(None)
    pipeline = Gst.parse_launch(
        SOURCE + ENCODERS[codec] + "webrtcbin name=wb bundle-policy=max-bundle"
    )
    webrtc = pipeline.get_by_name("wb")
    loop = GLib.MainLoop()

    def post_offer() -> bool:
        try:
            answer_sdp(webrtc.get_property("local-description").sdp.as_text())
        except Exception as exc:  # a test helper: any failure ends the process
            fail(f"{exc.__class__.__name__}: {exc}")
        return False

    def answer_sdp(offer: str) -> None:
        request = urllib.request.Request(
            url, data=offer.encode(), headers={"Content-Type": "application/sdp"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            if response.status != 201:
                fail(f"WHIP POST answered {response.status}")
            answer = response.read().decode()
        ok, sdp = GstSdp.SDPMessage.new_from_text(answer)
        if ok != GstSdp.SDPResult.OK:
            fail("unparsable answer")
        description = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, sdp)
        done = Gst.Promise.new()
        webrtc.emit("set-remote-description", description, done)
        done.wait()
        print("answer-applied", flush=True)

    def on_gathering(element: Gst.Element, _param: object) -> None:
        if (
            element.get_property("ice-gathering-state")
            == GstWebRTC.WebRTCICEGatheringState.COMPLETE
        ):
            GLib.idle_add(post_offer)

    def on_connection(element: Gst.Element, _param: object) -> None:
        state = element.get_property("ice-connection-state")
        if state in (
            GstWebRTC.WebRTCICEConnectionState.CONNECTED,
            GstWebRTC.WebRTCICEConnectionState.COMPLETED,
        ):
            print("connected", flush=True)
        elif state == GstWebRTC.WebRTCICEConnectionState.FAILED:
            fail("ICE failed")

    def on_offer(promise: Gst.Promise) -> None:
        reply = promise.get_reply()
        offer = reply.get_value("offer") if reply is not None else None
        if offer is None:
            fail(f"no offer: {reply.to_string() if reply else None}")
        webrtc.emit("set-local-description", offer, Gst.Promise.new())

    def on_negotiation_needed(element: Gst.Element) -> None:
        element.emit("create-offer", None, Gst.Promise.new_with_change_func(on_offer))

    def on_message(_bus: Gst.Bus, message: Gst.Message) -> None:
        if message.type == Gst.MessageType.ERROR:
            error, debug = message.parse_error()
            fail(f"{error.message} ({debug})")

    webrtc.connect("on-negotiation-needed", on_negotiation_needed)
    webrtc.connect("notify::ice-gathering-state", on_gathering)
    webrtc.connect("notify::ice-connection-state", on_connection)
    bus = pipeline.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_message)
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, loop.quit)
    pipeline.set_state(Gst.State.PLAYING)
    try:
        loop.run()
    finally:
        pipeline.set_state(Gst.State.NULL)


if __name__ == "__main__":
    main()
