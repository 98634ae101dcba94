// The account page: change password (the server signs out every other device and hands
// this one fresh tokens).
import { changePassword, describeError, requireUser } from "./api.js";

const form = document.querySelector('[data-form="password"]');
const error = form.querySelector("[data-error]");
const done = document.querySelector("[data-done]");
const button = form.querySelector('button[type="submit"]');

const user = await requireUser();
document.querySelector("[data-account-who]").textContent = `Signed in as ${user.display_name} (${user.email}).`;

function fail(text, input) {
  error.textContent = text;
  error.hidden = false;
  if (input) input.focus();
}

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  error.hidden = true;
  done.hidden = true;
  const data = Object.fromEntries(new FormData(form));
  const empty = [...form.querySelectorAll("input[required]")].find((i) => !i.value);
  if (empty) return fail(`Please fill in “${form.querySelector(`label[for="${empty.id}"]`).textContent}”.`, empty);
  if (data.new_password !== data.repeat_password) {
    return fail("The two new passwords are not the same.", form.querySelector("#repeat-password"));
  }
  button.disabled = true;
  try {
    await changePassword(data.current_password, data.new_password);
    form.reset();
    done.textContent = "Your password has been changed. Your other devices have been signed out.";
    done.hidden = false;
  } catch (e) {
    fail(describeError(e), form.querySelector("input"));
  } finally {
    button.disabled = false;
  }
});
