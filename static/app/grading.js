// The grading queue of one assignment (staff): who handed in, late, ungraded first; the
// grader with files, score and feedback, return, and next/previous. Unsaved scores and
// feedback are kept per submission while moving around the queue.
import { api, describeError, el, listAll, toast } from "./api.js";
import { showDate } from "./dates.js";
import { downloadFile, showSize } from "./files.js";

const ORDER = { submitted: 0, graded: 1, returned: 2 };
const LABEL = { submitted: "Needs grading", graded: "Graded, not returned", returned: "Returned" };

export async function mountGrader(assignment, queueList, grader, editable) {
  let queue = [];
  const unsaved = new Map(); // submission id -> {score, feedback} typed but not saved
  let openId = null;

  let missing = [];

  async function load() {
    const [all, roster] = await Promise.all([
      listAll(`/api/v1/assignments/${assignment.id}/submissions?limit=100`),
      listAll(`/api/v1/courses/${assignment.course_id}/enrollments?role=student&status=active&limit=100`).catch(() => []),
    ]);
    const handedIn = new Set(all.filter((s) => s.status !== "draft").map((s) => s.student_id));
    missing = roster.filter((e) => !handedIn.has(e.user_id)).map((e) => (e.user ? e.user.display_name : e.user_id));
    const submitted = all.filter((s) => s.status !== "draft");
    // Ungraded first when the page opens; after that the order stays put while grading,
    // so next/previous walk the list the teacher saw.
    const byFirstSeen = new Map(queue.map((s, i) => [s.id, i]));
    const rank = (s) => byFirstSeen.get(s.id) ?? Infinity;
    queue = submitted.sort(
      (a, b) => rank(a) - rank(b) || ORDER[a.status] - ORDER[b.status] || new Date(a.submitted_at).getTime() - new Date(b.submitted_at).getTime(),
    );
    renderQueue();
    if (openId) open(openId);
  }

  function renderQueue() {
    const items = queue.map((sub) =>
      el(
        "li",
        { class: sub.id === openId ? "is-open" : "" },
        el(
          "div",
          { class: "item-main" },
          el("strong", { text: `${sub.student_name} · attempt ${sub.attempt}` }),
          el("span", { class: "muted small", text: `${showDate(sub.submitted_at)}${sub.score !== null ? ` · ${sub.score} / ${assignment.points_possible}` : ""}` }),
        ),
        sub.is_late ? el("span", { class: "badge-pill is-late", text: "Late" }) : null,
        el("span", { class: `badge-pill is-${sub.status}`, text: LABEL[sub.status] }),
        el("button", { type: "button", class: "btn btn-small", text: "Open", "aria-label": `Open ${sub.student_name}'s attempt ${sub.attempt}`, onclick: () => open(sub.id) }),
      ),
    );
    const graded = queue.filter((s) => s.status === "graded");
    queueList.replaceChildren(...(items.length ? items : [el("li", { class: "empty", text: "Nothing handed in yet." })]));
    if (missing.length) {
      queueList.append(el("li", { class: "missing" }, el("span", { class: "muted", text: `Not handed in (${missing.length}): ${missing.sort().join(", ")}` })));
    }
    if (editable && graded.length) {
      const error = el("p", { class: "form-error", role: "alert", hidden: true });
      queueList.append(
        el(
          "li",
          { class: "queue-actions" },
          el("button", {
            type: "button",
            class: "btn",
            text: `Return all graded (${graded.length})`,
            onclick: async () => {
              error.hidden = true;
              try {
                for (const sub of graded) await api(`/api/v1/submissions/${sub.id}/return`, { method: "POST" });
                toast(`${graded.length} grade(s) returned.`);
              } catch (e) {
                error.textContent = describeError(e);
                error.hidden = false;
              }
              await load();
            },
          }),
          error,
        ),
      );
    }
  }

  function open(id) {
    const index = queue.findIndex((s) => s.id === id);
    if (index < 0) {
      grader.hidden = true;
      openId = null;
      return;
    }
    openId = id;
    const sub = queue[index];
    const kept = unsaved.get(sub.id) || {};
    const score = el("input", { id: "grade-score", type: "number", min: "0", max: String(assignment.points_possible), step: "0.01", required: true, value: kept.score ?? (sub.score ?? "") });
    const feedback = el("textarea", { id: "grade-feedback", rows: "4", maxlength: "10000" });
    feedback.value = kept.feedback ?? (sub.feedback || "");
    const remember = () => unsaved.set(sub.id, { score: score.value, feedback: feedback.value });
    score.addEventListener("input", remember);
    feedback.addEventListener("input", remember);
    const error = el("p", { class: "form-error", role: "alert", hidden: true });
    const save = async (returnNow) => {
      error.hidden = true;
      if (score.value === "") {
        error.textContent = "Enter a score first.";
        error.hidden = false;
        score.focus();
        return;
      }
      try {
        await api(`/api/v1/submissions/${sub.id}/grade`, {
          method: "PUT",
          body: { score: Number(score.value), feedback: feedback.value || null, return_to_student: returnNow },
        });
        unsaved.delete(sub.id);
        toast(returnNow ? `Grade returned to ${sub.student_name}.` : `Grade saved for ${sub.student_name}.`);
        await load();
      } catch (e) {
        error.textContent = describeError(e);
        error.hidden = false;
      }
    };
    const nav = (step) => {
      const next = queue[index + step];
      return el("button", { type: "button", class: "btn btn-small", text: step < 0 ? "‹ Previous" : "Next ›", disabled: !next, onclick: () => next && open(next.id) });
    };
    const files = sub.files.map((f) =>
      el(
        "li",
        { class: "file" },
        el("button", {
          type: "button",
          class: "link-button",
          text: f.name,
          "aria-label": `Download ${f.name}`,
          onclick: () => downloadFile(`/api/v1/submissions/${sub.id}/files/${f.id}`, f.name).catch((e) => {
            error.textContent = describeError(e);
            error.hidden = false;
          }),
        }),
        el("span", { class: "muted small", text: showSize(f.size) }),
      ),
    );
    grader.replaceChildren(
      ...[
      el("div", { class: "grader-head" }, el("h3", { id: "grader-title", tabindex: "-1", text: `${sub.student_name} · attempt ${sub.attempt}` }), el("div", { class: "grader-nav" }, nav(-1), nav(1))),
      el("p", { class: "muted small", text: `Handed in ${showDate(sub.submitted_at)}${sub.is_late ? " — late" : ""} · ${LABEL[sub.status]}` }),
      files.length ? el("ul", { class: "file-list", "aria-label": "Files" }, ...files) : el("p", { class: "muted", text: "No files." }),
      sub.body_text ? el("blockquote", { class: "student-note", text: sub.body_text }) : null,
      el(
        "div",
        { class: "field-row" },
        el("div", { class: "field" }, el("label", { for: "grade-score", text: `Score (out of ${assignment.points_possible})` }), score),
      ),
      el("div", { class: "field" }, el("label", { for: "grade-feedback", text: "Feedback" }), feedback),
      error,
      editable
        ? el(
            "div",
            { class: "form-actions" },
            el("button", { type: "button", class: "btn", text: "Save grade", onclick: () => save(false) }),
            el("button", { type: "button", class: "btn btn-primary", text: "Save and return", onclick: () => save(true) }),
          )
        : null,
      ].filter(Boolean),
    );
    grader.hidden = false;
    for (const li of queueList.children) li.classList.remove("is-open");
    queueList.children[index]?.classList.add("is-open");
    grader.querySelector("#grader-title").focus();
  }

  await load();
}
