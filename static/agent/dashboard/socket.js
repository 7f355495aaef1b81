/* The one WebSocket to /ws/agent/ (same origin, session cookie; docs/protocol.md):
 * connecting again with backoff, a ping that also reports idleness, a dead socket
 * noticed by its missing pong, the connection indicator and the offline banner.
 *
 * Frames go to the handler main.js passes to startSocket; `send` works only once `ready`
 * came (resume.js calls socketReady). A lost socket is reported to the same caller. */

import { els, t, text } from "./dom.js";
import { idleSeconds } from "./idle.js";
import { settings, state } from "./state.js";

const PING_EVERY_MS = 25000;
const PONG_TIMEOUT_MS = 10000; // no pong by then: the socket is dead, reconnect
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 30000;

let current = null; // the socket whose frames count; a dropped one's late events do not
let attempt = 0;
let reconnectTimer = null;
let pingTimer = null;
let pongTimer = null;
let signedOut = false;
let handleFrame = () => {};
let onLost = () => {};

const socketUrl = () => {
  const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
  return scheme + window.location.host + (settings.socketPath || "/ws/agent/");
};

const showConnection = (kind, label) => {
  els.connection.dataset.state = kind;
  text(els.connectionText, label);
};

const showBanner = (message, withLogin) => {
  els.banner.textContent = message;
  if (withLogin) {
    const link = document.createElement("a");
    link.href = "/accounts/login/?next=/agent/";
    link.textContent = t("sign_in");
    els.banner.appendChild(document.createTextNode(" "));
    els.banner.appendChild(link);
  }
  els.banner.hidden = false;
};

const connect = () => {
  window.clearTimeout(reconnectTimer);
  reconnectTimer = null;
  showConnection("connecting", t(attempt ? "reconnecting" : "connecting"));
  let socket;
  try {
    socket = new WebSocket(socketUrl());
  } catch {
    scheduleReconnect();
    return;
  }
  current = socket;
  socket.addEventListener("message", (event) => {
    if (socket !== current) return;
    // Anything from the server proves the socket alive.
    window.clearTimeout(pongTimer);
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    if (frame && typeof frame.type === "string") handleFrame(frame);
  });
  socket.addEventListener("close", (event) => {
    if (socket !== current) return;
    onSocketClosed(event.code);
  });
};

const scheduleReconnect = () => {
  // Exponential backoff with jitter, so a restarted server is not hit by every
  // dashboard at the same instant.
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** attempt);
  const delay = Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
  attempt += 1;
  const seconds = Math.max(1, Math.round(delay / 1000));
  if (navigator.onLine === false) {
    showConnection("offline", t("offline"));
    showBanner(t("offline_banner"), false);
  } else {
    showConnection("offline", t("reconnecting"));
    showBanner(t("lost_banner", { seconds }), false);
  }
  reconnectTimer = window.setTimeout(connect, delay);
};

const onSocketClosed = (code) => {
  current = null;
  state.connected = false;
  window.clearInterval(pingTimer);
  window.clearTimeout(pongTimer);
  onLost();
  if (code === 4401) {
    signedOut = true;
    showConnection("offline", t("signed_out"));
    showBanner(t("session_ended"), true);
    return;
  }
  scheduleReconnect();
};

/* Give up on the current socket now (network gone, or no pong): a half-open TCP
   connection can look open for minutes. Its late close event is ignored. */
const dropSocket = () => {
  const socket = current;
  if (!socket) return;
  current = null;
  try {
    socket.close();
  } catch {
    /* already closing */
  }
  onSocketClosed(1006);
};

const retryNow = () => {
  if (current || signedOut) return;
  attempt = 0;
  connect();
};

/* Sends a frame if the socket is ready; false if it is not (nothing is queued here). */
export const send = (frame) => {
  const socket = current;
  if (!socket || socket.readyState !== WebSocket.OPEN || !state.connected) return false;
  socket.send(JSON.stringify(frame));
  return true;
};

export const ping = () => {
  // The server judges auto-away from how long the agent has not touched any tab.
  if (!send({ type: "ping", idle_seconds: idleSeconds() })) return;
  window.clearTimeout(pongTimer);
  pongTimer = window.setTimeout(dropSocket, PONG_TIMEOUT_MS);
};

/* `ready` came: the socket is usable, and pinged from now on. */
export const socketReady = () => {
  state.connected = true;
  attempt = 0;
  showConnection("online", t("connected"));
  els.banner.hidden = true;
  window.clearInterval(pingTimer);
  pingTimer = window.setInterval(ping, PING_EVERY_MS);
};

/* Connects, and keeps connecting: `onFrame(frame)` for each frame, `onDisconnect()`
   each time a socket is lost (before the next attempt is scheduled). */
export const startSocket = ({ onFrame, onDisconnect }) => {
  handleFrame = onFrame;
  onLost = onDisconnect;
  window.addEventListener("online", retryNow);
  window.addEventListener("offline", dropSocket);
  connect();
};
