/* Which module answers each frame the server sends on the agent socket
 * (docs/protocol.md), and `error`, whose answer depends on what it refers to. */

import { onAssistSuggestions, onVisitorMessage, refreshAssist } from "./assist.js";
import {
  callError,
  onCallAccepted,
  onCallEnded,
  onCallInvited,
  onCallSignal,
  refreshCall,
} from "./calls.js";
import { cannedError, onCannedDeleted, onCannedSaved } from "./canned.js";
import { onCanned } from "./canned-suggestions.js";
import { onAssigned, onClosed, onRequeued, onTransferred } from "./chats.js";
import { onAck } from "./composer.js";
import { onMessage, onNote, onRated, onRead, onTyping } from "./conversation.js";
import { t, toast } from "./dom.js";
import { failPending } from "./outbox.js";
import { onPresence } from "./presence.js";
import { onQueue, onTakeError } from "./queue-view.js";
import { onReady, onSync } from "./resume.js";
import { send } from "./socket.js";
import { state } from "./state.js";
import { onAgents } from "./transfer.js";
import { onConversationHistory, onVisitorContext, onVisitorProfile } from "./visitor-panel.js";

const onError = (frame) => {
  const detail = frame.detail || frame.code || t("went_wrong");
  if (frame.client_msg_id) {
    let found = false;
    state.chats.forEach((chat) => {
      const pending = chat.pending.get(frame.client_msg_id);
      if (pending) {
        found = true;
        failPending(chat, pending, detail);
      }
    });
    if (found) return;
  }
  if (cannedError(frame) || callError(frame)) return;
  if (onTakeError(frame)) return;
  if (frame.code === "rate_limited") {
    toast(t("slow_down"));
  } else if (frame.code === "agent_unavailable") {
    toast(t("agent_unavailable"));
    send({ type: "agents.list" });
  } else if (frame.code === "not_found") {
    toast(t("no_longer_yours_toast"));
  } else if (frame.code !== "conversation_closed") {
    toast(detail);
  }
};

const handlers = {
  ready: (frame) => {
    onReady(frame);
    refreshAssist();
  },
  presence: onPresence,
  queue: onQueue,
  "conversation.assigned": onAssigned,
  message: (frame) => {
    onMessage(frame);
    onVisitorMessage(frame);
  },
  "assist.suggestions": onAssistSuggestions,
  "message.ack": onAck,
  note: onNote,
  "note.ack": () => {},
  agents: onAgents,
  canned: onCanned,
  "canned.saved": onCannedSaved,
  "canned.deleted": onCannedDeleted,
  "conversation.rated": onRated,
  "conversation.transferred": onTransferred,
  "visitor.context": onVisitorContext,
  "visitor.profile": onVisitorProfile,
  "conversation.history": onConversationHistory,
  sync: onSync,
  typing: onTyping,
  read: onRead,
  "conversation.closed": (frame) => {
    onClosed(frame);
    refreshCall(frame.conversation);
  },
  "conversation.requeued": onRequeued,
  "call.invited": onCallInvited,
  "call.accepted": onCallAccepted,
  "call.signal": onCallSignal,
  "call.ended": onCallEnded,
  error: onError,
  pong: () => {},
};

export const handleFrame = (frame) => {
  const handler = handlers[frame.type];
  if (handler) handler(frame);
};
