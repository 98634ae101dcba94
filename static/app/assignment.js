// Assignment page. Students: status, their attempts, and the current draft (files with
// upload progress, a note, hand in). Staff: the grading queue and grader, and the edit form.
import { api, describeError, el, listAll, requireUser, toast } from "./api.js";
import { assignmentForm } from "./assignment_form.js";
import { showDate, timeZone } from "./dates.js";
import { downloadFile, showSize, uploadFile, uploadRow } from "./files.js";
import { mountGrader } from "./grading.js";
import { renderMarkdown } from "./markdown.js";
import { workStatus } from "./submission_status.js";

/** @type {(sel: string) => any} (an element of whatever kind the selector names) */
const $ = (sel) => document.querySelector(sel);
const assignmentId = $("[data-assignment-id]").dataset.assignmentId;
const notice = $("[data-notice]");
let assignment = null;
let course = null;

function showError(error) {
  notice.textContent = describeError(error);
  notice.hidden = false;
}

function fileRow(sub, file, removable, onRemoved, errorNode) {
  const url = `/api/v1/submissions/${sub.id}/files/${file.id}`;
  return el(
    "li",
    { class: "file" },
    el("button", {
      type: "button",
      class: "link-button",
      text: file.name,
      "aria-label": `Download ${file.name}`,
      onclick: () => downloadFile(url, file.name).catch((e) => showError(e)),
    }),
    el("span", { class: "muted small", text: showSize(file.size) }),
    removable
      ? el("button", {
          type: "button",
          class: "btn btn-small btn-danger-quiet",
          text: "Remove",
          "aria-label": `Remove ${file.name}`,
          onclick: async () => {
            errorNode.hidden = true;
            try {
              await api(url, { method: "DELETE" });
              onRemoved();
            } catch (e) {
              errorNode.textContent = describeError(e);
              errorNode.hidden = false;
            }
          },
        })
      : null,
  );
}

function renderFacts() {
  const fact = (term, value) => el("div", {}, el("dt", { text: term }), el("dd", { text: value }));
  $("[data-facts]").replaceChildren(
    fact("Points", String(assignment.points_possible)),
    fact("Due", showDate(assignment.due_at, "no due date")),
    fact("Locks", showDate(assignment.lock_at, "never")),
    fact("Attempts", assignment.allowed_attempts ? String(assignment.allowed_attempts) : "no limit"),
    fact("Files", `${assignment.allowed_file_types.length ? assignment.allowed_file_types.join(", ") : "any supported type"}, up to ${showSize(assignment.max_file_bytes)} each`),
  );
  const prose = $("[data-instructions]");
  prose.replaceChildren(assignment.instructions_md.trim() ? renderMarkdown(assignment.instructions_md) : el("p", { class: "muted", text: "No instructions." }));
  $("[data-sub]").textContent = `${course.title} · times in ${timeZone}`;
}

// --- students -----------------------------------------------------------------------------
function attemptItem(sub) {
  const s = workStatus(assignment, [sub]);
  return el(
    "li",
    {},
    el(
      "div",
      { class: "item-main" },
      el("strong", { text: `Attempt ${sub.attempt}: ${s.text}` }),
      sub.submitted_at ? el("span", { class: "muted small", text: `Handed in ${showDate(sub.submitted_at)}${sub.is_late ? " (late)" : ""}` }) : null,
      sub.files.length ? el("ul", { class: "file-list" }, ...sub.files.map((f) => fileRow(sub, f, false))) : null,
      sub.status === "returned" && sub.feedback ? el("div", { class: "feedback" }, el("strong", { text: "Feedback: " }), sub.feedback) : null,
    ),
  );
}

function checkFile(file) {
  const ext = file.name.includes(".") ? file.name.split(".").pop().toLowerCase() : "";
  if (file.size > assignment.max_file_bytes) return `${file.name} is ${showSize(file.size)}; the limit is ${showSize(assignment.max_file_bytes)}.`;
  if (assignment.allowed_file_types.length && !assignment.allowed_file_types.includes(ext)) {
    return `${file.name}: only ${assignment.allowed_file_types.join(", ")} files are accepted.`;
  }
  return null;
}

async function renderStudent() {
  const work = $("[data-work]");
  const attempts = await listAll(`/api/v1/assignments/${assignmentId}/submissions?limit=100`);
  attempts.sort((a, b) => b.attempt - a.attempt);
  const showStatus = () => {
    const status = workStatus(assignment, attempts);
    $("[data-status]").replaceChildren(el("span", { class: `badge-pill is-${status.key}`, text: status.text }));
  };
  showStatus();
  $("[data-attempts]").replaceChildren(
    ...(attempts.filter((a) => a.status !== "draft").map(attemptItem)),
  );
  if (!$("[data-attempts]").children.length) $("[data-attempts]").append(el("li", { class: "empty", text: "Nothing handed in yet." }));

  let draft = attempts.find((a) => a.status === "draft") || null;
  const locked = assignment.lock_at && new Date(assignment.lock_at) <= new Date();
  const used = attempts.filter((a) => a.status !== "draft").length;
  const exhausted = assignment.allowed_attempts && used >= assignment.allowed_attempts;
  if (!draft && (locked || exhausted)) {
    work.replaceChildren(el("p", { class: "muted", text: locked ? `This assignment locked on ${showDate(assignment.lock_at)}: no more submissions.` : `All ${assignment.allowed_attempts} attempts are used.` }));
    return;
  }
  const error = el("p", { class: "form-error", role: "alert", hidden: true });
  const fail = (text) => {
    error.textContent = text;
    error.hidden = false;
  };
  const files = el("ul", { class: "file-list", "aria-label": "Files in this attempt" });
  const heading = el("h3", { text: draft ? `Attempt ${draft.attempt} (draft)` : `Attempt ${used + 1}` });
  const note = el("textarea", { id: "work-note", rows: "3", maxlength: "100000" });
  note.value = draft ? draft.body_text : note.value;
  const picker = el("input", { id: "work-files", type: "file", multiple: true, "aria-describedby": "work-files-hint" });
  if (assignment.allowed_file_types.length) picker.accept = assignment.allowed_file_types.map((t) => "." + t).join(",");
  const handIn = el("button", { type: "button", class: "btn btn-primary", text: draft && draft.attempt > 1 ? `Hand in attempt ${draft.attempt}` : "Hand in" });

  const showFiles = () => {
    const list = draft ? draft.files : [];
    files.replaceChildren(
      ...(list.length
        ? list.map((f) =>
            fileRow(draft, f, true, async () => {
              draft = await api(`/api/v1/submissions/${draft.id}`);
              showFiles();
            }, error),
          )
        : [el("li", { class: "empty", text: "No files yet." })]),
    );
  };
  const ensureDraft = async () => {
    if (draft) return draft;
    try {
      draft = await api(`/api/v1/assignments/${assignmentId}/submissions`, { method: "POST", body: { body_text: note.value } });
    } catch (e) {
      if (e.code === "draft_exists" && e.details && e.details.submission_id) {
        draft = await api(`/api/v1/submissions/${e.details.submission_id}`);
      } else {
        throw e;
      }
    }
    if (!attempts.includes(draft)) attempts.push(draft);
    heading.textContent = `Attempt ${draft.attempt} (draft)`;
    showStatus();
    return draft;
  };

  picker.addEventListener("change", async () => {
    error.hidden = true;
    const chosen = [...picker.files];
    picker.value = "";
    const refused = chosen.map(checkFile).filter(Boolean);
    if (refused.length) fail(refused.join(" "));
    const ok = chosen.filter((f) => !checkFile(f));
    if (!ok.length) return;
    try {
      await ensureDraft();
    } catch (e) {
      fail(describeError(e));
      return;
    }
    files.querySelector(".empty")?.remove();
    for (const file of ok) {
      const { row, progress } = uploadRow(file);
      files.append(row);
      try {
        const meta = await uploadFile(`/api/v1/submissions/${draft.id}/files`, file, progress);
        draft.files = [...draft.files, meta];
      } catch (e) {
        fail(`${file.name}: ${describeError(e)}`);
      }
      row.remove();
      showFiles();
    }
  });

  handIn.addEventListener("click", async () => {
    error.hidden = true;
    handIn.disabled = true;
    try {
      await ensureDraft();
      if (note.value !== draft.body_text) {
        draft = await api(`/api/v1/submissions/${draft.id}`, { method: "PATCH", body: { body_text: note.value } });
      }
      await api(`/api/v1/submissions/${draft.id}/submit`, { method: "POST" });
      toast("Handed in.");
      await renderStudent();
    } catch (e) {
      fail(describeError(e));
    } finally {
      handIn.disabled = false;
    }
  });

  const limits = `Up to ${showSize(assignment.max_file_bytes)} per file${assignment.allowed_file_types.length ? `; ${assignment.allowed_file_types.join(", ")}` : ""}${assignment.lock_at ? `; closes ${showDate(assignment.lock_at)}` : ""}.`;
  work.replaceChildren(
    heading,
    files,
    el("div", { class: "field" }, el("label", { for: "work-files", text: "Add files" }), picker, el("p", { class: "hint", id: "work-files-hint", text: limits })),
    el("div", { class: "field" }, el("label", { for: "work-note", text: "Note to your teacher (optional)" }), note),
    error,
    el("div", { class: "form-actions" }, handIn),
  );
  showFiles();
}

// --- page ---------------------------------------------------------------------------------
async function load() {
  await requireUser();
  try {
    assignment = await api(`/api/v1/assignments/${assignmentId}`);
    course = await api(`/api/v1/courses/${assignment.course_id}`);
  } catch (e) {
    showError(e);
    $("[data-sub]").textContent = "";
    return;
  }
  document.title = `${assignment.title} · VTP Classroom`;
  $("[data-title]").textContent = assignment.title + (assignment.status === "draft" ? " (draft)" : "");
  const link = $("[data-course-link]");
  link.href = `/courses/${course.id}`;
  link.textContent = course.title;
  renderFacts();
  const staff = course.my_role === "teacher" || course.my_role === "ta" || course.my_role === null;
  const editable = staff && course.status !== "archived";
  for (const node of /** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll("[data-staff]"))) node.hidden = !staff;
  if (staff) {
    $("[data-edit]").hidden = !editable;
    if (editable) {
      $("[data-edit-form]").replaceChildren(
        assignmentForm("edit", assignment, "Save changes", async (body) => {
          assignment = await api(`/api/v1/assignments/${assignmentId}`, { method: "PATCH", body });
          $("[data-title]").textContent = assignment.title + (assignment.status === "draft" ? " (draft)" : "");
          renderFacts();
          toast("Assignment saved.");
        }),
      );
    }
    $("[data-delete]").onclick = async () => {
      const error = $("[data-delete-error]");
      error.hidden = true;
      if (!confirm(`Delete “${assignment.title}”? (Only an assignment nobody has handed anything in for can be deleted.)`)) return;
      try {
        await api(`/api/v1/assignments/${assignmentId}`, { method: "DELETE" });
        location.assign(`/courses/${course.id}#assignments`);
      } catch (e) {
        error.textContent = describeError(e);
        error.hidden = false;
      }
    };
    await mountGrader(assignment, $("[data-queue]"), $("[data-grader]"), editable);
  } else {
    $("[data-student]").hidden = false;
    await renderStudent();
  }
}

load().catch(showError);
