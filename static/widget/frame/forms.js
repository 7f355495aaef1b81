/* Forms in the log: rating and transcript by email after a chat, the offline message. */
import { cfg, el, KEY, save, scrollDown, state, timers, TOKEN_KEY, ui } from './shared.js';
import { ACK_TIMEOUT, sendFrame } from './socket.js';

// CSAT once the chat is over: 1 to 5 stars and an optional comment, once.
export const rateBox = (conversation) => {
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
    if (!score || !state.live) return;
    sendFrame({ type: 'rating', score, comment: comment.value.trim() });
    send.disabled = true;
  });
  return box;
};

export const conversationRated = (f) => {
  state.rated.add(f.conversation);
  for (const box of ui.log.querySelectorAll('.sd-rate')) {
    if (+box.dataset.conv === f.conversation) box.replaceWith(el('p', 'sd-thanks', 'Thanks for your feedback!'));
  }
};

// A copy of the chat by email, on request: `transcript.email`, answered by
// `transcript.sent` or an error (the server limits how often).
const TRANSCRIPT_ERRORS = {
  bad_email: 'That does not look like an email address.',
  rate_limited: 'Too many requests. Please try again later.',
  not_found: 'There is no chat to send yet.',
  unavailable: 'The transcript could not be sent. Please try again later.',
};

let transcriptWait = null; // {send, status, box} of the request waiting for an answer

export const transcriptForm = (conversation) => {
  const box = el('form', 'sd-transcript');
  box.noValidate = true;
  const input = el('input', 'sd-field sd-transcript-email');
  input.type = 'email';
  input.id = 'sd-transcript-' + conversation;
  input.maxLength = 254;
  input.autocomplete = 'email';
  input.placeholder = 'you@example.com';
  input.value = state.visitorEmail || '';
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
    if (!state.live) {
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

export const transcriptSent = (f) => {
  state.visitorEmail = state.visitorEmail || f.email;
  if (!transcriptWait) return;
  clearTimeout(timers.transcript);
  transcriptWait.box.replaceWith(el('p', 'sd-thanks', 'Transcript sent to ' + f.email + '.'));
  transcriptWait = null;
};

export const transcriptRefused = (f) => {
  if (!transcriptWait || f.client_msg_id || !TRANSCRIPT_ERRORS[f.code]) return false;
  transcriptFailed(TRANSCRIPT_ERRORS[f.code]);
  return true;
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
    const body = { site_key: KEY, visitor_token: state.token || undefined, name: name.value.trim(), email: email.value.trim(), question: question.value.trim() };
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
      if (data.visitor_token !== state.token) {
        state.token = data.visitor_token;
        save(TOKEN_KEY, state.token);
      }
      offlineBox = null;
      state.visitorEmail = body.email;
      box.replaceWith(el('p', 'sd-row sd-sys', 'Thanks! We will reply to ' + body.email + '.'));
    } catch (err) {
      status.textContent = 'Not sent: ' + (err.message || 'please try again.');
      send.disabled = false;
    }
  });
  ui.log.append(box);
  scrollDown(true);
};

// Nobody to answer and no chat going on: the offline form; someone back: hide it.
export const showAvailability = () => {
  const idle = !state.conv || state.conv.status === 'closed';
  if (state.agentsOnline === false && idle) offlineForm();
  else if (offlineBox) offlineBox.hidden = true;
};
