// The room's controls: toggles, recording, the side panel's tabs, leave and end,
// keyboard shortcuts.
import { api, describeError, el, toast } from "../api.js";
import { $, sessionId, state } from "./state.js";
import { changeDevice, sendMedia, setMedia, stopShare, toggleMedia } from "./media.js";
import { renderTiles } from "./grid.js";
import { finish, join } from "./connection.js";
import { mountTabs } from "../tabs.js";

// Pre-join toggles say their state and are pressed when on; the room's controls say what
// they will do ("Mute" / "Unmute"), so they carry no pressed state (it would contradict).
function setToggle(button, on, onText, offText) {
  if (button.classList.contains("toggle")) button.setAttribute("aria-pressed", String(on));
  const label = button.querySelector(".lbl") || button;
  label.textContent = on ? onText : offText;
}

export function renderToggles() {
  setToggle($("[data-pre-mic]"), state.micOn, "Microphone on", "Microphone off");
  setToggle($("[data-pre-cam]"), state.camOn, "Camera on", "Camera off");
  setToggle($("[data-mic]"), state.micOn, "Mute", "Unmute");
  setToggle($("[data-cam]"), state.camOn, "Stop video", "Start video");
  for (const [kind, button] of [["audio", $("[data-mic]")], ["video", $("[data-cam]")]]) {
    const lock = state.serverMute[kind];
    const locked = !!(lock && lock.locked);
    button.setAttribute("aria-disabled", String(locked));
    button.classList.toggle("locked", locked);
    button.title = locked ? `${lock.by} turned this off and locked it` : "";
  }
  $("[data-mic]").classList.toggle("off", !state.micOn);
  $("[data-cam]").classList.toggle("off", !state.camOn);
  $("[data-preview-off]").hidden = state.camOn;
  setToggle($("[data-share]"), !!state.screen, "Stop sharing", "Share screen");
  setToggle($("[data-hand]"), state.hand, "Lower hand", "Raise hand");
  $("[data-share]").classList.toggle("active", !!state.screen);
  $("[data-hand]").classList.toggle("active", state.hand);
}

export function renderRecording() {
  const button = $("[data-record]");
  button.hidden = !state.presenter;
  const available = state.recording.available;
  const active = !!state.recording.active;
  button.setAttribute("aria-disabled", String(!available));
  button.classList.toggle("recording", active);
  button.querySelector(".lbl").textContent = active ? "Stop recording" : "Record";
  button.title = available ? (active ? "Stop recording this class" : "Record this class") : state.recording.reason;
  $("[data-record-reason]").textContent = available ? "" : state.recording.reason;
  $("[data-rec-badge]").hidden = !active;
}

// ---- tabs in the side panel ---------------------------------------------------------------------

mountTabs(document.querySelectorAll('.side [role="tab"]'), (tab) => {
  if (tab.id === "tab-chat") {
    $("[data-chat-unread]").hidden = true;
    $("[data-chat-unread]").textContent = "";
  }
});

$("[data-toggle-side]").addEventListener("click", (ev) => {
  const room = $("[data-room]");
  const open = room.classList.toggle("side-closed");
  ev.currentTarget.setAttribute("aria-expanded", String(!open));
});

// ---- controls ---------------------------------------------------------------------------------

$("[data-pre-mic]").addEventListener("click", () => setMedia("audio", !state.micOn));
$("[data-pre-cam]").addEventListener("click", () => setMedia("video", !state.camOn));
$("[data-mic]").addEventListener("click", () => toggleMedia("audio"));
$("[data-cam]").addEventListener("click", () => toggleMedia("video"));
$("[data-camera-select]").addEventListener("change", changeDevice);
$("[data-mic-select]").addEventListener("change", changeDevice);
$("[data-join]").addEventListener("click", join);
$("[data-hand]").addEventListener("click", () => state.live.send({ type: "hand", raised: !state.hand }));
$("[data-record]").addEventListener("click", async () => {
  if (!state.recording.available) {
    toast(state.recording.reason, "warn");
    return;
  }
  // Over the live channel, not the REST call: the channel is on the node of the class's
  // room, where the recorder runs (a REST call to this page's node would be redirected
  // there, to another origin). Everyone (us included) then gets the new state; a refusal
  // comes back as an error, shown as a warning.
  state.live.send({ type: "record", action: state.recording.active ? "stop" : "start" });
});
$("[data-share]").addEventListener("click", async () => {
  if (state.screen) {
    stopShare();
    return;
  }
  try {
    const screen = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: 15 }, audio: false });
    state.screen = screen;
    screen.getVideoTracks()[0].addEventListener("ended", stopShare);
    await state.sfu.publish("screen", screen);
    renderToggles();
    sendMedia();
    renderTiles();
  } catch (e) {
    state.screen = null;
    if (e.name !== "NotAllowedError") toast(`Screen sharing failed: ${e.message}`, "warn");
  }
});

$("[data-leave]").addEventListener("click", () => {
  finish("You left the class", "You can rejoin while the class is live.");
  const again = el("button", { type: "button", class: "btn", text: "Rejoin", onclick: () => location.reload() });
  $(".overlay-card").append(again);
});

$("[data-end]").addEventListener("click", () => $("[data-end-dialog]").showModal());
$("[data-end-dialog]").addEventListener("close", async (ev) => {
  if (ev.target.returnValue !== "end") return;
  try {
    await api(`/api/v1/sessions/${sessionId}/end`, { method: "POST" });
    state.live.send({ type: "end" });
    setTimeout(() => finish("The class has ended", "You ended this session for everyone."), 300);
  } catch (e) {
    toast(describeError(e), "warn");
  }
});

// Keyboard shortcuts (not while typing): M mute, V video, H hand.
document.addEventListener("keydown", (ev) => {
  if ($("[data-room]").hidden || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (/** @type {Element} */ (ev.target).closest("input, textarea, select, dialog")) return;
  const key = ev.key.toLowerCase();
  if (key === "m") $("[data-mic]").click();
  else if (key === "v") $("[data-cam]").click();
  else if (key === "h") $("[data-hand]").click();
});
