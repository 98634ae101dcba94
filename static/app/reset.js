// Password reset: with a link's token (in the URL fragment, which browsers never send to
// the server) choose a new password; without one, ask for the link by e-mail.
import { ApiError, describeError, publicRequest } from "./api.js";

const token = new URLSearchParams(location.hash.slice(1)).get("token");
const done = /** @type {HTMLElement} */ (document.querySelector("[data-done]"));
const form = /** @type {HTMLFormElement} */ (document.querySelector(token ? '[data-form="reset"]' : '[data-form="request"]'));
const error = /** @type {HTMLElement} */ (form.querySelector("[data-error]"));
const button = /** @type {HTMLButtonElement} */ (form.querySelector('button[type="submit"]'));
form.hidden = false;
if (token) history.replaceState(null, "", location.pathname); // keep it out of the history

function fail(text, input) {
  error.textContent = text;
  error.hidden = false;
  if (input) input.focus();
}

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  error.hidden = true;
  const data = Object.fromEntries(new FormData(form));
  const empty = [...form.querySelectorAll("input")].filter((i) => i.required).find((i) => !i.value.trim());
  if (empty) return fail(`Please fill in “${form.querySelector(`label[for="${empty.id}"]`).textContent}”.`, empty);
  if (token && data.new_password !== data.repeat_password) {
    return fail("The two new passwords are not the same.", form.querySelector("#reset-repeat"));
  }
  button.disabled = true;
  try {
    if (token) {
      await publicRequest("/api/v1/auth/password-reset", { token, new_password: data.new_password });
      done.textContent = "Your password has been changed. You can now sign in with it.";
    } else {
      const reply = await publicRequest("/api/v1/auth/password-reset/request", { email: String(data.email).trim() });
      done.textContent = reply.message.charAt(0).toUpperCase() + reply.message.slice(1) + ".";
    }
    form.hidden = true;
    done.hidden = false;
  } catch (e) {
    if (e instanceof ApiError && e.code === "email_not_configured") {
      fail("This server does not send e-mail. Please ask an administrator for a reset link.");
    } else {
      fail(describeError(e), form.querySelector("input"));
    }
    button.disabled = false;
  }
});
