// The live classroom: preview and device choice, then the room (video grid, screen share,
// chat, hands, teacher controls, presence), over the SFU protocol and the live channel.
import { ApiError, api, accessToken, describeError, el, refreshTokens, requireUser, toast } from "./api.js";
import { LiveChannel } from "./live.js";
import { SfuClient } from "./sfu.js";

const $ = (sel) => document.querySelector(sel);
const root = $(".classroom");
const sessionId = root.dataset.sessionId;
const wsBase = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}`;

const state = {
  me: null,
  session: null,
  ticket: null,
  presenter: false,
  local: null, // camera + microphone MediaStream
  screen: null, // display MediaStream while sharing
  micOn: true,
  camOn: true,
  hand: false,
  serverMute: { audio: null, video: null }, // {by, locked} while the server withholds it
  askedUnmute: { audio: false, video: false }, // turn it on once the server allows it
  clock: null,
  peers: new Map(), // peer_id -> {peer_id, user_id, display, role}
  streams: new Map(), // stream_id -> {stream_id, peer_id, label}
  media: new Map(), // stream_id -> MediaStream (subscribed)
  participants: new Map(), // user_id -> live participant
  speaker: null,
  clockOffset: 0,
  recording: { available: false, reason: "" },
  chatIds: new Set(),
  sfu: null,
  live: null,
  over: false,
  paused: new Set(), // stream ids whose video the server paused for bandwidth
  page: 0, // the grid page shown (tiles beyond one page are paged, not scrolled)
  pages: 1,
};

// ---- small helpers ------------------------------------------------------------------------

function initials(name) {
  return (name || "?")
    .split(/\s+/)
    .filter(Boolean)
    .slice(0, 2)
    .map((p) => p[0].toUpperCase())
    .join("");
}

function hue(text) {
  let h = 0;
  for (const ch of text || "") h = (h * 31 + ch.charCodeAt(0)) % 360;
  return h;
}

function duration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${String(m).padStart(2, "0")}:${sec}`;
}

function showNotice(text) {
  const n = $("[data-notice]");
  n.textContent = text;
  n.hidden = !text;
}

// Nothing keeps running behind the overlay: no media, no sockets, no clock, no
// "Connecting…" (the pill says why it is over: "Removed", "Ended", "Disconnected").
function finish(title, text, reason = "closed") {
  if (state.over) return;
  state.over = true;
  if (meterStop) meterStop();
  if (state.sfu) state.sfu.stop();
  if (state.live) state.live.stop();
  if (state.clock) clearInterval(state.clock);
  state.clock = null;
  $("[data-clock]").hidden = true;
  for (const s of [state.local, state.screen]) if (s) s.getTracks().forEach((t) => t.stop());
  $("[data-room]").hidden = true;
  $("[data-prejoin]").hidden = true;
  $("[data-join]").disabled = true;
  $("[data-overlay-title]").textContent = title;
  $("[data-overlay-text]").textContent = text;
  $("[data-overlay]").dataset.reason = reason;
  $("[data-overlay]").hidden = false;
  $("[data-overlay-title]").focus();
  setConn(reason);
}

function removed(text) {
  finish("You were removed from the class", text, "removed");
}

// ---- connection state -----------------------------------------------------------------------

function setConn(force) {
  const pill = $("[data-conn]");
  let text;
  let cls;
  if (state.over && !force) return; // (a socket stopping after finish() says nothing)
  if (force) {
    text = { removed: "Removed", ended: "Ended" }[force] || "Disconnected";
    cls = "conn-idle";
  } else {
    const sfu = state.sfu ? state.sfu.state : "idle";
    const live = state.live ? state.live.state : "idle";
    if (sfu === "connected" && live === "connected") {
      text = "Connected";
      cls = "conn-ok";
    } else if (sfu === "reconnecting" || live === "reconnecting") {
      text = "Reconnecting…";
      cls = "conn-warn";
    } else {
      text = "Connecting…";
      cls = "conn-warn";
    }
  }
  pill.textContent = text;
  pill.className = `conn ${cls}`;
  pill.dataset.state = cls;
}

// ---- pre-join: preview and devices -------------------------------------------------------------

let meterStop = null;

async function openDevices(cameraId, micId) {
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

async function fillDevices() {
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

async function changeDevice() {
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

// Pre-join toggles say their state and are pressed when on; the room's controls say what
// they will do ("Mute" / "Unmute"), so they carry no pressed state (it would contradict).
function setToggle(button, on, onText, offText) {
  if (button.classList.contains("toggle")) button.setAttribute("aria-pressed", String(on));
  const label = button.querySelector(".lbl") || button;
  label.textContent = on ? onText : offText;
}

function renderToggles() {
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

// Muted (camera off) sends nothing at all: the sender's track is taken away, not only
// disabled (a disabled track still sends silence or black frames).
function setMic(on) {
  state.micOn = on;
  if (state.local) state.local.getAudioTracks().forEach((t) => (t.enabled = on));
  if (state.sfu) state.sfu.setSending("camera", "audio", on).catch(() => {});
  renderToggles();
  sendMedia();
}

// The teacher's mute is enforced by the server: turning it back on asks the server first
// (refused while the teacher keeps it locked).
function toggleMedia(kind) {
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
  if (kind === "audio") setMic(!on);
  else setCam(!on);
}

function setCam(on) {
  state.camOn = on;
  if (state.local) state.local.getVideoTracks().forEach((t) => (t.enabled = on));
  if (state.sfu) state.sfu.setSending("camera", "video", on).catch(() => {});
  renderToggles();
  sendMedia();
}

function sendMedia() {
  if (!state.live) return;
  const publishing = !!(state.ticket && state.ticket.may_publish);
  state.live.send({ type: "media", audio: publishing && state.micOn, video: publishing && state.camOn, screen: !!state.screen });
}

// ---- tiles ----------------------------------------------------------------------------------

const tiles = new Map(); // key -> element

function tileFor(key, make) {
  let tile = tiles.get(key);
  if (!tile) {
    tile = make();
    tile.dataset.key = key;
    tiles.set(key, tile);
    const video = tile.querySelector("video");
    sizes.observe(video);
    onScreen.observe(video);
  }
  return tile;
}

// ---- adaptive stream: tell the server how each remote video is shown ------------------------
// The server sends each subscription the smallest simulcast encoding that covers the
// rendered size, and no video at all for a tile that is not shown (another grid page,
// scrolled away, camera off, or the tab hidden). With many videos on screen the small
// tiles ask for a lower frame rate (a lower temporal layer of the same encoding: less
// bandwidth and decoding); the featured (large) tile and the speaker's keep full rate.
// A page of 16 small tiles at 15 fps is ~1.45 Mbps of Chromium's 150 kbps encodings, at
// 7.5 fps ~1 Mbps: with the teacher at 720p a student stays within ~2.5 Mbps.

function smallTileFps(shown) {
  if (shown <= 4) return 0; // full rate
  return shown <= 9 ? 15 : 8; // TL0+TL1, or TL0 only (7.5 of 30 fps)
}

const shownVideos = new WeakSet(); // video elements the IntersectionObserver sees on screen
let viewsPending = false;

function reportViews() {
  viewsPending = false;
  if (!state.sfu) return;
  const dpr = window.devicePixelRatio || 1;
  const views = [];
  for (const tile of tiles.values()) {
    const streamId = tile.dataset.streamId;
    if (!streamId) continue;
    const video = tile.querySelector("video");
    const r = video.getBoundingClientRect();
    // (a video paused for bandwidth is still wanted: only a camera that is off is not)
    const shown = !document.hidden && !tile.hidden && shownVideos.has(video) && !tile.classList.contains("cam-off") && r.width > 0;
    views.push({ tile, streamId, r, shown });
  }
  const fps = smallTileFps(views.filter((v) => v.shown).length);
  for (const { tile, streamId, r, shown } of views) {
    const small = !tile.classList.contains("featured") && !tile.classList.contains("speaking");
    state.sfu.setView(streamId, r.width * dpr, r.height * dpr, shown, small ? fps : 0);
  }
}

function scheduleViews() {
  if (viewsPending) return;
  viewsPending = true;
  setTimeout(reportViews, 0);
}

const sizes = new ResizeObserver(scheduleViews);
const onScreen = new IntersectionObserver((entries) => {
  for (const e of entries) {
    if (e.isIntersecting) shownVideos.add(e.target);
    else shownVideos.delete(e.target);
  }
  scheduleViews();
});
document.addEventListener("visibilitychange", scheduleViews);

function makeTile(name) {
  const video = el("video", { autoplay: true, playsinline: true });
  const avatar = el("div", { class: "avatar", "aria-hidden": "true" }, el("span", { text: initials(name) }));
  avatar.style.setProperty("--h", hue(name));
  const label = el(
    "figcaption",
    { class: "tile-label" },
    el("span", { class: "mic-off", title: "Microphone off", hidden: true }, el("span", { class: "sr-only", text: "microphone off" })),
    el("span", { class: "name", text: name }),
    el("span", { class: "badge", hidden: true }),
    el("span", { class: "hand-badge", hidden: true, title: "Hand raised" }, el("span", { class: "sr-only", text: "hand raised" })),
  );
  const speaking = el("span", { class: "sr-only speaking-text", text: "" });
  return el("figure", { class: "tile" }, video, avatar, label, speaking);
}

function peerUser(peerId) {
  const peer = state.peers.get(peerId);
  return peer ? state.participants.get(peer.user_id) : null;
}

function renderTiles() {
  const stage = $("[data-stage]");
  const grid = $("[data-tiles]");
  const wanted = new Map();

  // Me first (a mirrored self-view).
  const myPeer = state.sfu && state.sfu.peerId;
  const meKey = "me";
  const mine = tileFor(meKey, () => makeTile(`${state.me.display_name} (you)`));
  mine.classList.add("self");
  wanted.set(meKey, { tile: mine, stream: state.ticket.may_publish ? state.local : null, muted: true, presenter: state.presenter, video: state.ticket.may_publish && state.camOn, audio: state.ticket.may_publish && state.micOn, peerId: myPeer, hand: state.hand });

  // Everyone else, by peer; a screen share gets a tile of its own.
  for (const peer of state.peers.values()) {
    if (peer.peer_id === myPeer) continue;
    const camera = [...state.streams.values()].find((s) => s.peer_id === peer.peer_id && s.label !== "screen");
    const p = state.participants.get(peer.user_id);
    const key = `peer:${peer.peer_id}`;
    const tile = tileFor(key, () => makeTile(peer.display));
    const stream = camera ? state.media.get(camera.stream_id) : null;
    wanted.set(key, {
      tile,
      stream,
      streamId: stream ? camera.stream_id : null,
      muted: false,
      presenter: peer.role === "presenter",
      video: !!stream && (!p || p.video),
      audio: p ? p.audio : !!camera,
      peerId: peer.peer_id,
      hand: !!(p && p.hand_raised_at),
    });
  }
  let featured = null;
  for (const s of state.streams.values()) {
    if (s.label !== "screen") continue;
    const peer = state.peers.get(s.peer_id);
    const mineScreen = s.peer_id === myPeer;
    const key = `screen:${s.stream_id}`;
    const name = mineScreen ? "Your screen" : `${peer ? peer.display : "Someone"}'s screen`;
    const tile = tileFor(key, () => makeTile(name));
    tile.classList.add("screen");
    const stream = mineScreen ? state.screen : state.media.get(s.stream_id);
    wanted.set(key, { tile, stream, streamId: !mineScreen && stream ? s.stream_id : null, muted: true, presenter: false, video: !!stream, audio: true, peerId: null, hand: false });
    featured = key;
  }
  if (!featured) {
    // The teacher's camera, large, for the students.
    for (const [key, info] of wanted) {
      if (key !== meKey && info.presenter) {
        featured = key;
        break;
      }
    }
  }

  for (const [key, tile] of tiles) {
    if (!wanted.has(key)) {
      tile.remove();
      tiles.delete(key);
    }
  }
  const order = [...wanted.keys()].filter((k) => k !== featured);
  for (const [key, info] of wanted) {
    const { tile } = info;
    const video = tile.querySelector("video");
    if (info.stream && video.srcObject !== info.stream) video.srcObject = info.stream;
    if (!info.stream && video.srcObject) video.srcObject = null;
    if (info.streamId) tile.dataset.streamId = info.streamId;
    else delete tile.dataset.streamId;
    video.muted = info.muted;
    const paused = !!info.streamId && state.paused.has(info.streamId);
    tile.classList.toggle("no-video", !info.video || paused);
    tile.classList.toggle("cam-off", !info.video);
    tile.title = paused ? "Video paused: the connection is too slow for it" : "";
    tile.classList.toggle("featured", key === featured);
    tile.classList.toggle("presenter", info.presenter);
    const speaking = info.peerId && info.peerId === state.speaker;
    tile.classList.toggle("speaking", !!speaking);
    tile.querySelector(".speaking-text").textContent = speaking ? "speaking" : "";
    tile.querySelector(".mic-off").hidden = info.audio || key.startsWith("screen:");
    const badge = tile.querySelector(".badge");
    badge.hidden = !info.presenter;
    badge.textContent = info.presenter ? "Teacher" : "";
    tile.querySelector(".hand-badge").hidden = !info.hand;
  }
  if (featured) {
    const f = wanted.get(featured).tile;
    if (f.parentElement !== stage) stage.replaceChildren(f);
  } else {
    stage.replaceChildren();
  }
  stage.hidden = !featured;
  if (featured) wanted.get(featured).tile.hidden = false;
  order.forEach((key, i) => {
    const t = wanted.get(key).tile;
    if (grid.children[i] !== t) grid.insertBefore(t, grid.children[i] || null);
  });
  grid.dataset.count = String(order.length);
  $("[data-room]").classList.toggle("has-stage", !!featured);
  paginate();
  fitGrid();
  scheduleViews();
}

// ---- grid pages: more tiles than fit are paged; only the current page's are shown ------------

const MAX_PAGE = 16;
const TILE_GAP = 10;

function pageCapacity() {
  if (window.matchMedia("(max-width: 760px)").matches) return MAX_PAGE; // phones scroll
  const area = $(".room-main");
  if ($("[data-room]").classList.contains("has-stage")) {
    // a strip of 200 px tiles under the large video
    return Math.max(1, Math.min(MAX_PAGE, Math.floor((area.clientWidth - 24 + TILE_GAP) / (200 + TILE_GAP))));
  }
  const cols = Math.max(1, Math.floor((area.clientWidth - 24 + TILE_GAP) / (240 + TILE_GAP)));
  const rows = Math.max(1, Math.floor((area.clientHeight - 24 - 44 + TILE_GAP) / (135 + TILE_GAP)));
  return Math.max(1, Math.min(MAX_PAGE, cols * rows));
}

function paginate() {
  const grid = $("[data-tiles]");
  const all = [...grid.children];
  const size = pageCapacity();
  state.pages = Math.max(1, Math.ceil(all.length / size));
  state.page = Math.min(state.page, state.pages - 1);
  all.forEach((tile, i) => {
    tile.hidden = Math.floor(i / size) !== state.page;
  });
  const pager = $("[data-pager]");
  pager.hidden = state.pages < 2;
  $("[data-page-label]").textContent = `Page ${state.page + 1} of ${state.pages}`;
  $("[data-page-prev]").disabled = state.page === 0;
  $("[data-page-next]").disabled = state.page >= state.pages - 1;
}

function turnPage(step) {
  state.page = Math.max(0, Math.min(state.pages - 1, state.page + step));
  paginate();
  fitGrid();
  scheduleViews();
}
$("[data-page-prev]").addEventListener("click", () => turnPage(-1));
$("[data-page-next]").addEventListener("click", () => turnPage(1));

// Without a featured tile, the grid fills the video area: columns by count, and no wider
// than the height allows for 16:9 tiles.
function fitGrid() {
  const grid = $("[data-tiles]");
  const n = [...grid.children].filter((t) => !t.hidden).length || 1;
  const cols = n <= 1 ? 1 : n <= 4 ? 2 : n <= 9 ? 3 : 4;
  const rows = Math.ceil(n / cols);
  const area = $(".room-main");
  const gap = 10;
  const height = area.clientHeight - 24 - gap * (rows - 1);
  const byHeight = (height / rows) * (16 / 9) * cols + gap * (cols - 1);
  grid.style.setProperty("--cols", String(cols));
  grid.style.setProperty("--fit-width", `${Math.max(240, Math.floor(byHeight))}px`);
}
window.addEventListener("resize", () => {
  if ($("[data-room]").hidden) return;
  paginate();
  fitGrid();
  scheduleViews();
});

// ---- people, hands ----------------------------------------------------------------------------

function renderPeople() {
  const list = $("[data-people]");
  const now = Date.now() + state.clockOffset;
  const people = [...state.participants.values()].sort(
    (a, b) => (a.role === "presenter" ? -1 : 0) - (b.role === "presenter" ? -1 : 0) || a.display.localeCompare(b.display),
  );
  $("[data-people-count]").textContent = String(people.length);
  list.replaceChildren(
    ...people.map((p) => {
      const isMe = p.user_id === state.me.id;
      const avatar = el("span", { class: "avatar-sm", "aria-hidden": "true", text: initials(p.display) });
      avatar.style.setProperty("--h", hue(p.display));
      const controls = [];
      const muted = p.muted || {};
      if (state.presenter && !isMe && p.role !== "presenter") {
        const send = (msg) => state.live.send({ ...msg, user_id: p.user_id });
        controls.push(
          muted.audio
            ? el("button", { type: "button", class: "btn btn-small", text: "Unmute", "aria-label": `Allow ${p.display} to speak`, onclick: () => send({ type: "unmute", kind: "audio" }) })
            : el("button", { type: "button", class: "btn btn-small", text: "Mute", "aria-label": `Mute ${p.display}`, onclick: () => send({ type: "mute", kind: "audio" }) }),
          muted.audio && muted.audio.locked
            ? null
            : el("button", { type: "button", class: "btn btn-small", text: "Lock", title: "Mute, and only you can unmute", "aria-label": `Lock ${p.display}'s microphone`, onclick: () => send({ type: "mute", kind: "audio", locked: true }) }),
          muted.video
            ? el("button", { type: "button", class: "btn btn-small", text: "Allow video", "aria-label": `Allow ${p.display}'s video`, onclick: () => send({ type: "unmute", kind: "video" }) })
            : el("button", { type: "button", class: "btn btn-small", text: "Stop video", "aria-label": `Stop ${p.display}'s video`, onclick: () => send({ type: "mute", kind: "video" }) }),
          el("button", { type: "button", class: "btn btn-small btn-danger-quiet", text: "Remove", "aria-label": `Remove ${p.display}`, onclick: () => askRemove(p) }),
        );
      }
      return el(
        "li",
        { class: "person", "data-user-id": p.user_id },
        avatar,
        el(
          "div",
          { class: "person-main" },
          el("span", { class: "person-name", text: p.display + (isMe ? " (you)" : "") }),
          el("span", {
            class: "muted small",
            text: `${p.role === "presenter" ? "Teacher · " : ""}${p.channel === false ? "media only · " : ""}in class ${duration(now - new Date(p.since).getTime())}`,
            "data-since": p.since,
          }),
        ),
        el(
          "span",
          { class: "person-icons" },
          p.hand_raised_at ? el("span", { class: "hand-badge", title: "Hand raised" }, el("span", { class: "sr-only", text: "hand raised" })) : null,
          el("span", { class: `icon-mic ${p.audio && !muted.audio ? "" : "is-off"}`, title: muted.audio ? `Muted by ${muted.audio.by}${muted.audio.locked ? " (locked)" : ""}` : p.audio ? "Microphone on" : "Microphone off" }),
          el("span", { class: `icon-cam ${p.video && !muted.video ? "" : "is-off"}`, title: muted.video ? `Video stopped by ${muted.video.by}` : p.video ? "Camera on" : "Camera off" }),
        ),
        controls.length ? el("span", { class: "person-actions" }, ...controls) : null,
      );
    }),
  );
  // Raised hands, in the order they went up (the teacher's queue).
  const hands = people.filter((p) => p.hand_raised_at).sort((a, b) => new Date(a.hand_raised_at) - new Date(b.hand_raised_at));
  const section = $("[data-hands-section]");
  section.hidden = !(state.presenter && hands.length);
  $("[data-hand-queue]").replaceChildren(
    ...hands.map((p, i) =>
      el(
        "li",
        { class: "hand-item" },
        el("span", { class: "hand-pos", text: String(i + 1) }),
        el("span", { class: "person-name", text: p.display }),
        el("button", { type: "button", class: "btn btn-small", text: "Lower", "aria-label": `Lower ${p.display}'s hand`, onclick: () => state.live.send({ type: "lower-hand", user_id: p.user_id }) }),
      ),
    ),
  );
  $("[data-hand]").dataset.queue = String(hands.length);
}

let removing = null;
function askRemove(participant) {
  removing = participant;
  const dialog = $("[data-remove-dialog]");
  dialog.querySelector("[data-remove-name]").textContent = participant.display;
  dialog.showModal();
}
$("[data-remove-dialog]").addEventListener("close", (ev) => {
  const dialog = ev.target;
  if (dialog.returnValue === "remove" && removing) {
    const reason = dialog.querySelector("#remove-reason").value.trim() || "Removed by the teacher";
    state.live.send({ type: "remove", user_id: removing.user_id, reason });
    toast(`${removing.display} was removed from the class.`);
  }
  removing = null;
});

// ---- chat -----------------------------------------------------------------------------------

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });

function addChat(message) {
  const log = $("[data-chat-log]");
  const existing = log.querySelector(`[data-id="${message.id}"]`);
  const item = el(
    "li",
    { class: "chat-msg" + (message.author_id === state.me.id ? " mine" : ""), "data-id": message.id },
    el(
      "div",
      { class: "chat-meta" },
      el("strong", { text: message.author_name || "Someone" }),
      el("time", { datetime: message.created_at, text: timeFmt.format(new Date(message.created_at)) }),
    ),
    el("p", { class: message.body === null ? "chat-body deleted" : "chat-body", text: message.body === null ? "Message deleted" : message.body }),
  );
  // Authors delete their own messages; the teacher moderates any.
  if (message.body !== null && (message.author_id === state.me.id || state.presenter)) {
    item.querySelector(".chat-meta").append(
      el("button", {
        type: "button",
        class: "chat-delete",
        text: "Delete",
        "aria-label": `Delete the message from ${message.author_name || "someone"}`,
        onclick: async () => {
          try {
            await api(`/api/v1/chat/${message.id}`, { method: "DELETE" });
            addChat({ ...message, body: null });
          } catch (e) {
            toast(`Not deleted: ${describeError(e)}`, "warn");
          }
        },
      }),
    );
  }
  if (existing) {
    existing.replaceWith(item);
    return;
  }
  state.chatIds.add(message.id);
  log.append(item);
  log.scrollTop = log.scrollHeight;
  const chatTab = $("#tab-chat");
  if (chatTab.getAttribute("aria-selected") !== "true" && message.author_id !== state.me.id) {
    const badge = $("[data-chat-unread]");
    badge.textContent = String(Number(badge.textContent || 0) + 1);
    badge.hidden = false;
  }
}

async function loadChat() {
  try {
    const page = await api(`/api/v1/sessions/${sessionId}/chat?limit=50`);
    $("[data-chat-log]").replaceChildren();
    for (const msg of page.items.slice().reverse()) addChat(msg);
  } catch (e) {
    toast(`Chat history could not be loaded: ${describeError(e)}`, "warn");
  }
}

$("[data-chat-form]").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const input = ev.target.elements.body;
  const body = input.value;
  if (!body.trim()) return;
  input.value = "";
  try {
    const msg = await api(`/api/v1/sessions/${sessionId}/chat`, { method: "POST", body: { body } });
    addChat({ ...msg, author_name: state.me.display_name });
  } catch (e) {
    input.value = body;
    toast(`Not sent: ${describeError(e)}`, "warn");
  }
});

// ---- tabs in the side panel ---------------------------------------------------------------------

const sideTabs = [...document.querySelectorAll('.side [role="tab"]')];
function selectTab(tab, focus) {
  for (const t of sideTabs) {
    const on = t === tab;
    t.setAttribute("aria-selected", String(on));
    t.tabIndex = on ? 0 : -1;
    document.getElementById(t.getAttribute("aria-controls")).hidden = !on;
  }
  if (tab.id === "tab-chat") {
    $("[data-chat-unread]").hidden = true;
    $("[data-chat-unread]").textContent = "";
  }
  if (focus) tab.focus();
}
sideTabs.forEach((tab, i) => {
  tab.addEventListener("click", () => selectTab(tab, false));
  tab.addEventListener("keydown", (ev) => {
    if (ev.key === "ArrowRight" || ev.key === "ArrowLeft") {
      selectTab(sideTabs[(i + (ev.key === "ArrowRight" ? 1 : sideTabs.length - 1)) % sideTabs.length], true);
      ev.preventDefault();
    }
  });
});

$("[data-toggle-side]").addEventListener("click", (ev) => {
  const room = $("[data-room]");
  const open = room.classList.toggle("side-closed");
  ev.currentTarget.setAttribute("aria-expanded", String(!open));
});

// ---- joining ----------------------------------------------------------------------------------

function onSfu(type, data) {
  switch (type) {
    case "state":
      setConn();
      break;
    case "joined":
      state.peers = new Map(data.peers.map((p) => [p.peer_id, p]));
      state.peers.set(data.peer_id, { peer_id: data.peer_id, user_id: state.me.id, display: state.me.display_name, role: data.role });
      // (resumed: the same peer, whose subscriptions and their media carry on)
      state.streams.clear();
      if (!data.resumed) state.media.clear();
      state.speaker = data.active_speaker;
      renderTiles();
      break;
    case "peer-joined":
      state.peers.set(data.peer.peer_id, data.peer);
      renderTiles();
      break;
    case "peer-left":
      state.peers.delete(data.peer_id);
      renderTiles();
      break;
    case "stream-added":
      state.streams.set(data.stream_id, data);
      renderTiles();
      break;
    case "stream-removed":
      state.streams.delete(data.stream_id);
      state.media.delete(data.stream_id);
      renderTiles();
      break;
    case "track":
      state.media.set(data.streamId, data.media);
      renderTiles();
      break;
    case "subscription-ended":
      state.media.delete(data.streamId);
      renderTiles();
      break;
    case "active-speaker":
      state.speaker = data.peer_id;
      renderTiles();
      break;
    case "video-paused":
      // (a hidden tile's pause needs no sign: it is not shown)
      if (data.reason === "bandwidth") state.paused.add(data.stream_id);
      renderTiles();
      break;
    case "video-resumed":
      state.paused.delete(data.stream_id);
      renderTiles();
      break;
    case "left":
      onLeftBySfu(data.reason);
      break;
    case "grant":
      onGrant(data);
      break;
    case "unreachable":
      finish("This class cannot be reached", data.message);
      break;
    default:
      break;
  }
}

/** The server changed what we may do in the room (the floor closed, a role changed). */
function onGrant(grant) {
  const could = state.ticket.may_publish;
  state.ticket = { ...state.ticket, role: grant.role, may_publish: grant.may_publish };
  state.presenter = grant.role === "presenter";
  $("[data-end]").hidden = !state.presenter;
  $("[data-share]").hidden = !grant.may_publish || !navigator.mediaDevices.getDisplayMedia;
  $("[data-mic]").hidden = !grant.may_publish;
  $("[data-cam]").hidden = !grant.may_publish;
  if (could && !grant.may_publish) {
    toast("You can no longer share your camera, microphone or screen here.", "warn");
  } else if (!could && grant.may_publish && state.local) {
    state.sfu.publish("camera", state.local);
  }
  renderToggles();
  renderRecording();
  sendMedia();
  renderTiles();
}

async function onLeftBySfu(reason) {
  if (state.over) return;
  if (reason.startsWith("removed")) {
    removed(reason.replace(/^removed:\s*/, "Reason: "));
    return;
  }
  try {
    const session = await api(`/api/v1/sessions/${sessionId}`);
    if (session.status !== "live") {
      finish("The class has ended", "The teacher ended this session. Thank you for joining!");
      return;
    }
  } catch {
    /* try again below */
  }
  if (reason.startsWith("access revoked")) {
    finish("You are no longer in this class", reason.replace(/^access revoked:\s*/, "Reason: "));
    return;
  }
  state.sfu.fail(state.sfu.generation, new Error(reason));
}

function onLive(type, data) {
  switch (type) {
    case "state":
      setConn();
      break;
    case "unreachable":
      finish("This class cannot be reached", data.message);
      break;
    case "ready": {
      state.clockOffset = new Date(data.now).getTime() - Date.now();
      state.participants = new Map(data.participants.map((p) => [p.user_id, p]));
      const mine = state.participants.get(state.me.id);
      if (mine && mine.muted) state.serverMute = { audio: mine.muted.audio, video: mine.muted.video };
      state.recording = data.recording;
      renderRecording();
      sendMedia();
      if (state.hand) state.live.send({ type: "hand", raised: true }); // after a reconnect
      renderPeople();
      renderTiles();
      break;
    }
    case "participant-joined":
      state.participants.set(data.participant.user_id, data.participant);
      renderPeople();
      renderTiles();
      break;
    case "participant-left":
      state.participants.delete(data.user_id);
      renderPeople();
      renderTiles();
      break;
    case "hand": {
      const p = state.participants.get(data.user_id);
      if (p) p.hand_raised_at = data.at;
      if (data.user_id === state.me.id) {
        state.hand = data.raised;
        renderToggles();
      } else if (data.raised && state.presenter && p) {
        toast(`${p.display} raised a hand.`);
      }
      renderPeople();
      renderTiles();
      break;
    }
    case "media": {
      const p = state.participants.get(data.user_id);
      if (p) Object.assign(p, { audio: data.audio, video: data.video, screen: data.screen });
      renderPeople();
      renderTiles();
      break;
    }
    case "muted": {
      const p = state.participants.get(data.user_id);
      if (p) p.muted = { ...(p.muted || {}), [data.kind]: { by: data.by, locked: data.locked } };
      if (data.user_id === state.me.id) {
        state.serverMute[data.kind] = { by: data.by, locked: data.locked };
        state.askedUnmute[data.kind] = false;
        const what = data.kind === "audio" ? "microphone" : "camera";
        if (data.kind === "audio") setMic(false);
        else setCam(false);
        const text = data.locked
          ? `${data.by} turned off your ${what} and locked it.`
          : `${data.by} turned off your ${what}. You can turn it back on when you want to.`;
        toast(text, "warn");
        showNotice(text);
      }
      renderPeople();
      break;
    }
    case "unmuted": {
      const p = state.participants.get(data.user_id);
      if (p) p.muted = { ...(p.muted || {}), [data.kind]: null };
      if (data.user_id === state.me.id) {
        state.serverMute[data.kind] = null;
        showNotice("");
        if (state.askedUnmute[data.kind]) {
          if (data.kind === "audio") setMic(true);
          else setCam(true);
        } else {
          toast(`${data.by} allowed your ${data.kind === "audio" ? "microphone" : "camera"} again.`);
        }
        state.askedUnmute[data.kind] = false;
        renderToggles();
      }
      renderPeople();
      break;
    }
    case "removed":
      removed(data.by ? `${data.by}: ${data.reason}` : data.reason);
      break;
    case "ended":
      finish("The class has ended", state.presenter ? "You ended this session for everyone." : `${data.by || "The teacher"} ended this session. Thank you for joining!`, "ended");
      break;
    case "role": {
      const p = state.participants.get(data.user_id);
      if (p) p.role = data.role;
      if (data.user_id === state.me.id) {
        state.presenter = data.role === "presenter";
        $("[data-end]").hidden = !state.presenter;
        renderRecording();
      }
      renderPeople();
      renderTiles();
      break;
    }
    case "chat":
      addChat(data.message);
      break;
    case "recording": {
      const was = state.recording.active;
      state.recording = data.recording;
      renderRecording();
      if (data.recording.active && !was) toast("This class is now being recorded.");
      if (!data.recording.active && was) toast("Recording stopped.");
      break;
    }
    case "error": {
      if (data.error.code === "removed" || data.error.code === "session_not_live" || data.error.code === "not_found") {
        const { code, message, details } = data.error;
        const text = describeError(new ApiError(0, code, message, details));
        if (code === "removed") removed(text);
        else finish("This class is not open", text);
      } else {
        if (data.error.code === "mute_locked") state.askedUnmute = { audio: false, video: false };
        toast(data.error.message, "warn");
      }
      break;
    }
    default:
      break;
  }
}

function renderRecording() {
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

async function join() {
  const button = $("[data-join]");
  const error = $("[data-join-error]");
  button.disabled = true;
  error.hidden = true;
  try {
    state.ticket = await api(`/api/v1/sessions/${sessionId}/join`, { method: "POST" });
  } catch (e) {
    if (e.code === "removed") {
      removed(describeError(e));
      return;
    }
    error.textContent = describeError(e);
    error.hidden = false;
    button.disabled = false;
    return;
  }
  state.presenter = state.ticket.role === "presenter";
  if (meterStop) meterStop();
  $("[data-prejoin]").hidden = true;
  $("[data-room]").hidden = false;
  $("[data-end]").hidden = !state.presenter;
  // Phones and tablets cannot share their screen (no getDisplayMedia): no button then.
  $("[data-share]").hidden = !state.ticket.may_publish || !navigator.mediaDevices.getDisplayMedia;
  $("[data-mic]").hidden = !state.ticket.may_publish;
  $("[data-cam]").hidden = !state.ticket.may_publish;
  renderToggles();
  renderRecording();
  // fresh: the server refused the last token (expired, revoked): refresh it first.
  const token = (fresh) => (fresh ? refreshTokens().then((s) => s.access_token) : accessToken());
  state.live = new LiveChannel({ url: `${wsBase}/api/v1/sessions/${sessionId}/live`, token, emit: onLive });
  state.sfu = new SfuClient({ url: `${wsBase}/api/v1/sfu/ws`, room: state.ticket.room_name, token, emit: onSfu });
  state.live.start();
  state.sfu.start();
  if (state.ticket.may_publish && state.local) state.sfu.publish("camera", state.local);
  loadChat();
  renderTiles();
  startClock();
  $("[data-mic]").focus();
}

function startClock() {
  const clock = $("[data-clock]");
  clock.hidden = false;
  const started = state.session.started_at ? new Date(state.session.started_at).getTime() : Date.now();
  state.clock = setInterval(() => {
    clock.textContent = duration(Date.now() + state.clockOffset - started);
    for (const span of document.querySelectorAll("[data-since]")) {
      span.textContent = span.textContent.replace(/in class .*/, `in class ${duration(Date.now() + state.clockOffset - new Date(span.dataset.since).getTime())}`);
    }
  }, 1000);
}

// ---- controls ---------------------------------------------------------------------------------

$("[data-pre-mic]").addEventListener("click", () => setMic(!state.micOn));
$("[data-pre-cam]").addEventListener("click", () => setCam(!state.camOn));
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

function stopShare() {
  if (!state.screen) return;
  state.screen.getTracks().forEach((t) => t.stop());
  state.screen = null;
  state.sfu.unpublish("screen");
  renderToggles();
  sendMedia();
  renderTiles();
}

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
  if (ev.target.closest("input, textarea, select, dialog")) return;
  const key = ev.key.toLowerCase();
  if (key === "m") $("[data-mic]").click();
  else if (key === "v") $("[data-cam]").click();
  else if (key === "h") $("[data-hand]").click();
});

// ---- start ------------------------------------------------------------------------------------

async function main() {
  state.me = await requireUser();
  try {
    state.session = await api(`/api/v1/sessions/${sessionId}`);
  } catch (e) {
    finish("This class cannot be opened", describeError(e));
    return;
  }
  $("[data-session-title]").textContent = state.session.title;
  document.title = `${state.session.title} · VTP Classroom`;
  api(`/api/v1/courses/${state.session.course_id}`)
    .then((c) => ($("[data-course-title]").textContent = `${c.code} · ${c.title}`))
    .catch(() => {});
  if (state.session.status === "live") {
    // A removed student sees that at once, not a pre-join screen with Join enabled.
    try {
      state.ticket = await api(`/api/v1/sessions/${sessionId}/join`, { method: "POST" });
    } catch (e) {
      if (e.code === "removed") {
        removed(describeError(e));
        return;
      }
    }
  } else {
    const info = $("[data-prejoin-info]");
    info.textContent = state.session.status === "scheduled"
      ? `This class has not started yet (scheduled for ${new Date(state.session.scheduled_start).toLocaleString()}).`
      : "This class has ended.";
  }
  renderToggles();
  try {
    await openDevices();
    await fillDevices();
  } catch (e) {
    showNotice(`Your camera or microphone is not available (${e.message}). You can still join and watch.`);
    state.micOn = false;
    state.camOn = false;
    renderToggles();
  }
  $("[data-join]").disabled = false;
  $("[data-join]").focus();
}

window.vtpClassroom = {
  state,
  async stats() {
    const sfu = state.sfu ? await state.sfu.stats() : null;
    const videos = [...document.querySelectorAll(".tile")].map((tile) => {
      const v = tile.querySelector("video");
      const r = v.getBoundingClientRect();
      return {
        key: tile.dataset.key,
        name: tile.querySelector(".name").textContent,
        featured: tile.classList.contains("featured"),
        hidden: tile.hidden,
        streamId: tile.dataset.streamId || null,
        noVideo: tile.classList.contains("no-video"),
        playing: !v.paused && v.readyState >= 2,
        videoWidth: v.videoWidth,
        width: r.width,
        height: r.height,
        currentTime: v.currentTime,
      };
    });
    return { sfu, videos, page: state.page, pages: state.pages, conn: $("[data-conn]").textContent, live: state.live ? state.live.state : "idle" };
  },
};

main().catch((e) => showNotice(describeError(e)));
