// When the classroom's two sockets (the SFU client, sfu.js, and the live channel, live.js)
// try again after a failure: growing delays, and after a few failures in a row the page's
// own node again (the node that served the room died: the room is placed again, and the
// page's node tells where).
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
