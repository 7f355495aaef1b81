/* The visitor socket: session, hello and resume by last_seq, pings, backoff, the page
 * the visitor is on. main.js says what each frame does. */
import { cfg, KEY, TOKEN_KEY, save, setBanner, state, timers, ui } from './shared.js';

export const ACK_TIMEOUT = 10000; // no ack by then: "Not sent", with Retry
const PING_EVERY = 25000;
const PONG_TIMEOUT = 10000; // a socket that does not answer a ping is dead
const BACKOFF_FIRST = 500;
const BACKOFF_MAX = 30000;
const OFFLINE = 'You are offline. Messages will be sent when you are back online.';

let ws = null;
let connecting = false;
let sessionChecked = false;
let attempt = 0;
let resync = false; // next hello asks for everything (last_seq 0)
let helloSeq = 0; // the last_seq the current socket's hello asked from
let chat = null; // {handlers, lost(), forgotten()}, from startSocket

export const sendFrame = (frame) => {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(frame));
};

// --- where the visitor is ------------------------------------------------------------
// For the agent: the loader adds the host page's [url, title, referrer] to every message
// (and sends it every 2 s for single-page apps). Only a change is reported; the server
// checks it (a visitor can claim anything).
const TIMEZONE = (() => {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || undefined;
  } catch (e) {
    return undefined;
  }
})();
let page = null; // {url, title, referrer} of the page embedding us
let pageSent = ''; // the page as the current socket last reported it
export const notePage = (p) => {
  if (!Array.isArray(p) || p.length !== 3 || !p.every((v) => typeof v === 'string')) return;
  page = { url: p[0].slice(0, 2000), title: p[1].slice(0, 300), referrer: p[2].slice(0, 2000) };
  reportPage();
};
const reportPage = () => {
  const key = page ? JSON.stringify(page) : '';
  if (!state.live || !key || key === pageSent) return;
  pageSent = key;
  sendFrame({ type: 'page.view', page, timezone: TIMEZONE });
};

const openSession = async () => {
  const response = await fetch(cfg.sessions_url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ site_key: KEY, visitor_token: state.token || undefined }),
    credentials: 'omit',
  });
  if (response.status === 404 || response.status === 403) {
    const error = new Error('refused');
    error.refused = true;
    throw error;
  }
  if (!response.ok) throw new Error('session ' + response.status);
  const data = await response.json();
  if (data.visitor_token !== state.token) {
    state.token = data.visitor_token;
    save(TOKEN_KEY, state.token);
  }
};

const startPing = () => {
  clearInterval(timers.ping);
  timers.ping = setInterval(() => {
    sendFrame({ type: 'ping' });
    clearTimeout(timers.pong);
    timers.pong = setTimeout(() => dropSocket(), PONG_TIMEOUT);
  }, PING_EVERY);
};

const ready = (f) => {
  const c = f.conversation;
  if (c && helloSeq > 0 && c.id !== state.latest) {
    // A newer conversation began elsewhere: our last_seq was for the old one.
    resync = true;
    dropSocket();
    return;
  }
  attempt = 0;
  state.live = true;
  chat.handlers.ready(f);
  startPing();
  reportPage(); // if the loader told us the page after our hello went out
};

const connect = async () => {
  clearTimeout(timers.retry);
  if (state.stopped || connecting || ws) return;
  connecting = true;
  try {
    if (!sessionChecked || !state.token) {
      await openSession();
      sessionChecked = true;
    }
  } catch (e) {
    connecting = false;
    if (e.refused) stop('Chat is not available on this site.');
    else retryLater();
    return;
  }
  connecting = false;
  const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
  const sock = new WebSocket(scheme + location.host + cfg.ws_path);
  ws = sock;
  sock.onopen = () => {
    helloSeq = resync ? 0 : state.lastSeq;
    resync = false;
    pageSent = page ? JSON.stringify(page) : '';
    sock.send(
      JSON.stringify({
        type: 'hello',
        site_key: KEY,
        visitor_token: state.token,
        last_seq: helloSeq,
        page: page || undefined,
        timezone: TIMEZONE,
      }),
    );
  };
  sock.onmessage = (event) => {
    if (sock !== ws) return;
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch (e) {
      return;
    }
    const type = frame ? frame.type : undefined;
    if (type === 'pong') clearTimeout(timers.pong);
    else if (type === 'ready') ready(frame);
    else if (Object.hasOwn(chat.handlers, type)) chat.handlers[type](frame);
  };
  sock.onclose = (event) => {
    if (sock !== ws) return;
    ws = null;
    down(event.code);
  };
};

// Forget a socket now, without waiting for a close handshake a dead network never ends.
export const dropSocket = () => {
  const sock = ws;
  if (!sock) return;
  ws = null;
  try {
    sock.close();
  } catch (e) {
    /* already closing */
  }
  down(1006);
};

const down = (code) => {
  state.live = false;
  clearInterval(timers.ping);
  clearTimeout(timers.pong);
  clearTimeout(timers.gap);
  chat.lost();
  if (code === 4403) {
    stop('Chat is not available on this site.');
    return;
  }
  if (code === 4401) {
    // The token is unknown here (data reset): become a new visitor, keep the outbox.
    state.token = null;
    save(TOKEN_KEY, null);
    sessionChecked = false;
    chat.forgotten();
  }
  retryLater();
};

// Exponential backoff with jitter, so a restarted server is not hit by every widget
// at the same instant. Coming back online skips the wait.
const retryLater = () => {
  const ceiling = Math.min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** attempt);
  attempt += 1;
  setBanner(navigator.onLine ? 'Connection lost. Reconnecting…' : OFFLINE);
  clearTimeout(timers.retry);
  timers.retry = setTimeout(connect, ceiling / 2 + Math.random() * (ceiling / 2));
};

const stop = (text) => {
  state.stopped = true;
  setBanner(text);
  ui.input.disabled = ui.send.disabled = ui.attach.disabled = true;
};

// handlers: frame type -> function; lost(): a socket went; forgotten(): we are a new visitor.
export const startSocket = (c) => {
  chat = c;
  window.addEventListener('offline', () => {
    setBanner(OFFLINE);
    dropSocket();
  });
  window.addEventListener('online', () => {
    attempt = 0;
    connect();
  });
  connect();
};
