// Joining and staying connected: the SFU client and the live channel, what they report,
// the connection pill, and the end of the class (removed, ended, left).
import { ApiError, api, accessToken, describeError, refreshTokens, toast } from "../api.js";
import { LiveChannel } from "../live.js";
import { SfuClient } from "../sfu.js";
import { $, sessionId, showNotice, state, wsBase } from "./state.js";
import { duration } from "./format.js";
import { meterStop, sendMedia, setMedia } from "./media.js";
import { renderTiles } from "./grid.js";
import { renderPeople } from "./people.js";
import { addChat, loadChat } from "./chat.js";
import { renderRecording, renderToggles } from "./controls.js";

// Nothing keeps running behind the overlay: no media, no sockets, no clock, no
// "Connecting…" (the pill says why it is over: "Removed", "Ended", "Disconnected").
export function finish(title, text, reason = "closed") {
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

export function removed(text) {
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
        setMedia(data.kind, false);
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
          setMedia(data.kind, true);
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

/**
 * Asks for a join ticket, kept in state.ticket. Resolves false for a user removed from the
 * class (shown so at once, no ticket); other refusals reject, for the caller to tell.
 * @returns {Promise<boolean>}
 */
export async function requestTicket() {
  try {
    state.ticket = await api(`/api/v1/sessions/${sessionId}/join`, { method: "POST" });
  } catch (e) {
    if (e.code !== "removed") throw e;
    removed(describeError(e));
    return false;
  }
  return true;
}

export async function join() {
  const button = $("[data-join]");
  const error = $("[data-join-error]");
  button.disabled = true;
  error.hidden = true;
  try {
    if (!(await requestTicket())) return;
  } catch (e) {
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
    for (const span of /** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll("[data-since]"))) {
      span.textContent = span.textContent.replace(/in class .*/, `in class ${duration(Date.now() + state.clockOffset - new Date(span.dataset.since).getTime())}`);
    }
  }, 1000);
}
