// A student's standing on an assignment, from their own attempts (the server shows a
// graded attempt as "submitted" until the grade is returned).
"use strict";

/** {key, text} for the latest of `attempts`: not-started, draft, submitted, late, graded, returned. */
export function workStatus(assignment, attempts) {
  if (!attempts.length) {
    const locked = assignment.lock_at && new Date(assignment.lock_at) <= new Date();
    return { key: "not-started", text: locked ? "Not submitted (locked)" : "Not started" };
  }
  const latest = attempts.reduce((a, b) => (b.attempt > a.attempt ? b : a));
  switch (latest.status) {
    case "draft":
      return { key: "draft", text: "Draft, not handed in" };
    case "returned":
      return { key: "returned", text: `Returned: ${latest.score} / ${assignment.points_possible}` };
    case "graded":
      return { key: "graded", text: `Graded: ${latest.score} / ${assignment.points_possible}` };
    default:
      return latest.is_late ? { key: "late", text: "Submitted late" } : { key: "submitted", text: "Submitted" };
  }
}
