// The account page: the display name, and the password (the server signs out every other
// device and hands this one fresh tokens). Admins find the users page from here.
import { api, changePassword, describeError, requireUser } from "./api.js";

const form = /** @type {HTMLFormElement} */ (document.querySelector('[data-form="password"]'));
const error = /** @type {HTMLElement} */ (form.querySelector("[data-error]"));
const done = /** @type {HTMLElement} */ (document.querySelector("[data-done]"));
const button = /** @type {HTMLButtonElement} */ (form.querySelector('button[type="submit"]'));
const profile = /** @type {HTMLFormElement} */ (document.querySelector('[data-form="profile"]'));
const profileError = /** @type {HTMLElement} */ (profile.querySelector("[data-error]"));

let user = await requireUser();
const who = document.querySelector("[data-account-who]");
function showWho() {
  who.textContent = `Signed in as ${user.display_name} (${user.email}).`;
  document.querySelector("[data-user-name]").textContent = user.display_name;
}
showWho();
const nameInput = /** @type {HTMLInputElement} */ (profile.elements.namedItem("display_name"));
nameInput.value = user.display_name;
/** @type {HTMLElement} */ (document.querySelector("[data-admin-tools]")).hidden = user.role !== "admin";

function fail(node, text, input) {
  node.textContent = text;
  node.hidden = false;
  if (input) input.focus();
}

profile.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  profileError.hidden = true;
  done.hidden = true;
  const input = nameInput;
  if (!input.value.trim()) return fail(profileError, "Please fill in your display name.", input);
  const save = /** @type {HTMLButtonElement} */ (profile.querySelector('button[type="submit"]'));
  save.disabled = true;
  try {
    user = await api("/api/v1/users/me", { method: "PATCH", body: { display_name: input.value } });
    input.value = user.display_name;
    showWho();
    done.textContent = `Your name is now ${user.display_name}.`;
    done.hidden = false;
  } catch (e) {
    fail(profileError, describeError(e), input); // what was typed stays
  } finally {
    save.disabled = false;
  }
});

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  error.hidden = true;
  done.hidden = true;
  const data = Object.fromEntries(new FormData(form));
  const empty = [...form.querySelectorAll("input")].filter((i) => i.required).find((i) => !i.value);
  if (empty) return fail(error, `Please fill in “${form.querySelector(`label[for="${empty.id}"]`).textContent}”.`, empty);
  if (data.new_password !== data.repeat_password) {
    return fail(error, "The two new passwords are not the same.", form.querySelector("#repeat-password"));
  }
  button.disabled = true;
  try {
    await changePassword(data.current_password, data.new_password);
    form.reset();
    done.textContent = "Your password has been changed. Your other devices have been signed out.";
    done.hidden = false;
  } catch (e) {
    fail(error, describeError(e), form.querySelector("input"));
  } finally {
    button.disabled = false;
  }
});
