// The course's chat (outside live sessions) on the course page: the latest messages, oldest
// first, and a form to post. A message that fails to send stays in the box.
"use strict";

import { api, describeError, el } from "./api.js";
import { showDate } from "./dates.js";

const SHOWN = 30;

function messageItem(msg) {
  return el(
    "li",
    { class: "course-msg" },
    el("div", { class: "chat-meta" }, el("strong", { text: msg.author_name || "Someone" }), " ", el("span", { class: "muted small", text: showDate(msg.created_at) })),
    msg.body === null ? el("p", { class: "muted", text: "(deleted)" }) : el("p", { class: "chat-text", text: msg.body }),
  );
}

/** Fill `list` and wire `form`; resolves to the newest message (or null). */
export async function mountCourseChat(courseId, list, form, canPost, me) {
  const url = `/api/v1/courses/${courseId}/chat`;
  const load = async () => {
    const page = await api(`${url}?limit=${SHOWN}`);
    const items = page.items.slice().reverse();
    list.replaceChildren(...(items.length ? items.map(messageItem) : [el("li", { class: "empty", text: "No messages yet." })]));
    return page.items[0] || null;
  };
  form.hidden = !canPost;
  const error = form.querySelector("[data-error]");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = form.elements.body;
    const text = input.value.trim();
    if (!text) return;
    error.hidden = true;
    try {
      const msg = await api(url, { method: "POST", body: { body: text } });
      input.value = "";
      list.querySelector(".empty")?.remove();
      list.append(messageItem({ ...msg, author_name: me.display_name }));
    } catch (e) {
      error.textContent = describeError(e);
      error.hidden = false;
    }
  });
  form.querySelector("[data-refresh]")?.addEventListener("click", () => load().catch((e) => {
    error.textContent = describeError(e);
    error.hidden = false;
  }));
  return load();
}
