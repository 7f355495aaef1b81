/* The agent's presence: the Available/Away buttons (pressed only once the server
 * confirms), the note under them, and auto-away: input in the page is noted (idle.js),
 * and the first input after being put away for idleness pings at once, to come back. */

import { els, t, text } from "./dom.js";
import { recordInput } from "./idle.js";
import { askNotificationPermissionOnce } from "./notifications.js";
import { ping, send } from "./socket.js";
import { root, state } from "./state.js";

const presenceNote = () => {
  if (state.presenceWanted) return t(state.presenceWanted === "away" ? "switching_away" : "switching_available");
  if (state.status === "available") return t("taking_chats");
  return t(state.autoAway ? "away_idle" : "away");
};

export const updatePresenceControls = () => {
  els.presence.querySelectorAll(".presence-option").forEach((button) => {
    const status = button.dataset.status;
    button.setAttribute("aria-pressed", String(state.status === status));
    button.classList.toggle("is-pending", state.presenceWanted === status);
    button.disabled = !state.connected;
  });
  root.dataset.presence = state.status;
  text(els.presenceNote, presenceNote());
};

export const onPresence = (frame) => {
  state.status = frame.status;
  // `auto`: the server changed it for idleness; any choice ends an automatic away.
  state.autoAway = frame.auto === true && frame.status === "away";
  if (state.presenceWanted === frame.status) state.presenceWanted = null;
  updatePresenceControls();
};

const choosePresence = (event) => {
  const button = event.target.closest(".presence-option");
  if (!button) return;
  askNotificationPermissionOnce();
  const wanted = button.dataset.status;
  if (wanted === state.status && state.presenceWanted === null) return;
  if (send({ type: "presence", status: wanted })) {
    state.presenceWanted = wanted;
    updatePresenceControls();
  }
};

const noteInput = () => {
  if (!recordInput()) return;
  // Put away for idleness: the first input brings the agent back now, not at the next ping.
  if (state.autoAway && state.connected) ping();
};

export const setupPresence = () => {
  els.presence.addEventListener("click", choosePresence);
  ["keydown", "pointerdown", "pointermove", "wheel", "focus"].forEach((kind) => {
    window.addEventListener(kind, noteInput, { passive: true, capture: true });
  });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") noteInput();
  });
};
