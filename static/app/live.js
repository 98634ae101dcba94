// The classroom live channel (vtp/web/live.py): hands, teacher controls, media state, chat
// delivery and presence. Reconnects by itself unless the server said we may not come back.
// Keeps the server's copy of the access token fresh (auth again when the page's token
// changes): the server closes a channel whose token expired (4401).
"use strict";

const BACKOFF_MS = [300, 1000, 2000, 4000, 8000];
const FINAL_CODES = new Set([4403, 4409]);
const CLOSE_UNAUTHORIZED = 4401; // expired or revoked: once more with a refreshed token
const RENEW_CHECK_MS = 10000; // the page refreshes tokens 60 s before expiry: we follow

export class LiveChannel {
  constructor({ url, token, emit }) {
    this.url = url;
    this.token = token;
    this.emit = emit;
    this.ws = null;
    this.stopped = false;
    this.attempt = 0;
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
    ws.onopen = async () => {
      const token = await this.token(this.needFreshToken);
      ws.send(JSON.stringify({ type: "auth", token }));
      this.sentToken = token;
      this.keepTokenFresh(ws);
    };
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      if (msg.type === "ready") {
        this.attempt = 0;
        this.needFreshToken = false;
        this.state = "connected";
        this.emit("state", { state: this.state });
        if (this.lastMedia) this.send(this.lastMedia);
      }
      if (msg.type === "removed" || msg.type === "ended") this.stopped = true;
      this.emit(msg.type, msg);
    };
    ws.onclose = (ev) => {
      if (ws !== this.ws) return;
      clearInterval(this.renewTimer);
      // A refused token gets one more try with a refreshed one (it may just have expired);
      // if the refresh fails, the page signs the user out.
      const refused = ev.code === CLOSE_UNAUTHORIZED;
      if (this.stopped || FINAL_CODES.has(ev.code) || (refused && this.needFreshToken)) {
        this.stopped = true;
        this.state = "closed";
        this.emit("state", { state: this.state, code: ev.code });
        return;
      }
      this.needFreshToken = refused;
      this.state = "reconnecting";
      this.emit("state", { state: this.state });
      const delay = BACKOFF_MS[Math.min(this.attempt++, BACKOFF_MS.length - 1)];
      setTimeout(() => {
        if (!this.stopped) this.connect();
      }, delay);
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
