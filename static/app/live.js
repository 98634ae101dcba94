// The classroom live channel (vtp/web/live.py): hands, teacher controls, media state, chat
// delivery and presence. Reconnects by itself unless the server said we may not come back.
"use strict";

const BACKOFF_MS = [300, 1000, 2000, 4000, 8000];
const FINAL_CODES = new Set([4401, 4403, 4409]);

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
      ws.send(JSON.stringify({ type: "auth", token: await this.token() }));
    };
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      if (msg.type === "ready") {
        this.attempt = 0;
        this.state = "connected";
        this.emit("state", { state: this.state });
        if (this.lastMedia) this.send(this.lastMedia);
      }
      if (msg.type === "removed" || msg.type === "ended") this.stopped = true;
      this.emit(msg.type, msg);
    };
    ws.onclose = (ev) => {
      if (ws !== this.ws) return;
      if (this.stopped || FINAL_CODES.has(ev.code)) {
        this.stopped = true;
        this.state = "closed";
        this.emit("state", { state: this.state, code: ev.code });
        return;
      }
      this.state = "reconnecting";
      this.emit("state", { state: this.state });
      const delay = BACKOFF_MS[Math.min(this.attempt++, BACKOFF_MS.length - 1)];
      setTimeout(() => {
        if (!this.stopped) this.connect();
      }, delay);
    };
  }

  send(message) {
    if (message.type === "media") this.lastMedia = message;
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  stop() {
    this.stopped = true;
    if (this.ws) this.ws.close(1000);
  }
}
