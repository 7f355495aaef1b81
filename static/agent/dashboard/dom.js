/* Helpers for every part of the dashboard: the page's fixed elements, writing text, the
 * one place message text becomes nodes, times, and the two ways of telling the agent
 * something (the screen reader's announcer and the toast).
 *
 * Text from the network reaches the page only through textContent and text nodes; the
 * only elements made from it are <a> for http(s) URLs, checked with the URL parser. */

const byId = (id) => document.getElementById(id);

export const LANG = document.documentElement.lang;

// The agent's language's strings by key (chat/dashboard_text.py), `%(name)s` filled from
// args; times, dates and numbers in the page's language. A text that depends on a count
// comes as its forms by plural category ({one, few, many, other, …}, chosen on the server
// with the language's own plural rules): Intl.PluralRules picks the one for `args.count`.
const TEXT = JSON.parse(byId("sd-text").textContent);
const PLURAL = new Intl.PluralRules(LANG);
export const number = (n, options) => new Intl.NumberFormat(LANG, options).format(n);
export const t = (key, args = {}) => {
  let text = TEXT[key];
  if (typeof text === "object") text = text[PLURAL.select(args.count)] ?? text.other;
  return text.replace(/%\((\w+)\)s/g, (_, name) =>
    name === "count" ? number(args.count) : args[name],
  );
};
// A system message in the agent's language when its code is known here, else its body.
export const systemText = (message) =>
  message.code && `sys_${message.code}` in TEXT ? t(`sys_${message.code}`, message.params || {}) : message.body;

export const els = {
  list: byId("chat-list"),
  listEmpty: byId("list-empty"),
  endedList: byId("ended-list"),
  endedTitle: byId("ended-title"),
  panes: byId("panes"),
  emptyPane: byId("empty-pane"),
  banner: byId("offline-banner"),
  queue: byId("queue-length"),
  queueOpen: byId("queue-open"),
  queueView: byId("queue-view"),
  queueList: byId("queue-list"),
  queueEmpty: byId("queue-empty"),
  queueError: byId("queue-error"),
  queueClose: byId("queue-close"),
  queueBack: byId("queue-back"),
  load: byId("load"),
  capacity: byId("capacity"),
  agentName: byId("agent-name"),
  agentInitial: byId("agent-initial"),
  connection: byId("connection"),
  connectionText: byId("connection-text"),
  presence: byId("presence"),
  presenceNote: byId("presence-note"),
  notify: byId("notify"),
  sound: byId("sound"),
  soundState: byId("sound-state"),
  toast: byId("toast"),
  announcer: byId("announcer"),
  itemTemplate: byId("chat-item-template"),
  paneTemplate: byId("pane-template"),
};

export const text = (el, value) => {
  el.textContent = value;
  return el;
};

export const part = (parent, selector) => parent.querySelector(selector);

export const clockTime = (iso) => {
  const date = iso ? new Date(iso) : new Date();
  if (isNaN(date.getTime())) return "";
  return date.toLocaleTimeString(LANG, { hour: "2-digit", minute: "2-digit" });
};

// "45 s", "12 min", "2 h 5 min" as the agent's language writes them (Arabic: "٢ س ٥ د").
const unit = (n, name) => number(n, { style: "unit", unit: name, unitDisplay: "narrow" });
export const duration = (ms) => {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return unit(s, "second");
  const m = Math.floor(s / 60);
  if (m < 60) return unit(m, "minute");
  return `${unit(Math.floor(m / 60), "hour")} ${unit(m % 60, "minute")}`;
};

export const pageAttentive = () => document.visibilityState === "visible" && document.hasFocus();

// --- links ---------------------------------------------------------------------------

const URL_PATTERN = /\bhttps?:\/\/[^\s<>"'`]+/gi;
const TRAILING_PUNCTUATION = /[.,;:!?)\]}'"]+$/;

/* The URL parser's href of `raw` if it is an http(s) URL, else null. */
export const safeHref = (raw) => {
  try {
    const url = new URL(raw);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
};

/* A link that opens in a new tab without a referrer or an opener; `href` from safeHref. */
export const newTabLink = (href, label) => {
  const a = document.createElement("a");
  a.href = href;
  a.target = "_blank";
  a.rel = "noopener noreferrer nofollow";
  a.textContent = label;
  return a;
};

/* Fill `parent` with `body` as text nodes, turning http(s) URLs into links.
   Anything else (javascript:, data:, markup) stays literal text. */
export const renderBody = (parent, body) => {
  let last = 0;
  let match;
  URL_PATTERN.lastIndex = 0;
  while ((match = URL_PATTERN.exec(body)) !== null) {
    const raw = match[0].replace(TRAILING_PUNCTUATION, "");
    const href = safeHref(raw);
    if (!href) continue;
    if (match.index > last) {
      parent.appendChild(document.createTextNode(body.slice(last, match.index)));
    }
    parent.appendChild(newTabLink(href, raw));
    last = match.index + raw.length;
    URL_PATTERN.lastIndex = last;
  }
  if (last < body.length) parent.appendChild(document.createTextNode(body.slice(last)));
};

// --- telling the agent ---------------------------------------------------------------

export const announce = (message) => {
  // Re-setting the same text would not be announced again; clear first.
  els.announcer.textContent = "";
  window.setTimeout(() => {
    els.announcer.textContent = message;
  }, 50);
};

let toastTimer = null;

export const toast = (message) => {
  text(els.toast, message);
  els.toast.hidden = false;
  window.clearTimeout(toastTimer);
  toastTimer = window.setTimeout(() => {
    els.toast.hidden = true;
  }, 6000);
};
