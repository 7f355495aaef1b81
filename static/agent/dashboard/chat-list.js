/* The lists of the agent's chats in the sidebar, the open ones and below them the ended
 * ones (closed, transferred away, back in the queue): each entry shows the visitor, the
 * last message, the unread badge and how long the visitor has waited for an answer
 * (counting up while nothing else changes), or how the chat ended; arrow keys move
 * through both. Beside them the load, the capacity and the queue, and in the page title
 * the unread count. */

import { clockTime, duration, els, part, t, text } from "./dom.js";
import { messageText } from "./files.js";
import { authorName, visitorInitials, visitorName } from "./people.js";
import { root, state } from "./state.js";

const TITLE = "supportdesk";
const WAIT_TICK_MS = 5000;

/* The newest message, with its author when it is an agent's: "You: …", "Alice: …".
   A system line ("You are now chatting with Bob.", told to the visitor) is passed over
   for the last thing someone wrote. */
export const lastPreview = (chat) => {
  if (!chat.seqs.length) return "";
  let i = chat.seqs.length - 1;
  while (i > 0 && chat.messages.get(chat.seqs[i]).sender === "system") i -= 1;
  const message = chat.messages.get(chat.seqs[i]);
  const by = message.sender === "agent" ? `${authorName(chat, message)}: ` : "";
  return by + messageText(message).replace(/\s+/g, " ");
};

/* When the visitor's oldest message since my last reply was sent, or null. */
const waitingSince = (chat) => {
  let since = null;
  for (let i = chat.seqs.length - 1; i >= 0; i -= 1) {
    const message = chat.messages.get(chat.seqs[i]);
    if (message.sender === "agent") break;
    if (message.sender === "visitor") since = message.sent_at;
  }
  return since ? new Date(since) : null;
};

/* The chat's entry, from #chat-item-template; `select` runs when it is clicked. */
export const buildItem = (chat, select) => {
  const entry = part(els.itemTemplate.content.cloneNode(true), ".chat-entry");
  const button = part(entry, ".chat-item");
  chat.item = {
    entry,
    button,
    avatar: part(entry, ".avatar"),
    name: part(entry, ".item-name"),
    wait: part(entry, ".item-wait"),
    preview: part(entry, ".item-preview"),
    badge: part(entry, ".badge"),
    badgeCount: part(entry, ".badge-count"),
  };
  entry.dataset.conversation = String(chat.id);
  button.addEventListener("click", select);
  els.list.appendChild(entry);
};

/* An ended chat moves to the top of the Ended list; one given back, to the open ones. */
export const placeItem = (chat) => {
  const entry = chat.item.entry;
  if (chat.status === "active") {
    if (entry.parentElement !== els.list) els.list.appendChild(entry);
  } else if (entry.parentElement !== els.endedList) {
    els.endedList.prepend(entry);
  }
};

/* The chat leaves the page: its entry and its pane. */
export const removeChat = (chat) => {
  const wasSelected = state.selected === chat.id;
  chat.item.entry.remove();
  chat.pane.root.remove();
  state.chats.delete(chat.id);
  if (wasSelected) {
    state.selected = null;
    els.emptyPane.hidden = false;
    root.classList.remove("has-selection");
    const next = els.list.querySelector(".chat-item") || els.endedList.querySelector(".chat-item");
    if (next) next.focus();
  }
  refreshCounts();
};

const updateWait = (chat, now) => {
  const wait = chat.item.wait;
  const since = chat.status === "active" ? waitingSince(chat) : null;
  if (!since || isNaN(since.getTime())) {
    if (chat.status !== "active") {
      text(wait, chat.endedLabel || t("ended"));
      wait.hidden = false;
      wait.dataset.level = "ended";
    } else {
      wait.hidden = true;
    }
    return;
  }
  const ms = now - since.getTime();
  text(wait, t("waiting_for", { time: duration(ms) }));
  wait.title = t("waiting_since", { time: clockTime(since.toISOString()) });
  wait.dataset.level = ms >= 5 * 60000 ? "urgent" : ms >= 2 * 60000 ? "warn" : "ok";
  wait.hidden = false;
};

/* The chat's entry and its pane's heading, from what is known about it now. */
export const updateItem = (chat) => {
  const item = chat.item;
  const name = visitorName(chat);
  // A long email wraps rather than being cut; the title attribute has it whole too.
  text(item.name, name);
  item.name.title = name;
  text(item.avatar, visitorInitials(chat));
  item.avatar.dataset.tone = String((chat.visitorId || 0) % 6);
  text(chat.pane.title, name);
  chat.pane.title.title = name;
  text(chat.pane.avatar, item.avatar.textContent);
  chat.pane.avatar.dataset.tone = item.avatar.dataset.tone;
  text(chat.pane.label, t("reply_to", { name }));
  let subtitle = t("chat_number", { id: chat.id });
  if (chat.seqs.length) {
    subtitle += " · " + t("started", { time: clockTime(chat.messages.get(chat.seqs[0]).sent_at) });
  }
  if (chat.status !== "active") subtitle += ` · ${chat.endedLabel || t("ended")}`;
  text(chat.pane.sub, subtitle);

  if (chat.visitorTyping) {
    text(item.preview, t("typing_short"));
    item.preview.classList.add("is-typing");
  } else {
    text(item.preview, lastPreview(chat) || t(chat.historyLoaded ? "no_messages" : "loading"));
    item.preview.classList.remove("is-typing");
  }
  if (chat.unread > 0 && chat.status === "active") {
    text(item.badgeCount, String(chat.unread));
    item.badge.hidden = false;
    item.entry.classList.add("has-unread");
  } else {
    item.badge.hidden = true;
    item.entry.classList.remove("has-unread");
  }
  updateWait(chat, Date.now());
};

/* The load, the capacity, the empty-list note and the unread count in the title. */
export const refreshCounts = () => {
  let open = 0;
  let unread = 0;
  state.chats.forEach((chat) => {
    if (chat.status === "active") {
      open += 1;
      unread += chat.unread;
    }
  });
  text(els.load, String(open));
  text(els.capacity, String(state.capacity));
  els.listEmpty.hidden = open > 0;
  els.endedTitle.hidden = open === state.chats.size;
  document.title = unread > 0 ? `(${unread}) ${TITLE}` : TITLE;
};

export const setQueueLength = (value) => {
  if (typeof value !== "number") return;
  state.queueLength = value;
  text(els.queue, String(value));
  els.queue.parentElement.classList.toggle("has-queue", value > 0);
};

// Arrow keys move between chats in the list; Tab leaves it.
const moveInList = (event) => {
  if (!["ArrowDown", "ArrowUp", "Home", "End"].includes(event.key)) return;
  const buttons = [...els.list.querySelectorAll(".chat-item")].concat([
    ...els.endedList.querySelectorAll(".chat-item"),
  ]);
  const index = buttons.indexOf(document.activeElement);
  if (index === -1 || buttons.length === 0) return;
  event.preventDefault();
  let next = index;
  if (event.key === "ArrowDown") next = Math.min(buttons.length - 1, index + 1);
  if (event.key === "ArrowUp") next = Math.max(0, index - 1);
  if (event.key === "Home") next = 0;
  if (event.key === "End") next = buttons.length - 1;
  buttons[next].focus();
};

export const setupChatList = () => {
  els.list.addEventListener("keydown", moveInList);
  els.endedList.addEventListener("keydown", moveInList);
  window.setInterval(() => {
    const now = Date.now();
    state.chats.forEach((chat) => updateWait(chat, now));
  }, WAIT_TICK_MS);
};
