// A client of VTP's SFU WebSocket protocol (docs/protocol.md): one RTCPeerConnection per
// publication (we offer, sendonly) and per subscription (the server offers). When the
// network changes (Wi-Fi to mobile) it keeps its publications and subscriptions: a
// connection whose ICE drops is restarted (restart-ice), and a WebSocket that drops is
// replaced by one that resumes the same peer (join with resume_token), which then restarts
// ICE on every connection. Only when that cannot be (the peer is gone, the server cannot
// restart ICE) does it rejoin, republish and resubscribe. It keeps the server's copy of the
// access token fresh (auth again when the token changes), as the server closes a
// WebSocket whose token expired (4401). With several VTP nodes, the node the page came
// from relays its signalling to the node that serves the room (docs/protocol.md "Several
// nodes"); should a node send it elsewhere instead (error room_elsewhere), it carries on
// there, as if it had connected there first. Close 1012 means our peer is gone with the
// room's node (it died: error node_gone; or it is draining: "reconnect", naming the
// room's new node or none), so we join afresh there, or at the page's node.
"use strict";

import { BACKOFF_MS, Reconnect, UNREACHABLE_RETRY_MS, abandon, watchOpening } from "./reconnect.js";

const RESUME_BACKOFF_MS = [0, 300, 1000, 2000, 4000]; // the peer waits VTP_SFU_RESUME_S
// A connection that is not back this long after its ICE restart: start over (without
// ICE restart, the server having several media ports: after DISCONNECTED_GRACE_MS).
const RECOVERY_MS = 12000;
const DISCONNECTED_GRACE_MS = 4000;
// A restart-ice request not answered this soon: the WebSocket died with the old network
// (TCP notices after minutes), so resume on a new one.
const REPLY_MS = 2500;
// Every connection silent this long at once (no media, no RTCP, no STUN reply), when
// something flowed before: the network under us changed, most likely - long before
// Chromium's ICE says "disconnected" (~5-6 s). Checked every WATCH_MS; the WebSocket
// then gets PING_MS to answer a ping before we resume on a new one.
const WATCH_MS = 500;
const STALL_MS = 1200;
const PING_MS = 600; // (too short costs little: a resume of a live socket works too)
const RENEW_CHECK_MS = 10000; // the page refreshes tokens 60 s before expiry: we follow
const CLOSE_UNAUTHORIZED = 4401; // token expired or revoked: reconnect with a fresh one
const CLOSE_FORBIDDEN = 4403; // the right to be in the room is gone: do not come back
const CLOSE_MOVED = 1012; // after "reconnect": the node is draining, the room moved
// room_elsewhere answers followed in a row before giving up (two nodes disagreeing would
// otherwise send us back and forth for ever)
const MAX_REDIRECTS = 2;
const VIEW_FLUSH_MS = 250; // size and visibility reports are coalesced this long
// Cameras go out as three simulcast encodings (lowest first); the server forwards each
// subscriber the one that fits the size it shows the video at (docs/protocol.md). Each
// has three temporal layers (L1T3), so the server can also send a lower frame rate.
const CAMERA_ENCODINGS = [
  { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 150000, scalabilityMode: "L1T3" },
  { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 500000, scalabilityMode: "L1T3" },
  { rid: "f", scaleResolutionDownBy: 1, maxBitrate: 1500000, scalabilityMode: "L1T3" },
];

export class SfuClient {
  /**
   * @param {object} o
   * @param {string} o.url  ws(s)://host/api/v1/sfu/ws
   * @param {string} o.room
   * @param {(fresh?: boolean) => Promise<string>} o.token  a valid access token
   *   (fresh = true: a newly refreshed one, after the server refused the last)
   * @param {(type: string, data: any) => void} o.emit  events for the page
   */
  constructor({ url, room, token, emit }) {
    this.url = url;
    this.homeUrl = url;
    this.redirects = 0;
    this.movedTo = null; // the "reconnect" message of a draining node
    this.room = room;
    this.token = token;
    this.emit = emit;
    this.ws = null;
    this.state = "idle";
    this.stopped = false;
    this.generation = 0;
    this.retry = new Reconnect();
    this.peerId = null;
    this.iceServers = [];
    this.resumeToken = null; // to take our peer back on a new WebSocket
    this.joinedPublishing = false; // our last join said "publish": true
    this.media = 0; // bumped when our connections are dropped: their callbacks stop
    this.iceRestarts = 0;
    this.canRestartIce = true; // until the server says it cannot (unsupported)
    this.resumes = 0;
    this.pending = new Map(); // request_id -> {resolve, reject}
    this.nextId = 1;
    this.publishing = new Map(); // label -> {stream, pc, id, off: Set of kinds not sent}
    this.subscriptions = new Map(); // stream_id -> {id, streamId, peerId, pc, media}
    this.streams = new Map(); // stream_id -> stream-added message
    this.views = new Map(); // stream_id -> {width, height, visible, sent}: how we show it
    this.viewTimer = null;
    this.reconnects = 0;
    this.sentToken = null; // the token the server holds for this WebSocket
    this.renewTimer = null;
    this.needFreshToken = false;
    this.mayPublish = true;
  }

  setState(state, detail) {
    this.state = state;
    this.emit("state", { state, detail });
  }

  start() {
    this.stopped = false;
    this.connect();
    clearInterval(this.watchTimer);
    this.flowing = false;
    this.watchTimer = setInterval(() => this.watchMedia().catch(() => {}), WATCH_MS);
  }

  /** Notice a dead network by our connections all going quiet together. */
  async watchMedia() {
    const pcs = [...this.subscriptions.values()].map((s) => s.pc).concat([...this.publishing.values()].map((p) => p.pc));
    const now = performance.now();
    let flowing = false;
    for (const pc of pcs) {
      if (!pc || !pc.getStats || pc.signalingState === "closed") continue;
      let bytes = 0;
      (await pc.getStats()).forEach((s) => {
        if (s.type === "transport") bytes += s.bytesReceived || 0;
      });
      if (bytes !== pc.vtpBytes) {
        pc.vtpBytes = bytes;
        pc.vtpChanged = now;
      }
      if (now - pc.vtpChanged < STALL_MS) flowing = true;
    }
    const stalled = this.flowing && !flowing; // (once per stall, not again while it lasts)
    this.flowing = flowing;
    if (stalled && this.state === "connected") await this.checkNetwork(pcs);
  }

  /** Our connections went quiet: a WebSocket that does not answer died with the network
   * (resume on a new one, which restarts ICE everywhere); one that does means only the
   * media paths broke (restart ICE on them). */
  async checkNetwork(pcs) {
    const media = this.media;
    const ws = this.ws;
    try {
      await this.request({ type: "ping" }, PING_MS);
    } catch (error) {
      if (error && error.code === "timeout" && this.ws === ws) this.resume("no reply to ping: the network changed");
      return;
    }
    if (media !== this.media) return;
    for (const [, sub] of this.subscriptions) if (sub.answered && pcs.includes(sub.pc)) this.restartIce(sub.pc, sub.id, false);
    for (const [, pub] of this.publishing) if (pub.id && pcs.includes(pub.pc)) this.restartIce(pub.pc, pub.id, true);
  }

  connect() {
    const gen = ++this.generation;
    this.setState(this.reconnects ? "reconnecting" : "connecting");
    const ws = new WebSocket(this.url);
    this.ws = ws;
    let opened = false;
    const unwatch = watchOpening(ws, (why) => closed(1006, why));
    ws.onopen = async () => {
      opened = true;
      unwatch();
      try {
        const token = await this.token(this.needFreshToken);
        this.needFreshToken = false;
        await this.request({ type: "auth", token });
        if (gen !== this.generation) return;
        this.sentToken = token;
        // (one who publishes, even a muted camera, is served where the room lives, not
        // from a cascade's copy of it: there, a publish is refused - relayed_room - and
        // the next join says so)
        const join = { type: "join", room: this.room, publish: this.publishing.size > 0 };
        if (this.resumeToken && this.peerId) {
          join.resume_token = this.resumeToken;
          // what we can carry on (carryOn keeps these): the server closes the others
          join.connections = this.claimedConnections();
        }
        const joined = await this.request(join);
        if (gen !== this.generation) return;
        this.retry.succeeded();
        this.redirects = 0;
        if (!joined.resumed) this.teardown(new Error("a new peer"));
        this.peerId = joined.peer_id;
        this.joinedPublishing = join.publish && !joined.resumed; // (a resume keeps the peer)
        this.resumeToken = joined.resume_token || null;
        this.mayPublish = joined.may_publish;
        this.iceServers = joined.ice_servers || [];
        // (only now: the teardown of a new peer above stops the renewal timer)
        this.keepTokenFresh(gen);
        this.setState("connected");
        this.emit("joined", joined);
        if (joined.resumed) {
          this.resumes += 1;
          this.carryOn(new Set(joined.connections), gen);
          return;
        }
        for (const [label, pub] of this.publishing) {
          this.startPublication(label, pub.stream, gen).catch((e) => this.publishFailed(gen, label, e));
        }
      } catch (error) {
        if (error && error.code === "room_elsewhere" && gen === this.generation) {
          this.redirect(ws, error);
          return;
        }
        this.emit("error", error);
        if (gen === this.generation) ws.close();
      }
    };
    ws.onmessage = (ev) => this.onMessage(JSON.parse(ev.data), gen);
    const closed = (/** @type {number} */ code, why = `connection lost (${code})`) => {
      if (gen !== this.generation) return;
      if (code === CLOSE_FORBIDDEN) this.stopped = true; // removed, unenrolled, ended
      if (this.stopped) {
        this.teardown(new Error("websocket closed"));
        this.setState("closed", code);
        return;
      }
      if (code === CLOSE_MOVED || this.movedTo) {
        this.moved(this.movedTo);
        return;
      }
      if (code === CLOSE_UNAUTHORIZED) this.needFreshToken = true;
      // our connections carry on while a new socket takes the peer back (or, if it
      // cannot, they are dropped then)
      this.rejectPending(new Error("websocket closed"));
      if (!opened && this.url !== this.homeUrl) {
        // The node we were sent to does not answer: it died, and the nodes name it until
        // it leaves the registry (VTP_NODE_TTL_S, a few seconds). Ask the page's node
        // again, steadily (not backing off further): it places the room again then. Not
        // a loop between disagreeing nodes either.
        this.redirects = 0;
        this.url = this.homeUrl;
        this.reconnectLater(`the class's server cannot be reached: ${why}`, UNREACHABLE_RETRY_MS);
        return;
      }
      this.reconnectLater(why);
    };
    ws.onclose = (ev) => {
      unwatch();
      closed(ev.code);
    };
  }

  /** Another node serves the room: carry on there with the same token, peer state and
   * publications (a resume token, if any, is that node's: it held our peer). */
  redirect(ws, error) {
    abandon(ws);
    this.rejectPending(new Error("room_elsewhere"));
    const target = error.details && error.details.url;
    if (!target || this.redirects >= MAX_REDIRECTS) {
      this.stopped = true;
      this.teardown(error);
      const why = Object.assign(new Error(`The class's server could not be reached: the servers kept sending this page elsewhere (${error.message}).`), { code: "redirect_loop" });
      this.setState("closed", why.message);
      this.emit("unreachable", why);
      return;
    }
    this.redirects += 1;
    this.url = socketUrl(target);
    this.generation += 1; // (the old socket's callbacks stop)
    this.connect();
  }

  /** The node we were on is draining (docs/protocol.md, `reconnect`): it let our peer go,
   * so join afresh (republishing, resubscribing) at the room's new node, or at the page's
   * node when none was named (it places the room, or says where it is). */
  moved(msg) {
    this.movedTo = null;
    this.teardown(new Error("the class moved to another server"));
    this.url = msg && msg.url ? socketUrl(msg.url) : this.homeUrl;
    this.retry.succeeded(); // (the backoff starts over)
    this.redirects = 0;
    this.reconnectLater("the class moved to another server");
  }

  /** The WebSocket is dead though it did not say so (the network it ran on is gone):
   * drop it and take our peer back on a new one. */
  resume(reason) {
    const ws = this.ws;
    if (!ws || this.stopped) return;
    abandon(ws);
    this.rejectPending(new Error(reason));
    this.reconnectLater(reason);
  }

  /** The connections we know the server's ids of and can carry on after a resume:
   * answered subscriptions and publications the server answered. */
  claimedConnections() {
    const ids = [];
    for (const [, sub] of this.subscriptions) if (sub.answered && sub.id) ids.push(sub.id);
    for (const [, pub] of this.publishing) if (pub.pc && pub.id) ids.push(pub.id);
    return ids;
  }

  /** Resumed: connections the server no longer has are dropped (and made again), the
   * others restart ICE (the network changed under them, most likely). */
  carryOn(live, gen) {
    this.streams.clear(); // (stream-added follows for those still there)
    for (const [streamId, sub] of this.subscriptions) {
      if (sub.answered && live.has(sub.id)) {
        this.restartIce(sub.pc, sub.id, false);
        continue;
      }
      sub.pc.close();
      this.subscriptions.delete(streamId);
      this.emit("subscription-ended", sub);
    }
    for (const [label, pub] of this.publishing) {
      if (pub.pc && live.has(pub.id)) {
        this.restartIce(pub.pc, pub.id, true);
        continue;
      }
      if (pub.pc) pub.pc.close();
      pub.pc = null;
      pub.id = null;
      this.startPublication(label, pub.stream, gen).catch((e) => this.publishFailed(gen, label, e));
    }
  }

  /** ICE restart of one connection (docs/protocol.md, restart-ice): new credentials from
   * the server, a new path from our side; DTLS, SRTP and the tracks carry on. */
  async restartIce(pc, id, offerer) {
    if (pc.vtpRestarting || pc.signalingState === "closed" || this.state !== "connected") return;
    pc.vtpRestarting = true;
    const media = this.media;
    const ws = this.ws;
    try {
      const reply = await this.request({ type: "restart-ice", connection_id: id }, REPLY_MS);
      if (media !== this.media || pc.signalingState === "closed") return;
      if (offerer) {
        await pc.setLocalDescription(await pc.createOffer({ iceRestart: true }));
        await pc.setRemoteDescription({ type: "answer", sdp: reply.sdp });
      } else {
        await pc.setRemoteDescription({ type: "offer", sdp: reply.sdp });
        await pc.setLocalDescription(await pc.createAnswer());
      }
      this.iceRestarts += 1;
      this.emit("ice-restarted", { id });
    } catch (error) {
      if (media !== this.media) return;
      const up = ["connected", "completed"].includes(pc.iceConnectionState);
      if (error && error.code === "timeout") {
        if (this.ws === ws) this.resume("no reply: the WebSocket is gone");
      } else if (error && error.code === "unsupported") {
        this.canRestartIce = false; // (several media ports): lost connections start over
        if (pc.iceConnectionState === "failed") this.fail(this.generation, error);
      } else if (error && error.code && !up) {
        this.fail(this.generation, error); // not_found: the connection is gone
      }
      // (no code: the socket closed meanwhile, and the resume restarts ICE again)
    } finally {
      pc.vtpRestarting = false;
    }
  }

  /** Send the page's current access token whenever it changed (it is refreshed before it
   * expires), so the server never holds an expired one. */
  keepTokenFresh(gen) {
    clearInterval(this.renewTimer);
    this.renewTimer = setInterval(async () => {
      if (gen !== this.generation) {
        clearInterval(this.renewTimer);
        return;
      }
      try {
        const token = await this.token();
        if (token !== this.sentToken && gen === this.generation) {
          await this.request({ type: "auth", token });
          this.sentToken = token;
        }
      } catch (error) {
        this.emit("error", error); // the server keeps the old token until it expires
      }
    }, RENEW_CHECK_MS);
  }

  /** A publication was refused: the right to publish is gone (not a broken connection). */
  publishFailed(gen, label, error) {
    if (error && error.code === "relayed_room") {
      this.rejoinToPublish(gen, label, error);
      return;
    }
    if (error && error.code === "forbidden") {
      this.publishing.delete(label);
      this.emit("publish-refused", { label, error });
      return;
    }
    this.fail(gen, error);
  }

  /** We are served from a cascade's copy of the room, where only the room's own streams
   * are published: leave, and join again saying we publish (the room's node serves us).
   * Refused though our join said so already: a server that does not follow the protocol,
   * so the publication is given up rather than rejoining in a loop. */
  rejoinToPublish(gen, label, error) {
    if (gen !== this.generation || this.stopped) return;
    if (this.joinedPublishing) {
      this.publishing.delete(label);
      this.emit("publish-refused", { label, error });
      return;
    }
    const ws = this.ws;
    if (ws) {
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "leave" }));
      abandon(ws);
    }
    this.teardown(new Error("publishing: joining where the class is served"));
    this.reconnectLater("publishing: joining where the class is served", 0);
  }

  /** A new WebSocket after a while: the next step of the backoff, or `delay` ms. */
  reconnectLater(detail, delay = null) {
    const gen = ++this.generation; // stale callbacks of the old connection stop here
    this.reconnects += 1;
    if (delay === null) {
      const next = this.retry.failed(this.resumeToken ? RESUME_BACKOFF_MS : BACKOFF_MS);
      delay = next.delay;
      if (next.home) this.url = this.homeUrl;
    }
    this.setState("reconnecting", detail);
    setTimeout(() => {
      if (!this.stopped && gen === this.generation) this.connect();
    }, delay);
  }

  /** Something broke (ICE failed, a request failed): start over on a new WebSocket. */
  fail(gen, error) {
    if (gen !== this.generation || this.stopped) return;
    this.emit("error", error);
    const ws = this.ws;
    if (ws) ws.onclose = null; // (its close is ours: not one to resume from)
    this.teardown(error);
    this.reconnectLater(String(error && error.message ? error.message : error));
    if (ws && ws.readyState <= 1) ws.close();
  }

  rejectPending(error) {
    clearInterval(this.renewTimer);
    for (const { reject } of this.pending.values()) reject(error);
    this.pending.clear();
  }

  /** Our peer is gone (or going): drop every connection. */
  teardown(error) {
    this.rejectPending(error);
    this.media += 1;
    this.resumeToken = null;
    for (const sub of this.subscriptions.values()) {
      sub.pc.close();
      this.emit("subscription-ended", sub);
    }
    this.subscriptions.clear();
    this.streams.clear();
    for (const pub of this.publishing.values()) {
      if (pub.pc) pub.pc.close();
      pub.pc = null;
      pub.id = null;
    }
    this.peerId = null;
  }

  stop() {
    this.stopped = true;
    clearInterval(this.watchTimer);
    const ws = this.ws;
    if (ws && ws.readyState === WebSocket.OPEN) {
      try {
        ws.send(JSON.stringify({ type: "leave" }));
      } catch {
        /* closing anyway */
      }
    }
    this.generation += 1;
    this.teardown(new Error("left"));
    this.publishing.clear();
    if (ws) ws.close();
    this.setState("closed");
  }

  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  /** A request's reply; with `timeoutMs`, an error with code "timeout" if none comes. */
  request(message, timeoutMs) {
    const requestId = String(this.nextId++);
    return new Promise((resolve, reject) => {
      let timer = null;
      const done = (f) => (v) => {
        clearTimeout(timer);
        f(v);
      };
      this.pending.set(requestId, { resolve: done(resolve), reject: done(reject) });
      if (timeoutMs) {
        timer = setTimeout(() => {
          if (!this.pending.delete(requestId)) return;
          const error = Object.assign(new Error(`no reply to ${message.type}`), { code: "timeout" });
          reject(error);
        }, timeoutMs);
      }
      this.send({ ...message, request_id: requestId });
    });
  }

  onMessage(msg, gen) {
    if (gen !== this.generation) return;
    if (msg.request_id && this.pending.has(msg.request_id)) {
      const { resolve, reject } = this.pending.get(msg.request_id);
      this.pending.delete(msg.request_id);
      if (msg.type === "error") {
        const err = Object.assign(new Error(msg.error.message), { code: msg.error.code, details: msg.error.details });
        reject(err);
      } else {
        resolve(msg);
      }
      return;
    }
    switch (msg.type) {
      case "stream-added":
        this.streams.set(msg.stream_id, msg);
        this.emit("stream-added", msg);
        if (msg.peer_id !== this.peerId && !this.subscriptions.has(msg.stream_id)) {
          this.subscribe(msg.stream_id, msg.peer_id, gen).catch((e) => {
            if (this.streams.has(msg.stream_id)) this.fail(gen, e);
          });
        }
        break;
      case "stream-removed": {
        this.streams.delete(msg.stream_id);
        // One of ours ended without us asking (its connection failed server-side): again.
        for (const [label, pub] of this.publishing) {
          if (pub.id === msg.stream_id) {
            if (pub.pc) pub.pc.close();
            pub.pc = null;
            pub.id = null;
            if (!this.mayPublish) continue; // closed by the server: the right is gone
            this.startPublication(label, pub.stream, gen).catch((e) => this.publishFailed(gen, label, e));
          }
        }
        const sub = this.subscriptions.get(msg.stream_id);
        if (sub) {
          sub.pc.close();
          this.subscriptions.delete(msg.stream_id);
          this.emit("subscription-ended", sub);
        }
        this.emit("stream-removed", msg);
        break;
      }
      case "subscription-closed": {
        const sub = this.subscriptions.get(msg.stream_id);
        if (sub && sub.id === msg.subscription_id) {
          sub.pc.close();
          this.subscriptions.delete(msg.stream_id);
          this.emit("subscription-ended", sub);
          const stream = this.streams.get(msg.stream_id);
          if (stream && msg.reason !== "stream ended") {
            setTimeout(() => {
              if (gen === this.generation && this.streams.has(msg.stream_id) && !this.subscriptions.has(msg.stream_id)) {
                this.subscribe(msg.stream_id, stream.peer_id, gen).catch((e) => this.fail(gen, e));
              }
            }, 500);
          }
        }
        break;
      }
      case "layers-needed":
        this.applyLayers(msg).catch((e) => this.emit("error", e));
        break;
      case "reconnect":
        this.movedTo = msg; // (the close, 1012, follows: we go then)
        break;
      case "left":
        // The server removed us (room closed, removed by the teacher): the page decides.
        this.emit("left", msg);
        break;
      case "grant":
        // Our rights in the room changed (comes before the publications it closes).
        this.mayPublish = msg.may_publish;
        if (!msg.may_publish) {
          for (const [label, pub] of this.publishing) {
            if (pub.pc) pub.pc.close();
            this.publishing.delete(label);
          }
        }
        this.emit("grant", msg);
        break;
      case "error":
        this.emit("error", msg.error);
        break;
      default:
        this.emit(msg.type, msg); // peer-joined, peer-left, active-speaker, connection-state, ...
    }
  }

  /** A peer connection of ours; `offerer`: a publication (we offer). Its callbacks
   * outlive WebSockets (a resume keeps it), not a teardown. */
  newConnection(gen, idPromise, offerer) {
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    const media = this.media;
    pc.onicecandidate = async (ev) => {
      const id = await idPromise;
      if (media !== this.media || !id) return;
      const c = ev.candidate;
      this.send({
        type: "ice",
        connection_id: id,
        candidate: c ? c.candidate : null,
        sdp_mid: c ? c.sdpMid : null,
        sdp_mline_index: c ? c.sdpMLineIndex : null,
      });
    };
    // Lost (the network changed): restart ICE at once, and start over if that does not
    // bring it back. (iceConnectionState: "disconnected" comes when checks go
    // unanswered, before the DTLS-level connectionState says anything.)
    let recovery = null;
    pc.oniceconnectionstatechange = async () => {
      if (media !== this.media) return;
      const state = pc.iceConnectionState;
      if (state === "connected" || state === "completed") {
        clearTimeout(recovery);
        recovery = null;
        return;
      }
      if (state !== "disconnected" && state !== "failed") return;
      if (state === "failed" && !this.canRestartIce) {
        this.fail(this.generation, new Error("media connection failed"));
        return;
      }
      if (!recovery) {
        recovery = setTimeout(() => {
          recovery = null;
          if (media === this.media && !["connected", "completed"].includes(pc.iceConnectionState)) {
            this.fail(this.generation, new Error("media connection lost"));
          }
        }, this.canRestartIce ? RECOVERY_MS : DISCONNECTED_GRACE_MS);
      }
      if (!this.canRestartIce) return;
      const id = await idPromise;
      if (id) this.restartIce(pc, id, offerer);
      // (the socket not connected: the resume restarts ICE when it is back)
    };
    // DTLS failed on a working ICE path: nothing to restart
    pc.onconnectionstatechange = () => {
      const up = ["connected", "completed"].includes(pc.iceConnectionState);
      if (media === this.media && pc.connectionState === "failed" && up) {
        this.fail(this.generation, new Error("media connection failed"));
      }
    };
    return pc;
  }

  /** Publish `stream` as `label` now and after every reconnect, until unpublish(label). */
  async publish(label, stream) {
    const before = this.publishing.get(label);
    this.publishing.set(label, { stream, pc: null, id: null, off: before ? before.off : new Set() });
    if (this.state !== "connected") return;
    const gen = this.generation;
    try {
      await this.startPublication(label, stream, gen);
    } catch (error) {
      if (!error || error.code !== "relayed_room") throw error;
      this.rejoinToPublish(gen, label, error);
    }
  }

  async startPublication(label, stream, gen) {
    /** @type {(id: string | null) => void} */
    let named;
    const idPromise = new Promise((resolve) => {
      named = resolve;
    });
    const pc = this.newConnection(gen, idPromise, true);
    const pub = this.publishing.get(label);
    if (!pub || pub.stream !== stream) return;
    pub.pc = pc;
    for (const track of stream.getTracks()) {
      /** @type {RTCRtpTransceiverInit} */
      const init = { direction: "sendonly", streams: [stream] };
      if (track.kind === "video" && label === "camera") init.sendEncodings = CAMERA_ENCODINGS.map((e) => ({ ...e }));
      const transceiver = pc.addTransceiver(track, init);
      // a muted microphone (camera off) sends nothing at all, not silence (black)
      if (pub.off.has(track.kind)) await transceiver.sender.replaceTrack(null);
    }
    await pc.setLocalDescription(await pc.createOffer());
    let reply;
    try {
      reply = await this.request({ type: "publish", sdp: pc.localDescription.sdp, label });
    } catch (e) {
      named(null);
      throw e;
    }
    if (gen !== this.generation) return;
    await pc.setRemoteDescription({ type: "answer", sdp: reply.sdp });
    pub.id = reply.stream_id;
    named(reply.stream_id);
    this.emit("published", { label, streamId: reply.stream_id });
  }

  async unpublish(label) {
    const pub = this.publishing.get(label);
    this.publishing.delete(label);
    if (!pub) return;
    if (pub.id) {
      try {
        await this.request({ type: "unpublish", stream_id: pub.id });
      } catch {
        /* the stream may already be gone */
      }
    }
    if (pub.pc) pub.pc.close();
  }

  /** Swap a track of a publication (another camera or microphone) without renegotiating. */
  async replaceTrack(label, kind, track) {
    const pub = this.publishing.get(label);
    if (!pub) return;
    const tracks = kind === "audio" ? pub.stream.getAudioTracks() : pub.stream.getVideoTracks();
    if (track && !tracks.includes(track)) {
      for (const old of tracks) pub.stream.removeTrack(old);
      pub.stream.addTrack(track);
    }
    if (!pub.pc) return;
    const sending = pub.off.has(kind) ? null : track;
    for (const t of pub.pc.getTransceivers()) {
      if (t.receiver.track && t.receiver.track.kind === kind) await t.sender.replaceTrack(sending);
    }
  }

  /** Send a publication's microphone or camera, or send nothing for it (muted / camera
   * off: no packets at all, unlike a disabled track, which sends silence or black). */
  async setSending(label, kind, on) {
    const pub = this.publishing.get(label);
    if (!pub) return;
    if (on) pub.off.delete(kind);
    else pub.off.add(kind);
    const track = (kind === "audio" ? pub.stream.getAudioTracks() : pub.stream.getVideoTracks())[0] || null;
    await this.replaceTrack(label, kind, track);
  }

  /** Dynacast: the server says which encodings of our camera someone needs; those above
   * the highest needed one stop (the browser no longer encodes them). The ones below it
   * stay on: while a needed higher one does not flow (our bandwidth or CPU holds it
   * back), the server forwards the best lower one that does. */
  async applyLayers(msg) {
    for (const pub of this.publishing.values()) {
      if (!pub.pc || pub.id !== msg.stream_id) continue;
      for (const t of pub.pc.getTransceivers()) {
        if (!msg.track_id.endsWith(`-${t.mid}`)) continue;
        const params = t.sender.getParameters();
        if (!params.encodings || params.encodings.length < 2) continue;
        let changed = false;
        let highest = -1;
        params.encodings.forEach((e, i) => {
          if (msg.rids.includes(e.rid)) highest = i;
        });
        for (const [i, encoding] of params.encodings.entries()) {
          const active = i <= highest; // (encodings are lowest first)
          if (encoding.active !== active) {
            encoding.active = active;
            changed = true;
          }
        }
        if (changed) await t.sender.setParameters(params);
      }
    }
  }

  /** Adaptive stream: how large (device pixels), whether at all, and at what frame rate
   * (0: full) a subscribed stream's video is shown. The server sends the smallest
   * encoding that covers the size, at the lowest temporal layer that covers the frame
   * rate, and nothing while it is not visible. Reports are coalesced and sent when they
   * change. */
  setView(streamId, width, height, visible, fps = 0) {
    const view = { width: Math.max(0, Math.min(8192, Math.round(width))), height: Math.max(0, Math.min(8192, Math.round(height))), visible: !!visible, fps: Math.max(0, Math.min(240, Math.round(fps))) };
    const old = this.views.get(streamId);
    if (old && old.width === view.width && old.height === view.height && old.visible === view.visible && old.fps === view.fps) return;
    this.views.set(streamId, { ...view, sent: null });
    if (!this.viewTimer) this.viewTimer = setTimeout(() => this.flushViews(), VIEW_FLUSH_MS);
  }

  flushViews() {
    this.viewTimer = null;
    const views = [];
    for (const [streamId, view] of this.views) {
      const sub = this.subscriptions.get(streamId);
      if (!sub || !sub.answered || view.sent === sub.id) continue;
      view.sent = sub.id;
      views.push({ subscription_id: sub.id, width: view.width, height: view.height, visible: view.visible, fps: view.fps });
    }
    for (const [streamId] of this.views) if (!this.streams.has(streamId)) this.views.delete(streamId);
    if (views.length) this.send({ type: "view", views });
  }

  async subscribe(streamId, peerId, gen) {
    const placeholder = { id: null, streamId, peerId, pc: { close() {} }, media: new MediaStream() };
    this.subscriptions.set(streamId, placeholder);
    const reply = await this.request({ type: "subscribe", stream_id: streamId });
    if (gen !== this.generation || this.subscriptions.get(streamId) !== placeholder) return;
    const pc = this.newConnection(gen, Promise.resolve(reply.subscription_id), false);
    const sub = { id: reply.subscription_id, streamId, peerId, pc, media: placeholder.media };
    this.subscriptions.set(streamId, sub);
    pc.ontrack = (ev) => {
      sub.media.addTrack(ev.track);
      this.emit("track", { ...sub, kind: ev.track.kind });
    };
    await pc.setRemoteDescription({ type: "offer", sdp: reply.sdp });
    await pc.setLocalDescription(await pc.createAnswer());
    await this.request({ type: "answer", subscription_id: sub.id, sdp: pc.localDescription.sdp });
    sub.answered = true;
    const view = this.views.get(streamId);
    if (view) {
      view.sent = null; // a new subscription: tell the server how it is shown
      this.flushViews();
    }
  }

  /** What the tests (and a debug panel) read: decoding and sending progress. */
  async stats() {
    const subs = [];
    for (const sub of this.subscriptions.values()) {
      const out = { id: sub.id, streamId: sub.streamId, peerId: sub.peerId, state: sub.pc.connectionState || "new", framesDecoded: 0, frameWidth: 0, audioPackets: 0, videoBytes: 0 };
      if (sub.pc.getStats) {
        (await sub.pc.getStats()).forEach((s) => {
          if (s.type === "inbound-rtp" && s.kind === "video") {
            out.framesDecoded = s.framesDecoded || 0;
            out.frameWidth = s.frameWidth || 0;
            out.videoBytes = s.bytesReceived || 0;
            // what tells a stall's cause apart: network (received stops), loss and
            // recovery (lost, NACK, PLI), or decoding (received goes on, decoded not)
            out.framesReceived = s.framesReceived || 0;
            out.framesDropped = s.framesDropped || 0;
            out.packetsLost = s.packetsLost || 0;
            out.nackCount = s.nackCount || 0;
            out.pliCount = s.pliCount || 0;
            out.freezeCount = s.freezeCount || 0;
            out.keyFramesDecoded = s.keyFramesDecoded || 0;
          }
          if (s.type === "inbound-rtp" && s.kind === "audio") out.audioPackets = s.packetsReceived || 0;
        });
      }
      subs.push(out);
    }
    const pubs = [];
    for (const [label, pub] of this.publishing) {
      const out = { label, id: pub.id, framesSent: 0, state: pub.pc ? pub.pc.connectionState : "none" };
      if (pub.pc) {
        (await pub.pc.getStats()).forEach((s) => {
          if (s.type === "outbound-rtp" && s.kind === "video") {
            out.framesSent = (out.framesSent || 0) + (s.framesSent || 0);
            out.encodings = out.encodings || [];
            out.encodings.push({ rid: s.rid || null, active: s.active !== false, bytesSent: s.bytesSent || 0, frameWidth: s.frameWidth || 0, fps: s.framesPerSecond || 0, limitation: s.qualityLimitationReason || "", target: s.targetBitrate || 0, scalabilityMode: s.scalabilityMode || "" });
          }
          if (s.type === "outbound-rtp" && s.kind === "audio") out.audioPacketsSent = s.packetsSent || 0;
        });
      }
      pubs.push(out);
    }
    return { state: this.state, peerId: this.peerId, reconnects: this.reconnects, resumes: this.resumes, iceRestarts: this.iceRestarts, subs, pubs };
  }
}

/** A node's URL as a WebSocket URL (the server names nodes by their http(s) URL). */
export function socketUrl(url) {
  const u = new URL(url, location.href);
  if (u.protocol === "http:") u.protocol = "ws:";
  else if (u.protocol === "https:") u.protocol = "wss:";
  return u.href;
}
