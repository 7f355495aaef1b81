/* Writing in a chat: the composer (Enter sends, Shift+Enter is a new line; the Note
 * toggle makes it an internal note only agents see), the agent's typing indicator as
 * the visitor sees it, and a reply's way into the outbox and, once acked, the log. */

import { replyPlaceholder } from "./channel.js";
import { refreshCounts, updateItem } from "./chat-list.js";
import { addMessages, checkGaps, scrollToBottom } from "./conversation.js";
import { t, toast } from "./dom.js";
import { queueReply, settlePending, transmit } from "./outbox.js";
import { send } from "./socket.js";
import { state } from "./state.js";

const TYPING_REPEAT_MS = 3000; // resend typing:true at most this often while typing
const TYPING_IDLE_MS = 4000; // typing:false after this long without a keystroke

const newClientMsgId = () => {
  if (window.crypto && typeof window.crypto.randomUUID === "function") {
    return window.crypto.randomUUID();
  }
  // randomUUID needs a secure context; getRandomValues does not.
  const bytes = new Uint8Array(16);
  window.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
};

// --- typing --------------------------------------------------------------------------

export const stopTyping = (chat) => {
  window.clearTimeout(chat.typingIdleTimer);
  if (!chat.typingActive) return;
  chat.typingActive = false;
  if (chat.status === "active") send({ type: "typing", conversation: chat.id, active: false });
};

export const onComposerInput = (chat) => {
  // Writing a note is nothing the visitor may see, not even as "typing".
  if (chat.status !== "active" || chat.pane.noteToggle.checked) return;
  if (!chat.pane.input.value.trim()) {
    stopTyping(chat);
    return;
  }
  const now = Date.now();
  if (!chat.typingActive || now - chat.typingSentAt > TYPING_REPEAT_MS) {
    if (send({ type: "typing", conversation: chat.id, active: true })) {
      chat.typingActive = true;
      chat.typingSentAt = now;
    }
  }
  window.clearTimeout(chat.typingIdleTimer);
  chat.typingIdleTimer = window.setTimeout(() => stopTyping(chat), TYPING_IDLE_MS);
};

// --- sending -------------------------------------------------------------------------

/* A reply (text, or an uploaded file's record with an empty body) goes out. */
export const sendMessage = (chat, body, attachment) => {
  const pending = queueReply(chat, newClientMsgId(), body, attachment);
  scrollToBottom(chat);
  transmit(chat, pending);
};

const submitComposer = (chat) => {
  if (chat.status !== "active") return;
  const body = chat.pane.input.value.trim();
  if (!body) return;
  if (chat.pane.noteToggle.checked) {
    const frame = {
      type: "note.send",
      conversation: chat.id,
      client_msg_id: newClientMsgId(),
      body,
    };
    if (send(frame)) chat.pane.input.value = "";
    else toast(t("note_offline"));
    return;
  }
  chat.pane.input.value = "";
  stopTyping(chat);
  sendMessage(chat, body);
};

export const onAck = (frame) => {
  const chat = state.chats.get(frame.conversation);
  if (!chat) return;
  const pending = chat.pending.get(frame.client_msg_id);
  if (!pending) return; // a duplicate ack for a retry already confirmed
  settlePending(chat, pending);
  const message = {
    conversation: chat.id,
    seq: frame.seq,
    sender: "agent",
    agent: { id: state.agentId, display_name: state.agentName },
    body: pending.body,
    attachment: pending.attachment,
    client_msg_id: pending.id,
    sent_at: new Date().toISOString(),
  };
  addMessages(chat, [message], true);
  // Answering means having read everything before the answer (the server agrees).
  chat.readSeq = Math.max(chat.readSeq, frame.seq);
  chat.unread = 0;
  checkGaps(chat);
  updateItem(chat);
  refreshCounts();
};

export const attachComposer = (chat) => {
  const { form, input, noteToggle } = chat.pane;
  noteToggle.addEventListener("change", () => {
    const noting = noteToggle.checked;
    form.classList.toggle("is-note", noting);
    input.placeholder = noting ? t("write_note") : replyPlaceholder(chat);
    if (noting) stopTyping(chat);
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submitComposer(chat);
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submitComposer(chat);
    }
  });
  input.addEventListener("input", () => onComposerInput(chat));
  input.addEventListener("blur", () => stopTyping(chat));
};
