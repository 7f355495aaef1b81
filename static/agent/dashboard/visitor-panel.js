/* The visitor panel of a chat: whether the site vouched for the user ("Verified"), what
 * the widget reported about the visitor (page, referrer, browser, time zone) and their
 * earlier chats, each readable as a transcript.
 * All of it came from the visitor's browser and may be a lie: it is shown as text, and
 * URLs only as http(s) links that open in a new tab without a referrer or an opener. */

import { updateItem } from "./chat-list.js";
import { clockTime, LANG, newTabLink, part, renderBody, safeHref, t, text, toast } from "./dom.js";
import { send } from "./socket.js";
import { state } from "./state.js";

const LOCAL_TIME_TICK_MS = 15000;

const visitorPanel = (chat) => {
  if (!chat.visitorPanel) {
    const pane = chat.pane.root;
    chat.visitorPanel = {
      verified: part(pane, ".visitor-verified"),
      verifiedText: part(pane, ".visitor-verified-text"),
      whoFact: part(pane, ".visitor-fact-who"),
      who: part(pane, ".visitor-who"),
      page: part(pane, ".visitor-page"),
      referrer: part(pane, ".visitor-referrer"),
      browser: part(pane, ".visitor-browser"),
      time: part(pane, ".visitor-time"),
      previousCount: part(pane, ".visitor-previous-count"),
      previous: part(pane, ".visitor-previous"),
      history: part(pane, ".visitor-history"),
      historyTitle: part(pane, ".visitor-history-title"),
      historyMessages: part(pane, ".visitor-history-messages"),
    };
    part(pane, ".visitor-history-close").addEventListener("click", () => {
      chat.visitorPanel.history.hidden = true;
      chat.historyWanted = null;
    });
  }
  return chat.visitorPanel;
};

const outsideLink = (url, label) => {
  const href = url ? safeHref(url) : null;
  if (!href) return null;
  const a = newTabLink(href, label || url);
  a.title = url;
  return a;
};

const showLink = (el, url, label, fallback) => {
  el.textContent = "";
  const link = outsideLink(url, label);
  if (link) el.appendChild(link);
  else text(el, fallback);
};

const updateLocalTime = (chat) => {
  const zone = chat.visitorContext && chat.visitorContext.timezone;
  const el = visitorPanel(chat).time;
  if (!zone) {
    text(el, t("unknown"));
    return;
  }
  try {
    const time = new Date().toLocaleTimeString(LANG, {
      timeZone: zone,
      hour: "2-digit",
      minute: "2-digit",
    });
    text(el, `${time} (${zone.replace(/_/g, " ")})`);
  } catch {
    text(el, zone); // a zone this browser does not know
  }
};

export const showVisitorContext = (chat, context) => {
  if (!context || typeof context !== "object") return;
  chat.visitorContext = context;
  const panel = visitorPanel(chat);
  // Verified: the site's server signed this user id; nothing else here is vouched for.
  const verified = context.verified === true;
  panel.verified.hidden = !verified;
  chat.pane.verified.hidden = !verified;
  text(panel.verifiedText, verified && context.user_id ? t("user_id", { id: context.user_id }) : "");
  chat.pane.verified.title = verified ? t("verified_user", { id: context.user_id }) : "";
  const who = [context.name, context.email].filter(Boolean).join("\n"); // one a line
  panel.whoFact.hidden = !who;
  text(panel.who, who);
  showLink(panel.page, context.page_url, context.page_title, t("not_reported"));
  showLink(panel.referrer, context.referrer, null, t("direct"));
  const software = [context.browser, context.os].filter(Boolean).join(" on ");
  text(panel.browser, software || t("unknown"));
  panel.browser.title = context.user_agent || "";
  updateLocalTime(chat);
  updateItem(chat); // the chat is titled by the visitor's name or email
};

/* The visitor's earlier chats are asked for when a chat is first opened. */
export const requestProfile = (chat) => {
  if (chat.profileAsked) return;
  if (send({ type: "visitor.profile", conversation: chat.id })) chat.profileAsked = true;
};

const dateLabel = (iso) => {
  const date = new Date(iso);
  if (isNaN(date.getTime())) return "";
  return date.toLocaleDateString(LANG, { day: "numeric", month: "short", year: "numeric" });
};

const previousCountText = (count) => (count === 0 ? t("no_earlier_chats") : t("earlier_chats", { count }));

// A conversation's `status` (the wire's) as the agent reads it.
const STATUSES = new Set(["queued", "active", "closed", "bot"]);
const statusText = (status) => (STATUSES.has(status) ? t(`status_${status}`) : status);

const earlierChatItem = (chat, earlier) => {
  const li = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "visitor-previous-open";
  const said = earlier.first_message ? ` · “${earlier.first_message}”` : "";
  text(button, `${dateLabel(earlier.created_at)} · ${statusText(earlier.status)}${said}`);
  button.addEventListener("click", () => {
    chat.historyWanted = earlier.id;
    if (!send({ type: "conversation.history", conversation: earlier.id })) {
      toast(t("take_offline"));
    }
  });
  li.appendChild(button);
  return li;
};

const historyMessage = (message) => {
  const li = document.createElement("li");
  li.className = `visitor-history-message visitor-history-${message.sender}`;
  const who = document.createElement("span");
  who.className = "visitor-history-who";
  const name =
    t(message.sender === "visitor" ? "visitor" : message.sender === "agent" ? "agent" : "system");
  text(who, `${name} · ${clockTime(message.sent_at)}: `);
  li.appendChild(who);
  renderBody(li, message.body);
  return li;
};

// --- frames --------------------------------------------------------------------------

export const onVisitorContext = (frame) => {
  const chat = state.chats.get(frame.conversation);
  if (chat) showVisitorContext(chat, frame.visitor_context);
};

export const onVisitorProfile = (frame) => {
  const chat = state.chats.get(frame.conversation);
  if (!chat) return;
  showVisitorContext(chat, frame.visitor_context);
  const panel = visitorPanel(chat);
  const previous = frame.previous || { count: 0, conversations: [] };
  text(panel.previousCount, previousCountText(Number(previous.count) || 0));
  panel.previous.textContent = "";
  (previous.conversations || []).forEach((earlier) => {
    panel.previous.appendChild(earlierChatItem(chat, earlier));
  });
};

/* A read-only transcript of an earlier chat, inside the panel of the chat that asked. */
export const onConversationHistory = (frame) => {
  state.chats.forEach((chat) => {
    if (chat.historyWanted !== frame.conversation) return;
    const panel = visitorPanel(chat);
    text(
      panel.historyTitle,
      t("earlier_chat_of", { date: dateLabel(frame.created_at), status: statusText(frame.status) }),
    );
    panel.historyMessages.textContent = "";
    (frame.messages || []).forEach((message) => {
      panel.historyMessages.appendChild(historyMessage(message));
    });
    panel.history.hidden = false;
  });
};

/* The visitors' local times move on with the clock. */
export const setupVisitorPanel = () => {
  window.setInterval(() => {
    state.chats.forEach((chat) => {
      if (chat.visitorContext) updateLocalTime(chat);
    });
  }, LOCAL_TIME_TICK_MS);
};
