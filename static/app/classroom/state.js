// What the classroom page knows: the one `state` object the other modules read and
// change, the page's session and its DOM shorthand.

/** @type {(sel: string) => any} (an element of whatever kind the selector names) */
export const $ = (sel) => document.querySelector(sel);
const root = $(".classroom");
export const sessionId = root.dataset.sessionId;
export const wsBase = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}`;

export const state = {
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

export function showNotice(text) {
  const n = $("[data-notice]");
  n.textContent = text;
  n.hidden = !text;
}
