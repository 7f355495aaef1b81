/* supportdesk widget frame: what follows a chat's end. The rating first, a transcript by
 * email, then a new chat.
 *
 * Loaded by main.js only once a chat has ended (a dynamic import, outside the frame's
 * first-load budget: tests/test_widget_size.py), so a visitor who never finishes a chat
 * never downloads it; it made room for the strings of the visitor's language. */
import { ACK_TIMEOUT, el, moreText, num, place, sendFrame, state, t, timers } from './chat.js';

await moreText();

const button = (className, text) => {
  const b = el('button', className, text);
  b.type = 'button';
  return b;
};

// CSAT once the chat is over: 1 to 5 stars and an optional comment, once.
const rateBox = (conversation) => {
  const box = el('form', 'sd-rate');
  box.dataset.conv = conversation;
  const stars = el('div', 'sd-stars');
  stars.setAttribute('role', 'group');
  stars.setAttribute('aria-label', t('rate'));
  const comment = el('textarea', 'sd-field');
  comment.maxLength = 2000;
  comment.rows = 2;
  comment.placeholder = t('comment');
  comment.setAttribute('aria-label', t('comment_label'));
  const send = el('button', 'sd-new', t('send_rating'));
  send.disabled = true;
  let score = 0;
  for (let i = 1; i <= 5; i++) {
    const star = button('sd-star', '\u2605');
    star.setAttribute('aria-label', t('stars', { n: num(i) }));
    star.setAttribute('aria-pressed', 'false');
    star.onclick = () => {
      score = i;
      [...stars.children].forEach((s, n) => {
        s.classList.toggle('sd-on', n < i);
        s.setAttribute('aria-pressed', n === i - 1);
      });
      send.disabled = false;
    };
    stars.append(star);
  }
  box.append(el('p', '', t('rate_question')), stars, comment, send);
  box.onsubmit = (e) => {
    e.preventDefault();
    if (!score || !state.live) return;
    sendFrame({ type: 'rating', score, comment: comment.value.trim() });
    send.disabled = true;
  };
  return box;
};

// A copy of the chat by email, on request: `transcript.email`, answered by
// `transcript.sent` or an error (the server limits how often).
const TRANSCRIPT_ERRORS = {
  bad_email: 'bad_email',
  rate_limited: 'rate_limited',
  not_found: 'nothing_to_send',
  unavailable: 'transcript_failed',
};

let transcriptWait = null; // {send, status, box} of the request waiting for an answer

const transcriptForm = (conversation) => {
  const box = el('form', 'sd-transcript');
  box.noValidate = true;
  const input = el('input', 'sd-field');
  input.type = 'email';
  input.id = 'sd-transcript-' + conversation;
  input.maxLength = 254;
  input.autocomplete = 'email';
  input.placeholder = 'you@example.com';
  input.value = state.visitorEmail || '';
  const label = el('label', '', t('email_transcript'));
  label.htmlFor = input.id;
  const send = el('button', 'sd-new', t('send_transcript'));
  const status = el('p', 'sd-status-line');
  status.setAttribute('role', 'status');
  box.append(label, input, send, status);
  box.onsubmit = (e) => {
    e.preventDefault();
    const email = input.value.trim();
    if (!email.includes('@')) {
      status.textContent = t('enter_email');
      return;
    }
    if (!state.live) {
      status.textContent = t('not_connected');
      return;
    }
    send.disabled = true;
    status.textContent = t('sending');
    transcriptWait = { send, status, box };
    clearTimeout(timers.transcript);
    timers.transcript = setTimeout(() => transcriptFailed(t('no_answer_retry')), ACK_TIMEOUT * 2);
    sendFrame({ type: 'transcript.email', email });
  };
  return box;
};

const transcriptFailed = (text) => {
  if (!transcriptWait) return;
  clearTimeout(timers.transcript);
  transcriptWait.status.textContent = text;
  transcriptWait.send.disabled = false;
  transcriptWait = null;
};

// The panel under an ended chat; `name` is who ended it, read when it ended.
export const endedNote = (conversation, by, name, startNewChat) => {
  const note = el('div', 'sd-row sd-note');
  const who = by === 'visitor' ? 'you_ended' : by === 'agent' ? 'agent_ended' : 'chat_ended';
  note.append(el('p', '', t(who, { name })));
  if (!state.rated.has(conversation)) note.append(rateBox(conversation));
  const start = button('sd-new', t('new_chat'));
  start.onclick = startNewChat;
  note.append(transcriptForm(conversation), start);
  note.sdKey = [conversation, Infinity];
  place(note);
};

export const transcriptSent = (f) => {
  if (!transcriptWait) return;
  clearTimeout(timers.transcript);
  transcriptWait.box.replaceWith(el('p', 'sd-thanks', t('transcript_sent', { email: f.email })));
  transcriptWait = null;
};

export const rated = (f) => {
  for (const box of document.querySelectorAll('.sd-rate')) {
    if (+box.dataset.conv === f.conversation) box.replaceWith(el('p', 'sd-thanks', t('feedback_thanks')));
  }
};

// An error answering our `transcript.email`: said under the form; true if it was one.
export const transcriptError = (f) => {
  if (!transcriptWait || f.client_msg_id || !TRANSCRIPT_ERRORS[f.code]) return false;
  transcriptFailed(t(TRANSCRIPT_ERRORS[f.code]));
  return true;
};
