/* What the dashboard knows right now, shared by its modules: the agent's presence and
 * capacity, the queue, the agent's chats and the one on screen, and whether the socket
 * is ready. The page's settings are the data- attributes of #inbox. */

export const root = document.getElementById("inbox");
export const settings = root ? root.dataset : {};

export const state = {
  agentId: null, // this agent's id (`ready`): only its own messages are "You"
  agentName: settings.agentName || "",
  status: settings.status || "away",
  presenceWanted: null, // asked for, not yet confirmed by a `presence` frame
  autoAway: false, // away because idle (server's `auto`), not by choice
  capacity: Number(settings.capacity) || 0,
  queueLength: null,
  chats: new Map(), // conversation id -> chat (chat-list.js, createChat)
  selected: null, // conversation id
  connected: false, // `ready` received on the current socket
};
