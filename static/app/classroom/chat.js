// The class chat: history, new messages, deletion, the unread count.
import { api, describeError, el, toast } from "../api.js";
import { $, sessionId, state } from "./state.js";

// ---- chat -----------------------------------------------------------------------------------

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });

export function addChat(message) {
  const log = $("[data-chat-log]");
  const existing = log.querySelector(`[data-id="${message.id}"]`);
  const item = el(
    "li",
    { class: "chat-msg" + (message.author_id === state.me.id ? " mine" : ""), "data-id": message.id },
    el(
      "div",
      { class: "chat-meta" },
      el("strong", { text: message.author_name || "Someone" }),
      el("time", { datetime: message.created_at, text: timeFmt.format(new Date(message.created_at)) }),
    ),
    el("p", { class: message.body === null ? "chat-body deleted" : "chat-body", text: message.body === null ? "Message deleted" : message.body }),
  );
  // Authors delete their own messages; the teacher moderates any.
  if (message.body !== null && (message.author_id === state.me.id || state.presenter)) {
    item.querySelector(".chat-meta").append(
      el("button", {
        type: "button",
        class: "chat-delete",
        text: "Delete",
        "aria-label": `Delete the message from ${message.author_name || "someone"}`,
        onclick: async () => {
          try {
            await api(`/api/v1/chat/${message.id}`, { method: "DELETE" });
            addChat({ ...message, body: null });
          } catch (e) {
            toast(`Not deleted: ${describeError(e)}`, "warn");
          }
        },
      }),
    );
  }
  if (existing) {
    existing.replaceWith(item);
    return;
  }
  state.chatIds.add(message.id);
  log.append(item);
  log.scrollTop = log.scrollHeight;
  const chatTab = $("#tab-chat");
  if (chatTab.getAttribute("aria-selected") !== "true" && message.author_id !== state.me.id) {
    const badge = $("[data-chat-unread]");
    badge.textContent = String(Number(badge.textContent || 0) + 1);
    badge.hidden = false;
  }
}

export async function loadChat() {
  try {
    const page = await api(`/api/v1/sessions/${sessionId}/chat?limit=50`);
    $("[data-chat-log]").replaceChildren();
    for (const msg of page.items.slice().reverse()) addChat(msg);
  } catch (e) {
    toast(`Chat history could not be loaded: ${describeError(e)}`, "warn");
  }
}

$("[data-chat-form]").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const input = ev.target.elements.body;
  const body = input.value;
  if (!body.trim()) return;
  input.value = "";
  try {
    const msg = await api(`/api/v1/sessions/${sessionId}/chat`, { method: "POST", body: { body } });
    addChat({ ...msg, author_name: state.me.display_name });
  } catch (e) {
    input.value = body;
    toast(`Not sent: ${describeError(e)}`, "warn");
  }
});
