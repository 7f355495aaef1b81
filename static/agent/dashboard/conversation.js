/* What is said in a chat, as its pane shows it: messages kept in seq order (a seq
 * already held is never drawn twice, and a hole in the seqs is filled with `sync`) with
 * internal notes between them; the "Sent"/"Seen" receipt under the agent's latest
 * message; the visitor's typing indicator; and reading: what the agent has seen is
 * reported with `read`, which clears the unread badge. */

import { refreshCounts, updateItem } from "./chat-list.js";
import { announce, clockTime, pageAttentive, part, renderBody, systemText, t, text } from "./dom.js";
import { fileBlock, messageText } from "./files.js";
import { notifyDesktop } from "./notifications.js";
import { settlePending } from "./outbox.js";
import { authorName, isMine, visitorName } from "./people.js";
import { send } from "./socket.js";
import { state } from "./state.js";

const VISITOR_TYPING_TTL_MS = 8000; // hide the visitor's indicator if they go quiet

// --- the log -------------------------------------------------------------------------

export const scrollToBottom = (chat) => {
  const log = chat.pane.log;
  log.scrollTop = log.scrollHeight;
  chat.stickToBottom = true;
};

// --- messages ------------------------------------------------------------------------

const messageRow = (chat, message) => {
  const li = document.createElement("li");
  // Mine on the right; the visitor's and a colleague's (before a transfer) on the left;
  // the knowledge-base bot's on the agents' side, marked as the bot's.
  const side =
    message.sender === "system" || message.sender === "bot"
      ? message.sender
      : message.sender !== "agent"
        ? "visitor"
        : isMine(message)
          ? "agent"
          : "colleague";
  li.className = `msg msg-${side}`;
  li.dataset.seq = String(message.seq);
  if (message.sender === "system") {
    const note = document.createElement("p");
    note.className = "msg-system-text";
    text(note, systemText(message));
    li.appendChild(note);
    return li;
  }
  const author = authorName(chat, message);
  if (side === "colleague") {
    const by = document.createElement("p");
    by.className = "msg-author";
    by.setAttribute("aria-hidden", "true"); // the meta's label says it to screen readers
    text(by, author);
    li.appendChild(by);
  }
  const bubble = document.createElement("div");
  bubble.className = "bubble";
  // The bot's hand-off line has a code, like a system message: the agent's language.
  renderBody(bubble, message.sender === "bot" ? systemText(message) : message.body);
  if (message.attachment) bubble.appendChild(fileBlock(message.attachment));
  li.appendChild(bubble);
  const meta = document.createElement("p");
  meta.className = "meta";
  const who = document.createElement("span");
  who.className = "sr-only";
  if (message.sender === "bot") {
    // The knowledge-base bot's answer, shown as such with the articles it came from.
    who.className = "by-bot";
    const from = (message.sources || []).map((source) => `“${source.title}”`).join(", ");
    text(who, from ? t("bot_from", { articles: from }) : t("bot"));
  } else {
    text(who, `${author}, `);
  }
  meta.appendChild(who);
  const time = document.createElement("time");
  if (message.sent_at) time.dateTime = message.sent_at;
  text(time, clockTime(message.sent_at));
  meta.appendChild(time);
  if (side === "agent") {
    const receipt = document.createElement("span");
    receipt.className = "receipt";
    meta.appendChild(receipt);
  }
  li.appendChild(meta);
  return li;
};

/* A message row goes before the first later message and before the lines (notes,
   joins) that follow a message it precedes: whatever order the seqs arrive in (a
   `sync` filling a hole comes after later messages), the log reads in seq order. */
const insertSorted = (chat, seq, row) => {
  const seqs = chat.seqs;
  // Nearly always the newest: walk back from the end.
  let i = seqs.length;
  while (i > 0 && seqs[i - 1] > seq) i -= 1;
  seqs.splice(i, 0, seq);
  let before = null;
  for (let el = chat.pane.list.lastElementChild; el; el = el.previousElementSibling) {
    const later = el.dataset.seq ? Number(el.dataset.seq) > seq : Number(el.dataset.after) >= seq;
    if (!later) break;
    before = el;
  }
  chat.pane.list.insertBefore(row, before);
};

/* A line that follows message `afterSeq` (a note, "Bob joined the chat"): after it and
   after the lines already there, before any later message. */
const insertAfterSeq = (chat, afterSeq, li) => {
  li.dataset.after = String(afterSeq);
  const later = chat.seqs.find((seq) => seq > afterSeq);
  chat.pane.list.insertBefore(li, later === undefined ? null : chat.rows.get(later));
};

/* "Sent" or "Seen" under my latest message only; earlier ones are implied. */
const updateReceipt = (chat) => {
  let lastMine = null;
  for (let i = chat.seqs.length - 1; i >= 0; i -= 1) {
    if (isMine(chat.messages.get(chat.seqs[i]))) {
      lastMine = chat.seqs[i];
      break;
    }
  }
  const row = lastMine === null ? null : chat.rows.get(lastMine);
  if (chat.receiptRow && chat.receiptRow !== row) {
    const old = part(chat.receiptRow, ".receipt");
    if (old) {
      text(old, "");
      old.classList.remove("is-seen");
    }
  }
  chat.receiptRow = row;
  if (!row) return;
  const receipt = part(row, ".receipt");
  const seen = chat.visitorReadSeq >= lastMine;
  text(receipt, t(seen ? "seen" : "sent"));
  receipt.classList.toggle("is-seen", seen);
};

/* Insert messages by seq, skipping seqs already held. Returns how many were new. */
export const addMessages = (chat, messages, live) => {
  let added = 0;
  const wasAtBottom = chat.stickToBottom;
  messages.forEach((message) => {
    if (typeof message.seq !== "number" || chat.messages.has(message.seq)) return;
    if (message.sender === "agent" && message.client_msg_id) {
      const pending = chat.pending.get(message.client_msg_id);
      if (pending) settlePending(chat, pending);
    }
    chat.messages.set(message.seq, message);
    const row = messageRow(chat, message);
    chat.rows.set(message.seq, row);
    insertSorted(chat, message.seq, row);
    added += 1;
  });
  if (added) {
    updateReceipt(chat);
    if (wasAtBottom || !live) scrollToBottom(chat);
  }
  return added;
};

/* Internal notes sit after the message they followed (`after_seq`), before any later one. */
export const addNotes = (chat, notes) => {
  const wasAtBottom = chat.stickToBottom;
  (notes || []).forEach((note) => {
    if (typeof note.id !== "number" || chat.notes.has(note.id)) return;
    const li = document.createElement("li");
    li.className = "msg msg-note";
    li.dataset.note = String(note.id);
    const label = document.createElement("p");
    label.className = "note-label";
    text(label, note.author ? t("note_by", { name: note.author }) : t("note"));
    li.appendChild(label);
    const bubble = document.createElement("div");
    bubble.className = "bubble";
    renderBody(bubble, note.body);
    li.appendChild(bubble);
    chat.notes.set(note.id, li);
    insertAfterSeq(chat, note.after_seq, li);
  });
  if (wasAtBottom) scrollToBottom(chat);
};

/* "Alice joined the chat" where each agent's turn began (`joins`, in order), once. */
export const addJoins = (chat, joins) => {
  if (!Array.isArray(joins)) return;
  const wasAtBottom = chat.stickToBottom;
  joins.forEach((join, index) => {
    const key = `${index}:${join.after_seq}`;
    if (typeof join.after_seq !== "number" || chat.joinLines.has(key)) return;
    const li = document.createElement("li");
    li.className = "msg msg-system msg-join";
    const line = document.createElement("p");
    line.className = "msg-system-text";
    text(line, t("joined", { name: (join.agent && join.agent.display_name) || t("an_agent") }));
    li.appendChild(line);
    chat.joinLines.set(key, li);
    insertAfterSeq(chat, join.after_seq, li);
  });
  if (wasAtBottom) scrollToBottom(chat);
};

// --- holes in the seqs ---------------------------------------------------------------

/* The highest seq up to which nothing is missing. */
export const contiguousSeq = (chat) => {
  const seqs = chat.seqs;
  // seqs start at 1 and are gapless, so a full prefix has seqs[i] === i + 1.
  if (seqs.length === 0 || seqs[seqs.length - 1] === seqs.length) return seqs.length;
  let lo = 0;
  let hi = seqs.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (seqs[mid] === mid + 1) lo = mid + 1;
    else hi = mid;
  }
  return lo;
};

const maxSeq = (chat) => (chat.seqs.length ? chat.seqs[chat.seqs.length - 1] : 0);

export const requestSync = (chat, afterSeq) => {
  if (chat.syncing) return;
  if (send({ type: "sync", conversation: chat.id, after_seq: afterSeq })) chat.syncing = true;
};

/* Once the history is in, a seq missing below the newest one is asked for again. */
export const checkGaps = (chat) => {
  if (!chat.historyLoaded) return;
  const upTo = contiguousSeq(chat);
  if (upTo < maxSeq(chat)) requestSync(chat, upTo);
};

const countVisitorMessagesAfter = (chat, seq) => {
  let n = 0;
  for (let i = chat.seqs.length - 1; i >= 0 && chat.seqs[i] > seq; i -= 1) {
    if (chat.messages.get(chat.seqs[i]).sender === "visitor") n += 1;
  }
  return n;
};

// --- reading -------------------------------------------------------------------------

/* The chat on screen, in a tab the agent is looking at, is read up to its newest seq. */
export const markRead = (chat) => {
  if (state.selected !== chat.id || chat.status !== "active" || !pageAttentive()) return;
  const seq = maxSeq(chat);
  if (seq > chat.readSeq) {
    if (!send({ type: "read", conversation: chat.id, seq })) return;
    chat.readSeq = seq;
  }
  if (chat.unread) {
    chat.unread = 0;
    updateItem(chat);
    refreshCounts();
  }
};

const markSelectedRead = () => {
  const chat = state.selected !== null && state.chats.get(state.selected);
  if (chat) markRead(chat);
  refreshCounts();
};

/* Coming back to the tab reads the chat on screen. */
export const watchAttention = () => {
  window.addEventListener("focus", markSelectedRead);
  document.addEventListener("visibilitychange", markSelectedRead);
};

// --- the visitor typing --------------------------------------------------------------

export const setVisitorTyping = (chat, active, draft) => {
  window.clearTimeout(chat.visitorTypingTimer);
  chat.visitorTyping = active && chat.status === "active";
  chat.pane.typing.hidden = !chat.visitorTyping;
  // Sneak peek (when the site allows it): the visitor's unsent draft.
  const peek = chat.visitorTyping && draft && draft.trim() ? draft : null;
  chat.pane.typing.classList.toggle("has-draft", peek !== null);
  const name = visitorName(chat);
  text(
    chat.pane.typingText,
    !chat.visitorTyping ? "" : peek !== null ? t("typing_peek", { name, draft: peek }) : t("typing", { name }),
  );
  if (chat.visitorTyping) {
    chat.visitorTypingTimer = window.setTimeout(
      () => setVisitorTyping(chat, false),
      VISITOR_TYPING_TTL_MS,
    );
  }
  updateItem(chat);
};

// --- frames --------------------------------------------------------------------------

export const onMessage = (frame) => {
  const chat = state.chats.get(frame.conversation);
  if (!chat) return;
  const added = addMessages(chat, [frame], true);
  if (!added) return;
  if (frame.sender === "visitor") {
    setVisitorTyping(chat, false);
    const watching = state.selected === chat.id && pageAttentive();
    // The socket joins its groups before the server counts `unread` for `ready`, so
    // a message may be in that count and arrive as a frame too: count it once.
    const counted = frame.seq <= chat.countedThrough;
    chat.countedThrough = Math.max(chat.countedThrough, frame.seq);
    if (!watching && !counted) {
      chat.unread += 1;
      if (state.selected !== chat.id) {
        announce(t("new_message", { name: visitorName(chat), text: messageText(frame).slice(0, 140) }));
      }
      notifyDesktop(visitorName(chat), messageText(frame), chat);
    }
  }
  checkGaps(chat);
  updateItem(chat);
  refreshCounts();
  markRead(chat);
};

export const onNote = (frame) => {
  const chat = state.chats.get(frame.conversation);
  if (chat) addNotes(chat, [frame]);
};

export const onTyping = (frame) => {
  const chat = state.chats.get(frame.conversation);
  if (!chat || frame.from !== "visitor") return;
  setVisitorTyping(chat, frame.active === true, typeof frame.text === "string" ? frame.text : null);
};

export const onRead = (frame) => {
  const chat = state.chats.get(frame.conversation);
  if (!chat || typeof frame.seq !== "number") return;
  if (frame.by === "visitor") {
    if (frame.seq > chat.visitorReadSeq) {
      chat.visitorReadSeq = frame.seq;
      updateReceipt(chat);
    }
  } else if (frame.by === "agent") {
    // Read in another tab of mine.
    if (frame.seq > chat.readSeq) {
      chat.readSeq = frame.seq;
      chat.unread = countVisitorMessagesAfter(chat, frame.seq);
      updateItem(chat);
      refreshCounts();
    }
  }
};

export const onRated = (frame) => {
  const chat = state.chats.get(frame.conversation);
  if (!chat || chat.status === "active") return;
  const said = frame.comment
    ? t("rated_saying", { score: frame.score, comment: frame.comment })
    : t("rated", { score: frame.score });
  text(chat.pane.notice, `${chat.pane.notice.textContent} ${said}`);
};
