/* One chat's pane, built from #pane-template: its heading and buttons (back to the list
 * on a phone, close, or remove once the chat is over), the log that keeps to the bottom
 * unless the agent scrolled up, and the parts other modules wire in: the canned
 * suggestions, transfer, the composer, Retry, attachments, the visitor sidebar and
 * agent assist. */

import { attachAssist } from "./assist.js";
import { attachFiles } from "./attachments.js";
import { attachCall } from "./calls.js";
import { attachCanned } from "./canned-suggestions.js";
import { removeChat } from "./chat-list.js";
import { attachComposer } from "./composer.js";
import { markRead, scrollToBottom } from "./conversation.js";
import { els, part, t, text, toast } from "./dom.js";
import { attachRetry } from "./outbox.js";
import { send } from "./socket.js";
import { root } from "./state.js";
import { attachTransfer } from "./transfer.js";
import { attachVisitorSidebar } from "./visitor-sidebar.js";

const closeOrRemove = (chat) => {
  if (chat.status !== "active") {
    removeChat(chat);
  } else if (send({ type: "conversation.close", conversation: chat.id })) {
    chat.pane.close.disabled = true;
    text(chat.pane.close, t("closing"));
  } else {
    toast(t("close_offline"));
  }
};

export const buildPane = (chat) => {
  const pane = part(els.paneTemplate.content.cloneNode(true), ".pane");
  const input = part(pane, ".composer-input");
  const label = part(pane, ".composer-label");
  const log = part(pane, ".log");
  const inputId = `composer-${chat.id}`;
  const titleId = `pane-title-${chat.id}`;
  input.id = inputId;
  label.htmlFor = inputId;
  part(pane, ".pane-title").id = titleId;
  pane.setAttribute("aria-labelledby", titleId);
  pane.dataset.conversation = String(chat.id);
  chat.pane = {
    root: pane,
    avatar: part(pane, ".avatar"),
    title: part(pane, ".pane-title"),
    sub: part(pane, ".pane-sub-text"),
    verified: part(pane, ".pane-verified"),
    details: part(pane, ".pane-details"),
    visitorAside: part(pane, ".visitor-panel"),
    close: part(pane, ".pane-close"),
    back: part(pane, ".pane-back"),
    notice: part(pane, ".pane-notice"),
    log,
    list: part(pane, ".messages"),
    pendingList: part(pane, ".messages-pending"),
    typing: part(pane, ".typing"),
    typingText: part(pane, ".typing-text"),
    form: part(pane, ".composer"),
    input,
    label,
    sendButton: part(pane, ".composer-send"),
    noteToggle: part(pane, ".composer-note"),
    attach: part(pane, ".composer-attach"),
    fileInput: part(pane, ".composer-file"),
    upload: part(pane, ".composer-upload"),
    transfer: part(pane, ".pane-transfer"),
    transferPanel: part(pane, ".transfer-panel"),
    transferSelect: part(pane, ".transfer-select"),
    transferSubmit: part(pane, ".transfer-submit"),
    suggest: part(pane, ".canned-suggest"),
  };
  // Canned first: its keydown on the composer pre-empts the composer's (Enter sends).
  attachCanned(chat);
  attachTransfer(chat);
  attachComposer(chat);
  attachRetry(chat);
  attachFiles(chat);
  attachCall(chat);
  attachVisitorSidebar(chat);
  attachAssist(chat);
  chat.pane.close.addEventListener("click", () => closeOrRemove(chat));
  chat.pane.back.addEventListener("click", () => {
    root.classList.remove("has-selection");
    chat.item.button.focus();
  });
  input.addEventListener("focus", () => markRead(chat));
  log.addEventListener("scroll", () => {
    chat.stickToBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 48;
  });
  // An image grows the log when it has loaded, after the scroll its row made: an agent
  // who was reading the end is taken to the new end. (Load events do not bubble: this
  // listens in the capture phase.) Growing the log fires no scroll event, so
  // stickToBottom still says where the agent was.
  log.addEventListener(
    "load",
    (event) => {
      if (event.target instanceof HTMLImageElement && chat.stickToBottom) scrollToBottom(chat);
    },
    true,
  );
  els.panes.appendChild(pane);
};
