/* One visitor's chat over /ws/visitor/ (docs/protocol.md): config and state, the socket,
 * and the log. main.js says what each server frame and each visitor action does.
 *
 * Promises kept here: nothing missed, nothing doubled (messages keyed by conversation and
 * seq, own messages by client_msg_id; resume with the gapless last_seq); text reaches the
 * DOM only through textContent/createTextNode, and links are <a> elements made for
 * http(s) URLs only. */
export const cfg = JSON.parse(document.getElementById('sd-config').textContent);
export const KEY = cfg.site_key;
// The visitor's language's strings by key (chat/languages.py), `%(name)s` filled from args.
const TEXT = JSON.parse(document.getElementById('sd-text').textContent);
export const LANG = document.documentElement.lang;
export const t = (key, args) => TEXT[key].replace(/%\((\w+)\)s/g, (_, name) => args[name]);
// The on-demand modules' strings, fetched once by the first of them (`await moreText()`).
let moreLoad = null;
export const moreText = () =>
  (moreLoad = moreLoad || fetch(cfg.text_url).then((r) => r.json()).then((more) => Object.assign(TEXT, more)))
    .catch((error) => {
      moreLoad = null;
      throw error;
    });
// Numbers in the visitor's digits and grouping (Arabic-Indic digits in Arabic).
export const num = (n, options) => new Intl.NumberFormat(LANG, options).format(n);
const TOKEN_KEY = 'supportdesk:' + KEY + ':token';
const OUTBOX_KEY = 'supportdesk:' + KEY + ':outbox';

// localStorage may be blocked: the chat still works for this page view.
const load = (key) => {
  try {
    return JSON.parse(localStorage.getItem(key));
  } catch (e) {
    return null;
  }
};
const save = (key, value) => {
  try {
    if (value === null) localStorage.removeItem(key);
    else localStorage.setItem(key, JSON.stringify(value));
  } catch (e) {}
};
export const newId = () =>
  Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, '0')).join('');

export const state = {
  token: load(TOKEN_KEY),
  live: false, // hello answered by ready
  stopped: false, // the site refused us for good
  shown: false, // the chat is on screen
  // Sneak peek: the page's setting first, then what the socket says it relays (ready).
  sneakPeek: cfg.sneak_peek === true,
  agentsOnline: null, // null until ready: whether someone can answer a chat now
  visitorEmail: null, // known from `ready` or the offline form: prefills the transcript
  conv: null, // {id, status, position, wait, agent} of the latest conversation
  latest: 0, // id of the latest conversation seen
  cleared: 0, // the conversation "Start a new chat" took off the screen
  lastSeq: 0, // every seq of `latest` up to this one is here: what hello resumes from
  topSeq: 0,
  agentRead: 0, // the agent read `latest` up to this seq
  own: new Map(), // client_msg_id -> {row, body, attachment, state, conv, seq, detail, timer}
  rated: new Set(), // conversations the visitor rated
};
export const timers = {};
export const setToken = (token) => {
  if (token !== state.token) save(TOKEN_KEY, (state.token = token));
};

// Messages not yet stored ({id, body, attachment}), kept across reloads.
const stored = load(OUTBOX_KEY);
export let outbox = (Array.isArray(stored) ? stored : []).filter((m) => m && typeof m.id === 'string');
export const remember = (message) => {
  outbox.push(message);
  save(OUTBOX_KEY, outbox);
};
export const forget = (id) => {
  outbox = outbox.filter((m) => m.id !== id);
  save(OUTBOX_KEY, outbox.length ? outbox : null);
};

export const ui = {};
for (const name of 'log title status avatar banner typing typist form input send close end human attach file upload privacy'.split(' ')) {
  ui[name] = document.getElementById('sd-' + name);
}

export const el = (tag, className, text) => {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
};

// Whether the visitor reads the end of the log, as of their last scroll: what grows the
// log later (a message, an image that has loaded) keeps them there; reading back, not.
let atEnd = true;
ui.log.addEventListener('scroll', () => {
  atEnd = ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight < 96;
});
export const scrollDown = (force) => {
  if (force || atEnd) ui.log.scrollTop = ui.log.scrollHeight;
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
    if (location.ancestorOrigins && location.ancestorOrigins.length) claimed = location.ancestorOrigins[0];
    else if (document.referrer) claimed = new URL(document.referrer).origin;
    else claimed = decodeURIComponent(location.hash.slice(1));
  } catch (e) {
    return null;
  }
  return cfg.allowed_origins.includes(claimed) ? claimed : null;
})();
export const toParent = (message) => {
  if (parentOrigin) window.parent.postMessage(message, parentOrigin);
};

// --- the socket: session, hello and resume by last_seq, pings, backoff -----------------
export const ACK_TIMEOUT = 10000; // no ack by then: "Not sent", with Retry
const PING_EVERY = 25000;
const PONG_TIMEOUT = 10000; // a socket that does not answer a ping is dead
const BACKOFF_FIRST = 500;
const BACKOFF_MAX = 30000;
const OFFLINE = t('offline');

let ws = null;
let connecting = false;
let sessionChecked = false;
let attempt = 0;
let resync = false; // next hello asks for everything (last_seq 0)
let helloSeq = 0; // the last_seq the current socket's hello asked from
let hooks = null; // {handlers, lost(), forgotten()}, from startSocket

export const sendFrame = (frame) => {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(frame));
};

// Where the visitor is, for the agent: the loader adds the host page's [url, title,
// referrer] to every message (and sends it every 2 s for single-page apps). Only a change
// is reported; the server checks it (a visitor can claim anything).
const TIMEZONE = (() => {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || undefined;
  } catch (e) {}
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

export const post = async (url, body) => {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
    credentials: 'omit',
  });
  return [response, await response.json().catch(() => ({}))];
};

// Who the page says the visitor is (its identify call): sent with the session, once
// per change. A verified user on another device gets this socket closed with 4503 and
// comes back, with the same token, as that user.
let who = null;
let whoSent = '';
const openSession = async () => {
  const identity = who || undefined;
  const [response, data] = await post(cfg.sessions_url, { site_key: KEY, visitor_token: state.token || undefined, identity, language: LANG });
  if (response.status === 404 || response.status === 403) throw 'refused';
  if (!response.ok) throw 'session ' + response.status;
  setToken(data.visitor_token);
  if (identity) {
    whoSent = JSON.stringify(identity);
    if (data.identity !== 'verified') console.warn('supportdesk: identify: user_hash does not verify this user_id');
  }
};
export const identify = (given) => {
  if (!given || typeof given !== 'object' || JSON.stringify(given) === whoSent) return;
  who = given;
  // Before the first session it goes with that one; after, in one of its own.
  if (sessionChecked && state.token) openSession().catch(() => (whoSent = ''));
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
  hooks.handlers.ready(f);
  clearInterval(timers.ping);
  timers.ping = setInterval(() => {
    sendFrame({ type: 'ping' });
    clearTimeout(timers.pong);
    timers.pong = setTimeout(dropSocket, PONG_TIMEOUT);
  }, PING_EVERY);
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
    if (e === 'refused') stop();
    else retryLater();
    return;
  }
  connecting = false;
  const sock = (ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + cfg.ws_path));
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
    else if (Object.hasOwn(hooks.handlers, type)) hooks.handlers[type](frame);
  };
  sock.onclose = (event) => {
    if (sock !== ws) return;
    ws = null;
    down(event.code);
  };
};

// Forget a socket now, without waiting for a close handshake a dead network never ends.
const dropSocket = () => {
  const sock = ws;
  if (!sock) return;
  ws = null;
  try {
    sock.close();
  } catch (e) {}
  down(1006);
};

const down = (code) => {
  state.live = false;
  clearInterval(timers.ping);
  clearTimeout(timers.pong);
  clearTimeout(timers.gap);
  hooks.lost();
  if (code === 4403) return stop();
  if (code === 4401) {
    // The token is unknown here (data reset): become a new visitor, keep the outbox.
    setToken(null);
    sessionChecked = false;
    hooks.forgotten();
  }
  retryLater();
};

// Exponential backoff with jitter, so a restarted server is not hit by every widget
// at the same instant. Coming back online skips the wait.
const retryLater = () => {
  const ceiling = Math.min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** attempt);
  attempt += 1;
  setBanner(navigator.onLine ? t('reconnecting') : OFFLINE);
  clearTimeout(timers.retry);
  timers.retry = setTimeout(connect, ceiling / 2 + Math.random() * (ceiling / 2));
};

const stop = () => {
  state.stopped = true;
  setBanner(t('unavailable'));
  ui.input.disabled = ui.send.disabled = ui.attach.disabled = true;
};

// handlers: frame type -> function; lost(): a socket went; forgotten(): we are a new visitor.
export const startSocket = (given) => {
  hooks = given;
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

// --- the conversation on screen: status texts, typing, the log in seq order -----------
const TYPING_SHOWN = 8000; // hide the agent's indicator if its "stopped" got lost
const GAP_WAIT = 3000; // a seq gap not filled by then: resume from last_seq

let seqs; // seqs of `latest` seen
let theirs; // seqs of agent/system messages in `latest`
let readSent; // we told the server we read up to this seq
let readLocal; // what the visitor has had on screen (for the launcher's badge)
let unreadPosted = -1;
const rows = new Map(); // "conversation:seq" -> row element
const joins = new Map(); // "conversation:after_seq:name" -> its "joined the chat" line

const restartSeqs = () => {
  seqs = new Set();
  theirs = [];
  state.lastSeq = state.topSeq = state.agentRead = readSent = readLocal = 0;
};
restartSeqs();

export const agentName = () => (state.conv && state.conv.agent) || t('support');

// "You are number 2 in line — about 4 min" (Intl's units: the language's plurals);
// without an estimate, the place alone.
const queueText = ({ position, wait }) => {
  const minutes = Math.round(wait / 60);
  const h = minutes > 89;
  const args = { position: num(position), wait: num(h ? Math.round(minutes / 60) : minutes, { style: 'unit', unit: h ? 'hour' : 'minute', unitDisplay: h ? 'long' : 'short' }) };
  if (typeof wait !== 'number') return t('queue', args);
  return t(wait < 60 ? 'queue_soon' : 'queue_wait', args);
};

export const header = () => {
  const { conv, agentsOnline } = state;
  const status = conv && conv.status;
  const name = status === 'active' && conv.agent ? conv.agent : cfg.name;
  ui.title.textContent = name;
  ui.avatar.textContent = (name.trim()[0] || '?').toUpperCase();
  const text =
    status === 'queued'
      ? queueText(conv)
      : status === 'bot'
        ? t('status_bot')
        : status === 'active'
        ? t('status_active', { site: cfg.name })
        : status === 'closed'
          ? t('status_ended')
          : agentsOnline === false
            ? t('status_email')
            : agentsOnline
              ? t('status_online')
              : t('status_default');
  // A live region: said again only when it changed.
  if (ui.status.textContent !== text) ui.status.textContent = text;
  ui.end.hidden = status !== 'queued' && status !== 'active' && status !== 'bot';
  ui.human.hidden = status !== 'bot';
};

// The newest reading of the queue seen per conversation (`queue_version`): two
// workers' readings may arrive out of order, and an older one that comes late (even
// after `conversation.assigned`) is dropped instead of showing a stale position.
const queueVersions = new Map();
export const staleQueueFrame = (id, version) => {
  if (typeof version !== 'number') return false;
  if (version < (queueVersions.get(id) || 0)) return true;
  queueVersions.set(id, version);
  return false;
};

export const hideTyping = () => {
  clearTimeout(timers.typingShown);
  ui.typing.hidden = true;
};
export const showTyping = () => {
  ui.typist.textContent = t('typing', { name: agentName() });
  ui.typing.hidden = false;
  clearTimeout(timers.typingShown);
  timers.typingShown = setTimeout(hideTyping, TYPING_SHOWN);
  scrollDown(false);
};

// --- files in messages ---------------------------------------------------------------
// Files go up and come down with the visitor's token in a header (then a blob: URL
// shows or saves them): no URL by itself ever opens a file.
const unit = (n, name) => num(n, { style: 'unit', unit: name, maximumFractionDigits: 1 });
export const sizeText = (bytes) =>
  bytes >= 1048576 ? unit(bytes / 1048576, 'megabyte') : bytes >= 1024 ? unit(Math.round(bytes / 1024), 'kilobyte') : unit(bytes, 'byte');
const thumbs = new Map(); // thumbnail url -> promise of its blob: URL, fetched once per page

const fetchFile = async (url) => {
  const response = await fetch(url, { headers: { Authorization: 'Bearer ' + state.token }, credentials: 'omit' });
  if (!response.ok) throw new Error(response.status === 404 ? t('file_gone') : t('http_error', { status: response.status }));
  return URL.createObjectURL(await response.blob());
};

const download = async (file) => {
  try {
    const a = el('a');
    a.href = await fetchFile(file.url);
    a.download = file.name;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 60000);
  } catch (err) {
    flashBanner(t('download_failed', { name: file.name, reason: err.message }));
  }
};

const svg = (className, d) => {
  const icon = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  icon.setAttribute('viewBox', '0 0 24 24');
  icon.setAttribute('class', className);
  icon.setAttribute('aria-hidden', 'true');
  icon.appendChild(document.createElementNS(icon.namespaceURI, 'path')).setAttribute('d', d);
  return icon;
};

// A message's file: the image's thumbnail, or its name and size; either one downloads it.
const fileBox = (file) => {
  const box = el('button', 'sd-file');
  box.type = 'button';
  box.setAttribute('aria-label', t('download', { name: file.name, size: sizeText(file.size) }));
  box.onclick = () => download(file);
  const url = file.thumbnail_url;
  if (!url) {
    const icon = svg('sd-file-icon', 'M14 2H6a2 2 0 0 0-2 2v16a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2V8zM14 2v6h6');
    box.append(icon, el('span', 'sd-file-name', file.name), el('span', 'sd-file-size', sizeText(file.size)));
    return box;
  }
  box.classList.add('sd-file-image');
  const img = box.appendChild(el('img', 'sd-thumb'));
  img.alt = file.name;
  // Loaded, the picture makes the log taller: a visitor reading its end stays there.
  img.onload = () => scrollDown(false);
  if (!thumbs.has(url)) thumbs.set(url, fetchFile(url));
  thumbs.get(url).then(
    (src) => (img.src = src),
    () => {
      thumbs.delete(url);
      img.alt = file.name + ' (no preview)';
    },
  );
  return box;
};

// --- rendering -----------------------------------------------------------------------
const URL_PATTERN = /\bhttps?:\/\/[^\s<>"'`]+/gi;
const TRAILING = /[.,;:!?)\]}]+$/; // punctuation after a URL belongs to the sentence

const linkify = (text) => {
  const nodes = [];
  let last = 0;
  for (const match of text.matchAll(URL_PATTERN)) {
    const visible = match[0].replace(TRAILING, '');
    let href = null;
    try {
      const url = new URL(visible);
      if (url.protocol === 'http:' || url.protocol === 'https:') href = url.href;
    } catch (e) {}
    if (!href) continue;
    nodes.push(document.createTextNode(text.slice(last, match.index)));
    const a = el('a', '', visible);
    a.href = href;
    a.target = '_blank';
    a.rel = 'noopener noreferrer nofollow';
    nodes.push(a);
    last = match.index + visible.length;
  }
  nodes.push(document.createTextNode(text.slice(last)));
  return nodes;
};

// A message's row. An agent's reply carries its author's name twice: read out in the
// bubble ("alice: …"), and shown above the first reply of each run of theirs (place()).
export const renderMessage = (sender, body, file, author) => {
  if (sender === 'system') return el('div', 'sd-row sd-sys', body);
  const mine = sender === 'visitor';
  const row = el('div', 'sd-row sd-' + (mine ? 'me' : 'them'));
  const bubble = el('div', 'sd-bubble');
  bubble.append(el('span', 'sd-vh', (mine ? t('you') : author) + ': '), ...linkify(body));
  if (file) bubble.append(fileBox(file));
  if (!mine) {
    row.sdBy = author;
    row.append(el('span', 'sd-by', author));
    row.firstChild.setAttribute('aria-hidden', 'true');
  }
  row.append(bubble);
  if (mine) row.append(el('div', 'sd-meta'));
  return row;
};

// "Helpful? 👍 👎" under a bot answer (the visitor's verdict, stored per article).
const verdict = (seq) => {
  const box = el('div', 'sd-fb', t('helpful'));
  for (const [label, helpful] of [['👍', true], ['👎', false]]) {
    const b = el('button', '', label);
    b.type = 'button';
    b.setAttribute('aria-label', t(helpful ? 'helped' : 'not_helped'));
    b.onclick = () => {
      sendFrame({ type: 'bot.feedback', seq, helpful });
      for (const other of box.children) other.setAttribute('aria-pressed', other === b);
    };
    box.append(b);
  }
  return box;
};

const compare = (a, b) => a[0] - b[0] || a[1] - b[1];
// Rows stay sorted by (conversation, seq); own messages not yet stored, and the offline
// form, stay last.
export const place = (row) => {
  row.remove();
  let next = null;
  if (row.sdKey) {
    for (let node = ui.log.lastElementChild; node; node = node.previousElementSibling) {
      if (node.classList.contains('sd-greeting') || (node.sdKey && compare(node.sdKey, row.sdKey) < 0)) break;
      next = node;
    }
  }
  ui.log.insertBefore(row, next);
  for (const r of [row, next]) {
    if (r && r.sdBy) r.firstChild.hidden = r.previousElementSibling?.sdBy === r.sdBy;
  }
};

// --- conversations and messages ------------------------------------------------------
const noteConversation = (id) => {
  if (id <= state.latest) return;
  state.latest = id;
  restartSeqs();
};

export const setConversation = (c) => {
  if (c) noteConversation(c.id);
  if (!c || c.id === state.latest) {
    state.conv = c && {
      id: c.id,
      status: c.status,
      position: c.queue_position,
      wait: c.estimated_wait_seconds,
      agent: c.agent ? c.agent.display_name : null,
    };
  }
  header();
};

const seeSeq = (conversation, seq) => {
  noteConversation(conversation);
  if (conversation !== state.latest) return;
  seqs.add(seq);
  state.topSeq = Math.max(state.topSeq, seq);
  while (seqs.has(state.lastSeq + 1)) state.lastSeq += 1;
  clearTimeout(timers.gap);
  // Senders interleave, so seq 7 may arrive before 6; if 6 never comes, resume.
  if (state.topSeq > state.lastSeq) timers.gap = setTimeout(dropSocket, GAP_WAIT);
};

// Add one message (from ready, a message frame or an ack); false if already shown.
// An agent's reply is labelled with its own author, whoever has the chat now.
export const addMessage = (m) => {
  const key = m.conversation + ':' + m.seq;
  seeSeq(m.conversation, m.seq);
  if (rows.has(key)) return false;
  const mine = m.sender === 'visitor' && m.client_msg_id ? state.own.get(m.client_msg_id) : null;
  let row;
  if (mine) {
    row = mine.row;
    clearTimeout(mine.timer);
    Object.assign(mine, { state: 'sent', conv: m.conversation, seq: m.seq, detail: '' });
    forget(m.client_msg_id);
  } else {
    row = renderMessage(m.sender, m.body, m.attachment, m.agent ? m.agent.display_name : t(m.sender === 'bot' ? 'assistant' : 'support'));
    // The bot's answers (with their articles) take a 👍/👎.
    if (m.sources && m.sources.length) row.append(verdict(m.seq));
    // A system message (or the bot's hand-off) in the visitor's language: its sentence
    // comes with the on-demand strings; the English body shows until then.
    if (m.code && LANG !== 'en') moreText().then(() => TEXT['sys_' + m.code] && ((row.querySelector('.sd-bubble') || row).lastChild.textContent = t('sys_' + m.code, m.params)), () => {});
    if (m.sender === 'visitor') {
      // Sent from another tab, or before a reload.
      state.own.set(m.client_msg_id || 'seq:' + key, {
        row,
        body: m.body,
        attachment: m.attachment,
        state: 'sent',
        conv: m.conversation,
        seq: m.seq,
      });
    }
  }
  row.sdKey = [m.conversation, m.seq];
  rows.set(key, row);
  place(row);
  if (m.conversation === state.latest && m.sender !== 'visitor') {
    theirs.push(m.seq);
    if (m.sender === 'agent') {
      // Answering means having read everything before the answer.
      state.agentRead = Math.max(state.agentRead, m.seq);
      hideTyping();
    }
  }
  return true;
};

// "alice joined the chat", after the message that was the last one when she did.
const addJoin = (conversation, after, agent) => {
  const name = agent ? agent.display_name : t('support');
  const key = [conversation, after, name].join(':');
  if (joins.has(key)) return;
  const line = el('div', 'sd-row sd-sys', t('joined', { name }));
  line.sdKey = [conversation, after + 0.5];
  joins.set(key, line);
  place(line);
};
// Live (`conversation.assigned`): after the newest message here.
export const joined = (conversation, agent) => addJoin(conversation, state.topSeq, agent);
// From `ready`: every turn where it began, by the server's record, in place of the lines
// put where the frames happened to arrive.
export const showJoins = (c) => {
  for (const [key, line] of joins) {
    if (line.sdKey[0] === c.id) {
      line.remove();
      joins.delete(key);
    }
  }
  for (const turn of c.joins || []) addJoin(c.id, turn.after_seq, turn.agent);
};

// Take every conversation off the screen; `forgotten`: we are a new visitor.
export const clearLog = (forgotten) => {
  for (const node of [...ui.log.children]) if (node.sdKey) node.remove();
  rows.clear();
  joins.clear();
  theirs = [];
  if (forgotten) {
    state.latest = 0;
    restartSeqs();
  }
};

// --- reading -------------------------------------------------------------------------
export const updateUnread = () => {
  const count = theirs.filter((seq) => seq > readLocal).length;
  if (count !== unreadPosted) toParent({ supportdesk: 'unread', count: (unreadPosted = count) });
};

export const markRead = () => {
  if (!state.shown || document.visibilityState !== 'visible') return;
  readLocal = Math.max(readLocal, state.topSeq);
  updateUnread();
  const { conv } = state;
  if (state.live && conv && conv.id === state.latest && conv.status !== 'closed' && Math.max(0, ...theirs) > readSent) {
    readSent = state.topSeq;
    sendFrame({ type: 'read', seq: state.topSeq });
  }
};
