"""A third-party WebRTC stack against the SFU: GStreamer's webrtcbin (libnice, its own
DTLS with an RSA certificate) publishing H.264 and VP8 over WHIP to Chromium.

libnice gathers no loopback candidates, so ``netns_gstreamer.py`` runs inside a network
namespace of its own (``unshare -n``) holding a veth pair whose two addresses the SFU and
the publisher gather on; nothing leaves that namespace, and it disappears with the
process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.chromium import CHROMIUM

pytestmark = [pytest.mark.browser, pytest.mark.netns]

ROOT = Path(__file__).resolve().parents[2]
INNER = "tests/sfu/netns_gstreamer.py"
VETH = """set -e
ip link set lo up
ip link add vtp0 type veth peer name vtp1
ip addr add 10.213.0.1/24 dev vtp0
ip addr add 10.213.0.2/24 dev vtp1
ip link set vtp0 up
ip link set vtp1 up
exec "$@"
"""
GST_CHECK = """
import gi
gi.require_version("Gst", "1.0"); gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import Gst, GstSdp, GstWebRTC
Gst.init(None)
missing = [e for e in ("webrtcbin", "nicesrc", "x264enc", "rtph264pay", "vp8enc",
           "rtpvp8pay", "videotestsrc", "dtlssrtpenc") if Gst.ElementFactory.find(e) is None]
raise SystemExit(" ".join(missing) or None)
"""


def missing_prerequisite() -> str:
    if not CHROMIUM:
        return "no Chromium"
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        return "network namespaces need root, unshare and ip"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return f"cannot create a network namespace here: {probe.stderr.strip()[-200:]}"
    check = subprocess.run(
        ["/usr/bin/python3", "-c", GST_CHECK], capture_output=True, text=True, timeout=60
    )
    if check.returncode != 0:
        return f"GStreamer/python3-gi not usable: {(check.stderr or check.stdout)[-300:]}"
    return ""


def test_gstreamer_whip_publisher_in_a_network_namespace() -> None:
    reason = missing_prerequisite()
    if reason:
        pytest.skip(reason)
    command = ["unshare", "-n", "bash", "-c", VETH, "veth"]
    command += [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", INNER]
    env = {**os.environ, "VTP_NETNS_SFU_ADDRESS": "10.213.0.1"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    output = (result.stdout + result.stderr)[-6000:]
    assert result.returncode == 0, output
    assert "2 passed" in result.stdout, output
