// Dashboard: my courses, live and upcoming sessions, recordings.
import { api, describeError, el, listAll, requireUser, toast } from "./api.js";

/** @type {(sel: string) => any} (an element of whatever kind the selector names) */
const $ = (sel) => document.querySelector(sel);
const notice = $("[data-notice]");
const when = new Intl.DateTimeFormat(undefined, { weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });

function showError(error) {
  notice.textContent = describeError(error);
  notice.hidden = false;
}

function fill(list, items, emptyText) {
  list.replaceChildren(...(items.length ? items : [el("li", { class: "empty", text: emptyText })]));
}

const staffRoles = new Set(["teacher", "ta"]);

async function startAndGo(session) {
  try {
    if (session.status === "scheduled") {
      await api(`/api/v1/sessions/${session.id}/start`, { method: "POST" });
    }
    location.assign(`/classroom/${session.id}`);
  } catch (e) {
    showError(e);
  }
}

async function startNow(course) {
  const start = new Date();
  const end = new Date(start.getTime() + 60 * 60 * 1000);
  try {
    const session = await api(`/api/v1/courses/${course.id}/sessions`, {
      method: "POST",
      body: {
        title: `${course.title} — live class`,
        scheduled_start: start.toISOString(),
        scheduled_end: end.toISOString(),
        students_may_publish: true,
      },
    });
    await startAndGo(session);
  } catch (e) {
    showError(e);
  }
}

function sessionItem(session, course) {
  const staff = staffRoles.has(course.my_role);
  const live = session.status === "live";
  const action = live
    ? el("a", { class: "btn btn-primary", href: `/classroom/${session.id}`, text: "Join" })
    : staff
      ? el("button", { type: "button", class: "btn", text: "Start now", onclick: () => startAndGo(session) })
      : null;
  return el(
    "li",
    { class: "session" + (live ? " is-live" : "") },
    el(
      "div",
      { class: "session-main" },
      live ? el("span", { class: "live-dot", text: "Live" }) : null,
      el("strong", {}, el("a", { href: `/sessions/${session.id}`, text: session.title })),
      el("span", {
        class: "muted",
        text: `${course.title} · ${when.format(new Date(live && session.started_at ? session.started_at : session.scheduled_start))}`,
      }),
    ),
    action,
  );
}

// Students a teacher removed who asked to come back with the enrolment code: the
// teacher approves (enrols them again) or declines.
function requestsOf(course) {
  const list = el("ul", { class: "request-list", "data-requests": course.id, "aria-label": `Requests to join ${course.title}` });
  const answer = async (request, approve) => {
    try {
      const base = `/api/v1/courses/${course.id}/enrollments`;
      if (approve) await api(base, { method: "POST", body: { user_id: request.user_id } });
      else await api(`${base}/${request.user_id}`, { method: "DELETE" });
      toast(`${request.user.display_name} was ${approve ? "enrolled again" : "declined"}.`);
      load();
    } catch (e) {
      showError(e);
    }
  };
  listAll(`/api/v1/courses/${course.id}/enrollments?status=requested&limit=100`)
    .then((requests) =>
      list.replaceChildren(
        ...requests.map((r) =>
          el(
            "li",
            { class: "request" },
            el("span", { text: `${r.user.display_name} (removed earlier) asks to re-join` }),
            el("button", { type: "button", class: "btn btn-small", text: "Approve", "aria-label": `Approve ${r.user.display_name}`, onclick: () => answer(r, true) }),
            el("button", { type: "button", class: "btn btn-small btn-danger-quiet", text: "Decline", "aria-label": `Decline ${r.user.display_name}`, onclick: () => answer(r, false) }),
          ),
        ),
      ),
    )
    .catch(() => {});
  return list;
}

function codeLine(course) {
  const status = el("span", { class: "small muted", role: "status" });
  return el(
    "div",
    { class: "code-line" },
    el("span", {}, "Enrolment code: ", el("strong", { class: "code", text: course.enrollment_code })),
    el("button", {
      type: "button",
      class: "btn btn-small",
      text: "Copy",
      "aria-label": `Copy the enrolment code of ${course.title}`,
      onclick: async () => {
        try {
          await navigator.clipboard.writeText(course.enrollment_code);
          status.textContent = "Copied.";
        } catch {
          status.textContent = "Copy failed: select the code and copy it by hand.";
        }
      },
    }),
    status,
  );
}

function courseItem(course) {
  const staff = staffRoles.has(course.my_role);
  return el(
    "li",
    { class: "course" },
    el(
      "div",
      { class: "course-main" },
      el("a", { class: "course-link", href: `/courses/${course.id}`, text: course.title }),
      el("span", { class: "muted", text: `${course.code} · ${staff ? "you teach" : "student"}` }),
      staff && course.enrollment_code ? codeLine(course) : null,
      course.my_role === "teacher" ? requestsOf(course) : null,
    ),
    staff
      ? el("button", { type: "button", class: "btn", text: "Start a class now", onclick: () => startNow(course) })
      : null,
  );
}

const recordingStatus = { recording: "recording now", uploading: "processing", available: "ready", failed: "failed" };

async function watch(rec) {
  try {
    const playback = await api(`/api/v1/recordings/${rec.id}/playback`);
    const dialog = $("[data-player]");
    const video = $("[data-player-video]");
    $("[data-player-title]").textContent = rec.session_title || "Recording";
    video.src = playback.url;
    // Playback links are short-lived bearer URLs: when one expires mid-film, ask for a
    // fresh link and go on from the same place.
    let renewed = Date.now();
    const renew = async () => {
      if (Date.now() - renewed < 5000) return; // a broken file, not an expired link
      renewed = Date.now();
      const at = video.currentTime;
      const fresh = await api(`/api/v1/recordings/${rec.id}/playback`);
      video.src = fresh.url;
      video.currentTime = at;
      video.play().catch(() => {});
    };
    video.onerror = () => renew().catch(showError);
    dialog.addEventListener("close", () => video.pause(), { once: true });
    dialog.showModal();
  } catch (e) {
    showError(e);
  }
}

function recordingItem(rec) {
  const ready = rec.status === "available";
  return el(
    "li",
    { class: "rec" },
    el(
      "div",
      { class: "session-main" },
      el("strong", {}, el("a", { href: `/recordings/${rec.id}`, text: rec.session_title || "Recording" })),
      el("span", { class: "muted", text: `${when.format(new Date(rec.created_at))} · ${recordingStatus[rec.status] || rec.status}` }),
    ),
    ready
      ? el("button", { type: "button", class: "btn", text: "Watch", "aria-label": `Watch ${rec.session_title || "the recording"}`, onclick: () => watch(rec) })
      : null,
  );
}

async function load() {
  const user = await requireUser();
  $("[data-greeting]").textContent = `Hello, ${user.display_name}`;
  if (user.role === "teacher" || user.role === "admin") {
    $("[data-teacher-only]").hidden = false;
    $("[data-join-course]").hidden = true; // the box is for students joining with a code
  }
  let courses = [];
  try {
    courses = await listAll("/api/v1/courses?limit=100");
  } catch (e) {
    showError(e);
    return;
  }
  fill($("[data-courses]"), courses.map(courseItem), "You are not in any course yet. Join one with its enrolment code.");
  const live = [];
  const upcoming = [];
  const recordings = [];
  await Promise.all(
    courses.map(async (course) => {
      const [sessions, recs] = await Promise.all([
        listAll(`/api/v1/courses/${course.id}/sessions?limit=100`).catch(() => []),
        listAll(`/api/v1/courses/${course.id}/recordings?limit=100`).catch(() => []),
      ]);
      for (const s of sessions) {
        if (s.status === "live") live.push([s, course]);
        else if (s.status === "scheduled" && new Date(s.scheduled_end) > new Date()) upcoming.push([s, course]);
      }
      recordings.push(...recs);
    }),
  );
  upcoming.sort((a, b) => new Date(a[0].scheduled_start).getTime() - new Date(b[0].scheduled_start).getTime());
  fill($("[data-live]"), live.map(([s, c]) => sessionItem(s, c)), "No class is live right now.");
  fill($("[data-upcoming]"), upcoming.map(([s, c]) => sessionItem(s, c)), "Nothing scheduled.");
  recordings.sort((a, b) => new Date(b.created_at).getTime() - new Date(a.created_at).getTime());
  fill($("[data-recordings]"), recordings.map(recordingItem), "No recordings yet.");
}

$("[data-join-course]").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const input = ev.target.elements.code;
  try {
    const reply = await api("/api/v1/enrollments/join", { method: "POST", body: { enrollment_code: input.value.trim() } });
    input.value = "";
    if (reply.enrollment.status === "requested") {
      // A teacher removed us from this course: they decide whether we come back.
      notice.textContent = `You were removed from ${reply.course.title}. Your request to join again is waiting for the teacher.`;
      notice.hidden = false;
      return;
    }
    toast(`You joined ${reply.course.title}.`);
    load();
  } catch (e) {
    showError(e);
  }
});

$("[data-new-course]").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.target;
  const error = form.querySelector("[data-error]");
  error.hidden = true;
  try {
    const code = form.elements.code.value.trim();
    const course = await api("/api/v1/courses", {
      method: "POST",
      body: { code, title: form.elements.title.value.trim(), enrollment_code: `${code}-${Math.random().toString(36).slice(2, 8)}`.replace(/[^A-Za-z0-9-]/g, "-") },
    });
    form.reset();
    form.closest("details").open = false;
    toast(`Course “${course.title}” created. Students join with the code ${course.enrollment_code}.`);
    await load();
    $(`[data-courses] a[href="/courses/${course.id}"]`)?.focus();
  } catch (e) {
    error.textContent = describeError(e);
    error.hidden = false;
  }
});

load().catch(showError);
