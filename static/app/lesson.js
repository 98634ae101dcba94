// Lesson page: the content (safe Markdown), attachments to download; staff edit, publish,
// delete, and attach files with upload progress. A failed save keeps the text in the form.
import { api, describeError, el, requireUser, toast } from "./api.js";
import { showDate } from "./dates.js";
import { downloadFile, showSize, uploadFile, uploadRow } from "./files.js";
import { renderMarkdown } from "./markdown.js";

/** @type {(sel: string) => any} (an element of whatever kind the selector names) */
const $ = (sel) => document.querySelector(sel);
const lessonId = $("[data-lesson-id]").dataset.lessonId;
const url = `/api/v1/lessons/${lessonId}`;
const notice = $("[data-notice]");
const attachError = $("[data-attach-error]");
let lesson = null;
let course = null;
let staff = false;

function showError(error) {
  notice.textContent = describeError(error);
  notice.hidden = false;
}

function fail(node, text) {
  node.textContent = text;
  node.hidden = false;
}

function render() {
  document.title = `${lesson.title} · VTP Classroom`;
  $("[data-title]").textContent = lesson.title + (lesson.status === "draft" ? " (draft)" : "");
  $("[data-sub]").textContent = `${course.title}${lesson.published_at ? ` · published ${showDate(lesson.published_at)}` : " · not published"}`;
  $("[data-content]").replaceChildren(lesson.content_md.trim() ? renderMarkdown(lesson.content_md) : el("p", { class: "muted", text: "This lesson has no text yet." }));
  renderAttachments();
}

function renderAttachments() {
  const list = $("[data-attachments]");
  const rows = lesson.attachments.map((file) =>
    el(
      "li",
      { class: "file" },
      el("button", {
        type: "button",
        class: "link-button",
        text: file.name,
        "aria-label": `Download ${file.name}`,
        onclick: () => downloadFile(`${url}/attachments/${file.id}`, file.name).catch((e) => fail(attachError, describeError(e))),
      }),
      el("span", { class: "muted small", text: showSize(file.size) }),
      staff
        ? el("button", {
            type: "button",
            class: "btn btn-small btn-danger-quiet",
            text: "Remove",
            "aria-label": `Remove ${file.name}`,
            onclick: async () => {
              attachError.hidden = true;
              try {
                await api(`${url}/attachments/${file.id}`, { method: "DELETE" });
                lesson.attachments = lesson.attachments.filter((a) => a.id !== file.id);
                renderAttachments();
              } catch (e) {
                fail(attachError, describeError(e));
              }
            },
          })
        : null,
    ),
  );
  list.replaceChildren(...(rows.length ? rows : [el("li", { class: "empty", text: "No attachments." })]));
}

$("[data-attach]").addEventListener("change", async (ev) => {
  const picker = ev.target;
  const chosen = [...picker.files];
  picker.value = "";
  attachError.hidden = true;
  const list = $("[data-attachments]");
  list.querySelector(".empty")?.remove();
  for (const file of chosen) {
    const { row, progress } = uploadRow(file);
    list.append(row);
    try {
      const meta = await uploadFile(`${url}/attachments`, file, progress);
      lesson.attachments = [...lesson.attachments, meta];
    } catch (e) {
      fail(attachError, `${file.name}: ${describeError(e)}`);
    }
    row.remove();
    renderAttachments();
  }
});

const form = $("[data-edit]");
form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const error = form.querySelector("[data-error]");
  error.hidden = true;
  try {
    lesson = await api(url, {
      method: "PATCH",
      body: {
        title: form.elements.title.value.trim(),
        content_md: form.elements.content_md.value,
        status: form.elements.published.checked ? "published" : "draft",
      },
    });
    render();
    toast("Lesson saved.");
  } catch (e) {
    fail(error, describeError(e));
  }
});

$("[data-delete]").addEventListener("click", async () => {
  if (!confirm(`Delete the lesson “${lesson.title}” and its attachments?`)) return;
  try {
    await api(url, { method: "DELETE" });
    location.assign(`/courses/${course.id}#lessons`);
  } catch (e) {
    fail(form.querySelector("[data-error]"), describeError(e));
  }
});

async function load() {
  await requireUser();
  try {
    lesson = await api(url);
    course = await api(`/api/v1/courses/${lesson.course_id}`);
  } catch (e) {
    showError(e);
    $("[data-sub]").textContent = "";
    return;
  }
  const link = $("[data-course-link]");
  link.href = `/courses/${course.id}#lessons`;
  link.textContent = course.title;
  staff = (course.my_role === "teacher" || course.my_role === "ta" || course.my_role === null) && course.status !== "archived";
  for (const node of /** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll("[data-staff]"))) node.hidden = !staff;
  form.elements.title.value = lesson.title;
  form.elements.content_md.value = lesson.content_md;
  form.elements.published.checked = lesson.status === "published";
  render();
}

load().catch(showError);
