/* Who is who in a chat: the visitor's name as the dashboard shows it, and the author of
 * each message. Only this agent's own replies are "You"; a colleague's (before a
 * transfer) keep the colleague's name, from the message's `agent` (protocol v1.1). */

import { state } from "./state.js";

export const visitorName = (chat) => (chat.visitorId ? `Visitor #${chat.visitorId}` : "Visitor");

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
  if (isMine(message)) return "You";
  return (message.agent && message.agent.display_name) || "A former agent";
};
