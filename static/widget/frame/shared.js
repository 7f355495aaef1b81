/* Shared by the frame's modules: config, state, localStorage, elements, the loader's window. */
export const cfg = JSON.parse(document.getElementById('sd-config').textContent);
export const KEY = cfg.site_key;
export const TOKEN_KEY = 'supportdesk:' + KEY + ':token';
const OUTBOX_KEY = 'supportdesk:' + KEY + ':outbox';

const load = (key, fallback) => {
  try {
    const value = localStorage.getItem(key);
    return value === null ? fallback : JSON.parse(value);
  } catch (e) {
    return fallback;
  }
};
export const save = (key, value) => {
  try {
    if (value === null) localStorage.removeItem(key);
    else localStorage.setItem(key, JSON.stringify(value));
  } catch (e) {
    /* storage blocked: the chat still works for this page view */
  }
};
export const newId = () =>
  Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, '0')).join('');

export const state = {
  token: load(TOKEN_KEY, null),
  live: false, // hello answered by ready
  stopped: false, // the site refused us for good
  shown: false, // the chat is on screen
  // Sneak peek: the page's setting first, then what the socket says it relays (ready).
  sneakPeek: cfg.sneak_peek === true,
  agentsOnline: null, // null until ready: whether someone can answer a chat now
  visitorEmail: null, // known from `ready` or the offline form: prefills the transcript
  conv: null, // {id, status, position, wait, agent} of the latest conversation
  latest: 0, // id of the latest conversation seen
  lastSeq: 0, // every seq of `latest` up to this one is here: what hello resumes from
  topSeq: 0,
  agentRead: 0, // the agent read `latest` up to this seq
  own: new Map(), // client_msg_id -> {row, body, attachment, state, conv, seq, detail, timer}
  rated: new Set(), // conversations the visitor rated
};
export const timers = {};

// Messages not yet stored ({id, body, attachment}), kept across reloads.
export let outbox = load(OUTBOX_KEY, []).filter((m) => m && typeof m.id === 'string');
export const remember = (message) => {
  outbox.push(message);
  save(OUTBOX_KEY, outbox);
};
export const forget = (id) => {
  outbox = outbox.filter((m) => m.id !== id);
  save(OUTBOX_KEY, outbox.length ? outbox : null);
};

const $ = (id) => document.getElementById(id);

export const ui = {
  log: $('sd-log'),
  title: $('sd-title'),
  status: $('sd-status'),
  avatar: $('sd-avatar'),
  banner: $('sd-banner'),
  typing: $('sd-typing'),
  typingText: $('sd-typing-text'),
  form: $('sd-form'),
  input: $('sd-input'),
  send: $('sd-send'),
  close: $('sd-close'),
  end: $('sd-end'),
  attach: $('sd-attach'),
  file: $('sd-file'),
  upload: $('sd-upload'),
  privacy: $('sd-privacy'),
};

export const el = (tag, className, text) => {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
};

const nearBottom = () => ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight < 96;
export const scrollDown = (force) => {
  if (force || nearBottom()) ui.log.scrollTop = ui.log.scrollHeight;
};

export const setBanner = (text) => {
  ui.banner.hidden = !text;
  ui.banner.textContent = text || '';
};
export const flashBanner = (text) => {
  setBanner(text);
  clearTimeout(timers.banner);
  timers.banner = setTimeout(() => state.live && setBanner(null), 6000);
};

// --- the page that embeds us ---------------------------------------------------------
// ancestorOrigins is the browser's word; referrer and the loader's hash are fallbacks
// for browsers without it. Only an origin the site allows is ever posted to.
export const parentOrigin = (() => {
  if (window.parent === window) return null;
  let claimed;
  try {
    if (location.ancestorOrigins && location.ancestorOrigins.length) {
      claimed = location.ancestorOrigins[0];
    } else if (document.referrer) {
      claimed = new URL(document.referrer).origin;
    } else {
      claimed = decodeURIComponent(location.hash.slice(1));
    }
  } catch (e) {
    return null;
  }
  return cfg.allowed_origins.includes(claimed) ? claimed : null;
})();
export const toParent = (message) => {
  if (parentOrigin) window.parent.postMessage(message, parentOrigin);
};
