/* What the visitor sends: own messages through the outbox, receipts, typing and drafts,
 * files. */
import { cfg, el, forget, newId, outbox, remember, scrollDown, state, timers, ui } from './shared.js';
import { ACK_TIMEOUT, sendFrame } from './socket.js';
import { place, renderMessage, sizeText } from './conversation.js';

// "Sending…", "Not sent · Retry" per message; "Seen" under the last own message the
// agent has read, "Sent" under the last one if the agent has not read it yet.
export const receipts = () => {
  let lastSent = null;
  let lastSeen = null;
  for (const o of state.own.values()) {
    if (o.state !== 'sent' || o.conv !== state.latest) continue;
    if (!lastSent || o.seq > lastSent.seq) lastSent = o;
    if (o.seq <= state.agentRead && (!lastSeen || o.seq > lastSeen.seq)) lastSeen = o;
  }
  for (const [id, o] of state.own) {
    let text = '';
    if (o.state === 'pending') text = state.live ? 'Sending…' : 'Waiting for connection…';
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
    o.timer = setTimeout(() => fail(id, 'no answer from the server', false), ACK_TIMEOUT);
  }
  receipts();
};

export const fail = (id, detail, permanent) => {
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

export const addPending = (id, body, attachment) => {
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

export const flushOutbox = () => {
  for (const m of outbox) transmit(m.id);
};

// Messages in flight go out again on reconnect, same client_msg_id.
export const holdPending = () => {
  for (const o of state.own.values()) {
    if (o.state === 'pending') clearTimeout(o.timer);
  }
};

// --- typing and sneak-peek drafts ----------------------------------------------------
const TYPING_REPEAT = 4000; // re-send "typing" this often while the visitor types
const TYPING_IDLE = 3000; // no keystroke for this long: "stopped typing"
const DRAFT_EVERY = 500; // sneak peek: the draft goes out at most this often (last one kept)
const MAX_DRAFT = 1000; // the server refuses longer drafts

export const autosize = () => {
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
export const typingInput = () => {
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
export const stopTyping = () => {
  clearTimeout(timers.typingIdle);
  clearTimeout(timers.draft);
  timers.draft = null;
  if (typingOn && canSignal()) sendFrame({ type: 'typing', active: false });
  typingOn = false;
};
export const typingLost = () => {
  typingOn = false;
};

export const submit = () => {
  const body = ui.input.value.trim();
  if (!body) return;
  ui.input.value = '';
  autosize();
  stopTyping();
  sendOwn(body);
};

// --- uploading a file ----------------------------------------------------------------
const UPLOAD_ERRORS = {
  too_large: 'is too large: the limit is ' + sizeText(cfg.attachment_max_bytes) + '.',
  unsupported_type: 'cannot be sent: images, PDF, text, Word and Excel files only.',
  type_mismatch: 'cannot be sent: its name does not match what the file is.',
  no_conversation: 'cannot be sent yet: write a message first to start the chat.',
  rate_limited: 'was not sent: too many files. Please wait a moment.',
};

const setUploadStatus = (text, isError) => {
  ui.upload.hidden = !text;
  ui.upload.textContent = text || '';
  ui.upload.classList.toggle('sd-error', !!isError);
};

// An uploaded file is sent as a message of its own, through the outbox like any other.
export const uploadFile = (file) => {
  if (!file) return;
  const quoted = '"' + file.name + '" ';
  const { conv } = state;
  if (!state.token || !conv || conv.status === 'closed') {
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
  xhr.setRequestHeader('Authorization', 'Bearer ' + state.token);
  xhr.responseType = 'json';
  ui.attach.disabled = true;
  setUploadStatus('Uploading ' + file.name + '…');
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) {
      setUploadStatus('Uploading ' + file.name + '… ' + Math.round((e.loaded * 100) / e.total) + '%');
    }
  };
  xhr.onload = () => {
    ui.attach.disabled = state.stopped;
    const data = xhr.response || {};
    if (xhr.status !== 201) {
      setUploadStatus(quoted + (UPLOAD_ERRORS[data.error] || 'was not sent: ' + (data.detail || 'error ' + xhr.status)), true);
      return;
    }
    setUploadStatus(null);
    sendOwn('', data);
  };
  xhr.onerror = () => {
    ui.attach.disabled = state.stopped;
    setUploadStatus(quoted + 'was not sent: the connection failed.', true);
  };
  xhr.send(form);
};
