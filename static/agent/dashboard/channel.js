/* Chats and email conversations in one list: each entry shows its channel's icon; an
 * email conversation's pane shows its subject and sender (marked unverified unless the
 * upstream mail server's SPF/DKIM check vouched for the address), and its composer says
 * that the reply goes by email. Internal notes stay on the dashboard either way. */

import { part, t, text } from "./dom.js";

// Drawn, not emoji: a browser without an emoji font would show a blank box.
const SVG = (paths) =>
  `<svg viewBox="0 0 24 24" width="14" height="14" aria-hidden="true" fill="none" ` +
  `stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round">${paths}</svg>`;
const ICONS = {
  chat: SVG('<path d="M21 12a8 8 0 0 1-11.6 7.1L4 20l1-4.6A8 8 0 1 1 21 12z"/>'),
  email: SVG('<rect x="3" y="5" width="18" height="14" rx="2"/><path d="m3 7 9 6 9-6"/>'),
};
const NAMES = { chat: "channel_chat", email: "channel_email" };

const ensure = (parent, before, className, tag = "span") => {
  let node = part(parent, `.${className}`);
  if (!node) {
    node = document.createElement(tag);
    node.className = className;
    parent.insertBefore(node, before);
  }
  return node;
};

/* The reply box's placeholder for this chat (composer.js restores it after a note). */
export const replyPlaceholder = (chat) =>
  t(chat.channel === "email" ? "write_email_reply" : "write_reply");

/* Show what `data` (a conversation object) says of the chat's channel. */
export const showChannel = (chat, data) => {
  if (typeof data.channel === "string") chat.channel = data.channel;
  if (data.email !== undefined) chat.email = data.email;
  const channel = chat.channel || "chat";
  const icon = ensure(chat.item.button, chat.item.avatar.nextSibling, "item-channel");
  icon.innerHTML = ICONS[channel] || ICONS.chat; // constant markup, never data
  icon.title = t(NAMES[channel] || NAMES.chat);
  icon.setAttribute("role", "img");
  icon.setAttribute("aria-label", icon.title);
  chat.item.entry.dataset.channel = channel;
  chat.pane.root.dataset.channel = channel;

  const email = channel === "email" ? chat.email : null;
  const head = part(chat.pane.root, ".pane-head");
  const details = ensure(chat.pane.root, head.nextSibling, "pane-email", "p");
  details.hidden = !email;
  const hint = ensure(part(chat.pane.form, ".composer-hint"), null, "composer-channel");
  hint.hidden = !email;
  if (!chat.pane.noteToggle.checked) chat.pane.input.placeholder = replyPlaceholder(chat);
  if (!email) return;
  details.replaceChildren();
  const subject = document.createElement("strong");
  subject.className = "email-subject";
  text(subject, email.subject || t("no_subject"));
  const sender = document.createElement("span");
  sender.className = "email-sender";
  text(sender, ` · ${t("email_from", { sender: email.sender })}`);
  details.append(subject, sender);
  if (!email.sender_verified) {
    const flag = document.createElement("span");
    flag.className = "email-unverified";
    text(flag, t("unverified"));
    flag.title = t("unverified_title");
    details.append(" ", flag);
  }
  text(hint, ` · ${t("reply_by_email")}`);
};
