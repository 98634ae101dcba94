// The video grid: a tile per person and screen share, the featured tile, pages of
// tiles, and how each remote video is shown (sent to the server for adaptive streams).
import { el } from "../api.js";
import { $, state } from "./state.js";
import { hue, initials } from "./format.js";

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

export function renderTiles() {
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
