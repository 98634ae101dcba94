// Recording player: the playback URL (presigned S3, or a signed link for the local store)
// in an HTML5 <video>, seekable; each participant's own files listed too.
import { api, describeError, el, requireUser } from "./api.js";
import { showDate } from "./dates.js";
import { showSize } from "./files.js";
import { recordingStatus } from "./recordings.js";

/** @type {(sel: string) => any} (an element of whatever kind the selector names) */
const $ = (sel) => document.querySelector(sel);
const recordingId = $("[data-recording-id]").dataset.recordingId;
const notice = $("[data-notice]");

function showError(error) {
  notice.textContent = describeError(error);
  notice.hidden = false;
}

async function load() {
  await requireUser();
  let rec;
  try {
    rec = await api(`/api/v1/recordings/${recordingId}`);
  } catch (e) {
    showError(e);
    $("[data-sub]").textContent = "";
    return;
  }
  const title = rec.session_title || "Recording";
  document.title = `${title} · VTP Classroom`;
  $("[data-title]").textContent = title;
  $("[data-sub]").textContent = `${showDate(rec.started_at)} · ${recordingStatus[rec.status] || rec.status}`;
  const course = $("[data-course-link]");
  course.href = `/courses/${rec.course_id}#sessions`;
  api(`/api/v1/courses/${rec.course_id}`).then((c) => (course.textContent = c.title)).catch(() => {});
  const session = $("[data-session-link]");
  session.href = `/sessions/${rec.session_id}`;
  session.textContent = title;
  if (rec.status !== "available") {
    notice.textContent = rec.status === "failed" ? "This recording failed and cannot be played." : "This recording is not ready yet. Reload the page in a minute.";
    notice.hidden = false;
    return;
  }
  const playback = await api(`/api/v1/recordings/${recordingId}/playback`);
  const video = $("[data-video]");
  video.src = playback.url;
  video.addEventListener(
    "error",
    () => {
      notice.textContent = "The video could not be played in this browser. Try another browser, or download a participant's track below.";
      notice.hidden = false;
    },
    { once: true },
  );
  $("[data-player]").hidden = false;
  const tracks = playback.files.filter((f) => f.url !== playback.url);
  if (tracks.length) {
    $("[data-tracks-panel]").hidden = false;
    $("[data-tracks]").replaceChildren(
      ...tracks.map((f) =>
        el(
          "li",
          {},
          el("a", { href: f.url, text: f.label || f.name }),
          el("span", { class: "muted small", text: `${(f.kinds || []).join(" + ")}${f.size ? ` · ${showSize(f.size)}` : ""}` }),
        ),
      ),
    );
  }
}

load().catch(showError);
