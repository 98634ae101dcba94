// Dates in the viewer's own time zone: display, and the round trip through
// <input type="datetime-local"> (which holds local wall-clock time without a zone).
"use strict";

export const timeZone = Intl.DateTimeFormat().resolvedOptions().timeZone;

const full = new Intl.DateTimeFormat(undefined, {
  weekday: "short", day: "numeric", month: "short", year: "numeric", hour: "2-digit", minute: "2-digit",
});

/** "Tue, 3 Dec 2026, 14:00" in the viewer's zone, or the fallback for no date. */
export function showDate(iso, fallback = "—") {
  return iso ? full.format(new Date(iso)) : fallback;
}

/** An ISO instant as the value of a datetime-local input (local wall-clock time). */
export function toLocalInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** A datetime-local value (read as local time) as an ISO instant, or null when empty. */
export function fromLocalInput(value) {
  return value ? new Date(value).toISOString() : null;
}
