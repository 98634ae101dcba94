// Sign in / register: the server's error messages are shown next to the form.
import { describeError, loadSession, register, signIn } from "./api.js";
import { mountTabs } from "./tabs.js";

const params = new URLSearchParams(location.search);
const next = safeNext(params.get("next"));

/** Where to go after signing in: a path on this site, never another host. Browsers read
 * "/\evil.example" and "/<TAB>/evil.example" as "//evil.example", so backslashes and control characters are refused
 * and the result is resolved against this origin and compared. */
function safeNext(target) {
  const fallback = "/dashboard";
  if (!target || !target.startsWith("/") || /[\\\u0000-\u001f\u007f]/.test(target)) return fallback;
  let url;
  try {
    url = new URL(target, location.origin);
  } catch {
    return fallback;
  }
  if (url.origin !== location.origin) return fallback;
  return url.pathname + url.search + url.hash;
}

const notice = /** @type {HTMLElement} */ (document.querySelector("[data-notice]"));
if (params.get("expired")) {
  notice.textContent = "Your session has expired. Please sign in again to continue.";
  notice.hidden = false;
} else if (loadSession()) {
  location.replace(next);
}

// Sign in | Register.
const selectTab = mountTabs(document.querySelectorAll('[role="tab"]'));
if (params.get("register")) selectTab(1);

function wire(form, action) {
  const error = form.querySelector("[data-error]");
  const button = form.querySelector('button[type="submit"]');
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.hidden = true;
    const data = Object.fromEntries(new FormData(form));
    const empty = [...form.querySelectorAll("input")].filter((i) => i.required).find((i) => !i.value.trim());
    if (empty) {
      error.textContent = `Please fill in “${form.querySelector(`label[for="${empty.id}"]`).textContent}”.`;
      error.hidden = false;
      empty.focus();
      return;
    }
    button.disabled = true;
    try {
      await action(data);
      location.assign(next);
    } catch (e) {
      error.textContent = describeError(e);
      error.hidden = false;
      form.querySelector("input").focus();
      button.disabled = false;
    }
  });
}
wire(document.querySelector('[data-form="signin"]'), (d) => signIn(d.email.trim(), d.password));
wire(document.querySelector('[data-form="register"]'), (d) =>
  register(d.display_name.trim(), d.email.trim(), d.password),
);
