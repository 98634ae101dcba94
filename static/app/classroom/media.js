// This browser's media: camera and microphone (preview, level meter, device choice),
// turning them on and off, the screen share, and what the live channel is told of them.
import { el, toast } from "../api.js";
import { $, showNotice, state } from "./state.js";
import { renderTiles } from "./grid.js";
import { renderToggles } from "./controls.js";

// ---- pre-join: preview and devices -------------------------------------------------------------

export let meterStop = null;

export async function openDevices(cameraId, micId) {
  const constraints = {
    // 720p: the camera goes out as 320x180, 640x360 and 1280x720 simulcast encodings
    video: cameraId ? { deviceId: { exact: cameraId }, width: { ideal: 1280 }, height: { ideal: 720 } } : { width: { ideal: 1280 }, height: { ideal: 720 } },
    audio: micId ? { deviceId: { exact: micId } } : true,
  };
  const stream = await navigator.mediaDevices.getUserMedia(constraints);
  if (state.local) state.local.getTracks().forEach((t) => t.stop());
  state.local = stream;
  stream.getAudioTracks().forEach((t) => (t.enabled = state.micOn));
  stream.getVideoTracks().forEach((t) => (t.enabled = state.camOn));
  $("[data-preview]").srcObject = stream;
  startMeter(stream);
  return stream;
}

function startMeter(stream) {
  if (meterStop) meterStop();
  const track = stream.getAudioTracks()[0];
  if (!track || !window.AudioContext) return;
  const ctx = new AudioContext();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 256;
  ctx.createMediaStreamSource(new MediaStream([track])).connect(analyser);
  const data = new Uint8Array(analyser.frequencyBinCount);
  const bar = $("[data-meter]");
  let raf = 0;
  const tick = () => {
    analyser.getByteTimeDomainData(data);
    let peak = 0;
    for (const v of data) peak = Math.max(peak, Math.abs(v - 128));
    bar.style.width = `${Math.min(100, (peak / 64) * 100 * (state.micOn ? 1 : 0))}%`;
    raf = requestAnimationFrame(tick);
  };
  tick();
  meterStop = () => {
    cancelAnimationFrame(raf);
    ctx.close();
  };
}

export async function fillDevices() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  const fillSelect = (select, kind, current) => {
    const list = devices.filter((d) => d.kind === kind);
    select.replaceChildren(
      ...list.map((d, i) => el("option", { value: d.deviceId, text: d.label || `${kind === "videoinput" ? "Camera" : "Microphone"} ${i + 1}` })),
    );
    if (current) select.value = current;
    select.disabled = list.length === 0;
  };
  const track = (kind) => state.local && state.local[kind === "videoinput" ? "getVideoTracks" : "getAudioTracks"]()[0];
  fillSelect($("[data-camera-select]"), "videoinput", track("videoinput")?.getSettings().deviceId);
  fillSelect($("[data-mic-select]"), "audioinput", track("audioinput")?.getSettings().deviceId);
}

export async function changeDevice() {
  try {
    await openDevices($("[data-camera-select]").value, $("[data-mic-select]").value);
    if (state.sfu) {
      await state.sfu.replaceTrack("camera", "video", state.local.getVideoTracks()[0]);
      await state.sfu.replaceTrack("camera", "audio", state.local.getAudioTracks()[0]);
    }
  } catch (e) {
    showNotice(`That device could not be opened: ${e.message}`);
  }
}

// The microphone ("audio") or camera ("video") on or off. Muted (camera off) sends nothing
// at all: the sender's track is taken away, not only disabled (a disabled track still
// sends silence or black frames).
export function setMedia(kind, on) {
  state[kind === "audio" ? "micOn" : "camOn"] = on;
  if (state.local) for (const t of state.local.getTracks()) if (t.kind === kind) t.enabled = on;
  if (state.sfu) state.sfu.setSending("camera", kind, on).catch(() => {});
  renderToggles();
  sendMedia();
}

// The teacher's mute is enforced by the server: turning it back on asks the server first
// (refused while the teacher keeps it locked).
export function toggleMedia(kind) {
  const on = kind === "audio" ? state.micOn : state.camOn;
  const mute = state.serverMute[kind];
  if (!on && mute && state.live) {
    if (mute.locked) {
      toast(`${mute.by} locked your ${kind === "audio" ? "microphone" : "camera"}. Raise your hand to ask.`, "warn");
      return;
    }
    state.askedUnmute[kind] = true;
    state.live.send({ type: "unmute", kind });
    return;
  }
  setMedia(kind, !on);
}

export function sendMedia() {
  if (!state.live) return;
  const publishing = !!(state.ticket && state.ticket.may_publish);
  state.live.send({ type: "media", audio: publishing && state.micOn, video: publishing && state.camOn, screen: !!state.screen });
}

export function stopShare() {
  if (!state.screen) return;
  state.screen.getTracks().forEach((t) => t.stop());
  state.screen = null;
  state.sfu.unpublish("screen");
  renderToggles();
  sendMedia();
  renderTiles();
}
