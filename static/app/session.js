// Session page: status and times, start/end/cancel (staff) or join, editing a scheduled
// session (title, times, recording, publishing; while live only whether students may
// publish), attendance and participation (talk time, turns, hands, chat) per person with the CSV
// (staff), the session's recordings and its
// chat (kept current while the session is live; read-only afterwards).
import { api, describeError, el, listAll, requireUser, toast } from "./api.js";
import { mountChatFeed } from "./chat_feed.js";
import { fromLocalInput, showDate, timeZone, toLocalInput } from "./dates.js";
import { downloadFile } from "./files.js";
import { recordingItem } from "./recordings.js";

/** @type {(sel: string) => any} (an element of whatever kind the selector names) */
const $ = (sel) => document.querySelector(sel);
const sessionId = $("[data-session-id]").dataset.sessionId;
const url = `/api/v1/sessions/${sessionId}`;
const notice = $("[data-notice]");
const actionError = $("[data-action-error]");
const statusText = { scheduled: "Scheduled", live: "Live now", ended: "Ended", cancelled: "Cancelled" };
const participants = new Set(["teacher", "ta", "student"]);

let session = null;
let course = null;
let staff = false;
let feed = null;

function showError(error) {
  notice.textContent = describeError(error);
  notice.hidden = false;
}

function minutes(seconds) {
  return seconds < 60 ? `${seconds} s` : `${Math.round(seconds / 60)} min`;
}

const canEdit = () => staff && course.status !== "archived";

function renderHead() {
  document.title = `${session.title} · VTP Classroom`;
  $("[data-title]").textContent = session.title;
  const when = session.started_at
    ? `${showDate(session.started_at)}${session.ended_at ? ` – ${showDate(session.ended_at)}` : ""}`
    : `${showDate(session.scheduled_start)} – ${showDate(session.scheduled_end)}`;
  $("[data-sub]").textContent = `${statusText[session.status] || session.status} · ${when}`;
}

function renderActions() {
  const run = (path, then, question) => async () => {
    actionError.hidden = true;
    if (question && !confirm(question)) return;
    try {
      await api(`${url}/${path}`, { method: "POST" });
      then();
    } catch (e) {
      actionError.textContent = describeError(e);
      actionError.hidden = false;
    }
  };
  const buttons = [];
  if (session.status === "live") {
    buttons.push(el("a", { class: "btn btn-primary", href: `/classroom/${session.id}`, text: "Join" }));
    if (canEdit()) buttons.push(el("button", { type: "button", class: "btn btn-danger-quiet", text: "End session", onclick: run("end", refresh, `End ${session.title} for everyone?`) }));
  } else if (session.status === "scheduled" && canEdit()) {
    buttons.push(el("button", { type: "button", class: "btn btn-primary", text: "Start now", onclick: run("start", () => location.assign(`/classroom/${session.id}`)) }));
    buttons.push(
      el("button", {
        type: "button",
        class: "btn btn-danger-quiet",
        text: "Cancel session",
        onclick: run("cancel", () => refresh().then(() => toast(`${session.title} was cancelled.`)), `Cancel ${session.title}? Nobody will be able to join it.`),
      }),
    );
  }
  $("[data-actions]").replaceChildren(...buttons);
}

function renderEdit() {
  const box = $("[data-edit]");
  const editable = canEdit() && (session.status === "scheduled" || session.status === "live");
  box.hidden = !editable;
  if (!editable) return;
  const form = $("[data-edit-form]");
  const scheduled = session.status === "scheduled";
  const full = $("[data-when-scheduled]");
  full.hidden = !scheduled;
  for (const input of full.querySelectorAll("input")) input.disabled = !scheduled;
  if (form.dataset.filledFor === `${session.id}:${session.updated_at}`) return; // keep what is being typed
  form.dataset.filledFor = `${session.id}:${session.updated_at}`;
  form.elements.title.value = session.title;
  form.elements.start.value = toLocalInput(session.scheduled_start);
  form.elements.end.value = toLocalInput(session.scheduled_end);
  form.elements.auto_record.checked = session.auto_record;
  form.elements.students_may_publish.checked = session.students_may_publish;
}

$("[data-tz-hint]").textContent = `Times in your time zone (${timeZone}).`;
$("[data-edit-form]").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.target;
  const error = form.querySelector("[data-error]");
  error.hidden = true;
  const body = { students_may_publish: form.elements.students_may_publish.checked };
  if (session.status === "scheduled") {
    const start = fromLocalInput(form.elements.start.value);
    const end = fromLocalInput(form.elements.end.value);
    const missing = [form.elements.title, form.elements.start, form.elements.end].find((i) => !i.value.trim());
    const problem = missing
      ? [missing, `Please fill in “${form.querySelector(`label[for="${missing.id}"]`).textContent}”.`]
      : new Date(end) <= new Date(start)
        ? [form.elements.end, "The session must end after it starts."]
        : null;
    if (problem) {
      error.textContent = problem[1];
      error.hidden = false;
      problem[0].focus();
      return;
    }
    Object.assign(body, {
      title: form.elements.title.value.trim(),
      scheduled_start: fromLocalInput(form.elements.start.value),
      scheduled_end: fromLocalInput(form.elements.end.value),
      auto_record: form.elements.auto_record.checked,
    });
  }
  try {
    session = await api(url, { method: "PATCH", body });
    form.dataset.filledFor = "";
    form.closest("details").open = false;
    toast("Session saved.");
    render();
  } catch (e) {
    error.textContent = describeError(e); // the form keeps what was typed
    error.hidden = false;
  }
});

async function renderAttendance() {
  const holder = $("[data-attendance]");
  if (session.status === "scheduled") {
    holder.replaceChildren(el("p", { class: "muted", text: "The session has not started." }));
    return;
  }
  const lines = (await api(`${url}/attendance`)).items;
  if (!lines.length) {
    holder.replaceChildren(el("p", { class: "muted", text: session.status === "scheduled" ? "The session has not started." : "Nobody joined." }));
    return;
  }
  const head = ["Name", "Role", "Joined", "Left", "Time present", "Joins", "Talk time", "Turns", "Hands", "Chat"].map((t) => el("th", { scope: "col", text: t }));
  const rows = lines.map((line) =>
    el(
      "tr",
      {},
      el("th", { scope: "row", text: line.display_name }),
      el("td", { text: line.course_role || "—" }),
      el("td", { text: showDate(line.first_joined_at) }),
      el("td", { text: line.present_now ? "still here" : showDate(line.last_left_at) }),
      el("td", { text: minutes(line.attended_seconds) }),
      el("td", { text: String(line.joins) }),
      el("td", { text: minutes(line.talk_seconds) }),
      el("td", { text: String(line.turns) }),
      el("td", { text: String(line.hands_raised) }),
      el("td", { text: String(line.chat_messages) }),
    ),
  );
  holder.replaceChildren(el("table", { class: "grid" }, el("thead", {}, el("tr", {}, ...head)), el("tbody", {}, ...rows)));
}

async function renderRecordings() {
  const recordings = await listAll(`${url}/recordings?limit=100`).catch((e) => {
    showError(e);
    return [];
  });
  const list = $("[data-recordings]");
  list.replaceChildren(...(recordings.length ? recordings.map(recordingItem) : [el("li", { class: "empty", text: "No recordings of this session." })]));
}

const chatNotes = {
  scheduled: "The chat opens when the session starts.",
  live: "Live now: messages appear here as they are sent, and in the classroom.",
  ended: "The session has ended: its chat is kept here, read-only.",
  cancelled: "The session was cancelled.",
};

async function mountChat(me) {
  $("[data-chat-note]").textContent = chatNotes[session.status] || "";
  const form = $("[data-chat-form]");
  const canPost = () => session.status === "live" && course.status !== "archived" && participants.has(course.my_role);
  form.hidden = !canPost();
  try {
    feed = await mountChatFeed({
      url: `${url}/chat`,
      list: $("[data-chat]"),
      form,
      older: $("[data-chat-older]"),
      status: $("[data-chat-status]"),
      canPost,
      me,
      canModerate: canEdit,
      poll: session.status === "live",
      emptyText: session.status === "live" || session.status === "scheduled" ? "No messages yet." : "Nobody wrote in this session's chat.",
    });
  } catch (e) {
    $("[data-chat]").replaceChildren(el("li", { class: "empty", text: describeError(e) }));
  }
}

function render() {
  renderHead();
  renderActions();
  renderEdit();
  feed?.refresh();
  $("[data-chat-note]").textContent = chatNotes[session.status] || "";
}

async function refresh() {
  session = await api(url);
  render();
  if (staff) renderAttendance().catch(showError);
}

async function load() {
  const me = await requireUser();
  try {
    session = await api(url);
    course = await api(`/api/v1/courses/${session.course_id}`);
  } catch (e) {
    showError(e);
    $("[data-sub]").textContent = "";
    return;
  }
  staff = course.my_role === "teacher" || course.my_role === "ta" || course.my_role === null;
  const link = $("[data-course-link]");
  link.href = `/courses/${course.id}#sessions`;
  link.textContent = course.title;
  render();
  for (const node of /** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll("[data-staff]"))) node.hidden = !staff;
  if (staff) {
    $("[data-attendance-csv]").onclick = () => downloadFile(`${url}/attendance.csv`, `attendance-${session.id}.csv`).catch(showError);
    renderAttendance().catch(showError);
  }
  await Promise.all([renderRecordings(), mountChat(me)]);
}

load().catch(showError);
