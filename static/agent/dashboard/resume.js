/* Resuming without losing or doubling anything. `ready` (after every connect) brings the
 * agent, the queue and the agent's chats with the server's counts; each chat then asks
 * `sync` for the messages after its last gapless seq (conversation.js fills later holes
 * the same way), and unacknowledged replies go again with their client_msg_id. A chat
 * no longer listed is over here. A lost socket puts replies and presence on hold. */

import { reloadCanned } from "./canned.js";
import { refreshCounts, setQueueLength, updateItem } from "./chat-list.js";
import { endChat, upsertChat } from "./chats.js";
import {
  addJoins,
  addMessages,
  addNotes,
  checkGaps,
  contiguousSeq,
  markRead,
  requestSync,
} from "./conversation.js";
import { els, t, text } from "./dom.js";
import { holdPending, resendPending } from "./outbox.js";
import { updatePresenceControls } from "./presence.js";
import { socketReady } from "./socket.js";
import { state } from "./state.js";

const showAgent = (agent) => {
  if (typeof agent.id === "number") state.agentId = agent.id;
  if (agent.display_name) {
    state.agentName = agent.display_name;
    text(els.agentName, agent.display_name);
    text(els.agentInitial, agent.display_name.slice(0, 1).toUpperCase());
  }
  if (typeof agent.capacity === "number") state.capacity = agent.capacity;
  if (agent.status) state.status = agent.status;
  state.autoAway = agent.auto_away === true && state.status === "away";
  state.presenceWanted = null;
  updatePresenceControls();
};

const resumeChat = (data) => {
  const isNew = !state.chats.has(data.id);
  const chat = upsertChat(data);
  // The server's count is the truth after a reconnect; sync only adds messages.
  chat.unread = Number(data.unread) || 0;
  chat.countedThrough = Number(data.last_seq) || 0;
  if (isNew) chat.readSeq = Number(data.read_seq) || 0;
  if (chat.status === "active") {
    // A close that was cut off by the reconnect did not happen.
    chat.pane.close.disabled = false;
    text(chat.pane.close, t("close_chat"));
  }
  requestSync(chat, contiguousSeq(chat));
  resendPending(chat);
  updateItem(chat);
};

export const onReady = (frame) => {
  socketReady();
  showAgent(frame.agent || {});
  setQueueLength(frame.queue_length);
  reloadCanned();

  const listed = new Set();
  (frame.conversations || []).forEach((data) => {
    listed.add(data.id);
    resumeChat(data);
  });
  state.chats.forEach((chat) => {
    if (!listed.has(chat.id) && chat.status === "active") {
      endChat(
        chat,
        "ended",
        t("no_longer_yours"),
        t("no_longer_yours_notice"),
      );
    }
  });
  refreshCounts();
};

export const onSync = (frame) => {
  const chat = state.chats.get(frame.conversation);
  if (!chat) return;
  chat.syncing = false;
  addMessages(chat, frame.messages || [], false);
  addNotes(chat, frame.notes);
  addJoins(chat, chat.joins);
  chat.historyLoaded = true;
  checkGaps(chat);
  updateItem(chat);
  refreshCounts();
  markRead(chat);
};

/* The socket is gone: nothing is being synced, replies wait for the next `ready`, and
   presence cannot be changed until then. */
export const onSocketLost = () => {
  state.chats.forEach((chat) => {
    chat.syncing = false;
    holdPending(chat);
  });
  updatePresenceControls();
};
