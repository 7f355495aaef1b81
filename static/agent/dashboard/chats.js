/* A chat's life on this page: made when it is assigned (or listed by `ready`), opened
 * when the agent picks it, ended when it is closed, transferred or moved back to the
 * queue (it moves to the Ended list, saying how, until the agent removes it), and made
 * active again if the server gives it back. */

import { showChannel } from "./channel.js";
import { buildItem, lastPreview, placeItem, refreshCounts, updateItem } from "./chat-list.js";
import { stopTyping } from "./composer.js";
import {
  addJoins,
  addMessages,
  addNotes,
  checkGaps,
  contiguousSeq,
  markRead,
  requestSync,
  scrollToBottom,
  setVisitorTyping,
} from "./conversation.js";
import { announce, els, t, text } from "./dom.js";
import { askNotificationPermissionOnce, notifyDesktop } from "./notifications.js";
import { failPending } from "./outbox.js";
import { buildPane } from "./pane.js";
import { showQueue, tookChat } from "./queue-view.js";
import { visitorName } from "./people.js";
import { root, state } from "./state.js";
import { showTransferPanel } from "./transfer.js";
import { requestProfile, showVisitorContext } from "./visitor-panel.js";

const selectChat = (id, byUser) => {
  const chat = state.chats.get(id);
  if (!chat) return;
  if (state.selected !== null && state.selected !== id) {
    const previous = state.chats.get(state.selected);
    if (previous) {
      previous.pane.root.hidden = true;
      previous.item.button.setAttribute("aria-current", "false");
      previous.item.entry.classList.remove("is-selected");
      stopTyping(previous);
    }
  }
  state.selected = id;
  showQueue(false);
  els.emptyPane.hidden = true;
  chat.pane.root.hidden = false;
  chat.item.button.setAttribute("aria-current", "true");
  chat.item.entry.classList.add("is-selected");
  root.classList.add("has-selection");
  scrollToBottom(chat);
  requestProfile(chat);
  if (byUser) {
    askNotificationPermissionOnce();
    if (!chat.pane.input.disabled) chat.pane.input.focus();
  }
  markRead(chat);
};

const createChat = (data) => {
  const chat = {
    id: data.id,
    visitorId: data.visitor && data.visitor.id,
    status: "active",
    messages: new Map(), // seq -> message
    seqs: [], // held seqs, ascending
    rows: new Map(), // seq -> <li>
    pending: new Map(), // client_msg_id -> reply on its way (outbox.js)
    notes: new Map(), // internal note id -> <li>
    joins: [], // each agent's turn: {agent, after_seq} (`joins`)
    joinLines: new Map(), // "index:after_seq" -> its "joined" <li>
    unread: 0,
    countedThrough: 0, // highest seq already included in `unread`
    readSeq: 0,
    visitorReadSeq: 0,
    receiptRow: null,
    historyLoaded: false,
    syncing: false,
    visitorTyping: false,
    visitorTypingTimer: null,
    typingSentAt: 0,
    typingActive: false,
    typingIdleTimer: null,
    stickToBottom: true,
    // Added by their modules: item (chat-list.js), pane (pane.js), suggestions and
    // suggestActive (canned-suggestions.js), visitorPanel, visitorContext, profileAsked
    // and historyWanted (visitor-panel.js).
  };
  buildItem(chat, () => selectChat(chat.id, true));
  buildPane(chat);
  return chat;
};

const reopenChat = (chat) => {
  chat.status = "active";
  chat.endedLabel = null;
  placeItem(chat);
  chat.item.entry.classList.remove("is-ended");
  chat.pane.root.classList.remove("is-ended");
  chat.pane.notice.hidden = true;
  chat.pane.input.disabled = false;
  chat.pane.sendButton.disabled = false;
  chat.pane.attach.disabled = false;
  chat.pane.close.disabled = false;
  text(chat.pane.close, t("close_chat"));
  chat.pane.transfer.disabled = false;
};

export const upsertChat = (data) => {
  let chat = state.chats.get(data.id);
  if (!chat) {
    chat = createChat(data);
    state.chats.set(chat.id, chat);
  }
  if (data.visitor && typeof data.visitor.id === "number") chat.visitorId = data.visitor.id;
  if (data.visitor_context) showVisitorContext(chat, data.visitor_context);
  showChannel(chat, data);
  if (Array.isArray(data.joins)) chat.joins = data.joins;
  if (typeof data.visitor_read_seq === "number") {
    chat.visitorReadSeq = Math.max(chat.visitorReadSeq, data.visitor_read_seq);
  }
  if (data.status === "active" && chat.status !== "active") reopenChat(chat);
  return chat;
};

/* The chat is over here: `label` says how in the Ended list ("Transferred to Bob"),
   `notice` says it in the pane. */
export const endChat = (chat, status, label, notice) => {
  chat.status = status;
  chat.endedLabel = label;
  placeItem(chat);
  chat.unread = 0;
  setVisitorTyping(chat, false);
  stopTyping(chat);
  chat.pending.forEach((pending) => failPending(chat, pending, t("chat_over")));
  chat.item.entry.classList.add("is-ended");
  chat.pane.root.classList.add("is-ended");
  text(chat.pane.notice, notice);
  chat.pane.notice.hidden = false;
  chat.pane.input.disabled = true;
  chat.pane.sendButton.disabled = true;
  chat.pane.attach.disabled = true;
  chat.pane.close.disabled = false;
  text(chat.pane.close, t("remove"));
  chat.pane.transfer.disabled = true;
  showTransferPanel(chat, false);
  updateItem(chat);
  refreshCounts();
};

// --- frames --------------------------------------------------------------------------

export const onAssigned = (frame) => {
  const data = frame.conversation || {};
  if (typeof data.id !== "number") return;
  const known = state.chats.get(data.id);
  const reopened = known && known.status !== "active";
  const chat = upsertChat(data);
  if (!known || reopened) {
    chat.unread = Number(data.unread) || 0;
    chat.countedThrough = Number(data.last_seq) || 0;
    chat.readSeq = Number(data.read_seq) || 0;
  }
  if (Array.isArray(data.messages)) {
    addMessages(chat, data.messages, false);
    addNotes(chat, data.notes);
    addJoins(chat, chat.joins);
    chat.historyLoaded = true;
    checkGaps(chat);
  } else {
    requestSync(chat, contiguousSeq(chat));
  }
  updateItem(chat);
  refreshCounts();
  // A chat this agent took from the queue view opens at once.
  if (tookChat(chat.id)) selectChat(chat.id, true);
  if (!known || reopened) {
    const who = visitorName(chat);
    announce(t("new_chat", { name: who }) + ".");
    notifyDesktop(t("new_chat", { name: who }), lastPreview(chat), chat);
  }
  markRead(chat);
};

export const onClosed = (frame) => {
  const chat = state.chats.get(frame.conversation);
  if (!chat) return;
  const by = frame.by === "agent" ? "you" : frame.by === "visitor" ? "visitor" : "system";
  endChat(chat, "closed", t("closed"), t(`closed_by_${by}`));
  if (frame.by !== "agent") announce(t(`${by}_closed`, { name: visitorName(chat) }));
};

export const onTransferred = (frame) => {
  const chat = state.chats.get(frame.conversation);
  if (!chat) return;
  showTransferPanel(chat, false);
  const to = frame.to && frame.to.display_name;
  endChat(
    chat,
    "transferred",
    to ? t("transferred_to", { name: to }) : t("requeued"),
    to ? t("transferred_notice", { name: to }) : t("requeued_notice"),
  );
};

export const onRequeued = (frame) => {
  const chat = state.chats.get(frame.conversation);
  if (!chat) return;
  endChat(
    chat,
    "requeued",
    t("requeued"),
    t("requeued_lapsed"),
  );
  announce(t("requeued_announce", { name: visitorName(chat) }));
};
