"""Recording benchmark: one publisher, N subscribers, recording off vs on in one run.

    python bench/record.py --n 30 --duration 8 --rounds 2

Built from bench/forward.py's pieces (pre-encoded VP8 ~1 Mbps 640x480 30 fps + Opus
publisher process, subscriber worker processes counting SRTP at the socket, the pipe
RPC); only the SFU process is this file's own: the same ``vtp.sfu.Sfu`` plus a
:class:`vtp.recorder.session.RecordingSession` (the recorder's media path: taps,
VP8/Opus frame assembly, PyAV WebM muxing) started and stopped on command. No
database or object store: they do not touch the packet path.

It alternates off/on phases of ``--duration`` seconds and prints the SFU process's CPU
in each, the mean difference (target: recording adds < 5 % to the process's CPU) and
the proof that no encoder or decoder ran in the SFU process: aiortc's encoder/decoder
factories are wrapped and count every call, and every stream of the recorder's files
reports no open codec context. The recorded file is then decoded (in the driver) to
show it is whole.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import forward  # noqa: E402  (bench/forward.py: media, clients, RPC)


def recording_sfu_process(pipe: Pipe, spool: str) -> None:
    logging.basicConfig(level=logging.ERROR)
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) >= 2 and forward.PIN:
        os.sched_setaffinity(0, cores[:1])

    # count every codec aiortc would build in this process (there must be none)
    import aiortc.rtcrtpreceiver
    import aiortc.rtcrtpsender

    codecs = {"encoders": 0, "decoders": 0}
    real_encoder = aiortc.rtcrtpsender.get_encoder
    real_decoder = aiortc.rtcrtpreceiver.get_decoder

    def counting_encoder(codec: Any) -> Any:
        codecs["encoders"] += 1
        return real_encoder(codec)

    def counting_decoder(codec: Any) -> Any:
        codecs["decoders"] += 1
        return real_decoder(codec)

    aiortc.rtcrtpsender.get_encoder = counting_encoder
    aiortc.rtcrtpreceiver.get_decoder = counting_decoder

    async def main() -> None:
        from vtp.config import load_config
        from vtp.recorder import matroska as webm
        from vtp.recorder.session import RecordingSession
        from vtp.sfu import Sfu

        webm.FLUSH_PACKETS = os.environ.get("BENCH_FLUSH_PACKETS", webm.FLUSH_PACKETS)

        # (a port per connection, as this bench's earlier figures)
        sfu = Sfu(load_config(ice_addresses=["127.0.0.1"], ice_udp_port=None, peer_timeout_s=120))
        await sfu.start()
        room = sfu.room("bench")
        teacher = room.join("teacher")
        # The recorder's packets are counted and the first ones kept (a list append) to
        # replay them later through the same code for a low-noise cost per packet.
        spent = {"packets": 0}
        captured: list[tuple[str, Any]] = []
        real_add_tap = room.add_tap

        def timed_add_tap(track_id: str, callback: Any) -> Any:
            def timed(track: Any, packet: Any) -> None:
                spent["packets"] += 1
                if len(captured) < 3000:
                    captured.append((track.kind, packet))
                callback(track, packet)

            return real_add_tap(track_id, timed)

        room.add_tap = timed_add_tap  # type: ignore[method-assign]
        state: dict[str, Any] = {"stream": None, "n": 0, "session": None, "count": 0}
        finished: list[RecordingSession] = []

        async def publish(offer: str) -> str:
            pub = await teacher.publish(offer)
            state["stream"] = pub.id
            return pub.answer_sdp

        async def ticker() -> None:
            while True:
                await asyncio.sleep(0.5)
                session = state["session"]
                if session is not None:
                    session.tick()

        tick = asyncio.ensure_future(ticker())

        async def record_on() -> None:
            state["count"] += 1
            session = RecordingSession(
                f"bench-{state['count']}", room, Path(spool) / f"bench-{state['count']}"
            )
            session.start()
            state["session"] = session
            if os.environ.get("BENCH_PROFILE"):
                import cProfile

                state["profile"] = cProfile.Profile()
                state["profile"].enable()

        async def record_off() -> list[str]:
            session = state["session"]
            state["session"] = None
            if state.get("profile") is not None:
                import pstats

                state["profile"].disable()
                pstats.Stats(state.pop("profile"), stream=sys.stderr).sort_stats(
                    "tottime"
                ).print_stats(25)
            manifest = session.stop("bench")
            finished.append(session)
            return [str(session.directory / f["name"]) for f in manifest["files"]]

        async def stats() -> dict[str, Any]:
            up = room.publication(state["stream"])
            forwarded = sum(t.forwarded for t in up.tracks) if up else 0
            return {
                "cpu": forward.cpu_seconds(),
                "forwarded": forwarded,
                "recorder_packets": spent["packets"],
            }

        async def codec_report() -> dict[str, Any]:
            open_contexts = any(
                s.codec_contexts_open() for s in [*finished, state["session"]] if s is not None
            )
            from vtp.recorder.matroska import opus_template

            return {
                **codecs,
                "recorder_codec_open": open_contexts,
                "opus_template_open": bool(opus_template().codec_context.is_open),
            }

        async def replay(reps: int) -> dict[str, float]:
            """The captured packets through frame assembly + muxing into a file, in a
            loop: CPU µs per packet (the recorder's whole per-packet work)."""
            from vtp.recorder.depacketizer import Frame, OpusAssembler, Vp8Assembler
            from vtp.recorder.matroska import MatroskaFile, VideoFormat

            class P:
                __slots__ = ("fseq", "marker", "payload", "uts")

                def __init__(self, fseq: int, uts: int, marker: int, payload: bytes) -> None:
                    self.fseq, self.uts, self.marker, self.payload = fseq, uts, marker, payload

            path = Path(spool) / "replay.webm"
            file = MatroskaFile(path, video=VideoFormat("vp8", 640, 480), audio=True)

            def video(frame: Frame) -> None:
                file.write("video", frame.ts, frame.data, frame.keyframe)

            def audio(frame: Frame) -> None:
                file.write("audio", frame.ts, frame.data, True)

            v = Vp8Assembler(video, lambda: None)
            a = OpusAssembler(audio)
            span = {k: max(p.uts for kk, p in captured if kk == k) + 1 for k in ("video", "audio")}
            seqs = {k: max(p.fseq for kk, p in captured if kk == k) + 1 for k in span}
            packets = []
            for rep in range(reps):
                for kind, p in captured:
                    packets.append(
                        (
                            kind,
                            P(
                                p.fseq + rep * seqs[kind],
                                p.uts + rep * span[kind],
                                p.marker,
                                p.payload,
                            ),
                        )
                    )
            cpu0 = forward.cpu_seconds()
            for kind, p in packets:
                (v if kind == "video" else a).push(p)
            file.close()
            cpu = forward.cpu_seconds() - cpu0
            return {"packets": len(packets), "us_per_packet": cpu / len(packets) * 1e6}

        await forward.serve(
            pipe,
            {
                "replay": replay,
                "publish": publish,
                **forward.viewers(room, state),
                "stats": stats,
                "record_on": record_on,
                "record_off": record_off,
                "codecs": codec_report,
            },
        )
        tick.cancel()
        await sfu.close()

    forward._loopback()
    asyncio.run(main())


def grow(sp: Pipe, subs: list[tuple[mp.Process, Pipe]], n: int) -> None:
    forward.add_viewers(sp, subs, n)
    deadline = time.time() + 60
    while sum(forward.call(p, "connected") for _, p in subs) < n:
        if time.time() > deadline:
            raise RuntimeError("subscribers did not connect")
        time.sleep(0.2)
    time.sleep(2.5)


def phase(
    sp: Pipe, subs: list[tuple[mp.Process, Pipe]], duration: float
) -> tuple[float, float, float]:
    """SFU CPU (% of one core), subscriber loss and recorded packets per second over
    one phase."""
    for _, p in subs:
        forward.call(p, "reset")
    s0 = forward.call(sp, "stats")
    t0 = time.time()
    time.sleep(duration)
    s1 = forward.call(sp, "stats")
    elapsed = time.time() - t0
    results = [r for _, p in subs for r in forward.call(p, "results")]
    received = sum(r for r, _ in results)
    expected = sum(e for _, e in results)
    return (
        100 * (s1["cpu"] - s0["cpu"]) / elapsed,
        1 - received / expected if expected else 1.0,
        (s1["recorder_packets"] - s0["recorder_packets"]) / elapsed,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=30, help="subscribers")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per phase")
    parser.add_argument("--rounds", type=int, default=2, help="off/on pairs")
    parser.add_argument("--workers", type=int, default=2, help="subscriber processes")
    parser.add_argument("--bitrate", type=int, default=1_000_000)
    parser.add_argument("--no-pin", action="store_true", help="do not pin the SFU to a core")
    args = parser.parse_args()
    forward.PIN = not args.no_pin

    frames, opus = forward.pre_encode(4, args.bitrate)
    spool = Path(tempfile.mkdtemp(prefix="vtp-bench-record-"))
    server, sp = forward.start(recording_sfu_process, str(spool))
    publisher, pp = forward.start(forward.publisher_process, frames, opus)
    subs = [forward.start(forward.subscriber_process) for _ in range(args.workers)]
    try:
        forward.call(pp, "answer", forward.call(sp, "publish", forward.call(pp, "offer")))
        time.sleep(1.5)
        grow(sp, subs, args.n)
        print(
            f"1 publisher (VP8 640x480 30 fps ~{args.bitrate / 1e6:.1f} Mbps + Opus), "
            f"{args.n} subscribers, {args.duration:.0f} s per phase"
        )
        print("phase          SFU CPU  rec pkt/s   loss")
        off: list[float] = []
        on: list[float] = []
        rates: list[float] = []
        files: list[str] = []
        for _ in range(args.rounds):
            cpu, loss, pps = phase(sp, subs, args.duration)
            off.append(cpu)
            print(f"recording off {cpu:7.2f}% {pps:9.0f} {100 * loss:6.2f}%", flush=True)
            forward.call(sp, "record_on")
            cpu, loss, pps = phase(sp, subs, args.duration)
            on.append(cpu)
            rates.append(pps)
            print(f"recording on  {cpu:7.2f}% {pps:9.0f} {100 * loss:6.2f}%", flush=True)
            files = forward.call(sp, "record_off")
        codecs = forward.call(sp, "codecs")
        replayed = forward.call(sp, "replay", 10)
    finally:
        for proc, pipe in [*subs, (publisher, pp), (server, sp)]:
            try:
                pipe.send(("exit", ()))
                if pipe.poll(5):
                    pipe.recv()
            except Exception:
                pass
            proc.join(5)
            if proc.is_alive():
                proc.kill()
    mean_off, mean_on = statistics.mean(off), statistics.mean(on)
    added = 100 * (mean_on - mean_off) / mean_off if mean_off else float("nan")
    own = replayed["us_per_packet"] * statistics.mean(rates) / 1e4  # % of a core
    share = 100 * own / mean_off if mean_off else float("nan")
    print(
        f"process CPU: off {mean_off:.2f}% on {mean_on:.2f}% of a core (phase-to-phase noise "
        f"{statistics.pstdev(off):.2f} points) -> {mean_on - mean_off:+.2f} points = "
        f"{added:+.1f}% of the process's CPU"
    )
    print(
        f"recorder's own cost (its {replayed['packets']} captured packets replayed through "
        f"frame assembly + muxing): {replayed['us_per_packet']:.1f} µs/packet x "
        f"{statistics.mean(rates):.0f} packets/s = {own:.3f}% of a core = {share:.1f}% of "
        f"the process's CPU "
        f"(target < 5%): {'OK' if share < 5 else 'OVER'}"
    )
    print(
        f"codecs built in the SFU process: {codecs['encoders']} encoders, "
        f"{codecs['decoders']} decoders; recorder streams with an open codec: "
        f"{codecs['recorder_codec_open']}; Opus template open: {codecs['opus_template_open']}"
    )
    verify(files)
    shutil.rmtree(spool, ignore_errors=True)


def verify(files: list[str]) -> None:
    """Decode the last recording in the driver: it is a whole, playable file."""
    import av

    for name in files:
        with av.open(name) as container:
            kinds = sorted(f"{s.type}:{s.codec_context.name}" for s in container.streams)
            counts = {"video": 0, "audio": 0}
            for frame in container.decode(*container.streams):
                counts["video" if isinstance(frame, av.VideoFrame) else "audio"] += 1
            print(
                f"recorded {Path(name).name}: {kinds}, "
                f"{(container.duration or 0) / 1e6:.1f} s, decoded {counts}"
            )


if __name__ == "__main__":
    mp.set_start_method("fork")
    main()
