/* supportdesk agent dashboard: the entry module (templates/agents/dashboard.html).
 *
 * One WebSocket to /ws/agent/ (same origin, session cookie), the wire contract of
 * docs/protocol.md, plain DOM, one module per concern beside this one; served as they
 * are, without a build step. Every piece of text from the network goes into the page
 * through textContent; the only elements made from message text are <a> for http(s)
 * URLs, whose href is checked with the URL parser first (dom.js, renderBody).
 *
 * Messages are kept per chat by seq: a seq already held is never drawn twice, and a
 * hole in the seqs is filled with `sync`, so a dropped socket or a missed broadcast
 * costs nothing but a round trip (resume.js).
 *
 * Imports run one way, from the frames and the chats' life down to the socket and the
 * page helpers; no module imports one that imports it (a cycle would also keep
 * ManifestStaticFilesStorage from hashing them). Importing a module only declares
 * things; everything starts here, in this order. */

import { onCallSocketLost } from "./calls.js";
import { setupCanned } from "./canned.js";
import { refreshCounts, setupChatList } from "./chat-list.js";
import { watchAttention } from "./conversation.js";
import { handleFrame } from "./frames.js";
import { setupNotifications, updateNotifyButton } from "./notifications.js";
import { setupPresence, updatePresenceControls } from "./presence.js";
import { setupSound } from "./sound.js";
import { setupQueueView } from "./queue-view.js";
import { onSocketLost } from "./resume.js";
import { startSocket } from "./socket.js";
import { root } from "./state.js";
import { setupVisitorPanel } from "./visitor-panel.js";
import { setupVisitorSidebar } from "./visitor-sidebar.js";

const start = () => {
  setupChatList();
  watchAttention();
  setupPresence();
  setupNotifications();
  setupSound();
  setupCanned();
  setupQueueView();
  setupVisitorPanel();
  setupVisitorSidebar();
  updatePresenceControls();
  updateNotifyButton();
  refreshCounts();
  startSocket({
    onFrame: handleFrame,
    onDisconnect: () => {
      onCallSocketLost();
      onSocketLost();
    },
  });
};

if (root) start();
