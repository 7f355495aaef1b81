/* Replies on their way. Each waits in the pane's pending list ("Sending…", or "Waiting
 * for connection…" while the socket is down) until its `message.ack` or its own message
 * comes back; after a reconnect it goes again with the same client_msg_id (the server
 * keeps one copy); with no answer in time, or an error, it offers Retry. */

import { part, renderBody, t, text } from "./dom.js";
import { fileBlock } from "./files.js";
import { send } from "./socket.js";
import { state } from "./state.js";

const ACK_TIMEOUT_MS = 10000;

const pendingRow = (pending) => {
  const li = document.createElement("li");
  li.className = "msg msg-agent is-pending";
  const bubble = document.createElement("div");
  bubble.className = "bubble";
  renderBody(bubble, pending.body);
  if (pending.attachment) bubble.appendChild(fileBlock(pending.attachment));
  li.appendChild(bubble);
  const meta = document.createElement("p");
  meta.className = "meta";
  const status = document.createElement("span");
  status.className = "send-state";
  meta.appendChild(status);
  const retry = document.createElement("button");
  retry.type = "button";
  retry.className = "retry";
  retry.dataset.clientMsgId = pending.id;
  retry.hidden = true;
  text(retry, t("retry"));
  meta.appendChild(retry);
  li.appendChild(meta);
  return li;
};

const setPendingState = (chat, pending, kind, detail) => {
  pending.state = kind;
  pending.row.classList.toggle("is-failed", kind === "failed");
  const status = part(pending.row, ".send-state");
  const retry = part(pending.row, ".retry");
  if (kind === "failed") {
    text(status, detail ? t("not_sent_because", { reason: detail }) : t("not_sent"));
    retry.hidden = chat.status !== "active";
  } else {
    text(status, t(state.connected ? "sending" : "waiting"));
    retry.hidden = true;
  }
};

export const failPending = (chat, pending, detail) => {
  window.clearTimeout(pending.timer);
  setPendingState(chat, pending, "failed", detail);
};

/* Answered (acked, or the message itself arrived): the row goes, the message shows. */
export const settlePending = (chat, pending) => {
  window.clearTimeout(pending.timer);
  pending.row.remove();
  chat.pending.delete(pending.id);
};

/* A new reply (text, or an uploaded file's record), shown in the pending list. */
export const queueReply = (chat, id, body, attachment) => {
  const pending = { id, body, attachment, state: "sending", timer: null, row: null };
  pending.row = pendingRow(pending);
  chat.pending.set(pending.id, pending);
  chat.pane.pendingList.appendChild(pending.row);
  return pending;
};

export const transmit = (chat, pending) => {
  window.clearTimeout(pending.timer);
  setPendingState(chat, pending, "sending");
  const frame = {
    type: "message.send",
    conversation: chat.id,
    client_msg_id: pending.id,
    body: pending.body,
  };
  if (pending.attachment) frame.attachment = pending.attachment.id;
  // Not connected: it goes out after the next `ready` (resendPending).
  if (!send(frame)) return;
  pending.timer = window.setTimeout(() => {
    if (chat.pending.get(pending.id) === pending) {
      failPending(chat, pending, t("no_answer"));
    }
  }, ACK_TIMEOUT_MS);
};

export const resendPending = (chat) => {
  chat.pending.forEach((pending) => {
    if (pending.state === "sending") transmit(chat, pending);
  });
};

/* The socket is gone: unacknowledged sends go again after `ready`, with the same
   client_msg_id; meanwhile they say they wait for the connection. */
export const holdPending = (chat) => {
  chat.pending.forEach((pending) => {
    window.clearTimeout(pending.timer);
    if (pending.state === "sending") setPendingState(chat, pending, "sending");
  });
};

/* A failed reply's Retry button sends it again. */
export const attachRetry = (chat) => {
  chat.pane.root.addEventListener("click", (event) => {
    const retry = event.target.closest(".retry");
    if (!retry) return;
    const pending = chat.pending.get(retry.dataset.clientMsgId);
    if (pending) transmit(chat, pending);
  });
};
