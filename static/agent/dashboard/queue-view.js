/* The queue view: who waits at the agent's sites, for how long (counting up live), and
 * what they first wrote, from `queue.list`; with a Take button where the site lets
 * agents pick (`can_take`). Opened from the sidebar's "In queue"; asked again whenever
 * the queue's length changes while it is shown. A take that the server refuses says
 * why, in the view; one it accepts opens the chat (chats.js, onAssigned). */

import { setQueueLength } from "./chat-list.js";
import { clockTime, duration, els, t, text } from "./dom.js";
import { send } from "./socket.js";
import { root, state } from "./state.js";

const WAIT_TICK_MS = 1000;

// Why a take was refused (docs/protocol.md, `conversation.take`), in the agent's words.
const TAKE_ERRORS = {
  not_found: t("take_gone"),
  forbidden: t("take_forbidden"),
  agent_unavailable: t("take_full"),
};

let shown = false;
let taking = null; // the conversation a `conversation.take` is out for
let entries = [];
let tickTimer = null;

const waitedText = (entry, now) => {
  const since = new Date(entry.queued_at);
  if (isNaN(since.getTime())) return "";
  return t("waiting_for", { time: duration(now - since.getTime()) });
};

const waitingName = (entry) => {
  const visitor = entry.visitor || {};
  return visitor.name || visitor.email || t("visitor_number", { id: visitor.id });
};

const showError = (message) => {
  text(els.queueError, message || "");
  els.queueError.hidden = !message;
};

const take = (entry, button) => {
  if (taking !== null) return;
  showError("");
  if (!send({ type: "conversation.take", conversation: entry.id })) {
    showError(t("take_offline"));
    return;
  }
  taking = entry.id;
  button.disabled = true;
  text(button, t("taking"));
};

const entryRow = (entry, now) => {
  const li = document.createElement("li");
  li.className = "queue-entry";
  li.dataset.conversation = String(entry.id);
  const top = document.createElement("p");
  top.className = "queue-entry-top";
  const place = text(document.createElement("span"), `#${entry.position}`);
  place.className = "queue-place";
  const name = text(document.createElement("span"), waitingName(entry));
  name.className = "queue-name";
  name.title = name.textContent;
  const wait = text(document.createElement("span"), waitedText(entry, now));
  wait.className = "queue-wait";
  wait.title = t("in_queue_since", { time: clockTime(entry.queued_at) });
  top.append(place, name, wait);
  const said = text(document.createElement("p"), entry.first_message || t("no_message_yet"));
  said.className = "queue-said";
  li.append(top, said);
  if (entry.can_take) {
    const button = text(document.createElement("button"), t("take"));
    button.type = "button";
    button.className = "button button-small queue-take";
    button.setAttribute("aria-label", t("take_chat_with", { name: waitingName(entry) }));
    button.disabled = taking !== null;
    button.addEventListener("click", () => take(entry, button));
    li.appendChild(button);
  } else {
    const note = text(document.createElement("p"), t("assigned_in_turn"));
    note.className = "queue-auto";
    li.appendChild(note);
  }
  return li;
};

const render = () => {
  const now = Date.now();
  els.queueList.textContent = "";
  entries.forEach((entry) => els.queueList.appendChild(entryRow(entry, now)));
  els.queueEmpty.hidden = entries.length > 0;
};

const tick = () => {
  const now = Date.now();
  entries.forEach((entry) => {
    const row = els.queueList.querySelector(`li[data-conversation="${entry.id}"] .queue-wait`);
    if (row) text(row, waitedText(entry, now));
  });
};

const ask = () => {
  if (!send({ type: "queue.list" })) showError(t("queue_offline"));
};

export const showQueue = (open) => {
  shown = open;
  els.queueView.hidden = !open;
  els.queueOpen.setAttribute("aria-expanded", open ? "true" : "false");
  root.classList.toggle("is-queue-open", open);
  window.clearInterval(tickTimer);
  if (!open) return;
  showError("");
  // On a phone the panes' side shows (dashboard.css's has-selection).
  root.classList.add("has-selection");
  ask();
  tickTimer = window.setInterval(tick, WAIT_TICK_MS);
  els.queueClose.focus();
};

/* A `conversation.assigned` for the chat this agent just took: the take is over. */
export const tookChat = (id) => {
  if (taking !== id) return false;
  taking = null;
  return true;
};

/* An error answering a take (the error frame names no conversation: the one take out
   is the one refused). True if it was that. */
export const onTakeError = (frame) => {
  if (taking === null || !(frame.code in TAKE_ERRORS)) return false;
  taking = null;
  showError(TAKE_ERRORS[frame.code]);
  if (shown) ask();
  return true;
};

/* `queue`: the length always; the waiting chats when it answers `queue.list`. */
export const onQueue = (frame) => {
  const changed = frame.queue_length !== state.queueLength;
  setQueueLength(frame.queue_length);
  if (Array.isArray(frame.conversations)) {
    entries = frame.conversations;
    if (shown) render();
  } else if (shown && changed) {
    ask();
  }
};

export const setupQueueView = () => {
  els.queueOpen.addEventListener("click", () => showQueue(!shown));
  els.queueClose.addEventListener("click", () => {
    showQueue(false);
    els.queueOpen.focus();
  });
  els.queueBack.addEventListener("click", () => {
    showQueue(false);
    root.classList.remove("has-selection");
    els.queueOpen.focus();
  });
};
