/* supportdesk widget frame, entry module: what each server frame does, what the visitor
 * sends (messages through the outbox, receipts, typing and drafts, files), the forms in
 * the log (rating and transcript after a chat, the offline message) and the page's
 * events. chat.js holds the state, the socket and the log; frame.html preloads it.
 *
 * Messages typed offline wait in a localStorage outbox and go out on reconnect with the
 * same client_msg_id; the server's text reaches the DOM only through textContent. */
import {
  ACK_TIMEOUT, addMessage, agentName, cfg, clearLog, el, flashBanner, forget, header, hideTyping, identify, joined, KEY,
  markRead, newId, notePage, outbox, parentOrigin, place, post, remember, renderMessage, scrollDown, sendFrame,
  setBanner, setConversation, setToken, showJoins, showTyping, staleQueueFrame, startSocket, state, t,
  timers, toParent, ui, updateUnread,
} from './chat.js';

const rootStyle = document.documentElement.style;
rootStyle.setProperty('--sd-accent', cfg.color);
rootStyle.setProperty('--sd-ink', cfg.ink);

// Standalone (opened directly) the chat is always on screen; embedded, the loader says.
state.shown = !parentOrigin;
ui.close.hidden = !parentOrigin;

// --- what the visitor sends: own messages through the outbox, receipts ----------------
// "Sending…", "Not sent · Retry" per message; "Seen" under the last own message the
// agent has read, "Sent" under the last one if the agent has not read it yet.
const receipts = () => {
  let lastSent = null;
  let lastSeen = null;
  for (const o of state.own.values()) {
    if (o.state !== 'sent' || o.conv !== state.latest) continue;
    if (!lastSent || o.seq > lastSent.seq) lastSent = o;
    if (o.seq <= state.agentRead && (!lastSeen || o.seq > lastSeen.seq)) lastSeen = o;
  }
  for (const [id, o] of state.own) {
    let text = '';
    if (o.state === 'pending') text = t(state.live ? 'sending' : 'waiting');
    else if (o.state === 'failed') text = 'failed';
    else if (o === lastSeen) text = t('seen');
    else if (o === lastSent) text = t('sent');
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
    const retry = el('button', 'sd-retry', t('retry'));
    retry.type = 'button';
    retry.onclick = () => retrySend(id);
    meta.replaceChildren(o.detail ? t('not_sent_because', { reason: o.detail }) + ' ' : t('not_sent') + ' ', retry);
  }
};

const transmit = (id) => {
  const o = state.own.get(id);
  if (!o || o.state === 'sent') return;
  o.state = 'pending';
  o.detail = '';
  clearTimeout(o.timer);
  if (state.live) {
    const frame = { type: 'message.send', client_msg_id: id, body: o.body };
    if (o.attachment) frame.attachment = o.attachment.id;
    sendFrame(frame);
    o.timer = setTimeout(() => fail(id, t('no_answer'), false), ACK_TIMEOUT);
  }
  receipts();
};

const fail = (id, detail, permanent) => {
  const o = state.own.get(id);
  if (!o || o.state === 'sent') return;
  clearTimeout(o.timer);
  o.state = 'failed';
  o.detail = detail || '';
  if (permanent) forget(id);
  receipts();
};

// Retry keeps the client_msg_id, so a message that did arrive is not stored twice.
const retrySend = (id) => {
  const o = state.own.get(id);
  if (!o) return;
  if (!outbox.some((m) => m.id === id)) remember({ id, body: o.body, attachment: o.attachment });
  transmit(id);
};

const addPending = (id, body, attachment) => {
  const row = renderMessage('visitor', body, attachment);
  state.own.set(id, { row, body, attachment, state: 'pending' });
  place(row);
};

const sendOwn = (body, attachment) => {
  const id = newId();
  remember({ id, body, attachment });
  addPending(id, body, attachment);
  transmit(id);
  scrollDown(true);
};

// --- typing and sneak-peek drafts ----------------------------------------------------
const TYPING_REPEAT = 4000; // re-send "typing" this often while the visitor types
const TYPING_IDLE = 3000; // no keystroke for this long: "stopped typing"
const DRAFT_EVERY = 500; // sneak peek: the draft goes out at most this often (last one kept)
const MAX_DRAFT = 1000; // the server refuses longer drafts

const autosize = () => {
  ui.input.style.height = 'auto';
  ui.input.style.height = Math.min(ui.input.scrollHeight, 120) + 'px';
};

let typingOn = false;
let typingSentAt = 0;
const canSignal = () => state.live && state.conv && state.conv.status === 'active';
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
    if (state.sneakPeek) stopTyping();
    return;
  }
  const now = Date.now();
  if (state.sneakPeek) {
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

const submit = () => {
  const body = ui.input.value.trim();
  if (!body) return;
  ui.input.value = '';
  autosize();
  stopTyping();
  sendOwn(body);
};

// --- uploading a file: its code (./upload.js) loads with the first file picked ------
let uploadCode = null;
const uploadFile = (file) => {
  if (!file) return;
  if (!uploadCode) uploadCode = import('./upload.js').catch(() => (uploadCode = null));
  uploadCode.then((m) => (m ? m.uploadFile(file, sendOwn) : flashBanner(t('went_wrong'))));
};

// --- after a chat: its code (./ended.js) loads once a chat has ended ----------------
const noted = new Set(); // conversations whose "ended" panel was shown
let ended = null; // the module, once loaded
let endedCode = null;
const addEndedNote = (conversation, by) => {
  if (noted.has(conversation)) return;
  noted.add(conversation);
  const name = agentName();
  if (!endedCode) endedCode = import('./ended.js').then((m) => (ended = m)).catch(() => (endedCode = null));
  endedCode.then((m) => {
    // Forgotten meanwhile (a new visitor): nothing to show. Not loaded: next time.
    if (!m) noted.delete(conversation);
    else if (noted.has(conversation)) m.endedNote(conversation, by, name, startNewChat);
  });
};

// Clear the ended chat off the screen; the next message opens a new conversation. A
// `ready` naming it again (after a reconnect) is then no reason to show it again.
const startNewChat = () => {
  clearLog();
  for (const [id, o] of state.own) if (o.state === 'sent') state.own.delete(id);
  state.cleared = state.latest;
  setConversation(null);
  showAvailability();
  focusWriting();
};

// --- nobody online: the offline message ----------------------------------------------
// With nobody to answer and no chat going on, the one place to write is a form (name,
// email, question) answered by email; the composer is back once an agent is, or once the
// question waits in the queue (what is added then joins it).
let offlineBox = null; // the form offered, until it is sent

const offlineForm = () => {
  const box = el('form', 'sd-row sd-offline');
  box.noValidate = true;
  // The site's own text for this language when it has one (chat/languages.py).
  box.append(el('p', '', t('offline_intro')));
  const field = (label, tag, type, max) => {
    const f = el(tag, 'sd-field');
    if (type) f.type = type;
    f.maxLength = max;
    f.placeholder = label;
    f.setAttribute('aria-label', label);
    box.append(f);
    return f;
  };
  const name = field(t('your_name'), 'input', 'text', 200);
  const email = field(t('your_email'), 'input', 'email', 254);
  const question = field(t('your_question'), 'textarea', null, 10000);
  const send = el('button', 'sd-new', t('leave_message'));
  const status = el('p', 'sd-status-line');
  status.setAttribute('role', 'status');
  box.append(send, status);
  box.onsubmit = async (e) => {
    e.preventDefault();
    const body = {
      site_key: KEY,
      visitor_token: state.token || undefined,
      name: name.value.trim(),
      email: email.value.trim(),
      question: question.value.trim(),
    };
    if (!body.name || !body.email.includes('@') || !body.question) {
      status.textContent = t('give_all');
      return;
    }
    send.disabled = true;
    status.textContent = t('sending');
    try {
      const [response, data] = await post(cfg.sessions_url.replace('visitor-sessions', 'offline-messages'), body);
      if (!response.ok) throw new Error(data.detail);
      setToken(data.visitor_token);
      state.visitorEmail = body.email;
      offlineBox = null;
      // The focus, on the button that goes, goes to the log, where the thanks is.
      if (box.contains(document.activeElement)) ui.log.focus();
      box.remove();
      // Under the question it thanks for, where it stays as the chat goes on. The
      // composer comes back with the conversation's `conversation.queued`.
      const thanks = el('p', 'sd-row sd-sys', t('offline_thanks', { email: body.email }));
      thanks.sdKey = [data.conversation, data.seq + 0.25];
      place(thanks);
    } catch (err) {
      status.textContent = t('not_sent_because', { reason: err.message || t('try_again') });
      send.disabled = false;
    }
  };
  ui.log.append(box);
  scrollDown(true);
  return box;
};

// Nobody to answer and no chat going on: the offline form instead of the composer. The
// focus, if it was in the one, moves to the other.
const showAvailability = () => {
  const offline = state.agentsOnline === false && (!state.conv || state.conv.status === 'closed');
  const focused = document.activeElement;
  const moved = offline !== ui.form.hidden && (ui.form.contains(focused) || (offlineBox && offlineBox.contains(focused)));
  if (offline && !offlineBox) offlineBox = offlineForm();
  if (offlineBox) offlineBox.hidden = !offline;
  ui.form.hidden = offline;
  ui.privacy.hidden = offline || !state.sneakPeek;
  if (moved) focusWriting();
};

const focusWriting = () => (ui.form.hidden ? offlineBox[0] : ui.input).focus();

// --- what each server frame does -----------------------------------------------------
const handlers = {
  // Only a `ready` for our conversation gets here (chat.js resyncs otherwise).
  ready(f) {
    const c = f.conversation && f.conversation.id !== state.cleared ? f.conversation : null;
    setBanner(null);
    if (typeof f.sneak_peek === 'boolean') state.sneakPeek = f.sneak_peek;
    if (typeof f.agents_online === 'boolean') state.agentsOnline = f.agents_online;
    if (f.visitor && f.visitor.email) state.visitorEmail = f.visitor.email;
    setConversation(c);
    if (c) {
      if (c.id === state.latest) state.agentRead = Math.max(state.agentRead, c.agent_read_seq || 0);
      if (c.rating) state.rated.add(c.id);
      showJoins(c);
    }
    for (const m of f.messages || []) addMessage(m);
    if (c && c.status === 'closed') addEndedNote(c.id, null);
    showAvailability();
    for (const m of outbox) transmit(m.id);
    receipts();
    markRead();
    scrollDown(true);
  },
  message(f) {
    // The bot answering is how a visitor learns its new chat is the bot's.
    if (f.sender === 'bot' && !(state.conv && state.conv.id === f.conversation)) setConversation({ id: f.conversation, status: 'bot' });
    if (!addMessage(f)) return;
    // The page's on("message") handlers (the loader calls them).
    if (f.sender !== 'visitor') toParent({ supportdesk: 'message', message: f });
    receipts();
    scrollDown(f.sender === 'visitor');
    markRead();
    updateUnread();
  },
  'message.ack'(f) {
    const o = state.own.get(f.client_msg_id);
    if (!o) return;
    addMessage({ ...f, sender: 'visitor', body: o.body, attachment: o.attachment });
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
    showAvailability();
  },
  'conversation.assigned'(f) {
    const c = f.conversation;
    staleQueueFrame(c.id, f.queue_version);
    setConversation({ ...c, agent: f.agent || c.agent });
    if (state.conv && state.conv.id === c.id) joined(c.id, f.agent || c.agent);
    showAvailability();
    scrollDown(false);
  },
  'conversation.closed'(f) {
    if (state.conv && state.conv.id === f.conversation) state.conv.status = 'closed';
    header();
    hideTyping();
    addEndedNote(f.conversation, f.by);
    showAvailability();
    scrollDown(false);
  },
  'agents.online'(f) {
    state.agentsOnline = f.online === true;
    header();
    showAvailability();
  },
  'transcript.sent'(f) {
    state.visitorEmail = state.visitorEmail || f.email;
    if (ended) ended.transcriptSent(f);
  },
  'conversation.rated'(f) {
    state.rated.add(f.conversation);
    if (ended) ended.rated(f);
  },
  typing(f) {
    if (f.from !== 'agent' || !state.conv || f.conversation !== state.conv.id) return;
    if (f.active) showTyping();
    else hideTyping();
  },
  read(f) {
    if (f.by !== 'agent' || f.conversation !== state.latest) return;
    state.agentRead = Math.max(state.agentRead, f.seq);
    receipts();
  },
  error(f) {
    if (f.detail === 'No such call.') {
      if (callCode) callCode.then((m) => m && m.onRefused(f));
    } else if (ended && ended.transcriptError(f)) {
      // said under the transcript form
    } else if (f.client_msg_id && state.own.has(f.client_msg_id)) {
      // Busy or briefly unavailable: worth retrying. Anything else would fail again.
      fail(f.client_msg_id, f.detail, f.code !== 'rate_limited' && f.code !== 'unavailable');
    } else if (f.code === 'not_found' || f.code === 'conversation_closed') {
      // No open conversation any more (typing/read/close after it ended).
      if (state.conv && state.conv.status !== 'closed') {
        state.conv.status = 'closed';
        header();
      }
    } else {
      flashBanner(f.code === 'rate_limited' ? t('too_fast') : f.detail || t('went_wrong'));
    }
  },
};

// --- calls: their code (./call.js) loads only when a call is offered -----------------
// A frame about a call this tab never saw ringing loads nothing.
let callCode = null;
const toCall = (f) => {
  if (f.type === 'call.invited' && !callCode) callCode = import('./call.js').catch(() => (callCode = null));
  if (callCode) callCode.then((m) => m && m.onFrame(f));
};
for (const type of ['call.invited', 'call.accepted', 'call.signal', 'call.ended']) handlers[type] = toCall;

// --- the loader and the visitor ------------------------------------------------------
document.addEventListener('visibilitychange', markRead);
window.addEventListener('message', (event) => {
  if (!parentOrigin || event.origin !== parentOrigin || event.source !== window.parent) return;
  notePage(event.data && event.data.page);
  identify(event.data && event.data.who);
  start();
  const kind = event.data && event.data.supportdesk;
  if (kind === 'open') {
    state.shown = true;
    if (event.data.focus) focusWriting();
    scrollDown(true);
    markRead();
  } else if (kind === 'close') {
    state.shown = false;
  }
});

ui.form.onsubmit = (event) => {
  event.preventDefault();
  submit();
};
ui.input.onkeydown = (event) => {
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    submit();
  }
};
ui.input.oninput = () => {
  autosize();
  typingInput();
};
ui.input.onblur = stopTyping;
ui.close.onclick = () => toParent({ supportdesk: 'close' });
ui.end.onclick = () => sendFrame({ type: 'conversation.close' });
ui.human.onclick = () => sendFrame({ type: 'handoff' });
document.addEventListener('keydown', (event) => {
  if (event.key === 'Escape') toParent({ supportdesk: 'close' });
});

header();
for (const m of outbox) addPending(m.id, m.body, m.attachment);
ui.file.accept = cfg.attachment_accept || '';
ui.attach.onclick = () => ui.file.click();
ui.file.onchange = () => {
  const file = ui.file.files[0];
  ui.file.value = '';
  uploadFile(file);
};
receipts();
ui.input.disabled = ui.send.disabled = ui.attach.disabled = false;
// The loader answers `ready` at once with the page and who the visitor is (identify):
// the first session waits for that answer, a second at most, so it goes with them.
let started = false;
const start = () => {
  if (started) return;
  started = true;
  startSocket({
    handlers,
    lost() {
      if (callCode) callCode.then((m) => m && m.onSocketLost());
      hideTyping();
      typingOn = false;
      for (const o of state.own.values()) if (o.state === 'pending') clearTimeout(o.timer);
      receipts();
    },
    forgotten() {
      startNewChat();
      clearLog(true);
      noted.clear();
    },
  });
};
toParent({ supportdesk: 'ready' });
setTimeout(start, parentOrigin ? 1000 : 0);
