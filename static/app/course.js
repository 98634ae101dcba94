// Course page: overview, lessons, assignments, sessions and people of one course.
// Staff (teachers, TAs) get the edit controls; an archived course is read-only.
import { api, describeError, el, listAll, requireUser, toast } from "./api.js";
import { assignmentForm } from "./assignment_form.js";
import { mountChatFeed } from "./chat_feed.js";
import { fromLocalInput, showDate, timeZone, toLocalInput } from "./dates.js";
import { recordingItem } from "./recordings.js";
import { workStatus } from "./submission_status.js";

/** @type {(sel: string) => any} (an element of whatever kind the selector names) */
const $ = (sel) => document.querySelector(sel);
const courseId = $("[data-course-id]").dataset.courseId;
const base = `/api/v1/courses/${courseId}`;
const notice = $("[data-notice]");
const staffRoles = new Set(["teacher", "ta"]);
let course = null;
let staff = false;

const editable = () => staff && course.status !== "archived";

function showError(error) {
  notice.textContent = describeError(error);
  notice.hidden = false;
}

function fill(list, items, emptyText) {
  list.replaceChildren(...(items.length ? items : [el("li", { class: "empty", text: emptyText })]));
}

/** Run `work` for a control; its error appears in `errorNode` next to it. */
async function act(errorNode, work) {
  errorNode.hidden = true;
  try {
    await work();
  } catch (e) {
    errorNode.textContent = describeError(e);
    errorNode.hidden = false;
  }
}

function badge(text, kind = "") {
  return el("span", { class: `badge-pill ${kind}`, text });
}

// --- overview -----------------------------------------------------------------------------
// What the overview shows; the latest message follows the chat as it arrives.
const overview = { sessions: null, assignments: null, latest: null };

function renderOverview() {
  const { sessions, assignments, latest } = overview;
  if (!sessions || !assignments) return; // not loaded yet
  const next = sessions
    .filter((s) => s.status === "live" || (s.status === "scheduled" && new Date(s.scheduled_end) > new Date()))
    .sort((a, b) => new Date(a.scheduled_start).getTime() - new Date(b.scheduled_start).getTime())[0];
  const due = assignments
    .filter((a) => a.due_at && new Date(a.due_at) > new Date())
    .sort((a, b) => new Date(a.due_at).getTime() - new Date(b.due_at).getTime())[0];
  const fact = (term, ...value) => el("div", {}, el("dt", { text: term }), el("dd", {}, ...value));
  $("[data-overview]").replaceChildren(
    fact("Your role", course.my_role || "admin"),
    fact("Status", course.status === "archived" ? "Archived (read-only)" : course.status),
    fact(
      "Next session",
      next
        ? next.status === "live"
          ? el("a", { href: `/classroom/${next.id}`, text: `${next.title} — live now, join` })
          : `${next.title}, ${showDate(next.scheduled_start)}`
        : "None scheduled",
    ),
    fact("Next due", due ? el("a", { href: `/assignments/${due.id}`, text: `${due.title}, ${showDate(due.due_at)}` }) : "Nothing due"),
    fact(
      "Latest message",
      latest && latest.body !== null ? el("a", { href: "#chat", text: `${latest.author_name || "Someone"}: ${latest.body.length > 80 ? latest.body.slice(0, 80) + "…" : latest.body}` }) : "No messages yet",
    ),
  );
}

function renderCode() {
  const box = $("[data-code-box]");
  if (!staff || !course.enrollment_code) return;
  box.hidden = false;
  $("[data-code]").textContent = course.enrollment_code;
  const status = $("[data-code-status]");
  $("[data-copy-code]").onclick = async () => {
    try {
      await navigator.clipboard.writeText(course.enrollment_code);
      status.textContent = "Copied.";
    } catch {
      status.textContent = "Copy failed: select the code and copy it by hand.";
    }
  };
  const rotate = $("[data-rotate-code]");
  rotate.hidden = course.my_role !== "teacher" || course.status === "archived";
  rotate.onclick = async () => {
    try {
      const reply = await api(`${base}/enrollment-code`, { method: "POST" });
      course.enrollment_code = reply.enrollment_code;
      $("[data-code]").textContent = reply.enrollment_code;
      status.textContent = "New code made; the old one no longer works.";
    } catch (e) {
      status.textContent = describeError(e);
    }
  };
}

// --- lessons ------------------------------------------------------------------------------
function lessonItem(lesson, index, lessons) {
  const error = el("p", { class: "form-error", role: "alert", hidden: true });
  const move = (step, text) =>
    el("button", {
      type: "button",
      class: "btn btn-small",
      text,
      "aria-label": `${text}: ${lesson.title}`,
      disabled: !lessons[index + step],
      onclick: () =>
        act(error, async () => {
          await api(`/api/v1/lessons/${lesson.id}`, { method: "PATCH", body: { position: lessons[index + step].position } });
          await loadLessons();
          $(`[data-lessons] [aria-label="${text}: ${CSS.escape(lesson.title)}"]:not(:disabled)`)?.focus();
        }),
    });
  return el(
    "li",
    {},
    el(
      "div",
      { class: "item-main" },
      el("a", { href: `/lessons/${lesson.id}`, text: lesson.title }),
      lesson.attachments.length ? el("span", { class: "muted small", text: `${lesson.attachments.length} attachment(s)` }) : null,
      error,
    ),
    lesson.status === "draft" ? badge("Draft", "is-draft") : null,
    editable() ? el("div", { class: "item-actions" }, move(-1, "Move up"), move(1, "Move down")) : null,
  );
}

async function loadLessons() {
  const lessons = await listAll(`${base}/lessons?limit=100`);
  lessons.sort((a, b) => a.position - b.position);
  fill($("[data-lessons]"), lessons.map(lessonItem), "No lessons yet.");
}

$("[data-new-lesson]").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const form = ev.target;
  act(form.querySelector("[data-error]"), async () => {
    const lesson = await api(`${base}/lessons`, {
      method: "POST",
      body: {
        title: form.elements.title.value.trim(),
        content_md: form.elements.content_md.value,
        status: form.elements.publish.checked ? "published" : "draft",
      },
    });
    form.reset();
    form.closest("details").open = false;
    toast(`Lesson “${lesson.title}” created.`);
    await loadLessons();
  });
});

// --- assignments --------------------------------------------------------------------------
async function assignmentItem(assignment) {
  let status = null;
  if (!staff) {
    const mine = await listAll(`/api/v1/assignments/${assignment.id}/submissions?limit=100`).catch(() => null);
    if (mine) {
      const s = workStatus(assignment, mine);
      status = badge(s.text, `is-${s.key}`);
    }
  }
  return el(
    "li",
    {},
    el(
      "div",
      { class: "item-main" },
      el("a", { href: `/assignments/${assignment.id}`, text: assignment.title }),
      el("span", { class: "muted small", text: `Due ${showDate(assignment.due_at, "any time")} · ${assignment.points_possible} points` }),
    ),
    assignment.status === "draft" ? badge("Draft", "is-draft") : status,
  );
}

async function loadAssignments() {
  const assignments = await listAll(`${base}/assignments?limit=100`);
  assignments.sort((a, b) => (a.due_at ? new Date(a.due_at).getTime() : Infinity) - (b.due_at ? new Date(b.due_at).getTime() : Infinity));
  fill($("[data-assignments]"), await Promise.all(assignments.map(assignmentItem)), "No assignments yet.");
  overview.assignments = assignments;
  renderOverview();
  return assignments;
}

function mountNewAssignment() {
  const holder = $("[data-new-assignment]");
  holder.replaceChildren(
    assignmentForm("new-assignment", {}, "Create assignment", async (body) => {
      const created = await api(`${base}/assignments`, { method: "POST", body });
      toast(`Assignment “${created.title}” created.`);
      mountNewAssignment();
      holder.closest("details").open = false;
      await loadAssignments();
    }),
  );
}

// --- sessions -----------------------------------------------------------------------------
const sessionStatus = { scheduled: "Scheduled", live: "Live", ended: "Ended", cancelled: "Cancelled" };

function sessionItem(session) {
  const error = el("p", { class: "form-error", role: "alert", hidden: true });
  const actions = el("div", { class: "item-actions" });
  if (session.status === "live") {
    actions.append(el("a", { class: "btn btn-primary btn-small", href: `/classroom/${session.id}`, text: "Join", "aria-label": `Join ${session.title}` }));
  } else if (staff && session.status === "scheduled" && course.status !== "archived") {
    actions.append(
      el("button", {
        type: "button",
        class: "btn btn-small",
        text: "Start",
        "aria-label": `Start ${session.title}`,
        onclick: () =>
          act(error, async () => {
            await api(`/api/v1/sessions/${session.id}/start`, { method: "POST" });
            location.assign(`/classroom/${session.id}`);
          }),
      }),
    );
  }
  return el(
    "li",
    {},
    el(
      "div",
      { class: "item-main" },
      el("a", { href: `/sessions/${session.id}`, text: session.title }),
      el("span", { class: "muted small", text: showDate(session.started_at || session.scheduled_start) }),
      error,
    ),
    badge(sessionStatus[session.status] || session.status, `is-${session.status}`),
    actions,
  );
}

async function loadSessions() {
  const sessions = await listAll(`${base}/sessions?limit=100`);
  sessions.sort((a, b) => new Date(b.scheduled_start).getTime() - new Date(a.scheduled_start).getTime());
  fill($("[data-sessions]"), sessions.map(sessionItem), "No sessions yet.");
  overview.sessions = sessions;
  renderOverview();
  return sessions;
}

function mountScheduleForm() {
  const form = $("[data-new-session]");
  $("[data-tz-hint]").textContent = `Times in your time zone (${timeZone}).`;
  const start = new Date(Date.now() + 60 * 60 * 1000);
  start.setMinutes(0, 0, 0);
  form.elements.start.value = toLocalInput(start.toISOString());
  form.elements.end.value = toLocalInput(new Date(start.getTime() + 60 * 60 * 1000).toISOString());
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(form.querySelector("[data-error]"), async () => {
      const session = await api(`${base}/sessions`, {
        method: "POST",
        body: {
          title: form.elements.title.value.trim(),
          scheduled_start: fromLocalInput(form.elements.start.value),
          scheduled_end: fromLocalInput(form.elements.end.value),
          auto_record: form.elements.auto_record.checked,
          students_may_publish: form.elements.students_may_publish.checked,
        },
      });
      form.elements.title.value = "";
      form.closest("details").open = false;
      toast(`Session “${session.title}” scheduled for ${showDate(session.scheduled_start)}.`);
      await loadSessions();
    });
  });
}

async function loadRecordings() {
  const recordings = await listAll(`${base}/recordings?limit=100`);
  recordings.sort((a, b) => new Date(b.started_at).getTime() - new Date(a.started_at).getTime());
  fill($("[data-recordings]"), recordings.map(recordingItem), "No recordings yet.");
}

// --- people -------------------------------------------------------------------------------
const roleNames = { teacher: "Teacher", ta: "TA", student: "Student", observer: "Observer" };

function personItem(enrollment) {
  const name = enrollment.user ? enrollment.user.display_name : enrollment.user_id;
  const error = el("p", { class: "form-error", role: "alert", hidden: true });
  const owner = enrollment.user_id === course.owner_id;
  const manage = course.my_role === "teacher" && !owner && course.status !== "archived";
  let role = el("span", { class: "muted", text: roleNames[enrollment.role] || enrollment.role });
  if (manage) {
    const id = `role-${enrollment.user_id}`;
    const select = el("select", { id, class: "select-small" }, ...Object.entries(roleNames).map(([value, text]) => el("option", { value, text, selected: value === enrollment.role })));
    select.addEventListener("change", () =>
      act(error, async () => {
        const before = enrollment.role;
        try {
          await api(`${base}/enrollments/${enrollment.user_id}`, { method: "PATCH", body: { role: select.value } });
          enrollment.role = select.value;
          toast(`${name} is now ${roleNames[select.value]}.`);
        } catch (e) {
          select.value = before;
          throw e;
        }
      }),
    );
    role = el("span", { class: "inline-field" }, el("label", { for: id, class: "sr-only", text: `Role of ${name}` }), select);
  }
  return el(
    "li",
    {},
    el(
      "div",
      { class: "item-main" },
      el("strong", { text: name }),
      enrollment.user && enrollment.user.email ? el("span", { class: "muted small", text: enrollment.user.email }) : null,
      error,
    ),
    role,
    manage
      ? el("button", {
          type: "button",
          class: "btn btn-small btn-danger-quiet",
          text: "Remove",
          "aria-label": `Remove ${name} from the course`,
          onclick: () =>
            act(error, async () => {
              if (!confirm(`Remove ${name} from ${course.title}?`)) return;
              await api(`${base}/enrollments/${enrollment.user_id}`, { method: "DELETE" });
              toast(`${name} was removed.`);
              await loadPeople();
            }),
        })
      : null,
  );
}

async function loadPeople() {
  const people = await listAll(`${base}/enrollments?status=active&limit=100`);
  const order = { teacher: 0, ta: 1, student: 2, observer: 3 };
  people.sort((a, b) => order[a.role] - order[b.role] || (a.user?.display_name || "").localeCompare(b.user?.display_name || ""));
  fill($("[data-people]"), people.map(personItem), "Nobody is enrolled yet.");
}

$("[data-enrol]").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const form = ev.target;
  act(form.querySelector("[data-error]"), async () => {
    await api(`${base}/enrollments`, { method: "POST", body: { email: form.elements.email.value.trim(), role: form.elements.role.value } });
    toast(`${form.elements.email.value.trim()} was enrolled.`);
    form.reset();
    await loadPeople();
  });
});

// --- chat ---------------------------------------------------------------------------------
async function mountCourseChat(me) {
  const form = $("[data-course-chat-form]");
  const canPost = () => course.status !== "archived" && course.my_role !== "observer" && course.my_role !== null;
  form.hidden = !canPost();
  await mountChatFeed({
    url: `${base}/chat`,
    list: $("[data-course-chat]"),
    form,
    older: $("[data-chat-older]"),
    status: $("[data-chat-status]"),
    canPost,
    me,
    canModerate: editable,
    onNewest: (msg) => {
      overview.latest = msg;
      renderOverview();
    },
  });
}

function showCourseHead() {
  document.title = `${course.title} · VTP Classroom`;
  $("[data-course-title]").textContent = course.title;
  $("[data-course-sub]").textContent = `${course.code}${course.description ? " · " + course.description : ""}`;
}

function mountCourseEdit() {
  const box = $("[data-course-edit]");
  const form = $("[data-course-form]");
  box.hidden = false;
  form.elements.code.value = course.code;
  form.elements.title.value = course.title;
  form.elements.description.value = course.description || "";
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(form.querySelector("[data-error]"), async () => {
      course = await api(base, {
        method: "PATCH",
        body: { code: form.elements.code.value.trim(), title: form.elements.title.value.trim(), description: form.elements.description.value },
      });
      showCourseHead();
      box.open = false;
      toast("Course saved.");
    });
  });
}

// --- page ---------------------------------------------------------------------------------
async function load() {
  const me = await requireUser();
  try {
    course = await api(base);
  } catch (e) {
    showError(e);
    $("[data-course-sub]").textContent = "";
    return;
  }
  staff = staffRoles.has(course.my_role) || course.my_role === null;
  const canEdit = editable();
  showCourseHead();
  for (const node of /** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll("[data-staff]"))) node.hidden = !canEdit;
  $("[data-enrol]").hidden = !(canEdit && course.my_role === "teacher");
  if (canEdit) {
    mountNewAssignment();
    mountScheduleForm();
  }
  renderCode();
  if (canEdit && course.my_role === "teacher") {
    mountCourseEdit();
    const row = $("[data-archive-row]");
    row.hidden = false;
    $("[data-archive]").onclick = () =>
      act(row.querySelector("[data-error]"), async () => {
        if (!confirm(`Archive ${course.title}? It becomes read-only for everyone.`)) return;
        await api(`${base}/archive`, { method: "POST" });
        location.reload();
      });
  }
  const section = (what, work) =>
    work().catch((e) => {
      showError(e);
      return [];
    });
  await Promise.all([
    section("lessons", loadLessons),
    section("assignments", loadAssignments),
    section("sessions", loadSessions),
    section("people", loadPeople),
    section("recordings", loadRecordings),
    section("chat", () => mountCourseChat(me)),
  ]);
  // A section that failed leaves its part of the overview empty rather than loading.
  overview.sessions ??= [];
  overview.assignments ??= [];
  renderOverview();
}

load().catch(showError);
