"""Forwarding benchmark: one publisher, N subscribers, all in separate processes.

    python bench/forward.py --n 1,10,50,100,200,300,500 --duration 5

* the SFU process runs ``vtp.sfu.Sfu`` (or, for the baseline, aiortc's MediaRelay with
  one VP8/Opus encoder per subscriber);
* the publisher sends pre-encoded VP8 (~1 Mbps, 30 fps, 640x480) + Opus through aiortc
  (packetising only, no encoding);
* subscriber worker processes hold N aiortc peer connections for ICE + DTLS and, once
  DTLS is up, count SRTP datagrams at the socket (no decryption, no decoding).

Per N it prints: packets forwarded per second, SFU process CPU per forwarded packet
(total, and marginal against the previous N), % of one core, subscriber loss, and the N
where loss first exceeds 1 %; then the baseline at small N and the cost ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import logging
import math
import multiprocessing as mp
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as Pipe
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

WIDTH, HEIGHT, FPS = 640, 480, 30


# --- pre-encoded media ------------------------------------------------------------------


def pre_encode(seconds: int, bitrate: int) -> tuple[list[tuple[bytes, bool]], list[bytes]]:
    """VP8 frames (bytes, keyframe) and 20 ms Opus packets, encoded once with PyAV."""
    import av

    video = av.CodecContext.create("libvpx", "w")
    video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    video.time_base = fractions.Fraction(1, FPS)
    video.framerate = fractions.Fraction(FPS, 1)
    video.bit_rate = bitrate
    video.gop_size = 2 * FPS
    video.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    frames: list[tuple[bytes, bool]] = []
    rng = os.urandom
    for i in range(seconds * FPS):
        frame = av.VideoFrame(width=WIDTH, height=HEIGHT, format="yuv420p")
        # noise in a moving band keeps the encoder at its target bitrate
        band = HEIGHT // 16
        top = (i * 4) % (HEIGHT - band)
        y = bytearray(b"\x80" * (WIDTH * HEIGHT))
        y[top * WIDTH : (top + band) * WIDTH] = rng(band * WIDTH)
        frame.planes[0].update(bytes(y))
        frame.planes[1].update(b"\x80" * (WIDTH * HEIGHT // 4))
        frame.planes[2].update(b"\x80" * (WIDTH * HEIGHT // 4))
        frame.pts = i
        for packet in video.encode(frame):
            frames.append((bytes(packet), bool(packet.is_keyframe)))
    for packet in video.encode(None):
        frames.append((bytes(packet), bool(packet.is_keyframe)))

    audio = av.CodecContext.create("libopus", "w")
    audio.sample_rate = 48000
    audio.layout = "stereo"
    audio.format = "s16"
    audio.bit_rate = 32000
    opus: list[bytes] = []
    import struct

    for i in range(50):
        samples = b"".join(
            struct.pack("<hh", v, v)
            for v in (
                int(8000 * math.sin(2 * math.pi * 440 * (i * 960 + k) / 48000)) for k in range(960)
            )
        )
        af = av.AudioFrame(format="s16", layout="stereo", samples=960)
        af.planes[0].update(samples)
        af.sample_rate = 48000
        af.pts = i * 960
        for packet in audio.encode(af):
            opus.append(bytes(packet))
    return frames, opus


# --- RPC over a pipe ---------------------------------------------------------------------


async def serve(pipe: Pipe, handlers: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    while True:
        name, args = await loop.run_in_executor(None, pipe.recv)
        if name == "exit":
            pipe.send(("ok", None))
            return
        try:
            result = await handlers[name](*args)
            pipe.send(("ok", result))
        except Exception as exc:  # reported to the driver
            pipe.send(("error", repr(exc)))


def viewers(room: Any, state: dict[str, Any]) -> dict[str, Any]:
    """The handlers by which a driver adds viewers of the stream ``state["stream"]`` to an
    SFU process's room: ``subscribe`` (a new viewer: its key and offer) and ``answer``."""

    async def subscribe() -> tuple[str, str]:
        state["n"] += 1
        peer = room.join(f"s{state['n']}")
        sub = await peer.subscribe(state["stream"])
        return f"{peer.id}/{sub.id}", sub.offer_sdp

    async def answer(key: str, sdp: str) -> None:
        peer_id, sub_id = key.split("/")
        await room.peers[peer_id].answer(sub_id, sdp)

    return {"subscribe": subscribe, "answer": answer}


def add_viewers(sfu: Pipe, workers: list[tuple[Any, Pipe]], count: int, first: int = 0) -> None:
    """``count`` new viewers on the SFU process (its `viewers` handlers), round robin over
    the subscriber worker processes from the one viewer ``first`` falls to; the workers
    accept their offers at the same time."""
    offers: list[list[tuple[str, str]]] = [[] for _ in workers]
    for i in range(count):
        offers[(first + i) % len(workers)].append(call(sfu, "subscribe"))
    for (_, pipe), chunk in zip(workers, offers, strict=True):
        if chunk:
            pipe.send(("accept", ([o for _, o in chunk],)))
    for (_, pipe), chunk in zip(workers, offers, strict=True):
        if chunk:
            status, answers = pipe.recv()
            if status != "ok":
                raise RuntimeError(answers)
            for (key, _), answer in zip(chunk, answers, strict=True):
                call(sfu, "answer", key, answer)


def call(pipe: Pipe, name: str, *args: Any) -> Any:
    pipe.send((name, args))
    status, result = pipe.recv()
    if status != "ok":
        raise RuntimeError(f"{name}: {result}")
    return result


def _loopback() -> None:
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def kernel_seconds() -> float:
    """System time: on loopback, most of it is the receivers' side of every datagram."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


# --- SFU process ---------------------------------------------------------------------------


def sfu_process(pipe: Pipe) -> None:
    logging.basicConfig(level=logging.ERROR)
    if os.environ.get("BENCH_DEBUG"):
        logging.getLogger("aioice").setLevel(logging.INFO)
        logging.getLogger("vtp.sfu").setLevel(logging.INFO)
        logging.getLogger("aiortc").setLevel(logging.WARNING)

    async def main() -> None:
        from vtp.config import load_config
        from vtp.sfu import Sfu

        sfu = Sfu(
            load_config(
                ice_addresses=["127.0.0.1"],
                # the bench's subscribers count SRTP below aiortc and send no RTCP: the
                # SFU hears nothing from them but STUN, so its silence timeout must not
                # be what ends them (real receivers send RTCP every second or so)
                peer_timeout_s=3600,
                ice_udp_port=0 if ONE_PORT else None,
            )
        )
        await sfu.start()
        room = sfu.room("bench")
        teacher = room.join("teacher")
        if os.environ.get("BENCH_DEBUG"):
            from vtp.sfu import events

            def show(event: Any) -> None:
                if isinstance(event, (events.StreamRemoved, events.PeerLeft)) or (
                    isinstance(event, events.ConnectionStateChanged) and event.peer_id == "teacher"
                ):
                    print("event", event, file=sys.stderr, flush=True)
                if isinstance(event, events.StreamRemoved):
                    up = teacher.connections.get(event.stream_id) or state.get("up")
                    print("closed because", getattr(up, "close_reason", "?"), file=sys.stderr)

            sfu.add_listener(show)
        state: dict[str, Any] = {"stream": None, "n": 0}

        async def publish(offer: str) -> str:
            pub = await teacher.publish(offer)
            state["stream"] = pub.id
            state["up"] = pub
            return pub.answer_sdp

        async def stats() -> dict[str, Any]:
            up = room.publication(state["stream"])
            forwarded = sum(t.forwarded for t in up.tracks) if up else 0
            up_packets = sum(t.packets for t in up.tracks) if up else 0
            downs = sum(len(t.downs) for t in up.tracks) if up else 0
            errors = sum(
                c.sender.send_errors
                for p in room.peers.values()
                for c in p.connections.values()
                if c.sender is not None
            )
            nacks = sum(t.nacks_sent for t in up.tracks) if up else 0
            if os.environ.get("BENCH_DEBUG") and up is not None:
                print("up", [t.stats() for t in up.tracks], up.close_reason, file=sys.stderr)
                subs = [c for p in room.peers.values() for c in p.connections.values()]
                print(
                    "subscriptions:",
                    len(subs),
                    "no sender:",
                    sum(1 for c in subs if c.sender is None),
                    "states:",
                    sorted({str(getattr(c, "state", "?")) for c in subs}),
                    "video downs not started:",
                    sum(1 for t in up.tracks if t.video for d in t.downs if d.packets == 0),
                    file=sys.stderr,
                )
            return {
                "cpu": cpu_seconds(),
                "kernel": kernel_seconds(),
                # subscriptions open (a closed one stops counting its own loss)
                "subscriptions": sum(len(p.connections) for p in room.peers.values()) - 1,
                "forwarded": forwarded,
                "up": up_packets,
                "downs": downs,
                "send_errors": errors,
                "up_nacks": nacks,
            }

        profiler = None
        if os.environ.get("BENCH_PROFILE"):
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        await serve(pipe, {"publish": publish, **viewers(room, state), "stats": stats})
        if profiler is not None:
            import pstats

            profiler.disable()
            pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(30)
        await sfu.close()

    _loopback()
    asyncio.run(main())


def baseline_process(pipe: Pipe) -> None:
    """aiortc's stock pattern: decode once, MediaRelay, one encoder per subscriber."""
    logging.basicConfig(level=logging.ERROR)

    async def main() -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
        from aiortc.contrib.media import MediaRelay

        relay = MediaRelay()
        tracks: list[Any] = []
        pcs: dict[str, RTCPeerConnection] = {}
        counter = {"sent": 0}

        async def publish(offer: str) -> str:
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            pcs["publisher"] = pc
            pc.on("track", tracks.append)
            await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            return str(pc.localDescription.sdp)

        async def subscribe() -> tuple[str, str]:
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            key = f"b{len(pcs)}"
            pcs[key] = pc
            for track in tracks:
                pc.addTrack(relay.subscribe(track))
            await pc.setLocalDescription(await pc.createOffer())
            return key, str(pc.localDescription.sdp)

        async def answer(key: str, sdp: str) -> None:
            await pcs[key].setRemoteDescription(RTCSessionDescription(sdp, "answer"))

        async def stats() -> dict[str, Any]:
            sent = 0
            for key, pc in pcs.items():
                if key == "publisher":
                    continue
                report = await pc.getStats()
                sent += sum(
                    getattr(s, "packetsSent", 0)
                    for s in report.values()
                    if s.type == "outbound-rtp"
                )
            counter["sent"] = sent
            return {
                "cpu": cpu_seconds(),
                "kernel": kernel_seconds(),
                "forwarded": sent,
                "up": 0,
                "downs": len(pcs) - 1,
            }

        await serve(
            pipe, {"publish": publish, "subscribe": subscribe, "answer": answer, "stats": stats}
        )
        for pc in pcs.values():
            await pc.close()

    _loopback()
    asyncio.run(main())


# --- publisher process -------------------------------------------------------------------


def publisher_process(pipe: Pipe, frames: list[tuple[bytes, bool]], opus: list[bytes]) -> None:
    logging.basicConfig(level=logging.ERROR)

    async def main() -> None:
        import av
        from aiortc import (
            MediaStreamTrack,
            RTCConfiguration,
            RTCPeerConnection,
            RTCSessionDescription,
        )

        class PacketTrack(MediaStreamTrack):
            def __init__(
                self, kind: str, packets: list[bytes], rate: int, step: int, period: float
            ):
                super().__init__()
                self.kind = kind
                self.packets = packets
                self.rate = rate
                self.step = step
                self.period = period
                self.i = 0
                self.start = 0.0

            async def recv(self) -> Any:
                if self.i == 0:
                    self.start = time.time()
                else:
                    await asyncio.sleep(max(0.0, self.start + self.i * self.period - time.time()))
                packet = av.Packet(self.packets[self.i % len(self.packets)])
                packet.pts = self.i * self.step
                packet.time_base = fractions.Fraction(1, self.rate)
                self.i += 1
                return packet

        from vtp.sfu import aiortc_hooks

        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTrack(PacketTrack("video", [f for f, _ in frames], 90000, 3000, 1 / FPS))
        pc.addTrack(PacketTrack("audio", opus, 48000, 960, 0.02))

        async def offer() -> str:
            # the clients' core is the busy one: their consent checks must tolerate it
            aiortc_hooks.tolerant_consent(aiortc_hooks.dtls_transports(pc)[0])
            await pc.setLocalDescription(await pc.createOffer())
            return str(pc.localDescription.sdp)

        async def answer(sdp: str) -> None:
            await pc.setRemoteDescription(RTCSessionDescription(sdp, "answer"))

        await serve(pipe, {"offer": offer, "answer": answer})
        await pc.close()

    _loopback()
    asyncio.run(main())


# --- subscriber workers ----------------------------------------------------------------------


@dataclass
class Stream:
    first: int = -1
    highest: int = -1
    count: int = 0
    late: int = 0


@dataclass
class Counter:
    streams: dict[int, Stream] = field(default_factory=dict)
    connected: bool = False

    def add(self, data: bytes) -> None:
        ssrc = int.from_bytes(data[8:12], "big")
        seq = (data[2] << 8) | data[3]
        s = self.streams.get(ssrc)
        if s is None:
            s = self.streams[ssrc] = Stream(seq, seq, 0)
        else:
            delta = (seq - (s.highest & 0xFFFF)) & 0xFFFF
            if delta < 0x8000:
                s.highest += delta
            else:
                s.late += 1
        s.count += 1


def subscriber_process(pipe: Pipe) -> None:
    logging.basicConfig(level=logging.ERROR)

    async def main() -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        from vtp.sfu import aiortc_hooks

        pcs: list[RTCPeerConnection] = []
        counters: list[Counter] = []

        loop = asyncio.get_running_loop()
        drained: list[tuple[Any, Any, Counter]] = []

        def detach(pc: RTCPeerConnection, counter: Counter) -> None:
            """Once DTLS is up, take the sockets out of the event loop and drain them in
            batches: SRTP is counted (never decrypted), STUN/DTLS/SRTCP go to aioice.
            Real subscribers sit on other hosts; on loopback a receiver blocked in epoll
            makes every sendto in the SFU pay for waking it up."""
            if TCP:  # the ICE-TCP client hands SRTP to the counter itself
                counter.connected = True
                return
            for transceiver in pc.getTransceivers()[:1]:
                conn = transceiver.receiver.transport.transport._connection
                for protocol in conn._protocols:
                    sock = protocol.transport._sock
                    loop._remove_reader(sock.fileno())
                    drained.append((sock, protocol, counter))
            counter.connected = True

        async def drain() -> None:
            while True:
                await asyncio.sleep(0.005)
                for sock, protocol, counter in drained:
                    add = counter.add
                    while True:
                        try:
                            data, addr = sock.recvfrom(2048)
                        except OSError:
                            break
                        if 127 < data[0] < 192 and not 191 < data[1] < 224:
                            add(data)
                        else:
                            protocol.datagram_received(data, addr)

        drain_task = asyncio.ensure_future(drain())

        async def no_rtcp(*_packets: Any) -> None:
            pass

        async def accept(offers: list[str]) -> list[str]:
            async def one(offer: str) -> str:
                pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
                counter = Counter()
                pcs.append(pc)
                counters.append(counter)

                @pc.on("connectionstatechange")
                def changed() -> None:
                    if pc.connectionState == "connected" and not counter.connected:
                        detach(pc, counter)

                await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
                # the counter reads below aiortc, so aiortc's receiver reports would say
                # "nothing new" from the packets it saw before: the SFU closes a client
                # whose reports go stale while it is being sent to (one that stopped
                # reading). These subscribers report nothing instead.
                for transceiver in pc.getTransceivers():
                    transceiver.receiver._send_rtcp = no_rtcp  # type: ignore[method-assign]
                if TCP:
                    from tests.sfu.ice_tcp_client import over_ice_tcp

                    over_ice_tcp(pc, on_rtp=counter.add)
                else:
                    aiortc_hooks.tolerant_consent(aiortc_hooks.dtls_transports(pc)[0])
                await pc.setLocalDescription(await pc.createAnswer())
                return str(pc.localDescription.sdp)

            return list(await asyncio.gather(*(one(o) for o in offers)))

        async def connected() -> int:
            return sum(1 for c in counters if c.connected)

        async def reset() -> None:
            for c in counters:
                c.streams.clear()

        async def results() -> list[tuple[int, int]]:
            """(received, expected) per subscriber since reset."""
            out = []
            for c in counters:
                received = sum(s.count for s in c.streams.values())
                expected = sum(s.highest - s.first + 1 for s in c.streams.values())
                out.append((received, expected))
            return out

        await serve(
            pipe, {"accept": accept, "connected": connected, "reset": reset, "results": results}
        )
        drain_task.cancel()
        for pc in pcs:
            await pc.close()

    _loopback()
    asyncio.run(main())


# --- driver --------------------------------------------------------------------------------


@dataclass
class Row:
    n: int
    pps: float
    cpu_per_packet_us: float
    marginal_us: float | None
    core_percent: float
    loss: float
    worst_loss: float
    up_pps: float
    kernel_share: float  # of the SFU's CPU time, spent in the kernel


def start(target: Any, *args: Any) -> tuple[mp.Process, Pipe]:
    parent, child = mp.Pipe()
    proc = mp.Process(target=pinned, args=(target, child, *args), daemon=True)
    proc.start()
    return proc, parent


def pinned(target: Any, *args: Any) -> None:
    """With 2+ cores the SFU gets core 0 to itself, the clients share the others, so the
    SFU's CPU figures are not bent by the clients competing for its core."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) >= 2 and PIN:
        os.sched_setaffinity(
            0, cores[:1] if target in (sfu_process, baseline_process) else cores[1:]
        )
    if target is publisher_process:
        # the publisher shares a core with the subscriber workers: never let them starve it
        with contextlib.suppress(OSError):
            os.nice(-10)
    target(*args)


PIN = True
ONE_PORT = False  # every connection on one UDP port (ICE-lite), as VTP_ICE_UDP_PORT
TCP = False  # subscribers reach that port over ICE-TCP only (VTP_ICE_TCP)


class Bench:
    """One SFU (or baseline) process, one publisher, subscriber workers."""

    def __init__(self, mode: str, workers: int, frames: Any, opus: Any) -> None:
        self.mode = mode
        self.server, self.sp = start(sfu_process if mode == "sfu" else baseline_process)
        self.publisher, self.pp = start(publisher_process, frames, opus)
        self.subs = [start(subscriber_process) for _ in range(workers)]
        self.total = 0
        self.prev: tuple[float, float] | None = None  # (cpu/s, forwarded/s) at previous N
        call(self.pp, "answer", call(self.sp, "publish", call(self.pp, "offer")))
        time.sleep(1.5 if mode == "sfu" else 3.0)

    def grow(self, n: int) -> None:
        """Add subscribers (in batches, round robin over the workers) until there are n."""
        while self.total < n:
            batch = min(n - self.total, 20 * len(self.subs))
            add_viewers(self.sp, self.subs, batch, self.total)
            self.total += batch
        deadline = time.time() + 30 + n / 10
        while sum(call(p, "connected") for _, p in self.subs) < n:
            if time.time() > deadline:
                raise RuntimeError("subscribers did not connect")
            time.sleep(0.2)
        time.sleep(2.5)  # a keyframe (every 2 s) has reached everyone

    def measure(self, n: int, duration: float) -> Row:
        for _, p in self.subs:
            call(p, "reset")
        s0 = call(self.sp, "stats")
        t0 = time.time()
        time.sleep(duration)
        s1 = call(self.sp, "stats")
        elapsed = time.time() - t0
        if os.environ.get("BENCH_DEBUG"):
            print({k: s1[k] - s0[k] for k in s1 if isinstance(s1[k], (int, float))})
        if self.mode == "sfu" and s1["subscriptions"] < n:
            print(f"  ({n - s1['subscriptions']} of {n} subscriptions closed during the run)")
        results = [r for _, p in self.subs for r in call(p, "results")]
        cpu = s1["cpu"] - s0["cpu"]
        forwarded = s1["forwarded"] - s0["forwarded"]
        received = sum(r for r, _ in results)
        expected = sum(e for _, e in results)
        per_sub = [1 - r / e if e else 1.0 for r, e in results]
        if self.mode != "sfu" or forwarded <= 0:
            forwarded = received
        cpu_rate, fwd_rate = cpu / elapsed, forwarded / elapsed
        marginal = None
        if self.prev is not None and fwd_rate > self.prev[1]:
            marginal = (cpu_rate - self.prev[0]) / (fwd_rate - self.prev[1]) * 1e6
        self.prev = (cpu_rate, fwd_rate)
        return Row(
            n,
            fwd_rate,
            cpu / forwarded * 1e6 if forwarded else math.inf,
            marginal,
            cpu_rate * 100,
            1 - received / expected if expected else 1.0,
            max(per_sub) if per_sub else 1.0,
            (s1["up"] - s0["up"]) / elapsed,
            (s1["kernel"] - s0["kernel"]) / cpu if cpu > 0 else 0.0,
        )

    def close(self) -> None:
        for proc, pipe in [*self.subs, (self.publisher, self.pp), (self.server, self.sp)]:
            try:
                pipe.send(("exit", ()))
                if pipe.poll(5):
                    pipe.recv()
            except Exception:
                pass
            proc.join(5)
            if proc.is_alive():
                proc.kill()


def run(
    mode: str, ns: list[int], duration: float, workers: int, frames: Any, opus: Any
) -> list[Row]:
    bench = Bench(mode, workers, frames, opus)
    rows: list[Row] = []
    try:
        for n in ns:
            try:
                bench.grow(n)
                rows.append(bench.measure(n, duration))
            except Exception as exc:
                print(f"{mode:8} {n:5d}  failed: {exc}", flush=True)
                break
            print_row(mode, rows[-1], flush=True)
    finally:
        bench.close()
    return rows


def print_row(mode: str, r: Row, flush: bool = False) -> None:
    marginal = f"{r.marginal_us:8.1f}" if r.marginal_us is not None else "       -"
    print(
        f"{mode:8} {r.n:5d} {r.pps:10.0f} {r.cpu_per_packet_us:9.1f} {marginal} "
        f"{r.core_percent:7.1f}% {100 * r.loss:7.2f}% {100 * r.worst_loss:7.2f}% "
        f"{100 * r.kernel_share:6.0f}%",
        flush=flush,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", default="1,10,50,100,200,300,500", help="subscriber counts")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per N")
    parser.add_argument("--workers", type=int, default=3, help="subscriber processes")
    parser.add_argument("--baseline-n", default="1,2", help="MediaRelay re-encode N ('' to skip)")
    parser.add_argument("--bitrate", type=int, default=1_000_000)
    parser.add_argument("--no-pin", action="store_true", help="do not pin the SFU to a core")
    parser.add_argument(
        "--one-port", action="store_true", help="the SFU serves every connection on one port"
    )
    parser.add_argument(
        "--tcp", action="store_true", help="subscribers over ICE-TCP (implies --one-port)"
    )
    args = parser.parse_args()
    global ONE_PORT, PIN, TCP
    PIN = not args.no_pin
    TCP = args.tcp
    ONE_PORT = args.one_port or args.tcp
    ns = sorted({int(x) for x in args.n.split(",") if x})
    base_ns = sorted({int(x) for x in args.baseline_n.split(",") if x})

    frames, opus = pre_encode(4, args.bitrate)
    size = sum(len(f) for f, _ in frames) * 8 / (len(frames) / FPS)
    print(f"pre-encoded VP8 {WIDTH}x{HEIGHT} {FPS} fps at {size / 1e6:.2f} Mbps + Opus 20 ms")
    print("mode         N   fwd pkt/s  µs/pkt  marginal   core     loss   worst  kernel")
    rows = run("sfu", ns, args.duration, max(1, min(args.workers, ns[-1])), frames, opus)
    over = next((r.n for r in rows if r.loss > 0.01), None)
    print(f"loss first exceeds 1% at N = {over if over is not None else f'never (up to {ns[-1]})'}")
    marginals = [r.marginal_us for r in rows if r.marginal_us is not None]
    if base_ns:
        base = run("baseline", base_ns, args.duration, 1, frames, opus)
        ours = min(r.cpu_per_packet_us for r in rows if r.n >= max(10, ns[0])) if rows else math.nan
        theirs = max(r.cpu_per_packet_us for r in base)
        print(
            f"baseline MediaRelay + per-subscriber VP8/Opus encode: {theirs:.0f} µs/pkt; "
            f"SFU {ours:.1f} µs/pkt: {theirs / ours:.0f}x cheaper"
        )
    clean = [r for r in rows if r.loss <= 0.01]
    if len(clean) >= 2:
        # least-squares slope of CPU time/s against forwarded packets/s over the N without
        # loss: the marginal cost, less noisy than differences between neighbours
        xs = [r.pps for r in clean]
        ys = [r.core_percent / 100 for r in clean]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
            (x - mx) ** 2 for x in xs
        )
        print(f"marginal cost (least squares over N without loss): {slope * 1e6:.1f} µs/pkt")
    if marginals:
        print(
            f"marginal cost: median {sorted(marginals)[len(marginals) // 2]:.1f} µs"
            " per forwarded packet"
        )


if __name__ == "__main__":
    mp.set_start_method("fork")
    main()
