// Users page (admins): every account, searched and filtered by the server page by page;
// change a site role, disable or re-enable an account, issue a one-time reset link.
import { api, describeError, el, requireUser, toast } from "./api.js";
import { showDate } from "./dates.js";

/** @type {(sel: string) => any} (an element of whatever kind the selector names) */
const $ = (sel) => document.querySelector(sel);
const notice = $("[data-notice]");
const list = $("[data-users]");
const more = $("[data-more]");
const count = $("[data-count]");
const listError = $("[data-list-error]");
const filter = $("[data-filter]");
const roleNames = { student: "Student", teacher: "Teacher", admin: "Admin" };
const PAGE = 50;

let me = null;
let cursor = null;
let shown = 0;
let generation = 0; // answers to an older search are dropped

function rowError() {
  return el("p", { class: "form-error", role: "alert", hidden: true });
}

async function act(error, work) {
  error.hidden = true;
  try {
    await work();
  } catch (e) {
    error.textContent = describeError(e);
    error.hidden = false;
  }
}

function roleControl(user, error, replace) {
  const id = `role-${user.id}`;
  const self = user.id === me.id;
  const select = el(
    "select",
    { id, class: "select-small", disabled: self, "aria-describedby": self ? `self-${user.id}` : null },
    ...Object.entries(roleNames).map(([value, text]) => el("option", { value, text, selected: value === user.role })),
  );
  select.addEventListener("change", () =>
    act(error, async () => {
      // Asked first: a site role is a grant of power, and a keyboard's arrow keys change
      // a select's value one step at a time.
      if (!confirm(`Make ${user.display_name} ${roleNames[select.value]}? They will be asked to sign in again.`)) {
        select.value = user.role;
        return;
      }
      try {
        const updated = await api(`/api/v1/users/${user.id}/role`, { method: "PATCH", body: { role: select.value } });
        toast(`${updated.display_name} is now ${roleNames[updated.role]}; they will be asked to sign in again.`);
        replace(updated);
        document.getElementById(id)?.focus();
      } catch (e) {
        select.value = user.role;
        throw e;
      }
    }),
  );
  return el(
    "span",
    { class: "inline-field" },
    el("label", { for: id, class: "sr-only", text: `Site role of ${user.display_name}` }),
    select,
    self ? el("span", { id: `self-${user.id}`, class: "sr-only", text: "You cannot change your own role." }) : null,
  );
}

function resetLink(user, holder, error) {
  return el("button", {
    type: "button",
    class: "btn btn-small",
    text: "Reset link",
    "aria-label": `Password-reset link for ${user.display_name}`,
    disabled: !user.is_active,
    onclick: () =>
      act(error, async () => {
        const reply = await api(`/api/v1/users/${user.id}/password-reset`, { method: "POST" });
        const id = `reset-${user.id}`;
        const status = el("span", { class: "small muted", role: "status" });
        const input = el("input", { id, readonly: true, value: reply.reset_url, class: "reset-url" });
        holder.replaceChildren(
          el("label", { for: id, text: `One-time link for ${user.display_name}, valid until ${showDate(reply.expires_at)}:` }),
          el(
            "div",
            { class: "inline-form" },
            input,
            el("button", {
              type: "button",
              class: "btn btn-small",
              text: "Copy",
              "aria-label": `Copy the reset link for ${user.display_name}`,
              onclick: async () => {
                try {
                  await navigator.clipboard.writeText(reply.reset_url);
                  status.textContent = "Copied.";
                } catch {
                  input.select();
                  status.textContent = "Copy failed: the link is selected, copy it by hand.";
                }
              },
            }),
            status,
          ),
        );
        holder.hidden = false;
        input.focus();
        input.select();
      }),
  });
}

function userItem(user) {
  const error = rowError();
  const linkHolder = el("div", { class: "reset-box", hidden: true });
  const self = user.id === me.id;
  let item = null;
  const replace = (updated) => {
    const fresh = userItem(updated);
    item.replaceWith(fresh);
    item = fresh;
  };
  const toggle = el("button", {
    type: "button",
    class: `btn btn-small ${user.is_active ? "btn-danger-quiet" : ""}`,
    text: user.is_active ? "Disable" : "Enable",
    "aria-label": `${user.is_active ? "Disable" : "Enable"} ${user.display_name}`,
    disabled: self,
    "data-toggle": true,
    onclick: () =>
      act(error, async () => {
        if (user.is_active && !confirm(`Disable ${user.display_name}? They are signed out everywhere and cannot sign in until enabled again.`)) return;
        const updated = await api(`/api/v1/users/${user.id}/active`, { method: "PATCH", body: { is_active: !user.is_active } });
        toast(`${updated.display_name} was ${updated.is_active ? "enabled" : "disabled"}.`);
        replace(updated);
        item.querySelector("[data-toggle]").focus();
      }),
  });
  item = el(
    "li",
    { class: "user-row" + (user.is_active ? "" : " is-disabled"), "data-user-id": user.id },
    el(
      "div",
      { class: "item-main" },
      el("strong", { text: user.display_name + (self ? " (you)" : "") }),
      el("span", { class: "muted small", text: user.email }),
      el("span", { class: "muted small", text: `Last signed in: ${showDate(user.last_login_at, "never")} · joined ${showDate(user.created_at)}` }),
      error,
      linkHolder,
    ),
    user.is_active ? null : el("span", { class: "badge-pill is-cancelled", text: "Disabled" }),
    el("div", { class: "item-actions" }, roleControl(user, error, replace), toggle, resetLink(user, linkHolder, error)),
  );
  return item;
}

function query() {
  const params = new URLSearchParams({ limit: String(PAGE) });
  const q = filter.elements.q.value.trim();
  if (q) params.set("q", q);
  if (filter.elements.role.value) params.set("role", filter.elements.role.value);
  if (filter.elements.active.value) params.set("active", filter.elements.active.value);
  return params;
}

async function load(next = false) {
  const mine = next ? generation : ++generation;
  const params = query();
  if (next && cursor) params.set("cursor", cursor);
  listError.hidden = true;
  more.disabled = true;
  try {
    const page = await api(`/api/v1/users?${params}`);
    if (mine !== generation) return;
    cursor = page.next_cursor;
    const items = page.items.map(userItem);
    if (next) {
      list.append(...items);
      shown += items.length;
      items[0]?.querySelector("select, button")?.focus(); // the first of the new rows
    } else {
      shown = items.length;
      list.replaceChildren(...(items.length ? items : [el("li", { class: "empty", text: "No account matches." })]));
    }
    more.hidden = !cursor;
    count.textContent = `${shown}${cursor ? "+" : ""} account${shown === 1 ? "" : "s"} shown.`;
  } catch (e) {
    if (mine !== generation) return;
    listError.textContent = describeError(e); // the search stays as typed
    listError.hidden = false;
  } finally {
    more.disabled = false;
  }
}

let typing = null;
filter.addEventListener("input", (ev) => {
  clearTimeout(typing);
  typing = setTimeout(() => load(), ev.target.name === "q" ? 300 : 0);
});
filter.addEventListener("submit", (ev) => {
  ev.preventDefault();
  clearTimeout(typing);
  load();
});
more.addEventListener("click", () => load(true));

async function start() {
  me = await requireUser();
  if (me.role !== "admin") {
    notice.textContent = "Only administrators can manage users.";
    notice.hidden = false;
    $("[data-sub]").textContent = "";
    return;
  }
  $("[data-admin]").hidden = false;
  await load();
}

start().catch((e) => {
  notice.textContent = describeError(e);
  notice.hidden = false;
});
