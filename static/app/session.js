// Session page: status and times, start/end/cancel (staff) or join, attendance and
// participation (talk time, turns, hands, chat) per person with the CSV (staff), and the
// session's recordings.
import { api, describeError, el, listAll, requireUser } from "./api.js";
import { showDate } from "./dates.js";
import { downloadFile } from "./files.js";
import { recordingItem } from "./recordings.js";

const $ = (sel) => document.querySelector(sel);
const sessionId = document.querySelector("[data-session-id]").dataset.sessionId;
const url = `/api/v1/sessions/${sessionId}`;
const notice = $("[data-notice]");
const actionError = $("[data-action-error]");
const statusText = { scheduled: "Scheduled", live: "Live now", ended: "Ended", cancelled: "Cancelled" };

function showError(error) {
  notice.textContent = describeError(error);
  notice.hidden = false;
}

function minutes(seconds) {
  return seconds < 60 ? `${seconds} s` : `${Math.round(seconds / 60)} min`;
}

function renderActions(session, staff) {
  const run = (path, then) => async () => {
    actionError.hidden = true;
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
    if (staff) buttons.push(el("button", { type: "button", class: "btn btn-danger-quiet", text: "End session", onclick: run("end", load) }));
  } else if (session.status === "scheduled" && staff) {
    buttons.push(el("button", { type: "button", class: "btn btn-primary", text: "Start now", onclick: run("start", () => location.assign(`/classroom/${session.id}`)) }));
    buttons.push(el("button", { type: "button", class: "btn btn-danger-quiet", text: "Cancel session", onclick: run("cancel", load) }));
  }
  $("[data-actions]").replaceChildren(...buttons);
}

async function renderAttendance(session) {
  const lines = (await api(`${url}/attendance`)).items;
  const holder = $("[data-attendance]");
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

async function load() {
  await requireUser();
  let session;
  let course;
  try {
    session = await api(url);
    course = await api(`/api/v1/courses/${session.course_id}`);
  } catch (e) {
    showError(e);
    $("[data-sub]").textContent = "";
    return;
  }
  const staff = course.my_role === "teacher" || course.my_role === "ta" || course.my_role === null;
  document.title = `${session.title} · VTP Classroom`;
  $("[data-title]").textContent = session.title;
  const when = session.started_at
    ? `${showDate(session.started_at)}${session.ended_at ? ` – ${showDate(session.ended_at)}` : ""}`
    : `${showDate(session.scheduled_start)} – ${showDate(session.scheduled_end)}`;
  $("[data-sub]").textContent = `${statusText[session.status] || session.status} · ${when}`;
  const link = $("[data-course-link]");
  link.href = `/courses/${course.id}#sessions`;
  link.textContent = course.title;
  renderActions(session, staff && course.status !== "archived");
  for (const node of document.querySelectorAll("[data-staff]")) node.hidden = !staff;
  if (staff) {
    $("[data-attendance-csv]").onclick = () => downloadFile(`${url}/attendance.csv`, `attendance-${session.id}.csv`).catch(showError);
    renderAttendance(session).catch(showError);
  }
  const recordings = await listAll(`${url}/recordings?limit=100`).catch((e) => {
    showError(e);
    return [];
  });
  const list = $("[data-recordings]");
  list.replaceChildren(...(recordings.length ? recordings.map(recordingItem) : [el("li", { class: "empty", text: "No recordings of this session." })]));
}

load().catch(showError);
