// When the classroom's two sockets (the SFU client, sfu.js, and the live channel, live.js)
// try again after a failure: growing delays, and after a few failures in a row the page's
// own node again (the node that served the room died: the room is placed again, and the
// page's node tells where). A socket that never opens counts as a failure too.
"use strict";

export const BACKOFF_MS = [300, 1000, 2000, 4000, 8000];
const HOME_AFTER_FAILURES = 2;
// while the node the page's node sent us to does not answer (it died, and is named until
// it leaves the registry): how often to ask the page's node again
export const UNREACHABLE_RETRY_MS = 1000;

export class Reconnect {
  constructor() {
    this.failures = 0; // in a row, since the last connection that got through
  }

  /** A connection got through: the next failure starts the schedule over. */
  succeeded() {
    this.failures = 0;
  }

  /**
   * A failure: how long to wait before the next try (from `schedule`), and whether that
   * try goes to the page's own node.
   * @param {number[]} [schedule]
   * @returns {{delay: number, home: boolean}}
   */
  failed(schedule = BACKOFF_MS) {
    const delay = schedule[Math.min(this.failures, schedule.length - 1)];
    this.failures += 1;
    return { delay, home: this.failures > HOME_AFTER_FAILURES };
  }
}

/**
 * Stop hearing from `ws` and close it unless it is closed: the caller has gone on without
 * it (its close is not one to act on).
 * @param {WebSocket} ws
 */
export function abandon(ws) {
  ws.onclose = ws.onmessage = ws.onopen = null;
  if (ws.readyState <= 1) ws.close();
}

// A socket not open this long is given up: a firewall that drops packets, or a node that
// hangs, leaves it CONNECTING for minutes.
export const OPEN_TIMEOUT_MS = 10000;

/**
 * Abandon `ws` and call `failed` once if it does not open: after `timeoutMs`, or at once
 * when the page's
 * Content-Security-Policy blocks its URL. (Chromium then fires no close event. It happens
 * when the class moves to a node that joined the cluster after the page was served, unless
 * VTP_CLUSTER_ORIGINS covers it: the page's own node, which relays, is the way there.)
 * @param {WebSocket} ws
 * @param {(why: string) => void} failed
 * @param {number} [timeoutMs]
 * @returns {() => void} call it once the socket opened or closed: the watch ends
 */
export function watchOpening(ws, failed, timeoutMs = OPEN_TIMEOUT_MS) {
  const origin = new URL(ws.url).origin;
  let watching = true;
  const end = () => {
    if (!watching) return;
    watching = false;
    clearTimeout(timer);
    document.removeEventListener("securitypolicyviolation", onViolation);
  };
  const fail = (/** @type {string} */ why) => {
    if (!watching) return;
    end();
    abandon(ws);
    failed(why);
  };
  const onViolation = (/** @type {SecurityPolicyViolationEvent} */ ev) => {
    if (ev.effectiveDirective === "connect-src" && ev.blockedURI.startsWith(origin)) {
      fail(`the page may not connect to ${origin} (Content-Security-Policy)`);
    }
  };
  const timer = setTimeout(() => fail(`${origin} did not answer`), timeoutMs);
  document.addEventListener("securitypolicyviolation", onViolation);
  return end;
}
