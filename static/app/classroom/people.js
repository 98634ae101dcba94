// The people list (with the teacher's per-person controls) and the raised-hand queue.
import { el, toast } from "../api.js";
import { $, state } from "./state.js";
import { duration, hue, initials } from "./format.js";

// ---- people, hands ----------------------------------------------------------------------------

export function renderPeople() {
  const list = $("[data-people]");
  const now = Date.now() + state.clockOffset;
  const people = [...state.participants.values()].sort(
    (a, b) => (a.role === "presenter" ? -1 : 0) - (b.role === "presenter" ? -1 : 0) || a.display.localeCompare(b.display),
  );
  $("[data-people-count]").textContent = String(people.length);
  list.replaceChildren(
    ...people.map((p) => {
      const isMe = p.user_id === state.me.id;
      const avatar = el("span", { class: "avatar-sm", "aria-hidden": "true", text: initials(p.display) });
      avatar.style.setProperty("--h", hue(p.display));
      const controls = [];
      const muted = p.muted || {};
      if (state.presenter && !isMe && p.role !== "presenter") {
        const send = (msg) => state.live.send({ ...msg, user_id: p.user_id });
        controls.push(
          muted.audio
            ? el("button", { type: "button", class: "btn btn-small", text: "Unmute", "aria-label": `Allow ${p.display} to speak`, onclick: () => send({ type: "unmute", kind: "audio" }) })
            : el("button", { type: "button", class: "btn btn-small", text: "Mute", "aria-label": `Mute ${p.display}`, onclick: () => send({ type: "mute", kind: "audio" }) }),
          muted.audio && muted.audio.locked
            ? null
            : el("button", { type: "button", class: "btn btn-small", text: "Lock", title: "Mute, and only you can unmute", "aria-label": `Lock ${p.display}'s microphone`, onclick: () => send({ type: "mute", kind: "audio", locked: true }) }),
          muted.video
            ? el("button", { type: "button", class: "btn btn-small", text: "Allow video", "aria-label": `Allow ${p.display}'s video`, onclick: () => send({ type: "unmute", kind: "video" }) })
            : el("button", { type: "button", class: "btn btn-small", text: "Stop video", "aria-label": `Stop ${p.display}'s video`, onclick: () => send({ type: "mute", kind: "video" }) }),
          el("button", { type: "button", class: "btn btn-small btn-danger-quiet", text: "Remove", "aria-label": `Remove ${p.display}`, onclick: () => askRemove(p) }),
        );
      }
      return el(
        "li",
        { class: "person", "data-user-id": p.user_id },
        avatar,
        el(
          "div",
          { class: "person-main" },
          el("span", { class: "person-name", text: p.display + (isMe ? " (you)" : "") }),
          el("span", {
            class: "muted small",
            text: `${p.role === "presenter" ? "Teacher · " : ""}${p.channel === false ? "media only · " : ""}in class ${duration(now - new Date(p.since).getTime())}`,
            "data-since": p.since,
          }),
        ),
        el(
          "span",
          { class: "person-icons" },
          p.hand_raised_at ? el("span", { class: "hand-badge", title: "Hand raised" }, el("span", { class: "sr-only", text: "hand raised" })) : null,
          el("span", { class: `icon-mic ${p.audio && !muted.audio ? "" : "is-off"}`, title: muted.audio ? `Muted by ${muted.audio.by}${muted.audio.locked ? " (locked)" : ""}` : p.audio ? "Microphone on" : "Microphone off" }),
          el("span", { class: `icon-cam ${p.video && !muted.video ? "" : "is-off"}`, title: muted.video ? `Video stopped by ${muted.video.by}` : p.video ? "Camera on" : "Camera off" }),
        ),
        controls.length ? el("span", { class: "person-actions" }, ...controls) : null,
      );
    }),
  );
  // Raised hands, in the order they went up (the teacher's queue).
  const hands = people.filter((p) => p.hand_raised_at).sort((a, b) => new Date(a.hand_raised_at).getTime() - new Date(b.hand_raised_at).getTime());
  const section = $("[data-hands-section]");
  section.hidden = !(state.presenter && hands.length);
  $("[data-hand-queue]").replaceChildren(
    ...hands.map((p, i) =>
      el(
        "li",
        { class: "hand-item" },
        el("span", { class: "hand-pos", text: String(i + 1) }),
        el("span", { class: "person-name", text: p.display }),
        el("button", { type: "button", class: "btn btn-small", text: "Lower", "aria-label": `Lower ${p.display}'s hand`, onclick: () => state.live.send({ type: "lower-hand", user_id: p.user_id }) }),
      ),
    ),
  );
  $("[data-hand]").dataset.queue = String(hands.length);
}

let removing = null;
function askRemove(participant) {
  removing = participant;
  const dialog = $("[data-remove-dialog]");
  dialog.querySelector("[data-remove-name]").textContent = participant.display;
  dialog.showModal();
}
$("[data-remove-dialog]").addEventListener("close", (ev) => {
  const dialog = ev.target;
  if (dialog.returnValue === "remove" && removing) {
    const reason = dialog.querySelector("#remove-reason").value.trim() || "Removed by the teacher";
    state.live.send({ type: "remove", user_id: removing.user_id, reason });
    toast(`${removing.display} was removed from the class.`);
  }
  removing = null;
});
