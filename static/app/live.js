// The classroom live channel (vtp/web/live.py): hands, teacher controls, media state, chat
// delivery and presence. Reconnects by itself unless the server said we may not come back.
// Keeps the server's copy of the access token fresh (auth again when the page's token
// changes): the server closes a channel whose token expired (4401). With several VTP nodes
// a class is served by the node of its room, and any node relays the channel there; a
// node that cannot (the class moved under a relayed channel) answers room_elsewhere and
// closes (4307), and the channel carries on at the URL it named. The class's node gone:
// 1012 (node_gone), and the channel connects again like after any drop.
"use strict";

import { Reconnect, UNREACHABLE_RETRY_MS, watchOpening } from "./reconnect.js";
import { socketUrl } from "./sfu.js";

const FINAL_CODES = new Set([4403, 4409]);
const CLOSE_UNAUTHORIZED = 4401; // expired or revoked: once more with a refreshed token
const RENEW_CHECK_MS = 10000; // the page refreshes tokens 60 s before expiry: we follow
const CLOSE_ELSEWHERE = 4307; // after error room_elsewhere
// redirects in a row before giving up (no loop between disagreeing nodes)
const MAX_REDIRECTS = 2;

export class LiveChannel {
  constructor({ url, token, emit }) {
    this.url = url;
    this.homeUrl = url;
    this.redirects = 0;
    this.elsewhere = null; // the error room_elsewhere of the current socket
    this.token = token;
    this.emit = emit;
    this.ws = null;
    this.stopped = false;
    this.retry = new Reconnect();
    this.state = "idle";
    this.lastMedia = null;
    this.sentToken = null;
    this.renewTimer = null;
    this.needFreshToken = false;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  connect() {
    const ws = new WebSocket(this.url);
    this.ws = ws;
    this.state = "connecting";
    this.emit("state", { state: this.state });
    let opened = false;
    const unwatch = watchOpening(ws, () => closed(1006));
    ws.onopen = async () => {
      opened = true;
      unwatch();
      const token = await this.token(this.needFreshToken);
      ws.send(JSON.stringify({ type: "auth", token }));
      this.sentToken = token;
      this.keepTokenFresh(ws);
    };
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      if (msg.type === "error" && msg.error.code === "room_elsewhere") {
        this.elsewhere = msg.error; // (the server closes next: we go there then)
        return;
      }
      if (msg.type === "ready") {
        this.retry.succeeded();
        this.redirects = 0;
        this.needFreshToken = false;
        this.state = "connected";
        this.emit("state", { state: this.state });
        if (this.lastMedia) this.send(this.lastMedia);
      }
      if (msg.type === "removed" || msg.type === "ended") this.stopped = true;
      this.emit(msg.type, msg);
    };
    const closed = (/** @type {number} */ code) => {
      if (ws !== this.ws) return;
      clearInterval(this.renewTimer);
      const elsewhere = this.elsewhere;
      this.elsewhere = null;
      if (!this.stopped && (code === CLOSE_ELSEWHERE || elsewhere)) {
        const target = elsewhere && elsewhere.details && elsewhere.details.url;
        if (target && this.redirects < MAX_REDIRECTS) {
          this.redirects += 1;
          this.url = socketUrl(target);
          this.connect();
          return;
        }
        this.stopped = true;
        this.state = "closed";
        this.emit("state", { state: this.state, code });
        const why = Object.assign(new Error(`The class's server could not be reached: the servers kept sending this page elsewhere${elsewhere ? ` (${elsewhere.message})` : ""}.`), { code: "redirect_loop" });
        this.emit("unreachable", why);
        return;
      }
      if (!this.stopped && !opened && this.url !== this.homeUrl) {
        // the class's node does not answer: it died, and is named until it leaves the
        // registry; ask the page's node again, steadily (no loop between nodes either)
        this.redirects = 0;
        this.url = this.homeUrl;
        this.state = "reconnecting";
        this.emit("state", { state: this.state });
        setTimeout(() => {
          if (!this.stopped) this.connect();
        }, UNREACHABLE_RETRY_MS);
        return;
      }
      // A refused token gets one more try with a refreshed one (it may just have expired);
      // if the refresh fails, the page signs the user out.
      const refused = code === CLOSE_UNAUTHORIZED;
      if (this.stopped || FINAL_CODES.has(code) || (refused && this.needFreshToken)) {
        this.stopped = true;
        this.state = "closed";
        this.emit("state", { state: this.state, code });
        return;
      }
      this.needFreshToken = refused;
      this.state = "reconnecting";
      this.emit("state", { state: this.state });
      const { delay, home } = this.retry.failed();
      if (home) this.url = this.homeUrl;
      setTimeout(() => {
        if (!this.stopped) this.connect();
      }, delay);
    };
    ws.onclose = (ev) => {
      unwatch();
      closed(ev.code);
    };
  }

  /** Send the page's current token whenever it changed (refreshed before it expires). */
  keepTokenFresh(ws) {
    clearInterval(this.renewTimer);
    this.renewTimer = setInterval(async () => {
      if (ws !== this.ws || ws.readyState !== WebSocket.OPEN) return;
      try {
        const token = await this.token();
        if (token !== this.sentToken) {
          ws.send(JSON.stringify({ type: "auth", token }));
          this.sentToken = token;
        }
      } catch {
        /* the server keeps the old token until it expires */
      }
    }, RENEW_CHECK_MS);
  }

  send(message) {
    if (message.type === "media") this.lastMedia = message;
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  stop() {
    this.stopped = true;
    clearInterval(this.renewTimer);
    if (this.ws) this.ws.close(1000);
  }
}
