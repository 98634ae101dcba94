// The assignment form (create and edit, for staff): title, instructions, points, dates
// in the viewer's time zone, attempts, file types. A failed save keeps what was typed.
"use strict";

import { describeError, el } from "./api.js";
import { fromLocalInput, timeZone, toLocalInput } from "./dates.js";

function field(id, label, input, hint) {
  const hintId = hint ? `${id}-hint` : null;
  input.id = id;
  if (hintId) input.setAttribute("aria-describedby", hintId);
  return el("div", { class: "field" }, el("label", { for: id, text: label }), input, hint ? el("p", { class: "hint", id: hintId, text: hint }) : null);
}

/**
 * A form filled from `values` (an assignment, or {} for a new one). `save(body)` is called
 * with the API body and may throw; its error is shown by the button.
 */
export function assignmentForm(prefix, values, submitText, save) {
  const v = values || {};
  const title = el("input", { name: "title", required: true, maxlength: "200", value: v.title || "" });
  const instructions = el("textarea", { name: "instructions_md", rows: "6", maxlength: "100000" });
  instructions.value = v.instructions_md || "";
  const points = el("input", { name: "points_possible", type: "number", min: "0", max: "100000", step: "0.01", required: true, value: String(v.points_possible ?? 100) });
  const due = el("input", { name: "due_at", type: "datetime-local", value: toLocalInput(v.due_at) });
  const lock = el("input", { name: "lock_at", type: "datetime-local", value: toLocalInput(v.lock_at) });
  const attempts = el("input", { name: "allowed_attempts", type: "number", min: "1", max: "100", value: v.allowed_attempts ? String(v.allowed_attempts) : "" });
  const types = el("input", { name: "allowed_file_types", value: (v.allowed_file_types || []).join(", "), autocomplete: "off" });
  const publish = el("input", { type: "checkbox", name: "published", id: `${prefix}-published`, checked: v.status === "published" || !v.id });
  const error = el("p", { class: "form-error", role: "alert", hidden: true });
  const button = el("button", { type: "submit", class: "btn btn-primary", text: submitText });
  const form = el(
    "form",
    { class: "form", "aria-label": submitText },
    field(`${prefix}-title`, "Title", title),
    field(`${prefix}-instructions`, "Instructions", instructions, "Markdown: # heading, **bold**, *italic*, `code`, - lists, [link](https://…)."),
    el(
      "div",
      { class: "field-row" },
      field(`${prefix}-points`, "Points", points),
      field(`${prefix}-attempts`, "Attempts allowed", attempts, "Empty: no limit."),
    ),
    el(
      "div",
      { class: "field-row" },
      field(`${prefix}-due`, "Due", due, `Your time zone (${timeZone}). Late after this.`),
      field(`${prefix}-lock`, "Locks", lock, "No submissions after this. Empty: never."),
    ),
    field(`${prefix}-types`, "Allowed file types", types, "Extensions separated by commas, e.g. pdf, docx. Empty: any supported type."),
    el("label", { class: "check", for: `${prefix}-published` }, publish, " Published (students can see it)"),
    error,
    el("div", { class: "form-actions" }, button),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.hidden = true;
    const body = {
      title: title.value.trim(),
      instructions_md: instructions.value,
      points_possible: Number(points.value),
      due_at: fromLocalInput(due.value),
      lock_at: fromLocalInput(lock.value),
      allowed_attempts: attempts.value ? Number(attempts.value) : null,
      allowed_file_types: types.value.split(/[\s,]+/).map((t) => t.replace(/^\./, "").toLowerCase()).filter(Boolean),
      status: publish.checked ? "published" : "draft",
    };
    button.disabled = true;
    try {
      await save(body);
    } catch (e) {
      error.textContent = describeError(e);
      error.hidden = false;
    } finally {
      button.disabled = false;
    }
  });
  return form;
}
