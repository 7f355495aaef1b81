/* supportdesk widget frame: one visitor's chat over /ws/visitor/ (see docs/protocol.md).
 *
 * Promises kept here: nothing missed, nothing doubled (messages keyed by conversation and
 * seq, own messages by client_msg_id; resume with the gapless last_seq); messages typed
 * offline wait in a localStorage outbox and go out on reconnect with the same
 * client_msg_id; text reaches the DOM only through textContent/createTextNode, and links
 * are <a> elements made for http(s) URLs only. */
(() => {
  'use strict';

  const $ = (id) => document.getElementById(id);
  const cfg = JSON.parse($('sd-config').textContent);
  const KEY = cfg.site_key;
  const TOKEN_KEY = 'supportdesk:' + KEY + ':token';
  const OUTBOX_KEY = 'supportdesk:' + KEY + ':outbox';
  const ACK_TIMEOUT = 10000; // no ack by then: "Not sent", with Retry
  const PING_EVERY = 25000;
  const PONG_TIMEOUT = 10000; // a socket that does not answer a ping is dead
  const BACKOFF_FIRST = 500;
  const BACKOFF_MAX = 30000;
  const TYPING_REPEAT = 4000; // re-send "typing" this often while the visitor types
  const TYPING_IDLE = 3000; // no keystroke for this long: "stopped typing"
  const TYPING_SHOWN = 8000; // hide the agent's indicator if its "stopped" got lost
  const GAP_WAIT = 3000; // a seq gap not filled by then: resume from last_seq
  const DRAFT_EVERY = 500; // sneak peek: the draft goes out at most this often (last one kept)
  const MAX_DRAFT = 1000; // the server refuses longer drafts
  const OFFLINE = 'You are offline. Messages will be sent when you are back online.';
  const TRANSCRIPT_ERRORS = {
    bad_email: 'That does not look like an email address.',
    rate_limited: 'Too many requests. Please try again later.',
    not_found: 'There is no chat to send yet.',
    unavailable: 'The transcript could not be sent. Please try again later.',
  };

  const ui = {
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

  const rootStyle = document.documentElement.style;
  rootStyle.setProperty('--sd-accent', cfg.color);
  rootStyle.setProperty('--sd-ink', cfg.ink);

  const load = (key, fallback) => {
    try {
      const value = localStorage.getItem(key);
      return value === null ? fallback : JSON.parse(value);
    } catch (e) {
      return fallback;
    }
  };
  const save = (key, value) => {
    try {
      if (value === null) localStorage.removeItem(key);
      else localStorage.setItem(key, JSON.stringify(value));
    } catch (e) {
      /* storage blocked: the chat still works for this page view */
    }
  };
  const el = (tag, className, text) => {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const newId = () =>
    Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, '0')).join('');

  // --- the page that embeds us ----------------------------------------------------
  // ancestorOrigins is the browser's word; referrer and the loader's hash are fallbacks
  // for browsers without it. Only an origin the site allows is ever posted to.
  const parentOrigin = (() => {
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
  const toParent = (message) => {
    if (parentOrigin) window.parent.postMessage(message, parentOrigin);
  };
  // Standalone (opened directly) the chat is always on screen; embedded, the loader says.
  let shown = !parentOrigin;
  ui.close.hidden = !parentOrigin;

  // --- state ----------------------------------------------------------------------
  let token = load(TOKEN_KEY, null);
  let outbox = load(OUTBOX_KEY, []).filter((m) => m && typeof m.id === 'string');
  let sessionChecked = false;
  let ws = null;
  let connecting = false;
  let live = false; // hello answered by ready
  let stopped = false; // the site refused us for good
  let attempt = 0;
  let resync = false; // next hello asks for everything (last_seq 0)
  let helloSeq = 0; // the last_seq the current socket's hello asked from
  // Sneak peek: the page's setting first, then what the socket says it relays (ready).
  let sneakPeek = cfg.sneak_peek === true;
  let agentsOnline = null; // null until ready: whether someone can answer a chat now
  const timers = {};

  let conv = null; // {id, status, position, agent} of the latest conversation
  let latest = 0; // id of the latest conversation seen
  let seqs = new Set(); // seqs of `latest` seen
  let lastSeq = 0; // every seq of `latest` up to this one is here: what hello resumes from
  let topSeq = 0;
  let theirs = []; // seqs of agent/system messages in `latest`
  let agentRead = 0; // the agent read `latest` up to this seq
  let readSent = 0; // we told the server we read up to this seq
  let readLocal = 0; // what the visitor has had on screen (for the launcher's badge)
  let unreadPosted = -1;
  const rows = new Map(); // "conversation:seq" -> row element
  const own = new Map(); // client_msg_id -> {row, body, state, conv, seq, detail, timer}
  const noted = new Set(); // conversations whose "ended" note was shown
  const joined = new Set(); // "conversation:agent" whose "joined" note was shown
  const rated = new Set(); // conversations the visitor rated

  // --- rendering ------------------------------------------------------------------
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
      } catch (e) {
        href = null;
      }
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

  const agentName = () => (conv && conv.agent) || 'Support';

  const renderMessage = (sender, body, file) => {
    if (sender === 'system') return el('div', 'sd-row sd-sys', body);
    const mine = sender === 'visitor';
    const row = el('div', 'sd-row ' + (mine ? 'sd-me' : 'sd-them'));
    const bubble = el('div', 'sd-bubble');
    bubble.append(el('span', 'sd-vh', mine ? 'You: ' : agentName() + ': '), ...linkify(body));
    if (file) bubble.append(fileBox(file));
    row.append(bubble);
    if (mine) row.append(el('div', 'sd-meta'));
    return row;
  };

  const compare = (a, b) => a[0] - b[0] || a[1] - b[1];
  // Rows stay sorted by (conversation, seq); own messages not yet stored stay last.
  const place = (row) => {
    row.remove();
    let next = null;
    if (row.sdKey) {
      for (let node = ui.log.lastElementChild; node; node = node.previousElementSibling) {
        if (node.classList.contains('sd-greeting')) break;
        if (node.sdKey && compare(node.sdKey, row.sdKey) < 0) break;
        next = node;
      }
    }
    ui.log.insertBefore(row, next);
  };

  const nearBottom = () => ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight < 96;
  const scrollDown = (force) => {
    if (force || nearBottom()) ui.log.scrollTop = ui.log.scrollHeight;
  };

  const setBanner = (text) => {
    ui.banner.hidden = !text;
    ui.banner.textContent = text || '';
  };

  const header = () => {
    const status = conv ? conv.status : null;
    const name = status === 'active' && conv.agent ? conv.agent : cfg.name;
    ui.title.textContent = name;
    ui.avatar.textContent = (name.trim()[0] || '?').toUpperCase();
    ui.status.textContent =
      status === 'queued'
        ? queueText()
        : status === 'active'
          ? 'Support at ' + cfg.name
          : status === 'closed'
            ? 'This chat has ended'
            : agentsOnline === false
              ? 'We reply by email'
              : agentsOnline
                ? 'Agents online — we typically reply in a few minutes'
                : 'We usually reply in a few minutes';
    ui.end.hidden = !(status === 'queued' || status === 'active');
  };

  const queueText = () => {
    if (typeof conv.wait !== 'number') return 'Waiting in queue — you are #' + conv.position;
    const minutes = Math.max(1, Math.round(conv.wait / 60));
    return 'You are number ' + conv.position + ' in line — about ' + minutes + ' min';
  };

  // "Sending…", "Not sent · Retry" per message; "Seen" under the last own message the
  // agent has read, "Sent" under the last one if the agent has not read it yet.
  const receipts = () => {
    let lastSent = null;
    let lastSeen = null;
    for (const o of own.values()) {
      if (o.state !== 'sent' || o.conv !== latest) continue;
      if (!lastSent || o.seq > lastSent.seq) lastSent = o;
      if (o.seq <= agentRead && (!lastSeen || o.seq > lastSeen.seq)) lastSeen = o;
    }
    for (const [id, o] of own) {
      let text = '';
      if (o.state === 'pending') text = live ? 'Sending…' : 'Waiting for connection…';
      else if (o.state === 'failed') text = 'failed';
      else if (o === lastSeen) text = 'Seen';
      else if (o === lastSent) text = 'Sent';
      const key = text === 'failed' ? 'failed:' + o.detail : text;
      const meta = o.row.querySelector('.sd-meta');
      if (!meta || meta.dataset.shows === key) continue;
      meta.dataset.shows = key;
      meta.className = 'sd-meta' + (text === 'failed' ? ' sd-error' : '');
      o.row.classList.toggle('sd-pending', o.state === 'pending');
      if (text !== 'failed') {
        meta.textContent = text;
        continue;
      }
      const retry = el('button', 'sd-retry', 'Retry');
      retry.type = 'button';
      retry.addEventListener('click', () => retrySend(id));
      meta.replaceChildren('Not sent' + (o.detail ? ': ' + o.detail + ' ' : '. '), retry);
    }
  };

  const updateUnread = () => {
    const count = theirs.filter((seq) => seq > readLocal).length;
    if (count !== unreadPosted) {
      unreadPosted = count;
      toParent({ supportdesk: 'unread', count });
    }
  };

  // --- conversations and messages -------------------------------------------------
  const noteConversation = (id) => {
    if (id <= latest) return;
    latest = id;
    seqs = new Set();
    lastSeq = topSeq = agentRead = readSent = readLocal = 0;
    theirs = [];
  };

  const setConversation = (c) => {
    if (c) {
      noteConversation(c.id);
      if (c.id === latest) {
        conv = {
          id: c.id,
          status: c.status,
          position: c.queue_position,
          wait: c.estimated_wait_seconds,
          agent: c.agent ? c.agent.display_name : null,
        };
      }
    } else {
      conv = null;
    }
    header();
  };

  const seeSeq = (conversation, seq) => {
    noteConversation(conversation);
    if (conversation !== latest) return;
    seqs.add(seq);
    topSeq = Math.max(topSeq, seq);
    while (seqs.has(lastSeq + 1)) lastSeq += 1;
    clearTimeout(timers.gap);
    // Senders interleave, so seq 7 may arrive before 6; if 6 never comes, resume.
    if (topSeq > lastSeq) timers.gap = setTimeout(() => dropSocket(), GAP_WAIT);
  };

  // Add one message (from ready, a message frame or an ack); false if already shown.
  const addMessage = (m) => {
    const key = m.conversation + ':' + m.seq;
    seeSeq(m.conversation, m.seq);
    if (rows.has(key)) return false;
    const mine = m.sender === 'visitor' && m.client_msg_id ? own.get(m.client_msg_id) : null;
    let row;
    if (mine) {
      row = mine.row;
      settle(m.client_msg_id, m.conversation, m.seq);
    } else {
      row = renderMessage(m.sender, m.body, m.attachment);
      if (m.sender === 'visitor') {
        // Sent from another tab, or before a reload.
        own.set(m.client_msg_id || 'seq:' + key, {
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
    if (m.conversation === latest && m.sender !== 'visitor') {
      theirs.push(m.seq);
      if (m.sender === 'agent') {
        // Answering means having read everything before the answer.
        agentRead = Math.max(agentRead, m.seq);
        hideTyping();
      }
    }
    return true;
  };

  const settle = (id, conversation, seq) => {
    const o = own.get(id);
    if (!o) return;
    clearTimeout(o.timer);
    Object.assign(o, { state: 'sent', conv: conversation, seq, detail: '' });
    outbox = outbox.filter((m) => m.id !== id);
    save(OUTBOX_KEY, outbox.length ? outbox : null);
  };

  const addEndedNote = (conversation, by) => {
    if (noted.has(conversation)) return;
    noted.add(conversation);
    const who = by === 'visitor' ? 'You ended the chat.' : by === 'agent' ? agentName() + ' ended the chat.' : 'This chat has ended.';
    const note = el('div', 'sd-row sd-note');
    const start = el('button', 'sd-new', 'Start a new chat');
    start.type = 'button';
    start.addEventListener('click', startNewChat);
    note.append(el('p', '', who), start);
    if (!rated.has(conversation)) note.append(rateBox(conversation));
    note.append(transcriptForm(conversation));
    note.sdKey = [conversation, Infinity];
    place(note);
  };

  // A copy of the chat by email, on request: `transcript.email`, answered by
  // `transcript.sent` or an error (the server limits how often).
  let visitorEmail = null; // known from `ready` or the offline form: prefills the field
  let transcriptWait = null; // {send, status, box} of the request waiting for an answer
  const transcriptForm = (conversation) => {
    const box = el('form', 'sd-transcript');
    box.noValidate = true;
    const input = el('input', 'sd-field sd-transcript-email');
    input.type = 'email';
    input.id = 'sd-transcript-' + conversation;
    input.maxLength = 254;
    input.autocomplete = 'email';
    input.placeholder = 'you@example.com';
    input.value = visitorEmail || '';
    const label = el('label', '', 'Email me the transcript');
    label.htmlFor = input.id;
    const send = el('button', 'sd-new', 'Send transcript');
    const status = el('p', 'sd-transcript-status');
    status.setAttribute('role', 'status');
    box.append(label, input, send, status);
    box.addEventListener('submit', (e) => {
      e.preventDefault();
      const email = input.value.trim();
      if (!email.includes('@')) {
        status.textContent = 'Please enter your email address.';
        return;
      }
      if (!live) {
        status.textContent = 'Not connected. Please try again in a moment.';
        return;
      }
      send.disabled = true;
      status.textContent = 'Sending…';
      transcriptWait = { send, status, box };
      clearTimeout(timers.transcript);
      timers.transcript = setTimeout(() => transcriptFailed('No answer from the server. Please try again.'), ACK_TIMEOUT * 2);
      sendFrame({ type: 'transcript.email', email });
    });
    return box;
  };
  const transcriptFailed = (text) => {
    if (!transcriptWait) return;
    clearTimeout(timers.transcript);
    transcriptWait.status.textContent = text;
    transcriptWait.send.disabled = false;
    transcriptWait = null;
  };

  // CSAT once the chat is over: 1 to 5 stars and an optional comment, once.
  const rateBox = (conversation) => {
    const box = el('form', 'sd-rate');
    box.dataset.conv = conversation;
    const stars = el('div', 'sd-stars');
    stars.setAttribute('role', 'group');
    stars.setAttribute('aria-label', 'Rate this chat');
    const comment = el('textarea', 'sd-rate-comment');
    comment.maxLength = 2000;
    comment.rows = 2;
    comment.placeholder = 'Anything to add? (optional)';
    comment.setAttribute('aria-label', 'Comment (optional)');
    const send = el('button', 'sd-new', 'Send rating');
    send.disabled = true;
    let score = 0;
    for (let i = 1; i <= 5; i++) {
      const star = el('button', 'sd-star', '\u2605');
      star.type = 'button';
      star.setAttribute('aria-label', i + ' out of 5');
      star.setAttribute('aria-pressed', 'false');
      star.addEventListener('click', () => {
        score = i;
        [...stars.children].forEach((s, n) => {
          s.classList.toggle('sd-on', n < i);
          s.setAttribute('aria-pressed', String(n === i - 1));
        });
        send.disabled = false;
      });
      stars.append(star);
    }
    box.append(el('p', '', 'How was this chat?'), stars, comment, send);
    box.addEventListener('submit', (e) => {
      e.preventDefault();
      if (!score || !live) return;
      sendFrame({ type: 'rating', score, comment: comment.value.trim() });
      send.disabled = true;
    });
    return box;
  };

  // Nobody online: a form (name, email, question) for an answer by email. The composer
  // stays: a chat message still waits in the queue for the next agent.
  let offlineShown = false;
  let offlineBox = null; // the form while not sent: hidden again when agents come back
  const offlineForm = () => {
    if (offlineBox) offlineBox.hidden = false;
    if (offlineShown) return;
    offlineShown = true;
    const box = el('form', 'sd-row sd-offline');
    offlineBox = box;
    box.noValidate = true;
    box.append(el('p', '', 'No one is online right now. Leave a message and we will reply by email.'));
    const field = (label, tag, type, max) => {
      const f = el(tag, 'sd-field');
      if (type) f.type = type;
      f.maxLength = max;
      f.placeholder = label;
      f.setAttribute('aria-label', label);
      box.append(f);
      return f;
    };
    const name = field('Your name', 'input', 'text', 200);
    const email = field('Your email', 'input', 'email', 254);
    const question = field('Your question', 'textarea', null, 10000);
    const send = el('button', 'sd-new', 'Leave message');
    const status = el('p', 'sd-offline-status');
    status.setAttribute('role', 'status');
    box.append(send, status);
    box.addEventListener('submit', async (e) => {
      e.preventDefault();
      const body = { site_key: KEY, visitor_token: token || undefined, name: name.value.trim(), email: email.value.trim(), question: question.value.trim() };
      if (!body.name || !body.email.includes('@') || !body.question) {
        status.textContent = 'Please give your name, email and question.';
        return;
      }
      send.disabled = true;
      status.textContent = 'Sending…';
      try {
        const response = await fetch(cfg.sessions_url.replace('visitor-sessions', 'offline-messages'), {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify(body),
          credentials: 'omit',
        });
        const data = await response.json();
        if (!response.ok) throw new Error(data.detail);
        if (data.visitor_token !== token) {
          token = data.visitor_token;
          save(TOKEN_KEY, token);
        }
        offlineBox = null;
        visitorEmail = body.email;
        box.replaceWith(el('p', 'sd-row sd-sys', 'Thanks! We will reply to ' + body.email + '.'));
      } catch (err) {
        status.textContent = 'Not sent: ' + (err.message || 'please try again.');
        send.disabled = false;
      }
    });
    ui.log.append(box);
    scrollDown(true);
  };

  // "alice joined the chat", after the messages that were there when she did.
  const addJoined = (conversation, name, after) => {
    const key = conversation + ':' + name;
    if (!name || joined.has(key)) return;
    joined.add(key);
    const note = el('div', 'sd-row sd-sys', name + ' joined the chat');
    note.sdKey = [conversation, after + 0.5];
    place(note);
  };

  // Clear the ended chat off the screen; the next message opens a new conversation.
  const startNewChat = () => {
    for (const node of [...ui.log.children]) {
      if (node.sdKey) node.remove();
    }
    rows.clear();
    for (const [id, o] of own) if (o.state === 'sent') own.delete(id);
    theirs = [];
    conv = null;
    header();
    ui.input.focus();
  };

  const resetView = () => {
    startNewChat();
    latest = 0;
    seqs = new Set();
    lastSeq = topSeq = agentRead = readSent = readLocal = 0;
    noted.clear();
    joined.clear();
  };

  // --- typing and reading ---------------------------------------------------------
  const hideTyping = () => {
    clearTimeout(timers.typingShown);
    ui.typing.hidden = true;
  };
  const showTyping = () => {
    ui.typingText.textContent = agentName() + ' is typing…';
    ui.typing.hidden = false;
    clearTimeout(timers.typingShown);
    timers.typingShown = setTimeout(hideTyping, TYPING_SHOWN);
    scrollDown(false);
  };

  let typingOn = false;
  let typingSentAt = 0;
  const canSignal = () => live && conv && conv.status === 'active';
  // Sneak peek: the draft rides on `typing`, at most every DRAFT_EVERY ms; a keystroke
  // inside that window is sent at its end, so the agent always ends on the latest text.
  let draftSentAt = 0;
  const sendDraft = () => {
    clearTimeout(timers.draft);
    timers.draft = null;
    if (!canSignal() || !ui.input.value.trim()) return;
    sendFrame({ type: 'typing', active: true, text: ui.input.value.slice(0, MAX_DRAFT) });
    typingOn = true;
    typingSentAt = draftSentAt = Date.now();
  };
  const typingInput = () => {
    if (!canSignal()) return;
    if (!ui.input.value.trim()) {
      // Emptied: the agent's view of the draft goes with it.
      if (sneakPeek) stopTyping();
      return;
    }
    const now = Date.now();
    if (sneakPeek) {
      const wait = DRAFT_EVERY - (now - draftSentAt);
      if (wait <= 0) sendDraft();
      else if (!timers.draft) timers.draft = setTimeout(sendDraft, wait);
    } else if (!typingOn || now - typingSentAt > TYPING_REPEAT) {
      sendFrame({ type: 'typing', active: true });
      typingOn = true;
      typingSentAt = now;
    }
    clearTimeout(timers.typingIdle);
    timers.typingIdle = setTimeout(stopTyping, TYPING_IDLE);
  };
  const stopTyping = () => {
    clearTimeout(timers.typingIdle);
    clearTimeout(timers.draft);
    timers.draft = null;
    if (typingOn && canSignal()) sendFrame({ type: 'typing', active: false });
    typingOn = false;
  };

  const markRead = () => {
    if (!shown || document.visibilityState !== 'visible') return;
    readLocal = Math.max(readLocal, topSeq);
    updateUnread();
    const newest = theirs.length ? Math.max(...theirs) : 0;
    if (live && conv && conv.id === latest && conv.status !== 'closed' && newest > readSent) {
      readSent = topSeq;
      sendFrame({ type: 'read', seq: topSeq });
    }
  };

  // --- sending --------------------------------------------------------------------
  const sendFrame = (frame) => {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(frame));
  };

  const transmit = (id) => {
    const o = own.get(id);
    if (!o || o.state === 'sent') return;
    o.state = 'pending';
    o.detail = '';
    clearTimeout(o.timer);
    if (live) {
      const frame = { type: 'message.send', client_msg_id: id, body: o.body };
      if (o.attachment) frame.attachment = o.attachment.id;
      sendFrame(frame);
      o.timer = setTimeout(() => fail(id, 'no answer from the server', false), ACK_TIMEOUT);
    }
    receipts();
  };

  const fail = (id, detail, permanent) => {
    const o = own.get(id);
    if (!o || o.state === 'sent') return;
    clearTimeout(o.timer);
    o.state = 'failed';
    o.detail = detail || '';
    if (permanent) {
      outbox = outbox.filter((m) => m.id !== id);
      save(OUTBOX_KEY, outbox.length ? outbox : null);
    }
    receipts();
  };

  // Retry keeps the client_msg_id, so a message that did arrive is not stored twice.
  const retrySend = (id) => {
    const o = own.get(id);
    if (!o) return;
    if (!outbox.some((m) => m.id === id)) {
      outbox.push({ id, body: o.body, attachment: o.attachment });
      save(OUTBOX_KEY, outbox);
    }
    transmit(id);
  };

  const addPending = (id, body, attachment) => {
    const row = renderMessage('visitor', body, attachment);
    own.set(id, { row, body, attachment, state: 'pending' });
    place(row);
  };

  const submit = () => {
    const body = ui.input.value.trim();
    if (!body) return;
    ui.input.value = '';
    autosize();
    stopTyping();
    const id = newId();
    outbox.push({ id, body });
    save(OUTBOX_KEY, outbox);
    addPending(id, body);
    transmit(id);
    scrollDown(true);
  };

  const flushOutbox = () => {
    for (const m of outbox) transmit(m.id);
  };

  // --- attachments ----------------------------------------------------------------
  // Files go up and come down with the visitor's token in a header (then a blob: URL
  // shows or saves them): no URL by itself ever opens a file. An upload is sent as a
  // message of its own, through the outbox like any other.
  const sizeText = (bytes) =>
    bytes >= 1048576
      ? (bytes / 1048576).toFixed(1).replace(/\.0$/, '') + ' MB'
      : bytes >= 1024
        ? Math.round(bytes / 1024) + ' KB'
        : bytes + ' B';
  const UPLOAD_ERRORS = {
    too_large: 'is too large: the limit is ' + sizeText(cfg.attachment_max_bytes) + '.',
    unsupported_type: 'cannot be sent: images, PDF, text, Word and Excel files only.',
    type_mismatch: 'cannot be sent: its name does not match what the file is.',
    no_conversation: 'cannot be sent yet: write a message first to start the chat.',
    rate_limited: 'was not sent: too many files. Please wait a moment.',
  };
  const thumbs = new Map(); // thumbnail url -> blob: URL, fetched once per page

  const setUploadStatus = (text, isError) => {
    ui.upload.hidden = !text;
    ui.upload.textContent = text || '';
    ui.upload.classList.toggle('sd-error', !!isError);
  };

  const fetchFile = async (url) => {
    const response = await fetch(url, {
      headers: { Authorization: 'Bearer ' + token },
      credentials: 'omit',
    });
    if (!response.ok) {
      throw new Error(response.status === 404 ? 'it is no longer available' : 'error ' + response.status);
    }
    return response.blob();
  };

  const download = async (file) => {
    try {
      const href = URL.createObjectURL(await fetchFile(file.url));
      const a = el('a');
      a.href = href;
      a.download = file.name;
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(href), 60000);
    } catch (err) {
      flashBanner('Could not download ' + file.name + ': ' + err.message + '.');
    }
  };

  const docIcon = () => {
    const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('class', 'sd-file-icon');
    svg.setAttribute('aria-hidden', 'true');
    const path = svg.appendChild(document.createElementNS(svg.namespaceURI, 'path'));
    path.setAttribute('d', 'M14 2H6a2 2 0 0 0-2 2v16a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2V8zM14 2v6h6');
    return svg;
  };

  // A message's file: the image's thumbnail, or its name and size; either one downloads it.
  const fileBox = (file) => {
    const box = el('button', 'sd-file');
    box.type = 'button';
    box.setAttribute('aria-label', 'Download ' + file.name + ', ' + sizeText(file.size));
    if (file.thumbnail_url) {
      const img = el('img', 'sd-thumb');
      img.alt = file.name;
      box.classList.add('sd-file-image');
      box.append(img);
      const shown = thumbs.get(file.thumbnail_url);
      if (shown) img.src = shown;
      else {
        fetchFile(file.thumbnail_url).then(
          (blob) => {
            const url = URL.createObjectURL(blob);
            thumbs.set(file.thumbnail_url, url);
            img.src = url;
          },
          () => {
            img.alt = file.name + ' (no preview)';
          },
        );
      }
    } else {
      box.append(docIcon(), el('span', 'sd-file-name', file.name), el('span', 'sd-file-size', sizeText(file.size)));
    }
    box.addEventListener('click', () => download(file));
    return box;
  };

  const uploadFile = (file) => {
    if (!file) return;
    const quoted = '"' + file.name + '" ';
    if (!token || !conv || conv.status === 'closed') {
      setUploadStatus(quoted + UPLOAD_ERRORS.no_conversation, true);
      return;
    }
    if (file.size > cfg.attachment_max_bytes) {
      setUploadStatus(quoted + UPLOAD_ERRORS.too_large, true);
      return;
    }
    const form = new FormData();
    form.append('file', file);
    // XMLHttpRequest, not fetch: only it reports upload progress.
    const xhr = new XMLHttpRequest();
    xhr.open('POST', cfg.attachments_url);
    xhr.setRequestHeader('Authorization', 'Bearer ' + token);
    xhr.responseType = 'json';
    ui.attach.disabled = true;
    setUploadStatus('Uploading ' + file.name + '…');
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) {
        setUploadStatus('Uploading ' + file.name + '… ' + Math.round((e.loaded * 100) / e.total) + '%');
      }
    };
    xhr.onload = () => {
      ui.attach.disabled = stopped;
      const data = xhr.response || {};
      if (xhr.status !== 201) {
        setUploadStatus(quoted + (UPLOAD_ERRORS[data.error] || 'was not sent: ' + (data.detail || 'error ' + xhr.status)), true);
        return;
      }
      setUploadStatus(null);
      const id = newId();
      outbox.push({ id, body: '', attachment: data });
      save(OUTBOX_KEY, outbox);
      addPending(id, '', data);
      transmit(id);
      scrollDown(true);
    };
    xhr.onerror = () => {
      ui.attach.disabled = stopped;
      setUploadStatus(quoted + 'was not sent: the connection failed.', true);
    };
    xhr.send(form);
  };

  // The newest reading of the queue seen per conversation (`queue_version`): two
  // workers' readings may arrive out of order, and an older one that comes late (even
  // after `conversation.assigned`) is dropped instead of showing a stale position.
  const queueVersions = new Map();
  const staleQueueFrame = (id, version) => {
    if (typeof version !== 'number') return false;
    if (version < (queueVersions.get(id) || 0)) return true;
    queueVersions.set(id, version);
    return false;
  };

  // --- the socket -----------------------------------------------------------------
  const handlers = {
    ready(f) {
      const c = f.conversation;
      if (c && helloSeq > 0 && c.id !== latest) {
        // A newer conversation began elsewhere: our last_seq was for the old one.
        resync = true;
        dropSocket();
        return;
      }
      attempt = 0;
      live = true;
      setBanner(null);
      if (typeof f.sneak_peek === 'boolean') sneakPeek = f.sneak_peek;
      ui.privacy.hidden = !sneakPeek;
      if (typeof f.agents_online === 'boolean') agentsOnline = f.agents_online;
      if (f.visitor && f.visitor.email) visitorEmail = f.visitor.email;
      setConversation(c);
      if (c && c.id === latest) agentRead = Math.max(agentRead, c.agent_read_seq || 0);
      if (c && c.status === 'active') addJoined(c.id, conv.agent, 1);
      for (const m of f.messages || []) addMessage(m);
      if (c && c.rating) rated.add(c.id);
      if (c && c.status === 'closed') addEndedNote(c.id, null);
      showAvailability();
      flushOutbox();
      receipts();
      markRead();
      scrollDown(true);
      startPing();
      reportPage(); // if the loader told us the page after our hello went out
    },
    message(f) {
      if (!addMessage(f)) return;
      receipts();
      scrollDown(f.sender === 'visitor');
      markRead();
      updateUnread();
    },
    'message.ack'(f) {
      const o = own.get(f.client_msg_id);
      if (!o) return;
      addMessage({
        conversation: f.conversation,
        seq: f.seq,
        sender: 'visitor',
        body: o.body,
        attachment: o.attachment,
        client_msg_id: f.client_msg_id,
      });
      receipts();
    },
    'conversation.queued'(f) {
      if (staleQueueFrame(f.conversation, f.queue_version)) return;
      setConversation({
        id: f.conversation,
        status: 'queued',
        queue_position: f.position,
        estimated_wait_seconds: f.estimated_wait_seconds,
      });
    },
    'conversation.assigned'(f) {
      staleQueueFrame(f.conversation.id, f.queue_version);
      setConversation({ ...f.conversation, agent: f.agent || f.conversation.agent });
      if (conv && conv.id === f.conversation.id) addJoined(conv.id, conv.agent, topSeq);
      scrollDown(false);
    },
    'conversation.closed'(f) {
      if (conv && conv.id === f.conversation) conv.status = 'closed';
      header();
      hideTyping();
      addEndedNote(f.conversation, f.by);
      scrollDown(false);
    },
    'agents.online'(f) {
      agentsOnline = f.online === true;
      header();
      showAvailability();
    },
    'transcript.sent'(f) {
      visitorEmail = visitorEmail || f.email;
      if (!transcriptWait) return;
      clearTimeout(timers.transcript);
      transcriptWait.box.replaceWith(el('p', 'sd-thanks', 'Transcript sent to ' + f.email + '.'));
      transcriptWait = null;
    },
    'conversation.rated'(f) {
      rated.add(f.conversation);
      for (const box of ui.log.querySelectorAll('.sd-rate')) {
        if (+box.dataset.conv === f.conversation) box.replaceWith(el('p', 'sd-thanks', 'Thanks for your feedback!'));
      }
    },
    typing(f) {
      if (f.from !== 'agent' || !conv || f.conversation !== conv.id) return;
      if (f.active) showTyping();
      else hideTyping();
    },
    read(f) {
      if (f.by !== 'agent' || f.conversation !== latest) return;
      agentRead = Math.max(agentRead, f.seq);
      receipts();
    },
    error(f) {
      if (transcriptWait && !f.client_msg_id && TRANSCRIPT_ERRORS[f.code]) {
        transcriptFailed(TRANSCRIPT_ERRORS[f.code]);
        return;
      }
      if (f.client_msg_id && own.has(f.client_msg_id)) {
        // Busy or briefly unavailable: worth retrying. Anything else would fail again.
        const transient = f.code === 'rate_limited' || f.code === 'unavailable';
        fail(f.client_msg_id, f.detail, !transient);
      } else if (f.code === 'not_found' || f.code === 'conversation_closed') {
        // No open conversation any more (typing/read/close after it ended).
        if (conv && conv.status !== 'closed') {
          conv.status = 'closed';
          header();
        }
      } else if (f.code === 'rate_limited') {
        flashBanner('You are sending messages too fast. Please wait a moment.');
      } else {
        flashBanner(f.detail || 'Something went wrong.');
      }
    },
    pong() {
      clearTimeout(timers.pong);
    },
  };

  // Nobody to answer and no chat going on: the offline form; someone back: hide it.
  const showAvailability = () => {
    const idle = !conv || conv.status === 'closed';
    if (agentsOnline === false && idle) offlineForm();
    else if (offlineBox) offlineBox.hidden = true;
  };

  const flashBanner = (text) => {
    setBanner(text);
    clearTimeout(timers.banner);
    timers.banner = setTimeout(() => live && setBanner(null), 6000);
  };

  const startPing = () => {
    clearInterval(timers.ping);
    timers.ping = setInterval(() => {
      sendFrame({ type: 'ping' });
      clearTimeout(timers.pong);
      timers.pong = setTimeout(() => dropSocket(), PONG_TIMEOUT);
    }, PING_EVERY);
  };

  const openSession = async () => {
    const response = await fetch(cfg.sessions_url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ site_key: KEY, visitor_token: token || undefined }),
      credentials: 'omit',
    });
    if (response.status === 404 || response.status === 403) {
      const error = new Error('refused');
      error.refused = true;
      throw error;
    }
    if (!response.ok) throw new Error('session ' + response.status);
    const data = await response.json();
    if (data.visitor_token !== token) {
      token = data.visitor_token;
      save(TOKEN_KEY, token);
    }
  };

  const connect = async () => {
    clearTimeout(timers.retry);
    if (stopped || connecting || ws) return;
    connecting = true;
    try {
      if (!sessionChecked || !token) {
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
      helloSeq = resync ? 0 : lastSeq;
      resync = false;
      pageSent = page ? JSON.stringify(page) : '';
      sock.send(
        JSON.stringify({
          type: 'hello',
          site_key: KEY,
          visitor_token: token,
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
      const handler = frame && Object.hasOwn(handlers, frame.type) ? handlers[frame.type] : null;
      if (handler) handler(frame);
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
    } catch (e) {
      /* already closing */
    }
    down(1006);
  };

  const down = (code) => {
    live = false;
    clearInterval(timers.ping);
    clearTimeout(timers.pong);
    clearTimeout(timers.gap);
    hideTyping();
    typingOn = false;
    // Messages in flight go out again on reconnect, same client_msg_id.
    for (const o of own.values()) {
      if (o.state === 'pending') clearTimeout(o.timer);
    }
    receipts();
    if (code === 4403) {
      stop('Chat is not available on this site.');
      return;
    }
    if (code === 4401) {
      // The token is unknown here (data reset): become a new visitor, keep the outbox.
      token = null;
      save(TOKEN_KEY, null);
      sessionChecked = false;
      resetView();
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
    stopped = true;
    setBanner(text);
    ui.input.disabled = ui.send.disabled = ui.attach.disabled = true;
  };

  window.addEventListener('offline', () => {
    setBanner(OFFLINE);
    dropSocket();
  });
  window.addEventListener('online', () => {
    attempt = 0;
    connect();
  });
  document.addEventListener('visibilitychange', markRead);

  // --- the loader and the visitor -------------------------------------------------
  // Where the visitor is, for the agent: the loader adds the host page's [url, title,
  // referrer] to every message (and sends it every 2 s for single-page apps). Only a
  // change is reported; the server checks it (a visitor can claim anything).
  const TIMEZONE = (() => {
    try {
      return Intl.DateTimeFormat().resolvedOptions().timeZone || undefined;
    } catch (e) {
      return undefined;
    }
  })();
  let page = null; // {url, title, referrer} of the page embedding us
  let pageSent = ''; // the page as the current socket last reported it
  const notePage = (p) => {
    if (!Array.isArray(p) || p.length !== 3 || !p.every((v) => typeof v === 'string')) return;
    page = { url: p[0].slice(0, 2000), title: p[1].slice(0, 300), referrer: p[2].slice(0, 2000) };
    reportPage();
  };
  const reportPage = () => {
    const key = page ? JSON.stringify(page) : '';
    if (!live || !key || key === pageSent) return;
    pageSent = key;
    sendFrame({ type: 'page.view', page, timezone: TIMEZONE });
  };

  window.addEventListener('message', (event) => {
    if (!parentOrigin || event.origin !== parentOrigin || event.source !== window.parent) return;
    notePage(event.data && event.data.page);
    const kind = event.data && event.data.supportdesk;
    if (kind === 'open') {
      shown = true;
      if (event.data.focus) ui.input.focus();
      scrollDown(true);
      markRead();
    } else if (kind === 'close') {
      shown = false;
    }
  });

  const autosize = () => {
    ui.input.style.height = 'auto';
    ui.input.style.height = Math.min(ui.input.scrollHeight, 120) + 'px';
  };

  ui.form.addEventListener('submit', (event) => {
    event.preventDefault();
    submit();
  });
  ui.input.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    }
  });
  ui.input.addEventListener('input', () => {
    autosize();
    typingInput();
  });
  ui.input.addEventListener('blur', stopTyping);
  ui.close.addEventListener('click', () => toParent({ supportdesk: 'close' }));
  ui.end.addEventListener('click', () => sendFrame({ type: 'conversation.close' }));
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') toParent({ supportdesk: 'close' });
  });

  header();
  for (const m of outbox) addPending(m.id, m.body, m.attachment);
  ui.file.accept = cfg.attachment_accept || '';
  ui.attach.addEventListener('click', () => ui.file.click());
  ui.file.addEventListener('change', () => {
    const file = ui.file.files[0];
    ui.file.value = '';
    uploadFile(file);
  });
  receipts();
  ui.input.disabled = ui.send.disabled = ui.attach.disabled = false;
  toParent({ supportdesk: 'ready' });
  connect();
})();
