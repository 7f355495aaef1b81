/* Who is who in a chat: the visitor's name as the dashboard shows it, and the author of
 * each message. Only this agent's own replies are "You"; a colleague's (before a
 * transfer) keep the colleague's name, from the message's `agent` (protocol v1.1). */

import { t } from "./dom.js";
import { state } from "./state.js";

/* The name the visitor gave, else their email, else "Visitor #7". */
export const visitorName = (chat) => {
  const context = chat.visitorContext || {};
  if (context.name) return context.name;
  if (context.email) return context.email;
  return chat.visitorId ? t("visitor_number", { id: chat.visitorId }) : t("visitor");
};

/* The avatar's letters: the name's initials, the email's first letter, else the id's
   last two digits. */
export const visitorInitials = (chat) => {
  const context = chat.visitorContext || {};
  if (context.name) {
    const words = context.name.trim().split(/\s+/);
    const letters = words.length > 1 ? words[0][0] + words[words.length - 1][0] : words[0][0];
    return letters.toUpperCase();
  }
  if (context.email) return context.email[0].toUpperCase();
  return chat.visitorId ? String(chat.visitorId).slice(-2) : "V";
};

/* A reply of this agent's. A message from an older server without `agent` counts as
   mine (it could only be the agent the chat is assigned to). */
export const isMine = (message) =>
  message.sender === "agent" &&
  (message.agent === undefined || (message.agent !== null && message.agent.id === state.agentId));

/* Who wrote a message, as its label says: "You", the colleague, the visitor, or null
   for a system message. */
export const authorName = (chat, message) => {
  if (message.sender === "visitor") return visitorName(chat);
  if (message.sender !== "agent") return null;
  if (isMine(message)) return t("you");
  return (message.agent && message.agent.display_name) || t("former_agent");
};
