/* The conversation on screen: status texts, typing indicator, the log in seq order and
 * its files, reads. */
import { cfg, el, flashBanner, forget, scrollDown, state, timers, toParent, ui } from './shared.js';
import { dropSocket, sendFrame } from './socket.js';
import { rateBox, transcriptForm } from './forms.js';

const TYPING_SHOWN = 8000; // hide the agent's indicator if its "stopped" got lost
const GAP_WAIT = 3000; // a seq gap not filled by then: resume from last_seq

let seqs = new Set(); // seqs of `latest` seen
let theirs = []; // seqs of agent/system messages in `latest`
let readSent = 0; // we told the server we read up to this seq
let readLocal = 0; // what the visitor has had on screen (for the launcher's badge)
let unreadPosted = -1;
const rows = new Map(); // "conversation:seq" -> row element
const noted = new Set(); // conversations whose "ended" note was shown
const joined = new Set(); // "conversation:agent" whose "joined" note was shown

// --- status texts --------------------------------------------------------------------
const agentName = () => (state.conv && state.conv.agent) || 'Support';

const queueText = () => {
  const { conv } = state;
  if (typeof conv.wait !== 'number') return 'Waiting in queue — you are #' + conv.position;
  const minutes = Math.max(1, Math.round(conv.wait / 60));
  return 'You are number ' + conv.position + ' in line — about ' + minutes + ' min';
};

export const header = () => {
  const { conv, agentsOnline } = state;
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
  ui.typingText.textContent = agentName() + ' is typing…';
  ui.typing.hidden = false;
  clearTimeout(timers.typingShown);
  timers.typingShown = setTimeout(hideTyping, TYPING_SHOWN);
  scrollDown(false);
};

// --- files in messages ---------------------------------------------------------------
// Files go up and come down with the visitor's token in a header (then a blob: URL
// shows or saves them): no URL by itself ever opens a file.
export const sizeText = (bytes) =>
  bytes >= 1048576
    ? (bytes / 1048576).toFixed(1).replace(/\.0$/, '') + ' MB'
    : bytes >= 1024
      ? Math.round(bytes / 1024) + ' KB'
      : bytes + ' B';
const thumbs = new Map(); // thumbnail url -> blob: URL, fetched once per page

const fetchFile = async (url) => {
  const response = await fetch(url, {
    headers: { Authorization: 'Bearer ' + state.token },
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

export const renderMessage = (sender, body, file) => {
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
export const place = (row) => {
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

// --- conversations and messages ------------------------------------------------------
const noteConversation = (id) => {
  if (id <= state.latest) return;
  state.latest = id;
  seqs = new Set();
  state.lastSeq = state.topSeq = state.agentRead = readSent = readLocal = 0;
  theirs = [];
};

export const setConversation = (c) => {
  if (c) {
    noteConversation(c.id);
    if (c.id === state.latest) {
      state.conv = {
        id: c.id,
        status: c.status,
        position: c.queue_position,
        wait: c.estimated_wait_seconds,
        agent: c.agent ? c.agent.display_name : null,
      };
    }
  } else {
    state.conv = null;
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
  if (state.topSeq > state.lastSeq) timers.gap = setTimeout(() => dropSocket(), GAP_WAIT);
};

// Add one message (from ready, a message frame or an ack); false if already shown.
export const addMessage = (m) => {
  const key = m.conversation + ':' + m.seq;
  seeSeq(m.conversation, m.seq);
  if (rows.has(key)) return false;
  const mine = m.sender === 'visitor' && m.client_msg_id ? state.own.get(m.client_msg_id) : null;
  let row;
  if (mine) {
    row = mine.row;
    settle(m.client_msg_id, m.conversation, m.seq);
  } else {
    row = renderMessage(m.sender, m.body, m.attachment);
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

const settle = (id, conversation, seq) => {
  const o = state.own.get(id);
  if (!o) return;
  clearTimeout(o.timer);
  Object.assign(o, { state: 'sent', conv: conversation, seq, detail: '' });
  forget(id);
};

export const addEndedNote = (conversation, by) => {
  if (noted.has(conversation)) return;
  noted.add(conversation);
  const who = by === 'visitor' ? 'You ended the chat.' : by === 'agent' ? agentName() + ' ended the chat.' : 'This chat has ended.';
  const note = el('div', 'sd-row sd-note');
  const start = el('button', 'sd-new', 'Start a new chat');
  start.type = 'button';
  start.addEventListener('click', startNewChat);
  note.append(el('p', '', who), start);
  if (!state.rated.has(conversation)) note.append(rateBox(conversation));
  note.append(transcriptForm(conversation));
  note.sdKey = [conversation, Infinity];
  place(note);
};

// "alice joined the chat", after the messages that were there when she did.
export const addJoined = (conversation, name, after) => {
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
  for (const [id, o] of state.own) if (o.state === 'sent') state.own.delete(id);
  theirs = [];
  state.conv = null;
  header();
  ui.input.focus();
};

export const resetView = () => {
  startNewChat();
  state.latest = 0;
  seqs = new Set();
  state.lastSeq = state.topSeq = state.agentRead = readSent = readLocal = 0;
  noted.clear();
  joined.clear();
};

// --- reading -------------------------------------------------------------------------
export const updateUnread = () => {
  const count = theirs.filter((seq) => seq > readLocal).length;
  if (count !== unreadPosted) {
    unreadPosted = count;
    toParent({ supportdesk: 'unread', count });
  }
};

export const markRead = () => {
  if (!state.shown || document.visibilityState !== 'visible') return;
  readLocal = Math.max(readLocal, state.topSeq);
  updateUnread();
  const newest = theirs.length ? Math.max(...theirs) : 0;
  const { conv } = state;
  if (state.live && conv && conv.id === state.latest && conv.status !== 'closed' && newest > readSent) {
    readSent = state.topSeq;
    sendFrame({ type: 'read', seq: state.topSeq });
  }
};
