// Recording list items (course and session pages): status in words, a link to the player.
"use strict";

import { el } from "./api.js";
import { showDate } from "./dates.js";

export const recordingStatus = {
  recording: "Recording now",
  uploading: "Processing",
  available: "Ready to watch",
  failed: "Failed",
};

function duration(ms) {
  if (!ms) return "";
  const s = Math.round(ms / 1000);
  return ` · ${Math.floor(s / 60)} min ${s % 60} s`;
}

export function recordingItem(rec) {
  const title = rec.session_title || "Recording";
  return el(
    "li",
    {},
    el(
      "div",
      { class: "item-main" },
      rec.status === "available" ? el("a", { href: `/recordings/${rec.id}`, text: `Watch: ${title}` }) : el("strong", { text: title }),
      el("span", { class: "muted small", text: `${showDate(rec.started_at)}${duration(rec.duration_ms)}` }),
    ),
    el("span", { class: `badge-pill is-rec-${rec.status}`, text: recordingStatus[rec.status] || rec.status }),
  );
}
