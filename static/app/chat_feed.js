// A chat history that stays current: the course channel on the course page, a session's
// room chat on the session page. Course chat has no push channel (the classroom's live
// WebSocket belongs to a live session, and opening it counts as attending), so the feed
// polls the history's newest page every few seconds while the tab is visible and merges
// it: new messages appear, edits and deletions (within that page) update in place. A
// hidden tab asks nothing and catches up when shown. Earlier messages come page by page
// with the history's cursor. A message that fails to send stays in the box.
"use strict";

import { api, describeError, el } from "./api.js";
import { showDate } from "./dates.js";

const PAGE = 30;
const POLL_MS = 4000; // a conversation's pace; one small indexed query per open tab
const MAX_BACKOFF_MS = 60000;
const CATCH_UP_PAGES = 5; // after a long gap, at most this many pages are fetched back

const order = (a, b) => a.created_at.localeCompare(b.created_at) || a.id.localeCompare(b.id);

/**
 * Mount a feed. `url`: the history (GET, newest first, cursor) and where to POST.
 * `list`: the <ol>; `form`: the compose form (textarea `body`, [data-error]);
 * `older`: a "Show earlier messages" button; `status`: a polite live region.
 * `canPost()`, `me` ({id, display_name}), `canModerate()` (staff may delete any message);
 * `onNewest(message)` hears of the newest message shown (null for none) when it changes;
 * `poll`: keep it current (false for a chat that is over); `emptyText` for no messages.
 * Resolves to {refresh, stop} once the first page is shown.
 */
export async function mountChatFeed({ url, list, form, older, status, canPost, me, canModerate = () => false, onNewest = (_newest) => {}, poll = true, emptyText = "No messages yet." }) {
  const messages = new Map(); // id -> message
  const names = new Map(); // author_id -> name, for our own posts (the POST answer has none)
  let olderCursor = null;
  let loaded = false;
  let timer = null;
  let delay = POLL_MS;
  let stopped = false;
  const error = form.querySelector("[data-error]");

  const nearBottom = () => list.scrollHeight - list.scrollTop - list.clientHeight < 48;

  function showFormError(text) {
    error.textContent = text;
    error.hidden = !text;
  }

  function messageItem(msg) {
    const mine = me && msg.author_id === me.id;
    const author = msg.author_name || names.get(msg.author_id) || "Someone";
    const itemError = el("p", { class: "form-error", role: "alert", hidden: true });
    const actions = el("div", { class: "chat-actions" });
    const deleted = msg.body === null;
    const excerpt = deleted ? "" : msg.body.length > 40 ? msg.body.slice(0, 40) + "…" : msg.body;
    const fail = (e) => {
      itemError.textContent = describeError(e);
      itemError.hidden = false;
    };
    if (!deleted && mine && canPost()) {
      actions.append(
        el("button", { type: "button", class: "link-button", text: "Edit", "aria-label": `Edit your message: ${excerpt}`, onclick: () => startEdit(msg, item, fail) }),
      );
    }
    if (!deleted && ((mine && canPost()) || canModerate())) {
      actions.append(
        el("button", {
          type: "button",
          class: "link-button",
          text: "Delete",
          "aria-label": `Delete ${mine ? "your" : `${author}'s`} message: ${excerpt}`,
          onclick: async () => {
            if (!confirm("Delete this message for everyone?")) return;
            try {
              await api(`/api/v1/chat/${msg.id}`, { method: "DELETE" });
              upsert({ ...msg, body: null, deleted_at: new Date().toISOString() });
            } catch (e) {
              fail(e);
            }
          },
        }),
      );
    }
    const item = el(
      "li",
      { class: "course-msg" + (mine ? " mine" : ""), "data-message-id": msg.id },
      el(
        "div",
        { class: "chat-meta" },
        el("strong", { text: author }),
        " ",
        el("span", { class: "muted small", text: showDate(msg.created_at) + (msg.edited_at && !deleted ? " · edited" : "") }),
      ),
      deleted ? el("p", { class: "muted", text: "(deleted)" }) : el("p", { class: "chat-text", text: msg.body }),
      actions.childElementCount ? actions : null,
      itemError,
    );
    return item;
  }

  function startEdit(msg, item, fail) {
    const id = `edit-${msg.id}`;
    const box = el("textarea", { id, rows: 2, maxlength: 4000 });
    box.value = msg.body;
    const editor = el(
      "form",
      { class: "chat-edit", "aria-label": "Edit your message" },
      el("label", { for: id, class: "sr-only", text: "Your message" }),
      box,
      el(
        "div",
        { class: "form-actions" },
        el("button", { type: "submit", class: "btn btn-small btn-primary", text: "Save" }),
        el("button", {
          type: "button",
          class: "btn btn-small",
          text: "Cancel",
          onclick: () => {
            item.replaceWith(messageItem(messages.get(msg.id)));
            focusEdit(msg.id);
          },
        }),
      ),
    );
    editor.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const text = box.value.trim();
      if (!text) return;
      try {
        const edited = await api(`/api/v1/chat/${msg.id}`, { method: "PATCH", body: { body: text } });
        upsert({ ...edited, author_name: msg.author_name }, true);
        focusEdit(msg.id);
      } catch (e) {
        fail(e); // the edit stays in the box
      }
    });
    item.querySelector(".chat-text").replaceWith(editor);
    item.querySelector(".chat-actions").hidden = true;
    box.focus();
  }

  /** Keyboard users keep their place: back on the message's Edit button. */
  function focusEdit(id) {
    list.querySelector(`[data-message-id="${id}"] .chat-actions button`)?.focus();
  }

  /** Show `msg` (new, or a newer state of one shown). True when it was new. A message
   * being edited here keeps its editor, unless `closeEditor` (the edit was saved). */
  function upsert(msg, closeEditor = false) {
    const known = messages.get(msg.id);
    if (known && known.body === msg.body && known.edited_at === msg.edited_at) return false;
    if (known && !msg.author_name) msg.author_name = known.author_name;
    messages.set(msg.id, msg);
    const node = list.querySelector(`[data-message-id="${msg.id}"]`);
    if (node) {
      if (closeEditor || !node.querySelector(".chat-edit")) node.replaceWith(messageItem(msg));
      tellNewest();
      return false;
    }
    list.querySelector(".empty")?.remove();
    const item = messageItem(msg);
    const after = [...list.children].find((li) => {
      const other = messages.get(li.dataset.messageId);
      return other && order(other, msg) > 0;
    });
    list.insertBefore(item, after || null);
    tellNewest();
    return !known;
  }

  let newestSeen;
  function tellNewest() {
    const newest = [...messages.values()].filter((m) => m.body !== null).sort(order).pop() || null;
    const key = newest ? `${newest.id}:${newest.edited_at}` : "";
    if (key !== newestSeen) {
      newestSeen = key;
      onNewest(newest);
    }
  }

  function showEmpty() {
    if (!messages.size) list.replaceChildren(el("li", { class: "empty", text: emptyText }));
  }

  /** The newest page, and more until one we know (a long gap), merged in. */
  async function catchUp() {
    const stick = nearBottom();
    let page = await api(`${url}?limit=${PAGE}`);
    const fresh = [];
    const first = !loaded;
    for (let i = 0; ; i++) {
      fresh.push(...page.items);
      const reachedKnown = page.items.some((m) => messages.has(m.id));
      if (first || reachedKnown || !page.next_cursor || i + 1 >= CATCH_UP_PAGES) {
        if (first) olderCursor = page.next_cursor;
        break;
      }
      page = await api(`${url}?limit=${PAGE}&cursor=${encodeURIComponent(page.next_cursor)}`);
    }
    const added = fresh.slice().reverse().filter((m) => upsert(m));
    loaded = true;
    showEmpty();
    older.hidden = !olderCursor;
    if (stick || first) list.scrollTop = list.scrollHeight;
    const others = added.filter((m) => !me || m.author_id !== me.id);
    if (!first && others.length) {
      status.textContent = others.length === 1 ? `New message from ${others[0].author_name || "someone"}.` : `${others.length} new messages.`;
    }
  }

  async function showOlder() {
    if (!olderCursor) return;
    const height = list.scrollHeight;
    const page = await api(`${url}?limit=${PAGE}&cursor=${encodeURIComponent(olderCursor)}`);
    olderCursor = page.next_cursor;
    for (const m of page.items) upsert(m);
    list.scrollTop += list.scrollHeight - height; // keep the reader's place
    if (!olderCursor) {
      list.focus(); // the button goes away: the keyboard's place moves to the messages
      older.hidden = true;
    }
  }

  function schedule() {
    clearTimeout(timer);
    if (stopped || !poll || document.visibilityState !== "visible") return;
    timer = setTimeout(tick, delay);
  }

  let asking = false;
  async function tick() {
    if (asking) return; // shown again while a poll is on its way: that one reschedules
    asking = true;
    try {
      await catchUp();
      delay = POLL_MS;
    } catch {
      delay = Math.min(delay * 2, MAX_BACKOFF_MS); // a failing server is asked less often
    } finally {
      asking = false;
    }
    schedule();
  }

  const onVisibility = () => {
    if (document.visibilityState === "visible") tick();
    else clearTimeout(timer);
  };
  document.addEventListener("visibilitychange", onVisibility);

  const olderError = el("p", { class: "form-error", role: "alert", hidden: true });
  older.after(olderError);
  older.addEventListener("click", () => {
    olderError.hidden = true;
    showOlder().catch((e) => {
      olderError.textContent = describeError(e);
      olderError.hidden = false;
    });
  });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = form.elements.body;
    const text = input.value.trim();
    if (!text) return;
    showFormError("");
    try {
      const msg = await api(url, { method: "POST", body: { body: text } });
      input.value = "";
      if (me) names.set(me.id, me.display_name);
      upsert({ ...msg, author_name: me ? me.display_name : null });
      list.scrollTop = list.scrollHeight;
    } catch (e) {
      showFormError(describeError(e));
    }
  });

  const feed = {
    /** Re-read who may post (e.g. the session went live or ended). */
    refresh() {
      form.hidden = !canPost();
      for (const li of list.querySelectorAll("[data-message-id]")) {
        if (!li.querySelector(".chat-edit")) li.replaceWith(messageItem(messages.get(li.dataset.messageId)));
      }
    },
    stop() {
      stopped = true;
      clearTimeout(timer);
      document.removeEventListener("visibilitychange", onVisibility);
    },
  };
  try {
    await catchUp();
  } catch (e) {
    feed.stop(); // e.g. not allowed to read this chat: nothing to keep asking
    throw e;
  }
  schedule();
  return feed;
}
