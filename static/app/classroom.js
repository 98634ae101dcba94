// The live classroom: preview and device choice, then the room (video grid, screen share,
// chat, hands, teacher controls, presence), over the SFU protocol and the live channel.
import { api, describeError, requireUser } from "./api.js";
import { $, sessionId, showNotice, state } from "./classroom/state.js";
import { fillDevices, openDevices } from "./classroom/media.js";
import { renderToggles } from "./classroom/controls.js";
import { finish, requestTicket } from "./classroom/connection.js";

// ---- start ------------------------------------------------------------------------------------

async function main() {
  state.me = await requireUser();
  try {
    state.session = await api(`/api/v1/sessions/${sessionId}`);
  } catch (e) {
    finish("This class cannot be opened", describeError(e));
    return;
  }
  $("[data-session-title]").textContent = state.session.title;
  document.title = `${state.session.title} · VTP Classroom`;
  api(`/api/v1/courses/${state.session.course_id}`)
    .then((c) => ($("[data-course-title]").textContent = `${c.code} · ${c.title}`))
    .catch(() => {});
  if (state.session.status === "live") {
    // A removed student sees that at once, not a pre-join screen with Join enabled.
    // (Another refusal is told when Join is pressed.)
    const admitted = await requestTicket().catch(() => true);
    if (!admitted) return;
  } else {
    const info = $("[data-prejoin-info]");
    info.textContent = state.session.status === "scheduled"
      ? `This class has not started yet (scheduled for ${new Date(state.session.scheduled_start).toLocaleString()}).`
      : "This class has ended.";
  }
  renderToggles();
  try {
    await openDevices();
    await fillDevices();
  } catch (e) {
    showNotice(`Your camera or microphone is not available (${e.message}). You can still join and watch.`);
    state.micOn = false;
    state.camOn = false;
    renderToggles();
  }
  $("[data-join]").disabled = false;
  $("[data-join]").focus();
}

/** @type {any} */ (window).vtpClassroom = {
  state,
  async stats() {
    const sfu = state.sfu ? await state.sfu.stats() : null;
    const videos = [.../** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll(".tile"))].map((tile) => {
      const v = tile.querySelector("video");
      const r = v.getBoundingClientRect();
      return {
        key: tile.dataset.key,
        name: tile.querySelector(".name").textContent,
        featured: tile.classList.contains("featured"),
        hidden: tile.hidden,
        streamId: tile.dataset.streamId || null,
        noVideo: tile.classList.contains("no-video"),
        playing: !v.paused && v.readyState >= 2,
        videoWidth: v.videoWidth,
        width: r.width,
        height: r.height,
        currentTime: v.currentTime,
      };
    });
    return { sfu, videos, page: state.page, pages: state.pages, conn: $("[data-conn]").textContent, live: state.live ? state.live.state : "idle" };
  },
};

main().catch((e) => showNotice(describeError(e)));
